package config

import (
	"fmt"
	"os"
	"path/filepath"
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

// TestModbusPortConflicts: an RTU port that is also a [[serial]] link's
// (by path, or through a symbolic link such as /dev/serial/by-id), and a
// slave polled by two [[modbus]] entries (also when two spellings name one
// TCP server, localhost:502 and 127.0.0.1:502), are reported at their line;
// several slaves on one port are fine, and so is another loopback address.
func TestModbusPortConflicts(t *testing.T) {
	dir := t.TempDir()
	tty := filepath.Join(dir, "ttyUSB7")
	byID := filepath.Join(dir, "usb-FTDI_FT232R-if00-port0")
	if err := os.WriteFile(tty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tty, byID); err != nil {
		t.Fatal(err)
	}
	tag := "[[modbus.tag]]\nname = \"x\"\ntable = \"coil\"\naddress = 1\npoll_interval = \"%s\"\n"
	src := validBase + `
[[serial]]
name = "plc"
device = "/dev/ttyUSB0"

[[serial]]
name = "plc2"
device = "` + tty + `"

[[modbus]]
name = "a"
mode = "rtu"
device = "/dev/ttyUSB0"
` + fmt.Sprintf(tag, "5s") + `
[[modbus]]
name = "b"
mode = "rtu"
device = "/dev/ttyUSB3"
slave_id = 2
` + fmt.Sprintf(tag, "1ms") + `
[[modbus]]
name = "c"
mode = "rtu"
device = "/dev/ttyUSB3"
slave_id = 3
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "d"
mode = "rtu"
device = "/dev/ttyUSB3"
slave_id = 2
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "e"
mode = "tcp"
address = "10.0.0.1"
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "f"
mode = "tcp"
address = "10.0.0.1:502"
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "g"
mode = "rtu"
device = "` + byID + `"
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "h"
mode = "tcp"
address = "127.0.0.1"
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "i"
mode = "tcp"
address = "localhost:502"
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "j"
mode = "tcp"
address = "[::1]:0502"
slave_id = 1
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "k"
mode = "tcp"
address = "127.0.0.2:502"
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "l"
mode = "tcp"
address = "LocalHost.:502"
slave_id = 2
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "m"
mode = "tcp"
address = "PLC7.example.com.:502"
` + fmt.Sprintf(tag, "1s") + `
[[modbus]]
name = "n"
mode = "tcp"
address = "plc7.example.com"
` + fmt.Sprintf(tag, "1s")
	_, err := Parse("t.toml", []byte(src))
	lines := strings.Split(src, "\n")
	want := map[string]string{
		"modbus[0].device":               `/dev/ttyUSB0 is the port of [[serial]] "plc"`,
		"modbus[1].tag[0].poll_interval": "at least 10ms",
		"modbus[3].slave_id":             `modbus "b" polls slave 2 on /dev/ttyUSB3 already`,
		"modbus[5].slave_id":             `modbus "e" polls slave 1 on 10.0.0.1:502 already`,
		"modbus[6].device":               `is the port of [[serial]] "plc2"`,
		// One server however it is spelt: the loopback names, the
		// port's leading zero, a name's case and trailing dot.
		"modbus[8].slave_id":  `modbus "h" polls slave 1 on 127.0.0.1:502 already (localhost:502 is the same server)`,
		"modbus[9].slave_id":  `modbus "h" polls slave 1 on 127.0.0.1:502 already ([::1]:0502 is the same server)`,
		"modbus[13].slave_id": `modbus "m" polls slave 1 on PLC7.example.com.:502 already (plc7.example.com:502 is the same server)`,
	}
	for _, e := range AsErrors(err) {
		msg, ok := want[e.Key]
		if !ok {
			t.Errorf("unexpected error %v", e)
			continue
		}
		delete(want, e.Key)
		if !strings.Contains(e.Error(), msg) {
			t.Errorf("%s: %v, want %q", e.Key, e, msg)
		}
		key := e.Key[strings.LastIndex(e.Key, ".")+1:]
		// A key the entry leaves out (a default) is reported at its table.
		if e.Line == 0 || !strings.HasPrefix(lines[e.Line-1], key) && lines[e.Line-1] != "[[modbus]]" {
			t.Errorf("%s: line %d", e.Key, e.Line)
		}
	}
	for k := range want {
		t.Errorf("no error for %s", k)
	}
	c, err := Parse("t.toml", []byte(validBase+"[[modbus]]\nname = \"a\"\nmode = \"tcp\"\naddress = \"10.0.0.1\"\n"+fmt.Sprintf(tag, "5s")))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Modbus[0].Tags[0].PollInterval.D(); got != 5*time.Second {
		t.Errorf("tag poll_interval %v", got)
	}
}

// TestModbusAddressMessage: an address out of range is reported with the
// range that holds for its type (a 32-bit value at 65535 would read past
// the last register), never a range that contains the address itself.
func TestModbusAddressMessage(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		addr int
		want string
	}{
		{"float32", 65535, "must be 0..65534 for a float32 (two registers), not 65535"},
		{"int16", 65536, "must be 0..65535, not 65536"},
		{"uint32", -1, "must be 0..65534 for a uint32 (two registers), not -1"},
	} {
		src := validBase + fmt.Sprintf("[[modbus]]\nname = \"a\"\nmode = \"tcp\"\naddress = \"10.0.0.1\"\n"+
			"[[modbus.tag]]\nname = \"x\"\ntable = \"holding\"\naddress = %d\ntype = %q\n", tc.addr, tc.typ)
		_, err := Parse("t.toml", []byte(src))
		es := AsErrors(err)
		if len(es) != 1 || es[0].Key != "modbus[0].tag[0].address" || !strings.Contains(es[0].Error(), tc.want) {
			t.Errorf("%s at %d: %v, want %q", tc.typ, tc.addr, err, tc.want)
		}
	}
}

// TestModbusBadStateIsOneProblem: a boolean alarm's state that does not
// decode is reported once, at state, not also as a missing limit.
func TestModbusBadStateIsOneProblem(t *testing.T) {
	src := validBase + "[[modbus]]\nname = \"a\"\nmode = \"tcp\"\naddress = \"10.0.0.1\"\n" +
		"[[modbus.tag]]\nname = \"x\"\ntable = \"coil\"\naddress = 0\n[[modbus.tag.alarm]]\nstate = \"true\"\n"
	_, err := Parse("t.toml", []byte(src))
	es := AsErrors(err)
	if len(es) != 1 || es[0].Key != "modbus[0].tag[0].alarm[0].state" {
		t.Errorf("%v, want one problem at modbus[0].tag[0].alarm[0].state", err)
	}
}

// TestModbusCodeWithoutTemplate: a Modbus rule whose code no [[alarm]] has
// is valid (the default template takes its mails) but gets a warning at
// its code's line; a code with a template, and a rule without a code, get
// none.
func TestModbusCodeWithoutTemplate(t *testing.T) {
	for _, tc := range []struct {
		name, alarms, want string
	}{
		{"built-in template", "", `warning: no [[alarm]] has code 42: this rule's mails use the built-in template`},
		{"default template", "[[alarm]]\ndefault = true\nto = [\"ops@example.com\"]\n",
			`warning: no [[alarm]] has code 42: this rule's mails use the default template (alarm[1])`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := validBase + `
[[alarm]]
code = 17
to = ["ops@example.com"]
` + tc.alarms + `
[[modbus]]
name = "tank"
mode = "tcp"
address = "10.0.0.5"
[[modbus.tag]]
name = "level"
table = "holding"
address = 0
[[modbus.tag.alarm]]
limit = "H"
setpoint = 90
code = 17
[[modbus.tag.alarm]]
limit = "HH"
setpoint = 95
code = 42
[[modbus.tag.alarm]]
limit = "L"
setpoint = 10
`
			c, err := Parse("t.toml", []byte(src))
			if err != nil {
				t.Fatalf("a code without a template must not be an error: %v", err)
			}
			ws := c.Warnings()
			if len(ws) != 1 {
				t.Fatalf("warnings %v, want one", ws)
			}
			w := ws[0]
			lines := strings.Split(src, "\n")
			if w.Key != "modbus[0].tag[0].alarm[1].code" || !strings.Contains(w.Error(), tc.want) ||
				w.Line == 0 || lines[w.Line-1] != "code = 42" || !strings.HasPrefix(w.Error(), fmt.Sprintf("t.toml:%d: ", w.Line)) {
				t.Errorf("warning %q at key %s line %d, want %q at the line of code = 42", w.Error(), w.Key, w.Line, tc.want)
			}
		})
	}
}
