package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/plcsim"
	"github.com/plcmail/plcmail/internal/pty"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// openPty returns the master of a new pseudo-terminal and its slave's path.
// The gateway opens the slave with the real serial library, the test plays
// the PLC on the master.
func openPty(t testing.TB) (*os.File, string) {
	t.Helper()
	p, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Master, p.Path
}

// heldSlavePty returns the slave path of a pty whose slave end the test
// keeps open, so the port can be opened and closed by the gateway code
// under test without the pty hanging up in between; it skips where ptys
// cannot be made.
func heldSlavePty(t testing.TB) string {
	t.Helper()
	p, err := pty.Open()
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.HoldSlave(); err != nil {
		t.Fatal(err)
	}
	return p.Path
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

// optionsFor builds the bridge's options from cfg as plcmail serve does.
func optionsFor(t testing.TB, cfg *config.Config) Options {
	t.Helper()
	o, err := compileOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// compileOptions compiles cfg's templates and builds the bridge's options
// from its [[serial]] and [flood] sections, like bridgeOptions in
// cmd/plcmail/options.go (whose tests check its side).
func compileOptions(cfg *config.Config) (Options, error) {
	tmpl, err := alarmmail.CompileTemplates(cfg)
	if err != nil {
		return Options{}, err
	}
	o := Options{
		Flood:     Flood{MaxMailsPerMinute: cfg.Flood.MaxMailsPerMinute, DigestDelay: cfg.Flood.DigestDelay.D()},
		Templates: tmpl,
	}
	for _, s := range cfg.Serial {
		o.Links = append(o.Links, LinkOptions{
			Name: s.Name,
			Port: Port{Device: s.Device, USBVID: s.USBVID, USBPID: s.USBPID, USBSerial: s.USBSerial,
				Baud: s.Baud, DataBits: s.DataBits, Parity: s.Parity, StopBits: string(s.StopBits)},
			HeartbeatTimeout: s.HeartbeatTimeout.D(),
			ResetGrace:       s.ResetGrace.D(),
			Site:             s.Site,
			Label:            s.Label,
			RestartNotice:    s.WantsRestartNotice(),
		})
	}
	return o, nil
}

// reload compiles cfg and reloads the bridge with it, as SIGHUP does.
func (g *gateway) reload(cfg *config.Config) error {
	o, err := compileOptions(cfg)
	if err != nil {
		return err
	}
	return g.b.Reload(o)
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
	b, err := newBridge(optionsFor(t, cfg), sp, nil, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gateway{t: t, b: b, spool: sp, dir: dir, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { g.done <- b.Run(ctx) }()
	t.Cleanup(g.stop)
	return g
}

// runBeside runs b and the component that hands it results (the spool's
// queue, the fallback channels) until the test ends, and waits for the
// link to be connected.
func runBeside(t *testing.T, b *Bridge, logs *testenv.SyncBuffer, beside func(context.Context) error) *gateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { beside(ctx); done <- struct{}{} }()
	go func() { b.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	g := &gateway{t: t, b: b, logs: logs}
	g.waitConnected()
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

// plc plays the PLC on the pty master: plcsim, with failures that end the
// test.
type plc struct {
	*plcsim.PLC
	t testing.TB
	// deliveries are DELIVERY frames that arrived while expect waited for
	// something else.
	deliveries []protocol.Frame
}

// newPLC plays a PLC of boot id boot on f, which needs read deadlines.
func newPLC(t testing.TB, f io.ReadWriter, boot uint32) *plc {
	return &plc{PLC: plcsim.New(f, boot), t: t}
}

func (p *plc) write(b []byte) {
	p.t.Helper()
	if err := p.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

func (p *plc) sendFrame(f *protocol.Frame) {
	p.t.Helper()
	if err := p.Send(f); err != nil {
		p.t.Fatal(err)
	}
}

func (p *plc) hello(active ...protocol.ActiveAlarm) *protocol.Frame {
	p.t.Helper()
	f := p.Hello(active...)
	f.Uptime = 1
	p.sendFrame(f)
	return f
}

// event sends the next EVENT, severity alarm; text and values that do not
// fit are cut, as tests of the limits want.
func (p *plc) event(code uint16, ev protocol.EventKind, text string, vals ...protocol.Value) *protocol.Frame {
	p.t.Helper()
	f, err := p.Event(code, ev, protocol.SeverityAlarm, "")
	if err != nil {
		p.t.Fatal(err)
	}
	f.Uptime = 100 + p.Seq
	f.TextLen = uint8(copy(f.Text[:], text))
	f.NValues = uint8(copy(f.Values[:], vals))
	p.sendFrame(f)
	return f
}

// next returns the next frame from the gateway within d, or nil.
func (p *plc) next(d time.Duration) *protocol.Frame {
	p.t.Helper()
	deadline := time.Now().Add(d)
	var bad *protocol.FrameError
	for {
		r, err := p.Next(deadline)
		if errors.As(err, &bad) {
			continue
		}
		if err != nil {
			return nil
		}
		return &r.Frame
	}
}

// discard forgets what the gateway sent before it stopped, as the PLC's
// decoder starts afresh on a reconnected line.
func (p *plc) discard() { p.Discard() }

// expect waits for a frame of type typ answering f.
func (p *plc) expect(f *protocol.Frame, typ protocol.Type) *protocol.Frame {
	p.t.Helper()
	for {
		// Generous: a frame is never lost on a pty, but a journal fsync
		// on a machine busy with other builds took over 5 s once.
		r := p.next(20 * time.Second)
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
