package main

import (
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/plcmail/plcmail/mailer/mailertest"
	"github.com/plcmail/plcmail/protocol"
)

// needTool skips (or, in CI, fails) when an external program is missing.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeWholeGateway wires everything `plcmail serve` runs: a PLC on a
// pty pair (socat) sends HELLO and an EVENT, the LAN SMTP listener gets a
// mail from a real SMTP client, and both reach the TLS upstream; the PLC is
// ACKed after the spool has the mail and told about the delivery with a
// DELIVERY frame routed from the queue through the bridge.
func TestServeWholeGateway(t *testing.T) {
	needTool(t, "socat", "socat")
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	tmp := t.TempDir()
	gwPath, plcPath := filepath.Join(tmp, "ttyGW"), filepath.Join(tmp, "ttyPLC")
	socat := exec.Command("socat", "pty,raw,echo=0,link="+gwPath, "pty,raw,echo=0,link="+plcPath)
	socat.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := socat.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-socat.Process.Pid, syscall.SIGKILL); socat.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(plcPath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socat did not create its ptys")
		}
	}

	listen := freeAddr(t)
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	c.Extra = fmt.Sprintf(`
[[serial]]
name = "press-1"
device = %q
label = "Press 1"
reset_grace = "0s"

[[alarm]]
code = 17
name = "Hydraulic pressure low"
subject = "[{{.Severity}}] {{.Label}}: {{.Name}} ({{.Event}})"
body = "values: {{range .Values}}{{.}} {{end}}"
to = ["maintenance@example.com"]

[smtp]
listen = [%q]
allowed_networks = ["127.0.0.0/8"]
`, gwPath, listen)
	path := c.write(t)
	srv := startServe(t, path)

	port, err := serial.Open(plcPath, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	port.SetReadTimeout(100 * time.Millisecond)
	frames := make(chan protocol.Frame, 16)
	go func() {
		dec := protocol.NewDecoder()
		buf := make([]byte, 256)
		for {
			n, err := port.Read(buf)
			if err != nil {
				close(frames)
				return
			}
			dec.Feed(buf[:n], func(f *protocol.Frame, err error) {
				if err == nil {
					frames <- *f
				}
			})
		}
	}()
	expect := func(typ protocol.Type, seq uint32) protocol.Frame {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case f, ok := <-frames:
				if !ok {
					t.Fatalf("port closed waiting for %v seq %d", typ, seq)
				}
				if f.Type == typ && f.Seq == seq {
					return f
				}
			case <-timeout:
				logs := srv.logs()
				t.Fatalf("no %v for seq %d\nserve log:\n%s", typ, seq, logs)
			}
		}
	}
	send := func(f *protocol.Frame) {
		t.Helper()
		f.Version, f.Boot = protocol.Version, 7
		b, err := protocol.AppendEncoded(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := port.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// The bridge may still be opening its end; HELLO is repeated until ACKed,
	// as the firmware does.
	for i := 0; ; i++ {
		send(&protocol.Frame{Type: protocol.TypeHello, Seq: 1, Uptime: 1, ResetCause: 1})
		select {
		case f := <-frames:
			if f.Type == protocol.TypeAck && f.Seq == 1 {
				goto helloAcked
			}
		case <-time.After(500 * time.Millisecond):
		}
		if i == 20 {
			logs := srv.logs()
			t.Fatalf("HELLO never ACKed\n%s", logs)
		}
	}
helloAcked:
	ev := &protocol.Frame{Type: protocol.TypeEvent, Seq: 2, Uptime: 100, Code: 17, Event: protocol.EventRaise,
		Severity: protocol.SeverityCritical, NValues: 1}
	ev.Values[0] = protocol.Float32Value(61.5)
	send(ev)
	if ack := expect(protocol.TypeAck, 2); ack.AckResult != protocol.AckQueued {
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
	if d := expect(protocol.TypeDelivery, 2); d.Status != protocol.DeliveryAccepted || d.SMTPCode != 250 {
		t.Errorf("DELIVERY frame: status %v code %d", d.Status, d.SMTPCode)
	}
	if err, logs := srv.stop(); err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}
