package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// actAsSpoolOwner makes a command that root runs on the spool (send through
// the sendmail link from cron, queue flush/delete by an administrator) act
// as the user who owns the spool directory, before it creates anything
// there. Otherwise a message queued by root is a root-owned 0600 file that
// the gateway, running as its own user, can neither read nor remove: the
// mail would wait forever. It does nothing for other users, for a spool
// owned by root, and for a spool that does not exist yet.
func actAsSpoolOwner(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	// Group first: after setuid there is no right left to change it.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("switching to the spool's owner (uid %d): %w", st.Uid, err)
	}
	if err := syscall.Setgid(int(st.Gid)); err != nil {
		return fmt.Errorf("switching to the spool's group (gid %d): %w", st.Gid, err)
	}
	if err := syscall.Setuid(int(st.Uid)); err != nil {
		return fmt.Errorf("switching to the spool's owner (uid %d): %w", st.Uid, err)
	}
	return nil
}

// mayWriteSpool tells whether this process can queue into dir itself: root
// (which acts as the spool's owner), or a user with write access to it. A
// spool that does not exist yet counts as writable: Open creates it, and
// fails with a message of its own if it cannot.
func mayWriteSpool(dir string) bool {
	if os.Geteuid() == 0 {
		return true
	}
	err := syscall.Access(dir, 0x2|0x1) // W_OK|X_OK (not in package syscall)
	return err == nil || errors.Is(err, fs.ErrNotExist)
}
