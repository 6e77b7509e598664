package modbus

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/spool"
)

// slave is testdata/server.py, a pymodbus slave we did not write the
// protocol of, driven through its stdin.
type slave struct {
	t     *testing.T
	in    io.WriteCloser
	lines chan string
}

// findPymodbus returns a python3 that can import pymodbus (Debian's
// python3-pymodbus is in /usr/bin/python3's path, which a pyenv shim earlier
// in PATH would hide).
func findPymodbus(t *testing.T) string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(py); err == nil {
			if exec.Command(path, "-c", "import pymodbus.server").Run() == nil {
				return path
			}
		}
	}
	testenv.Missing(t, "python3 with pymodbus not found (apt-get install python3-pymodbus)")
	return ""
}

// startSlave runs the server ("tcp", port) or ("rtu", device) and waits
// until it answers.
func startSlave(t *testing.T, mode, where string) *slave {
	py := findPymodbus(t)
	cmd := exec.Command(py, filepath.Join("testdata", "server.py"), mode, where)
	cmd.Stderr = io.Discard // pymodbus logs every closed connection
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	s := &slave{t: t, in: in, lines: make(chan string, 10)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	s.expect("READY")
	return s
}

func (s *slave) expect(want string) {
	s.t.Helper()
	select {
	case l, ok := <-s.lines:
		if !ok {
			s.t.Fatal("modbus slave exited")
		}
		if l != want {
			s.t.Fatalf("modbus slave said %q, want %q", l, want)
		}
	case <-time.After(30 * time.Second):
		s.t.Fatalf("modbus slave: no %q", want)
	}
}

// do sends one command ("hr 0 950") and waits until it is applied.
func (s *slave) do(cmd string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, cmd+"\n"); err != nil {
		s.t.Fatal(err)
	}
	s.expect("ok")
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// gateway is the poller under test with its spool, which outlives
// restarts of the poller.
type gateway struct {
	t      *testing.T
	opts   Options
	p      *Poller // the running poller
	sp     *spool.Spool
	cancel context.CancelFunc
	done   chan struct{}
	marker int // times the marker coil was toggled
	slave  *slave
}

const testConfig = `
[gateway]
hostname = "gw.test"
spool_dir = "/nonexistent"
[upstream]
host = "127.0.0.1"
security = "none"
auth = "none"
from = "gw@example.com"
[[alarm]]
default = true
to = ["ops@example.com"]
`

func newGateway(t *testing.T, s *slave, dev Device, more ...Device) *gateway {
	cfg, err := config.Parse("test.toml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := alarmmail.CompileTemplates(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// The marker coil 99 comes first: once its alarm shows in the spool,
	// every value set before it has been read and evaluated.
	dev.Tags = append([]Tag{{Name: "marker", Table: Coil, Address: 99, Type: "bool", Scale: 1,
		Rules: []Rule{{ID: "true", Name: "marker", State: true, Code: -1}}}}, dev.Tags...)
	g := &gateway{t: t, sp: sp, slave: s, opts: Options{Devices: append([]Device{dev}, more...), Templates: tmpl,
		StateDir: filepath.Join(dir, "spool", "modbus")}}
	g.start()
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) start() {
	p, err := New(g.opts, g.sp, nil, slog.New(slog.NewTextHandler(g.t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		g.t.Fatal(err)
	}
	g.p = p
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel, g.done = cancel, make(chan struct{})
	go func() {
		defer close(g.done)
		if err := p.Run(ctx); err != nil {
			g.t.Error(err)
		}
	}()
}

func (g *gateway) stop() {
	if g.cancel != nil {
		g.cancel()
		<-g.done
		g.cancel = nil
	}
}

// keys returns the spool keys, sorted.
func (g *gateway) keys() []string {
	ms, err := g.sp.List()
	if err != nil {
		g.t.Fatal(err)
	}
	var ks []string
	for _, m := range ms {
		ks = append(ks, m.Key)
	}
	slices.Sort(ks)
	return ks
}

// waitKey waits until the spool has key.
func (g *gateway) waitKey(key string) {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(g.keys(), key) {
		if time.Now().After(deadline) {
			g.t.Fatalf("no mail with key %s; spool has %v", key, g.keys())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sync toggles the marker coil twice and waits for its mails. The marker
// is read first in a poll, so the poll that mails the first toggle has read
// every value set before; the second toggle's mail comes from a later poll,
// so the first one's evaluations are all done.
func (g *gateway) sync() {
	g.t.Helper()
	for range 2 {
		g.marker++
		g.slave.do("co 99 " + strconv.Itoa(g.marker%2))
		g.waitKey("modbus/dev/marker/true/" + strconv.Itoa(g.marker))
	}
}

// alarmKeys returns the keys of mails other than the marker's.
func (g *gateway) alarmKeys() []string {
	var ks []string
	for _, k := range g.keys() {
		if !strings.Contains(k, "/marker/") {
			ks = append(ks, k)
		}
	}
	return ks
}

func (g *gateway) wantKeys(want ...string) {
	g.t.Helper()
	slices.Sort(want)
	if got := g.alarmKeys(); !slices.Equal(got, want) {
		g.t.Fatalf("mails queued: %v\nwant %v", got, want)
	}
}

// mail returns the body of the mail queued under key.
func (g *gateway) mail(key string) string {
	g.t.Helper()
	ms, err := g.sp.List()
	if err != nil {
		g.t.Fatal(err)
	}
	for _, m := range ms {
		if m.Key == key {
			_, data, err := g.sp.ReadMessage(m.ID)
			if err != nil {
				g.t.Fatal(err)
			}
			head, body, _ := strings.Cut(string(data), "\r\n\r\n")
			if strings.Contains(head, "quoted-printable") {
				b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(body)))
				if err != nil {
					g.t.Fatal(err)
				}
				body = string(b)
			}
			return head + "\r\n\r\n" + body
		}
	}
	g.t.Fatalf("no mail %s", key)
	return ""
}

func tcpDevice(port int, tags ...Tag) Device {
	return Device{Name: "dev", SlaveID: 1, PollInterval: 30 * time.Millisecond, OfflineAfter: 2,
		Bus:  Bus{TCP: "127.0.0.1:" + strconv.Itoa(port), Timeout: 300 * time.Millisecond, MinGap: 2 * time.Millisecond},
		Tags: tags}
}

// newPTYPair returns the gateway's end and the other end of a socat pty pair.
func newPTYPair(t *testing.T) (gwPath, slavePath string) {
	return testenv.SocatPTYPair(t)
}

func rtuDevice(name, path string, slaveID uint8, tags ...Tag) Device {
	return Device{Name: name, SlaveID: slaveID, PollInterval: 30 * time.Millisecond, OfflineAfter: 2,
		Bus: Bus{Device: path, Baud: 19200, DataBits: 8, Parity: "none", StopBits: 1, // a pty refuses parity
			Timeout: 300 * time.Millisecond, MinGap: 2 * time.Millisecond},
		Tags: tags}
}
