// Package upstream is the SMTP client towards the mail provider: it
// connects, secures the session (mandatory STARTTLS or implicit TLS, with
// certificate verification or pinning), authenticates, and runs
// transactions whose outcome it reports per recipient. It knows nothing of
// the spool or of the configuration file: cmd/plcmail turns [upstream] into
// Options, and the queue (package spool) decides what an outcome means for
// a queued message.
//
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
//     instead of a password and is never chosen here; cmd/plcmail sets
//     xoauth2 when an OAuth provider is configured. With no username, auto
//     means no AUTH.
//   - XOAUTH2 is spoken by this package rather than go-mail, whose Auth
//     QUITs after a refusal: an access token the server refuses is
//     replaced (Options.Refresh) and AUTH retried once in the same
//     session, so an expired token costs one round trip, not a deferral.
//   - 8-bit content goes out as stored, with BODY=8BITMIME, when the
//     upstream announces 8BITMIME; otherwise it is converted to
//     quoted-printable for that transaction (message.Downgrade8Bit).
//     Non-ASCII addresses need SMTPUTF8; without it each one is refused for
//     good with 553 5.6.7 (RFC 6531 §3.2; Postfix bounces them with 5.6.7
//     too).
package upstream

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/wneessen/go-mail/smtp"
)

// Security says how the session towards the upstream is protected.
type Security string

// Security values; they are the words of the configuration's
// upstream.security.
const (
	StartTLS Security = "starttls" // plain connect, then mandatory STARTTLS
	TLS      Security = "tls"      // implicit TLS from the first byte (port 465)
	None     Security = "none"     // no TLS at all: loopback hosts only
)

// Options is everything the client needs to reach one upstream.
type Options struct {
	Host     string // name or address; an IPv6 address may be in brackets
	Port     int
	Security Security
	Auth     string // auto | plain | login | cram-md5 | xoauth2 | none
	Username string
	// Secret returns the password, or for xoauth2 the access token. It is
	// called for each authentication, so a token source can refresh it and
	// a changed password file is read without a restart.
	Secret func(ctx context.Context) (string, error)
	// Refresh, for xoauth2, replaces an access token the server refused
	// (535, or a 334 error challenge) with a fresh one; Dial then retries
	// AUTH once in the same session. nil: no retry.
	Refresh func(ctx context.Context, rejected string) (string, error)
	// CAFile holds extra trust anchors (PEM) beside the system roots.
	CAFile string
	// Pins, when set, replace chain and name verification: the leaf
	// certificate's SHA-256 must be one of them.
	Pins [][32]byte
	// Hostname is the gateway's EHLO name.
	Hostname string
	// Timeout bounds dialing and each command (default 30s).
	Timeout time.Duration
}

// Validate checks what can be checked before the first connection: the
// TLS trust settings.
func (o *Options) Validate() error {
	_, err := o.tlsConfig()
	return err
}

func (o *Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return 30 * time.Second
	}
	return o.Timeout
}

// Conn is one connected, authenticated upstream session. It carries one
// transaction at a time and is not safe for concurrent use.
type Conn struct {
	c       *smtp.Client
	opts    *Options
	timeout time.Duration
	trace   io.Writer
	broken  bool

	mu       sync.Mutex // serialises trace writes
	authMech string     // during AUTH: how to present go-mail's redacted lines
	authSent bool
}

// Result is the outcome of one SMTP transaction.
type Result struct {
	Accepted []string    // recipients the upstream took the message for (after 250 to DATA)
	Deferred []string    // recipients to try again (4xx)
	Rejected []Rejection // recipients refused for good (5xx)
	Code     int         // final reply code of the transaction
	Reply    string      // final reply text
	// Downgrade says what was converted, and what stayed 8-bit, because
	// the upstream does not announce 8BITMIME ("" when nothing was to do).
	Downgrade string
}

// Rejection is a recipient the upstream refused with a 5xx reply.
type Rejection struct {
	Rcpt   string
	Code   int
	Reason string
}
