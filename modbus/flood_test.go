package modbus

import (
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/config"
)

// floodTemplates are templates whose code 7 has a one hour hold-off; the
// marker (code -1, the default) has none, so that sync keeps working.
func floodTemplates(t *testing.T) *alarmmail.Templates {
	cfg, err := config.Parse("test.toml", []byte(testConfig+`
[flood]
holdoff = "0s"
[[alarm]]
code = 7
name = "Level high"
holdoff = "1h"
to = ["ops@example.com"]
`))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := alarmmail.CompileTemplates(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func floodTag() Tag {
	return Tag{Name: "level", Table: Holding, Address: 0, Type: "int16", Scale: 0.1, Unit: "%",
		Rules: []Rule{{ID: "H", Limit: "H", Setpoint: 90, Deadband: 2, Severity: "warning", Code: 7}}}
}

// flap raises and clears the H alarm of floodTag once.
func flap(g *gateway) {
	g.slave.do("hr 0 950")
	g.sync()
	g.slave.do("hr 0 100")
	g.sync()
}

// TestFloodHoldoffDigest: a flapping Modbus alarm is mailed once on its
// own; its repeats within the hold-off go into one digest, which lists
// every one of them.
func TestFloodHoldoffDigest(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	g := newGateway(t, s, tcpDevice(port, floodTag()))
	g.stop()
	g.opts.Templates = floodTemplates(t)
	g.opts.Flood = &Flood{MaxMailsPerMinute: 1000, DigestDelay: 200 * time.Millisecond}
	g.start()
	flap(g)
	flap(g)
	flap(g)
	// The digest delay may end between two flaps: the held events are
	// then in two digests, each listed once.
	g.waitKey("modbus/dev/digest/1")
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(body, ", hold-off") < 4 && time.Now().Before(deadline) {
		body = ""
		for _, k := range g.alarmKeys() {
			if strings.Contains(k, "/digest/") {
				body += g.mail(k)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(body, ", hold-off"); n != 4 {
		t.Errorf("digests list %d held events, want 4:\n%s", n, body)
	}
	for _, k := range g.alarmKeys() {
		if !strings.Contains(k, "/digest/") && k != "modbus/dev/level/H/1" && k != "modbus/dev/level/H/2" {
			t.Errorf("unexpected mail %s", k)
		}
	}
	for _, want := range []string{"Level high: raise [warning]", "Level high: clear [warning]", "level = 95 %"} {
		if !strings.Contains(body, want) {
			t.Errorf("digest without %q:\n%s", want, body)
		}
	}
}

// TestDigestRepeatedAfterCrash: events held when the gateway dies are in
// the device's state file and mailed in a digest after the restart; a
// crash after the digest was queued but before the state file said so
// queues it again under the same key, so it goes out exactly once.
func TestDigestRepeatedAfterCrash(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	g := newGateway(t, s, tcpDevice(port, floodTag()))
	g.stop()
	g.opts.Templates = floodTemplates(t)
	g.opts.Flood = &Flood{MaxMailsPerMinute: 1000, DigestDelay: time.Hour}
	g.start()
	flap(g)
	flap(g) // held: the digest would go out in an hour
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/H/2")

	g.stop() // the poller writes nothing at a stop: as good as a kill
	held, err := loadState(g.opts.StateDir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(held.Held.Entries); n != 2 {
		t.Fatalf("%d held events in the state file, want 2", n)
	}
	g.opts.Flood.DigestDelay = 50 * time.Millisecond
	g.start()
	g.waitKey("modbus/dev/digest/1")
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/H/2", "modbus/dev/digest/1")

	// The crash that lost the state write after the digest was queued.
	g.stop()
	after, err := loadState(g.opts.StateDir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Held.Entries) != 0 || after.Held.Digests != 1 {
		t.Fatalf("state after the digest: %+v", after.Held)
	}
	after.Held = held.Held
	if err := after.save(g.opts.StateDir, "dev"); err != nil {
		t.Fatal(err)
	}
	g.start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := loadState(g.opts.StateDir, "dev")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Held.Entries) == 0 {
			if st.Held.Digests != 1 {
				t.Fatalf("digests %d after the repeat, want 1", st.Held.Digests)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the repeated digest did not empty the held events")
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/H/2", "modbus/dev/digest/1")
}
