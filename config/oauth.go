package config

import (
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// OAuth is [upstream.oauth]: where the gateway gets the access tokens for
// AUTH XOAUTH2 (package oauth). With it, auth "auto" means xoauth2 and
// password/password_file are not used.
type OAuth struct {
	// Provider is microsoft-app-only (client credentials),
	// microsoft-delegated (device code sign-in) or google (installed-app
	// sign-in).
	Provider         string   `toml:"provider"`
	Tenant           string   `toml:"tenant"` // Microsoft: directory (tenant) id or domain
	ClientID         string   `toml:"client_id"`
	ClientSecretFile string   `toml:"client_secret_file"`
	Scopes           []string `toml:"scopes"` // default: what the provider needs for SMTP
	// TokenFile keeps the refresh token (delegated and google); default
	// SPOOL_DIR/oauth/HOST.json.
	TokenFile string `toml:"token_file"`
	// AuthURL, TokenURL and DeviceAuthURL replace the provider's
	// endpoints (national clouds, other providers, tests).
	AuthURL       string `toml:"auth_url"`
	TokenURL      string `toml:"token_url"`
	DeviceAuthURL string `toml:"device_auth_url"`
	// CAFile holds extra trust anchors (PEM) for the token endpoint.
	CAFile string `toml:"ca_file"`
	// ClientSecretExpires is the "expires" date the Azure portal shows
	// for the client secret (YYYY-MM-DD). Microsoft's token endpoint does
	// not tell, and a secret lives 24 months at most: with the date,
	// status and the log warn in time instead of alarms stopping on the
	// day it runs out.
	ClientSecretExpires string `toml:"client_secret_expires"`
}

// SecretExpiry returns client_secret_expires as the end of that day
// (UTC), and false when it is not set or not a date.
func (o *OAuth) SecretExpiry() (time.Time, bool) {
	if o == nil || o.ClientSecretExpires == "" {
		return time.Time{}, false
	}
	d, err := time.Parse(time.DateOnly, o.ClientSecretExpires)
	if err != nil {
		return time.Time{}, false
	}
	return d.Add(24 * time.Hour), true
}

// OAuth providers, the words of upstream.oauth.provider.
const (
	OAuthMicrosoftAppOnly   = "microsoft-app-only"
	OAuthMicrosoftDelegated = "microsoft-delegated"
	OAuthGoogle             = "google"
)

// OAuthTokenFile is where the refresh token of the upstream is kept:
// upstream.oauth.token_file, or one file per upstream host in the spool
// directory, which belongs to the gateway's user.
func (c *Config) OAuthTokenFile() string { return c.OAuthTokenFileFor(&c.Upstream) }

// OAuthTokenFileFor is OAuthTokenFile for one [[upstream]] entry: an entry
// with a name keeps its token in NAME.json, so two accounts at one
// provider do not share a file.
func (c *Config) OAuthTokenFileFor(u *Upstream) string {
	o := u.OAuth
	if o == nil {
		return ""
	}
	if o.TokenFile != "" {
		return o.TokenFile
	}
	base := u.Host
	if u.Name != "" {
		base = u.Name
	}
	host := regexp.MustCompile(`[^A-Za-z0-9.-]+`).ReplaceAllString(base, "_")
	if host == "" {
		host = "upstream"
	}
	return filepath.Join(c.Gateway.SpoolDir, "oauth", host+".json")
}

// OAuthClientSecret reads upstream.oauth.client_secret_file ("" when not
// set).
func (o *OAuth) OAuthClientSecret() (string, error) {
	if o.ClientSecretFile == "" {
		return "", nil
	}
	return ReadSecret(o.ClientSecretFile)
}

// validateOAuthAt checks [upstream.oauth] of the entry u at key path up
// and what it changes in the entry.
func (c *Config) validateOAuthAt(v *validator, u *Upstream, up string) {
	o := u.OAuth
	if o == nil {
		return
	}
	p := up + ".oauth."
	switch o.Provider {
	case OAuthMicrosoftAppOnly, OAuthMicrosoftDelegated:
		if o.Tenant == "" && o.TokenURL == "" {
			v.errf(p+"tenant", "required for %s: the directory (tenant) id or domain from the Azure app registration (\"consumers\" for Outlook.com accounts)", o.Provider)
		}
	case OAuthGoogle:
	case "":
		v.errf(p+"provider", "required: microsoft-app-only, microsoft-delegated or google")
	default:
		v.errf(p+"provider", "must be microsoft-app-only, microsoft-delegated or google, not %q", o.Provider)
	}
	if o.ClientID == "" {
		v.errf(p+"client_id", "required: the application (client) id")
	}
	if o.ClientSecretFile == "" {
		if o.Provider == OAuthMicrosoftAppOnly || o.Provider == OAuthGoogle {
			v.errf(p+"client_secret_file", "required for %s", o.Provider)
		}
	} else if sec, err := ReadSecret(o.ClientSecretFile); err != nil {
		v.errf(p+"client_secret_file", "%v", err)
	} else if sec == "" {
		v.errf(p+"client_secret_file", "%s is empty: put the client secret on its first line", o.ClientSecretFile)
	}
	if o.ClientSecretExpires != "" {
		if _, err := time.Parse(time.DateOnly, o.ClientSecretExpires); err != nil {
			v.errf(p+"client_secret_expires", "must be a date as YYYY-MM-DD (the \"expires\" column of the secret in the Azure portal), not %q", o.ClientSecretExpires)
		} else if o.ClientSecretFile == "" {
			v.errf(p+"client_secret_expires", "set, but there is no client_secret_file whose expiry it gives")
		}
	}
	if o.Provider == OAuthMicrosoftDelegated || o.Provider == OAuthGoogle {
		// A missing token file is fine (not signed in yet: mail waits
		// and status says so); one that others can read is not.
		tf := c.OAuthTokenFileFor(u)
		if err := CheckSecretFile(tf); err != nil && !errors.Is(err, fs.ErrNotExist) {
			v.errf(p+"token_file", "%v", err)
		}
	}
	for _, k := range []struct{ key, val string }{{"auth_url", o.AuthURL}, {"token_url", o.TokenURL}, {"device_auth_url", o.DeviceAuthURL}} {
		if k.val == "" {
			continue
		}
		if pu, err := url.Parse(k.val); err != nil || pu.Scheme != "https" || pu.Host == "" {
			v.errf(p+k.key, "must be an https:// URL, not %q", k.val)
		}
	}
	for i, s := range o.Scopes {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t") {
			v.errf(p+"scopes", "scope %d %q: one scope per string, no spaces", i+1, s)
		}
	}
	if o.CAFile != "" {
		if _, err := os.ReadFile(o.CAFile); err != nil {
			v.errf(p+"ca_file", "%v", err)
		}
	}
	switch u.Auth {
	case "auto", "xoauth2":
	default:
		v.errf(up+".auth", "must be \"auto\" or \"xoauth2\" with [upstream.oauth], not %q", u.Auth)
	}
	if u.Username == "" {
		v.errf(up+".username", "required with [upstream.oauth]: the mailbox address the gateway sends as")
	}
	if u.Password != "" {
		v.errf(up+".password", "not used with [upstream.oauth]; remove it")
	}
	if u.PasswordFile != "" {
		v.errf(up+".password_file", "not used with [upstream.oauth]; remove it")
	}
}
