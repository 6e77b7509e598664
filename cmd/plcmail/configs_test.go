package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcmail/plcmail/config"
)

// TestShippedConfigs loads every file in configs/ the way `plcmail check`
// does, so an example that drifts from the config code fails here rather than
// on a user's first run. The example's secret file cannot exist on a test
// machine: it is created with the right mode in a temporary directory and the
// path substituted, which keeps the example realistic.
func TestShippedConfigs(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("configs/: found %d files, want the example and local-test", len(files))
	}
	secret := filepath.Join(t.TempDir(), "upstream.secret")
	if err := os.WriteFile(secret, []byte("app-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.ReplaceAll(string(data), `"/etc/plcmail/upstream.secret"`, `"`+secret+`"`)
			text = strings.ReplaceAll(text, `"/etc/plcmail/oauth-client.secret"`, `"`+secret+`"`)
			cfg, err := config.Parse(f, []byte(text))
			if err != nil {
				t.Fatalf("config errors:\n%v", err)
			}
			if err := compileTemplates(cfg); err != nil {
				t.Fatalf("template errors:\n%v", err)
			}
			if len(cfg.Alarm) == 0 {
				t.Errorf("no [[alarm]] examples")
			}
		})
	}
}

// TestExampleAlternatives uncomments each commented [upstream] alternative
// of the example in turn (replacing the active one) and loads the result, so
// the Microsoft 365 and own-domain blocks are as valid as the Gmail one.
func TestExampleAlternatives(t *testing.T) {
	data, err := os.ReadFile("../../configs/plcmail.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(t.TempDir(), "upstream.secret")
	if err := os.WriteFile(secret, []byte("app-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.ReplaceAll(string(data), `"/etc/plcmail/upstream.secret"`, `"`+secret+`"`), "\n")
	// Find the active [upstream] block (up to the next blank line) and every
	// commented "# [upstream]" block.
	var active [2]int
	var alternatives [][2]int
	for i, l := range lines {
		switch l {
		case "[upstream]", "# [upstream]":
			end := i
			for end < len(lines) && strings.TrimSpace(lines[end]) != "" {
				end++
			}
			if l == "[upstream]" {
				active = [2]int{i, end}
			} else {
				alternatives = append(alternatives, [2]int{i, end})
			}
		}
	}
	if active[1] == 0 || len(alternatives) != 2 {
		t.Fatalf("example layout changed: active %v, alternatives %v", active, alternatives)
	}
	for _, alt := range alternatives {
		var out []string
		for i, l := range lines {
			switch {
			case i >= active[0] && i < active[1]:
				out = append(out, "# "+l) // keep line numbers
			case i >= alt[0] && i < alt[1]:
				out = append(out, strings.TrimPrefix(strings.TrimPrefix(l, "#"), " "))
			default:
				out = append(out, l)
			}
		}
		cfg, err := config.Parse("example", []byte(strings.Join(out, "\n")))
		if err != nil {
			t.Fatalf("alternative at line %d:\n%v", alt[0]+1, err)
		}
		t.Logf("alternative at line %d: %s:%d %s", alt[0]+1, cfg.Upstream.Host, cfg.Upstream.Port, cfg.Upstream.Security)
	}
}
