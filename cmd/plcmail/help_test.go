package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpEveryCommand: every command answers -h and --help on stdout with
// its synopsis and flags, exit 0; before, the flag package's "help
// requested" came out as a usage error, exit 2.
func TestHelpEveryCommand(t *testing.T) {
	// Flags each command's help must list, beyond -c.
	wantFlags := map[string][]string{
		"status": {"--json"}, "test": {"--to ADDR"}, "demo": {"--out DIR", "--follow", "--pace"},
		"send": {"-t", "-f FROM", "-i"}, "frame": {"--boot", "--hex"}, "decode": {"--hex", "--strict"},
	}
	names := []string{"queue list", "queue delete"}
	for name := range commands() {
		names = append(names, name)
	}
	for _, name := range names {
		for _, h := range []string{"--help", "-h"} {
			args := append([]string{"plcmail"}, strings.Fields(name)...)
			r := runCLI(t, "", append(args, h)...)
			if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "usage: plcmail ") {
				t.Errorf("plcmail %s %s: %+v", name, h, r)
				continue
			}
			if !strings.Contains(r.stdout, "plcmail "+strings.Fields(name)[0]) && !strings.Contains(r.stdout, "] "+name) {
				t.Errorf("plcmail %s %s: synopsis does not name the command:\n%s", name, h, r.stdout)
			}
			for _, f := range wantFlags[name] {
				if !strings.Contains(r.stdout, f) {
					t.Errorf("plcmail %s %s: %q not listed:\n%s", name, h, f, r.stdout)
				}
			}
		}
	}
	if r := runCLI(t, "", "plcmail", "queue", "list", "--help"); !strings.Contains(r.stdout, "--json") {
		t.Errorf("queue list --help: %+v", r)
	}
	// The sendmail link, and plcmail help CMD.
	for _, args := range [][]string{{"sendmail", "--help"}, {"sendmail", "-h"}, {"plcmail", "help", "check"}, {"plcmail", "help"}, {"plcmail", "--help"}, {"plcmail", "-h"}} {
		if r := runCLI(t, "", args...); r.code != 0 || !strings.HasPrefix(r.stdout, "usage:") {
			t.Errorf("%q: %+v", args, r)
		}
	}
	// -h N is sendmail's hop count, not help: accepted and ignored.
	c := newTestConfig(t)
	if r := runCLI(t, "Subject: x\n\nbody\n", "sendmail", "-c", c.write(t), "-h", "17", "ops@example.com"); r.code != 0 || r.stdout != "" {
		t.Errorf("sendmail -h 17: %+v", r)
	}
	// A wrong flag is still a usage error that points at --help.
	if r := runCLI(t, "", "plcmail", "check", "--nope"); r.code != 2 || !strings.Contains(r.stderr, "plcmail check --help") {
		t.Errorf("check --nope: %+v", r)
	}
}

// TestVersionFlag: plcmail --version prints what plcmail version prints.
func TestVersionFlag(t *testing.T) {
	a, b := runCLI(t, "", "plcmail", "version"), runCLI(t, "", "plcmail", "--version")
	if a.code != 0 || b.code != 0 || a.stdout != b.stdout || !strings.HasPrefix(b.stdout, "plcmail ") {
		t.Errorf("version %+v, --version %+v", a, b)
	}
}

// TestNewaliasesLink: newaliases through a link does nothing and succeeds,
// as Postfix's does without an aliases file; it reads no config.
func TestNewaliasesLink(t *testing.T) {
	for _, args := range [][]string{{"newaliases"}, {"/usr/bin/newaliases", "-v"}} {
		if r := runCLI(t, "", args...); r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Errorf("%q: %+v", args, r)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestSendExitCodes: send and the sendmail link exit with sysexits codes,
// so that callers tell "try again" (75) from "never" (65) and a broken
// setup (78).
func TestSendExitCodes(t *testing.T) {
	c := newTestConfig(t)
	good := c.write(t)
	bad := filepath.Join(t.TempDir(), "broken.toml")
	os.WriteFile(bad, []byte("[gateway\n"), 0o600)
	unwritable := newTestConfig(t)
	unwritable.Spool = "/proc/plcmail-cannot-exist"
	full := newTestConfig(t)
	full.Spool = "/dev/full/spool" // ENOTDIR: a spool that cannot be made

	msg := "Subject: x\n\nbody\n"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
	}{
		{"queued", msg, []string{"-c", good, "ops@example.com"}, 0},
		{"unknown option", msg, []string{"-c", good, "-Z", "ops@example.com"}, exUsage},
		{"unknown long option", msg, []string{"-c", good, "--bogus"}, exUsage},
		{"missing value", msg, []string{"-c", good, "ops@example.com", "-f"}, exUsage},
		{"no recipients", msg, []string{"-c", good}, exDataErr},
		{"no recipients -t", msg, []string{"-c", good, "-t"}, exDataErr},
		{"bad recipient", msg, []string{"-c", good, "not an address"}, exDataErr},
		{"bad sender", msg, []string{"-c", good, "-f", "a b", "ops@example.com"}, exDataErr},
		{"spool unwritable", msg, []string{"-c", unwritable.write(t), "ops@example.com"}, exTempFail},
		{"spool not a directory", msg, []string{"-c", full.write(t), "ops@example.com"}, exTempFail},
		{"config broken", msg, []string{"-c", bad, "ops@example.com"}, exConfig},
		{"config missing", msg, []string{"-c", filepath.Join(t.TempDir(), "none.toml"), "ops@example.com"}, exConfig},
	} {
		r := runCLI(t, tc.stdin, append([]string{"sendmail"}, tc.args...)...)
		if r.code != tc.code {
			t.Errorf("%s: exit %d, want %d: %+v", tc.name, r.code, tc.code, r)
		}
		if tc.code != 0 && (r.stderr == "" || !strings.HasPrefix(r.stderr, "plcmail: ")) {
			t.Errorf("%s: no reason on stderr: %+v", tc.name, r)
		}
	}
	// stdin that cannot be read: EX_IOERR, nothing queued.
	var out, errb strings.Builder
	e := &env{stdin: failingReader{}, stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	if code := exitCode(run(t.Context(), []string{"sendmail", "-c", good, "ops@example.com"}, e), &errb); code != exIOErr {
		t.Errorf("unreadable stdin: exit %d, want %d (%s)", code, exIOErr, errb.String())
	}
	if n := len(spoolMessages(t, c.Spool)); n != 1 {
		t.Errorf("%d messages queued, want only the one of the first case", n)
	}
	// The cronie way: -f with a bare login name is not an error.
	if r := runCLI(t, msg, "sendmail", "-c", good, "-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root", "ops@example.com"); r.code != 0 {
		t.Errorf("cronie's options: %+v", r)
	}
}
