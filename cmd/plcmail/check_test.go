package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	c := newTestConfig(t)
	path := c.write(t)

	r := runCLI(t, "", "plcmail", "check", "-c", path)
	if r.code != 0 || r.stdout != path+": ok\n" {
		t.Errorf("valid config: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// -c before the command, as the global flag.
	if r := runCLI(t, "", "plcmail", "-c", path, "check"); r.code != 0 {
		t.Errorf("global -c: %+v", r)
	}

	bad := filepath.Join(c.Dir, "bad.toml")
	os.WriteFile(bad, []byte(`[gateway]
hostname = "gw.test"
spool_dir = "/tmp/x"
colour = "blue"

[upstream]
host = "smtp.example.com"
port = 0
security = "ssl"
from = "not-an-address"
`), 0o600)
	r = runCLI(t, "", "plcmail", "check", "-c", bad)
	want := []string{
		bad + ":4: gateway.colour: unknown key",
		bad + ":8: upstream.port: must be 1..65535, not 0",
		bad + `:9: upstream.security: must be "starttls", "tls" or "none", not "ssl"`,
		bad + `:10: upstream.from: "not-an-address" is not a mail address`,
	}
	got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 1 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("invalid config: code %d\nstdout:\n%s\nwant:\n%s", r.code, r.stdout, strings.Join(want, "\n"))
	}
	if r.stderr != "plcmail: "+bad+": 4 problems\n" {
		t.Errorf("stderr %q", r.stderr)
	}

	// A syntax error stops decoding; it still names the line.
	syntax := filepath.Join(c.Dir, "syntax.toml")
	os.WriteFile(syntax, []byte("[gateway]\nhostname = \"gw\nspool_dir = \"/tmp\"\n"), 0o600)
	if r := runCLI(t, "", "plcmail", "check", "-c", syntax); r.code != 1 || !strings.HasPrefix(r.stdout, syntax+":2: ") {
		t.Errorf("syntax error: %+v", r)
	}

	missing := filepath.Join(c.Dir, "missing.toml")
	if r := runCLI(t, "", "plcmail", "check", "-c", missing); r.code != 1 || !strings.Contains(r.stdout, missing+": open "+missing+": no such file") {
		t.Errorf("missing file: %+v", r)
	}
	if r := runCLI(t, "", "plcmail", "check", "extra"); r.code != 2 {
		t.Errorf("extra argument: %+v", r)
	}
}

// TestCheckTemplates: a config that is valid TOML but whose templates do not
// parse or do not render with sample data is reported at the template's line.
func TestCheckTemplates(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = `
[[alarm]]
code = 17
subject = "{{.Name}"
to = ["ops@example.com"]

[[alarm]]
code = 18
subject = "ok"
body = "{{if}}"
to = ["ops@example.com"]
`
	path := c.write(t)
	r := runCLI(t, "", "plcmail", "check", "-c", path)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 1 || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], path+":19: alarm[0].subject: ") ||
		!strings.HasPrefix(lines[1], path+":25: alarm[1].body: ") {
		t.Errorf("code %d, stdout:\n%s", r.code, r.stdout)
	}

	c.Extra = `
[[alarm]]
code = 17
subject = "ok"
body = "{{.NoSuchField}}"
to = ["ops@example.com"]
`
	path = c.write(t)
	r = runCLI(t, "", "plcmail", "check", "-c", path)
	if r.code != 1 || !strings.HasPrefix(r.stdout, path+":20: alarm[0].body: renders with sample data: ") || !strings.Contains(r.stdout, "NoSuchField") {
		t.Errorf("render error: code %d, stdout:\n%s", r.code, r.stdout)
	}
}
