package upstream_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/fakeoauth"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/oauth"
	"github.com/plcmail/plcmail/upstream"
)

// TestXOAuth2RefusedTokenRefreshedInSession: the provider stops taking an
// access token our clock still believes valid; the client gets a fresh
// one and authenticates on the same connection, for both ways providers
// refuse (Microsoft's plain 535, Gmail's 334 error challenge first).
func TestXOAuth2RefusedTokenRefreshedInSession(t *testing.T) {
	for _, gmail := range []bool{false, true} {
		t.Run(map[bool]string{false: "microsoft 535", true: "gmail 334 challenge"}[gmail], func(t *testing.T) {
			as, err := fakeoauth.Start(fakeoauth.Options{ClientSecret: "client-s3cret"})
			if err != nil {
				t.Fatal(err)
			}
			defer as.Close()
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(as.CAPEM)
			src, err := oauth.New(oauth.Options{Provider: oauth.MicrosoftAppOnly, Tenant: "t", ClientID: as.ClientID(),
				ClientSecret: func() (string, error) { return "client-s3cret", nil }, TokenURL: as.TokenURL,
				HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}})
			if err != nil {
				t.Fatal(err)
			}
			u := mailertest.NewUpstream(t, mailertest.Options{AuthMechs: []string{"XOAUTH2"}, RequireAuth: true,
				TokenValid: as.Valid, XOAuth2ErrorChallenge: gmail})
			opts := u.Options()
			opts.Auth = "xoauth2"
			opts.Secret = src.Token
			opts.Refresh = src.Refresh
			var d bytes.Buffer
			if err := sendOne(t, opts, &d); err != nil {
				t.Fatalf("first: %v\n%s", err, d.String())
			}
			as.ExpireAccessTokens()
			d.Reset()
			if err := sendOne(t, opts, &d); err != nil {
				t.Fatalf("after expiry: %v\n%s", err, d.String())
			}
			out := d.String()
			t.Logf("dialogue:\n%s", out)
			if u.Connections() != 2 || len(u.Messages()) != 2 {
				t.Errorf("%d connections, %d messages; want 2 and 2 (the retry on the same connection)", u.Connections(), len(u.Messages()))
			}
			for _, w := range []string{"S: 535", "refused the access token", "S: 235"} {
				if !strings.Contains(out, w) {
					t.Errorf("dialogue lacks %q", w)
				}
			}
			if gmail && !strings.Contains(out, `S: 334 {"status":"401"`) {
				t.Error("dialogue lacks the decoded error challenge")
			}
			for _, sec := range as.Secrets() {
				if strings.Contains(out, sec) {
					t.Errorf("dialogue shows a token or secret")
				}
			}
			// Without Refresh the refusal is a temporary AUTH failure.
			as.ExpireAccessTokens()
			opts.Refresh = nil
			err = sendOne(t, opts, nil)
			var ce *upstream.ConnError
			if !errors.As(err, &ce) || ce.Stage != "auth" || upstream.ReplyCode(err) != 535 {
				t.Fatalf("err = %v, want auth ConnError 535", err)
			}
		})
	}
}

// TestXOAuth2LoginNeededIsTemporary: when no token can be had, Dial
// fails at the auth stage (temporary for every message) with the
// instruction, and sends no AUTH at all.
func TestXOAuth2LoginNeededIsTemporary(t *testing.T) {
	src, err := oauth.New(oauth.Options{Provider: oauth.MicrosoftDelegated, Tenant: "t", ClientID: "c",
		TokenURL: "https://127.0.0.1:1/token", TokenFile: filepath.Join(t.TempDir(), "oauth", "x.json")})
	if err != nil {
		t.Fatal(err)
	}
	u := mailertest.NewUpstream(t, mailertest.Options{AuthMechs: []string{"XOAUTH2"}, RequireAuth: true})
	opts := u.Options()
	opts.Auth, opts.Secret, opts.Refresh = "xoauth2", src.Token, src.Refresh
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = upstream.Dial(ctx, opts, nil)
	var ce *upstream.ConnError
	if !errors.As(err, &ce) || ce.Stage != "auth" || !errors.Is(err, oauth.ErrLoginNeeded) || !strings.Contains(err.Error(), "plcmail login") {
		t.Fatalf("err = %v", err)
	}
	for _, e := range u.Events() {
		if strings.HasPrefix(e, "auth") {
			t.Errorf("server saw %q", e)
		}
	}
}
