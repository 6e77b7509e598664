package durable

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// CreateNewTmpfile is CreateNew without a temporary name: data is written
// to an anonymous O_TMPFILE inode in path's directory, fsynced, then linked
// as path, which must not exist (the error matches fs.ErrExist when it
// does). Compared with a named temporary file it creates one directory
// entry instead of two (on some systems that is the dominant cost of
// queueing a message), and a crash before the link leaves nothing to clean
// up: the kernel frees the unnamed inode. TempDir and TempPattern do not
// apply. Not every file system supports O_TMPFILE: ask TmpfileWorks once
// and use CreateNew (or WriteFile) where it says no.
func CreateNewTmpfile(path string, data []byte, o Options) error {
	dir := filepath.Dir(path)
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	err = o.prepare(f)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = o.name()
	}
	if err == nil {
		// linkat(AT_EMPTY_PATH) would need CAP_DAC_READ_SEARCH;
		// following the /proc symlink is the unprivileged way (open(2),
		// O_TMPFILE).
		if lerr := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); lerr != nil {
			err = &os.LinkError{Op: "link", Old: "O_TMPFILE", New: path, Err: lerr}
		}
	}
	// The data was fsynced and is linked or lost with the inode: an error
	// of close says nothing more.
	f.Close()
	if err != nil {
		return err
	}
	return o.syncDir(path)
}

// TmpfileWorks reports whether CreateNewTmpfile works in dir: the file
// system supports O_TMPFILE (ext4, xfs, btrfs, f2fs, tmpfs do; vfat and
// older kernels do not) and /proc is mounted. It links a probe file for
// real and removes it; callers ask once, when they open their directory.
func TmpfileWorks(dir string) bool {
	probe := filepath.Join(dir, "probe-"+rand.Text())
	if CreateNewTmpfile(probe, nil, Options{NoDirSync: true}) != nil {
		return false
	}
	os.Remove(probe)
	return true
}
