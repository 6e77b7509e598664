package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestRootActsAsSpoolOwner: root queues mail through the sendmail link (as
// cron does) into a spool that belongs to the gateway's user; the message
// must belong to that user, or the gateway could never read or remove it.
// The same for queue flush. Runs the real binary, since switching user is
// for the whole process.
func TestRootActsAsSpoolOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bin := plcmailBinary(t)
	const nobody = 65534
	c := newTestConfig(t)
	path := c.write(t)
	os.Chmod(path, 0o644)
	for d := c.Dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // let the gateway's user reach its spool
	}
	if err := os.Mkdir(c.Spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(c.Spool, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	sendmail := filepath.Join(t.TempDir(), "sendmail")
	if err := os.Symlink(bin, sendmail); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sendmail, "-c", path, "ops@example.com")
	cmd.Stdin = strings.NewReader("Subject: from cron\n\nroot's mail\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sendmail as root: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "-c", path, "queue", "flush").CombinedOutput(); err != nil {
		t.Fatalf("queue flush as root: %v\n%s", err, out)
	}
	filepath.Walk(c.Spool, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody || st.Gid != nobody {
			t.Errorf("%s owned by %d:%d, want the spool's owner %d:%d", p, st.Uid, st.Gid, nobody, nobody)
		}
		return nil
	})
	// And the gateway's user sees the message.
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed")
	}
	out, err := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", bin, "-c", path, "queue", "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ops@example.com") {
		t.Errorf("queue list as the spool's owner: %v\n%s", err, out)
	}
}
