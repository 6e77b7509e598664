//go:build !nodemo

package main

import (
	"bytes"
	"context"
	"mime"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/testenv"
)

// summaryNumbers pulls the numbers out of the demo's summary lines, by the
// word that follows each: "8 frames" -> frames: 8.
func summaryNumbers(t *testing.T, out, line string) map[string]int {
	t.Helper()
	re := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(line) + `\s+(.*)$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("summary line %q missing in:\n%s", line, out)
	}
	nums := map[string]int{}
	for _, p := range regexp.MustCompile(`(\d+) ([a-zA-Z]+(?: [a-z]+)?)`).FindAllStringSubmatch(m[1], -1) {
		n, _ := strconv.Atoi(p[1])
		nums[p[2]] = n
	}
	return nums
}

// TestDemo runs `plcmail demo` in-process as a user would (with a -c that it
// must ignore) and checks, from its output and from the .eml files, that the
// whole path worked: five alarms, five mails, the retransmitted frame ACKed
// as a duplicate and mailed once, a DELIVERY report for each mail; and the
// Modbus device's level alarm raised and cleared, two more mails.
func TestDemo(t *testing.T) {
	needPTY(t)
	out := filepath.Join(t.TempDir(), "mails")
	r := runCLI(t, "", "plcmail", "-c", "/nonexistent/plcmail.toml", "demo", "--out", out, "--pace", "50ms")
	if r.code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("demo output:\n%s", r.stdout)
	if r.stderr != "" {
		t.Errorf("gateway warnings during the demo:\n%s", r.stderr)
	}

	// The script stages exactly one lost ACK. On a loaded machine an ACK can
	// also come later than the PLC's 1 s timer, and then the frame is
	// retransmitted once more: the protocol copes, so the test does too, but
	// every retransmission must be suppressed as a duplicate, and the mails
	// stay exactly five.
	sent := summaryNumbers(t, r.stdout, "PLC sent")
	for k, want := range map[string]int{"frames": 8, "hello": 1, "events": 5, "heartbeats": 2} {
		if sent[k] != want {
			t.Errorf("PLC sent %d %s, want %d (%v)", sent[k], k, want, sent)
		}
	}
	retrans := sent["retransmission"]
	if retrans < 1 {
		t.Errorf("PLC retransmitted %d frames, want at least the staged one", retrans)
	} else if retrans > 1 {
		t.Logf("%d retransmissions: the machine was slow to ACK", retrans)
	}
	got := summaryNumbers(t, r.stdout, "PLC received")
	for k, want := range map[string]int{"queued": 5, "lost on": 1, "NAKs": 0, "delivery reports": 5, "accepted": 5, "failed": 0} {
		if got[k] != want {
			t.Errorf("PLC received %d %s, want %d (%v)", got[k], k, want, got)
		}
	}
	if got["duplicate"] < 1 {
		t.Errorf("PLC got %d duplicate ACKs, want at least 1", got["duplicate"])
	}
	gw := summaryNumbers(t, r.stdout, "gateway")
	// The gateway saw the 8 frames plus every retransmission, ACKed each
	// HELLO and EVENT copy, and suppressed every copy after the first.
	for k, want := range map[string]int{"frames": 8 + retrans, "ACKs": 6 + retrans, "duplicates suppressed": retrans, "alarm mails": 5, "delivered": 7} {
		if gw[k] != want {
			t.Errorf("gateway %d %s, want %d (%v)", gw[k], k, want, gw)
		}
	}
	if ms := summaryNumbers(t, r.stdout, "mail server"); ms["mails received"] != 7 {
		t.Errorf("mail server received %d mails, want 7", ms["mails received"])
	}
	if mb := summaryNumbers(t, r.stdout, "modbus device"); mb["alarm mails"] != 2 || mb["polls"] < 2 {
		t.Errorf("modbus device: %d alarm mails, %d polls, want 2 and at least 2 (%v)", mb["alarm mails"], mb["polls"], mb)
	}
	if !strings.Contains(r.stdout, "ACK duplicate") || !strings.Contains(r.stdout, "ACK lost on the wire (simulated)") {
		t.Error("output does not show the lost ACK and the duplicate")
	}

	// Exactly seven .eml files, one per event, each a well-formed mail
	// whose subject comes from its template; the retransmitted door alarm
	// is there once.
	files, err := filepath.Glob(filepath.Join(out, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 7 {
		t.Fatalf("%d .eml files in %s, want 7: %v", len(files), out, files)
	}
	var subjects []string
	dec := new(mime.WordDecoder)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) {
			t.Errorf("%s: not CRLF line endings throughout", f)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		subject, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
		subjects = append(subjects, subject)
		if from := msg.Header.Get("From"); !strings.Contains(from, "plc-gateway@plcmail.test") {
			t.Errorf("%s: From %q", f, from)
		}
		if msg.Header.Get("Message-Id") == "" && msg.Header.Get("Message-ID") == "" {
			t.Errorf("%s: no Message-ID", f)
		}
	}
	sort.Strings(subjects)
	want := []string{
		"Press 1: alarm 99 (raise)",
		"Press 1: safety door closed",
		"Press 1: safety door open",
		"[critical] Press 1: Hydraulic pressure low (clear)",
		"[critical] Press 1: Hydraulic pressure low (raise)",
		"[warning] Tank 1: Tank 1 level high (clear, 87 %)",
		"[warning] Tank 1: Tank 1 level high (raise, 95 %)",
	}
	if strings.Join(subjects, "\n") != strings.Join(want, "\n") {
		t.Errorf("subjects:\n%s\nwant:\n%s", strings.Join(subjects, "\n"), strings.Join(want, "\n"))
	}
	if kept, err := os.ReadFile(filepath.Join(out, "plcmail-demo.toml")); err != nil || !bytes.Contains(kept, []byte("[[serial]]")) {
		t.Errorf("the demo's configuration is not kept with the mails: %v", err)
	}
	body, _ := os.ReadFile(files[0])
	if !strings.Contains(r.stdout, "62.5 bar") || !bytes.Contains(body, []byte("Hydraulic pressure low")) {
		t.Errorf("first mail does not carry the PLC's value and the template's text")
	}
}

// TestDemoFollow: with --follow the gateway keeps running after the script
// and `plcmail status` (as printed by the demo) reports it; Ctrl-C (ctx)
// ends the demo cleanly.
func TestDemoFollow(t *testing.T) {
	needPTY(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &testenv.SyncBuffer{}
	stderr := &testenv.SyncBuffer{}
	e := &env{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, getenv: func(string) string { return "" }}
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"plcmail", "demo", "--follow", "--out", t.TempDir(), "--pace", "20ms"}, e)
	}()
	var statusCmd []string
	defer func() {
		if t.Failed() {
			t.Logf("demo stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	}()
	waitFor(t, "the --follow hint", func() bool {
		m := regexp.MustCompile(`plcmail -c (\S+) status`).FindStringSubmatch(stdout.String())
		if m != nil {
			statusCmd = []string{"plcmail", "-c", m[1], "status"}
		}
		return m != nil
	})
	r := runCLI(t, "", statusCmd...)
	if r.code != 0 || !strings.Contains(r.stdout, "press-1") || !strings.Contains(r.stdout, "delivered 7") || !strings.Contains(r.stdout, "tank-1") {
		t.Errorf("status of the demo gateway: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("demo --follow after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo --follow did not stop after Ctrl-C")
	}
}

func TestDemoUsage(t *testing.T) {
	r := runCLI(t, "", "plcmail", "demo", "extra")
	if r.code != 2 {
		t.Errorf("demo extra: exit %d, want 2\n%s", r.code, r.stderr)
	}
}

// TestDemoGoRun runs the README's first command exactly as written, from
// the repository root, in a child process with the default pacing: what a
// new user sees must work and end by itself.
func TestDemoGoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the full-length demo")
	}
	needPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./cmd/plcmail", "demo")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir()) // its mail folder goes away with the test
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./cmd/plcmail demo: %v\n%s", err, out)
	}
	t.Logf("go run ./cmd/plcmail demo: %v (including compilation)", time.Since(start).Round(100*time.Millisecond))
	if ms := summaryNumbers(t, string(out), "mail server"); ms["mails received"] != 7 {
		t.Errorf("mail server received %d mails, want 7\n%s", ms["mails received"], out)
	}
	if gw := summaryNumbers(t, string(out), "gateway"); gw["duplicates suppressed"] < 1 || gw["alarm mails"] != 5 {
		t.Errorf("gateway suppressed %d duplicates and queued %d mails, want >= 1 and 5\n%s", gw["duplicates suppressed"], gw["alarm mails"], out)
	}
}

// TestDemoInterrupted: Ctrl-C in the middle of the script stops the demo
// cleanly, with the summary of what happened so far.
func TestDemoInterrupted(t *testing.T) {
	needPTY(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &testenv.SyncBuffer{}
	e := &env{stdin: strings.NewReader(""), stdout: stdout, stderr: &testenv.SyncBuffer{}, getenv: func(string) string { return "" }}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"plcmail", "demo", "--out", t.TempDir()}, e) }()
	waitFor(t, "the first mail", func() bool { return strings.Contains(stdout.String(), "MAIL  #1") })
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("demo after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop after Ctrl-C")
	}
	out := stdout.String()
	if !strings.Contains(out, "\nsummary\n") || !regexp.MustCompile(`gateway\s+[1-9]\d* frames`).MatchString(out) {
		t.Errorf("no summary with the gateway's counters after Ctrl-C:\n%s", out)
	}
}

// TestTextBody: the demo's mail printer finds and decodes the text part the
// way mail programs do.
func TestTextBody(t *testing.T) {
	for _, c := range []struct{ name, msg, want string }{
		{"plain", "Subject: x\r\n\r\nhello\r\n", "hello\r\n"},
		{"quoted-printable", "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nDruck =C3=BCber 80=\r\n bar\r\n", "Druck über 80 bar\r\n"},
		{"base64", "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8g\r\nd29ybGQ=\r\n", "hello world"},
		{"multipart", "Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\ndGV4dA==\r\n--b--\r\n", "text"},
		{"html only", "Content-Type: text/html\r\n\r\n<p>x</p>\r\n", "(no text part)"},
	} {
		msg, err := mail.ReadMessage(strings.NewReader(c.msg))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := textBody(msg.Header, msg.Body); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
