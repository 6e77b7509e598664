package main

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/plcmail/plcmail/internal/mailertest"
)

// TestTestCommand runs `plcmail test --to` against a real STARTTLS upstream
// with a test CA and AUTH, and against the misconfigurations people hit.
func TestTestCommand(t *testing.T) {
	t.Run("accepted", func(t *testing.T) {
		u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
		c := newTestConfig(t)
		c.Upstream = upstreamTOML(u.Config())
		r := runCLI(t, "", "plcmail", "-c", c.write(t), "test", "--to", "Ops <ops@example.com>")
		if r.code != 0 {
			t.Fatalf("test: %+v", r)
		}
		t.Logf("dialogue:\n%s", r.stdout)
		for _, want := range []string{"STARTTLS", "certificate verified", "AUTH", "MAIL FROM:<plc-gateway@example.com>", "RCPT TO:<ops@example.com>", "OK: " + u.Addr + " accepted the test mail for ops@example.com\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("dialogue lacks %q", want)
			}
		}
		pw := "s3cret-Pa55"
		for _, secret := range []string{pw, base64.StdEncoding.EncodeToString([]byte("\x00plc@example.com\x00" + pw)), base64.StdEncoding.EncodeToString([]byte(pw))} {
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("output shows the secret %q", secret)
			}
		}
		m := u.Messages()
		if len(m) != 1 || m[0].To[0] != "ops@example.com" || !m[0].TLS || m[0].User != "plc@example.com" || !strings.Contains(string(m[0].Data), "Subject: plcmail test from gw.test") {
			t.Errorf("upstream received %+v", m)
		}
	})

	fails := []struct {
		name   string
		opts   mailertest.Options
		config func(u *mailertest.Upstream) string
		hint   string
		nohint string // a hint that would mislead here
	}{{
		name: "STARTTLS missing: no credentials, no mail",
		opts: mailertest.Options{Security: mailertest.Plain, AllowInsecureAuth: true},
		config: func(u *mailertest.Upstream) string {
			cu := u.Config()
			cu.Security = "starttls"
			return upstreamTOML(cu)
		},
		hint: "does not offer STARTTLS",
	}, {
		name: "unknown CA",
		config: func(u *mailertest.Upstream) string {
			cu := u.Config()
			cu.CAFile = ""
			return upstreamTOML(cu)
		},
		hint: "upstream.ca_file",
	}, {
		name: "wrong password",
		opts: mailertest.Options{RequireAuth: true},
		config: func(u *mailertest.Upstream) string {
			cu := u.Config()
			cu.Password = "wrong"
			return upstreamTOML(cu)
		},
		hint: "authentication failed",
	}, {
		// The server's EHLO lists the mechanisms it takes: one it does not
		// list is not sent (it would only earn a 504 that reads like a bad
		// password), and the error names both.
		name: "mechanism not offered",
		opts: mailertest.Options{RequireAuth: true, AuthMechs: []string{"PLAIN", "LOGIN"}},
		config: func(u *mailertest.Upstream) string {
			cu := u.Config()
			cu.Auth = "cram-md5"
			return upstreamTOML(cu)
		},
		hint:   `offers AUTH "PLAIN LOGIN", not CRAM-MD5`,
		nohint: "the password",
	}, {
		name:   "recipient refused",
		opts:   mailertest.Options{Rcpt: func(string) error { return mailertest.Reply(550, "no such user") }},
		config: func(u *mailertest.Upstream) string { return upstreamTOML(u.Config()) },
	}}
	for _, tt := range fails {
		t.Run(tt.name, func(t *testing.T) {
			u := mailertest.NewUpstream(t, tt.opts)
			c := newTestConfig(t)
			c.Upstream = tt.config(u)
			r := runCLI(t, "", "plcmail", "-c", c.write(t), "test", "--to", "ops@example.com")
			t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			if r.code != 1 || !strings.HasPrefix(r.stderr, "plcmail: test: FAILED: "+u.Addr+" did not accept the mail: ") {
				t.Errorf("code %d, stderr %q", r.code, r.stderr)
			}
			if tt.hint != "" && !strings.Contains(r.stderr, "hint: "+tt.hint) && !strings.Contains(r.stderr, "hint: ") {
				t.Errorf("stderr lacks a hint")
			}
			if !strings.Contains(r.stderr, tt.hint) {
				t.Errorf("stderr lacks hint %q", tt.hint)
			}
			if tt.nohint != "" && strings.Contains(r.stderr, tt.nohint) {
				t.Errorf("stderr has the misleading %q", tt.nohint)
			}
			if len(u.Messages()) != 0 {
				t.Errorf("upstream accepted %d messages", len(u.Messages()))
			}
			if tt.opts.Security == mailertest.Plain {
				for _, ev := range u.Events() {
					if strings.HasPrefix(ev, "auth") || strings.HasPrefix(ev, "mail") {
						t.Errorf("sent in clear: %q", u.Events())
					}
				}
			}
		})
	}

	if r := runCLI(t, "", "plcmail", "test"); r.code != 2 {
		t.Errorf("without --to: %+v", r)
	}
	if r := runCLI(t, "", "plcmail", "test", "--to", "root"); r.code != 2 {
		t.Errorf("--to root: %+v", r)
	}
}

// `plcmail test --upstream NAME` tests that entry of an [[upstream]] list,
// with its own credentials, and an unknown name is a usage error.
func TestTestCommandNamedUpstream(t *testing.T) {
	first := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	second := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	dir := t.TempDir()
	path := writeListConfig(t, dir, entryTOML(first.Config(), "primary", true), entryTOML(second.Config(), "backup", false))
	r := runCLI(t, "", "plcmail", "-c", path, "test", "--upstream", "backup", "--to", "ops@example.com")
	if r.code != 0 || !strings.Contains(r.stdout, "OK: "+second.Addr+" accepted") {
		t.Fatalf("test --upstream backup: %+v", r)
	}
	if len(second.Messages()) != 1 || len(first.Messages()) != 0 {
		t.Errorf("first got %d, backup %d mails; want 0 and 1", len(first.Messages()), len(second.Messages()))
	}
	if r := runCLI(t, "", "plcmail", "-c", path, "test", "--upstream", "nope", "--to", "ops@example.com"); r.code != 2 || !strings.Contains(r.stderr, "primary, backup") {
		t.Errorf("unknown upstream: %+v", r)
	}
}
