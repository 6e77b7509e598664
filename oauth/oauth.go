// Package oauth gets the access tokens the upstream's XOAUTH2 needs, from
// Microsoft 365 or Google, through golang.org/x/oauth2, and keeps them
// fresh without a person at the box:
//
//   - microsoft-app-only: the client credentials grant (tenant, client id,
//     client secret). Nothing is stored; a token is fetched when the last
//     one is about to expire.
//   - microsoft-delegated: a person signs in once with the device
//     authorization grant (`plcmail login` prints a URL and a code, which
//     works over SSH); the refresh token is stored and used from then on.
//   - google: the same, with the installed-app flow (Google refuses the
//     device grant for Gmail scopes): a loopback redirect, or the code
//     pasted back from the browser's address bar.
//
// The refresh token lives in a token file, one per upstream, mode 0600,
// owned by the gateway's user, replaced atomically (store.go). Every
// refresh writes the refresh token the provider returned, because
// Microsoft rotates it. A refused refresh token (invalid_grant) is
// recorded in the file and reported as ErrLoginNeeded: the caller keeps
// mail queued, and `plcmail status` reads the file to say what to do.
// Tokens and secrets never appear in an error this package returns.
//
// The package knows nothing of the configuration file; cmd/plcmail turns
// [upstream.oauth] into Options.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/endpoints"
)

// Provider names a way of getting tokens; the values are the words of the
// configuration's upstream.oauth.provider.
type Provider string

// Providers.
const (
	MicrosoftAppOnly   Provider = "microsoft-app-only"
	MicrosoftDelegated Provider = "microsoft-delegated"
	Google             Provider = "google"
)

// Providers lists the known providers, for messages.
var Providers = []Provider{MicrosoftAppOnly, MicrosoftDelegated, Google}

// DefaultScopes are the scopes each provider needs for SMTP.
func DefaultScopes(p Provider) []string {
	switch p {
	case MicrosoftAppOnly:
		return []string{"https://outlook.office365.com/.default"}
	case MicrosoftDelegated:
		return []string{"https://outlook.office.com/SMTP.Send", "offline_access"}
	case Google:
		return []string{"https://mail.google.com/"}
	}
	return nil
}

// NeedsLogin reports whether the provider needs a person to sign in once
// (`plcmail login`) and a token file.
func (p Provider) NeedsLogin() bool { return p == MicrosoftDelegated || p == Google }

// ErrLoginNeeded is wrapped by the errors that only a new sign-in fixes:
// no token stored yet, or the provider refused the refresh token.
var ErrLoginNeeded = errors.New("OAuth sign-in needed")

// Options configures a Source.
type Options struct {
	Provider Provider
	Tenant   string // Microsoft: directory (tenant) id or domain
	ClientID string
	// ClientSecret returns the client secret; it is called for each
	// token request, so a renewed secret file is read without a restart.
	// nil or "" for a public client (microsoft-delegated).
	ClientSecret func() (string, error)
	Scopes       []string // default DefaultScopes(Provider)
	// AuthURL, TokenURL and DeviceAuthURL replace the provider's
	// endpoints (tests, sovereign clouds, other providers).
	AuthURL, TokenURL, DeviceAuthURL string
	// TokenFile is where the refresh token is kept (providers that
	// NeedsLogin).
	TokenFile string
	// HTTPClient talks to the token endpoint; nil means one with a 30s
	// timeout and the system roots.
	HTTPClient *http.Client
	// RefreshBefore is how long before expiry a token is replaced
	// (default 5 minutes; at most half the token's lifetime).
	RefreshBefore time.Duration
	// LoginCommand is what the user must run to sign in again, for
	// messages (default "plcmail login").
	LoginCommand string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Source hands out access tokens for one upstream. It is safe for
// concurrent use; refreshes are serialised, also across processes that
// share the token file.
type Source struct {
	opts Options
	conf *oauth2.Config

	mu       sync.Mutex
	access   string
	expiry   time.Time
	obtained time.Time
}

// New checks opts and returns a Source. It does no I/O.
func New(opts Options) (*Source, error) {
	switch opts.Provider {
	case MicrosoftAppOnly, MicrosoftDelegated, Google:
	default:
		return nil, fmt.Errorf("oauth: unknown provider %q", opts.Provider)
	}
	if opts.ClientID == "" {
		return nil, errors.New("oauth: client id missing")
	}
	if opts.Provider != Google && opts.Tenant == "" && opts.TokenURL == "" {
		return nil, errors.New("oauth: Microsoft needs the tenant")
	}
	if opts.Provider.NeedsLogin() && opts.TokenFile == "" {
		return nil, errors.New("oauth: token file missing")
	}
	if len(opts.Scopes) == 0 {
		opts.Scopes = DefaultScopes(opts.Provider)
	}
	if opts.RefreshBefore <= 0 {
		opts.RefreshBefore = 5 * time.Minute
	}
	if opts.LoginCommand == "" {
		opts.LoginCommand = "plcmail login"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	ep := endpoints.Google
	if opts.Provider != Google {
		ep = endpoints.AzureAD(opts.Tenant)
	}
	for _, o := range []struct{ set, dst *string }{{&opts.AuthURL, &ep.AuthURL}, {&opts.TokenURL, &ep.TokenURL}, {&opts.DeviceAuthURL, &ep.DeviceAuthURL}} {
		if *o.set != "" {
			*o.dst = *o.set
		}
	}
	// Both providers take the client in the form; the default probe
	// would send every failing request twice.
	ep.AuthStyle = oauth2.AuthStyleInParams
	s := &Source{opts: opts, conf: &oauth2.Config{ClientID: opts.ClientID, Endpoint: ep, Scopes: opts.Scopes}}
	return s, nil
}

// Provider is the source's provider.
func (s *Source) Provider() Provider { return s.opts.Provider }

// TokenFile is where the source keeps its refresh token ("" for
// microsoft-app-only).
func (s *Source) TokenFile() string {
	if !s.opts.Provider.NeedsLogin() {
		return ""
	}
	return s.opts.TokenFile
}

// Token returns an access token that is valid for at least a few more
// minutes, refreshing it when needed.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access != "" && s.opts.Now().Before(s.refreshAt(s.obtained, s.expiry)) {
		return s.access, nil
	}
	return s.fetch(ctx, "")
}

// Refresh returns a new access token in place of rejected, which the
// server refused (SMTP 535): it may have been revoked or the clocks
// disagree about its expiry.
func (s *Source) Refresh(ctx context.Context, rejected string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.access != "" && s.access != rejected {
		return s.access, nil // another connection refreshed meanwhile
	}
	s.access = ""
	return s.fetch(ctx, rejected)
}

// refreshAt is when a token obtained at obtained and expiring at expiry
// is replaced: RefreshBefore ahead, but never before half its lifetime.
func (s *Source) refreshAt(obtained, expiry time.Time) time.Time {
	if expiry.IsZero() {
		return obtained.Add(time.Hour) // no expires_in: assume the usual hour
	}
	margin := s.opts.RefreshBefore
	if half := expiry.Sub(obtained) / 2; half < margin {
		margin = half
	}
	return expiry.Add(-margin)
}

func (s *Source) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, s.opts.HTTPClient)
}

func (s *Source) secret() (string, error) {
	if s.opts.ClientSecret == nil {
		return "", nil
	}
	sec, err := s.opts.ClientSecret()
	if err != nil {
		return "", fmt.Errorf("oauth: client secret: %w", err)
	}
	return sec, nil
}

// fetch gets a new access token; s.mu is held.
func (s *Source) fetch(ctx context.Context, rejected string) (string, error) {
	sec, err := s.secret()
	if err != nil {
		return "", err
	}
	if s.opts.Provider == MicrosoftAppOnly {
		cc := clientcredentials.Config{ClientID: s.opts.ClientID, ClientSecret: sec,
			TokenURL: s.conf.Endpoint.TokenURL, Scopes: s.opts.Scopes, AuthStyle: oauth2.AuthStyleInParams}
		now := s.opts.Now()
		tok, err := cc.Token(s.ctx(ctx))
		if err != nil {
			return "", s.explain(err)
		}
		s.access, s.expiry, s.obtained = tok.AccessToken, tok.Expiry, now
		return s.access, nil
	}
	return s.refresh(ctx, sec, rejected)
}

// refresh uses the stored refresh token, under the token file's lock.
func (s *Source) refresh(ctx context.Context, sec, rejected string) (string, error) {
	path := s.opts.TokenFile
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) { // the directory: never signed in
			return "", s.loginNeeded("no token stored yet (%s)", path)
		}
		return "", fmt.Errorf("oauth: locking the token file: %w", err)
	}
	defer unlock()
	st, err := ReadStore(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", s.loginNeeded("no token stored yet (%s)", path)
	}
	if err != nil {
		return "", fmt.Errorf("oauth: %w", err)
	}
	if st.RefreshToken == "" {
		return "", s.loginNeeded("%s holds no refresh token", path)
	}
	if st.ClientID != "" && st.ClientID != s.opts.ClientID {
		return "", s.loginNeeded("%s was signed in for another client id than upstream.oauth.client_id", path)
	}
	now := s.opts.Now()
	// Another process (the gateway, or `plcmail test`) may have
	// refreshed since we last looked.
	if st.AccessToken != "" && st.AccessToken != rejected && now.Before(s.refreshAt(st.Updated, st.Expiry)) {
		s.access, s.expiry, s.obtained = st.AccessToken, st.Expiry, st.Updated
		return s.access, nil
	}
	conf := *s.conf
	conf.ClientSecret = sec
	tok, err := conf.TokenSource(s.ctx(ctx), &oauth2.Token{RefreshToken: st.RefreshToken}).Token()
	if err != nil {
		err = s.explain(err)
		if errors.Is(err, ErrLoginNeeded) {
			st.LoginNeeded, st.LoginNeededSince = reason(err), now
			if werr := WriteStore(path, st); werr != nil {
				err = fmt.Errorf("%w (and recording it failed: %v)", err, werr)
			}
		}
		return "", err
	}
	st.Provider, st.ClientID = string(s.opts.Provider), s.opts.ClientID
	st.RefreshToken = tok.RefreshToken // x/oauth2 keeps the old one when none came back
	st.AccessToken, st.Expiry, st.Updated = tok.AccessToken, tok.Expiry, now
	st.LoginNeeded, st.LoginNeededSince = "", time.Time{}
	// Saved before use: the provider may already have retired the old
	// refresh token, and this one is then the only key left.
	if err := WriteStore(path, st); err != nil {
		return "", fmt.Errorf("oauth: saving the refreshed token to %s: %w", path, err)
	}
	s.access, s.expiry, s.obtained = tok.AccessToken, tok.Expiry, now
	return s.access, nil
}

// Save stores a token obtained by a sign-in.
func (s *Source) Save(tok *oauth2.Token) error {
	if tok.RefreshToken == "" {
		return fmt.Errorf("oauth: the provider returned no refresh token (scopes %q; Microsoft needs offline_access, Google access_type=offline)", strings.Join(s.opts.Scopes, " "))
	}
	unlock, err := lockFile(s.opts.TokenFile + ".lock")
	if err == nil {
		defer unlock()
	}
	// Without the lock (directory missing) WriteStore creates it.
	now := s.opts.Now()
	st := &Stored{Provider: string(s.opts.Provider), ClientID: s.opts.ClientID,
		RefreshToken: tok.RefreshToken, AccessToken: tok.AccessToken, Expiry: tok.Expiry, Updated: now}
	if err := WriteStore(s.opts.TokenFile, st); err != nil {
		return fmt.Errorf("oauth: saving the token: %w", err)
	}
	s.mu.Lock()
	s.access, s.expiry, s.obtained = tok.AccessToken, tok.Expiry, now
	s.mu.Unlock()
	return nil
}

// loginNeeded builds an ErrLoginNeeded error that says what to run.
func (s *Source) loginNeeded(format string, args ...any) error {
	return &loginError{why: fmt.Sprintf(format, args...), cmd: s.opts.LoginCommand}
}

type loginError struct{ why, cmd string }

func (e *loginError) Error() string {
	return fmt.Sprintf("%v: %s; mail stays queued until you run: %s", ErrLoginNeeded, e.why, e.cmd)
}
func (e *loginError) Unwrap() error { return ErrLoginNeeded }

func reason(err error) string {
	var le *loginError
	if errors.As(err, &le) {
		return le.why
	}
	return err.Error()
}

// explain turns a token endpoint's refusal into what the user must do.
// It never includes the response body: only the error code and
// description, which carry no secret.
func (s *Source) explain(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		var ue *url.Error
		if errors.As(err, &ue) {
			// url.Error quotes the URL, which has no secret; the form is
			// not in it.
			return fmt.Errorf("oauth: token endpoint unreachable: %w", ue)
		}
		return fmt.Errorf("oauth: %w", err)
	}
	desc := re.ErrorCode
	if desc == "" && re.Response != nil {
		desc = re.Response.Status
	}
	if re.ErrorDescription != "" {
		desc += ": " + firstLine(re.ErrorDescription)
	}
	switch re.ErrorCode {
	case "invalid_grant":
		if s.opts.Provider.NeedsLogin() {
			return s.loginNeeded("the provider refused the refresh token (%s): revoked, expired after 90 days unused, or the password changed", desc)
		}
	case "invalid_client", "unauthorized_client":
		return fmt.Errorf("oauth: the provider refused the client (%s): check upstream.oauth.client_id and the client secret (expired? create a new one and write it to upstream.oauth.client_secret_file)", desc)
	}
	return fmt.Errorf("oauth: token request refused (%s)", desc)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}
