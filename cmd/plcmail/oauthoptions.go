package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
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
