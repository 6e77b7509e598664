package modbus

import (
	"strings"
	"testing"
	"time"
)

// TestRestartNoReraise: an alarm active when the gateway stops is not mailed
// again by the next start while its condition holds; one whose condition
// went away while the gateway was down is cleared, with a note.
func TestRestartNoReraise(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	g := newGateway(t, s, tcpDevice(port, levelTag()))
	s.do("hr 0 960")
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1")

	g.stop()
	g.start()
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1")

	g.stop()
	s.do("hr 0 920") // HH cleared while the gateway was down
	g.start()
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1", "modbus/dev/level/HH/2")
	if body := g.mail("modbus/dev/level/HH/2"); !strings.Contains(body, "after the restart") {
		t.Errorf("clear after a restart without the note:\n%s", body)
	}
}

// TestCrashBeforeStateWrite: a crash after the mail was queued but before
// the state was written repeats the transition at the next start, under the
// same spool key, so the mail is not doubled.
func TestCrashBeforeStateWrite(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	g := newGateway(t, s, tcpDevice(port, levelTag()))
	g.sync()
	// The file may be from before the rule's first evaluation: the
	// marker's mail is queued before its state is written.
	before, err := loadState(g.opts.StateDir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if before.Rules["level/H"] == nil {
		before.Rules["level/H"] = &ruleState{}
	}
	s.do("hr 0 910")
	g.sync()
	g.wantKeys("modbus/dev/level/H/1")

	g.stop()
	// The write that never happened: the rule's state from before the
	// raise (the marker's own state stays, it drives the test).
	after, err := loadState(g.opts.StateDir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if !after.Rules["level/H"].Active || before.Rules["level/H"].Active {
		t.Fatalf("state before %+v, after %+v", before.Rules["level/H"], after.Rules["level/H"])
	}
	after.Rules["level/H"] = before.Rules["level/H"]
	if err := after.save(g.opts.StateDir, "dev"); err != nil {
		t.Fatal(err)
	}
	g.start()
	g.sync()
	g.wantKeys("modbus/dev/level/H/1")
	s.do("hr 0 0")
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/H/2")
}

// TestTCPOfflineOnline: a device that stops answering is reported offline
// once, back online once, also across a restart while it is offline; its
// alarms keep their state meanwhile.
func TestTCPOfflineOnline(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	g := newGateway(t, s, tcpDevice(port, levelTag()))
	s.do("hr 0 910")
	g.sync()
	s.do("mute")
	g.waitKey("modbus/dev/offline/1")
	body := g.mail("modbus/dev/offline/1")
	if !strings.Contains(body, "Modbus device offline: dev") || !strings.Contains(body, "timed out") {
		t.Errorf("offline notice:\n%s", body)
	}
	g.stop()
	g.start()      // still offline: no second notice
	s.do("hr 0 0") // H clears, noticed when the device answers again
	s.do("unmute")
	g.waitKey("modbus/dev/online/1")
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/offline/1", "modbus/dev/online/1", "modbus/dev/level/H/2")

	s.do("mute")
	g.waitKey("modbus/dev/offline/2")
	s.do("unmute")
	g.waitKey("modbus/dev/online/2")
	// The notices are mails the user receives: plcmail status counts them
	// in the device's mails (since this start: online/1, offline/2 and
	// online/2, and the clear of H).
	deadline := time.Now().Add(10 * time.Second)
	for st := g.p.Status()[0]; st.Notices < 3; st = g.p.Status()[0] {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v: want 3 notices counted", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := g.p.Status()[0]; st.Mails != st.Mailed+st.Digests+st.Notices || st.Mails < 4 {
		t.Errorf("status: %d mails, want every mail the device queued (%d alarm mails, %d digests, %d notices)", st.Mails, st.Mailed, st.Digests, st.Notices)
	}
}
