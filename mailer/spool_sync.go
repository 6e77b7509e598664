package mailer

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// groupSync shares one fsync among every caller that changed the synced
// object before it started: group commit, as databases do for their log.
//
// A caller makes its change (a link into queue/, an unlink, an append to the
// key log), then calls Sync, which returns only after an fsync that started
// after the call began has completed. Any fsync started later also covers
// the change, so callers that pile up while one fsync runs are all covered
// by the next one: with 16 SMTP sessions queueing at once, the directory is
// fsynced a few times instead of 16. A lone caller pays exactly what it paid
// before (no timer, no background goroutine: the first waiter runs the fsync
// itself).
type groupSync struct {
	sync func() error // the fsync; tests wrap it to count and inspect

	mu      sync.Mutex
	cond    sync.Cond
	started uint64 // fsyncs started; while running, the running one is number started
	done    uint64 // number of the last completed fsync
	running bool
	failed  uint64 // number of the last fsync that failed, 0 when none did
	failErr error
}

func newGroupSync(fn func() error) *groupSync {
	g := &groupSync{sync: fn}
	g.cond.L = &g.mu
	return g
}

// Sync returns once a change made before the call is durable. An error
// means it may not be: the fsync that covered the change, or one that ran
// after it, failed (reported conservatively: a later failure after a
// covering success also counts, so nobody is told "durable" by mistake).
func (g *groupSync) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The running fsync, if any, may have started before our change: only
	// one numbered after it is known to cover the change.
	need := g.started + 1
	for g.done < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		n := g.started
		g.mu.Unlock()
		err := g.sync()
		g.mu.Lock()
		g.running = false
		g.done = n
		if err != nil {
			g.failed, g.failErr = n, err
		}
		g.cond.Broadcast()
	}
	if g.failed >= need {
		return g.failErr
	}
	return nil
}

// fsyncPath opens path (a directory or a file) and fsyncs it.
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeLinked writes a new file at final, which must not exist, from an
// anonymous O_TMPFILE inode in final's directory: write, fsync, then link
// it under its name. The caller fsyncs the directory. Compared with a named
// temp file renamed into place it creates one directory entry instead of
// two (on some systems that is the dominant cost of queueing a message), and
// a crash before the link leaves nothing to clean up: the kernel frees the
// unnamed inode.
func writeLinked(final string, data []byte) error {
	fd, err := unix.Open(filepath.Dir(final), unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "open", Path: filepath.Dir(final), Err: err}
	}
	f := os.NewFile(uintptr(fd), final)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	// linkat(AT_EMPTY_PATH) would need CAP_DAC_READ_SEARCH; following the
	// /proc symlink is the unprivileged way (open(2), O_TMPFILE).
	if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, final, unix.AT_SYMLINK_FOLLOW); err != nil {
		return &os.LinkError{Op: "link", Old: "O_TMPFILE", New: final, Err: err}
	}
	return nil
}

// tmpfileWorks reports whether writeLinked works in dir: the filesystem
// supports O_TMPFILE (ext4, xfs, btrfs, f2fs, tmpfs do; vfat and older
// kernels do not) and /proc is mounted. It links a probe file for real and
// removes it.
func tmpfileWorks(dir string) bool {
	probe := filepath.Join(dir, "probe-"+newID())
	if writeLinked(probe, nil) != nil {
		return false
	}
	os.Remove(probe)
	return true
}
