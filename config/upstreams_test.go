package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const listBase = `
[gateway]
hostname  = "gw.example.com"
spool_dir = "/var/spool/plcmail"

[[upstream]]
name = "m365"
host = "smtp.office365.com"
auth = "none"
from = "plc@example.com"
recipient_domains = ["example.com", ".example.com"]
failover_after = "2m"

[[upstream]]
host = "smtp.backup.example"
security = "tls"
auth = "none"
`

func TestUpstreamList(t *testing.T) {
	c, err := Parse("t.toml", []byte(listBase))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Upstreams) != 2 {
		t.Fatalf("%d entries", len(c.Upstreams))
	}
	a, b := c.Upstreams[0], c.Upstreams[1]
	if a.EntryName() != "m365" || a.Port != 587 || a.FailoverAfter.D() != 2*time.Minute || len(a.RecipientDomains) != 2 || a.Timeout.D() != 30*time.Second {
		t.Errorf("first entry: %+v", a)
	}
	// Each entry has the [upstream] defaults, and port 465 for tls.
	if b.EntryName() != "smtp.backup.example:465" || b.Port != 465 || b.Auth != "none" || b.Timeout.D() != 30*time.Second || b.From != "" {
		t.Errorf("second entry: %+v", b)
	}
	// The first entry is also c.Upstream: from, timeout, `plcmail test`.
	if c.Upstream.Host != a.Host || c.Upstream.From != "plc@example.com" {
		t.Errorf("Upstream is not the first entry: %+v", c.Upstream)
	}
	us, paths := c.UpstreamEntries()
	if len(us) != 2 || paths[1] != "upstream[1]" || us[1].Host != b.Host {
		t.Errorf("entries %v", paths)
	}
	// The single table is one entry.
	c, err = Parse("t.toml", []byte(validBase))
	if err != nil {
		t.Fatal(err)
	}
	if us, paths := c.UpstreamEntries(); len(us) != 1 || paths[0] != "upstream" || c.Upstreams != nil {
		t.Errorf("single form: %v %v", us, paths)
	}
}

func TestUpstreamListErrors(t *testing.T) {
	for _, tc := range []struct {
		name, add, want string
	}{
		{"bad port", "port = 0\n", "t.toml:18: upstream[1].port: must be 1..65535"},
		{"unknown key", "hostname = \"x\"\n", "t.toml:18: upstream[1].hostname: unknown key (did you mean host?)"},
		{"bad duration", "failover_after = \"soon\"\n", "t.toml:18: upstream[1].failover_after: invalid duration"},
		{"zero duration", "probe_interval = \"0s\"\n", "t.toml:18: upstream[1].probe_interval: must be positive"},
		{"bad domain", "sender_domains = [\"a b\"]\n", "t.toml:18: upstream[1].sender_domains[0]: \"a b\" is not a domain"},
		{"other from", "from = \"other@example.com\"\n", "t.toml:18: upstream[1].from: only the first [[upstream]] sets from"},
		{"duplicate name", "name = \"m365\"\n", "t.toml:18: upstream[1].name: duplicate upstream name \"m365\""},
		{"no catch-all", "recipient_domains = [\"x.example\"]\n", "t.toml:14: upstream[1]: every [[upstream]] has routing rules"},
		{"oauth", "[upstream.oauth]\nprovider = \"nope\"\n", "t.toml:19: upstream[1].oauth.provider: must be microsoft-app-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(listBase+tc.add))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %s", err, tc.want)
			}
		})
	}
	// The first entry's from stays required; a missing host is named
	// with its entry's line.
	src := strings.Replace(listBase, "from = \"plc@example.com\"\n", "", 1)
	src = strings.Replace(src, "host = \"smtp.backup.example\"\n", "", 1)
	_, err := Parse("t.toml", []byte(src))
	for _, want := range []string{"t.toml:6: upstream[0].from: required", "t.toml:13: upstream[1].host: required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v\nwant %s", err, want)
		}
	}
	// Rules need a list.
	_, err = Parse("t.toml", []byte(validBase+"recipient_domains = [\"x.example\"]\n"))
	if err == nil || !strings.Contains(err.Error(), "upstream.recipient_domains: routing rules need a list of upstreams") {
		t.Errorf("rules on a single upstream: %v", err)
	}
}

// Each signed-in entry has its own token file; two that would share one
// are refused.
func TestUpstreamListOAuthTokenFiles(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(dir, "secret")
	if err := os.WriteFile(sec, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	entry := func(name string) string {
		s := "\n[[upstream]]\nhost = \"smtp.gmail.com\"\nusername = \"a@example.com\"\n"
		if name != "" {
			s += "name = \"" + name + "\"\n"
		}
		return s + "[upstream.oauth]\nprovider = \"google\"\nclient_id = \"c\"\nclient_secret_file = \"" + sec + "\"\n"
	}
	base := "[gateway]\nhostname = \"gw\"\nspool_dir = \"" + dir + "\"\n"
	c, err := Parse("t.toml", []byte(base+strings.Replace(entry(""), "[upstream.oauth]", "from = \"a@example.com\"\n[upstream.oauth]", 1)+entry("second")))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := c.OAuthTokenFileFor(&c.Upstreams[0]), c.OAuthTokenFileFor(&c.Upstreams[1]); a != filepath.Join(dir, "oauth", "smtp.gmail.com.json") || b != filepath.Join(dir, "oauth", "second.json") {
		t.Errorf("token files %s %s", a, b)
	}
	if c.OAuthTokenFile() != c.OAuthTokenFileFor(&c.Upstreams[0]) {
		t.Error("OAuthTokenFile is not the first entry's")
	}
	_, err = Parse("t.toml", []byte(base+strings.Replace(entry(""), "[upstream.oauth]", "from = \"a@example.com\"\nname = \"x\"\n[upstream.oauth]\ntoken_file = \""+dir+"/t.json\"", 1)+strings.Replace(entry("y"), "[upstream.oauth]", "[upstream.oauth]\ntoken_file = \""+dir+"/t.json\"", 1)))
	if err == nil || !strings.Contains(err.Error(), "upstream[1].oauth.token_file: "+dir+"/t.json is also the token file of upstream[0]") {
		t.Errorf("shared token file: %v", err)
	}
}
