package upstream

import (
	"errors"
	"fmt"
	"net/textproto"
)

// ErrNoStartTLS is the temporary failure for a "starttls" upstream that
// does not offer STARTTLS (misconfigured, or an attacker stripped it).
var ErrNoStartTLS = errors.New("upstream does not offer STARTTLS; refusing to send credentials or mail in clear")

// ErrAuthNotOffered is the failure for an upstream.auth mechanism (XOAUTH2
// with [upstream.oauth]) that the server's EHLO does not list: it is a
// configuration mistake, not a wrong password, and is told apart from one.
var ErrAuthNotOffered = errors.New("server does not offer this AUTH mechanism")

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
