package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/plcsim"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/protocol"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// plcLink is the PLC's end of a socat pty pair: the test writes frames as
// the firmware would (plcsim, boot 7) and reads the gateway's answers.
type plcLink struct {
	t      *testing.T
	sim    *plcsim.PLC
	frames chan plcsim.Received
	logs   func() string // the gateway's log, for failure messages
}

// newPTYPair returns the gateway's end and the other end of a socat pty pair.
func newPTYPair(t *testing.T) (gwPath, plcPath string) {
	return testenv.SocatPTYPair(t)
}

// openPLC opens the PLC's end with the real serial library and starts
// decoding what the gateway sends.
func openPLC(t *testing.T, plcPath string, logs func() string) *plcLink {
	port, err := serial.Open(plcPath, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { port.Close() })
	port.SetReadTimeout(100 * time.Millisecond)
	p := &plcLink{t: t, sim: plcsim.New(port, 7), frames: make(chan plcsim.Received, 64), logs: logs}
	go func() {
		var bad *protocol.FrameError
		for {
			r, err := p.sim.Next(time.Time{})
			if errors.As(err, &bad) {
				continue
			}
			if err != nil {
				close(p.frames)
				return
			}
			p.frames <- r
		}
	}()
	return p
}

// send writes one frame from boot 7.
func (p *plcLink) send(f *protocol.Frame) {
	p.t.Helper()
	f.Boot = p.sim.Boot
	if err := p.sim.Send(f); err != nil {
		p.t.Fatal(err)
	}
}

// expect waits for a frame of type typ answering seq, skipping others.
func (p *plcLink) expect(typ protocol.Type, seq uint32) protocol.Frame {
	p.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r, ok := <-p.frames:
			if !ok {
				p.t.Fatalf("port closed waiting for %v seq %d", typ, seq)
			}
			if f := r.Frame; f.Type == typ && f.Seq == seq {
				return f
			}
		case <-timeout:
			p.t.Fatalf("no %v for seq %d\nserve log:\n%s", typ, seq, p.logs())
		}
	}
}

// hello sends HELLO seq 1 until it is ACKed, as the firmware does: the
// bridge may still be opening its end.
func (p *plcLink) hello() {
	p.t.Helper()
	f := p.sim.Hello()
	f.Uptime = 1
	a, _, err := p.sim.SendReliable(context.Background(), f, p.frames, plcsim.Retry{Wait: 500 * time.Millisecond, Sends: 21})
	if err != nil || a.Frame.Type != protocol.TypeAck {
		p.t.Fatalf("HELLO never ACKed: %v %v\n%s", err, a.Frame.Type, p.logs())
	}
}

// TestServeWholeGateway wires everything `plcmail serve` runs: a PLC on a
// pty pair (socat) sends HELLO and an EVENT, the LAN SMTP listener gets a
// mail from a real SMTP client, and both reach the TLS upstream; the PLC is
// ACKed after the spool has the mail and told about the delivery with a
// DELIVERY frame routed from the queue through the bridge.
func TestServeWholeGateway(t *testing.T) {
	gwPath, plcPath := newPTYPair(t)
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	listen := freeAddr(t)
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	c.Extra = gatewayExtra(gwPath, listen)
	srv := startServe(t, c.write(t))
	plc := openPLC(t, plcPath, srv.logs)
	plc.hello()

	ev := &protocol.Frame{Type: protocol.TypeEvent, Seq: 2, Uptime: 100, Code: 17, Event: protocol.EventRaise,
		Severity: protocol.SeverityCritical, NValues: 1}
	ev.Values[0] = protocol.Float32Value(61.5)
	plc.send(ev)
	if ack := plc.expect(protocol.TypeAck, 2); ack.AckResult != protocol.AckQueued {
		t.Errorf("EVENT ack result %v", ack.AckResult)
	}

	// A LAN device speaks plain SMTP to the listener.
	if err := smtp.SendMail(listen, nil, "board@lan.test", []string{"ops@example.com"},
		[]byte("Subject: from the LAN\r\n\r\nboard says hi\r\n")); err != nil {
		t.Fatalf("SMTP to the listener: %v", err)
	}

	var alarm, lan *mailertest.Received
	for _, m := range u.Wait(t, 2, 20*time.Second) {
		switch {
		case strings.Contains(string(m.Data), "Hydraulic pressure low"):
			alarm = &m
		case strings.Contains(string(m.Data), "Subject: from the LAN"):
			lan = &m
		}
	}
	if alarm == nil || alarm.To[0] != "maintenance@example.com" || !strings.Contains(string(alarm.Data), "values: 61.5") {
		t.Errorf("alarm mail: %+v", alarm)
	}
	if lan == nil || lan.From != "board@lan.test" || lan.To[0] != "ops@example.com" {
		t.Errorf("LAN mail: %+v", lan)
	}
	if d := plc.expect(protocol.TypeDelivery, 2); d.Status != protocol.DeliveryAccepted || d.SMTPCode != 250 {
		t.Errorf("DELIVERY frame: status %v code %d", d.Status, d.SMTPCode)
	}
	if logs, err := srv.stop(); err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}

// gatewayExtra is the [[serial]], [[alarm]] and [smtp] part of the config
// for the whole-gateway tests.
func gatewayExtra(gwPath, listen string) string {
	return fmt.Sprintf(`
[[serial]]
name = "press-1"
device = %q
label = "Press 1"
reset_grace = "0s"

[[alarm]]
code = 17
name = "Hydraulic pressure low"
subject = "[{{.Severity}}] {{.Label}}: {{.Name}} ({{.Event}}) #{{.Seq}}"
body = "values: {{range .Values}}{{.}} {{end}}"
to = ["maintenance@example.com"]

[flood]
holdoff = "0s"
max_mails_per_minute = 1000

[smtp]
listen = [%q]
allowed_networks = ["127.0.0.0/8"]
`, gwPath, listen)
}
