//go:build unix

package oauth

import (
	"os"
	"path/filepath"
	"syscall"
)

// giveToDirOwner hands f to the owner of dir when we run as root: root
// running `plcmail login` or `plcmail test` must not leave a token file
// that the gateway's user cannot rewrite at its next refresh.
func giveToDirOwner(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}

// giveToParentOwner does the same for a directory just created.
func giveToParentOwner(dir string) {
	if os.Geteuid() != 0 {
		return
	}
	fi, err := os.Stat(filepath.Dir(dir))
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		os.Chown(dir, int(st.Uid), int(st.Gid))
	}
}

// lockFile takes an exclusive lock on path (created 0600 when missing) so
// that two processes (the gateway and `plcmail test`) never refresh at
// the same time: with rotating refresh tokens the second would present a
// token the first just used up.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	giveToDirOwner(f, filepath.Dir(path))
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
