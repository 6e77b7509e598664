// Package mailertest runs a real SMTP upstream (internal/fakeupstream, a
// github.com/emersion/go-smtp server) on 127.0.0.1 for tests: a test CA
// generated per test, STARTTLS or implicit TLS, AUTH
// PLAIN/LOGIN/CRAM-MD5/XOAUTH2, and a record of every message and
// connection, so tests of any package can check what really went over the
// wire. It adds to fakeupstream what tests want: failures end the test, the
// server stops with it, and its settings come as configuration and client
// options.
package mailertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/fakeupstream"
	"github.com/plcmail/plcmail/internal/throwawayca"
	"github.com/plcmail/plcmail/upstream"
)

// Security values for Options.Security: how the server offers TLS.
const (
	StartTLS = fakeupstream.StartTLS // STARTTLS offered on a plaintext port (submission, 587)
	TLS      = fakeupstream.TLS      // implicit TLS from the first byte (submissions, 465)
	Plain    = fakeupstream.Plain    // no TLS at all, STARTTLS not offered
)

// Options configures an Upstream: fakeupstream's, whose zero value is a
// STARTTLS server with AUTH PLAIN and LOGIN whose certificate is valid for
// 127.0.0.1 and localhost. NewUpstream always keeps the transcript and logs
// the server's errors to the test.
type Options = fakeupstream.Options

// Received is one message the upstream accepted with 250 after DATA.
type Received = fakeupstream.Received

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

	srv  *fakeupstream.Server
	opts Options
	t    testing.TB
}

// NewUpstream starts a server on 127.0.0.1:0 and stops it at the end of the
// test.
func NewUpstream(t testing.TB, opts Options) *Upstream {
	t.Helper()
	opts.Transcript = true
	// The server's connection goroutines may log after the test ended
	// (a connection closed by Stop); testing forbids t.Logf then, so the
	// end of the test and each log line are ordered by logMu.
	var logMu sync.Mutex
	ended := false
	opts.Logf = func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if !ended {
			t.Logf("mailertest server: "+format, args...)
		}
	}
	srv, err := fakeupstream.Start(opts)
	if err != nil {
		t.Fatalf("mailertest: %v", err)
	}
	t.Cleanup(func() {
		srv.Stop()
		logMu.Lock()
		ended = true
		logMu.Unlock()
	})
	u := &Upstream{Addr: srv.Addr, Host: srv.Host, Port: srv.Port, CAPool: srv.CAPool, Fingerprint: srv.Fingerprint,
		srv: srv, opts: opts, t: t}
	u.opts.Security, u.opts.Username, u.opts.Password = srv.Security(), srv.Username(), srv.Password()
	u.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(u.CAFile, srv.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

// Stop closes the listener and every open connection: the upstream is down.
// It is called automatically at the end of the test.
func (u *Upstream) Stop() { u.srv.Stop() }

// Start restarts a stopped upstream on the same address.
func (u *Upstream) Start() {
	u.t.Helper()
	if err := u.srv.Restart(); err != nil {
		u.t.Fatalf("mailertest: %v", err)
	}
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
func Reply(code int, msg string) error { return fakeupstream.Reply(code, msg) }

// SetNo8BitMIME changes Options.No8BitMIME for the connections accepted
// from now on.
func (u *Upstream) SetNo8BitMIME(on bool) {
	u.t.Helper()
	if err := u.srv.SetNo8BitMIME(on); err != nil {
		u.t.Fatalf("mailertest: %v", err)
	}
}

// SetRcpt replaces the RCPT hook (nil accepts every recipient).
func (u *Upstream) SetRcpt(fn func(to string) error) { u.srv.SetRcpt(fn) }

// SetData replaces the DATA hook (nil accepts every message).
func (u *Upstream) SetData(fn func(m Received) error) { u.srv.SetData(fn) }

// Messages returns the messages accepted so far, in order.
func (u *Upstream) Messages() []Received { return u.srv.Messages() }

// Connections returns how many TCP connections were accepted so far.
func (u *Upstream) Connections() int { return u.srv.Connections() }

// Events returns what the server saw, in order: "connect", "auth PLAIN",
// "auth-ok user", "mail FROM", "rcpt TO", "data", "reset". A test asserts on
// it that, say, no AUTH and no MAIL happened.
func (u *Upstream) Events() []string { return u.srv.Events() }

// Transcript returns every line exchanged in plaintext (after TLS is
// established, the decrypted lines), all connections interleaved.
func (u *Upstream) Transcript() string { return u.srv.Transcript() }

// Wait blocks until at least n messages were accepted and returns them; it
// fails the test after timeout.
func (u *Upstream) Wait(t testing.TB, n int, timeout time.Duration) []Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := u.srv.Wait(ctx, n)
	if err != nil {
		t.Fatalf("mailertest: waited %v for %d messages, got %d; events: %q", timeout, n, len(m), u.Events())
		return nil
	}
	return m
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
