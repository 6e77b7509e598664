//go:build !nodemo

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/fakeupstream"
	"github.com/plcmail/plcmail/internal/plcsim"
	"github.com/plcmail/plcmail/internal/pty"
	"github.com/plcmail/plcmail/protocol"
)

// cmdDemo runs the whole path on one machine: a simulated PLC on one end of
// a pseudo-terminal pair, the real gateway (the same serve() as `plcmail
// serve`, with a real config file, spool and delivery queue) on the other
// end, and an in-process SMTP server as the upstream, reached over STARTTLS
// with AUTH like a real provider. It ignores -c: everything it needs is
// made in a temporary directory.
func cmdDemo(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "demo")
	out := fs.String("out", "", "`DIR` for the received mails as .eml files (default: a new temporary folder)")
	follow := fs.Bool("follow", false, "keep the gateway and mail server running after the script, until Ctrl-C")
	verbose := fs.Bool("v", false, "show the gateway's log")
	pace := fs.Duration("pace", 1500*time.Millisecond, "pause between the PLC's events")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("demo takes no arguments (flags: --out DIR, --follow, -v, --pace D)")
	}
	_, err := runDemo(ctx, demoOptions{out: *out, follow: *follow, verbose: *verbose, pace: *pace, stdout: e.stdout, stderr: e.stderr})
	return err
}

type demoOptions struct {
	out            string
	follow         bool
	verbose        bool
	pace           time.Duration
	stdout, stderr io.Writer
}

// demoSummary is what one demo run counted, on both sides of the link.
type demoSummary struct {
	Hellos, Events, Heartbeats int // frames the PLC sent, retransmissions not counted
	Retransmissions            int
	AcksQueued, AcksDuplicate  int
	AcksLost                   int // ACKs the PLC ignored on purpose
	Naks                       int
	DeliveryAccepted           int
	DeliveryFailed             int
	MailsReceived              int
	MailDir                    string

	GatewayFrames, GatewayAcks, GatewayDuplicates uint64
	GatewayMailed, GatewayDelivered               uint64

	// The Modbus part (demo_modbus.go), from plcmail status.
	ModbusPolls, ModbusMailed uint64
}

// demoPrinter serialises the output of the PLC, the mail server and the
// summary, which run in different goroutines.
type demoPrinter struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *demoPrinter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

const (
	demoUser   = "demo@plcmail.test"
	demoLink   = "press-1"
	demoConfig = `# Written by plcmail demo: a complete gateway configuration, the same
# format as /etc/plcmail/plcmail.toml. Only the upstream is local.
[gateway]
hostname  = "demo-gw.plcmail.test"
spool_dir = %q
site      = "Demo plant, hall 1"
log_level = "info"

[upstream]
host          = "127.0.0.1"
port          = %d
security      = "starttls"          # mandatory TLS, as with a real provider
auth          = "plain"
username      = %q
password_file = %q
ca_file       = %q                  # the demo's own CA; real providers need none
from          = "plc-gateway@plcmail.test"
timeout       = "10s"

[queue]
min_backoff = "1s"
max_backoff = "5s"
scan_every  = "1s"

[[serial]]
name   = %q
device = %q                         # the demo's virtual serial link
baud   = 115200
label  = "Press 1"
heartbeat_timeout = "60s"

[[alarm]]
code     = 17
name     = "Hydraulic pressure low"
severity = "critical"
subject  = "[{{.Severity}}] {{.Label}}: {{.Name}} ({{.Event}})"
body     = """
{{.Name}} on {{.Label}} ({{.Site}}): {{.Event}}.

Pressure: {{range .Values}}{{.}} {{end}}bar (limit 80 bar)
PLC says: {{.Text}}
Received: {{.Time.Format "2006-01-02 15:04:05"}}
"""
to = ["maintenance@example.com"]

[[alarm]]
code    = 42
name    = "Safety door open"
subject = "{{.Label}}: safety door {{if eq .Event \"raise\"}}open{{else}}closed{{end}}"
body    = "The safety door of {{.Label}}: {{.Event}} at {{.Time.Format \"15:04:05\"}} ({{.Text}})."
to      = ["shift-lead@example.com"]

[[alarm]]
default = true
subject = "{{.Label}}: alarm {{.Code}} ({{.Event}})"
body    = "The PLC reported alarm code {{.Code}} ({{.Event}}, severity {{.Severity}}, values: {{range $i, $v := .Values}}{{if $i}} {{end}}{{$v}}{{end}}{{with .Text}}, text: {{.}}{{end}})."
to      = ["maintenance@example.com"]
`
)

// runDemo sets up the upstream, the serial link, the configuration and the
// gateway, plays the PLC's script and prints what both ends counted. The
// summary comes back also when the demo failed or was interrupted.
func runDemo(ctx context.Context, o demoOptions) (*demoSummary, error) {
	pr := &demoPrinter{w: o.stdout}
	work, err := os.MkdirTemp("", "plcmail-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	mailDir, err := demoMailDir(o.out)
	if err != nil {
		return nil, err
	}
	box := &demoMailbox{dir: mailDir, pr: pr}
	up, err := startDemoUpstream(box)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	link, err := pty.Open()
	if err != nil {
		return nil, err
	}
	defer link.Close()
	if err := link.HoldSlave(); err != nil {
		return nil, err
	}
	dev, err := startDemoModbus() // demo_modbus.go
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	d, err := writeDemoConfig(work, mailDir, up, link.Path, dev.addr)
	if err != nil {
		return nil, err
	}
	d.printIntro(pr, up.Port, dev.addr)

	gw := startDemoGateway(d.cfgPath, d.cfg, o)
	defer gw.stop()
	plc := newDemoPLC(link.Master, pr)
	go plc.readLoop()
	sum := &demoSummary{MailDir: mailDir}
	scriptErr := plc.runScript(ctx, o.pace)
	if scriptErr == nil {
		scriptErr = dev.runScript(ctx, pr, d.cfg.Gateway.SpoolDir, o.pace/2)
	}
	if scriptErr == nil {
		scriptErr = waitDemoMails(ctx, plc, up, demoModbusM)
	}
	// Let a duplicate mail, if the gateway wrongly sent one, arrive and be counted.
	time.Sleep(200 * time.Millisecond)
	plc.fill(sum)
	sum.MailsReceived = len(up.Messages())
	if err := readDemoStatus(d.cfg.Gateway.SpoolDir, sum); err != nil && scriptErr == nil {
		scriptErr = err
	}
	printDemoSummary(pr, sum)
	pr.printf("  configuration    %s\n", d.keptConfig)
	if scriptErr != nil && !errors.Is(scriptErr, context.Canceled) {
		gw.stop()
		return sum, scriptErr
	}

	if o.follow && ctx.Err() == nil {
		d.printFollow(pr)
		plc.heartbeats(ctx, 10*time.Second)
	}
	if err := gw.stop(); err != nil {
		return sum, err
	}
	return sum, nil
}

// demoMailDir makes the folder for the received mails: out, or a new
// temporary folder, which stays after the demo.
func demoMailDir(out string) (string, error) {
	dir := out
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "plcmail-demo-mail-"); err != nil {
			return "", err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

// startDemoUpstream starts the upstream: an SMTP server that takes mail
// only after STARTTLS and AUTH, as providers run it, with a throw-away CA
// so the gateway verifies it exactly as it would a provider.
func startDemoUpstream(box *demoMailbox) (*fakeupstream.Server, error) {
	return fakeupstream.Start(fakeupstream.Options{
		Security:        fakeupstream.StartTLS,
		AuthMechs:       []string{sasl.Plain},
		RequireAuth:     true,
		RequireTLS:      true,
		Username:        demoUser,
		Password:        rand.Text(),
		Domain:          "mail.plcmail.test",
		CAName:          "plcmail demo CA",
		CertHosts:       []string{"127.0.0.1", "localhost"},
		MaxMessageBytes: 10 << 20,
		Data:            box.deliver,
	})
}

// demoFiles is the demo's configuration, written to its work folder.
type demoFiles struct {
	cfgPath    string
	keptConfig string // the copy kept with the mails
	cfg        *config.Config
}

// writeDemoConfig writes the upstream's CA and password and a complete
// configuration into work, and loads it the way serve does.
func writeDemoConfig(work, mailDir string, up *fakeupstream.Server, device, modbusAddr string) (*demoFiles, error) {
	caFile := filepath.Join(work, "demo-ca.pem")
	secretFile := filepath.Join(work, "upstream.secret")
	if err := os.WriteFile(caFile, up.CAPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(secretFile, []byte(up.Password()+"\n"), 0o600); err != nil {
		return nil, err
	}
	d := &demoFiles{cfgPath: filepath.Join(work, "plcmail.toml"), keptConfig: filepath.Join(mailDir, "plcmail-demo.toml")}
	text := fmt.Sprintf(demoConfig, filepath.Join(work, "spool"), up.Port, demoUser, secretFile, caFile, demoLink, device) +
		fmt.Sprintf(demoModbusConfig, modbusAddr)
	if err := os.WriteFile(d.cfgPath, []byte(text), 0o600); err != nil {
		return nil, err
	}
	var err error
	if d.cfg, err = config.Load(d.cfgPath); err != nil {
		return nil, fmt.Errorf("demo: generated config: %w", err)
	}
	// The work directory goes away at the end; a copy of the configuration
	// stays with the mails, as an example of a complete one.
	if err := os.WriteFile(d.keptConfig, []byte(text), 0o644); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *demoFiles) printIntro(pr *demoPrinter, port int, modbusAddr string) {
	pr.printf("plcmail demo: a simulated PLC on a virtual serial link, a simulated Modbus device, the real gateway, a local mail server\n")
	pr.printf("  serial link  %s (pseudo-terminal pair made by this process; the PLC holds the other end)\n", d.cfg.Serial[0].Device)
	pr.printf("  modbus       %s at %s (Modbus TCP device in this process: tank level in holding register 0)\n", demoDevice, modbusAddr)
	pr.printf("  upstream     127.0.0.1:%d, STARTTLS (demo CA) and AUTH PLAIN, in this process\n", port)
	pr.printf("  config       %s (a copy is kept with the mails)\n", d.cfgPath)
	pr.printf("  mails        %s\n\n", filepath.Dir(d.keptConfig))
}

func (d *demoFiles) printFollow(pr *demoPrinter) {
	pr.printf("\n--follow: the gateway keeps running; the PLC sends a heartbeat every 10 s.\n")
	pr.printf("In another terminal:\n")
	pr.printf("  plcmail -c %s status\n", d.cfgPath)
	pr.printf("  printf 'Subject: hello\\n\\nfrom the demo\\n' | plcmail -c %s send ops@example.com\n", d.cfgPath)
	pr.printf("Ctrl-C stops.\n")
}

// demoGateway is the gateway running the same code as `plcmail serve`.
type demoGateway struct {
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func startDemoGateway(cfgPath string, cfg *config.Config, o demoOptions) *demoGateway {
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	if o.verbose {
		level.Set(slog.LevelInfo)
	}
	log := slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	g := &demoGateway{cancel: cancel, done: make(chan error, 1)}
	go func() { g.done <- serve(ctx, cfgPath, cfg, log, level) }()
	return g
}

// stop stops the gateway and returns serve's error; calls after the first
// return nil.
func (g *demoGateway) stop() error {
	if g.stopped {
		return nil
	}
	g.stopped = true
	g.cancel()
	select {
	case err := <-g.done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("demo: gateway did not stop within 30s")
	}
}

// waitDemoMails waits until every alarm was mailed once (the PLC's and
// extra others) and each PLC mail's outcome went back to the PLC as a
// DELIVERY frame.
func waitDemoMails(ctx context.Context, plc *demoPLC, up *fakeupstream.Server, extra int) error {
	err := waitUntil(ctx, func() bool {
		return len(up.Messages()) >= plc.events()+extra && plc.deliveries() >= plc.events()
	}, 30*time.Second)
	if err != nil {
		return fmt.Errorf("demo: waiting for %d mails and %d delivery reports: got %d mails, %d reports: %w",
			plc.events()+extra, plc.events(), len(up.Messages()), plc.deliveries(), err)
	}
	return nil
}

// readDemoStatus asks the gateway the way `plcmail status` does (also
// after Ctrl-C) and adds its counters to sum.
func readDemoStatus(spoolDir string, sum *demoSummary) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := readStatus(ctx, spoolDir)
	if err != nil {
		return fmt.Errorf("demo: plcmail status: %w", err)
	}
	for _, l := range st.Links {
		if l.Name == demoLink {
			sum.GatewayFrames, sum.GatewayAcks, sum.GatewayDuplicates, sum.GatewayMailed = l.Frames, l.Acks, l.Duplicates, l.Mailed
		}
	}
	for _, m := range st.Modbus {
		sum.ModbusPolls, sum.ModbusMailed = m.Polls, m.Mailed
	}
	sum.GatewayDelivered = st.Queue.Delivered
	return nil
}

func printDemoSummary(pr *demoPrinter, s *demoSummary) {
	pr.printf("\nsummary\n")
	pr.printf("  PLC sent         %d frames (%d hello, %d events, %d heartbeats) and %d retransmission(s)\n",
		s.Hellos+s.Events+s.Heartbeats, s.Hellos, s.Events, s.Heartbeats, s.Retransmissions)
	pr.printf("  PLC received     %d ACKs (%d queued, %d duplicate, %d lost on purpose), %d NAKs, %d delivery reports (%d accepted, %d failed)\n",
		s.AcksQueued+s.AcksDuplicate+s.AcksLost, s.AcksQueued, s.AcksDuplicate, s.AcksLost, s.Naks,
		s.DeliveryAccepted+s.DeliveryFailed, s.DeliveryAccepted, s.DeliveryFailed)
	pr.printf("  gateway          %d frames, %d ACKs, %d duplicates suppressed, %d alarm mails queued, %d delivered (from plcmail status)\n",
		s.GatewayFrames, s.GatewayAcks, s.GatewayDuplicates, s.GatewayMailed, s.GatewayDelivered)
	pr.printf("  modbus device    %d polls, %d alarm mails queued (from plcmail status)\n", s.ModbusPolls, s.ModbusMailed)
	pr.printf("  mail server      %d mails received, saved in %s\n", s.MailsReceived, s.MailDir)
}

// demoPLC plays the firmware's part (firmware-sketch/) with plcsim on the
// master side of the pty, counting and printing what happens: each HELLO
// and EVENT is retransmitted until ACKed, after 1 s, doubling, as SPEC.md
// §4 requires.
type demoPLC struct {
	sim  *plcsim.PLC
	pr   *demoPrinter
	acks chan plcsim.Received

	mu  sync.Mutex
	sum demoSummary
}

func newDemoPLC(rw io.ReadWriter, pr *demoPrinter) *demoPLC {
	sim := plcsim.New(rw, uint32(time.Now().Unix()))
	// The uptime the frames carry: as if the PLC had booted 3 s before.
	sim.Booted = sim.Booted.Add(-3 * time.Second)
	return &demoPLC{sim: sim, pr: pr, acks: make(chan plcsim.Received, 16)}
}

func (p *demoPLC) update(f func(s *demoSummary)) {
	p.mu.Lock()
	f(&p.sum)
	p.mu.Unlock()
}

func (p *demoPLC) events() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sum.Events
}

func (p *demoPLC) deliveries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sum.DeliveryAccepted + p.sum.DeliveryFailed
}

func (p *demoPLC) fill(s *demoSummary) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mailDir := s.MailDir
	*s = p.sum
	s.MailDir = mailDir
}

// waitUntil waits until cond holds, re-checking it every 100 ms: the mail
// server counts on its own, so there is nothing to wait on but time.
func waitUntil(ctx context.Context, cond func() bool, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return errors.New("timed out")
		case <-tick.C:
		}
	}
	return nil
}

// readLoop decodes what the gateway sends until the link closes: ACK and
// NAK go to whoever waits for them, DELIVERY reports are printed.
func (p *demoPLC) readLoop() {
	var bad *protocol.FrameError
	for {
		r, err := p.sim.Next(time.Time{})
		if errors.As(err, &bad) {
			p.pr.printf("PLC   bad frame from the gateway: %v\n", bad)
			continue
		}
		if err != nil {
			return
		}
		switch f := r.Frame; f.Type {
		case protocol.TypeAck, protocol.TypeNak:
			select {
			case p.acks <- r:
			default:
			}
		case protocol.TypeDelivery:
			ok := f.Status == protocol.DeliveryAccepted
			p.update(func(s *demoSummary) {
				if ok {
					s.DeliveryAccepted++
				} else {
					s.DeliveryFailed++
				}
			})
			p.pr.printf("PLC   DELIVERY report for seq %d: %s (upstream replied %d)\n", f.Seq, f.Status, f.SMTPCode)
		}
	}
}

// sendReliable sends a HELLO or EVENT until it is ACKed. With loseFirstAck
// the first ACK is ignored, as if a burst of noise had eaten it on the wire.
func (p *demoPLC) sendReliable(ctx context.Context, f *protocol.Frame, what string, loseFirstAck bool) error {
	retry := plcsim.Firmware
	retry.Lose = func(a protocol.Frame, send int, wait time.Duration) bool {
		if !loseFirstAck || send > 1 || a.Type != protocol.TypeAck {
			return false
		}
		p.update(func(s *demoSummary) { s.AcksLost++ })
		p.pr.printf("PLC   %s -> ACK lost on the wire (simulated): retransmitting the same bytes after %v\n", what, wait)
		return true
	}
	r, sends, err := p.sim.SendReliable(ctx, f, p.acks, retry)
	p.update(func(s *demoSummary) { s.Retransmissions += max(sends-1, 0) })
	if err != nil {
		if errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("demo PLC: %w", err)
	}
	a := r.Frame
	if a.Type == protocol.TypeNak {
		p.update(func(s *demoSummary) { s.Naks++ })
		return fmt.Errorf("demo PLC: %s NAKed: %v", what, a.NakReason)
	}
	dup := a.AckResult == protocol.AckDuplicate
	p.update(func(s *demoSummary) {
		if dup {
			s.AcksDuplicate++
		} else {
			s.AcksQueued++
		}
	})
	again := ""
	if sends > 1 {
		again = " (retransmitted)"
	}
	if dup {
		p.pr.printf("PLC   %s%s -> ACK duplicate: the gateway had it queued already and does not mail it again\n", what, again)
	} else {
		p.pr.printf("PLC   %s%s -> ACK queued (on the gateway's disk)\n", what, again)
	}
	return nil
}

func (p *demoPLC) heartbeat(active uint8) error {
	if err := p.sim.Send(p.sim.Heartbeat(active)); err != nil {
		return fmt.Errorf("demo PLC: %w", err)
	}
	p.update(func(s *demoSummary) { s.Heartbeats++ })
	return nil
}

// heartbeats keeps the link alive until ctx is done (--follow).
func (p *demoPLC) heartbeats(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if p.heartbeat(0) != nil {
				return
			}
		}
	}
}

// demoEvent is one step of the PLC's script.
type demoEvent struct {
	code     uint16
	event    protocol.EventKind
	severity protocol.Severity
	values   []protocol.Value
	text     string
	loseAck  bool
}

// demoScript is what the PLC reports after its HELLO: alarms raised and
// cleared, one of whose ACKs is lost.
var demoScript = []demoEvent{
	{code: 17, event: protocol.EventRaise, severity: protocol.SeverityCritical,
		values: []protocol.Value{protocol.Float32Value(62.5)}, text: "pump P1 below limit"},
	{code: 42, event: protocol.EventRaise, severity: protocol.SeverityWarning,
		values: []protocol.Value{protocol.BoolValue(true)}, text: "door 2", loseAck: true},
	{code: 17, event: protocol.EventClear, severity: protocol.SeverityCritical,
		values: []protocol.Value{protocol.Float32Value(84.25)}, text: "pressure back to normal"},
	{code: 99, event: protocol.EventRaise, severity: protocol.SeverityAlarm,
		values: []protocol.Value{protocol.Int32Value(-12), protocol.Uint32Value(3)}, text: "sensor B3 fault"},
	{code: 42, event: protocol.EventClear, severity: protocol.SeverityWarning,
		values: []protocol.Value{protocol.BoolValue(false)}, text: "door 2"},
}

// runScript is the PLC's life: boot, hello, the script's alarms with
// heartbeats in between.
func (p *demoPLC) runScript(ctx context.Context, pace time.Duration) error {
	if err := p.boot(ctx); err != nil {
		return err
	}
	active := 0
	for i, ev := range demoScript {
		if err := sleepCtx(ctx, pace); err != nil {
			return err
		}
		if i == 2 || i == len(demoScript)-1 {
			if err := p.heartbeat(uint8(active)); err != nil {
				return err
			}
			p.pr.printf("PLC   HEARTBEAT (uptime %ds, %d alarms active): not ACKed, tells the gateway the PLC is alive\n", p.sim.Uptime(), active)
		}
		if ev.event == protocol.EventRaise {
			active++
		} else {
			active--
		}
		if err := p.sendEvent(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// boot powers the PLC on once the gateway has the port open, so that the
// one retransmission the demo shows is the one it stages (a real PLC that
// boots first loses nothing either: it retransmits its HELLO), and sends
// the HELLO.
func (p *demoPLC) boot(ctx context.Context) error {
	select {
	case <-p.sim.Heard():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("demo: the gateway did not open the serial link within 30s")
	}
	// A fresh boot: a delimiter ends whatever the bootloader left on the line.
	if err := p.sim.Write([]byte{0}); err != nil {
		return err
	}
	hello := p.sim.Hello()
	p.update(func(s *demoSummary) { s.Hellos++ })
	return p.sendReliable(ctx, hello, fmt.Sprintf("HELLO seq %d (boot %d, power-on, no alarms active)", hello.Seq, hello.Boot), false)
}

func (p *demoPLC) sendEvent(ctx context.Context, ev demoEvent) error {
	f, err := p.sim.Event(ev.code, ev.event, ev.severity, ev.text, ev.values...)
	if err != nil {
		return err
	}
	vals := make([]string, len(ev.values))
	for i, v := range ev.values {
		vals[i] = v.String()
	}
	p.update(func(s *demoSummary) { s.Events++ })
	what := fmt.Sprintf("EVENT seq %d: %s alarm %d (%s, values %s, %q)", f.Seq, ev.event, ev.code, ev.severity, strings.Join(vals, " "), ev.text)
	return p.sendReliable(ctx, f, what, ev.loseAck)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// demoMailbox is where the demo's upstream puts what it accepts: each
// message is printed and stored as .eml.
type demoMailbox struct {
	dir string
	pr  *demoPrinter

	mu sync.Mutex
	n  int
}

// deliver is the upstream's DATA hook.
func (b *demoMailbox) deliver(m fakeupstream.Received) error {
	b.mu.Lock()
	b.n++
	n := b.n
	path := filepath.Join(b.dir, fmt.Sprintf("mail-%02d.eml", n))
	werr := os.WriteFile(path, m.Data, 0o644)
	b.mu.Unlock()
	if werr != nil {
		return fakeupstream.Reply(451, werr.Error())
	}
	b.pr.printf("%s", describeMail(n, m.From, m.To, tls.VersionName(m.TLSVersion), m.Data, path))
	return nil
}

// describeMail formats a received message for the terminal: envelope,
// decoded Subject and the text body.
func describeMail(n int, from string, to []string, tlsVersion string, data []byte, path string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "MAIL  #%d from %s to %s (over %s)\n", n, from, strings.Join(to, ", "), tlsVersion)
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		fmt.Fprintf(&b, "      (unparsable: %v)\n", err)
	} else {
		dec := new(mime.WordDecoder)
		subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
		if err != nil {
			subject = msg.Header.Get("Subject")
		}
		fmt.Fprintf(&b, "      Subject: %s\n", subject)
		body := textBody(msg.Header, msg.Body)
		for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
			fmt.Fprintf(&b, "      | %s\n", strings.TrimRight(line, "\r"))
		}
	}
	fmt.Fprintf(&b, "      saved as %s\n", path)
	return b.String()
}

// textBody returns the decoded text/plain part of a message.
func textBody(h interface{ Get(string) string }, body io.Reader) string {
	mediaType, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mediaType = "text/plain"
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if err != nil {
				return "(no text part)"
			}
			if t := textBody(part.Header, part); t != "(no text part)" {
				return t
			}
		}
	}
	if mediaType != "text/plain" {
		return "(no text part)"
	}
	var r io.Reader = body
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body) // skips the line breaks itself
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Sprintf("(undecodable body: %v)", err)
	}
	return string(b)
}
