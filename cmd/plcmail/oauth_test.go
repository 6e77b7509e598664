package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/fakeoauth"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/oauth"
	"github.com/plcmail/plcmail/spool"
)

// oauthGateway is a configuration whose upstream only takes XOAUTH2 with a
// token that the in-process authorization server issued and still
// considers valid.
type oauthGateway struct {
	as   *fakeoauth.Server
	up   *mailertest.Upstream
	cfg  *testConfig
	path string
}

func newOAuthGateway(t *testing.T) *oauthGateway {
	t.Helper()
	as, err := fakeoauth.Start(fakeoauth.Options{Username: "plc@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { as.Close() })
	up := mailertest.NewUpstream(t, mailertest.Options{AuthMechs: []string{"XOAUTH2"}, RequireAuth: true, TokenValid: as.Valid})
	c := newTestConfig(t)
	u := up.Config()
	u.Password = "" // the token comes from [upstream.oauth]
	c.Upstream = upstreamTOML(u)
	caFile := filepath.Join(c.Dir, "oauth-ca.pem")
	if err := os.WriteFile(caFile, as.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	c.Extra = fmt.Sprintf("\n[upstream.oauth]\nprovider = \"microsoft-delegated\"\ntenant = \"contoso.example\"\nclient_id = %q\ntoken_url = %q\ndevice_auth_url = %q\nca_file = %q\n",
		as.ClientID(), as.TokenURL, as.DeviceAuthURL, caFile)
	if err := os.Mkdir(c.Spool, 0o700); err != nil { // as install.sh does
		t.Fatal(err)
	}
	return &oauthGateway{as: as, up: up, cfg: c, path: c.write(t)}
}

// login runs `plcmail login` and approves the code it prints.
func (g *oauthGateway) login(t *testing.T) string {
	t.Helper()
	out := &testenv.SyncBuffer{}
	e := &env{stdin: strings.NewReader(""), stdout: out, stderr: out, getenv: func(string) string { return "" }}
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), []string{"plcmail", "-c", g.path, "login"}, e) }()
	waitFor(t, "login prints a code", func() bool {
		_, rest, ok := strings.Cut(out.String(), "enter the code ")
		code, _, ok2 := strings.Cut(rest, "\n")
		return ok && ok2 && g.as.Approve(code)
	})
	if err := <-done; err != nil {
		t.Fatalf("login: %v\n%s", err, out.String())
	}
	return out.String()
}

func (g *oauthGateway) send(t *testing.T, subject string) {
	t.Helper()
	r := runCLI(t, "Subject: "+subject+"\n\nbody\n", "plcmail", "-c", g.path, "send", "ops@example.com")
	if r.code != 0 {
		t.Fatalf("send: %d %s", r.code, r.stderr)
	}
}

func (g *oauthGateway) tokenFile() string {
	return filepath.Join(g.cfg.Spool, "oauth", "127.0.0.1.json")
}

// TestOAuthGatewayLifecycle runs a Microsoft 365 delegated setup through
// its life: sign-in by device code, delivery, the access token expiring
// with mail queued (refresh, delivery goes on), the rotated refresh token
// surviving a restart of serve, the refresh token being revoked (nothing
// lost, status says to sign in), a new sign-in, and delivery of what
// waited. No token appears in the log, the status or the test output.
func TestOAuthGatewayLifecycle(t *testing.T) {
	g := newOAuthGateway(t)
	bin := plcmailBinary(t)

	// Before any sign-in: status says so, check accepts the config.
	if r := runCLI(t, "", "plcmail", "-c", g.path, "status"); !strings.Contains(r.stdout, "LOGIN NEEDED: not signed in yet") {
		t.Errorf("status before login:\n%s", r.stdout)
	}
	if r := runCLI(t, "", "plcmail", "-c", g.path, "check"); r.code != 0 {
		t.Fatalf("check: %s%s", r.stdout, r.stderr)
	}

	loginOut := g.login(t)
	if fi, err := os.Stat(g.tokenFile()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	if !strings.Contains(loginOut, g.tokenFile()) {
		t.Errorf("login does not say where the token went:\n%s", loginOut)
	}

	d := newDaemon(t, bin, g.path)
	d.start()
	if !d.waitRunning(15 * time.Second) {
		t.Fatalf("serve did not start:\n%s", d.logs())
	}
	g.send(t, "one")
	g.up.Wait(t, 1, 15*time.Second)

	// The provider ends the access token while serve still holds it:
	// the next delivery is refused once, refreshed, and goes through.
	g.as.ExpireAccessTokens()
	g.send(t, "two")
	g.send(t, "three")
	g.up.Wait(t, 3, 15*time.Second)
	if g.as.Refreshes() < 1 {
		t.Errorf("no refresh after expiry (%d)", g.as.Refreshes())
	}
	if err := d.stop(15 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, d.logs())
	}

	// Rotation persisted: the file holds the live refresh token; after
	// a restart with every access token gone, serve refreshes from it.
	st, err := oauth.ReadStore(g.tokenFile())
	if err != nil || !g.as.RefreshTokenValid(st.RefreshToken) {
		t.Fatalf("after stop the token file does not hold the live refresh token (%v)", err)
	}
	g.as.ExpireAccessTokens()
	before := g.as.Refreshes()
	d.start()
	if !d.waitRunning(15 * time.Second) {
		t.Fatalf("serve did not restart:\n%s", d.logs())
	}
	g.send(t, "four")
	g.up.Wait(t, 4, 15*time.Second)
	if g.as.Refreshes() <= before {
		t.Error("no refresh after the restart")
	}

	// Revoked: mail stays queued, the log and status say what to do.
	g.as.RevokeRefreshTokens()
	g.as.ExpireAccessTokens()
	g.send(t, "five")
	if !d.waitLog("run: plcmail -c "+g.path+" login", 15*time.Second) {
		t.Fatalf("the log does not say to sign in:\n%s", d.logs())
	}
	sum, err := spool.Peek(g.cfg.Spool)
	if err != nil || sum.Queued != 1 || sum.Dead != 0 {
		t.Fatalf("after revocation: queued %d, dead %d (%v); want 1 and 0", sum.Queued, sum.Dead, err)
	}
	status := runCLI(t, "", "plcmail", "-c", g.path, "status")
	if !strings.Contains(status.stdout, "LOGIN NEEDED since") || !strings.Contains(status.stdout, "invalid_grant") ||
		!strings.Contains(status.stdout, "plcmail -c "+g.path+" login") {
		t.Errorf("status does not say login needed:\n%s", status.stdout)
	}
	testOut := runCLI(t, "", "plcmail", "-c", g.path, "test", "--to", "ops@example.com")
	if testOut.code == 0 || !strings.Contains(testOut.stderr, "hint: the OAuth sign-in is missing or was revoked") {
		t.Errorf("test after revocation: %d\n%s%s", testOut.code, testOut.stdout, testOut.stderr)
	}

	// A new sign-in; the waiting mail goes out without a restart.
	g.login(t)
	if r := runCLI(t, "", "plcmail", "-c", g.path, "queue", "flush"); r.code != 0 {
		t.Fatalf("flush: %s", r.stderr)
	}
	g.up.Wait(t, 5, 15*time.Second)
	if s := runCLI(t, "", "plcmail", "-c", g.path, "status"); !strings.Contains(s.stdout, "signed in; token refreshed") {
		t.Errorf("status after login:\n%s", s.stdout)
	}
	testOK := runCLI(t, "", "plcmail", "-c", g.path, "test", "--to", "ops@example.com")
	if testOK.code != 0 || !strings.Contains(testOK.stdout, "C: AUTH XOAUTH2 ****") || !strings.Contains(testOK.stdout, "* OAuth2 microsoft-delegated") {
		t.Errorf("test: %d\n%s%s", testOK.code, testOK.stdout, testOK.stderr)
	}
	if err := d.stop(15 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}

	log := d.logs()
	t.Logf("serve log:\n%s", log)
	captured := log + status.stdout + testOut.stdout + testOut.stderr + testOK.stdout + testOK.stderr + loginOut
	secrets := g.as.Secrets()
	if len(secrets) < 6 {
		t.Fatalf("only %d tokens issued", len(secrets))
	}
	for _, sec := range secrets {
		if strings.Contains(captured, sec) {
			t.Errorf("a token (%s...) appears in the log or command output", sec[:6])
		}
	}
	if strings.Contains(captured, "rt-") || strings.Contains(captured, "at-") && strings.Contains(captured, "Bearer") {
		t.Error("token-like strings in the captured output")
	}
}
