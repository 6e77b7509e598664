package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// SocatPTYPair starts socat with two linked raw ptys and returns their paths
// (names ttyA and ttyB in a temporary directory). Unlike internal/pty, both
// ends are device paths, so both sides can open them as serial ports. socat
// dies with the test process: an orphan holding a reused pty would steal
// frames from a later test.
func SocatPTYPair(t testing.TB) (a, b string) {
	t.Helper()
	NeedTool(t, "socat", "socat")
	tmp := t.TempDir()
	a, b = filepath.Join(tmp, "ttyA"), filepath.Join(tmp, "ttyB")
	socat := exec.Command("socat", "pty,raw,echo=0,link="+a, "pty,raw,echo=0,link="+b)
	socat.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := socat.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-socat.Process.Pid, syscall.SIGKILL); socat.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, errA := os.Stat(a)
		_, errB := os.Stat(b)
		if errA == nil && errB == nil {
			return a, b
		}
		if time.Now().After(deadline) {
			t.Fatal("socat did not create its ptys")
		}
	}
}
