// Package mailertest runs a real SMTP upstream (github.com/emersion/go-smtp)
// on 127.0.0.1 for tests: a test CA generated per test, STARTTLS or implicit
// TLS, AUTH PLAIN/LOGIN/CRAM-MD5/XOAUTH2, and a record of every message and
// connection, so tests of any package can check what really went over the wire.
package mailertest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/throwawayca"
	"github.com/plcmail/plcmail/upstream"
)

// Security values for Options.Security: how the server offers TLS.
const (
	StartTLS = "starttls" // STARTTLS offered on a plaintext port (submission, 587)
	TLS      = "tls"      // implicit TLS from the first byte (submissions, 465)
	Plain    = "none"     // no TLS at all, STARTTLS not offered
)

// Options configures an Upstream. The zero value is a STARTTLS server with
// AUTH PLAIN and LOGIN whose certificate is valid for 127.0.0.1 and localhost.
type Options struct {
	Security string // StartTLS (default), TLS or Plain

	// AuthMechs are the SASL mechanisms offered, in order; nil means
	// PLAIN and LOGIN. Supported: PLAIN, LOGIN, CRAM-MD5, XOAUTH2.
	AuthMechs []string
	// NoAuth disables the AUTH extension entirely.
	NoAuth bool
	// RequireAuth rejects MAIL with 530 until the client authenticated.
	RequireAuth bool
	// AllowInsecureAuth offers AUTH before TLS (to prove that the client
	// never uses it on a plaintext connection).
	AllowInsecureAuth bool

	Username string // default "plc@example.com"
	Password string // default "s3cret-Pa55"; for XOAUTH2 it is the token

	// CertHosts are the names and IPs the server certificate is issued for;
	// default 127.0.0.1, ::1 and localhost. Set another name to test a
	// hostname mismatch.
	CertHosts []string
	// SelfSigned serves a self-signed leaf instead of one issued by the
	// test CA (for fingerprint pinning tests).
	SelfSigned bool

	// No8BitMIME leaves 8BITMIME out of the EHLO reply, as a server that
	// only takes 7-bit data does (go-smtp always announces it, so the
	// reply is filtered on the wire, after Transcript recorded it). Only
	// with Security Plain: a filter cannot see into TLS.
	No8BitMIME bool
	// SMTPUTF8 announces the SMTPUTF8 extension (RFC 6531).
	SMTPUTF8 bool

	// Rcpt and Data, when set, decide the reply to each RCPT and DATA;
	// return nil to accept, or an error from Reply. They can be changed
	// later with SetRcpt and SetData.
	Rcpt func(to string) error
	Data func(m Received) error
}

// Received is one message the upstream accepted with 250 after DATA.
type Received struct {
	From string
	To   []string
	// Body is the BODY parameter of MAIL FROM ("8BITMIME", "7BIT"), ""
	// when the client sent none.
	Body string
	// UTF8 is true when MAIL FROM carried the SMTPUTF8 parameter.
	UTF8 bool
	Data []byte
	// User is the authenticated user name, "" without AUTH.
	User string
	// Mech is the SASL mechanism used, "" without AUTH.
	Mech string
	TLS  bool
	// Conn numbers the connection the message came on, from 1.
	Conn int
}

// Upstream is a running test SMTP server. All methods are safe for
// concurrent use.
type Upstream struct {
	// Addr is host:port of the listener (127.0.0.1:NNNN).
	Addr string
	Host string
	Port int
	// CAFile is a PEM file holding the test CA certificate, for
	// upstream.ca_file. With SelfSigned it holds the self-signed leaf.
	CAFile string
	// CAPool contains the test CA.
	CAPool *x509.CertPool
	// Fingerprint is the SHA-256 of the served leaf certificate, lowercase
	// hex, for upstream.tls_fingerprints.
	Fingerprint string

	opts    Options
	t       testing.TB
	tlsConf *tls.Config

	mu       sync.Mutex
	srv      *smtp.Server
	ln       net.Listener
	msgs     []Received
	conns    int
	events   []string
	changed  chan struct{}
	rcptFn   func(string) error
	dataFn   func(Received) error
	transcr  bytes.Buffer
	no8bit   bool // Options.No8BitMIME, changed by SetNo8BitMIME
	stopped  bool
	serveErr chan error
}

// NewUpstream starts a server on 127.0.0.1:0 and stops it at the end of the
// test.
func NewUpstream(t testing.TB, opts Options) *Upstream {
	t.Helper()
	if opts.Security == "" {
		opts.Security = StartTLS
	}
	if opts.Username == "" {
		opts.Username = "plc@example.com"
	}
	if opts.Password == "" {
		opts.Password = "s3cret-Pa55"
	}
	if opts.AuthMechs == nil {
		opts.AuthMechs = []string{sasl.Plain, sasl.Login}
	}
	if opts.CertHosts == nil {
		opts.CertHosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	if opts.No8BitMIME && opts.Security != Plain {
		t.Fatal("mailertest: No8BitMIME needs Security Plain")
	}
	u := &Upstream{opts: opts, t: t, changed: make(chan struct{}), rcptFn: opts.Rcpt, dataFn: opts.Data, no8bit: opts.No8BitMIME}
	dir := t.TempDir()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	var leaf tls.Certificate
	if opts.SelfSigned {
		leaf, err = SelfSigned(opts.CertHosts...)
	} else {
		leaf, err = ca.Issue(opts.CertHosts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	u.CAPool = ca.Pool()
	caPEM := ca.PEM()
	if opts.SelfSigned {
		caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	}
	u.CAFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(u.CAFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.Certificate[0])
	u.Fingerprint = hex.EncodeToString(sum[:])
	u.tlsConf = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}

	if err := u.listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(u.Addr)
	u.Host = host
	fmt.Sscan(port, &u.Port)
	t.Cleanup(u.Stop)
	return u
}

func (u *Upstream) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	u.Addr = ln.Addr().String()
	ln = &countingListener{Listener: ln, u: u}
	srv := smtp.NewServer(&backend{u: u})
	srv.Domain = "mx.test"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 32 << 20
	srv.MaxRecipients = 1000
	srv.AllowInsecureAuth = u.opts.AllowInsecureAuth
	srv.EnableSMTPUTF8 = u.opts.SMTPUTF8
	srv.Debug = &lockedWriter{u: u}
	srv.ErrorLog = testLogger{u.t}
	switch u.opts.Security {
	case StartTLS:
		srv.TLSConfig = u.tlsConf
	case TLS:
		ln = tls.NewListener(ln, u.tlsConf)
	case Plain:
	default:
		ln.Close()
		return fmt.Errorf("mailertest: unknown security %q", u.opts.Security)
	}
	u.mu.Lock()
	u.srv, u.ln, u.stopped = srv, ln, false
	done := make(chan error, 1)
	u.serveErr = done
	u.mu.Unlock()
	go func() { done <- srv.Serve(ln) }()
	return nil
}

// Stop closes the listener and every open connection: the upstream is down.
// It is called automatically at the end of the test.
func (u *Upstream) Stop() {
	u.mu.Lock()
	srv, ln, stopped, done := u.srv, u.ln, u.stopped, u.serveErr
	u.stopped = true
	u.mu.Unlock()
	if stopped || srv == nil {
		return
	}
	srv.Close()
	ln.Close() // Close misses a listener that Serve has not registered yet
	<-done
}

// Start restarts a stopped upstream on the same address.
func (u *Upstream) Start() {
	u.t.Helper()
	var err error
	for i := 0; i < 50; i++ { // the port may linger for a moment after Close
		if err = u.listen(u.Addr); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	u.t.Fatalf("mailertest: restart on %s: %v", u.Addr, err)
}

// Config returns upstream settings that deliver to this server with
// verification against the test CA (or with the pin, for SelfSigned) and
// the server's credentials, with auth "auto" (or "none" with NoAuth).
func (u *Upstream) Config() config.Upstream {
	c := config.Upstream{
		Host:     u.Host,
		Port:     u.Port,
		Security: u.opts.Security,
		Auth:     "auto",
		Username: u.opts.Username,
		Password: u.opts.Password,
		CAFile:   u.CAFile,
		From:     "plc-gateway@example.com",
		Timeout:  config.Duration(5 * time.Second),
	}
	if u.opts.SelfSigned {
		c.CAFile = ""
		c.Fingerprints = []string{u.Fingerprint}
	}
	if u.opts.NoAuth {
		c.Auth, c.Username, c.Password = "none", "", ""
	}
	return c
}

// Options returns client options that deliver to this server: the same
// settings as Config, as package upstream takes them, with EHLO name
// "gw.test".
func (u *Upstream) Options() upstream.Options {
	c := u.Config()
	o := upstream.Options{
		Host:     c.Host,
		Port:     c.Port,
		Security: upstream.Security(c.Security),
		Auth:     c.Auth,
		Username: c.Username,
		CAFile:   c.CAFile,
		Hostname: "gw.test",
		Timeout:  c.Timeout.D(),
	}
	if c.Password != "" {
		pw := c.Password
		o.Secret = func(context.Context) (string, error) { return pw, nil }
	}
	for _, s := range c.Fingerprints {
		fp, err := upstream.ParseFingerprint(s)
		if err != nil {
			u.t.Fatalf("mailertest: %v", err)
		}
		o.Pins = append(o.Pins, fp)
	}
	return o
}

// GatewayConfig returns a complete, valid configuration that relays to this
// upstream, with its spool in a fresh temporary directory and short retry
// times suited to tests (min_backoff 50ms, max_backoff 500ms, scan_every 100ms).
func (u *Upstream) GatewayConfig(t testing.TB) *config.Config {
	c := config.Default()
	c.Gateway.Hostname = "gw.test"
	c.Gateway.SpoolDir = filepath.Join(t.TempDir(), "spool")
	c.Upstream = u.Config()
	c.Queue.MinBackoff = config.Duration(50 * time.Millisecond)
	c.Queue.MaxBackoff = config.Duration(500 * time.Millisecond)
	c.Queue.ScanEvery = config.Duration(100 * time.Millisecond)
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("mailertest: generated config invalid: %v", errs)
	}
	return c
}

// Reply returns an SMTP error reply for the Rcpt and Data hooks, e.g.
// Reply(451, "try again later") or Reply(550, "no such user").
func Reply(code int, msg string) error {
	ec := smtp.EnhancedCode{code / 100, 0, 0}
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

// SetNo8BitMIME changes Options.No8BitMIME for the connections accepted
// from now on.
func (u *Upstream) SetNo8BitMIME(on bool) {
	u.t.Helper()
	if on && u.opts.Security != Plain {
		u.t.Fatal("mailertest: No8BitMIME needs Security Plain")
	}
	u.mu.Lock()
	u.no8bit = on
	u.mu.Unlock()
}

// SetRcpt replaces the RCPT hook (nil accepts every recipient).
func (u *Upstream) SetRcpt(fn func(to string) error) {
	u.mu.Lock()
	u.rcptFn = fn
	u.mu.Unlock()
}

// SetData replaces the DATA hook (nil accepts every message).
func (u *Upstream) SetData(fn func(m Received) error) {
	u.mu.Lock()
	u.dataFn = fn
	u.mu.Unlock()
}

// Messages returns the messages accepted so far, in order.
func (u *Upstream) Messages() []Received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Received(nil), u.msgs...)
}

// Connections returns how many TCP connections were accepted so far.
func (u *Upstream) Connections() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns
}

// Events returns what the server saw, in order: "connect", "auth PLAIN",
// "auth-ok user", "mail FROM", "rcpt TO", "data", "reset". A test asserts on
// it that, say, no AUTH and no MAIL happened.
func (u *Upstream) Events() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.events...)
}

// Transcript returns every line exchanged in plaintext (after TLS is
// established, the decrypted lines), all connections interleaved.
func (u *Upstream) Transcript() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.transcr.String()
}

// Wait blocks until at least n messages were accepted and returns them; it
// fails the test after timeout.
func (u *Upstream) Wait(t testing.TB, n int, timeout time.Duration) []Received {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		if len(u.msgs) >= n {
			m := append([]Received(nil), u.msgs...)
			u.mu.Unlock()
			return m
		}
		ch := u.changed
		got := len(u.msgs)
		u.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("mailertest: waited %v for %d messages, got %d; events: %q", timeout, n, got, u.Events())
			return nil
		}
	}
}

func (u *Upstream) event(format string, args ...any) {
	u.mu.Lock()
	u.events = append(u.events, fmt.Sprintf(format, args...))
	u.mu.Unlock()
}

type countingListener struct {
	net.Listener
	u *Upstream
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.u.mu.Lock()
		l.u.conns++
		l.u.events = append(l.u.events, "connect")
		no8bit := l.u.no8bit
		l.u.mu.Unlock()
		if no8bit {
			c = &dropLineConn{Conn: c, drop: []byte("250-8BITMIME\r\n")}
		}
	}
	return c, err
}

// dropLineConn removes one reply line from everything the server writes.
// Replies always end in CRLF, so an incomplete line is held back until the
// rest of it is written.
type dropLineConn struct {
	net.Conn
	drop    []byte
	pending []byte
}

func (c *dropLineConn) Write(p []byte) (int, error) {
	c.pending = append(c.pending, p...)
	var out []byte
	for {
		i := bytes.Index(c.pending, []byte("\r\n"))
		if i < 0 {
			break
		}
		line := c.pending[:i+2]
		if !bytes.Equal(line, c.drop) {
			out = append(out, line...)
		}
		c.pending = c.pending[i+2:]
	}
	if len(out) > 0 {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

type lockedWriter struct{ u *Upstream }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.u.mu.Lock()
	defer w.u.mu.Unlock()
	return w.u.transcr.Write(p)
}

type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("mailertest server: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"mailertest server:"}, v...)...) }

type backend struct{ u *Upstream }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.u.mu.Lock()
	n := b.u.conns
	b.u.mu.Unlock()
	_, isTLS := c.TLSConnectionState()
	return &session{u: b.u, conn: n, tls: isTLS}, nil
}

type session struct {
	u    *Upstream
	conn int
	tls  bool
	user string
	mech string
	from string
	body string
	utf8 bool
	to   []string
}

var _ smtp.AuthSession = (*session)(nil)

func (s *session) AuthMechanisms() []string {
	if s.u.opts.NoAuth {
		return nil
	}
	return s.u.opts.AuthMechs
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	s.u.event("auth %s", mech)
	o := s.u.opts
	ok := func(user, pass string) error {
		if user != o.Username || pass != o.Password {
			s.u.event("auth-fail %s", user)
			return smtp.ErrAuthFailed
		}
		s.user, s.mech = user, mech
		s.u.event("auth-ok %s", user)
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return ok(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: ok}, nil
	case "CRAM-MD5":
		return &cramServer{user: o.Username, secret: o.Password, ok: ok}, nil
	case "XOAUTH2":
		return &xoauth2Server{check: ok}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.u.event("mail %s", from)
	if s.u.opts.RequireAuth && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.from = from
	if opts != nil {
		s.body, s.utf8 = string(opts.Body), opts.UTF8
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.u.event("rcpt %s", to)
	s.u.mu.Lock()
	fn := s.u.rcptFn
	s.u.mu.Unlock()
	if fn != nil {
		if err := fn(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.u.event("data")
	m := Received{From: s.from, To: append([]string(nil), s.to...), Body: s.body, UTF8: s.utf8, Data: b, User: s.user, Mech: s.mech, TLS: s.tls, Conn: s.conn}
	s.u.mu.Lock()
	fn := s.u.dataFn
	s.u.mu.Unlock()
	if fn != nil {
		if err := fn(m); err != nil {
			return err
		}
	}
	s.u.mu.Lock()
	s.u.msgs = append(s.u.msgs, m)
	close(s.u.changed)
	s.u.changed = make(chan struct{})
	s.u.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.from, s.body, s.utf8, s.to = "", "", false, nil
	s.u.event("reset")
}

func (s *session) Logout() error { return nil }

// loginServer is the server side of the LOGIN mechanism, which go-sasl only
// has as a client.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if resp != nil { // initial response carries the user name
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

type cramServer struct {
	user, secret string
	ok           func(user, pass string) error
	challenge    []byte
}

func (c *cramServer) Next(resp []byte) ([]byte, bool, error) {
	if c.challenge == nil {
		var r [8]byte
		rand.Read(r[:])
		c.challenge = []byte(fmt.Sprintf("<%x@mx.test>", r))
		return c.challenge, false, nil
	}
	user, digest, _ := strings.Cut(string(resp), " ")
	mac := hmac.New(md5.New, []byte(c.secret))
	mac.Write(c.challenge)
	if user != c.user || !hmac.Equal([]byte(digest), []byte(hex.EncodeToString(mac.Sum(nil)))) {
		return nil, true, smtp.ErrAuthFailed
	}
	return nil, true, c.ok(c.user, c.secret)
}

type xoauth2Server struct{ check func(user, pass string) error }

// Next parses "user=U\x01auth=Bearer T\x01\x01".
func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if resp == nil {
		return []byte{}, false, nil
	}
	var user, token string
	for _, f := range strings.Split(string(resp), "\x01") {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(f, "auth=Bearer "); ok {
			token = v
		}
	}
	return nil, true, x.check(user, token)
}

// CA is a test certificate authority: throwawayca's, which the demo uses
// too. The alias keeps mailertest the one import a test needs, for its
// upstream and for servers outside the process.
type CA = throwawayca.CA

// NewCA generates an ECDSA P-256 CA valid for one day.
func NewCA() (*CA, error) { return throwawayca.New("plcmail test CA") }

// SelfSigned returns a self-signed server certificate for hosts.
func SelfSigned(hosts ...string) (tls.Certificate, error) { return throwawayca.SelfSigned(hosts...) }

// WriteKeyPair writes cert and key as PEM files into dir and returns their
// paths, for servers outside the process (aiosmtpd, swaks).
func WriteKeyPair(dir string, cert tls.Certificate) (certFile, keyFile string, err error) {
	return throwawayca.WriteKeyPair(dir, cert)
}
