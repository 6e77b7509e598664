package modbus

import (
	"strings"
	"testing"
)

// TestRTU polls two slaves on one RS-485 line (a socat pty pair to a pymodbus
// RTU slave): limit and boolean alarms, a float32 in low-word-first order,
// a bad CRC that is only a failed poll, a run of them and a silent slave
// that make it offline while the other slave on the bus stays online.
func TestRTU(t *testing.T) {
	gw, sl := newPTYPair(t)
	s := startSlave(t, "rtu", sl)
	temp := Tag{Name: "temp", Table: Input, Address: 10, Type: "float32", LowWordFirst: true, Scale: 1, Unit: "°C",
		Rules: []Rule{{ID: "H", Limit: "H", Setpoint: 80, Deadband: 5, Code: -1}}}
	door := Tag{Name: "door", Table: DiscreteInput, Address: 5, Type: "bool", Scale: 1,
		Rules: []Rule{{ID: "true", State: true, Severity: "alarm", Code: -1}}}
	counter := Tag{Name: "count", Table: Holding, Address: 20, Type: "uint32", Scale: 1,
		Rules: []Rule{{ID: "L", Limit: "L", Setpoint: 70000, Code: -1}}}
	g := newGateway(t, s, rtuDevice("dev", gw, 1, temp, door), rtuDevice("dev2", gw, 2, counter))

	g.sync()
	g.waitKey("modbus/dev2/count/L/1") // 0 < 70000
	s.do("hr 20 1 34465")              // 0x0001_86A1 = 100001, high word first
	s.do("ir 10 0 17066")              // 0x42AA_0000 = 85.0, low word first
	s.do("di 5 1")
	g.sync()
	g.waitKey("modbus/dev2/count/L/2")
	g.wantKeys("modbus/dev/temp/H/1", "modbus/dev/door/true/1", "modbus/dev2/count/L/1", "modbus/dev2/count/L/2")
	if body := g.mail("modbus/dev/temp/H/1"); !strings.Contains(body, "temp = 85 °C") || !strings.Contains(body, "severity alarm") {
		t.Errorf("float alarm mail:\n%s", body)
	}

	s.do("crc 1")         // one broken answer: a failed poll, not an outage
	s.do("ir 10 0 17056") // 0x42A0_0000 = 80.0: inside the deadband
	g.sync()
	s.do("ir 10 0 17008") // 0x4270_0000 = 60.0: clears
	s.do("di 5 0")
	g.sync()
	g.wantKeys("modbus/dev/temp/H/1", "modbus/dev/temp/H/2", "modbus/dev/door/true/1", "modbus/dev/door/true/2",
		"modbus/dev2/count/L/1", "modbus/dev2/count/L/2")

	s.do("crc 20") // a run of broken answers (to both slaves): offline, then back
	g.waitKey("modbus/dev/offline/1")
	g.waitKey("modbus/dev/online/1")
	g.sync()
	dev2Outages := countPrefix(g.keys(), "modbus/dev2/offline/")

	s.do("mute") // slave 1 silent, slave 2 answers on the same line
	g.waitKey("modbus/dev/offline/2")
	s.do("hr 20 0 0")
	g.waitKey("modbus/dev2/count/L/3")
	s.do("unmute")
	g.waitKey("modbus/dev/online/2")
	if n := countPrefix(g.keys(), "modbus/dev2/offline/"); n != dev2Outages {
		t.Errorf("dev2 was reported offline while slave 1 was silent: %v", g.keys())
	}
}

func countPrefix(keys []string, prefix string) int {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}
