package main

import (
	"bytes"
	"fmt"
	"github.com/plcmail/plcmail/config"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/testenv"
)

// testUser creates a system account for one test (root only) and removes
// it afterwards.
func testUser(t *testing.T, role string) (uid, gid uint32) {
	t.Helper()
	name := fmt.Sprintf("pmt%s%05d", role, rand.IntN(100000))
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := strconv.Atoi(u.Uid)
	b, _ := strconv.Atoi(u.Gid)
	return uint32(a), uint32(b)
}

// asUser runs the binary at bin (argv[0] name) as uid:gid with stdin.
func asUser(bin, name string, uid, gid uint32, stdin string, env []string, args ...string) (string, int) {
	cmd := exec.Command(bin, args...)
	cmd.Args[0] = name
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return err.Error(), -1
	}
	return string(out), code
}

// TestSubmitAsOrdinaryUser is cron mail of a non-root user, with real
// accounts: the gateway runs as its own user with a private spool and a
// config that ordinary users cannot read; alice and bob queue through the
// sendmail link, which hands the message to the gateway's socket. What
// exit 0 promised is in the spool even after the gateway is SIGKILLed;
// the Received field carries the uid the kernel reported, -f cannot set
// another user's sender, and alice can neither list nor read the queue.
func TestSubmitAsOrdinaryUser(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Missing(t, "needs root to create users")
	}
	testenv.NeedTool(t, "useradd", "passwd")
	gwUID, gwGID := testUser(t, "gw")
	aliceUID, aliceGID := testUser(t, "al")
	bobUID, bobGID := testUser(t, "bo")

	base := t.TempDir()
	for d := base; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	mk := func(p string, mode os.FileMode, uid, gid uint32) string {
		if err := os.MkdirAll(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		os.Chown(p, int(uid), int(gid))
		return p
	}
	binDir := mk(filepath.Join(base, "bin"), 0o755, 0, 0)
	etc := mk(filepath.Join(base, "etc"), 0o750, 0, gwGID)
	spoolDir := mk(filepath.Join(base, "spool"), 0o700, gwUID, gwGID)
	runDir := mk(filepath.Join(base, "run"), 0o755, gwUID, gwGID)
	sock := filepath.Join(runDir, "submit.sock")

	bin := filepath.Join(binDir, "plcmail")
	src, err := os.ReadFile(plcmailBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(etc, "plcmail.toml")
	os.WriteFile(conf, fmt.Appendf(nil, `[gateway]
hostname = "gw.test"
spool_dir = %q
submit_socket = %q
[upstream]
host = "127.0.0.1"
port = 1
security = "none"
auth = "none"
from = "plc-gateway@example.com"
[queue]
min_backoff = "1h"
`, spoolDir, sock), 0o640)
	os.Chown(conf, 0, int(gwGID))

	// The gateway, as its own user.
	var logBuf bytes.Buffer
	serve := exec.Command(bin, "-c", conf, "serve")
	serve.Stdout, serve.Stderr = &logBuf, &logBuf
	serve.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: gwUID, Gid: gwGID, Groups: []uint32{}}}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { serve.Wait(); close(served) }()
	t.Cleanup(func() { serve.Process.Kill(); <-served })
	if !poll(15*time.Second, func() bool { _, err := os.Stat(sock); return err == nil }) {
		t.Fatalf("no submission socket; gateway log:\n%s", logBuf.String())
	}

	// Alice cannot read the config to learn the socket; on a real box it is
	// at the default path, which a test cannot take.
	env := []string{"PLCMAIL_CONFIG=" + conf, "PLCMAIL_SUBMIT_SOCKET=" + sock}
	msg := "To: ops@example.com\nSubject: cron of alice\n\nbackup done\n"
	out, code := asUser(bin, "sendmail", aliceUID, aliceGID, msg, env, "-t", "-f", "root@gw.test", "-v")
	if code != 0 {
		t.Fatalf("alice's sendmail: exit %d: %s\ngateway log:\n%s", code, out, logBuf.String())
	}
	if !strings.Contains(out, "queued as ") {
		t.Errorf("-v: %q", out)
	}
	out, code = asUser(bin, "sendmail", bobUID, bobGID, "Subject: bob\n\nhi\n", env, "-f", "alice", "ops@example.com")
	if code != 0 {
		t.Fatalf("bob's sendmail: exit %d: %s", code, out)
	}

	// Without PLCMAIL_SUBMIT_SOCKET alice's send knocks at the default
	// socket, where no gateway listens here: exit 75, and since she may not
	// read the config that names the real one, the error says so and how to
	// reach it, instead of claiming the running gateway is not running.
	if _, err := os.Stat(config.DefaultSubmitSocket); err == nil {
		t.Logf("skipping the default-socket case: %s exists on this machine", config.DefaultSubmitSocket)
	} else {
		out, code = asUser(bin, "sendmail", aliceUID, aliceGID, msg, env[:1], "-t")
		if code != 75 || !strings.Contains(out, "PLCMAIL_SUBMIT_SOCKET") || !strings.Contains(out, conf) {
			t.Errorf("alice's sendmail without PLCMAIL_SUBMIT_SOCKET: exit %d: %s", code, out)
		}
	}

	// What exit 0 promised survives the gateway's SIGKILL.
	serve.Process.Kill()
	<-served
	msgs := spoolMessages(t, spoolDir)
	if len(msgs) != 2 {
		t.Fatalf("%d messages in the spool, want 2", len(msgs))
	}
	byUID := map[uint32]queuedMessage{}
	for _, m := range msgs {
		for _, u := range []uint32{aliceUID, bobUID} {
			if strings.Contains(m.Data, fmt.Sprintf("from userid %d)", u)) {
				byUID[u] = m
			}
		}
		if m.Envelope.From != "plc-gateway@example.com" {
			t.Errorf("envelope sender %q: an ordinary user's -f must not set it", m.Envelope.From)
		}
	}
	if !strings.Contains(byUID[aliceUID].Data, "cron of alice") || !strings.Contains(byUID[bobUID].Data, "Subject: bob") {
		t.Errorf("Received fields do not name the submitting users:\n%v", msgs)
	}
	filepath.Walk(spoolDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Sys().(*syscall.Stat_t).Uid != gwUID {
			t.Errorf("%s is not owned by the gateway's user", p)
		}
		return nil
	})

	// Alice cannot see the queue, through plcmail or around it.
	for _, args := range [][]string{{"-c", conf, "queue", "list"}, {"-bp"}} {
		name := "plcmail"
		if args[0] == "-bp" {
			name = "mailq"
			args = nil
		}
		out, code = asUser(bin, name, aliceUID, aliceGID, "", env, args...)
		if code == 0 || strings.Contains(out, "ops@example.com") {
			t.Errorf("alice %s %q: exit %d: %s", name, args, code, out)
		}
	}
	if out, code := asUser("/bin/ls", "ls", aliceUID, aliceGID, "", nil, "-R", spoolDir); code == 0 {
		t.Errorf("alice lists the spool: %s", out)
	}

	// The gateway is down now: not queued, exit 75, try again.
	out, code = asUser(bin, "sendmail", aliceUID, aliceGID, msg, env, "-t")
	if code != exTempFail || !strings.Contains(out, "not running") {
		t.Errorf("with the gateway down: exit %d: %s", code, out)
	}
	if n := len(spoolMessages(t, spoolDir)); n != 2 {
		t.Errorf("%d messages after the refused send, want 2", n)
	}
}
