package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/oauth"
	"github.com/plcmail/plcmail/upstream"
)

// oauthSource turns [upstream.oauth] (of the first entry) into a token
// source.
func oauthSource(cfg *config.Config) (*oauth.Source, error) {
	return oauthSourceFor(cfg, &cfg.Upstream)
}

// oauthSourceFor turns the [upstream.oauth] of entry u into a token
// source. The client secret is read at each token request, like
// password_file.
func oauthSourceFor(cfg *config.Config, u *config.Upstream) (*oauth.Source, error) {
	o := u.OAuth
	hc := &http.Client{Timeout: u.Timeout.D()}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.oauth.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream.oauth.ca_file: %s holds no PEM certificate", o.CAFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc.Transport = tr
	}
	login := "plcmail login"
	if cfg.File != config.DefaultPath {
		login = "plcmail -c " + cfg.File + " login"
	}
	return oauth.New(oauth.Options{
		Provider:      oauth.Provider(o.Provider),
		Tenant:        o.Tenant,
		ClientID:      o.ClientID,
		ClientSecret:  o.OAuthClientSecret,
		Scopes:        o.Scopes,
		AuthURL:       o.AuthURL,
		TokenURL:      o.TokenURL,
		DeviceAuthURL: o.DeviceAuthURL,
		TokenFile:     cfg.OAuthTokenFileFor(u),
		HTTPClient:    hc,
		RefreshBefore: 5 * time.Minute,
		LoginCommand:  login,
	})
}

// useOAuth makes o authenticate with tokens from [upstream.oauth]:
// auth "auto" becomes xoauth2, a refused token is refreshed once.
func useOAuth(cfg *config.Config, u *config.Upstream, o *upstream.Options) {
	if o.Auth == "auto" {
		o.Auth = "xoauth2"
	}
	src, err := oauthSourceFor(cfg, u)
	if err != nil {
		// Validation makes this unreachable but for a file changed
		// since; the error then shows at each delivery attempt.
		o.Secret = func(context.Context) (string, error) { return "", err }
		o.Refresh = nil
		return
	}
	o.Secret = src.Token
	o.Refresh = src.Refresh
}

// secretExpiryComponent warns in the log, at start and once a day, about
// every upstream whose client_secret_expires is near or past (see
// secretExpiryNote): the one failure of app-only sign-in that can be seen
// coming. It reports false when no entry gives the date.
func secretExpiryComponent(cfg *config.Config, log *slog.Logger) (component, bool) {
	us, _ := cfg.UpstreamEntries()
	var dated []*config.Upstream
	for _, u := range us {
		if _, ok := u.OAuth.SecretExpiry(); ok {
			dated = append(dated, u)
		}
	}
	if len(dated) == 0 {
		return component{}, false
	}
	check := func() {
		for _, u := range dated {
			if end, _ := u.OAuth.SecretExpiry(); time.Until(end) <= secretWarnBefore {
				log.Warn(secretExpiryNote(u.OAuth, time.Now()), "upstream", u.EntryName())
			}
		}
	}
	return component{"oauth-secret", func(ctx context.Context) error {
		t := time.NewTicker(24 * time.Hour)
		defer t.Stop()
		for {
			check()
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}}, true
}
