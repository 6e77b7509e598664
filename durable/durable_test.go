package durable

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writer is one of the package's ways to write a file.
type writer struct {
	name string
	fn   func(path string, data []byte, o Options) error
	// replaces: it overwrites an existing file (else it refuses one).
	replaces bool
	// named: it goes through a named temporary file (a crash can leave one).
	named bool
}

func writers(t *testing.T) []writer {
	ws := []writer{
		{"WriteFile", WriteFile, true, true},
		{"CreateNew", CreateNew, false, true},
	}
	if TmpfileWorks(t.TempDir()) {
		ws = append(ws, writer{"CreateNewTmpfile", CreateNewTmpfile, false, false})
	} else {
		t.Log("O_TMPFILE does not work here: CreateNewTmpfile not tested")
	}
	return ws
}

// names lists dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Each writer, on a new name and on an existing one: the content it leaves
// and the error, and no temporary file left behind.
func TestWrite(t *testing.T) {
	for _, w := range writers(t) {
		for _, tc := range []struct {
			name     string
			existing string // "" none
			data     string
		}{
			{"new", "", "new content\n"},
			{"new empty", "", ""},
			{"existing", "old content\n", "new content\n"},
		} {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "f")
				if tc.existing != "" {
					if err := os.WriteFile(path, []byte(tc.existing), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				err := w.fn(path, []byte(tc.data), Options{})
				want := tc.data
				if tc.existing != "" && !w.replaces {
					if !errors.Is(err, fs.ErrExist) {
						t.Errorf("over an existing file: %v, want an error matching fs.ErrExist", err)
					}
					want = tc.existing
				} else if err != nil {
					t.Fatal(err)
				}
				if got := content(t, path); got != want {
					t.Errorf("content %q, want %q", got, want)
				}
				if got := names(t, dir); !slices.Equal(got, []string{"f"}) {
					t.Errorf("directory holds %q, want only the file", got)
				}
			})
		}
	}
}

// The never-overwrite variants refuse an existing file whatever it is (a
// complete record, an empty file, a symlink to nothing) with an error
// errors.Is(err, fs.ErrExist) recognises, and leave it as it was.
func TestCreateNewRefusesExisting(t *testing.T) {
	for _, w := range writers(t) {
		if w.replaces {
			continue
		}
		for _, tc := range []struct {
			name string
			make func(path string) error
		}{
			{"file", func(p string) error { return os.WriteFile(p, []byte("first"), 0o600) }},
			{"empty file", func(p string) error { return os.WriteFile(p, nil, 0o600) }},
			{"dangling symlink", func(p string) error { return os.Symlink("nowhere", p) }},
		} {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "rec")
				if err := tc.make(path); err != nil {
					t.Fatal(err)
				}
				before, err := os.Lstat(path)
				if err != nil {
					t.Fatal(err)
				}
				err = w.fn(path, []byte("second"), Options{})
				if !errors.Is(err, fs.ErrExist) {
					t.Fatalf("%v, want an error matching fs.ErrExist", err)
				}
				after, err := os.Lstat(path)
				if err != nil || !os.SameFile(before, after) || after.Size() != before.Size() {
					t.Errorf("existing file changed: %v", err)
				}
				if got := names(t, dir); !slices.Equal(got, []string{"rec"}) {
					t.Errorf("directory holds %q, want only the existing file", got)
				}
			})
		}
	}
}

// The mode is what the caller asked for: zero is 0600 less the umask (as
// os.CreateTemp, with no chmod), a Perm is set exactly, whatever the umask.
func TestModes(t *testing.T) {
	for _, w := range writers(t) {
		for _, tc := range []struct {
			umask int
			perm  fs.FileMode
			want  fs.FileMode
		}{
			{0o022, 0, 0o600},
			{0o077, 0, 0o600},
			{0o277, 0, 0o400},
			{0o077, 0o600, 0o600},
			{0o277, 0o600, 0o600},
			{0o077, 0o640, 0o640},
			{0o022, 0o644, 0o644},
			{0o077, 0o400, 0o400},
		} {
			t.Run(fmt.Sprintf("%s/umask=%04o/perm=%04o", w.name, tc.umask, tc.perm), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "secret")
				// The umask is the process's: these subtests do not run
				// in parallel with anything.
				old := syscall.Umask(tc.umask)
				defer syscall.Umask(old)
				if err := w.fn(path, []byte("s"), Options{Perm: tc.perm}); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode(); got != tc.want {
					t.Errorf("mode %v, want %v", got, tc.want)
				}
			})
		}
	}
}

var errCrash = errors.New("injected failure")

// A failure between the temporary file's fsync and its rename (or link)
// leaves the old content, or no file, and no temporary file.
func TestFailureBeforeNameKeepsOld(t *testing.T) {
	for _, w := range writers(t) {
		for _, existing := range []string{"", "old content\n"} {
			t.Run(fmt.Sprintf("%s/existing=%q", w.name, existing), func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "state")
				want := "<none>"
				if existing != "" {
					want = existing
					if err := os.WriteFile(path, []byte(existing), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				calls := 0
				o := Options{beforeName: func() error { calls++; return errCrash }}
				if err := w.fn(path, []byte("new content\n"), o); !errors.Is(err, errCrash) {
					t.Fatalf("%v, want the injected failure", err)
				}
				if calls != 1 {
					t.Fatalf("hook ran %d times", calls)
				}
				if got := content(t, path); got != want {
					t.Errorf("content %q, want %q", got, want)
				}
				ents := names(t, dir)
				if existing == "" && len(ents) != 0 || existing != "" && !slices.Equal(ents, []string{"state"}) {
					t.Errorf("directory holds %q after the failure", ents)
				}
			})
		}
	}
}

// crashBeforeName runs w with a hook that panics where a crash would stop
// the process: after the temporary file is complete and fsynced, before it
// has its name. Nothing after that point runs, cleanup included.
func crashBeforeName(t *testing.T, w writer, path string, data []byte, o Options) {
	t.Helper()
	o.beforeName = func() error { panic(errCrash) }
	defer func() {
		if r := recover(); r != errCrash {
			t.Fatalf("recovered %v, want the injected crash", r)
		}
	}()
	w.fn(path, data, o)
	t.Fatal("the crash did not happen")
}

// A crash between the temporary file's fsync and its rename leaves the old
// content under the name, and the temporary file that it leaves (complete
// with the new data) is not mistaken for the real one: it has a name of its
// own, the caller's pattern, and the next write neither reads it nor trips
// over it.
func TestCrashLeavesOldAndATempNotMistaken(t *testing.T) {
	for _, w := range writers(t) {
		for _, tc := range []struct {
			name       string
			existing   string
			o          Options
			isLeftover func(string) bool
		}{
			{"default pattern", "old\n", Options{}, func(n string) bool { return strings.HasPrefix(n, ".state.tmp-") }},
			{"no file before", "", Options{}, func(n string) bool { return strings.HasPrefix(n, ".state.tmp-") }},
			{"caller's pattern", "old\n", Options{TempPattern: "state.*.tmp"}, func(n string) bool {
				return strings.HasPrefix(n, "state.") && strings.HasSuffix(n, ".tmp")
			}},
			{"prefix pattern", "old\n", Options{TempPattern: ".tmp-"}, func(n string) bool { return strings.HasPrefix(n, ".tmp-") }},
		} {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "state")
				want := "<none>"
				if tc.existing != "" {
					want = tc.existing
					if err := os.WriteFile(path, []byte(tc.existing), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				crashBeforeName(t, w, path, []byte("crashed write\n"), tc.o)
				if got := content(t, path); got != want {
					t.Errorf("after the crash: content %q, want the old %q", got, want)
				}
				var leftovers []string
				for _, n := range names(t, dir) {
					if n != "state" {
						leftovers = append(leftovers, n)
					}
				}
				if !w.named {
					if len(leftovers) != 0 {
						t.Errorf("unnamed temporary file left names %q", leftovers)
					}
				} else {
					if len(leftovers) != 1 || !tc.isLeftover(leftovers[0]) {
						t.Fatalf("leftovers %q, want one temporary file of the pattern", leftovers)
					}
					if got := content(t, filepath.Join(dir, leftovers[0])); got != "crashed write\n" {
						t.Errorf("leftover holds %q", got)
					}
				}
				// The next run writes as if the leftover were not there.
				if err := w.fn(path, []byte("next\n"), tc.o); err != nil && !(errors.Is(err, fs.ErrExist) && !w.replaces && tc.existing != "") {
					t.Fatal(err)
				}
				want = "next\n"
				if !w.replaces && tc.existing != "" {
					want = tc.existing
				}
				if got := content(t, path); got != want {
					t.Errorf("next write: content %q, want %q", got, want)
				}
				for _, l := range leftovers {
					if got := content(t, filepath.Join(dir, l)); got != "crashed write\n" {
						t.Errorf("leftover %s now holds %q", l, got)
					}
				}
			})
		}
	}
}

// TempDir puts the temporary file elsewhere on the same file system (the
// spool's tmp/), named by TempPattern; after a crash it is found there.
func TestTempDir(t *testing.T) {
	for _, w := range writers(t) {
		if !w.named {
			continue
		}
		t.Run(w.name, func(t *testing.T) {
			root := t.TempDir()
			tmp, final := filepath.Join(root, "tmp"), filepath.Join(root, "queue")
			for _, d := range []string{tmp, final} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			o := Options{TempDir: tmp, TempPattern: "w-*"}
			crashBeforeName(t, w, filepath.Join(final, "A"), []byte("a"), o)
			if got := names(t, final); len(got) != 0 {
				t.Errorf("queue/ holds %q after a crash", got)
			}
			if got := names(t, tmp); len(got) != 1 || !strings.HasPrefix(got[0], "w-") {
				t.Errorf("tmp/ holds %q after a crash, want one w-*", got)
			}
			if err := w.fn(filepath.Join(final, "B"), []byte("b"), o); err != nil {
				t.Fatal(err)
			}
			if got := content(t, filepath.Join(final, "B")); got != "b" {
				t.Errorf("content %q", got)
			}
			if got := names(t, tmp); len(got) != 1 {
				t.Errorf("tmp/ holds %q, want only the crash's leftover", got)
			}
		})
	}
}

// Setup runs on the empty file with Perm already set, before the data; its
// error stops the write and leaves nothing.
func TestSetup(t *testing.T) {
	for _, w := range writers(t) {
		t.Run(w.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "token")
			var sawSize int64 = -1
			var sawMode fs.FileMode
			o := Options{Perm: 0o640, Setup: func(f *os.File) error {
				fi, err := f.Stat()
				if err != nil {
					return err
				}
				sawSize, sawMode = fi.Size(), fi.Mode()
				return nil
			}}
			if err := w.fn(path, []byte("data"), o); err != nil {
				t.Fatal(err)
			}
			if sawSize != 0 || sawMode != 0o640 {
				t.Errorf("Setup saw size %d mode %v, want an empty file of mode 0640", sawSize, sawMode)
			}
			errSetup := errors.New("setup failed")
			o.Setup = func(*os.File) error { return errSetup }
			other := filepath.Join(dir, "other")
			if err := w.fn(other, []byte("data"), o); !errors.Is(err, errSetup) {
				t.Errorf("%v, want Setup's error", err)
			}
			if got := names(t, dir); !slices.Equal(got, []string{"token"}) {
				t.Errorf("directory holds %q", got)
			}
		})
	}
}

// SyncDir fsyncs directories and files by path; a missing one is an error.
func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "log")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want error
	}{
		{dir, nil},
		{file, nil},
		{filepath.Join(dir, "missing"), fs.ErrNotExist},
	} {
		if err := SyncDir(tc.path); !errors.Is(err, tc.want) {
			t.Errorf("SyncDir(%s) = %v, want %v", tc.path, err, tc.want)
		}
	}
}

type fakeStat struct {
	dir bool
	err error
}

func (f fakeStat) Stat() (fs.FileInfo, error) { return fakeInfo(f.dir), f.err }

type fakeInfo bool

func (fakeInfo) Name() string       { return "x" }
func (fakeInfo) Size() int64        { return 0 }
func (fakeInfo) ModTime() time.Time { return time.Time{} }
func (fakeInfo) Sys() any           { return nil }
func (d fakeInfo) IsDir() bool      { return bool(d) }
func (d fakeInfo) Mode() fs.FileMode {
	if d {
		return fs.ModeDir | 0o700
	}
	return 0o600
}

// A directory fsync the file system does not support counts as done; a
// file's never does, nor does any other error.
func TestSyncDirUnsupported(t *testing.T) {
	wrap := func(e error) error { return &fs.PathError{Op: "sync", Path: "/d", Err: e} }
	for _, tc := range []struct {
		name string
		d    fakeStat
		err  error
		ok   bool
	}{
		{"synced", fakeStat{dir: true}, nil, true},
		{"dir ENOTSUP", fakeStat{dir: true}, wrap(syscall.ENOTSUP), true},
		{"dir EOPNOTSUPP", fakeStat{dir: true}, wrap(syscall.EOPNOTSUPP), true},
		{"dir ENOSYS", fakeStat{dir: true}, wrap(syscall.ENOSYS), true},
		{"dir EIO", fakeStat{dir: true}, wrap(syscall.EIO), false},
		{"dir EINVAL", fakeStat{dir: true}, wrap(syscall.EINVAL), false},
		{"file ENOTSUP", fakeStat{dir: false}, wrap(syscall.ENOTSUP), false},
		{"stat fails", fakeStat{dir: true, err: syscall.EIO}, wrap(syscall.ENOTSUP), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := unsupportedDir(tc.d, tc.err)
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, tc.err) {
				t.Errorf("%v, want ok=%v", err, tc.ok)
			}
		})
	}
}
