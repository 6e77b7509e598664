package mailer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	golog "github.com/wneessen/go-mail/log"
	"github.com/wneessen/go-mail/smtp"

	"github.com/plcmail/plcmail/config"
)

// Delivery policy, decided here once:
//
//   - Everything before MAIL FROM (connect, greeting, EHLO, STARTTLS, the TLS
//     handshake and certificate check, AUTH) is a property of the upstream
//     or of our configuration, never of a message, so a failure there is
//     temporary for every message, even a 5xx: a wrong password must not
//     dead-letter a week of alarms; they wait until the user fixes it.
//   - security = "starttls" is mandatory STARTTLS: when the server does not
//     offer it, we QUIT before AUTH or MAIL. There is no plaintext fallback.
//   - A reply to MAIL, RCPT or DATA decides per message (and per recipient):
//     4xx temporary, 5xx permanent. When some recipients are accepted and
//     others refused, the message is sent to the accepted ones; those are
//     never sent again; 4xx recipients stay queued and 5xx recipients are
//     recorded and end up in the dead letter when nothing is pending.
//   - AUTH "auto" picks, among the mechanisms the server offers over TLS,
//     PLAIN, then LOGIN, then CRAM-MD5. Inside TLS, PLAIN is as safe as the
//     challenge mechanisms and universally implemented; CRAM-MD5 only makes
//     the server keep a plaintext-equivalent secret. XOAUTH2 needs a token
//     instead of a password and is never chosen automatically. With no
//     username, auto means no AUTH.
//   - 8-bit content goes out as stored, with BODY=8BITMIME, when the
//     upstream announces 8BITMIME; otherwise it is converted to
//     quoted-printable for that transaction (downgrade.go). Non-ASCII
//     addresses need SMTPUTF8; without it each one is refused for good
//     with 553 5.6.7 (RFC 6531 §3.2; Postfix bounces them with 5.6.7 too).

// ErrNoStartTLS is the temporary failure for a "starttls" upstream that
// does not offer STARTTLS (misconfigured, or an attacker stripped it).
var ErrNoStartTLS = errors.New("upstream does not offer STARTTLS; refusing to send credentials or mail in clear")

// ErrPinMismatch is the failure for a certificate that matches none of
// upstream.tls_fingerprints.
var ErrPinMismatch = errors.New("upstream certificate matches no tls_fingerprints pin")

// SMTPError is a reply from the upstream that failed a command.
type SMTPError struct {
	Code    int    // 3-digit reply code
	Command string // "MAIL", "RCPT", "DATA", "AUTH", "EHLO", ...
	Rcpt    string // for RCPT
	Msg     string // the server's text, lines joined by "; "
}

func (e *SMTPError) Error() string {
	s := fmt.Sprintf("%s: %d %s", e.Command, e.Code, e.Msg)
	if e.Rcpt != "" {
		s = fmt.Sprintf("%s <%s>: %d %s", e.Command, e.Rcpt, e.Code, e.Msg)
	}
	return s
}

// Temporary reports whether the reply is a 4xx.
func (e *SMTPError) Temporary() bool { return e.Code < 500 }

// ConnError is a failure of the upstream connection (dial, TLS, greeting,
// EHLO, STARTTLS, AUTH, or I/O in the middle of a transaction). It is always
// temporary for the messages involved.
type ConnError struct {
	Stage string // "dial", "tls", "greeting", "ehlo", "starttls", "auth", "io"
	Err   error
}

func (e *ConnError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *ConnError) Unwrap() error { return e.Err }

// ReplyCode returns the SMTP reply code carried by err, or 0.
func ReplyCode(err error) int {
	var se *SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// txResult is the outcome of one SMTP transaction.
type txResult struct {
	Accepted []string    // recipients the upstream took the message for (after 250 to DATA)
	Deferred []string    // recipients to try again (4xx)
	Rejected []Rejection // recipients refused for good (5xx)
	Code     int         // final reply code of the transaction
	Reply    string      // final reply text
	// Downgrade says what was converted, and what stayed 8-bit, because
	// the upstream does not announce 8BITMIME ("" when nothing was to do).
	Downgrade string
}

// upstreamConn is one connected, authenticated upstream session.
type upstreamConn struct {
	c       *smtp.Client
	cfg     *config.Upstream
	timeout time.Duration
	trace   io.Writer
	broken  bool

	mu       sync.Mutex // serialises trace writes
	authMech string     // during AUTH: how to present go-mail's redacted lines
	authSent bool
}

// tlsConfig builds the client TLS configuration: system roots plus ca_file,
// or, when pins are set, the pins alone.
func tlsConfig(u *config.Upstream) (*tls.Config, error) {
	conf := &tls.Config{ServerName: strings.Trim(u.Host, "[]"), MinVersion: tls.VersionTLS12}
	if len(u.Fingerprints) > 0 {
		pins := make([][32]byte, 0, len(u.Fingerprints))
		for _, s := range u.Fingerprints {
			fp, err := config.ParseFingerprint(s)
			if err != nil {
				return nil, err
			}
			pins = append(pins, fp)
		}
		// Pinning replaces chain and name verification: the pin is a
		// stronger statement than both, and it is how a self-signed
		// provider certificate is trusted without turning checks off.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrPinMismatch
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			for _, p := range pins {
				if subtle.ConstantTimeCompare(got[:], p[:]) == 1 {
					return nil
				}
			}
			return fmt.Errorf("%w (leaf is sha256:%x)", ErrPinMismatch, got)
		}
		return conf, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if u.CAFile != "" {
		pem, err := os.ReadFile(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream.ca_file: %s holds no PEM certificate", u.CAFile)
		}
	}
	conf.RootCAs = pool
	return conf, nil
}

// dialUpstream connects, says EHLO, secures the session as configured and
// authenticates. trace, when not nil, receives the dialogue with secrets
// masked. Every error is a *ConnError.
func dialUpstream(ctx context.Context, cfg *config.Config, trace io.Writer) (*upstreamConn, error) {
	u := &cfg.Upstream
	uc := &upstreamConn{cfg: u, timeout: u.Timeout.D(), trace: trace}
	if uc.timeout <= 0 {
		uc.timeout = 30 * time.Second
	}
	tconf, err := tlsConfig(u)
	if err != nil {
		return nil, &ConnError{"tls", err}
	}
	if u.Security == config.SecurityNone && !config.IsLoopbackHost(u.Host) {
		return nil, &ConnError{"dial", fmt.Errorf("security \"none\" is only allowed towards loopback, not %q", u.Host)}
	}
	addr := net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(u.Port))
	uc.tracef("* connecting to %s (security %s)", addr, u.Security)
	d := net.Dialer{Timeout: uc.timeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &ConnError{"dial", err}
	}
	var conn net.Conn = raw
	tlsOn := false
	raw.SetDeadline(time.Now().Add(uc.timeout))
	if u.Security == config.SecurityTLS {
		tc := tls.Client(raw, tconf)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, &ConnError{"tls", err}
		}
		uc.traceTLS(tc.ConnectionState())
		conn, tlsOn = tc, true
	}
	var tap *greetingTap
	if trace != nil {
		tap = &greetingTap{Conn: conn}
		conn = tap
	}
	c, err := smtp.NewClient(conn, tconf.ServerName)
	if tap != nil {
		tap.stop(uc)
	}
	if err != nil {
		conn.Close()
		return nil, &ConnError{"greeting", err}
	}
	uc.c = c
	if trace != nil {
		c.SetLogger(traceLogger{uc})
		c.SetDebugLog(true)
	}
	fail := func(stage string, err error) (*upstreamConn, error) {
		c.Close()
		return nil, &ConnError{stage, err}
	}
	c.UpdateDeadline(uc.timeout)
	if err := c.Hello(cfg.Gateway.Hostname); err != nil {
		return fail("ehlo", err)
	}
	if u.Security == config.SecurityStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			uc.tracef("* %v", ErrNoStartTLS)
			c.Quit()
			return fail("starttls", ErrNoStartTLS)
		}
		c.UpdateDeadline(uc.timeout)
		if err := c.StartTLS(tconf); err != nil {
			return fail("starttls", err)
		}
		cs, ok := c.TLSConnectionState()
		if !ok || !cs.HandshakeComplete {
			return fail("starttls", errors.New("TLS not established"))
		}
		uc.traceTLS(cs)
		tlsOn = true
	}
	if err := uc.auth(tlsOn); err != nil {
		return fail("auth", err)
	}
	return uc, nil
}

// auth authenticates as configured. Credentials only ever go over TLS, or
// in clear to a loopback host with security "none".
func (uc *upstreamConn) auth(tlsOn bool) error {
	u := uc.cfg
	mech := strings.ToLower(u.Auth)
	if mech == "none" || (mech == "auto" && u.Username == "") {
		return nil
	}
	if !tlsOn && !(u.Security == config.SecurityNone && config.IsLoopbackHost(u.Host)) {
		return errors.New("refusing AUTH without TLS") // unreachable by construction; defence in depth
	}
	_, offered := uc.c.Extension("AUTH")
	if mech == "auto" {
		mech = pickAuth(strings.Fields(strings.ToUpper(offered)))
		if mech == "" {
			if offered == "" {
				uc.tracef("* server offers no AUTH; sending without authentication")
				return nil
			}
			return fmt.Errorf("no supported AUTH mechanism among %q (set upstream.auth)", offered)
		}
	}
	pw, err := u.UpstreamPassword()
	if err != nil {
		return err
	}
	host := strings.Trim(u.Host, "[]")
	var a smtp.Auth
	switch mech {
	case "plain":
		// allowUnenc: our own check above is the guard; go-mail's cannot
		// see TLS through the trace wrapper.
		a = smtp.PlainAuth("", u.Username, pw, host, true)
	case "login":
		a = smtp.LoginAuth(u.Username, pw, host, true)
	case "cram-md5":
		a = smtp.CRAMMD5Auth(u.Username, pw)
	case "xoauth2":
		a = smtp.XOAuth2Auth(u.Username, pw)
	default:
		return fmt.Errorf("unknown auth %q", mech)
	}
	uc.tracef("* AUTH %s as %s (secrets masked)", strings.ToUpper(mech), u.Username)
	uc.c.UpdateDeadline(uc.timeout)
	uc.mu.Lock()
	uc.authMech = strings.ToUpper(mech)
	uc.mu.Unlock()
	err = uc.c.Auth(a)
	uc.mu.Lock()
	uc.authMech = ""
	uc.mu.Unlock()
	return err
}

// pickAuth implements auth = "auto" (see the policy at the top of the file).
func pickAuth(offered []string) string {
	has := map[string]bool{}
	for _, m := range offered {
		has[m] = true
	}
	for _, m := range []string{"PLAIN", "LOGIN", "CRAM-MD5"} {
		if has[m] {
			return strings.ToLower(m)
		}
	}
	return ""
}

// send runs one transaction. A nil error means the transaction completed
// (some recipients may still be deferred or rejected, see txResult); an
// error means nothing was accepted: *SMTPError for a refused MAIL or DATA or
// when every recipient was refused, *ConnError when the connection broke.
func (uc *upstreamConn) send(env Envelope, data []byte) (txResult, error) {
	var res txResult
	c := uc.c
	ascii := isASCII(env.From)
	for _, r := range env.To {
		ascii = ascii && isASCII(r)
	}
	// SMTPUTF8 on MAIL says the envelope or the header holds UTF-8
	// (RFC 6531 §3.4); go-mail adds it when the server announces it and
	// we do not skip it.
	c.SkipSMTPUTF8(ascii && !utf8Header(data))
	// go-mail's Mail adds BODY=8BITMIME whenever the upstream announces
	// 8BITMIME (RFC 6152 allows it on 7-bit messages too). When it does
	// not, 8-bit content is converted for this transaction only; the
	// spool keeps the original (see downgrade.go).
	if ok, _ := c.Extension("8BITMIME"); !ok && has8bit(data) {
		data, res.Downgrade = downgrade8bit(data)
		uc.tracef("* upstream does not announce 8BITMIME: %s", res.Downgrade)
	}
	// RFC 6531 §3.2: a non-ASCII address must not go to a server without
	// SMTPUTF8. We refuse it for good (Postfix bounces it with 5.6.7 too)
	// rather than let a 7-bit server mangle or misroute it; the refusal
	// takes the same path as the server's own 553 would.
	utf8OK, _ := c.Extension("SMTPUTF8")
	refuseUTF8 := func(cmd, rcpt string) *SMTPError {
		se := &SMTPError{Code: 553, Command: cmd, Rcpt: rcpt,
			Msg: "5.6.7 non-ASCII address, and the upstream does not announce SMTPUTF8 (refused by plcmail, RFC 6531)"}
		uc.tracef("* %v", se)
		return se
	}
	if !utf8OK && !isASCII(env.From) {
		return res, refuseUTF8("MAIL", "")
	}
	uc.c.UpdateDeadline(uc.timeout)
	if err := c.Mail("<" + env.From + ">"); err != nil {
		return res, uc.classify("MAIL", "", err)
	}
	var firstTemp, firstPerm *SMTPError
	for _, r := range env.To {
		var cerr error
		if !utf8OK && !isASCII(r) {
			cerr = refuseUTF8("RCPT", r)
		} else {
			uc.c.UpdateDeadline(uc.timeout)
			err := c.Rcpt("<" + r + ">")
			if err == nil {
				res.Accepted = append(res.Accepted, r)
				continue
			}
			cerr = uc.classify("RCPT", r, err)
		}
		var se *SMTPError
		if !errors.As(cerr, &se) {
			return txResult{}, cerr
		}
		if se.Temporary() {
			res.Deferred = append(res.Deferred, r)
			if firstTemp == nil {
				firstTemp = se
			}
		} else {
			res.Rejected = append(res.Rejected, Rejection{Rcpt: r, Code: se.Code, Reason: se.Error()})
			if firstPerm == nil {
				firstPerm = se
			}
		}
	}
	if len(res.Accepted) == 0 {
		uc.reset()
		if firstTemp != nil {
			return res, firstTemp
		}
		return res, firstPerm
	}
	// DATA may legitimately take a while for a big message on a slow link.
	uc.c.UpdateDeadline(uc.timeout + time.Duration(len(data)/(8<<10))*time.Second)
	// If DATA fails, the accepted recipients did not get it either.
	failed := txResult{Deferred: append(append([]string(nil), res.Accepted...), res.Deferred...), Rejected: res.Rejected, Downgrade: res.Downgrade}
	w, err := c.Data()
	if err != nil {
		err = uc.classify("DATA", "", err)
		uc.reset()
		return failed, err
	}
	uc.tracef("C: (message, %d bytes)", len(data))
	uc.tracef("C: .")
	if _, err := w.Write(data); err != nil {
		uc.broken = true
		return failed, &ConnError{"io", err}
	}
	if err := w.Close(); err != nil {
		return failed, uc.classify("DATA", "", err)
	}
	res.Code = 250
	if dc, ok := w.(*smtp.DataCloser); ok {
		res.Reply = dc.ServerResponse()
		uc.tracef("S: 250 %s", res.Reply)
	}
	return res, nil
}

// classify turns a go-mail error into *SMTPError (the server replied) or
// *ConnError (it did not; the connection is unusable).
func (uc *upstreamConn) classify(cmd, rcpt string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		if te.Code == 421 { // the server is closing the connection
			uc.broken = true
		}
		return &SMTPError{Code: te.Code, Command: cmd, Rcpt: rcpt, Msg: strings.ReplaceAll(te.Msg, "\n", "; ")}
	}
	uc.broken = true
	return &ConnError{"io", fmt.Errorf("%s: %w", cmd, err)}
}

// reset aborts a transaction so that the connection can carry the next.
func (uc *upstreamConn) reset() {
	if uc.broken {
		return
	}
	uc.c.UpdateDeadline(uc.timeout)
	if err := uc.c.Reset(); err != nil {
		uc.broken = true
	}
}

// close says QUIT when the connection is still usable, then closes it.
func (uc *upstreamConn) close() {
	if !uc.broken {
		uc.c.UpdateDeadline(uc.timeout)
		if uc.c.Quit() == nil {
			return
		}
	}
	uc.c.Close()
}

// utf8Header reports whether the message header, where splitEntity (and
// so the downgrade) sees it end, holds non-ASCII text that is valid UTF-8.
func utf8Header(data []byte) bool {
	_, sep, body := splitEntity(data)
	hdr := data[:len(data)-len(sep)-len(body)]
	return has8bit(hdr) && utf8.Valid(hdr)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// SendNow delivers one message immediately over a fresh upstream
// connection, bypassing the spool; `plcmail test` uses it. dialogue, when
// not nil, receives the SMTP dialogue (C: and S: lines) with AUTH secrets
// masked. It returns nil only when every recipient was accepted.
func SendNow(ctx context.Context, cfg *config.Config, env Envelope, data []byte, dialogue io.Writer) error {
	uc, err := dialUpstream(ctx, cfg, dialogue)
	if err != nil {
		return err
	}
	defer uc.close()
	res, err := uc.send(env, data)
	if err != nil {
		return err
	}
	if len(res.Deferred)+len(res.Rejected) > 0 {
		return fmt.Errorf("accepted for %d of %d recipients; deferred %v, rejected %v",
			len(res.Accepted), len(env.To), res.Deferred, res.Rejected)
	}
	return nil
}

// TestMessage returns the mail `plcmail test --to` sends: From is
// upstream.from, with Date and Message-ID, CRLF line endings.
func TestMessage(cfg *config.Config, to string, now time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: plcmail <%s>\r\n", cfg.Upstream.From)
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	fmt.Fprintf(&b, "Subject: plcmail test from %s\r\n", cfg.Gateway.Hostname)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.test@%s>\r\n", newID(), cfg.Gateway.Hostname)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "This is a test message from the plcmail gateway %s.\r\n", cfg.Gateway.Hostname)
	fmt.Fprintf(&b, "Upstream: %s:%d, security %s.\r\n", cfg.Upstream.Host, cfg.Upstream.Port, cfg.Upstream.Security)
	return b.Bytes()
}

func (uc *upstreamConn) tracef(format string, args ...any) {
	if uc.trace == nil {
		return
	}
	uc.mu.Lock()
	fmt.Fprintf(uc.trace, format+"\n", args...)
	uc.mu.Unlock()
}

func (uc *upstreamConn) traceTLS(cs tls.ConnectionState) {
	how := "certificate verified"
	if len(uc.cfg.Fingerprints) > 0 {
		how = "certificate matches pinned fingerprint"
	}
	uc.tracef("* TLS established: %s, %s, %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), how)
}

// traceLogger renders go-mail's debug log as a dialogue. go-mail already
// replaces AUTH payloads and 334 challenges with a redaction marker.
type traceLogger struct{ uc *upstreamConn }

func (l traceLogger) Debugf(m golog.Log) {
	prefix := "S: "
	if m.Direction == golog.DirClientToServer {
		prefix = "C: "
	}
	text := fmt.Sprintf(m.Format, m.Messages...)
	l.uc.mu.Lock()
	mech, first := l.uc.authMech, !l.uc.authSent
	if mech != "" && strings.Contains(text, "redacted>") {
		l.uc.authSent = true
		switch {
		case prefix == "S: ":
			text = text[:3] + " ****"
		case first:
			text = "AUTH " + mech + " ****"
		default:
			text = "****"
		}
	}
	l.uc.mu.Unlock()
	if prefix == "S: " {
		// go-mail logs replies as "CODE line1\nline2": show them as sent.
		code, rest, _ := strings.Cut(text, " ")
		lines := strings.Split(rest, "\n")
		for i, ln := range lines {
			sep := "-"
			if i == len(lines)-1 {
				sep = " "
			}
			l.uc.tracef("S: %s%s%s", code, sep, ln)
		}
		return
	}
	l.uc.tracef("%s%s", prefix, text)
}
func (l traceLogger) Infof(m golog.Log)  { l.Debugf(m) }
func (l traceLogger) Warnf(m golog.Log)  { l.Debugf(m) }
func (l traceLogger) Errorf(m golog.Log) { l.Debugf(m) }

// greetingTap records what the server sends before go-mail's client takes
// over (NewClient reads the 220 greeting itself and does not log it).
type greetingTap struct {
	net.Conn
	mu   sync.Mutex
	done bool
	buf  bytes.Buffer
}

func (g *greetingTap) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	g.mu.Lock()
	if !g.done && g.buf.Len() < 4096 {
		g.buf.Write(p[:n])
	}
	g.mu.Unlock()
	return n, err
}

func (g *greetingTap) stop(uc *upstreamConn) {
	g.mu.Lock()
	g.done = true
	s := g.buf.String()
	g.mu.Unlock()
	for _, ln := range strings.Split(strings.TrimRight(s, "\r\n"), "\r\n") {
		if ln != "" {
			uc.tracef("S: %s", ln)
		}
	}
}
