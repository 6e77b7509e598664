// Package fakeoauth runs an OAuth 2.0 authorization server on 127.0.0.1
// over TLS with a throw-away CA (internal/throwawayca), playing Microsoft
// identity platform or Google for tests: the token endpoint (client
// credentials, refresh token, device code, authorization code with PKCE),
// the device authorization endpoint (RFC 8628) and an authorization
// endpoint that approves at once. Refresh tokens rotate on every refresh
// (the old one stops working, stricter than Microsoft), access tokens
// expire, and everything can be revoked, so that a client's refresh,
// rotation and "sign in again" paths meet a real HTTP server. Valid plugs
// into internal/fakeupstream's TokenValid. It does not import testing.
package fakeoauth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/plcmail/plcmail/internal/throwawayca"
)

// Options configures a Server.
type Options struct {
	ClientID     string // default "plcmail-test-client"
	ClientSecret string // "" means a public client: no secret checked
	// Username is the account the tokens are for (default
	// "plc@example.com"); Valid checks it.
	Username string
	// AccessTTL is the access tokens' lifetime, sent as expires_in
	// (default one hour).
	AccessTTL time.Duration
	// AutoApprove approves a device code at its first poll, as if the
	// person had signed in at once.
	AutoApprove bool
}

// Server is a running authorization server. Its methods are safe for
// concurrent use.
type Server struct {
	URL           string // https://127.0.0.1:PORT
	TokenURL      string
	DeviceAuthURL string
	AuthURL       string
	CAPEM         []byte // the CA, for upstream.oauth.ca_file

	opts Options
	srv  *http.Server
	ln   net.Listener

	mu        sync.Mutex
	access    map[string]time.Time // access token -> expiry
	refresh   map[string]bool      // refresh token -> still valid
	devices   map[string]*device   // device code ->
	codes     map[string]authCode
	secrets   []string // every token issued, for leak checks
	refreshes int
	grants    []string
	scopes    []string
}

type device struct {
	userCode string
	approved bool
}

type authCode struct{ challenge, redirect string }

// Start runs a server until Close.
func Start(opts Options) (*Server, error) {
	if opts.ClientID == "" {
		opts.ClientID = "plcmail-test-client"
	}
	if opts.Username == "" {
		opts.Username = "plc@example.com"
	}
	if opts.AccessTTL == 0 {
		opts.AccessTTL = time.Hour
	}
	ca, err := throwawayca.New("plcmail test OAuth CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, CAPEM: ca.PEM(), ln: ln,
		access: map[string]time.Time{}, refresh: map[string]bool{}, devices: map[string]*device{}, codes: map[string]authCode{}}
	s.URL = "https://" + ln.Addr().String()
	s.TokenURL, s.DeviceAuthURL, s.AuthURL = s.URL+"/token", s.URL+"/devicecode", s.URL+"/authorize"
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /devicecode", s.deviceCode)
	mux.HandleFunc("GET /authorize", s.authorize)
	// HTTP/1.1 only: a test binary built with -tags nethttpomithttp2 (the
	// router builds' tags) still offers h2 in ALPN from ServeTLS but closes
	// every h2 connection, so a plcmail built without the tag, which picks
	// h2, never got a token (TestOAuthGatewayLifecycle with the tags).
	var protos http.Protocols
	protos.SetHTTP1(true)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, Protocols: &protos,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}}
	go s.srv.ServeTLS(ln, "", "")
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// ClientID is the client id the server knows.
func (s *Server) ClientID() string { return s.opts.ClientID }

// Valid reports whether token is an access token for user that has not
// expired and was not revoked.
func (s *Server) Valid(user, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[token]
	return ok && user == s.opts.Username && time.Now().Before(exp)
}

// ExpireAccessTokens ends every access token issued so far, as their
// expiry would; the client still believes them valid.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.access {
		s.access[t] = time.Time{}
	}
}

// RevokeRefreshTokens ends every refresh token issued so far, as a
// password change or an administrator's revocation does.
func (s *Server) RevokeRefreshTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.refresh {
		s.refresh[t] = false
	}
}

// Approve completes the sign-in for a device's user code, as the person
// does in the browser; it reports whether the code was known.
func (s *Server) Approve(userCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.userCode == userCode {
			d.approved = true
			return true
		}
	}
	return false
}

// Refreshes is how many refresh_token grants succeeded.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// Grants lists the grant types of successful token requests, in order.
func (s *Server) Grants() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.grants...)
}

// Scopes lists the scope parameter of each successful token request.
func (s *Server) Scopes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.scopes...)
}

// Secrets returns every access and refresh token issued so far and the
// client secret, for checking that none leaked into a log.
func (s *Server) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.secrets...)
	if s.opts.ClientSecret != "" {
		out = append(out, s.opts.ClientSecret)
	}
	return out
}

// RefreshTokenValid reports whether rt is a refresh token still accepted.
func (s *Server) RefreshTokenValid(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh[rt]
}

func random(prefix string) string {
	var b [18]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) clientOK(r *http.Request, needSecret bool) bool {
	if r.PostForm.Get("client_id") != s.opts.ClientID {
		return false
	}
	if s.opts.ClientSecret != "" && (needSecret || r.PostForm.Get("client_secret") != "") {
		return r.PostForm.Get("client_secret") == s.opts.ClientSecret
	}
	return true
}

// issue answers a successful token request; s.mu is held.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, withRefresh bool) {
	at := random("at-")
	s.access[at] = time.Now().Add(s.opts.AccessTTL)
	s.secrets = append(s.secrets, at)
	resp := map[string]any{"access_token": at, "token_type": "Bearer",
		"expires_in": int(s.opts.AccessTTL / time.Second), "scope": r.PostForm.Get("scope")}
	if withRefresh {
		rt := random("rt-")
		s.refresh[rt] = true
		s.secrets = append(s.secrets, rt)
		resp["refresh_token"] = rt
	}
	s.grants = append(s.grants, r.PostForm.Get("grant_type"))
	s.scopes = append(s.scopes, r.PostForm.Get("scope"))
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := r.PostForm
	switch f.Get("grant_type") {
	case "client_credentials":
		if !s.clientOK(r, true) {
			oauthError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
			return
		}
		s.issue(w, r, false)
	case "refresh_token":
		if !s.clientOK(r, false) {
			oauthError(w, 401, "invalid_client", "unknown client")
			return
		}
		rt := f.Get("refresh_token")
		if !s.refresh[rt] {
			oauthError(w, 400, "invalid_grant", "AADSTS70000: The provided grant has expired due to it being revoked.\r\nTrace ID: 0000")
			return
		}
		s.refresh[rt] = false // rotation: the old one is used up
		s.refreshes++
		s.issue(w, r, true)
	case "urn:ietf:params:oauth:grant-type:device_code":
		d := s.devices[f.Get("device_code")]
		switch {
		case d == nil:
			oauthError(w, 400, "expired_token", "unknown device code")
		case !d.approved && s.opts.AutoApprove:
			d.approved = true
			fallthrough
		case d.approved:
			delete(s.devices, f.Get("device_code"))
			s.issue(w, r, true)
		default:
			oauthError(w, 400, "authorization_pending", "the user has not signed in yet")
		}
	case "authorization_code":
		if !s.clientOK(r, true) {
			oauthError(w, 401, "invalid_client", "unknown client")
			return
		}
		c, ok := s.codes[f.Get("code")]
		delete(s.codes, f.Get("code"))
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if !ok || c.redirect != f.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			oauthError(w, 400, "invalid_grant", "bad code, redirect_uri or code_verifier")
			return
		}
		s.issue(w, r, true)
	default:
		oauthError(w, 400, "unsupported_grant_type", f.Get("grant_type"))
	}
}

func (s *Server) deviceCode(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") != s.opts.ClientID {
		oauthError(w, 400, "invalid_client", "unknown client")
		return
	}
	dc := random("dc-")
	uc := strings.ToUpper(random("")[:8])
	s.mu.Lock()
	s.devices[dc] = &device{userCode: uc}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"device_code": dc, "user_code": uc,
		"verification_uri": s.URL + "/device", "expires_in": 900, "interval": 1})
}

// authorize approves at once: it redirects to redirect_uri with a code,
// as the provider does after the person allowed access.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ru, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || q.Get("client_id") != s.opts.ClientID || q.Get("code_challenge_method") != "S256" {
		http.Error(w, "bad authorization request", 400)
		return
	}
	code := random("code-")
	s.mu.Lock()
	s.codes[code] = authCode{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
	s.mu.Unlock()
	v := ru.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	ru.RawQuery = v.Encode()
	http.Redirect(w, r, ru.String(), http.StatusFound)
}
