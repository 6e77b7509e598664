package bridge

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/protocol"
	"go.bug.st/serial"
)

// TestPLCRestartReconciles: the PLC reboots (new boot id) while alarm 18
// cleared and alarm 19 was raised unheard. Its HELLO snapshot {17, 19}
// yields one restart notice, a clear for 18, a raise for 19, and nothing
// more for 17, which was mailed before.
func TestPLCRestartReconciles(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave, testOpts{}), dir)
	g.waitConnected()
	p := newPLC(t, m, 100)
	p.expectAck(p.hello(), protocol.AckQueued)
	p.expectAck(p.event(17, protocol.EventRaise, "a"), protocol.AckQueued)
	p.expectAck(p.event(18, protocol.EventRaise, "b"), protocol.AckQueued)
	before := len(g.waitMails(2))

	p2 := newPLC(t, m, 101)
	h := p2.hello(protocol.ActiveAlarm{Code: 17, Severity: protocol.SeverityAlarm},
		protocol.ActiveAlarm{Code: 19, Severity: protocol.SeverityCritical})
	p2.expectAck(h, protocol.AckQueued)
	p2.sendFrame(h) // retransmitted HELLO: nothing new
	p2.expectAck(h, protocol.AckDuplicate)

	var got []string
	for _, q := range spoolMessages(t, dir) {
		if strings.HasPrefix(q.Meta.Key, "line1/101/") {
			got = append(got, q.Meta.Key+" "+q.Subject)
		}
	}
	if len(spoolMessages(t, dir))-before != 3 || len(got) != 3 {
		t.Fatalf("mails after restart: %q", got)
	}
	joined := strings.Join(got, "\n")
	for _, want := range []string{"line1/101/1/restart [plcmail] PLC restarted: line1 (Press 1)",
		"line1/101/1/clear/18 [alarm] Alarm 18: clear", "line1/101/1/raise/19 [critical] Alarm 19: raise"} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in\n%s", want, joined)
		}
	}
	if st := g.b.Status()[0]; st.Boot != 101 {
		t.Errorf("boot %d", st.Boot)
	}

	// A partial snapshot (active_total > n) never implies a clear.
	p3 := newPLC(t, m, 102)
	p3.Seq++
	partial := &protocol.Frame{Type: protocol.TypeHello, Boot: 102, Seq: p3.Seq, ActiveTotal: 5, NActive: 1}
	partial.Active[0] = protocol.ActiveAlarm{Code: 17, Severity: protocol.SeverityAlarm}
	p3.sendFrame(partial)
	p3.expectAck(partial, protocol.AckQueued)
	for _, q := range spoolMessages(t, dir) {
		if strings.HasPrefix(q.Meta.Key, "line1/102/") && !strings.HasSuffix(q.Meta.Key, "/restart") {
			t.Errorf("partial snapshot produced %s %q", q.Meta.Key, q.Subject)
		}
	}
}

func TestReloadKeepsLinks(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave, testOpts{}), dir)
	g.waitConnected()
	p := newPLC(t, m, 1)
	p.expectAck(p.hello(), protocol.AckQueued)

	bad := strings.Replace(configText(slave, testOpts{}), `subject = "{{.Name}} {{.Event}}`, `subject = "{{.Nope}} {{.Event}}`, 1)
	badCfg, err := config.Parse("new.toml", []byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = g.reload(badCfg)
	if es := config.AsErrors(err); len(es) != 1 || es[0].Key != "alarm[0].subject" || es[0].Line == 0 {
		t.Fatalf("invalid reload: %v", err)
	}
	good := strings.Replace(configText(slave, testOpts{}), `subject = "{{.Name}} {{.Event}}`, `subject = "RELOADED {{.Name}} {{.Event}}`, 1)
	good = strings.Replace(good, `to = ["ops@example.com"]`, `to = ["night-shift@example.com"]`, 1)
	goodCfg, err := config.Parse("new.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	ev1 := p.event(17, protocol.EventRaise, "old")
	p.expectAck(ev1, protocol.AckQueued)
	g.waitMails(1) // rendered when queued, just after the ACK
	if err := g.reload(goodCfg); err != nil {
		t.Fatal(err)
	}
	ev2 := p.event(17, protocol.EventClear, "new")
	p.expectAck(ev2, protocol.AckQueued)
	for _, q := range g.waitMails(2) {
		switch q.Meta.Key {
		case "line1/1/2":
			if !strings.HasPrefix(q.Subject, "Pressure low") || q.Meta.Envelope.To[0] != "ops@example.com" {
				t.Errorf("before reload: %q to %v", q.Subject, q.Meta.Envelope.To)
			}
		case "line1/1/3":
			if !strings.HasPrefix(q.Subject, "RELOADED Pressure low") || q.Meta.Envelope.To[0] != "night-shift@example.com" {
				t.Errorf("after reload: %q to %v", q.Subject, q.Meta.Envelope.To)
			}
		}
	}
	if st := g.b.Status()[0]; st.Reconnects != 0 || !st.Connected {
		t.Errorf("link dropped by reload: %+v", st)
	}

	// New port settings: the link reopens its port with them.
	baud := strings.Replace(good, "reset_grace", "baud = 57600\nreset_grace", 1)
	baudCfg, err := config.Parse("new.toml", []byte(baud))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.reload(baudCfg); err != nil {
		t.Fatal(err)
	}
	g.waitFor("reopen", func() bool { st := g.b.Status()[0]; return st.Reconnects == 1 && st.Connected })
	ev3 := p.event(17, protocol.EventRaise, "after reopen")
	p.expectAck(ev3, protocol.AckQueued)

	// A reload without the link stops it; one with it again starts it, and
	// its journal still knows what was ACKed.
	noLink := baud[:strings.Index(baud, "[[serial]]")] + baud[strings.Index(baud, "[[alarm]]"):]
	noLinkCfg, err := config.Parse("new.toml", []byte(noLink))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.reload(noLinkCfg); err != nil {
		t.Fatal(err)
	}
	if st := g.b.Status(); len(st) != 0 {
		t.Fatalf("removed link still listed: %+v", st)
	}
	drain(m)
	p.discard()
	if err := g.reload(baudCfg); err != nil {
		t.Fatal(err)
	}
	g.waitConnected()
	p.sendFrame(ev3) // retransmission of an event ACKed before the removal
	p.expectAck(ev3, protocol.AckDuplicate)
	ev4 := p.event(17, protocol.EventClear, "back again")
	p.expectAck(ev4, protocol.AckQueued)
	g.waitMails(4)
}

// TestUnplugReplug uses socat's pty pair like a USB-serial adapter: killing
// socat removes the device under the open port (like pulling the cable),
// starting it again brings it back at the same path. The link must log,
// reconnect and carry on without a restart of the bridge.
func TestUnplugReplug(t *testing.T) {
	testenv.NeedTool(t, "socat", "socat")
	tmp := t.TempDir()
	gwPath, plcPath := filepath.Join(tmp, "ttyGW"), filepath.Join(tmp, "ttyPLC")
	startSocat := func() *exec.Cmd {
		cmd := exec.Command("socat", "pty,raw,echo=0,link="+gwPath, "pty,raw,echo=0,link="+plcPath)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // never outlive the test (an orphan on a reused pty steals frames)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, e1 := os.Stat(gwPath)
			_, e2 := os.Stat(plcPath)
			if e1 == nil && e2 == nil {
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatal("socat did not create its ptys")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	openPLC := func() (*plc, serial.Port) {
		port, err := serial.Open(plcPath, &serial.Mode{BaudRate: 115200})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { port.Close() })
		return newPLC(t, deadlinePort{port}, 9), port
	}

	sc := startSocat()
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, gwPath, testOpts{}), dir)
	g.waitConnected()
	p, port := openPLC()
	p.expectAck(p.hello(), protocol.AckQueued)
	p.expectAck(p.event(17, protocol.EventRaise, "before unplug"), protocol.AckQueued)

	// Unplug.
	syscall.Kill(-sc.Process.Pid, syscall.SIGKILL)
	sc.Wait()
	port.Close()
	// udev removes the /dev/serial/by-id link of an unplugged adapter; socat
	// killed with SIGKILL leaves its links dangling, and the pty number may
	// soon belong to someone else's test.
	os.Remove(gwPath)
	os.Remove(plcPath)
	g.waitFor("link down", func() bool { return !g.b.Status()[0].Connected })
	time.Sleep(600 * time.Millisecond) // a few failed reopen attempts
	if !strings.Contains(g.logs.String(), "port lost, reconnecting") {
		t.Errorf("unplug not logged")
	}

	// Replug.
	startSocat()
	g.waitConnected()
	p2, _ := openPLC()
	p2.Seq = p.Seq
	p2.expectAck(p2.event(17, protocol.EventClear, "after replug"), protocol.AckQueued)
	msgs := g.waitMails(2)
	if len(msgs) != 2 {
		t.Fatalf("%d mails, want 2", len(msgs))
	}
	if st := g.b.Status()[0]; st.Reconnects != 1 {
		t.Errorf("reconnects = %d, want 1", st.Reconnects)
	}
}

// deadlinePort gives a serial.Port the read deadline the test PLC uses.
type deadlinePort struct{ serial.Port }

func (d deadlinePort) SetReadDeadline(t time.Time) error {
	return d.Port.SetReadTimeout(max(time.Until(t), time.Millisecond))
}

func TestReloadAddsLink(t *testing.T) {
	m1, slave1 := openPty(t)
	m2, slave2 := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave1, testOpts{}), dir)
	g.waitConnected()
	two := configText(slave1, testOpts{}) + `
[[serial]]
name = "line2"
device = "` + slave2 + `"
reset_grace = "1ms"
`
	cfg2, err := config.Parse("two.toml", []byte(two))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.reload(cfg2); err != nil {
		t.Fatal(err)
	}
	g.waitFor("second link", func() bool { st := g.b.Status(); return len(st) == 2 && st[1].Connected })
	p2 := newPLC(t, m2, 50)
	p2.expectAck(p2.hello(), protocol.AckQueued)
	p2.expectAck(p2.event(17, protocol.EventRaise, "on line 2"), protocol.AckQueued)
	p1 := newPLC(t, m1, 60)
	p1.expectAck(p1.hello(), protocol.AckQueued)
	p1.expectAck(p1.event(17, protocol.EventRaise, "on line 1"), protocol.AckQueued)
	keys := map[string]bool{}
	for _, q := range g.waitMails(2) {
		keys[q.Meta.Key] = true
	}
	if !keys["line2/50/2"] || !keys["line1/60/2"] {
		t.Errorf("mails %v", keys)
	}
	if st := g.b.Status(); st[0].Reconnects != 0 || st[0].Name != "line1" || st[1].Name != "line2" {
		t.Errorf("status %+v", st)
	}
}
