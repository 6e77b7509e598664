package config

import (
	"strings"
	"testing"
	"time"
)

func TestModbusDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(validBase+`
[[modbus]]
name = "tank"
mode = "rtu"
device = "/dev/ttyUSB1"

[[modbus.tag]]
name = "level"
table = "holding"
address = 0

[[modbus.tag.alarm]]
limit = "HH"
setpoint = 95.5

[[modbus.tag]]
name = "pump_fault"
table = "discrete_input"
address = 3

[[modbus.tag.alarm]]
state = true

[[modbus]]
name = "press"
mode = "tcp"
address = "192.168.1.20"
[[modbus.tag]]
name = "t"
table = "input"
address = 7
type = "float32"
word_order = "low_first"
`))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Modbus[0]
	if m.Baud != 19200 || m.Parity != "even" || m.DataBits != 8 || m.StopBits != "1" || *m.SlaveID != 1 ||
		m.PollInterval.D() != time.Second || m.Timeout.D() != time.Second || m.MinGap.D() != 20*time.Millisecond || m.OfflineAfter != 3 {
		t.Errorf("defaults: %+v", m)
	}
	if tag := m.Tags[0]; tag.Type != "uint16" || *tag.Scale != 1 || tag.WordOrder != "high_first" ||
		tag.Alarms[0].ModbusSeverity() != "critical" || tag.Alarms[0].RuleID() != "HH" || *tag.Alarms[0].Setpoint != 95.5 {
		t.Errorf("tag defaults: %+v", tag)
	}
	if tag := m.Tags[1]; tag.Type != "bool" || tag.Alarms[0].RuleID() != "true" || tag.Alarms[0].ModbusSeverity() != "alarm" {
		t.Errorf("bool tag: %+v", tag)
	}
	if m.Bus() != "rtu:/dev/ttyUSB1" || c.Modbus[1].Bus() != "tcp:192.168.1.20:502" {
		t.Errorf("buses %q %q", m.Bus(), c.Modbus[1].Bus())
	}
}

// TestModbusErrors: every mistake in a device, tag or rule is reported at
// its key's line.
func TestModbusErrors(t *testing.T) {
	src := validBase + `
[[serial]]
name = "plc"
device = "/dev/ttyUSB0"

[[modbus]]
name = "plc"
mode = "rtu"
device = "/dev/ttyUSB1"
address = "10.0.0.1"
slave_id = 0
parity = "mark"
poll_interval = "1ms"
offline_after = -1

[[modbus.tag]]
name = "level"
table = "holding"
address = 65535
type = "float32"
word_order = "swapped"

[[modbus.tag.alarm]]
limit = "HHH"
deadband = -1
on_delay = "-1s"

[[modbus.tag.alarm]]
state = true
realarm = "10s"

[[modbus.tag]]
name = "level"
table = "coil"
type = "int16"
scale = 0

[[modbus.tag.alarm]]
limit = "H"
severity = "fatal"

[[modbus.tag.alarm]]
code = 70000

[[modbus]]
name = "other"
mode = "rtu"
device = "/dev/ttyUSB1"
baud = 9600
[[modbus.tag]]
name = "x"
table = "register"
address = 1

[[modbus]]
name = "net"
mode = "udp"
`
	_, err := Parse("t.toml", []byte(src))
	es := AsErrors(err)
	want := map[string]bool{
		"modbus[0].name": true, "modbus[0].address": true, "modbus[0].slave_id": true, "modbus[0].parity": true,
		"modbus[0].poll_interval": true, "modbus[0].offline_after": true,
		"modbus[0].tag[0].address": true, "modbus[0].tag[0].word_order": true,
		"modbus[0].tag[0].alarm[0].limit": true, "modbus[0].tag[0].alarm[0].deadband": true, "modbus[0].tag[0].alarm[0].on_delay": true,
		"modbus[0].tag[0].alarm[0].setpoint": true,
		"modbus[0].tag[0].alarm[1].state":    true, "modbus[0].tag[0].alarm[1].realarm": true,
		"modbus[0].tag[1].name": true, "modbus[0].tag[1].type": true, "modbus[0].tag[1].scale": true, "modbus[0].tag[1].address": true,
		"modbus[0].tag[1].alarm[0].setpoint": true, "modbus[0].tag[1].alarm[0].severity": true,
		"modbus[0].tag[1].alarm[1].limit": true, "modbus[0].tag[1].alarm[1].code": true,
		"modbus[1].baud": true, "modbus[1].tag[0].table": true,
		"modbus[2].mode": true, "modbus[2]": true,
	}
	lines := strings.Split(src, "\n")
	for _, e := range es {
		if !want[e.Key] {
			t.Errorf("unexpected error %v", e)
			continue
		}
		delete(want, e.Key)
		if e.Line == 0 {
			t.Errorf("%s: no line", e.Key)
			continue
		}
		key := e.Key[strings.LastIndex(e.Key, ".")+1:]
		key, _, _ = strings.Cut(key, "[")
		if l := lines[e.Line-1]; !strings.HasPrefix(l, key) && !strings.HasPrefix(l, "[") {
			t.Errorf("%s: line %d is %q", e.Key, e.Line, l)
		}
	}
	for k := range want {
		t.Errorf("no error for %s", k)
	}
}
