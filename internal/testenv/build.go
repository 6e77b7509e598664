package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// builds are the programs built by this test binary, by package path.
var builds = struct {
	sync.Mutex
	dir  string
	done map[string]*build
}{done: map[string]*build{}}

type build struct {
	once sync.Once
	out  string // where it goes
	path string // out, once built
	err  error
}

// BuildPlcmail returns the path of the plcmail command built from the
// working tree, built once per test binary; see Build.
func BuildPlcmail(t testing.TB) string {
	t.Helper()
	return Build(t, "github.com/plcmail/plcmail/cmd/plcmail")
}

// Build returns the path of the program in package pkg (an import path in
// this module), built with `go build` once per test binary: every test of
// the binary gets the same file. The build goes into a temporary folder
// that RemoveBuilds, called from TestMain after m.Run, removes. A failed
// build fails t.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.Lock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "plcmail-testbin-")
		if err != nil {
			builds.Unlock()
			t.Fatal(err)
		}
		builds.dir = dir
	}
	b := builds.done[pkg]
	if b == nil {
		// One folder per package: two commands can share a name.
		b = &build{out: filepath.Join(builds.dir, strconv.Itoa(len(builds.done)), filepath.Base(pkg))}
		builds.done[pkg] = b
	}
	builds.Unlock()
	b.once.Do(func() {
		if msg, err := exec.Command("go", "build", "-o", b.out, pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
			return
		}
		b.path = b.out
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// RemoveBuilds removes what Build built. TestMain calls it after m.Run;
// the builds are not usable afterwards.
func RemoveBuilds() {
	builds.Lock()
	defer builds.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	builds.dir, builds.done = "", map[string]*build{}
}
