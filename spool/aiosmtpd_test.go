package spool

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/message"
	"github.com/plcmail/plcmail/message/messagetest"
	"github.com/plcmail/plcmail/upstream"
)

// findAiosmtpd returns a python3 that can import aiosmtpd (Debian's
// python3-aiosmtpd lives in /usr/bin/python3's path, which a pyenv shim
// earlier in PATH would hide).
func findAiosmtpd(t *testing.T) string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(py); err == nil {
			if exec.Command(path, "-c", "import aiosmtpd").Run() == nil {
				return path
			}
		}
	}
	testenv.Missing(t, "python3 with aiosmtpd not found (apt-get install python3-aiosmtpd)")
	return ""
}

// aiosmtpd is a running Python upstream script from testdata, with
// STARTTLS (certificate from a test CA) and AUTH.
type aiosmtpd struct {
	t     *testing.T
	opts  upstream.Options // relays to it
	lines chan string
}

const aioUser, aioPass = "plc@example.com", "aio-Secret-1"

// startAiosmtpd runs testdata/script with CERT KEY USER args... and waits
// for its "PORT n" line. The process is killed at the end of the test.
func startAiosmtpd(t *testing.T, script string, args ...string) *aiosmtpd {
	py := findAiosmtpd(t)
	dir := t.TempDir()
	ca, err := mailertest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := mailertest.WriteKeyPair(dir, leaf)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.PEM(), 0o644)

	cmd := exec.Command(py, append([]string{filepath.Join("testdata", script), certFile, keyFile, aioUser}, args...)...)
	cmd.Env = append(os.Environ(), "UPSTREAM_PASSWORD="+aioPass)
	cmd.Stderr = t.Output()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	a := &aiosmtpd{t: t, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			a.lines <- sc.Text()
		}
		close(a.lines)
	}()
	var port int
	if _, err := fmt.Sscanf(a.next(), "PORT %d", &port); err != nil {
		t.Fatal(err)
	}
	a.opts = upstream.Options{Host: "127.0.0.1", Port: port, Security: upstream.StartTLS, Auth: "auto",
		Username: aioUser, Secret: func(context.Context) (string, error) { return aioPass, nil },
		CAFile: caFile, Hostname: "gw.test", Timeout: 10 * time.Second}
	if err := a.opts.Validate(); err != nil {
		t.Fatal(err)
	}
	return a
}

// next returns the script's next output line.
func (a *aiosmtpd) next() string {
	a.t.Helper()
	select {
	case l, ok := <-a.lines:
		if !ok {
			a.t.Fatal("aiosmtpd exited")
		}
		return l
	case <-time.After(20 * time.Second):
		a.t.Fatal("timeout waiting for aiosmtpd")
	}
	return ""
}

// aioMessage is a script's MSG line.
type aioMessage struct {
	From        string   `json:"from"`
	To          []string `json:"to"`
	MailOptions []string `json:"mail_options"`
	TLS         bool     `json:"tls"`
	User        string   `json:"user"`
	Data        []byte   `json:"data"` // base64 in JSON
}

// TestAiosmtpdUpstream delivers through the queue to an independent SMTP
// implementation that requires STARTTLS and AUTH.
func TestAiosmtpdUpstream(t *testing.T) {
	a := startAiosmtpd(t, "aiosmtpd_upstream.py")
	s := openTestSpool(t, t.TempDir())
	sub := testSub(1, "aio/1/1")
	sub.To = []string{"ops@example.com", "boss@example.com"}
	if _, err := s.Enqueue(sub); err != nil {
		t.Fatal(err)
	}
	_, results := runQueue(t, s, defaultQueueOptions(a.opts))

	var auth string
	var msg aioMessage
	for msg.From == "" {
		l := a.next()
		switch {
		case strings.HasPrefix(l, "AUTH "):
			auth = l
		case strings.HasPrefix(l, "MSG "):
			if err := json.Unmarshal([]byte(l[4:]), &msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if auth != "AUTH PLAIN "+aioUser+" ok" {
		t.Errorf("auth line %q", auth)
	}
	if msg.From != sub.From || !slices.Equal(msg.To, sub.To) || !msg.TLS || msg.User != aioUser || !bytes.Equal(msg.Data, sub.Data) {
		t.Errorf("aiosmtpd received %+v, data %q", msg, msg.Data)
	}
	r := waitResults(t, results, 1, 10*time.Second)[0]
	if !r.Delivered || !strings.Contains(r.Reason, "aiosmtpd") {
		t.Errorf("result %+v", r)
	}
}

// TestAiosmtpd8BitMIME sends the listener's repaired 8-bit message over
// STARTTLS to aiosmtpd, once announcing 8BITMIME (the stored bytes arrive
// unchanged, with BODY=8BITMIME) and once not (quoted-printable arrives,
// no 8-bit byte, no BODY parameter, and it decodes to the original).
func TestAiosmtpd8BitMIME(t *testing.T) {
	repaired8bit := messagetest.Repaired8Bit()
	for _, mode := range []string{"8BITMIME", "NO8BITMIME"} {
		t.Run(mode, func(t *testing.T) {
			a := startAiosmtpd(t, "aiosmtpd_upstream.py", mode)
			var dialogue bytes.Buffer
			if err := upstream.SendNow(context.Background(), a.opts, "plc@example.com", []string{"ops@example.com"}, repaired8bit, &dialogue); err != nil {
				t.Fatalf("%v\n%s", err, dialogue.String())
			}
			l := a.next()
			for strings.HasPrefix(l, "AUTH ") {
				l = a.next()
			}
			var msg aioMessage
			if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "MSG ")), &msg); err != nil {
				t.Fatalf("%v: %q", err, l)
			}
			if !msg.TLS {
				t.Error("not over TLS")
			}
			t.Logf("MAIL options %q, data:\n%s", msg.MailOptions, msg.Data)
			if mode == "8BITMIME" {
				if !slices.Equal(msg.MailOptions, []string{"BODY=8BITMIME"}) || !bytes.Equal(msg.Data, repaired8bit) {
					t.Errorf("got options %q, data %q; want BODY=8BITMIME and the stored bytes", msg.MailOptions, msg.Data)
				}
				return
			}
			if len(msg.MailOptions) != 0 || message.Has8Bit(msg.Data) {
				t.Errorf("server without 8BITMIME got options %q and 8-bit data: %v", msg.MailOptions, message.Has8Bit(msg.Data))
			}
			hdr, body := messagetest.HeaderAndBody(t, msg.Data)
			if !strings.Contains(hdr, "\r\nContent-Transfer-Encoding: quoted-printable\r\n") {
				t.Errorf("header %q", hdr)
			}
			messagetest.CheckQPLines(t, body)
			_, origBody := messagetest.HeaderAndBody(t, repaired8bit)
			if got := messagetest.DecodeQP(t, body); !bytes.Equal(got, origBody) {
				t.Errorf("decoded body\n got %q\nwant %q", got, origBody)
			}
			if strings.Contains(dialogue.String(), "S: 250-8BITMIME") {
				t.Errorf("test void: the server announced 8BITMIME\n%s", dialogue.String())
			}
		})
	}
}
