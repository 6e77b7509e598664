package mailer

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/mailer/mailertest"
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

// TestAiosmtpdUpstream delivers through the queue to an independent SMTP
// implementation that requires STARTTLS and AUTH.
func TestAiosmtpdUpstream(t *testing.T) {
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
	const user, pass = "plc@example.com", "aio-Secret-1"

	cmd := exec.Command(py, "testdata/aiosmtpd_upstream.py", certFile, keyFile, user)
	cmd.Env = append(os.Environ(), "UPSTREAM_PASSWORD="+pass)
	cmd.Stderr = tWriter{t}
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("aiosmtpd exited")
			}
			return l
		case <-time.After(20 * time.Second):
			t.Fatal("timeout waiting for aiosmtpd")
		}
		return ""
	}
	var port int
	if _, err := fmt.Sscanf(next(), "PORT %d", &port); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.Gateway.Hostname = "gw.test"
	cfg.Gateway.SpoolDir = filepath.Join(dir, "spool")
	cfg.Upstream = config.Upstream{Host: "127.0.0.1", Port: port, Security: "starttls", Auth: "auto",
		Username: user, Password: pass, CAFile: caFile, From: "plc-gateway@example.com", Timeout: config.Duration(10 * time.Second)}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	s := openTestSpool(t, cfg.Gateway.SpoolDir)
	sub := testSub(1, "aio/1/1")
	sub.To = []string{"ops@example.com", "boss@example.com"}
	if _, err := s.Enqueue(sub); err != nil {
		t.Fatal(err)
	}
	_, results := runQueue(t, s, cfg)

	var auth string
	var msg struct {
		From string   `json:"from"`
		To   []string `json:"to"`
		TLS  bool     `json:"tls"`
		User string   `json:"user"`
		Data string   `json:"data"`
	}
	for msg.From == "" {
		l := next()
		switch {
		case strings.HasPrefix(l, "AUTH "):
			auth = l
		case strings.HasPrefix(l, "MSG "):
			if err := json.Unmarshal([]byte(l[4:]), &msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	if auth != "AUTH PLAIN "+user+" ok" {
		t.Errorf("auth line %q", auth)
	}
	data, _ := base64.StdEncoding.DecodeString(msg.Data)
	if msg.From != sub.From || !slices.Equal(msg.To, sub.To) || !msg.TLS || msg.User != user || !bytes.Equal(data, sub.Data) {
		t.Errorf("aiosmtpd received %+v, data %q", msg, data)
	}
	r := waitResults(t, results, 1, 10*time.Second)[0]
	if !r.Delivered || !strings.Contains(r.Reason, "aiosmtpd") {
		t.Errorf("result %+v", r)
	}
}
