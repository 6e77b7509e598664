package systemd

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a unixgram socket as systemd does for NOTIFY_SOCKET.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNotify(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), fmt.Sprintf("@plcmail-test-%d", os.Getpid())} {
		t.Run(name, func(t *testing.T) {
			c := listen(t, name)
			n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": strconv.Itoa(os.Getpid())}))
			if err != nil || n == nil {
				t.Fatalf("FromEnv: %v, %v", n, err)
			}
			if d := n.WatchdogInterval(); d != 1500*time.Millisecond {
				t.Errorf("watchdog interval %v, want half of WATCHDOG_USEC", d)
			}
			n.Ready("running\n2 links")
			if got := recv(t, c); got != "READY=1\nSTATUS=running 2 links\n" {
				t.Errorf("ready: %q", got)
			}
			var before unix.Timespec
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
			n.Reloading()
			got := recv(t, c)
			us, ok := strings.CutPrefix(strings.TrimSuffix(got, "\n"), "RELOADING=1\nMONOTONIC_USEC=")
			v, err := strconv.ParseInt(us, 10, 64)
			if !ok || err != nil || v < before.Nano()/1000 {
				t.Errorf("reloading: %q (monotonic clock was %d µs before)", got, before.Nano()/1000)
			}
			n.Watchdog("")
			if got := recv(t, c); got != "WATCHDOG=1\n" {
				t.Errorf("watchdog: %q", got)
			}
			n.Stopping()
			if got := recv(t, c); got != "STOPPING=1\n" {
				t.Errorf("stopping: %q", got)
			}
		})
	}
}

func TestNotifyOff(t *testing.T) {
	n, err := FromEnv(env(nil))
	if n != nil || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v, %v", n, err)
	}
	// A nil notifier is usable.
	if n.Ready("x") != nil || n.Stopping() != nil || n.WatchdogInterval() != 0 {
		t.Error("nil notifier")
	}
	// The watchdog of another process (a parent that exec'd us with its
	// environment) is not ours.
	n, _ = FromEnv(env(map[string]string{"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}))
	if n.WatchdogInterval() != 0 {
		t.Error("watchdog of another pid taken")
	}
	if _, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": "vsock:2:1234"})); err == nil {
		t.Error("vsock address accepted")
	}
}

func TestJournalHandler(t *testing.T) {
	var buf bytes.Buffer
	level := new(slog.LevelVar)
	level.Set(slog.LevelDebug)
	log := slog.New(JournalHandler(&buf, level)).With("component", "queue")
	log.Debug("d")
	log.Info("i", "k", "v")
	log.Warn("w")
	log.WithGroup("g").Error("e", "err", "line one\nline two")
	want := "<7>level=DEBUG msg=d component=queue\n" +
		"<6>level=INFO msg=i component=queue k=v\n" +
		"<4>level=WARN msg=w component=queue\n" +
		"<3>level=ERROR msg=e component=queue g.err=\"line one\\nline two\"\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestIsJournal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	if !IsJournal(env(map[string]string{"JOURNAL_STREAM": fmt.Sprintf("%d:%d", st.Dev, st.Ino)}), f) {
		t.Error("matching JOURNAL_STREAM not recognised")
	}
	if IsJournal(env(map[string]string{"JOURNAL_STREAM": fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)}), f) {
		t.Error("stderr redirected elsewhere taken for the journal")
	}
	if IsJournal(env(nil), f) {
		t.Error("no JOURNAL_STREAM taken for the journal")
	}
}
