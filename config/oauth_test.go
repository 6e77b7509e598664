package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func oauthConfig(spool, table string) string {
	return `[gateway]
hostname  = "gw.example.com"
spool_dir = "` + spool + `"

[upstream]
host = "smtp.office365.com"
username = "plc@contoso.example"
from = "plc@contoso.example"

[upstream.oauth]
` + table
}

func TestOAuthValid(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(dir, "client.secret")
	os.WriteFile(sec, []byte("s3cret\n"), 0o600)
	c, err := Parse("t.toml", []byte(oauthConfig(dir, `provider = "microsoft-delegated"
tenant = "contoso.example"
client_id = "11111111-2222-3333-4444-555555555555"
`)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.OAuthTokenFile(), filepath.Join(dir, "oauth", "smtp.office365.com.json"); got != want {
		t.Errorf("token file %q, want %q", got, want)
	}
}

// TestOAuthErrorsNameFileLine: each mistake is reported at its key's line
// (or the table's, for a missing key).
func TestOAuthErrorsNameFileLine(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("s3cret\n"), 0o644)
	unreadable := filepath.Join(dir, "missing.secret")
	openToken := filepath.Join(dir, "token.json")
	os.WriteFile(openToken, []byte("{}"), 0o644)
	ok := filepath.Join(dir, "ok.secret")
	os.WriteFile(ok, []byte("s3cret\n"), 0o600)
	for _, tc := range []struct {
		name, table, want string
	}{
		{"missing tenant", "provider = \"microsoft-app-only\"\nclient_id = \"c\"\nclient_secret_file = \"" + ok + "\"\n",
			"t.toml:10: upstream.oauth.tenant: required for microsoft-app-only"},
		{"unreadable secret", "provider = \"google\"\nclient_id = \"c\"\nclient_secret_file = \"" + unreadable + "\"\n",
			"t.toml:13: upstream.oauth.client_secret_file: stat " + unreadable},
		{"world-readable secret", "provider = \"microsoft-app-only\"\ntenant = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"" + open + "\"\n",
			"t.toml:14: upstream.oauth.client_secret_file: " + open + " is readable by group or others"},
		{"world-readable token file", "provider = \"microsoft-delegated\"\ntenant = \"t\"\nclient_id = \"c\"\ntoken_file = \"" + openToken + "\"\n",
			"t.toml:14: upstream.oauth.token_file: " + openToken + " is readable by group or others (mode 0644); run: chmod 600"},
		{"unknown provider", "provider = \"yahoo\"\nclient_id = \"c\"\n", "t.toml:11: upstream.oauth.provider: must be microsoft-app-only"},
		{"http token url", "provider = \"microsoft-delegated\"\ntenant = \"t\"\nclient_id = \"c\"\ntoken_url = \"http://x/token\"\n",
			"t.toml:14: upstream.oauth.token_url: must be an https:// URL"},
		{"secret expiry not a date", "provider = \"microsoft-app-only\"\ntenant = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"" + ok + "\"\nclient_secret_expires = \"30.06.2027\"\n",
			"t.toml:15: upstream.oauth.client_secret_expires: must be a date as YYYY-MM-DD"},
		{"unknown key", "provider = \"microsoft-delegated\"\ntenant = \"t\"\nclient_id = \"c\"\nsecret = \"x\"\n",
			"t.toml:14: upstream.oauth.secret: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(oauthConfig(dir, tc.table)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestOAuthExcludesPassword(t *testing.T) {
	dir := t.TempDir()
	src := strings.Replace(oauthConfig(dir, "provider = \"microsoft-delegated\"\ntenant = \"t\"\nclient_id = \"c\"\n"),
		"from =", "auth = \"plain\"\npassword = \"x\"\nfrom =", 1)
	_, err := Parse("t.toml", []byte(src))
	for _, want := range []string{`t.toml:8: upstream.auth: must be "auto" or "xoauth2" with [upstream.oauth]`, "t.toml:9: upstream.password: not used with [upstream.oauth]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v\nwant %q", err, want)
		}
	}
}
