package spool

import (
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

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
