package modbus

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// level is a holding register in tenths of a percent with a high and a
// high-high limit.
func levelTag() Tag {
	return Tag{Name: "level", Table: Holding, Address: 0, Type: "int16", Scale: 0.1, Unit: "%",
		Rules: []Rule{
			{ID: "H", Limit: "H", Setpoint: 90, Deadband: 2, Severity: "warning", Code: -1},
			{ID: "HH", Limit: "HH", Setpoint: 95, Deadband: 2, Severity: "critical", Code: -1},
		}}
}

// TestTCPLimitsWithHysteresis crosses the limits of a tag on a pymodbus TCP
// server: a raise at the setpoint, no clear inside the deadband, a clear
// beyond it, each limit on its own.
func TestTCPLimitsWithHysteresis(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	g := newGateway(t, s, tcpDevice(port, levelTag()))

	s.do("hr 0 900") // 90.0 %: at the H setpoint
	g.sync()
	g.wantKeys("modbus/dev/level/H/1")
	body := g.mail("modbus/dev/level/H/1")
	for _, want := range []string{"level = 90 %", "H limit 90 %", "raise"} {
		if !strings.Contains(body, want) {
			t.Errorf("raise mail lacks %q:\n%s", want, body)
		}
	}

	s.do("hr 0 960") // HH too
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1")

	s.do("hr 0 935") // below HH, inside its deadband (93..95): HH stays
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1")

	s.do("hr 0 929") // below 93: HH clears, H stays (88..90 is its band)
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1", "modbus/dev/level/HH/2")
	if body := g.mail("modbus/dev/level/HH/2"); !strings.Contains(body, "clear") || !strings.Contains(body, "back below 93 %") {
		t.Errorf("clear mail:\n%s", body)
	}

	s.do("hr 0 885") // inside H's deadband
	g.sync()
	s.do("hr 0 879") // below 88: H clears
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/H/2", "modbus/dev/level/HH/1", "modbus/dev/level/HH/2")

	s.do("hr 0 65535") // -0.1 %: int16, negative
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/H/2", "modbus/dev/level/HH/1", "modbus/dev/level/HH/2")
}

// TestTCPDelays: a condition shorter than on_delay mails nothing; one that
// lasts is raised; a clear waits for off_delay.
func TestTCPDelays(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	slowOn := Tag{Name: "slow_on", Table: Holding, Address: 1, Type: "uint16", Scale: 1,
		Rules: []Rule{{ID: "H", Limit: "H", Setpoint: 10, OnDelay: time.Hour, Code: -1}}}
	slowOff := Tag{Name: "slow_off", Table: Holding, Address: 2, Type: "uint16", Scale: 1,
		Rules: []Rule{{ID: "H", Limit: "H", Setpoint: 10, OffDelay: time.Hour, Code: -1}}}
	delayed := Tag{Name: "delayed", Table: Input, Address: 3, Type: "uint16", Scale: 1,
		Rules: []Rule{{ID: "L", Limit: "L", Setpoint: 5, OnDelay: 200 * time.Millisecond, OffDelay: 200 * time.Millisecond, Code: -1}}}
	g := newGateway(t, s, tcpDevice(port, slowOn, slowOff, delayed))

	s.do("ir 3 100")
	s.do("hr 1 50")
	s.do("hr 2 50")
	g.waitKey("modbus/dev/slow_off/H/1")
	s.do("hr 2 0") // off_delay 1h: stays raised
	s.do("ir 3 1") // below L for good: raised after 200ms
	g.waitKey("modbus/dev/delayed/L/1")
	s.do("ir 3 100")
	g.waitKey("modbus/dev/delayed/L/2")
	g.sync()
	g.wantKeys("modbus/dev/slow_off/H/1", "modbus/dev/delayed/L/1", "modbus/dev/delayed/L/2")
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestTCPExceptionIsNotOffline: a tag the device refuses (illegal data
// address) stays unread, but the device is online and its other tags alarm.
func TestTCPExceptionIsNotOffline(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	missing := Tag{Name: "missing", Table: Holding, Address: 500, Type: "uint16", Scale: 1,
		Rules: []Rule{{ID: "L", Limit: "L", Setpoint: 10, Code: -1}}}
	g := newGateway(t, s, tcpDevice(port, missing, levelTag()))
	s.do("hr 0 990")
	g.sync()
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1")
	// Status says which tag is unread: "up" alone would hide that its
	// alarms are never evaluated.
	if st := g.p.Status()[0]; !strings.Contains(st.Unreadable["missing"], "illegal data address") || len(st.Unreadable) != 1 {
		t.Errorf("unreadable tags in status: %q", st.Unreadable)
	}
}

// TestTagPollInterval: a tag with a poll_interval of an hour is read once
// at the start and not again, while the device's other tags are read at
// the device's pace.
func TestTagPollInterval(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	slow := Tag{Name: "slow", Table: Holding, Address: 1, Type: "uint16", Scale: 1, PollInterval: time.Hour,
		Rules: []Rule{{ID: "H", Limit: "H", Setpoint: 10, Code: -1}}}
	fast := slow
	fast.Name, fast.PollInterval = "fast", 0
	g := newGateway(t, s, tcpDevice(port, slow, fast))
	g.sync()
	s.do("hr 1 50")
	g.sync()
	g.sync()
	g.wantKeys("modbus/dev/fast/H/1")
	// A restart reads every tag at once.
	g.stop()
	g.start()
	g.waitKey("modbus/dev/slow/H/1")
}
