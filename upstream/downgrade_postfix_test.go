package upstream_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/message"
	"github.com/plcmail/plcmail/message/messagetest"
	"github.com/plcmail/plcmail/upstream"
)

// startPostfix runs a private Postfix instance (its own configuration and
// queue in a temporary directory, smtpd on 127.0.0.1) that relays
// everything to relayPort, and returns its smtpd port. It needs root, as
// Postfix's master does.
func startPostfix(t *testing.T, relayPort int) int {
	postfix := testenv.NeedTool(t, "postfix", "postfix")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "a private Postfix instance needs root")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	dir := t.TempDir()
	// Postfix's daemons run as the postfix user and must reach the queue.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	etc, spool, data := filepath.Join(dir, "etc"), filepath.Join(dir, "spool"), filepath.Join(dir, "data")
	for _, d := range []string{etc, spool, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "postfix", data).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix: %v: %s", err, out)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %s
data_directory = %s
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.test
mydomain = postfix.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:%d
smtp_tls_security_level = none
maillog_file = /dev/stdout
`, spool, data, relayPort)
	// Only the services a relay needs, none chrooted.
	masterCF := fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd\n", port) + `pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`
	os.WriteFile(filepath.Join(etc, "main.cf"), []byte(mainCF), 0o644)
	os.WriteFile(filepath.Join(etc, "master.cf"), []byte(masterCF), 0o644)
	install := exec.Command("/usr/lib/postfix/sbin/post-install", "config_directory="+etc, "meta_directory=/etc/postfix", "create-missing")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("post-install: %v: %s", err, out)
	}
	cmd := exec.Command(postfix, "-c", etc, "start-fg")
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// master runs in a session of its own: stop it through postfix.
		exec.Command(postfix, "-c", etc, "stop").Run()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Error("postfix did not stop")
			cmd.Process.Kill()
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return port
		}
		select {
		case <-exited:
			t.Fatal("postfix exited")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix smtpd not listening on %d: %v", port, err)
		}
	}
}

// TestDowngradeMatchesPostfix sends the same 8-bit messages to one
// upstream without 8BITMIME twice: once relayed by Postfix (which converts
// with its default disable_mime_output_conversion = no), once by plcmail.
// The bodies must be byte-identical: our conversion is Postfix's.
func TestDowngradeMatchesPostfix(t *testing.T) {
	repaired8bit := messagetest.Repaired8Bit()
	u := mailertest.NewUpstream(t, mailertest.Options{Security: mailertest.Plain, NoAuth: true, No8BitMIME: true})
	pfPort := startPostfix(t, u.Port)
	direct := u.Options()
	viaPostfix := u.Options()
	viaPostfix.Port = pfPort
	viaPostfix.Timeout = 10 * time.Second

	// Every 8-bit part is declared 8bit: Postfix converts only declared
	// parts, and leaves 8-bit header fields alone (both differences are
	// ours on purpose, see downgrade.go).
	multi := strings.Replace(messagetest.Mixed8Bit, "Content-Description: Kühlung\r\n", "Content-Transfer-Encoding: 8bit\r\n", 1)
	multi = strings.Replace(multi, "From: plc@example.com\r\n", "From: plc@example.com\r\nTo: ops@example.com\r\nSubject: mp\r\n", 1)
	from, to := "plc@example.com", []string{"ops@example.com"}
	n := 0
	for _, msg := range [][]byte{repaired8bit, []byte(multi)} {
		var d bytes.Buffer
		if err := upstream.SendNow(context.Background(), viaPostfix, from, to, msg, &d); err != nil {
			t.Fatalf("to postfix: %v\n%s", err, d.String())
		}
		if !strings.Contains(d.String(), "BODY=8BITMIME") {
			t.Errorf("postfix got the message without BODY=8BITMIME:\n%s", d.String())
		}
		pf := u.Wait(t, n+1, 20*time.Second)[n]
		if err := upstream.SendNow(context.Background(), direct, from, to, msg, nil); err != nil {
			t.Fatal(err)
		}
		ours := u.Wait(t, n+2, 5*time.Second)[n+1]
		n += 2
		if pf.Body != "" || ours.Body != "" || message.Has8Bit(pf.Data) || message.Has8Bit(ours.Data) {
			t.Errorf("BODY %q/%q, 8-bit data %v/%v", pf.Body, ours.Body, message.Has8Bit(pf.Data), message.Has8Bit(ours.Data))
		}
		_, pfBody := messagetest.HeaderAndBody(t, pf.Data)
		_, ourBody := messagetest.HeaderAndBody(t, ours.Data)
		if !bytes.Equal(pfBody, ourBody) {
			t.Errorf("bodies differ\npostfix:\n%s\nplcmail:\n%s", pfBody, ourBody)
		}
		if pfHdr, _ := messagetest.HeaderAndBody(t, pf.Data); !strings.Contains(pfHdr, "by postfix.test (Postfix)") {
			t.Errorf("test void: message %d did not come through Postfix: %q", n-2, pfHdr)
		}
	}
}
