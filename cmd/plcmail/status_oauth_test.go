package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
)

// With two signed-in [[upstream]] entries, status names each one and tells
// how to sign in the second (`login --upstream NAME`), not just the first.
func TestStatusOAuthEveryEntry(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(dir, "client.secret")
	if err := os.WriteFile(sec, []byte("s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	entry := func(name string) string {
		return "\n[[upstream]]\nname = \"" + name + "\"\nhost = \"smtp.gmail.com\"\nport = 587\nsecurity = \"starttls\"\nusername = \"a@example.com\"\nfrom = \"a@example.com\"\n" +
			"[upstream.oauth]\nprovider = \"google\"\nclient_id = \"id-" + name + "\"\nclient_secret_file = \"" + sec + "\"\n"
	}
	cfg := filepath.Join(dir, "plcmail.toml")
	body := "[gateway]\nhostname = \"gw.example.com\"\nspool_dir = \"" + spool + "\"\n" + entry("gmail-a") + entry("gmail-b")
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "plcmail", "-c", cfg, "status")
	for _, want := range []string{
		"oauth (upstream gmail-a): google, client id-gmail-a",
		"oauth (upstream gmail-b): google, client id-gmail-b",
		"run plcmail -c " + cfg + " login\n",
		"run plcmail -c " + cfg + " login --upstream gmail-b\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s%s", want, r.stdout, r.stderr)
		}
	}
}

func TestSecretExpiryNote(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ date, want string }{
		{"", ""},
		{"2027-06-30", "client secret valid until 2027-06-30 (207 days)"},
		{"2026-12-20", "CLIENT SECRET EXPIRES on 2026-12-20 (in 15 days): create a new client secret"},
		{"2026-12-05", "CLIENT SECRET EXPIRES on 2026-12-05 (in 0 days)"}, // valid to the end of that day
		{"2026-12-04", "CLIENT SECRET EXPIRED on 2026-12-04: no new tokens, mail stays queued"},
	} {
		got := secretExpiryNote(&config.OAuth{ClientSecretFile: "s", ClientSecretExpires: tc.date}, now)
		if tc.want == "" && got != "" || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q: got %q, want prefix %q", tc.date, got, tc.want)
		}
	}
}
