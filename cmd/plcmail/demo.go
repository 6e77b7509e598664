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
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/throwawayca"
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
	out := fs.String("out", "", "folder for the received mails as .eml files (default: a new temporary folder)")
	follow := fs.Bool("follow", false, "keep the gateway and mail server running after the script, until Ctrl-C")
	verbose := fs.Bool("v", false, "show the gateway's log")
	pace := fs.Duration("pace", 1500*time.Millisecond, "pause between the PLC's events")
	if err := fs.Parse(args); err != nil {
		return usageError("demo: %v", err)
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

func runDemo(ctx context.Context, o demoOptions) (*demoSummary, error) {
	pr := &demoPrinter{w: o.stdout}
	work, err := os.MkdirTemp("", "plcmail-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	mailDir := o.out
	if mailDir == "" {
		if mailDir, err = os.MkdirTemp("", "plcmail-demo-mail-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(mailDir, 0o755); err != nil {
		return nil, err
	}
	if mailDir, err = filepath.Abs(mailDir); err != nil {
		return nil, err
	}

	// The upstream: an SMTP server with STARTTLS and AUTH, as providers run.
	password := rand.Text()
	caPEM, serverTLS, err := demoTLS()
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(work, "demo-ca.pem")
	secretFile := filepath.Join(work, "upstream.secret")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(secretFile, []byte(password+"\n"), 0o600); err != nil {
		return nil, err
	}
	sink, err := startDemoSink(serverTLS, password, mailDir, pr)
	if err != nil {
		return nil, err
	}
	defer sink.close()

	// The serial link.
	master, slave, slavePath, err := openPTY()
	if err != nil {
		return nil, err
	}
	defer slave.Close()
	defer master.Close()

	cfgPath := filepath.Join(work, "plcmail.toml")
	text := fmt.Sprintf(demoConfig, filepath.Join(work, "spool"), sink.port, demoUser, secretFile, caFile, demoLink, slavePath)
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("demo: generated config: %w", err)
	}

	pr.printf("plcmail demo: a simulated PLC on a virtual serial link, the real gateway, a local mail server\n")
	pr.printf("  serial link  %s (pseudo-terminal pair made by this process; the PLC holds the other end)\n", slavePath)
	pr.printf("  upstream     127.0.0.1:%d, STARTTLS (demo CA) and AUTH PLAIN, in this process\n", sink.port)
	// The work directory goes away at the end; a copy of the configuration
	// stays with the mails, as an example of a complete one.
	keptConfig := filepath.Join(mailDir, "plcmail-demo.toml")
	if err := os.WriteFile(keptConfig, []byte(text), 0o644); err != nil {
		return nil, err
	}
	pr.printf("  config       %s (a copy is kept with the mails)\n", cfgPath)
	pr.printf("  mails        %s\n\n", mailDir)

	// The gateway: the same code as `plcmail serve`.
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	if o.verbose {
		level.Set(slog.LevelInfo)
	}
	log := slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: level}))
	gwCtx, stopGateway := context.WithCancel(context.Background())
	defer stopGateway()
	gwDone := make(chan error, 1)
	go func() { gwDone <- serve(gwCtx, cfgPath, cfg, log, level) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopGateway()
		select {
		case err := <-gwDone:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("demo: gateway did not stop within 30s")
		}
	}
	defer stop()

	plc := newDemoPLC(master, pr)
	go plc.readLoop()
	sum := &demoSummary{MailDir: mailDir}
	scriptErr := plc.runScript(ctx, o.pace)
	if scriptErr == nil {
		// Every alarm is mailed once, and each mail's outcome goes back to
		// the PLC as a DELIVERY frame.
		scriptErr = waitUntil(ctx, func() bool {
			return sink.count() >= plc.events() && plc.deliveries() >= plc.events()
		}, 30*time.Second)
		if scriptErr != nil {
			scriptErr = fmt.Errorf("demo: waiting for %d mails and delivery reports: got %d mails, %d reports: %w",
				plc.events(), sink.count(), plc.deliveries(), scriptErr)
		}
	}
	// Let a duplicate mail, if the gateway wrongly sent one, arrive and be counted.
	time.Sleep(200 * time.Millisecond)
	plc.fill(sum)
	sum.MailsReceived = sink.count()
	// Ask the gateway the way `plcmail status` does (also after Ctrl-C).
	stCtx, stCancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := readStatus(stCtx, cfg.Gateway.SpoolDir)
	stCancel()
	if err == nil {
		for _, l := range st.Links {
			if l.Name == demoLink {
				sum.GatewayFrames, sum.GatewayAcks, sum.GatewayDuplicates, sum.GatewayMailed = l.Frames, l.Acks, l.Duplicates, l.Mailed
			}
		}
		sum.GatewayDelivered = st.Queue.Delivered
	} else if scriptErr == nil {
		scriptErr = fmt.Errorf("demo: plcmail status: %w", err)
	}
	printDemoSummary(pr, sum)
	pr.printf("  configuration    %s\n", keptConfig)
	if scriptErr != nil && !errors.Is(scriptErr, context.Canceled) {
		stop()
		return sum, scriptErr
	}

	if o.follow && ctx.Err() == nil {
		pr.printf("\n--follow: the gateway keeps running; the PLC sends a heartbeat every 10 s.\n")
		pr.printf("In another terminal:\n")
		pr.printf("  plcmail -c %s status\n", cfgPath)
		pr.printf("  printf 'Subject: hello\\n\\nfrom the demo\\n' | plcmail -c %s send ops@example.com\n", cfgPath)
		pr.printf("Ctrl-C stops.\n")
		plc.heartbeats(ctx, 10*time.Second)
	}
	if err := stop(); err != nil {
		return sum, err
	}
	return sum, nil
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
	pr.printf("  mail server      %d mails received, saved in %s\n", s.MailsReceived, s.MailDir)
}

// demoPLC plays the firmware's part (firmware-sketch/): it sends frames on
// the master side of the pty and waits for each HELLO and EVENT to be
// ACKed, retransmitting the same bytes after 1 s, doubling, as SPEC.md §4
// requires.
type demoPLC struct {
	w     io.ReadWriter
	pr    *demoPrinter
	boot  uint32
	seq   uint32
	start time.Time
	acks  chan protocol.Frame
	// heard is closed when the first bytes from the gateway arrive: it
	// sends a delimiter when it opens the port.
	heard chan struct{}

	mu  sync.Mutex
	sum demoSummary
}

func newDemoPLC(w io.ReadWriter, pr *demoPrinter) *demoPLC {
	return &demoPLC{w: w, pr: pr, boot: uint32(time.Now().Unix()), start: time.Now(),
		acks: make(chan protocol.Frame, 16), heard: make(chan struct{})}
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

// readLoop decodes what the gateway sends: ACK and NAK go to whoever waits
// for them, DELIVERY reports are printed.
func (p *demoPLC) readLoop() {
	dec := protocol.NewDecoder()
	buf := make([]byte, 256)
	heard := false
	for {
		n, err := p.w.Read(buf)
		if n > 0 && !heard {
			heard = true
			close(p.heard)
		}
		dec.Feed(buf[:n], func(f *protocol.Frame, err error) {
			if err != nil {
				p.pr.printf("PLC   bad frame from the gateway: %v\n", err)
				return
			}
			switch f.Type {
			case protocol.TypeAck, protocol.TypeNak:
				select {
				case p.acks <- *f:
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
		})
		if err != nil {
			return
		}
	}
}

func (p *demoPLC) uptime() uint32 { return uint32(time.Since(p.start).Seconds()) + 3 }

// sendReliable sends a HELLO or EVENT until it is ACKed. With loseFirstAck
// the first ACK is ignored, as if a burst of noise had eaten it on the wire.
func (p *demoPLC) sendReliable(ctx context.Context, f *protocol.Frame, what string, loseFirstAck bool) error {
	wire, err := protocol.AppendEncoded(nil, f)
	if err != nil {
		return err
	}
	timeout := time.Second
	for attempt := 0; ; attempt++ {
		if _, err := p.w.Write(wire); err != nil {
			return fmt.Errorf("demo PLC: write: %w", err)
		}
		if attempt > 0 {
			p.update(func(s *demoSummary) { s.Retransmissions++ })
		}
		timer := time.NewTimer(timeout)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
				break wait
			case a := <-p.acks:
				if a.Boot != f.Boot || a.Seq != f.Seq {
					continue // a late answer to an earlier frame
				}
				if a.Type == protocol.TypeNak {
					timer.Stop()
					p.update(func(s *demoSummary) { s.Naks++ })
					return fmt.Errorf("demo PLC: %s NAKed: %v", what, a.NakReason)
				}
				if loseFirstAck && attempt == 0 {
					p.update(func(s *demoSummary) { s.AcksLost++ })
					p.pr.printf("PLC   %s -> ACK lost on the wire (simulated): retransmitting the same bytes after %v\n", what, timeout)
					continue
				}
				timer.Stop()
				dup := a.AckResult == protocol.AckDuplicate
				p.update(func(s *demoSummary) {
					if dup {
						s.AcksDuplicate++
					} else {
						s.AcksQueued++
					}
				})
				again := ""
				if attempt > 0 {
					again = " (retransmitted)"
				}
				if dup {
					p.pr.printf("PLC   %s%s -> ACK duplicate: the gateway had it queued already and does not mail it again\n", what, again)
				} else {
					p.pr.printf("PLC   %s%s -> ACK queued (on the gateway's disk)\n", what, again)
				}
				return nil
			}
		}
		timeout = min(2*timeout, 30*time.Second)
	}
}

func (p *demoPLC) heartbeat(active uint8) error {
	f := protocol.Frame{Version: protocol.Version, Type: protocol.TypeHeartbeat, Boot: p.boot, Uptime: p.uptime(), ActiveTotal: active}
	if err := protocol.WriteFrame(p.w, &f); err != nil {
		return fmt.Errorf("demo PLC: write: %w", err)
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

// runScript is the PLC's life: boot, hello, alarms raised and cleared with
// heartbeats in between, one ACK lost.
func (p *demoPLC) runScript(ctx context.Context, pace time.Duration) error {
	// Power the PLC on once the gateway has the port open, so that the one
	// retransmission the demo shows is the one it stages. (A real PLC that
	// boots first loses nothing either: it retransmits its HELLO.)
	select {
	case <-p.heard:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("demo: the gateway did not open the serial link within 30s")
	}
	// A fresh boot: a delimiter ends whatever the bootloader left on the line.
	if _, err := p.w.Write([]byte{0}); err != nil {
		return err
	}
	p.seq++
	hello := protocol.Frame{Version: protocol.Version, Type: protocol.TypeHello, Boot: p.boot, Seq: p.seq,
		Uptime: p.uptime(), ResetCause: 1}
	p.update(func(s *demoSummary) { s.Hellos++ })
	if err := p.sendReliable(ctx, &hello, fmt.Sprintf("HELLO seq %d (boot %d, power-on, no alarms active)", p.seq, p.boot), false); err != nil {
		return err
	}
	script := []demoEvent{
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
	active := 0
	for i, ev := range script {
		if err := sleepCtx(ctx, pace); err != nil {
			return err
		}
		if i == 2 || i == len(script)-1 {
			if err := p.heartbeat(uint8(active)); err != nil {
				return err
			}
			p.pr.printf("PLC   HEARTBEAT (uptime %ds, %d alarms active): not ACKed, tells the gateway the PLC is alive\n", p.uptime(), active)
		}
		p.seq++
		f := protocol.Frame{Version: protocol.Version, Type: protocol.TypeEvent, Boot: p.boot, Seq: p.seq,
			Uptime: p.uptime(), Code: ev.code, Event: ev.event, Severity: ev.severity}
		var vals []string
		for _, v := range ev.values {
			if err := f.AddValue(v); err != nil {
				return err
			}
			vals = append(vals, v.String())
		}
		if err := f.SetText(ev.text); err != nil {
			return err
		}
		if ev.event == protocol.EventRaise {
			active++
		} else {
			active--
		}
		p.update(func(s *demoSummary) { s.Events++ })
		what := fmt.Sprintf("EVENT seq %d: %s alarm %d (%s, values %s, %q)", p.seq, ev.event, ev.code, ev.severity, strings.Join(vals, " "), ev.text)
		if err := p.sendReliable(ctx, &f, what, ev.loseAck); err != nil {
			return err
		}
	}
	return nil
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

// demoTLS makes a throw-away CA and a certificate for 127.0.0.1 signed by
// it, so the gateway verifies the upstream exactly as it would a provider.
func demoTLS() (caPEM []byte, serverConf *tls.Config, err error) {
	ca, err := throwawayca.New("plcmail demo CA")
	if err != nil {
		return nil, nil, err
	}
	cert, err := ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		return nil, nil, err
	}
	return ca.PEM(), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// demoSink is the demo's upstream: a go-smtp server that takes mail only
// after STARTTLS and AUTH, prints each message and stores it as .eml.
type demoSink struct {
	srv  *smtp.Server
	port int
	dir  string
	pr   *demoPrinter
	pass string

	mu sync.Mutex
	n  int
}

func startDemoSink(tlsConf *tls.Config, password, dir string, pr *demoPrinter) (*demoSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &demoSink{port: l.Addr().(*net.TCPAddr).Port, dir: dir, pr: pr, pass: password}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &demoSession{sink: s, conn: c}, nil
	}))
	s.srv.Domain = "mail.plcmail.test"
	s.srv.TLSConfig = tlsConf
	s.srv.MaxMessageBytes = 10 << 20
	s.srv.ReadTimeout, s.srv.WriteTimeout = 30*time.Second, 30*time.Second
	go s.srv.Serve(l)
	return s, nil
}

func (s *demoSink) close() { s.srv.Close() }

func (s *demoSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

type demoSession struct {
	sink   *demoSink
	conn   *smtp.Conn
	authed bool
	from   string
	to     []string
}

func (d *demoSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (d *demoSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != demoUser || password != d.sink.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		d.authed = true
		return nil
	}), nil
}

func (d *demoSession) Mail(from string, _ *smtp.MailOptions) error {
	if _, tlsOn := d.conn.TLSConnectionState(); !tlsOn || !d.authed {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "STARTTLS and AUTH first"}
	}
	d.from = from
	return nil
}

func (d *demoSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	d.to = append(d.to, to)
	return nil
}

func (d *demoSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := d.sink
	s.mu.Lock()
	s.n++
	n := s.n
	path := filepath.Join(s.dir, fmt.Sprintf("mail-%02d.eml", n))
	werr := os.WriteFile(path, data, 0o644)
	s.mu.Unlock()
	if werr != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: werr.Error()}
	}
	state, _ := d.conn.TLSConnectionState()
	s.pr.printf("%s", describeMail(n, d.from, d.to, tls.VersionName(state.Version), data, path))
	return nil
}

func (d *demoSession) Reset()        { d.from, d.to = "", nil }
func (d *demoSession) Logout() error { return nil }

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
