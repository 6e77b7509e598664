package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail/smtp"
)

// Dial connects, says EHLO, secures the session as configured and
// authenticates. trace, when not nil, receives the dialogue with secrets
// masked. Every error is a *ConnError.
func Dial(ctx context.Context, opts Options, trace io.Writer) (*Conn, error) {
	o := &opts
	uc := &Conn{opts: o, timeout: o.timeout(), trace: trace}
	tconf, err := o.tlsConfig()
	if err != nil {
		return nil, &ConnError{"tls", err}
	}
	if o.Security == None && !IsLoopbackHost(o.Host) {
		return nil, &ConnError{"dial", fmt.Errorf("security \"none\" is only allowed towards loopback, not %q", o.Host)}
	}
	conn, tlsOn, err := uc.connect(ctx, tconf)
	if err != nil {
		return nil, err
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
	fail := func(stage string, err error) (*Conn, error) {
		c.Close()
		return nil, &ConnError{stage, err}
	}
	c.UpdateDeadline(uc.timeout)
	if err := c.Hello(o.Hostname); err != nil {
		return fail("ehlo", err)
	}
	if o.Security == StartTLS {
		if err := uc.startTLS(tconf); err != nil {
			return fail("starttls", err)
		}
		tlsOn = true
	}
	if err := uc.auth(ctx, tlsOn); err != nil {
		return fail("auth", err)
	}
	return uc, nil
}

// connect opens the TCP connection and, for implicit TLS, completes the
// handshake; tlsOn reports whether it did.
func (uc *Conn) connect(ctx context.Context, tconf *tls.Config) (conn net.Conn, tlsOn bool, err error) {
	o := uc.opts
	addr := net.JoinHostPort(strings.Trim(o.Host, "[]"), strconv.Itoa(o.Port))
	uc.tracef("* connecting to %s (security %s)", addr, o.Security)
	d := net.Dialer{Timeout: uc.timeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, &ConnError{"dial", err}
	}
	raw.SetDeadline(time.Now().Add(uc.timeout))
	if o.Security != TLS {
		return raw, false, nil
	}
	tc := tls.Client(raw, tconf)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, false, &ConnError{"tls", err}
	}
	uc.traceTLS(tc.ConnectionState())
	return tc, true, nil
}

// startTLS upgrades the session; there is no fallback to cleartext.
func (uc *Conn) startTLS(tconf *tls.Config) error {
	c := uc.c
	if ok, _ := c.Extension("STARTTLS"); !ok {
		uc.tracef("* %v", ErrNoStartTLS)
		c.Quit()
		return ErrNoStartTLS
	}
	c.UpdateDeadline(uc.timeout)
	if err := c.StartTLS(tconf); err != nil {
		return err
	}
	cs, ok := c.TLSConnectionState()
	if !ok || !cs.HandshakeComplete {
		return errors.New("TLS not established")
	}
	uc.traceTLS(cs)
	return nil
}

// auth authenticates as configured. Credentials only ever go over TLS, or
// in clear to a loopback host with security "none".
func (uc *Conn) auth(ctx context.Context, tlsOn bool) error {
	o := uc.opts
	mech := strings.ToLower(o.Auth)
	if mech == "none" || (mech == "auto" && o.Username == "") {
		return nil
	}
	if !tlsOn && !(o.Security == None && IsLoopbackHost(o.Host)) {
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
	} else if offered != "" && !slices.Contains(strings.Fields(strings.ToUpper(offered)), strings.ToUpper(mech)) {
		// A mechanism the server does not list only earns a 504 that reads
		// like a wrong password; say what it offers instead, before any
		// credential is sent.
		uc.tracef("* server offers AUTH %s, not %s", offered, strings.ToUpper(mech))
		return fmt.Errorf("%w: it offers AUTH %q, not %s", ErrAuthNotOffered, offered, strings.ToUpper(mech))
	}
	var secret string
	if o.Secret != nil {
		var err error
		if secret, err = o.Secret(ctx); err != nil {
			return err
		}
	}
	if mech == "xoauth2" {
		return uc.authXOAuth2(ctx, secret)
	}
	host := strings.Trim(o.Host, "[]")
	var a smtp.Auth
	switch mech {
	case "plain":
		// allowUnenc: our own check above is the guard; go-mail's cannot
		// see TLS through the trace wrapper.
		a = smtp.PlainAuth("", o.Username, secret, host, true)
	case "login":
		a = smtp.LoginAuth(o.Username, secret, host, true)
	case "cram-md5":
		a = smtp.CRAMMD5Auth(o.Username, secret)
	default:
		return fmt.Errorf("unknown auth %q", mech)
	}
	uc.tracef("* AUTH %s as %s (secrets masked)", strings.ToUpper(mech), o.Username)
	uc.c.UpdateDeadline(uc.timeout)
	uc.mu.Lock()
	uc.authMech = strings.ToUpper(mech)
	uc.mu.Unlock()
	err := uc.c.Auth(a)
	uc.mu.Lock()
	uc.authMech = ""
	uc.mu.Unlock()
	return err
}

// pickAuth implements auth = "auto" (see the policy in the package doc).
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

// Noop checks that an idle connection still answers; on failure the
// connection is marked broken.
func (uc *Conn) Noop() error {
	uc.c.UpdateDeadline(uc.timeout)
	err := uc.c.Noop()
	if err != nil {
		uc.broken = true
	}
	return err
}

// Broken reports whether the connection can no longer carry a transaction.
func (uc *Conn) Broken() bool { return uc.broken }

// Close says QUIT when the connection is still usable, then closes it.
func (uc *Conn) Close() {
	if !uc.broken {
		uc.c.UpdateDeadline(uc.timeout)
		if uc.c.Quit() == nil {
			return
		}
	}
	uc.c.Close()
}
