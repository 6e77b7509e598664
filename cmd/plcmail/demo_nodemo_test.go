//go:build nodemo

package main

import (
	"strings"
	"testing"
)

// TestDemoLeftOut: a nodemo build (the OpenWrt packages) answers
// `plcmail demo` with exit 1 and where to run it, and still documents the
// command's flags.
func TestDemoLeftOut(t *testing.T) {
	r := runCLI(t, "", "plcmail", "demo", "--pace", "10ms")
	if r.code != 1 || !strings.Contains(r.stderr, "demo is not in this build") || !strings.Contains(r.stderr, "go run ./cmd/plcmail demo") {
		t.Errorf("plcmail demo: %+v", r)
	}
	if r := runCLI(t, "", "plcmail", "demo", "--help"); r.code != 0 || !strings.Contains(r.stdout, "--follow") {
		t.Errorf("plcmail demo --help: %+v", r)
	}
}
