// Package bench holds the side-by-side benchmark of plcmail and a Postfix
// relay (bench/run.sh). The benchmark itself is long and needs root, so CI
// does not run it; this test only keeps the script and its helper parseable,
// so a broken edit fails `go test ./...` instead of the next benchmark run.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/testenv"
)

// TestScriptsParse runs `bash -n` on run.sh and parses the Python helpers.
func TestScriptsParse(t *testing.T) {
	checks := []struct {
		tool string
		args []string
	}{
		{"bash", []string{"-n", "run.sh"}},
		{"bash", []string{"-n", "smtprelay.sh"}},
		{"sh", []string{"-n", "size.sh"}},
		{"python3", []string{"-c", "import ast\nfor f in ('idle_sessions.py', 'memsample.py'): ast.parse(open(f).read(), f)"}},
	}
	for _, c := range checks {
		t.Run(c.tool, func(t *testing.T) {
			if _, err := exec.LookPath(c.tool); err != nil {
				testenv.Missing(t, "%s not installed: %v", c.tool, err)
			}
			out, err := exec.Command(c.tool, c.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %v: %v\n%s", c.tool, c.args, err, out)
			}
		})
	}
}

// TestSerialBenchAgainstServe runs bench/serialbench as the PLC against a real
// `plcmail serve` over a socat pty pair, relaying to smtp-sink, for a few
// events: every event must be ACKed as queued and reported delivered, none
// twice. It proves the harness that produces the serial rows of RESULTS.md
// measures what it claims; the figures themselves are not checked.
func TestSerialBenchAgainstServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries and runs the gateway")
	}
	for _, tool := range []string{"socat", "smtp-sink"} {
		if _, err := lookTool(tool); err != nil {
			testenv.Missing(t, "%s not installed: %v", tool, err)
		}
	}
	dir := t.TempDir()
	plcmail := testenv.BuildPlcmail(t)
	serialbench := testenv.Build(t, "github.com/plcmail/plcmail/bench/serialbench")
	defer testenv.RemoveBuilds()

	sinkAddr := freeAddr(t)
	sinkPath, _ := lookTool("smtp-sink")
	sinkArgs := []string{sinkAddr, "64"}
	if os.Geteuid() == 0 {
		sinkArgs = append([]string{"-u", "nobody"}, sinkArgs...)
	}
	start(t, exec.Command(sinkPath, sinkArgs...))
	waitDial(t, sinkAddr)

	plc, gw := filepath.Join(dir, "plc.tty"), filepath.Join(dir, "gw.tty")
	start(t, exec.Command("socat", "pty,raw,echo=0,link="+plc, "pty,raw,echo=0,link="+gw))
	waitFile(t, plc)
	waitFile(t, gw)

	host, port, _ := net.SplitHostPort(sinkAddr)
	cfg := filepath.Join(dir, "serial.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[gateway]
hostname = "bench.test"
spool_dir = %q
[upstream]
host = %q
port = %s
security = "none"
auth = "none"
from = "plc@bench.test"
[[serial]]
name = "bench"
device = %q
heartbeat_timeout = "1h"
[[alarm]]
default = true
to = ["ops@bench.test"]
[flood]
holdoff = "0s"
max_mails_per_minute = 100000
`, filepath.Join(dir, "spool"), host, port, gw)), 0o600); err != nil {
		t.Fatal(err)
	}
	var serveLog bytes.Buffer
	serve := exec.Command(plcmail, "-c", cfg, "serve")
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	start(t, serve)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, serialbench, "-tty", plc, "-n", "20", "-deliveries", "30s").CombinedOutput()
	if err != nil {
		t.Fatalf("serialbench: %v\n%s\nserve log:\n%s", err, out, serveLog.String())
	}
	for _, want := range []string{"events=20 ", "acked_queued=20 ", "acked_duplicate=0 ", "nak=0 ", "delivered=20 ", "delivery_failed=0 "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("serialbench output lacks %q:\n%s", want, out)
		}
	}
}

// lookTool finds a program on PATH or in /usr/sbin, where Debian puts
// Postfix's test tools.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return exec.LookPath(filepath.Join("/usr/sbin", name))
}

// start runs cmd until the test ends, then kills it and waits for it.
func start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitDial(t *testing.T, addr string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s did not appear", path)
}
