package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
	"golang.org/x/sys/unix"
)

// openPty returns the master of a new pseudo-terminal and its slave's path.
// The gateway opens the slave with the real serial library, the test plays
// the PLC on the master.
func openPty(t testing.TB) (*os.File, string) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	// Non-blocking, so os.NewFile puts it in the netpoller and read
	// deadlines work.
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { m.Close() })
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

const testConfig = `
[gateway]
hostname = "gw.test"
spool_dir = "/nonexistent"
site = "Test plant"
[upstream]
host = "127.0.0.1"
port = 2525
security = "none"
auth = "none"
from = "plc@gw.test"

[[serial]]
name = "line1"
device = "%s"
label = "Press 1"
heartbeat_timeout = "%s"
reset_grace = "%s"

[[alarm]]
code = 17
name = "Pressure low"
subject = "{{.Name}} {{.Event}} on {{.Label}}: {{.Text}}"
body = "Pressure {{range .Values}}{{.}} {{end}}bar. {{.Note}}"
to = ["ops@example.com"]

[[alarm]]
default = true
to = ["all@example.com"]

[flood]
holdoff = "%s"
max_mails_per_minute = %d
digest_delay = "%s"
`

type testOpts struct {
	heartbeat   string
	holdoff     string
	maxPerMin   int
	digestDelay string
	extra       string // appended TOML
	resetGrace  string
}

func configText(device string, o testOpts) string {
	if o.heartbeat == "" {
		o.heartbeat = "60s"
	}
	if o.holdoff == "" {
		o.holdoff = "0s"
	}
	if o.maxPerMin == 0 {
		o.maxPerMin = 1000
	}
	if o.digestDelay == "" {
		o.digestDelay = "200ms"
	}
	if o.resetGrace == "" {
		o.resetGrace = "1ms"
	}
	return fmt.Sprintf(testConfig, device, o.heartbeat, o.resetGrace, o.holdoff, o.maxPerMin, o.digestDelay) + o.extra
}

func testCfg(t testing.TB, device string, o testOpts) *config.Config {
	t.Helper()
	src := configText(device, o)
	cfg, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// gateway is a running Bridge with its spool.
type gateway struct {
	t      testing.TB
	b      *Bridge
	spool  *spool.Spool
	dir    string
	cancel context.CancelFunc
	done   chan error
	logs   *testenv.SyncBuffer
}

func startGateway(t testing.TB, cfg *config.Config, dir string) *gateway {
	t.Helper()
	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := newBridge(cfg, sp, nil, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gateway{t: t, b: b, spool: sp, dir: dir, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { g.done <- b.Run(ctx) }()
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) stop() {
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	select {
	case err := <-g.done:
		if err != nil {
			g.t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		g.t.Errorf("Run did not return after cancel")
	}
	if t, ok := g.t.(*testing.T); ok && t.Failed() {
		t.Logf("gateway log:\n%s", g.logs.String())
	}
}

func (g *gateway) waitConnected() {
	g.t.Helper()
	g.waitFor("link connected", func() bool { return g.b.Status()[0].Connected })
}

func (g *gateway) waitFor(what string, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			g.t.Fatalf("timeout waiting for %s; status %+v\nlog:\n%s", what, g.b.Status(), g.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// queued is one message in the spool, decoded.
type queued struct {
	Meta    spool.Message
	Subject string
	Body    string
}

func spoolMessages(t testing.TB, dir string) []queued {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	var out []queued
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, "queue", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		hdr, msg, _ := bytes.Cut(data, []byte("\n"))
		var q queued
		if err := json.Unmarshal(hdr, &q.Meta); err != nil {
			continue // not the format this test knows
		}
		q.Subject, q.Body = decodeMail(t, msg)
		out = append(out, q)
	}
	return out
}

func decodeMail(t testing.TB, msg []byte) (subject, body string) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("bad message: %v\n%s", err, msg)
	}
	subject, _ = new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	raw, _ := io.ReadAll(m.Body)
	if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		raw, _ = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
	}
	return subject, string(raw)
}

func countKind(msgs []queued, substr string) int {
	n := 0
	for _, m := range msgs {
		if strings.Contains(m.Subject, substr) {
			n++
		}
	}
	return n
}

// plc plays the PLC on the pty master.
type plc struct {
	t   testing.TB
	f   io.ReadWriter
	dl  interface{ SetReadDeadline(time.Time) error }
	dec *protocol.Decoder
	got []protocol.Frame
	// deliveries are DELIVERY frames that arrived while expect waited for
	// something else.
	deliveries []protocol.Frame
	boot       uint32
	seq        uint32
	buf        []byte
}

func newPLC(t testing.TB, f *os.File, boot uint32) *plc {
	return &plc{t: t, f: f, dl: f, dec: protocol.NewDecoder(), boot: boot}
}

func (p *plc) write(b []byte) {
	p.t.Helper()
	if _, err := p.f.Write(b); err != nil {
		p.t.Fatalf("plc write: %v", err)
	}
}

func (p *plc) sendFrame(f *protocol.Frame) {
	p.t.Helper()
	f.Version = protocol.Version
	var err error
	p.buf, err = protocol.AppendEncoded(p.buf[:0], f)
	if err != nil {
		p.t.Fatalf("encode: %v", err)
	}
	p.write(p.buf)
}

func (p *plc) hello(active ...protocol.ActiveAlarm) *protocol.Frame {
	p.seq++
	f := &protocol.Frame{Type: protocol.TypeHello, Boot: p.boot, Seq: p.seq, Uptime: 1, ResetCause: 1,
		ActiveTotal: uint8(len(active)), NActive: uint8(len(active))}
	copy(f.Active[:], active)
	p.sendFrame(f)
	return f
}

func (p *plc) event(code uint16, ev protocol.EventKind, text string, vals ...protocol.Value) *protocol.Frame {
	p.seq++
	f := &protocol.Frame{Type: protocol.TypeEvent, Boot: p.boot, Seq: p.seq, Code: code, Event: ev,
		Severity: protocol.SeverityAlarm, Uptime: 100 + p.seq}
	f.TextLen = uint8(copy(f.Text[:], text))
	f.NValues = uint8(copy(f.Values[:], vals))
	p.sendFrame(f)
	return f
}

// next returns the next frame from the gateway within d, or nil.
func (p *plc) next(d time.Duration) *protocol.Frame {
	p.t.Helper()
	deadline := time.Now().Add(d)
	buf := make([]byte, 256)
	for len(p.got) == 0 {
		if time.Now().After(deadline) {
			return nil
		}
		p.dl.SetReadDeadline(deadline)
		n, err := p.f.Read(buf)
		p.dec.Feed(buf[:n], func(f *protocol.Frame, err error) {
			if err == nil {
				p.got = append(p.got, *f)
			}
		})
		if err != nil && !os.IsTimeout(err) {
			return nil
		}
	}
	f := p.got[0]
	p.got = p.got[1:]
	return &f
}

// expect waits for a frame of type typ answering f.
func (p *plc) expect(f *protocol.Frame, typ protocol.Type) *protocol.Frame {
	p.t.Helper()
	for {
		r := p.next(5 * time.Second)
		if r == nil {
			p.t.Fatalf("no %v for boot %d seq %d", typ, f.Boot, f.Seq)
		}
		if r.Type == typ && r.Boot == f.Boot && r.Seq == f.Seq {
			return r
		}
		if r.Type == protocol.TypeDelivery {
			p.deliveries = append(p.deliveries, *r)
			continue
		}
		p.t.Fatalf("got %v boot %d seq %d (ack %d nak %d), want %v for seq %d", r.Type, r.Boot, r.Seq, r.AckResult, r.NakReason, typ, f.Seq)
	}
}

func (p *plc) expectAck(f *protocol.Frame, want protocol.AckResult) {
	p.t.Helper()
	r := p.expect(f, protocol.TypeAck)
	if r.AckResult != want {
		p.t.Fatalf("seq %d: ack result %d, want %d", f.Seq, r.AckResult, want)
	}
}

// removeLastLine removes the journal's last record, which must contain
// marker, as if the gateway had died before writing it.
func removeLastLine(t testing.TB, path, marker string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, marker) {
		t.Fatalf("last journal line %q lacks %s", last, marker)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines[:len(lines)-1], "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitMails waits until the spool holds n messages and returns them. Alarm
// mails are queued right after the ACK (the ACK waits for the journal).
func (g *gateway) waitMails(n int) []queued {
	g.t.Helper()
	g.waitFor(fmt.Sprintf("%d mails in the spool", n), func() bool { return len(spoolMessages(g.t, g.dir)) >= n })
	return spoolMessages(g.t, g.dir)
}

// journaled reports whether the link journal holds the event (boot, seq):
// what an ACK promises.
func journaled(t testing.TB, dir string, boot, seq uint32) bool {
	data, err := os.ReadFile(filepath.Join(dir, "links", "line1.journal"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), fmt.Sprintf(`"t":"ev","b":%d,"s":%d,`, boot, seq))
}

// startHello starts a gateway for one link on a fresh pty (options o) and a
// PLC of boot id boot on the other end, whose HELLO is ACKed.
func startHello(t testing.TB, o testOpts, boot uint32) (*gateway, *plc) {
	t.Helper()
	m, slave := openPty(t)
	g := startGateway(t, testCfg(t, slave, o), t.TempDir())
	g.waitConnected()
	p := newPLC(t, m, boot)
	p.expectAck(p.hello(), protocol.AckQueued)
	return g, p
}
