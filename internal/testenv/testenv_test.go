package testenv

import (
	"os/exec"
	"testing"
)

func TestNeedToolFindsShell(t *testing.T) {
	want, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	if got := NeedTool(t, "sh", "dash"); got != want {
		t.Errorf("NeedTool(sh) = %q, want %q", got, want)
	}
}

// fakeTB records how Missing ended the test instead of ending it.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }

func TestMissingSkipsLocallyFailsInCI(t *testing.T) {
	t.Setenv("CI", "")
	local := &fakeTB{}
	Missing(local, "no %s", "swaks")
	t.Setenv("CI", "true")
	ci := &fakeTB{}
	Missing(ci, "no %s", "swaks")
	if !local.skipped || local.failed || !ci.failed || ci.skipped {
		t.Errorf("local skipped=%v failed=%v; CI skipped=%v failed=%v", local.skipped, local.failed, ci.skipped, ci.failed)
	}
}
