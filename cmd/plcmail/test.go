package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/plcmail/plcmail/oauth"
	"github.com/plcmail/plcmail/upstream"
)

// cmdTest sends one mail upstream right now, bypassing the queue, and prints
// the SMTP dialogue with secrets masked: the first thing to run after
// editing [upstream], and what to paste into a support request.
func cmdTest(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "test")
	to := fs.String("to", "", "`ADDR` to send the test mail to (required)")
	entry := fs.String("upstream", "", "with several [[upstream]] entries: the `NAME` of the one to test (default: the first)")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("test takes no arguments (use --to ADDR)")
	}
	if *to == "" {
		return usageError("test: --to ADDR is required")
	}
	rcpt, err := parseAddress(*to)
	if err != nil {
		return usageError("test: --to %q: %v", *to, err)
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	u := &cfg.Upstream
	if *entry != "" {
		if u = upstreamNamed(cfg, *entry); u == nil {
			return usageError("test: %s has no upstream named %q (names: %s)", cfg.File, *entry, strings.Join(upstreamNames(cfg), ", "))
		}
	}
	// Each command has upstream.timeout; bound the whole dialogue as well.
	ctx, cancel := context.WithTimeout(ctx, 10*u.Timeout.D())
	defer cancel()
	server := fmt.Sprintf("%s:%d", u.Host, u.Port)
	msg := testMessage(cfg, rcpt, time.Now())
	if o := u.OAuth; o != nil {
		fmt.Fprintf(e.stdout, "* OAuth2 %s, client %s: the access token comes from the provider's token endpoint (shown as ****)\n", o.Provider, o.ClientID)
		if f := cfg.OAuthTokenFileFor(u); o.Provider != "microsoft-app-only" {
			fmt.Fprintf(e.stdout, "* refresh token file %s\n", f)
		}
	}
	err = upstream.SendNow(ctx, upstreamOptionsFor(cfg, u), cfg.Upstream.From, []string{rcpt}, msg, e.stdout)
	if err != nil {
		fmt.Fprintf(e.stderr, "plcmail: test: FAILED: %s did not accept the mail: %v\n", server, err)
		if h := testHint(err, u.Port, u.OAuth != nil); h != "" {
			fmt.Fprintf(e.stderr, "plcmail: test: hint: %s\n", h)
		}
		return errSilent
	}
	fmt.Fprintf(e.stdout, "OK: %s accepted the test mail for %s\n", server, rcpt)
	return nil
}

// testHint turns the failures people actually hit into the fix.
func testHint(err error, port int, oauthSet bool) string {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var se *upstream.SMTPError
	var ce *upstream.ConnError
	code := upstream.ReplyCode(err)
	switch {
	case errors.Is(err, oauth.ErrLoginNeeded):
		return "the OAuth sign-in is missing or was revoked: run plcmail login (as root or the gateway's user), then test again"
	case code == 535 && oauthSet:
		return "the provider refused a fresh OAuth token: Microsoft 365 app-only needs the Exchange service principal and Add-MailboxPermission for upstream.username; delegated needs SMTP.Send and SMTP AUTH enabled for the mailbox (see README)"
	case errors.Is(err, upstream.ErrNoStartTLS):
		return `the server does not offer STARTTLS: if it is an implicit-TLS port (465), set security = "tls"; otherwise check that nothing between here and the server strips STARTTLS`
	case errors.Is(err, upstream.ErrPinMismatch):
		return "the certificate changed (renewed?): check it and update upstream.tls_fingerprints"
	case errors.As(err, &unknownCA):
		return "the certificate is not signed by a trusted CA: add the CA with upstream.ca_file, or pin the certificate with upstream.tls_fingerprints"
	case errors.As(err, &hostname):
		return "the certificate is not issued for upstream.host: use the name the provider documents (e.g. smtp.gmail.com), not an IP address"
	case errors.Is(err, upstream.ErrAuthNotOffered) && oauthSet:
		return "XOAUTH2 is the mechanism of [upstream.oauth] and this server does not offer it: check upstream.host (smtp.office365.com, smtp.gmail.com)"
	case errors.Is(err, upstream.ErrAuthNotOffered):
		return "set upstream.auth to a mechanism the server offers, or to auto"
	case code == 535 || code == 534 || (errors.As(err, &ce) && ce.Stage == "auth"):
		return "authentication failed: check upstream.username and the password; Gmail needs an app password, Microsoft 365 needs SMTP AUTH enabled for the mailbox"
	case errors.As(err, &se) && se.Command == "MAIL" && code >= 500:
		return "the provider refuses the sender: upstream.from must usually be the account's own address"
	case errors.As(err, &ce) && ce.Stage == "dial":
		if strings.Contains(err.Error(), "timeout") {
			return fmt.Sprintf("no answer: a firewall may block outgoing port %d", port)
		}
		return "cannot connect: check upstream.host, upstream.port and the network"
	}
	return ""
}
