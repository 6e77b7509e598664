package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcmail/plcmail/config"
)

// result is what one in-process run of the command line produced.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs plcmail in-process exactly as main does, with stdin as given.
// argv[0] is args[0], so "sendmail" and "mailq" can be tested too.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	err := run(context.Background(), args, e)
	code := exitCode(err, &errb)
	return result{out.String(), errb.String(), code}
}

// testConfig is the minimal valid configuration the CLI tests start from:
// an upstream on loopback without TLS (never contacted unless a test starts
// one there), and a spool in a fresh temporary directory.
type testConfig struct {
	Dir      string // holds the config file and the spool
	Spool    string
	Upstream string // the [upstream] section body
	Extra    string // appended after everything else
}

func newTestConfig(t *testing.T) *testConfig {
	dir := t.TempDir()
	return &testConfig{
		Dir:   dir,
		Spool: filepath.Join(dir, "spool"),
		Upstream: `host = "127.0.0.1"
port = 1
security = "none"
auth = "none"
from = "plc-gateway@example.com"`,
	}
}

// write writes the file and returns its path.
func (c *testConfig) write(t *testing.T) string {
	t.Helper()
	path := filepath.Join(c.Dir, "plcmail.toml")
	text := fmt.Sprintf("[gateway]\nhostname = \"gw.test\"\nspool_dir = %q\n\n[upstream]\n%s\n\n[queue]\nmin_backoff = \"50ms\"\nmax_backoff = \"500ms\"\nscan_every = \"100ms\"\n%s\n",
		c.Spool, c.Upstream, c.Extra)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// upstreamTOML renders an [upstream] section body from settings such as
// mailertest.Upstream.Config() returns.
func upstreamTOML(u config.Upstream) string {
	var b strings.Builder
	fmt.Fprintf(&b, "host = %q\nport = %d\nsecurity = %q\nauth = %q\nfrom = %q\ntimeout = %q\n",
		u.Host, u.Port, u.Security, u.Auth, u.From, u.Timeout.D().String())
	if u.Username != "" {
		fmt.Fprintf(&b, "username = %q\n", u.Username)
	}
	if u.Password != "" {
		fmt.Fprintf(&b, "password = %q\n", u.Password)
	}
	if u.CAFile != "" {
		fmt.Fprintf(&b, "ca_file = %q\n", u.CAFile)
	}
	for _, fp := range u.Fingerprints {
		fmt.Fprintf(&b, "tls_fingerprints = [%q]\n", fp)
	}
	return b.String()
}
