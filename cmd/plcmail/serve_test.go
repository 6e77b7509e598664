package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/spool"
)

// inProcessServe is a `plcmail serve` running in a goroutine.
type inProcessServe struct {
	stop func() (string, error) // cancels, waits, returns serve's log and error
	logs func() string
}

// startServe runs `plcmail serve` in-process until stop is called.
func startServe(t *testing.T, path string) inProcessServe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.SyncBuffer{}
	e := &env{stdin: strings.NewReader(""), stdout: logs, stderr: logs, getenv: func(string) string { return "" }}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"plcmail", "-c", path, "serve"}, e) }()
	var once sync.Once
	var err error
	stop := func() (string, error) {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("serve did not stop within 30s")
			}
		})
		return logs.String(), err
	}
	t.Cleanup(func() { stop() })
	return inProcessServe{stop, logs.String}
}

// TestServeDelivers: mail queued by `plcmail send` while serve runs goes
// upstream over STARTTLS with AUTH; a 4xx is retried, a 5xx dead-lettered
// and shown by mailq; SIGTERM (ctx) stops serve cleanly.
func TestServeDelivers(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	var mu sync.Mutex
	tempFails := 2
	u.SetRcpt(func(to string) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case to == "nobody@example.com":
			return mailertest.Reply(550, "5.1.1 no such user")
		case to == "flaky@example.com" && tempFails > 0:
			tempFails--
			return mailertest.Reply(451, "4.3.0 try again later")
		}
		return nil
	})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	path := c.write(t)
	srv := startServe(t, path)

	for _, rcpt := range []string{"ops@example.com", "flaky@example.com", "nobody@example.com"} {
		if r := runCLI(t, "Subject: to "+rcpt+"\n\nbody\n", "sendmail", "-c", path, rcpt); r.code != 0 {
			t.Fatalf("send: %+v", r)
		}
	}
	msgs := u.Wait(t, 2, 20*time.Second)
	got := map[string]bool{}
	for _, m := range msgs {
		got[m.To[0]] = true
		if !m.TLS || m.User != "plc@example.com" {
			t.Errorf("message to %v: tls %v, user %q", m.To, m.TLS, m.User)
		}
	}
	if !got["ops@example.com"] || !got["flaky@example.com"] {
		t.Errorf("delivered to %v", got)
	}
	// The 550 becomes a dead letter, visible in mailq.
	deadline := time.Now().Add(10 * time.Second)
	var r result
	for time.Now().Before(deadline) {
		r = runCLI(t, "", "mailq", "-c", path)
		if strings.Contains(r.stdout, "DEAD") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(r.stdout, "nobody@example.com") || !strings.Contains(r.stdout, "550") || strings.Contains(r.stdout, "ops@example.com") {
		t.Errorf("mailq after delivery:\n%s", r.stdout)
	}
	logs, err := srv.stop()
	if err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
	for _, want := range []string{"plcmail starting", "plcmail running", "delivered", "plcmail stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "s3cret-Pa55") {
		t.Errorf("log shows the password")
	}
}

// TestServeRefusesSecondInstance: two daemons on one spool would deliver
// every message twice; the second one must stop with a clear error.
func TestServeRefusesSecondInstance(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	path := c.write(t)
	stop1 := startServe(t, path)
	// Once it has delivered a message, the first serve holds the spool.
	if r := runCLI(t, "Subject: x\n\ny\n", "sendmail", "-c", path, "ops@example.com"); r.code != 0 {
		t.Fatal(r)
	}
	u.Wait(t, 1, 15*time.Second)
	stop2 := startServe(t, path)
	waitFor(t, "second serve gives up", func() bool {
		// stop() on a serve that has already returned only collects its
		// result; one still running would be stopped and return nil.
		return strings.Contains(stop2.logs(), "another plcmail serve")
	})
	if logs, err := stop2.stop(); err == nil || !strings.Contains(err.Error(), "another plcmail serve is already delivering") {
		t.Errorf("second serve: %v\n%s", err, logs)
	}
	if logs, err := stop1.stop(); err != nil {
		t.Errorf("first serve: %v\n%s", err, logs)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !poll(15*time.Second, cond) {
		t.Fatalf("timed out waiting: %s", what)
	}
}

// poll checks cond every 20 ms until it holds (true) or timeout has passed
// (false).
func poll(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// plcmailBinary builds the command once per test run.
func plcmailBinary(t *testing.T) string {
	t.Helper()
	return testenv.BuildPlcmail(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

// daemon is a `plcmail serve` child process.
type daemon struct {
	t    *testing.T
	bin  string
	path string
	log  *os.File
	cmd  *exec.Cmd
	done chan error
	// runningBefore counts "plcmail running" lines before the last start.
	runningBefore int
}

func newDaemon(t *testing.T, bin, path string) *daemon {
	f, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, bin: bin, path: path, log: f}
	t.Cleanup(func() {
		d.kill()
		f.Close()
	})
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.runningBefore = strings.Count(d.logs(), "plcmail running")
	d.cmd = exec.Command(d.bin, "-c", d.path, "serve")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // never outlive the test (an orphan on a reused pty steals frames)
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(d.cmd, d.done)
}

func (d *daemon) signal(sig syscall.Signal) {
	if d.cmd != nil {
		syscall.Kill(-d.cmd.Process.Pid, sig)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	if d.cmd == nil {
		return
	}
	d.signal(syscall.SIGKILL)
	<-d.done
	d.cmd = nil
}

// stop sends SIGTERM and returns the exit error.
func (d *daemon) stop(timeout time.Duration) error {
	d.signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		d.cmd = nil
		return err
	case <-time.After(timeout):
		d.kill()
		return fmt.Errorf("serve did not stop within %v after SIGTERM", timeout)
	}
}

func (d *daemon) logs() string {
	b, _ := os.ReadFile(d.log.Name())
	return string(b)
}

// waitRunning waits until the process started last has said it runs, so
// that a signal reaches main's handlers rather than a starting runtime.
func (d *daemon) waitRunning(timeout time.Duration) bool {
	return poll(timeout, func() bool { return strings.Count(d.logs(), "plcmail running") > d.runningBefore })
}

// waitLog waits until the daemon's log contains s.
func (d *daemon) waitLog(s string, timeout time.Duration) bool {
	return poll(timeout, func() bool { return strings.Contains(d.logs(), s) })
}

// TestQueueFlushWakesServe: a message waiting out a long backoff goes out at
// once when `plcmail queue flush` runs in another process (postqueue -f).
func TestQueueFlushWakesServe(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{})
	u.SetRcpt(func(string) error { return mailertest.Reply(451, "4.7.1 greylisted, try again later") })
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	path := c.write(t)
	// Hours of backoff: without the flush nothing would happen in this test.
	text, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(text), `min_backoff = "50ms"`+"\nmax_backoff = \"500ms\"", `min_backoff = "1h"`+"\nmax_backoff = \"2h\"", 1)), 0o600)
	srv := startServe(t, path)
	if r := runCLI(t, "Subject: greylisted\n\nx\n", "sendmail", "-c", path, "ops@example.com"); r.code != 0 {
		t.Fatal(r)
	}
	waitFor(t, "first attempt deferred", func() bool {
		return strings.Contains(runCLI(t, "", "mailq", "-c", path).stdout, "(1 attempt, next in ")
	})
	u.SetRcpt(nil)
	if r := runCLI(t, "", "plcmail", "-c", path, "queue", "flush"); r.code != 0 {
		t.Fatal(r)
	}
	u.Wait(t, 1, 10*time.Second)
	if logs, err := srv.stop(); err != nil || !strings.Contains(logs, "flush requested") {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}

func TestRestartKeys(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = "[[serial]]\nname = \"a\"\ndevice = \"/dev/ttyUSB0\"\n\n[[alarm]]\ncode = 1\nto = [\"ops@example.com\"]\n"
	old, err := loadConfig(&env{configPath: c.write(t)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		change string
		want   string
	}{
		{"", ""},
		{"log_level", ""},
		{"alarm", ""},
		{"upstream", "upstream"},
		{"queue", "queue"},
		{"serial", ""}, // the bridge reopens a moved link on reload
		{"smtp", "smtp"},
		{"http", "http"},
		{"spool", "gateway"},
	}
	for _, tt := range tests {
		n := *old
		n.Gateway, n.Upstream, n.Queue = old.Gateway, old.Upstream, old.Queue
		n.Serial = append([]config.Serial(nil), old.Serial...)
		switch tt.change {
		case "log_level":
			n.Gateway.LogLevel = "debug"
		case "alarm":
			n.Alarm = nil
		case "upstream":
			n.Upstream.Port = 465
		case "queue":
			n.Queue.MinBackoff *= 2
		case "serial":
			n.Serial[0].Device = "/dev/ttyUSB1"
		case "smtp":
			n.SMTP = &config.SMTP{Listen: []string{"127.0.0.1:25"}}
		case "http":
			n.HTTP = &config.HTTP{Listen: "127.0.0.1:9469"}
		case "spool":
			n.Gateway.SpoolDir = "/elsewhere"
		}
		if got := strings.Join(restartKeys(old, &n), ","); got != tt.want {
			t.Errorf("%s changed: restart keys %q, want %q", tt.change, got, tt.want)
		}
	}
}

// TestReloadWarnsUntilRestart: a reload applies what the bridge can and
// names the sections only a restart applies, compared with the
// configuration serve started with, for as long as they differ from it.
func TestReloadWarnsUntilRestart(t *testing.T) {
	c := newTestConfig(t)
	serial := "[[serial]]\nname = \"a\"\ndevice = \"/nonexistent/tty\"\n\n"
	alarm := "[[alarm]]\ncode = 1\nto = [\"ops@example.com\"]\n"
	c.Extra = serial + alarm
	path := c.write(t)
	r := startReloadTarget(t, path)
	started, links, logs, log := r.started, r.links, r.logs, r.log

	upstream := c.Upstream
	moved := strings.Replace(upstream, "port = 1", "port = 2", 1)
	steps := []struct {
		name     string
		upstream string
		extra    string
		want     string
	}{
		{"upstream changed", moved, serial + alarm,
			`"reloaded; these settings take effect only after a restart" sections=upstream`},
		// The queue still runs with the upstream it started with.
		{"then an alarm", moved, serial + strings.Replace(alarm, "code = 1", "code = 2", 1), `sections=upstream`},
		{"upstream back, smtp added", upstream, serial + alarm + "\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n", `sections=smtp`},
		{"all back", upstream, serial + alarm, `msg="reloaded configuration"`},
		{"broken template", upstream, serial + alarm + "[[alarm]]\ncode = 3\nsubject = \"{{.Nope\"\nto = [\"ops@example.com\"]\n",
			`msg="reload failed, keeping the running configuration"`},
		// A wrong type does not hide the template error behind it: the
		// log names every problem, as plcmail check does.
		{"wrong type and broken template", strings.Replace(upstream, "port = 1", `port = "1"`, 1),
			serial + alarm + "[[alarm]]\ncode = 3\nsubject = \"{{.Nope\"\nto = [\"ops@example.com\"]\n",
			`alarm[1].subject: template line 1: unclosed action`},
	}
	for _, s := range steps {
		c.Upstream, c.Extra = s.upstream, s.extra
		c.write(t)
		before := len(logs.String())
		reload(path, started, links, nil, log, new(slog.LevelVar))
		if got := logs.String()[before:]; !strings.Contains(got, s.want) {
			t.Errorf("%s: log lacks %s:\n%s", s.name, s.want, got)
		}
	}
	if st := links.Status(); len(st) != 1 || st[0].Name != "a" {
		t.Errorf("links after reloads: %+v", st)
	}
}

// reloadTarget is what reload works on, made from the config file at path
// as serve makes it: the configuration serve started with, its templates,
// the spool, the running bridge, and the log reload writes to.
type reloadTarget struct {
	started *config.Config
	tmpl    *alarmmail.Templates
	sp      *spool.Spool
	links   *bridge.Bridge
	logs    *testenv.SyncBuffer
	log     *slog.Logger
}

// startReloadTarget runs the bridge until the test ends.
func startReloadTarget(t *testing.T, path string) *reloadTarget {
	t.Helper()
	started, err := loadConfig(&env{configPath: path})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := alarmmail.CompileTemplates(started)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(started.Gateway.SpoolDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	links, err := bridge.New(bridgeOptions(started, tmpl), sp, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- links.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &reloadTarget{started: started, tmpl: tmpl, sp: sp, links: links, logs: logs, log: log}
}

// TestBridgeOptions: every [[serial]] and [flood] setting reaches the
// bridge.
func TestBridgeOptions(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = `
[[serial]]
name = "press"
device = "/dev/ttyS1"
baud = 9600
data_bits = 7
parity = "even"
stop_bits = 2
heartbeat_timeout = "30s"
reset_grace = "3s"
site = "Plant 2"
label = "Press 1"

[[serial]]
name = "oven"
usb_vid = "2341"
usb_pid = "0043"
usb_serial = "ABC"
restart_notice = false
to = ["oven@example.com"]

[[alarm]]
code = 1
to = ["ops@example.com"]

[flood]
max_mails_per_minute = 7
digest_delay = "2m"
`
	cfg, err := loadConfig(&env{configPath: c.write(t)})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := alarmmail.CompileTemplates(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := bridgeOptions(cfg, tmpl)
	want := bridge.Options{
		Links: []bridge.LinkOptions{{
			Name:             "press",
			Port:             bridge.Port{Device: "/dev/ttyS1", Baud: 9600, DataBits: 7, Parity: "even", StopBits: "2"},
			HeartbeatTimeout: 30 * time.Second,
			ResetGrace:       3 * time.Second,
			Site:             "Plant 2",
			Label:            "Press 1",
			RestartNotice:    true,
		}, {
			Name: "oven",
			Port: bridge.Port{USBVID: "2341", USBPID: "0043", USBSerial: "ABC",
				Baud: config.DefaultBaud, DataBits: 8, Parity: "none", StopBits: "1"},
			HeartbeatTimeout: config.DefaultHeartbeatTimeout,
			ResetGrace:       config.DefaultResetGrace,
		}},
		Flood:     bridge.Flood{MaxMailsPerMinute: 7, DigestDelay: 2 * time.Minute},
		Templates: tmpl,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bridgeOptions:\n got %+v\nwant %+v", got, want)
	}
}

// TestServeLogsConfigWarnings: what check prints as a warning, serve logs
// at start, for a gateway started without anyone running check.
func TestServeLogsConfigWarnings(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = modbusCodeWithoutTemplate
	s := startServe(t, c.write(t))
	want := `msg="configuration warning" warning=`
	waitFor(t, "the warning in the log", func() bool {
		return strings.Contains(s.logs(), want) && strings.Contains(s.logs(), "no [[alarm]] has code 4242")
	})
}
