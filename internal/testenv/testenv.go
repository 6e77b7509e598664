// Package testenv holds the project's one rule for tests that need something
// from the machine (a program, a Debian package): where it is missing the
// test is skipped, so a developer without swaks or simavr can still run
// everything else; under CI (the CI environment variable set, as .ci/run
// does) it fails, because there .ci/run installed it and a skip would hide a
// broken setup.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Missing skips t, or fails it under CI, saying what is missing and why.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("required under CI: %s", msg)
	} else {
		t.Skipf("skipping: %s", msg)
	}
}

// NeedTool returns the path of program name, or calls Missing; pkg names the
// Debian package that provides it, for the message.
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not installed (apt-get install %s)", name, pkg)
	}
	return p
}
