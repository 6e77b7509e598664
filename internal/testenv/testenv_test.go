package testenv

import (
	"os"
	"os/exec"
	"strings"
	"sync"
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

// TestSyncBufferConcurrentWrites is only meaningful under -race: writers
// and a reader at once must not race, and no write may be lost.
func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 400 {
		t.Errorf("len = %d, want 400", n)
	}
}

// TestBuildOnce: Build builds a command once per test binary and gives
// every caller the same working program; RemoveBuilds removes it.
func TestBuildOnce(t *testing.T) {
	defer RemoveBuilds()
	// serialbench is the smallest command of the module.
	const pkg = "github.com/plcmail/plcmail/bench/serialbench"
	first := Build(t, pkg)
	if again := Build(t, pkg); again != first {
		t.Errorf("second Build = %q, want the first build %q", again, first)
	}
	out, err := exec.Command(first, "-h").CombinedOutput()
	if !strings.Contains(string(out), "-tty") {
		t.Errorf("%s -h: %v\n%s", first, err, out)
	}
	RemoveBuilds()
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Errorf("after RemoveBuilds, stat %s: %v", first, err)
	}
}
