// Package bench holds the side-by-side benchmark of plcmail and a Postfix
// relay (bench/run.sh). The benchmark itself is long and needs root, so CI
// does not run it; this test only keeps the script and its helper parseable,
// so a broken edit fails `go test ./...` instead of the next benchmark run.
package bench

import (
	"os"
	"os/exec"
	"testing"
)

// TestScriptsParse runs `bash -n` on run.sh and parses the Python helpers.
func TestScriptsParse(t *testing.T) {
	checks := []struct {
		tool string
		args []string
	}{
		{"bash", []string{"-n", "run.sh"}},
		{"python3", []string{"-c", "import ast\nfor f in ('idle_sessions.py', 'memsample.py'): ast.parse(open(f).read(), f)"}},
	}
	for _, c := range checks {
		t.Run(c.tool, func(t *testing.T) {
			if _, err := exec.LookPath(c.tool); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s not installed (required in CI): %v", c.tool, err)
				}
				t.Skipf("%s not installed: %v", c.tool, err)
			}
			out, err := exec.Command(c.tool, c.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %v: %v\n%s", c.tool, c.args, err, out)
			}
		})
	}
}
