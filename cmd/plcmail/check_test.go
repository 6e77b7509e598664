package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	if r.code != 1 || !strings.HasPrefix(r.stdout, path+":20: alarm[0].body: template line 1:2: .NoSuchField: not a field of the mail data") {
		t.Errorf("render error: code %d, stdout:\n%s", r.code, r.stdout)
	}
}

// TestCheckEveryProblem runs the real `plcmail check` on one file per class
// of mistake in testdata/check and wants every problem of the file, each as
// FILE:LINE: key: message, in one run: a user must never fix a config one
// error per round.
func TestCheckEveryProblem(t *testing.T) {
	const dur = ` (use e.g. "30s", "5m", "2h", "5d")`
	tests := []struct {
		file string
		want []string // every line of stdout, without the "FILE:" prefix; nil: valid
	}{
		{"valid.toml", nil},
		{"utf8bom.toml", nil},
		{"unknown_keys.toml", []string{
			"4: gateway.colour: unknown key",
			"12: upstream.user: unknown key (did you mean username?)",
			"17: serial[0].baudrate: unknown key (did you mean baud?)",
			"22: serial[1].baudrate: unknown key (did you mean baud?)",
			"24: smtpd: unknown section (did you mean smtp?)",
		}},
		{"wrong_types.toml", []string{
			"7: upstream.port: must be an integer, not a string",
			"10: upstream.from: must be a string, not an array",
			"13: queue.batch_size: must be an integer, not a float",
			"18: serial[0].baud: must be an integer, not a string",
			"19: serial[0].restart_notice: must be true or false, not a string",
			"22: alarm[0].code: must be an integer, not a string",
			"23: alarm[0].to: must be an array of strings, not a string",
		}},
		{"durations.toml", []string{
			`11: upstream.timeout: invalid duration "30 seconds"` + dur,
			`14: queue.lifetime: invalid duration "five days"` + dur,
			`15: queue.min_backoff: must be a duration in quotes (e.g. "30s"), not an integer`,
			`18: flood.holdoff: invalid duration "5mins"` + dur,
		}},
		{"validation.toml", []string{
			`2: gateway.hostname: "gw test" is not a host name`,
			`4: gateway.log_level: must be debug, info, warn or error, not "verbose"`,
			`8: upstream.port: must be 1..65535, not 0`,
			`9: upstream.security: must be "starttls", "tls" or "none", not "ssl"`,
			`11: upstream.from: "not-an-address" is not a mail address`,
			`14: serial[0].name: "press 1" must not contain '/', '\' or white space`,
			`16: serial[0].parity: must be "none", "odd", "even", "mark" or "space", not "sometimes"`,
			`19: alarm[0].code: must be 0..65535, not 70000`,
		}},
		{"templates.toml", []string{
			`14: alarm[0].subject: template line 1: bad character U+007D '}'`,
			`15: alarm[0].body: template line 1: missing value for if`,
			`21: alarm[1].body: template line 1:2: .NoSuchField: not a field of the mail data, nor one of the methods templates may call (Day, Format, Hour, Hours, IsZero, Local, Milliseconds, Minute, Minutes, Month, Round, Second, Seconds, String, Truncate, UTC, Unix, Weekday, Year)`,
			`26: alarm[2].subject: renders with sample data: template line 1:11: at <{{template "nope"}}>: template "nope" not defined`,
			`27: alarm[2].html: template line 1: bad character U+007D '}'`,
		}},
		{"syntax.toml", []string{
			`2: gateway.hostname: strings cannot contain newlines`,
		}},
		{"utf16le.toml", []string{"1: file is UTF-16; save it as UTF-8"}},
		{"utf16be.toml", []string{"1: file is UTF-16; save it as UTF-8"}},
		{"utf16le-nobom.toml", []string{"1: file is UTF-16; save it as UTF-8"}},
		{"nul.toml", []string{"1: file contains a NUL byte; save it as UTF-8 text"}},
		{"mixed.toml", mixedProblems},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "check", tt.file)
			r := runCLI(t, "", "plcmail", "check", "-c", path)
			if tt.want == nil {
				if r.code != 0 || r.stdout != path+": ok\n" {
					t.Errorf("code %d, stdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
				}
				return
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, path+":"+w)
			}
			got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if r.code != 1 || strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("code %d\nstdout:\n%s\nwant:\n%s", r.code, r.stdout, strings.Join(want, "\n"))
			}
			if wantErr := fmt.Sprintf("plcmail: %s: %d %s\n", path, len(want), plural(len(want), "problem", "problems")); r.stderr != wantErr {
				t.Errorf("stderr %q, want %q", r.stderr, wantErr)
			}
		})
	}
}

// mixedProblems is every problem in testdata/check/mixed.toml, of every
// class: before, check showed one per run and took many rounds.
var mixedProblems = []string{
	`5: gateway.colour: unknown key`,
	`9: upstream.port: must be an integer, not a string`,
	`10: upstream.security: must be "starttls", "tls" or "none", not "ssl"`,
	`13: upstream.timeout: invalid duration "30 seconds" (use e.g. "30s", "5m", "2h", "5d")`,
	`16: queue.lifetime: invalid duration "five days" (use e.g. "30s", "5m", "2h", "5d")`,
	`21: serial[0].baudrate: unknown key (did you mean baud?)`,
	`22: serial[0].data_bits: must be an integer, not a string`,
	`25: flood.max_mails_per_minute: must be at least 1`,
	`27: smtpd: unknown section (did you mean smtp?)`,
	`32: alarm[0].subject: template line 1: bad character U+007D '}'`,
	`37: alarm[1].body: template line 1:2: .NoSuchField: not a field of the mail data, nor one of the methods templates may call (Day, Format, Hour, Hours, IsZero, Local, Milliseconds, Minute, Minutes, Month, Round, Second, Seconds, String, Truncate, UTC, Unix, Weekday, Year)`,
	`38: alarm[1].to[0]: "ops" is not a mail address`,
}

// TestServeRefusesInvalidConfig: serve stops before starting anything on
// the same problems check finds, and prints every one the same way.
func TestServeRefusesInvalidConfig(t *testing.T) {
	path := filepath.Join("testdata", "check", "mixed.toml")
	r := runCLI(t, "", "plcmail", "serve", "-c", path)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, w := range mixedProblems {
		if !strings.Contains(r.stderr, "\n"+path+":"+w+"\n") && !strings.HasPrefix(r.stderr, path+":"+w+"\n") {
			t.Errorf("stderr lacks the line %q", path+":"+w)
		}
	}
	if !strings.Contains(r.stderr, fmt.Sprintf("plcmail: %s: %d problems; not starting\n", path, len(mixedProblems))) {
		t.Errorf("stderr lacks the summary:\n%s", r.stderr)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", r.stderr)
	}
}

// modbusCodeWithoutTemplate is a valid [[modbus]] device whose rule has a
// code no [[alarm]] has: a warning for check and serve, not a failure.
const modbusCodeWithoutTemplate = `
[[modbus]]
name = "tank"
mode = "tcp"
address = "127.0.0.1:1"
to = ["ops@example.com"]
[[modbus.tag]]
name = "level"
table = "holding"
address = 0
[[modbus.tag.alarm]]
limit = "H"
setpoint = 90
code = 4242
`

// TestCheckModbusCodeWithoutTemplate: a Modbus rule whose code has no
// [[alarm]] template is a warning at its line, not a failure.
func TestCheckModbusCodeWithoutTemplate(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = modbusCodeWithoutTemplate
	path := c.write(t)
	r := runCLI(t, "", "plcmail", "check", "-c", path)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := slices.Index(strings.Split(string(src), "\n"), "code = 4242") + 1
	want := fmt.Sprintf("%s:%d: modbus[0].tag[0].alarm[0].code: warning: no [[alarm]] has code 4242", path, line)
	if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.HasSuffix(r.stdout, ": ok\n") {
		t.Errorf("check: exit %d\n%s%s\nwant exit 0 and %q", r.code, r.stdout, r.stderr, want)
	}
}
