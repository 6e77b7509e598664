// Package fakeupstream runs a real SMTP server (github.com/emersion/go-smtp)
// on 127.0.0.1 that plays the mail provider: STARTTLS or implicit TLS with a
// certificate from a throw-away CA (internal/throwawayca), AUTH
// PLAIN/LOGIN/CRAM-MD5/XOAUTH2, hooks that choose the reply to each RCPT and
// DATA, and a record of every message, connection and line, so that what
// really went over the wire can be checked. The demo uses it as its mail
// server and internal/mailertest wraps it for tests; it does not import
// testing.
package fakeupstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/plcmail/plcmail/internal/throwawayca"
)

// Security values for Options.Security: how the server offers TLS.
const (
	StartTLS = "starttls" // STARTTLS offered on a plaintext port (submission, 587)
	TLS      = "tls"      // implicit TLS from the first byte (submissions, 465)
	Plain    = "none"     // no TLS at all, STARTTLS not offered
)

// ErrNo8BitMIMEWithTLS is returned when Options.No8BitMIME is asked for with
// TLS: the filter that hides 8BITMIME cannot see into TLS.
var ErrNo8BitMIMEWithTLS = errors.New("fakeupstream: No8BitMIME needs Security Plain")

// Options configures a Server. The zero value is a STARTTLS server with
// AUTH PLAIN and LOGIN whose certificate is valid for 127.0.0.1, ::1 and
// localhost.
type Options struct {
	Security string // StartTLS (default), TLS or Plain

	// AuthMechs are the SASL mechanisms offered, in order; nil means
	// PLAIN and LOGIN. Supported: PLAIN, LOGIN, CRAM-MD5, XOAUTH2.
	AuthMechs []string
	// NoAuth disables the AUTH extension entirely.
	NoAuth bool
	// RequireAuth rejects MAIL with 530 until the client authenticated.
	RequireAuth bool
	// RequireTLS rejects MAIL with 530 on a connection without TLS.
	RequireTLS bool
	// AllowInsecureAuth offers AUTH before TLS (to prove that the client
	// never uses it on a plaintext connection).
	AllowInsecureAuth bool

	Username string // default "plc@example.com"
	Password string // default "s3cret-Pa55"; for XOAUTH2 it is the token

	// TokenValid, when set, decides XOAUTH2 instead of Password: the
	// server accepts user with token only while it returns true, as a
	// provider accepts an access token only until it expires or is
	// revoked (internal/fakeoauth's Valid).
	TokenValid func(user, token string) bool
	// XOAuth2ErrorChallenge refuses a token the way Gmail does, with a
	// 334 challenge carrying a JSON error that the client must answer
	// with an empty line before the 535; without it the 535 comes at
	// once, as from Microsoft 365.
	XOAuth2ErrorChallenge bool

	// Domain is the name in the greeting; default "mx.test".
	Domain string
	// CAName is the common name of the throw-away CA; default
	// "plcmail test CA".
	CAName string
	// CertHosts are the names and IPs the server certificate is issued for;
	// default 127.0.0.1, ::1 and localhost. Set another name to test a
	// hostname mismatch.
	CertHosts []string
	// SelfSigned serves a self-signed leaf instead of one issued by the
	// CA (for fingerprint pinning tests).
	SelfSigned bool

	// No8BitMIME leaves 8BITMIME out of the EHLO reply, as a server that
	// only takes 7-bit data does (go-smtp always announces it, so the
	// reply is filtered on the wire, after the transcript recorded it).
	// Only with Security Plain: a filter cannot see into TLS.
	No8BitMIME bool
	// SMTPUTF8 announces the SMTPUTF8 extension (RFC 6531).
	SMTPUTF8 bool

	// MaxMessageBytes limits a message's size; default 32 MiB.
	MaxMessageBytes int64

	// Rcpt and Data, when set, decide the reply to each RCPT and DATA;
	// return nil to accept, or an error from Reply. They can be changed
	// later with SetRcpt and SetData. Data runs before the message is
	// recorded: a message it rejects is not in Messages.
	Rcpt func(to string) error
	Data func(m Received) error

	// Transcript keeps every line exchanged, for Server.Transcript.
	Transcript bool
	// Logf, when set, gets the server's errors; nil leaves go-smtp's
	// default (standard error).
	Logf func(format string, args ...any)
}

// Received is one message the server accepted with 250 after DATA (or is
// about to accept, in the Data hook).
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
	// TLSVersion is the connection's TLS version (tls.VersionTLS13...),
	// 0 without TLS.
	TLSVersion uint16
	// Conn numbers the connection the message came on, from 1.
	Conn int
}

// Server is a running SMTP server. All methods are safe for concurrent
// use.
type Server struct {
	// Addr is host:port of the listener (127.0.0.1:NNNN).
	Addr string
	Host string
	Port int
	// CAPEM is the CA certificate in PEM, for upstream.ca_file. With
	// SelfSigned it holds the self-signed leaf.
	CAPEM []byte
	// CAPool contains the CA.
	CAPool *x509.CertPool
	// Fingerprint is the SHA-256 of the served leaf certificate, lowercase
	// hex, for upstream.tls_fingerprints.
	Fingerprint string

	opts    Options
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

// Start starts a server on 127.0.0.1:0 with a fresh CA. Close (or Stop)
// ends it.
func Start(opts Options) (*Server, error) {
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
	if opts.Domain == "" {
		opts.Domain = "mx.test"
	}
	if opts.CAName == "" {
		opts.CAName = "plcmail test CA"
	}
	if opts.CertHosts == nil {
		opts.CertHosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 32 << 20
	}
	if opts.No8BitMIME && opts.Security != Plain {
		return nil, ErrNo8BitMIMEWithTLS
	}
	s := &Server{opts: opts, changed: make(chan struct{}), rcptFn: opts.Rcpt, dataFn: opts.Data, no8bit: opts.No8BitMIME}
	ca, err := throwawayca.New(opts.CAName)
	if err != nil {
		return nil, err
	}
	var leaf tls.Certificate
	if opts.SelfSigned {
		leaf, err = throwawayca.SelfSigned(opts.CertHosts...)
	} else {
		leaf, err = ca.Issue(opts.CertHosts...)
	}
	if err != nil {
		return nil, err
	}
	s.CAPool = ca.Pool()
	s.CAPEM = ca.PEM()
	if opts.SelfSigned {
		s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	}
	sum := sha256.Sum256(leaf.Certificate[0])
	s.Fingerprint = hex.EncodeToString(sum[:])
	s.tlsConf = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}

	if err := s.listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(s.Addr)
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	return s, nil
}

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.Addr = ln.Addr().String()
	ln = &countingListener{Listener: ln, s: s}
	srv := smtp.NewServer(&backend{s: s})
	srv.Domain = s.opts.Domain
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = s.opts.MaxMessageBytes
	srv.MaxRecipients = 1000
	srv.AllowInsecureAuth = s.opts.AllowInsecureAuth
	srv.EnableSMTPUTF8 = s.opts.SMTPUTF8
	if s.opts.Transcript {
		srv.Debug = &lockedWriter{s: s}
	}
	if s.opts.Logf != nil {
		srv.ErrorLog = logfLogger(s.opts.Logf)
	}
	switch s.opts.Security {
	case StartTLS:
		srv.TLSConfig = s.tlsConf
	case TLS:
		ln = tls.NewListener(ln, s.tlsConf)
	case Plain:
	default:
		ln.Close()
		return fmt.Errorf("fakeupstream: unknown security %q", s.opts.Security)
	}
	s.mu.Lock()
	s.srv, s.ln, s.stopped = srv, ln, false
	done := make(chan error, 1)
	s.serveErr = done
	s.mu.Unlock()
	go func() { done <- srv.Serve(ln) }()
	return nil
}

// Stop closes the listener and every open connection: the upstream is down
// until Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, ln, stopped, done := s.srv, s.ln, s.stopped, s.serveErr
	s.stopped = true
	s.mu.Unlock()
	if stopped || srv == nil {
		return
	}
	srv.Close()
	ln.Close() // Close misses a listener that Serve has not registered yet
	<-done
}

// Close stops the server for good; it is Stop under the name io.Closer
// users expect.
func (s *Server) Close() error {
	s.Stop()
	return nil
}

// Restart starts a stopped server again on the same address. The port may
// linger for a moment after Stop, so it retries for about a second.
func (s *Server) Restart() error {
	var err error
	for range 50 {
		if err = s.listen(s.Addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("fakeupstream: restart on %s: %w", s.Addr, err)
}

// Username and Password are the credentials the server accepts.
func (s *Server) Username() string { return s.opts.Username }

// Password is the password (the token, for XOAUTH2) the server accepts.
func (s *Server) Password() string { return s.opts.Password }

// Security is the server's Options.Security, defaults applied.
func (s *Server) Security() string { return s.opts.Security }

// Reply returns an SMTP error reply for the Rcpt and Data hooks, e.g.
// Reply(451, "try again later") or Reply(550, "no such user").
func Reply(code int, msg string) error {
	ec := smtp.EnhancedCode{code / 100, 0, 0}
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

// SetNo8BitMIME changes Options.No8BitMIME for the connections accepted
// from now on.
func (s *Server) SetNo8BitMIME(on bool) error {
	if on && s.opts.Security != Plain {
		return ErrNo8BitMIMEWithTLS
	}
	s.mu.Lock()
	s.no8bit = on
	s.mu.Unlock()
	return nil
}

// SetRcpt replaces the RCPT hook (nil accepts every recipient).
func (s *Server) SetRcpt(fn func(to string) error) {
	s.mu.Lock()
	s.rcptFn = fn
	s.mu.Unlock()
}

// SetData replaces the DATA hook (nil accepts every message).
func (s *Server) SetData(fn func(m Received) error) {
	s.mu.Lock()
	s.dataFn = fn
	s.mu.Unlock()
}

// Messages returns the messages accepted so far, in order.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.msgs...)
}

// Connections returns how many TCP connections were accepted so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Events returns what the server saw, in order: "connect", "auth PLAIN",
// "auth-ok user", "mail FROM", "rcpt TO", "data", "reset", so that a check
// can say that, for instance, no AUTH and no MAIL happened.
func (s *Server) Events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// Transcript returns every line exchanged in plaintext (after TLS is
// established, the decrypted lines), all connections interleaved; only
// with Options.Transcript.
func (s *Server) Transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transcr.String()
}

// Wait blocks until at least n messages were accepted and returns them, or
// returns ctx's error with the messages so far.
func (s *Server) Wait(ctx context.Context, n int) ([]Received, error) {
	for {
		s.mu.Lock()
		m, ch := append([]Received(nil), s.msgs...), s.changed
		s.mu.Unlock()
		if len(m) >= n {
			return m, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return m, ctx.Err()
		}
	}
}

func (s *Server) event(format string, args ...any) {
	s.mu.Lock()
	s.events = append(s.events, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

type countingListener struct {
	net.Listener
	s *Server
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns++
		l.s.events = append(l.s.events, "connect")
		no8bit := l.s.no8bit
		l.s.mu.Unlock()
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

type lockedWriter struct{ s *Server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.transcr.Write(p)
}

// logfLogger is go-smtp's Logger on a printf-style function.
type logfLogger func(format string, args ...any)

func (l logfLogger) Printf(format string, v ...any) { l(format, v...) }
func (l logfLogger) Println(v ...any)               { l("%s", strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }
