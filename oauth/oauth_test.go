package oauth_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/fakeoauth"
	"github.com/plcmail/plcmail/oauth"
)

func startServer(t *testing.T, opts fakeoauth.Options) *fakeoauth.Server {
	t.Helper()
	s, err := fakeoauth.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func trusting(t *testing.T, s *fakeoauth.Server) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM) {
		t.Fatal("bad CA PEM")
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func source(t *testing.T, s *fakeoauth.Server, p oauth.Provider, file string, now func() time.Time) *oauth.Source {
	t.Helper()
	src, err := oauth.New(oauth.Options{Provider: p, Tenant: "contoso.example", ClientID: s.ClientID(),
		ClientSecret: func() (string, error) { return "client-s3cret", nil },
		TokenURL:     s.TokenURL, DeviceAuthURL: s.DeviceAuthURL, AuthURL: s.AuthURL,
		TokenFile: file, HTTPClient: trusting(t, s), Now: now, LoginCommand: "plcmail -c test.toml login"})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// syncBuf is a bytes buffer safe for a writer and a poller.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuf) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *syncBuf) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// deviceLogin signs in with the device flow, approving the code that
// Login prints as the person in the browser would.
func deviceLogin(t *testing.T, s *fakeoauth.Server, src *oauth.Source) string {
	t.Helper()
	var out syncBuf
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { done <- src.Login(ctx, strings.NewReader(""), &out) }()
	for {
		if _, rest, ok := strings.Cut(out.String(), "enter the code "); ok {
			if code, _, ok := strings.Cut(rest, "\n"); ok {
				if !s.Approve(code) {
					t.Fatalf("server does not know the printed code %q", code)
				}
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("login ended before printing a code: %v\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("login: %v\n%s", err, out.String())
	}
	return out.String()
}

func TestDeviceLoginStoresRefreshToken(t *testing.T) {
	s := startServer(t, fakeoauth.Options{})
	file := filepath.Join(t.TempDir(), "oauth", "smtp.json")
	src := source(t, s, oauth.MicrosoftDelegated, file, nil)
	out := deviceLogin(t, s, src)
	if !strings.Contains(out, s.URL+"/device") {
		t.Errorf("login output lacks the verification URL:\n%s", out)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %04o, want 0600", fi.Mode().Perm())
	}
	st, err := oauth.ReadStore(file)
	if err != nil {
		t.Fatal(err)
	}
	if !s.RefreshTokenValid(st.RefreshToken) || st.ClientID != s.ClientID() || st.Provider != "microsoft-delegated" {
		t.Errorf("stored %+v", st)
	}
	if got := s.Scopes(); len(got) != 1 || got[0] != "https://outlook.office.com/SMTP.Send offline_access" {
		t.Errorf("scopes %q", got)
	}
	for _, sec := range s.Secrets() {
		if strings.Contains(out, sec) {
			t.Errorf("login output shows a secret")
		}
	}
	tok, err := src.Token(context.Background())
	if err != nil || !s.Valid("plc@example.com", tok) {
		t.Fatalf("Token = valid %v, %v", s.Valid("plc@example.com", tok), err)
	}
}

// TestRefreshAheadOfExpiryRotates: a token near its expiry is replaced
// before use, and each rotated refresh token is in the file at once; a
// new Source (a restart) goes on from the file.
func TestRefreshAheadOfExpiryRotates(t *testing.T) {
	s := startServer(t, fakeoauth.Options{AccessTTL: time.Hour})
	file := filepath.Join(t.TempDir(), "oauth", "smtp.json")
	c := &clock{t: time.Now()}
	src := source(t, s, oauth.MicrosoftDelegated, file, c.Now)
	deviceLogin(t, s, src)
	ctx := context.Background()
	first, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Add(50 * time.Minute)
	if tok, _ := src.Token(ctx); tok != first || s.Refreshes() != 0 {
		t.Fatalf("refreshed %d times 10 minutes before expiry", s.Refreshes())
	}
	before, _ := oauth.ReadStore(file)
	c.Add(6 * time.Minute) // 4 minutes left: inside RefreshBefore
	second, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || s.Refreshes() != 1 {
		t.Fatalf("no refresh ahead of expiry (refreshes %d)", s.Refreshes())
	}
	after, _ := oauth.ReadStore(file)
	if after.RefreshToken == before.RefreshToken || !s.RefreshTokenValid(after.RefreshToken) || s.RefreshTokenValid(before.RefreshToken) {
		t.Fatal("the rotated refresh token was not saved")
	}
	// A restart: a new Source with the file. The stored access token is
	// still fresh, so no refresh; then one after its expiry.
	src2 := source(t, s, oauth.MicrosoftDelegated, file, c.Now)
	if tok, err := src2.Token(ctx); err != nil || tok != second {
		t.Fatalf("after restart: %v, same token %v", err, tok == second)
	}
	c.Add(time.Hour)
	if tok, err := src2.Token(ctx); err != nil || !s.Valid("plc@example.com", tok) || s.Refreshes() != 2 {
		t.Fatalf("after restart and expiry: %v (refreshes %d)", err, s.Refreshes())
	}
}

// TestRefreshAfterRejection: Refresh replaces a token the SMTP server
// refused even when it has not expired by our clock.
func TestRefreshAfterRejection(t *testing.T) {
	s := startServer(t, fakeoauth.Options{})
	file := filepath.Join(t.TempDir(), "oauth", "smtp.json")
	src := source(t, s, oauth.MicrosoftDelegated, file, nil)
	deviceLogin(t, s, src)
	ctx := context.Background()
	tok, _ := src.Token(ctx)
	s.ExpireAccessTokens()
	fresh, err := src.Refresh(ctx, tok)
	if err != nil || fresh == tok || !s.Valid("plc@example.com", fresh) {
		t.Fatalf("Refresh: %v", err)
	}
	if again, _ := src.Token(ctx); again != fresh {
		t.Error("Token after Refresh is not the fresh token")
	}
}

func TestRevokedRefreshTokenNeedsLogin(t *testing.T) {
	s := startServer(t, fakeoauth.Options{})
	file := filepath.Join(t.TempDir(), "oauth", "smtp.json")
	src := source(t, s, oauth.MicrosoftDelegated, file, nil)
	deviceLogin(t, s, src)
	ctx := context.Background()
	tok, _ := src.Token(ctx)
	s.RevokeRefreshTokens()
	s.ExpireAccessTokens()
	_, err := src.Refresh(ctx, tok)
	if !errors.Is(err, oauth.ErrLoginNeeded) {
		t.Fatalf("err = %v, want ErrLoginNeeded", err)
	}
	msg := err.Error()
	for _, want := range []string{"invalid_grant", "AADSTS70000", "plcmail -c test.toml login", "queued"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "Trace ID") {
		t.Errorf("error carries the description's later lines: %q", msg)
	}
	for _, sec := range s.Secrets() {
		if strings.Contains(msg, sec) {
			t.Errorf("error shows a token: %q", msg)
		}
	}
	st, err := oauth.ReadStore(file)
	if err != nil || st.LoginNeeded == "" || st.LoginNeededSince.IsZero() {
		t.Fatalf("store does not record the need to sign in: %+v %v", st, err)
	}
	// Signing in again clears it.
	deviceLogin(t, s, src)
	if st, _ := oauth.ReadStore(file); st.LoginNeeded != "" {
		t.Errorf("login_needed still set after login: %q", st.LoginNeeded)
	}
	if _, err := src.Token(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNoTokenYetNeedsLogin(t *testing.T) {
	s := startServer(t, fakeoauth.Options{})
	src := source(t, s, oauth.Google, filepath.Join(t.TempDir(), "oauth", "smtp.json"), nil)
	_, err := src.Token(context.Background())
	if !errors.Is(err, oauth.ErrLoginNeeded) || !strings.Contains(err.Error(), "no token stored yet") {
		t.Fatalf("err = %v", err)
	}
}

func TestAppOnlyClientCredentials(t *testing.T) {
	s := startServer(t, fakeoauth.Options{ClientSecret: "client-s3cret"})
	src := source(t, s, oauth.MicrosoftAppOnly, "", nil)
	ctx := context.Background()
	tok, err := src.Token(ctx)
	if err != nil || !s.Valid("plc@example.com", tok) {
		t.Fatalf("Token: %v", err)
	}
	if g := s.Grants(); len(g) != 1 || g[0] != "client_credentials" || s.Scopes()[0] != "https://outlook.office365.com/.default" {
		t.Errorf("grants %q scopes %q", g, s.Scopes())
	}
	s.ExpireAccessTokens()
	if fresh, err := src.Refresh(ctx, tok); err != nil || !s.Valid("plc@example.com", fresh) {
		t.Fatalf("Refresh: %v", err)
	}
	// A wrong (expired) secret says what to do and never shows itself.
	bad, _ := oauth.New(oauth.Options{Provider: oauth.MicrosoftAppOnly, Tenant: "t", ClientID: s.ClientID(),
		ClientSecret: func() (string, error) { return "old-s3cret", nil }, TokenURL: s.TokenURL, HTTPClient: trusting(t, s)})
	_, err = bad.Token(ctx)
	if err == nil || !strings.Contains(err.Error(), "client_secret_file") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err = %v", err)
	}
	if errors.Is(err, oauth.ErrLoginNeeded) {
		t.Error("a refused client secret is not fixed by a login")
	}
}

// TestGoogleLoopbackAndPaste: the installed-app flow completes through
// the loopback redirect, and also when the redirect address is pasted.
func TestGoogleLoopbackAndPaste(t *testing.T) {
	s := startServer(t, fakeoauth.Options{ClientSecret: "client-s3cret"})
	client := trusting(t, s)
	for _, paste := range []bool{false, true} {
		name := map[bool]string{false: "loopback", true: "paste"}[paste]
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "oauth", "smtp.json")
			src := source(t, s, oauth.Google, file, nil)
			var out syncBuf
			inR, inW := io.Pipe()
			defer inW.Close()
			done := make(chan error, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			go func() { done <- src.Login(ctx, inR, &out) }()
			var authURL string
			for authURL == "" {
				sc := bufio.NewScanner(strings.NewReader(out.String()))
				for sc.Scan() {
					if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, s.AuthURL) {
						authURL = l
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			// The "browser": with paste it does not follow the redirect
			// (it runs on another machine), and the person pastes the
			// address it shows.
			c := *client
			if paste {
				c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			}
			resp, err := c.Get(authURL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if paste {
				io.WriteString(inW, resp.Header.Get("Location")+"\n")
			}
			if err := <-done; err != nil {
				t.Fatalf("login: %v\n%s", err, out.String())
			}
			if !strings.Contains(authURL, "scope=https%3A%2F%2Fmail.google.com%2F") || !strings.Contains(authURL, "access_type=offline") {
				t.Errorf("auth URL %s", authURL)
			}
			st, err := oauth.ReadStore(file)
			if err != nil || !s.RefreshTokenValid(st.RefreshToken) {
				t.Fatalf("store: %v", err)
			}
		})
	}
}

// TestConcurrentRefreshesShareRotation: two processes' sources (here two
// Sources on one file) refreshing at once must not use one rotating
// refresh token twice, which would sign the loser out.
func TestConcurrentRefreshesShareRotation(t *testing.T) {
	s := startServer(t, fakeoauth.Options{})
	file := filepath.Join(t.TempDir(), "oauth", "smtp.json")
	deviceLogin(t, s, source(t, s, oauth.MicrosoftDelegated, file, nil))
	s.ExpireAccessTokens()
	st, _ := oauth.ReadStore(file)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		src := source(t, s, oauth.MicrosoftDelegated, file, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each had its AUTH refused with the stored token.
			_, err := src.Refresh(context.Background(), st.AccessToken)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	st, _ = oauth.ReadStore(file)
	if s.Refreshes() != 1 {
		t.Errorf("%d refreshes, want 1 (the others use its token)", s.Refreshes())
	}
	if !s.RefreshTokenValid(st.RefreshToken) {
		t.Error("the stored refresh token is not the live one")
	}
}

func TestWorldReadableTokenFileRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "t.json")
	if err := oauth.WriteStore(file, &oauth.Stored{RefreshToken: "rt-x"}); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o644)
	if _, err := oauth.ReadStore(file); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("err = %v", err)
	}
}
