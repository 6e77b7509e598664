package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/throwawayca"
)

func TestChannelValid(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "ntfy.token")
	os.WriteFile(tok, []byte("tk_secret\n"), 0o600)
	src := validBase + fmt.Sprintf(`
[mqtt]
broker = "tcp://127.0.0.1:1883"

[[channel]]
name = "ntfy"
kind = "ntfy"
url = "https://ntfy.sh/plant2-alarms"
token_file = %q
severity_at_least = "critical"

[[channel]]
name = "teams"
kind = "teams"
url = "https://example.webhook.office.com/webhookb2/x"
not_accepted_within = "15m"
upstream_failing_for = "2h"
lifetime = "1h"

[[channel]]
name = "broker"
kind = "mqtt"
topic = "plcmail/gw1/alarm"
upstream_failing_for = "1h"
relayed = true
`, tok)
	c, err := Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Channel) != 3 {
		t.Fatalf("%d channels", len(c.Channel))
	}
	if ch := c.Channel[0]; ch.Lifetime != c.Queue.Lifetime || ch.Relayed {
		t.Errorf("defaults: %+v", ch)
	}
	if s, err := c.Channel[0].ChannelSecret(); s != "tk_secret" || err != nil {
		t.Errorf("ChannelSecret = %q, %v", s, err)
	}
	if ch := c.Channel[1]; ch.NotAcceptedWithin.D() != 15*time.Minute || ch.UpstreamFailingFor.D() != 2*time.Hour || ch.Lifetime.D() != time.Hour {
		t.Errorf("durations: %+v", ch)
	}
	if ch := c.Channel[2]; !ch.Relayed || ch.Topic != "plcmail/gw1/alarm" {
		t.Errorf("mqtt: %+v", ch)
	}
}

func TestChannelErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("pw\n"), 0o644)
	empty := filepath.Join(dir, "empty.secret")
	os.WriteFile(empty, nil, 0o600)
	good := filepath.Join(dir, "good.secret")
	os.WriteFile(good, []byte("pw\n"), 0o600)
	authority, err := throwawayca.New("receiver CA")
	if err != nil {
		t.Fatal(err)
	}
	pem := filepath.Join(dir, "ca.pem")
	os.WriteFile(pem, authority.PEM(), 0o644)

	base := validBase + "\n[[channel]]\n" // on line 13
	const hook = "name = \"hook\"\nkind = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n"
	const rule = "severity_at_least = \"alarm\"\n"
	tests := []struct {
		name, src, want string
	}{
		{"no name", "kind = \"webhook\"\nurl = \"https://h.example.com\"\n" + rule, ":13: channel[0].name: \"\": required"},
		{"bad name", "name = \"a b\"\nkind = \"webhook\"\nurl = \"https://h.example.com\"\n" + rule, ":14: channel[0].name: \"a b\""},
		{"bad kind", "name = \"x\"\nkind = \"telegram\"\n" + rule, ":15: channel[0].kind: must be one of webhook, ntfy, teams, slack, mqtt, not \"telegram\""},
		{"no url", "name = \"x\"\nkind = \"slack\"\n" + rule, ":13: channel[0].url: required for kind slack"},
		{"plain http remote", "name = \"x\"\nkind = \"ntfy\"\nurl = \"http://ntfy.example.com/t\"\n" + rule, ":16: channel[0].url: http://ntfy.example.com sends alarms in clear"},
		{"not http", "name = \"x\"\nkind = \"webhook\"\nurl = \"ftp://h.example.com\"\n" + rule, ":16: channel[0].url: scheme \"ftp\" is not http or https"},
		{"user in url", "name = \"x\"\nkind = \"webhook\"\nurl = \"https://u:p@h.example.com\"\n" + rule, ":16: channel[0].url: no credentials in the URL"},
		{"no rule", hook, ":13: channel[0]: no rule"},
		{"bad severity", hook + "severity_at_least = \"high\"\n", ":17: channel[0].severity_at_least: must be info, warning, alarm or critical, not \"high\""},
		{"negative", hook + "not_accepted_within = \"-1m\"\n", ":17: channel[0].not_accepted_within: must not be negative"},
		{"bad duration", hook + "upstream_failing_for = 60\n", ":17: channel[0].upstream_failing_for: must be a duration in quotes"},
		{"short lifetime", hook + rule + "lifetime = \"10s\"\n", ":18: channel[0].lifetime: must be at least 1m"},
		{"readable token", hook + rule + fmt.Sprintf("token_file = %q\n", open), ":18: channel[0].token_file: " + open + " is readable by group or others (mode 0644)"},
		{"empty token", hook + rule + fmt.Sprintf("token_file = %q\n", empty), ":18: channel[0].token_file: " + empty + " is empty"},
		{"token and password", hook + rule + fmt.Sprintf("token_file = %q\nusername = \"u\"\npassword_file = %q\n", good, good), ":18: channel[0].token_file: either token_file or username"},
		{"password without user", hook + rule + fmt.Sprintf("password_file = %q\n", good), ":13: channel[0].username: required with password_file"},
		{"user without password", hook + rule + "username = \"u\"\n", ":13: channel[0].password_file: required with username"},
		{"topic on webhook", hook + rule + "topic = \"a/b\"\n", ":18: channel[0].topic: is for kind mqtt"},
		{"mqtt without [mqtt]", "name = \"x\"\nkind = \"mqtt\"\ntopic = \"a/b\"\n" + rule, ":15: channel[0].kind: mqtt publishes over the [mqtt] broker connection"},
		{"mqtt wildcard", "name = \"x\"\nkind = \"mqtt\"\ntopic = \"a/#\"\n" + rule, ":16: channel[0].topic: \"a/#\": a topic to publish to has no wildcards"},
		{"mqtt no topic", "name = \"x\"\nkind = \"mqtt\"\n" + rule, ":13: channel[0].topic: required for kind mqtt"},
		{"mqtt with url", "name = \"x\"\nkind = \"mqtt\"\ntopic = \"a\"\nurl = \"https://h.example.com\"\n" + rule, ":17: channel[0].url: kind mqtt takes topic only"},
		{"unknown key", hook + rule + "retries = 3\n", ":18: channel[0].retries: unknown key"},
		{"ca not pem", hook + rule + fmt.Sprintf("ca_file = %q\n", good), ":18: channel[0].ca_file: " + good + " holds no PEM certificate"},
		{"ca missing", hook + rule + "ca_file = \"/nonexistent/ca.pem\"\n", ":18: channel[0].ca_file: open /nonexistent/ca.pem: no such file"},
		{"ca without tls", "name = \"x\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1880/alarm\"\n" + rule + fmt.Sprintf("ca_file = %q\n", pem), ":18: channel[0].ca_file: is for TLS"},
		{"ca on mqtt", "name = \"x\"\nkind = \"mqtt\"\ntopic = \"a\"\n" + rule + fmt.Sprintf("ca_file = %q\n", pem), ":13: channel[0].url: kind mqtt takes topic only"},
		{"duplicate", hook + rule + "\n[[channel]]\n" + hook + rule, ":20: channel[1].name: duplicate channel name \"hook\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(base+tt.src))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got\n%v\nwant a line containing %q", err, tt.want)
			}
		})
	}
}

// TestChannelBadRuleIsOneProblem: a rule whose value does not decode is
// reported once, at its key, not also as "no rule" at the channel.
func TestChannelBadRuleIsOneProblem(t *testing.T) {
	for _, rule := range []string{
		`not_accepted_within = "15 minutes"`,
		`upstream_failing_for = 60`,
		`severity_at_least = 5`,
	} {
		src := validBase + "\n[[channel]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://x.example/y\"\n" + rule + "\n"
		_, err := Parse("t.toml", []byte(src))
		es := AsErrors(err)
		key := "channel[0]." + strings.TrimSpace(strings.SplitN(rule, "=", 2)[0])
		if len(es) != 1 || es[0].Key != key {
			t.Errorf("%s: %v, want one problem at %s", rule, err, key)
		}
	}
}

// TestChannelURLErrorsHideThePath: a Slack or Teams webhook URL is the
// secret itself, and a problem of a reload goes to the log: the messages
// about url name its scheme and host, never its path or query.
func TestChannelURLErrorsHideThePath(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"http://hooks.slack.com/services/T0/B0/SECRETX?token=SECRETX", `channel[0].url: http://hooks.slack.com sends alarms in clear`},
		{"ftp://files.example.com/SECRETX", `channel[0].url: scheme "ftp" is not http or https`},
		{"hooks.slack.com/services/T0/B0/SECRETX", `channel[0].url: not an http(s) URL`},
	} {
		src := validBase + "\n[[channel]]\nname = \"x\"\nkind = \"slack\"\nurl = \"" + tc.url + "\"\nseverity_at_least = \"alarm\"\n"
		_, err := Parse("t.toml", []byte(src))
		if err == nil || strings.Contains(err.Error(), "SECRETX") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q and no path", tc.url, err, tc.want)
		}
	}
}
