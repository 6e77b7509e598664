// Package smtpd is plcmail's optional SMTP listener for Ethernet boards and
// other LAN devices that cannot speak TLS to a provider.
//
// It is built on github.com/emersion/go-smtp and adds what a relay for
// embedded clients needs around it:
//
//   - access control before the greeting: peers outside allowed_networks, and
//     peers over the connection limits, are answered and closed at accept
//     (gateListener), so the listener is never an open relay;
//   - tolerance for sloppy firmware: commands sent without waiting, an
//     address as EHLO argument, bare-LF line endings, trailing blanks after
//     commands, MAIL without HELO (lineFixer, which injects an implicit
//     HELO with the peer's address), missing header fields and the blank
//     line after the header (repair), a sender without a domain (qualified
//     with gateway.hostname, as Postfix appends $myorigin);
//   - no 250 for anything but the client's own message: a bare-LF end of
//     data never gives a second message (lineFixer.data), a command cut off
//     by command_timeout is never run (gateConn.readErr), an address with a
//     quoted local part keeps its quotes (envelopeAddress), and AUTH is
//     refused for a while to an address that keeps failing (authGuard);
//   - durability: the 250 after DATA is sent only once spool.Spool.Enqueue
//     returned, i.e. the message is fsynced; any spool error is a 451 so the
//     client keeps the message and retries.
package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/plcmail/plcmail/message"
	"github.com/plcmail/plcmail/spool"
)

// shutdownGrace bounds how long Run waits, after its context is done, for
// messages that are being received to reach the spool.
const shutdownGrace = 10 * time.Second

// authFailDelay slows down password guessing; a board with the right
// password never pays it.
const authFailDelay = time.Second

// Options configures a Server. The limits are used as given: the caller
// applies its defaults (cmd/plcmail takes them from the [smtp] section, where
// config has filled them in), and New refuses a limit below 1 rather than
// guess one.
type Options struct {
	// Listen are the host:port addresses Run listens on.
	Listen []string
	// AllowedNetworks are the peers that may talk to the server; others
	// are answered 554 and closed before the greeting. IPv4 prefixes must
	// be plain IPv4, not IPv4-mapped IPv6, to match IPv4 peers.
	// None refuses every peer.
	AllowedNetworks []netip.Prefix

	MaxMessageBytes     int64         // larger messages get 552
	MaxRecipients       int           // per message; more get 452 4.5.3
	MaxConnections      int           // concurrent sessions in total; more get 421
	MaxConnectionsPerIP int           // concurrent sessions per peer address
	CommandTimeout      time.Duration // for each whole command line: 421 and close when it has not ended by then
	DataTimeout         time.Duration // whole DATA transfer, from the 354 to the final dot
	MaxLineLength       int           // bytes per line, commands and message

	// AllowedRecipients limits where peers may send mail: "example.com" or
	// "@example.com" allow a whole domain, "ops@example.com" one address.
	// Empty allows any recipient.
	AllowedRecipients []string

	// Accounts maps usernames to passwords for AUTH PLAIN and LOGIN; none
	// disables AUTH. New keeps only a hash of each password.
	Accounts map[string]string
	// RequireAuth refuses MAIL FROM until the client authenticated.
	RequireAuth bool
	// AuthMaxFailures failed AUTH attempts from one client address within
	// AuthFailureWindow lock that address out of AUTH for AuthLockout
	// (454 4.7.0, whatever the password). Required with Accounts.
	AuthMaxFailures   int
	AuthFailureWindow time.Duration
	AuthLockout       time.Duration

	// Certificate, if not nil, enables STARTTLS. It is a loaded key pair
	// rather than file names so that smtpd reads no files: the caller
	// checks the key's permissions and names its own setting in errors.
	Certificate *tls.Certificate

	// Hostname is the gateway's name: in the greeting, in Received and
	// Message-ID fields, and the domain given to a sender without one.
	Hostname string
	// Fallback is the header From for mail with the null sender.
	Fallback string
}

// check refuses options the server cannot work with: a zero limit would
// refuse every client or every recipient without saying why.
func (o *Options) check() error {
	for _, l := range []struct {
		name string
		ok   bool
	}{
		{"Hostname", o.Hostname != ""},
		{"MaxMessageBytes", o.MaxMessageBytes >= 1},
		{"MaxRecipients", o.MaxRecipients >= 1},
		{"MaxConnections", o.MaxConnections >= 1},
		{"MaxConnectionsPerIP", o.MaxConnectionsPerIP >= 1},
		{"CommandTimeout", o.CommandTimeout > 0},
		{"DataTimeout", o.DataTimeout > 0},
		{"MaxLineLength", o.MaxLineLength >= 1},
	} {
		if !l.ok {
			return fmt.Errorf("smtpd: Options.%s not set", l.name)
		}
	}
	if len(o.Accounts) > 0 {
		for _, l := range []struct {
			name string
			ok   bool
		}{
			{"AuthMaxFailures", o.AuthMaxFailures >= 1},
			{"AuthFailureWindow", o.AuthFailureWindow > 0},
			{"AuthLockout", o.AuthLockout > 0},
		} {
			if !l.ok {
				return fmt.Errorf("smtpd: Options.%s not set (needed with Accounts)", l.name)
			}
		}
	}
	for user, pw := range o.Accounts {
		if pw == "" {
			return fmt.Errorf("smtpd: account %q: empty password", user)
		}
	}
	return nil
}

// Server is the SMTP listener. Create it with New; run it with Run (the
// configured addresses) or Serve (a listener of the caller's, for tests).
type Server struct {
	opts  Options
	spool *spool.Spool
	wake  func()
	log   *slog.Logger

	accounts accounts
	guard    *authGuard
	rcpts    *recipientPolicy
	tls      *tls.Config
	srv      *smtp.Server
	listen   func(network, addr string) (net.Listener, error) // net.Listen; tests replace it
	retry    time.Duration                                    // listenRetry; tests shorten it

	mu     sync.Mutex
	gates  []*gateListener
	closed bool
}

// New prepares a listener with opts. Messages go to spool; wake, if not nil,
// is called after each one is queued so delivery starts at once.
func New(opts Options, spool *spool.Spool, wake func(), log *slog.Logger) (*Server, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:     opts,
		spool:    spool,
		wake:     wake,
		log:      log,
		accounts: newAccounts(opts.Accounts),
		guard:    newAuthGuard(opts.AuthMaxFailures, opts.AuthFailureWindow, opts.AuthLockout),
		rcpts:    newRecipientPolicy(opts.AllowedRecipients),
		listen:   net.Listen,
		retry:    listenRetry,
	}
	// The caller may reuse its slices after New; the server keeps copies,
	// and of the passwords only the hashes in s.accounts.
	s.opts.Accounts = nil
	s.opts.Listen = append([]string(nil), opts.Listen...)
	s.opts.AllowedNetworks = append([]netip.Prefix(nil), opts.AllowedNetworks...)
	if opts.Certificate != nil {
		s.tls = &tls.Config{Certificates: []tls.Certificate{*opts.Certificate}, MinVersion: tls.VersionTLS12}
	}

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = opts.Hostname
	srv.MaxMessageBytes = opts.MaxMessageBytes
	// max_recipients is enforced in Rcpt rather than by go-smtp, so that the
	// refusal is logged like every other.
	srv.MaxLineLength = opts.MaxLineLength
	srv.ReadTimeout = opts.CommandTimeout
	srv.WriteTimeout = opts.CommandTimeout
	srv.TLSConfig = s.tls
	// Every peer has passed the allowed_networks check before it can say
	// AUTH, and 8-bit boards cannot do TLS: AUTH in clear is allowed only
	// because strangers never get this far.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = errorLog{log}
	s.srv = srv
	return s, nil
}

// Run listens on every configured address and serves until ctx is done.
// Then it stops accepting, closes idle sessions, lets messages being received
// reach the spool (for up to 10 s) and returns nil.
//
// An address that is not (yet) configured on any interface is retried every
// few seconds instead of failing: on a Raspberry Pi or an industrial PC the
// LAN interface often comes up after the gateway, and the serial links must
// not stop because of it. Any other listen error (port in use, no
// permission) is returned at once.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(s.opts.Listen))
	for _, addr := range s.opts.Listen {
		go func() { errc <- s.listenAndServe(ctx, addr) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	s.shutdown(shutdownGrace)
	return err
}

// listenRetry is how often an address that is not available is retried.
const listenRetry = 5 * time.Second

func (s *Server) listenAndServe(ctx context.Context, addr string) error {
	for tries := 0; ; tries++ {
		l, err := s.listen("tcp", addr)
		if err == nil {
			s.log.Info("smtp: listening", "addr", l.Addr().String())
			return s.Serve(l)
		}
		if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return fmt.Errorf("smtpd: %w", err)
		}
		if tries%int(time.Minute/s.retry+1) == 0 { // first time, then about every minute
			s.log.Warn("smtp: address not available yet, retrying", "addr", addr, "err", err, "every", s.retry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.retry):
		}
	}
}

// Serve accepts connections on l until Close (or Run's shutdown). Access
// control and connection limits apply as for the configured addresses.
func (s *Server) Serve(l net.Listener) error {
	g := newGateListener(l, s.opts.AllowedNetworks, s.opts.MaxConnections, s.opts.MaxConnectionsPerIP, s.log)
	g.tlsOffered = s.tls != nil
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.gates = append(s.gates, g)
	s.mu.Unlock()
	// If Close runs between the unlock and go-smtp registering g, Close has
	// closed g's listener itself, so srv.Serve returns at once.
	err := s.srv.Serve(g)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close stops the listeners and drops every session at once. A message whose
// 250 was not sent yet is not lost: the client still has it and retries.
func (s *Server) Close() error {
	s.stopListening()
	err := s.srv.Close()
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	s.closeAll()
	return err
}

// stopListening marks the server closed and closes every listener.
func (s *Server) stopListening() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.eachGate(func(g *gateListener) { g.Listener.Close() })
}

func (s *Server) shutdown(grace time.Duration) {
	s.stopListening()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	done := make(chan struct{})
	go func() {
		s.srv.Shutdown(ctx) // closes the listeners, waits for the sessions
		close(done)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.eachGate((*gateListener).closeIdle)
		select {
		case <-done:
			return
		case <-ctx.Done():
			s.closeAll()
			<-done
			return
		case <-tick.C:
		}
	}
}

func (s *Server) closeAll() { s.eachGate((*gateListener).closeAll) }

func (s *Server) eachGate(f func(*gateListener)) {
	s.mu.Lock()
	gates := append([]*gateListener(nil), s.gates...)
	s.mu.Unlock()
	for _, g := range gates {
		f(g)
	}
}

// ActiveSessions returns the number of open client connections.
func (s *Server) ActiveSessions() int {
	n := 0
	s.eachGate(func(g *gateListener) { n += g.active() })
	return n
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	nc := c.Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	gc, ok := nc.(*gateConn)
	if !ok { // cannot happen: every connection comes through a gateListener
		return nil, errors.New("smtpd: connection did not pass access control")
	}
	return &session{srv: s, conn: c, gc: gc, peer: gc.ip.String()}, nil
}

// session is one client connection's SMTP state after HELO/EHLO.
type session struct {
	srv  *Server
	conn *smtp.Conn
	gc   *gateConn
	peer string

	user string // authenticated user, "" if none

	from  string
	rcpts []string

	qualifiedLogged bool // the session's first qualified sender was logged
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) reject(stage string, err *smtp.SMTPError, args ...any) error {
	ss.srv.log.Warn("smtp: rejected", append([]any{"peer", ss.peer, "stage", stage, "code", err.Code, "reason", err.Message}, args...)...)
	return err
}

func (ss *session) AuthMechanisms() []string {
	if len(ss.srv.accounts) == 0 {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if err := ss.cutOff("AUTH"); err != nil {
		return nil, err
	}
	if len(ss.srv.accounts) == 0 {
		return nil, smtp.ErrAuthUnsupported
	}
	if err := ss.lockedOut(); err != nil {
		return nil, err
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return ss.authFailed(username, "authorization identity differs")
			}
			return ss.authenticate(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{authenticate: ss.authenticate}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) authenticate(username, password string) error {
	// Checked again: a lockout may have begun, from another connection,
	// while this client was sending its credentials.
	if err := ss.lockedOut(); err != nil {
		return err
	}
	if !ss.srv.accounts.check(username, password) {
		return ss.authFailed(username, "wrong username or password")
	}
	ss.user = username
	ss.srv.log.Info("smtp: authenticated", "peer", ss.peer, "user", username)
	return nil
}

func (ss *session) authFailed(username, why string) error {
	ss.srv.log.Warn("smtp: rejected", "peer", ss.peer, "stage", "AUTH", "code", 535, "reason", why, "user", username)
	if until, started := ss.srv.guard.failed(ss.gc.ip); started {
		ss.srv.log.Warn("smtp: AUTH locked out for this client address",
			"peer", ss.peer, "failures", ss.srv.opts.AuthMaxFailures, "window", ss.srv.opts.AuthFailureWindow,
			"until", until.Format(time.RFC3339), "setting", "smtp.auth_max_failures")
	}
	time.Sleep(authFailDelay)
	return smtp.ErrAuthFailed
}

// errAuthLocked answers AUTH from an address that is locked out. 454 4.7.0
// is RFC 4954's temporary authentication failure: the client may try again
// later, and a board with the right password will succeed once the lockout
// ends.
var errAuthLocked = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
	Message: "Too many failed authentications from your address, try again later"}

// lockedOut returns errAuthLocked while the client's address is locked out.
// Refusals during a lockout are not logged one by one: the lockout was.
func (ss *session) lockedOut() error {
	if until, ok := ss.srv.guard.locked(ss.gc.ip); ok {
		ss.srv.log.Debug("smtp: AUTH refused, address locked out", "peer", ss.peer, "until", until.Format(time.RFC3339))
		return errAuthLocked
	}
	return nil
}

// errCutOff answers a command that go-smtp parsed from a line the client
// never finished: the connection timed out or broke in the middle of it.
var errCutOff = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
	Message: "Command line incomplete at timeout, closing connection"}

// cutOff refuses, and ends the session, when the command being handled
// came from a cut-off line (see gateConn.readErr). In clear lineFixer
// already drops such a line; inside TLS this is the only guard.
func (ss *session) cutOff(stage string) error {
	if ss.gc.readErr == nil {
		return nil
	}
	ss.gc.hangUp()
	return ss.reject(stage, errCutOff, "err", ss.gc.readErr.Error())
}

// errAfterBareLF answers MAIL on a connection whose last message ended with
// a bare-LF end of data (see lineFixer.data): 421, and the session ends, so
// a board sends its next alarm on a new connection, and text smuggled after
// the lenient end never becomes a message.
var errAfterBareLF = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 5, 0},
	Message: "The last message ended with a bare LF: send the next one on a new connection"}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := ss.cutOff("MAIL"); err != nil {
		return err
	}
	if strings.EqualFold(from, lenientSender) {
		ss.gc.hangUp()
		return ss.reject("MAIL", errAfterBareLF)
	}
	if ss.srv.opts.RequireAuth && ss.user == "" {
		return ss.reject("MAIL", errAuthRequired, "from", from)
	}
	if local, ok := cutUnqualified(from); ok {
		if strings.Contains(local, "@") { // "a@b@<marker>": the client wrote the marker itself
			return ss.reject("MAIL", errBadAddress, "from", from)
		}
		// What Postfix does for "MAIL FROM:<plc>" with its defaults
		// (append_at_myorigin = yes): the board's name at the gateway.
		// gateway.hostname is plcmail's $myorigin, the name the gateway
		// already uses in EHLO and Message-ID. Repair then puts the
		// qualified address in a From field it adds, so header and
		// envelope agree.
		from = local + "@" + ss.srv.opts.Hostname
		if !ss.qualifiedLogged {
			ss.qualifiedLogged = true
			ss.srv.log.Info("smtp: sender without domain, appended gateway.hostname", "peer", ss.peer, "sent", local, "from", from)
		}
	}
	if !bareAddress(from) {
		return ss.reject("MAIL", errBadAddress, "from", from)
	}
	ss.from = envelopeAddress(from)
	ss.rcpts = ss.rcpts[:0]
	return nil
}

var errBadAddress = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Address not accepted by this gateway (blanks, brackets or control characters)"}

// bareAddress reports whether a go-smtp-parsed address can be queued: the
// spool and the upstream command line take no blanks, brackets or controls
// (a quoted local part such as "a b"@example.com).
func bareAddress(a string) bool {
	for _, c := range []byte(a) {
		if c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// cutUnqualified reports whether lineFixer marked addr as sent without a
// domain (see unqualifiedEnd), and returns the local part the client sent.
func cutUnqualified(addr string) (local string, ok bool) {
	const marker = "@" + unqualifiedDomain
	if len(addr) <= len(marker) || !strings.EqualFold(addr[len(addr)-len(marker):], marker) {
		return "", false
	}
	return addr[:len(addr)-len(marker)], true
}

var errRelayDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied: recipient not in allowed_recipients"}

// errUnqualifiedRcpt refuses "RCPT TO:<ops>". Postfix would append
// @$myorigin and, as $myorigin is one of its own domains, deliver to the
// local mailbox "ops". plcmail has no local mailboxes: all mail goes to the
// provider, and "ops@gateway.hostname" would be a domain the provider cannot
// deliver to (or, worse, a real host that is not the intended one), to be
// found out only from a bounce to a board that cannot read bounces. Nothing
// in the configuration says who "ops" is (upstream.from is a sender, and
// alarm recipients belong to [[alarm]] entries), so a permanent refusal the
// board's log can show at once is the useful answer. 553 with 5.1.3 is RFC
// 5321's and RFC 3463's reply for a mailbox name whose syntax is not
// allowed, the same as errBadAddress. This holds for "<postmaster>" too,
// which RFC 5321 wants accepted by servers that have a postmaster mailbox;
// the gateway has none, and go-smtp alone answers 501 to it.
var errUnqualifiedRcpt = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
	Message: "Recipient must be a full address user@domain"}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := ss.cutOff("RCPT"); err != nil {
		return err
	}
	if local, ok := cutUnqualified(to); ok {
		return ss.reject("RCPT", errUnqualifiedRcpt, "from", ss.from, "to", local)
	}
	if to == "" || !bareAddress(to) {
		return ss.reject("RCPT", errBadAddress, "from", ss.from, "to", to)
	}
	to = envelopeAddress(to)
	if len(ss.rcpts) >= ss.srv.opts.MaxRecipients {
		return ss.reject("RCPT", &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3},
			Message: fmt.Sprintf("Too many recipients (max_recipients = %d)", ss.srv.opts.MaxRecipients)}, "from", ss.from, "to", to)
	}
	if !ss.srv.rcpts.allows(to) {
		return ss.reject("RCPT", errRelayDenied, "from", ss.from, "to", to)
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

var (
	errSpool       = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot queue the message now, try again later"}
	errDataTimeout = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout while receiving the message"}
	errLineTooLong = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Line too long"}
	errDataRead    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error while receiving the message"}
)

// Data receives the message, repairs it and queues it durably. Only when
// Enqueue returned nil is the message on disk, and only then does the client
// get its 250.
func (ss *session) Data(r io.Reader) error {
	if err := ss.cutOff("DATA"); err != nil {
		return err
	}
	ss.gc.setBusy(true)
	defer ss.gc.setBusy(false)
	// go-smtp's per-command deadline was set before it read "DATA"; the
	// whole transfer gets data_timeout instead, so a slow sender has time
	// but a stalled one cannot hold the session forever.
	ss.conn.Conn().SetReadDeadline(time.Now().Add(ss.srv.opts.DataTimeout))

	data, err := io.ReadAll(r)
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, smtp.ErrDataTooLarge):
			return ss.reject("DATA", smtp.ErrDataTooLarge, "from", ss.from, "limit", ss.srv.opts.MaxMessageBytes)
		case errors.Is(err, smtp.ErrTooLongLine):
			return ss.reject("DATA", errLineTooLong, "from", ss.from, "limit", ss.srv.opts.MaxLineLength)
		case errors.As(err, &ne) && ne.Timeout():
			return ss.reject("DATA", errDataTimeout, "from", ss.from)
		default:
			return ss.reject("DATA", errDataRead, "from", ss.from, "err", err.Error())
		}
	}
	data, nul, cr := cleanText(data)
	if nul > 0 || cr > 0 {
		ss.srv.log.Info("smtp: message text normalised", "peer", ss.peer, "from", ss.from, "nul_dropped", nul, "bare_cr", cr)
	}
	now := time.Now()
	msg := message.Repair(data, message.RepairInfo{
		From:     ss.from,
		Hostname: ss.srv.opts.Hostname,
		Fallback: ss.srv.opts.Fallback,
		Received: ss.received(now),
		Now:      now,
	})
	rcpts := append([]string(nil), ss.rcpts...)
	id, err := ss.srv.spool.Enqueue(spool.Submission{
		Envelope: spool.Envelope{From: ss.from, To: rcpts},
		Data:     msg,
		Source:   "smtp:" + ss.peer,
	})
	if err != nil {
		ss.srv.log.Error("smtp: cannot queue message", "peer", ss.peer, "from", ss.from, "err", err)
		return ss.reject("DATA", errSpool, "from", ss.from)
	}
	if ss.srv.wake != nil {
		ss.srv.wake()
	}
	ss.srv.log.Info("smtp: queued", "peer", ss.peer, "helo", ss.conn.Hostname(), "from", ss.from, "rcpts", len(rcpts), "size", len(msg), "id", id, "user", ss.user)
	// go-smtp replies with the code of an *SMTPError returned from Data; a
	// 250 carrying the queue id lets the sender's log be matched with
	// `plcmail queue list`, as Postfix's "queued as" does.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// received builds the value of the Received: field for the current message.
func (ss *session) received(now time.Time) string {
	proto := "SMTP"
	if _, isTLS := ss.conn.TLSConnectionState(); isTLS || ss.user != "" {
		proto = "ESMTP"
		if isTLS {
			proto += "S"
		}
		if ss.user != "" {
			proto += "A"
		}
	}
	var b strings.Builder
	b.WriteString("from ")
	b.WriteString(printable(ss.conn.Hostname(), 64))
	b.WriteString(" ([")
	b.WriteString(ss.peer)
	b.WriteString("])\r\n\tby ")
	b.WriteString(ss.srv.opts.Hostname)
	b.WriteString(" (plcmail) with ")
	b.WriteString(proto)
	if len(ss.rcpts) == 1 {
		b.WriteString("\r\n\tfor <")
		b.WriteString(printable(ss.rcpts[0], 256))
		b.WriteString(">")
	}
	b.WriteString(";\r\n\t")
	b.WriteString(now.Format(time.RFC1123Z))
	return b.String()
}

// printable keeps s safe inside a header field: printable ASCII, bounded.
func printable(s string, max int) string {
	b := []byte(s)
	if len(b) > max {
		b = b[:max]
	}
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' {
			b[i] = '?'
		}
	}
	return string(b)
}

func (ss *session) Reset() {
	ss.from = ""
	ss.rcpts = ss.rcpts[:0]
}

func (ss *session) Logout() error { return nil }

// recipientPolicy is allowed_recipients: whole domains and single addresses,
// compared case-insensitively. A nil policy allows everything.
type recipientPolicy struct {
	domains map[string]bool
	addrs   map[string]bool
}

func newRecipientPolicy(list []string) *recipientPolicy {
	if len(list) == 0 {
		return nil
	}
	p := &recipientPolicy{domains: map[string]bool{}, addrs: map[string]bool{}}
	for _, e := range list {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case strings.HasPrefix(e, "@"):
			p.domains[e[1:]] = true
		case strings.Contains(e, "@"):
			p.addrs[e] = true
		default:
			p.domains[e] = true
		}
	}
	return p
}

func (p *recipientPolicy) allows(addr string) bool {
	if p == nil {
		return true
	}
	addr = strings.ToLower(addr)
	if p.addrs[addr] {
		return true
	}
	i := strings.LastIndexByte(addr, '@')
	return i > 0 && p.domains[addr[i+1:]]
}

// errorLog routes go-smtp's internal error messages to slog.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.log.Warn("smtp: " + fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any) {
	e.log.Warn("smtp: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// envelopeAddress returns an address as go-smtp parsed it from MAIL or RCPT
// in the form it is queued, checked and sent upstream: with its local part
// quoted again when it is not a dot-string.
//
// go-smtp hands the session the local part of <"victim@gmail.com"@example.com>
// without its quotes, victim@gmail.com@example.com, an address that names
// a different mailbox, or none (the upstream refuses it, and the message
// dies as a dead letter after our 250; a lax upstream might route it to
// gmail.com). The domain is what follows the last "@": RFC 5321 allows "@"
// only inside a quoted local part, never in a domain, and it is the domain
// allowed_recipients checks and the upstream routes on. The local part is
// quoted again with the RFC 5321 Quoted-string rules ('"' and '\'
// escaped) when it is not a Dot-string; a Dot-string local part stays as it
// is, quoted or not, as the quotes are then not part of the address
// (RFC 5322 3.2.4). This is Postfix's handling too: its internal form is
// unquoted, split at the last "@", and quote_821_local quotes it again for
// the next hop. Blanks and controls are refused before (bareAddress): the
// spool and the command line to the upstream take none.
func envelopeAddress(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || dotString(addr[:i]) {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(addr[:i]) {
		if c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	b.WriteString(addr[i:])
	return b.String()
}

// dotString reports whether s is an RFC 5321 Dot-string: atoms of atext
// (with RFC 6531's UTF-8) joined by single dots.
func dotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80, c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// cleanText drops NUL bytes from a message and makes every bare CR a line
// end, with the rule lineFixer.data applies in clear: CRs right before an LF
// belong to that line end ("\r\r\n" is one), any other CR is a line end
// of its own. It returns the text and how many NULs and bare CRs it found.
// Bare LF is left to message.Repair.
//
// Why not forward them: NUL is not allowed in mail (RFC 5322 3.5), a C
// board that sends sizeof(buf) bytes sends its string terminator with the
// text, and MTAs written in C cut the line there or refuse the message;
// dropping it gives the text the board meant. A bare CR is not allowed
// either; providers refuse or rewrite it, and inside the header a lone CR
// hides what follows from some parsers but not from others. Both are
// normalised rather than refused because the client of this listener is a
// board that cannot correct its firmware in answer to a 5xx, and refusing
// would lose the alarm.
func cleanText(b []byte) ([]byte, int, int) {
	if bytes.IndexByte(b, 0) < 0 && !hasBareCR(b) {
		return b, 0, 0
	}
	out := make([]byte, 0, len(b)+16)
	var nul, cr, pend int
	for _, c := range b {
		switch c {
		case 0:
			nul++
			continue
		case '\r':
			pend++
			continue
		case '\n':
			if pend > 0 {
				cr += pend - 1
				out = append(out, '\r')
			}
			out = append(out, '\n')
			pend = 0
			continue
		}
		for ; pend > 0; pend-- {
			out = append(out, '\r', '\n')
			cr++
		}
		out = append(out, c)
	}
	for ; pend > 0; pend-- {
		out = append(out, '\r', '\n')
		cr++
	}
	return out, nul, cr
}

func hasBareCR(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
	}
	return false
}
