package config

import (
	"strings"
	"testing"
	"time"
)

func TestSerialDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(validBase+`
[[serial]]
name = "l1"
device = "/dev/serial/by-id/usb-CONTROLLINO-if00"
[[alarm]]
code = 1
to = ["a@example.com"]
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Serial[0]
	if s.Baud != 115200 || s.DataBits != 8 || s.Parity != "none" || s.StopBits != "1" ||
		s.HeartbeatTimeout.D() != 60*time.Second || s.ResetGrace.D() != 2*time.Second || !s.WantsRestartNotice() {
		t.Errorf("defaults: %+v", s)
	}
	if got := c.NoticeRecipients(&s); len(got) != 1 || got[0] != "a@example.com" {
		t.Errorf("notice recipients %v", got)
	}
	if c.Flood.Holdoff.D() != 5*time.Minute || c.Flood.MaxMailsPerMinute != 20 || c.Flood.DigestDelay.D() != time.Minute {
		t.Errorf("flood defaults %+v", c.Flood)
	}
}

func TestStopBitsForms(t *testing.T) {
	for in, want := range map[string]StopBits{`2`: "2", `1.5`: "1.5", `"1.5"`: "1.5", `1.0`: "1"} {
		c, err := Parse("t.toml", []byte(validBase+"[[serial]]\nname=\"l\"\ndevice=\"/dev/x\"\nstop_bits = "+in+"\n"))
		if err != nil {
			t.Errorf("stop_bits = %s: %v", in, err)
			continue
		}
		if c.Serial[0].StopBits != want {
			t.Errorf("stop_bits = %s: got %q", in, c.Serial[0].StopBits)
		}
	}
}

func TestSerialAlarmFloodErrors(t *testing.T) {
	src := validBase + `
[[serial]]
name = "bad name"
device = "/dev/ttyUSB0"
usb_vid = "zz"
baud = 0
parity = "odd-ish"
stop_bits = 3
data_bits = 9
heartbeat_timeout = "10ms"
to = ["not-an-address"]

[[serial]]
name = "usb"

[[alarm]]
subject = "no code"
to = ["ops@example.com"]

[[alarm]]
code = 70000
default = true
severity = "panic"
to = []
cc = ["x"]

[flood]
max_mails_per_minute = 0
digest_delay = "0s"
`
	_, err := Parse("t.toml", []byte(src))
	es := AsErrors(err)
	want := map[string]bool{
		"serial[0].name": true, "serial[0].device": true, "serial[0].usb_vid": true,
		"serial[0].parity": true, "serial[0].stop_bits": true, "serial[0].data_bits": true,
		"serial[0].heartbeat_timeout": true, "serial[0].to[0]": true, "serial[1].device": true,
		"alarm[0].code": true, "alarm[1].default": true, "alarm[1].severity": true, "alarm[1].to": true,
		"alarm[1].cc[0]": true, "flood.max_mails_per_minute": true, "flood.digest_delay": true,
	}
	lines := strings.Split(src, "\n")
	for _, e := range es {
		if !want[e.Key] {
			t.Errorf("unexpected error %v", e)
			continue
		}
		delete(want, e.Key)
		// Every error points at the line of its key, or of its table when
		// the key is missing.
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
