package web

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/modbus"
)

// modbusStatus is sampleStatus with two Modbus devices: one up with an
// active alarm, one offline.
func modbusStatus() Status {
	st := sampleStatus()
	now := st.Now
	st.Modbus = []modbus.DeviceStatus{
		{Name: "tank", Bus: "tcp://10.0.0.5:502", Slave: 1, Up: true, LastGood: now.Add(-time.Second),
			Polls: 100, PollErrors: 3, Mails: 5, Mailed: 4, Held: 2, Digests: 1, DigestPending: 1,
			Active: []modbus.ActiveAlarm{{Tag: "level", Rule: "HH", Name: "Tank <1> overfull", Severity: "critical", Since: now.Add(-3 * time.Minute)}}},
		{Name: "pump", Bus: "rtu:///dev/ttyUSB2", Slave: 7, Offline: true, Polls: 9, PollErrors: 9, LastError: "request timed out"},
	}
	return st
}

// TestMetricsModbus: devices are links "modbus/NAME" in the shared
// families, with poll counters of their own; Prometheus' parser takes it.
func TestMetricsModbus(t *testing.T) {
	st := modbusStatus()
	var buf bytes.Buffer
	if err := WriteMetrics(&buf, &st); err != nil {
		t.Fatal(err)
	}
	fams := parseMetrics(t, buf.String())
	tests := []sampleWant{
		{"plcmail_link_up", "GAUGE", "link=modbus/tank", 1},
		{"plcmail_link_up", "GAUGE", "link=modbus/pump", 0},
		{"plcmail_link_up", "GAUGE", "link=press-line-1", 1},
		{"plcmail_alarm_mails_total", "COUNTER", "link=modbus/tank", 4},
		{"plcmail_digest_mails_total", "COUNTER", "link=modbus/tank", 1},
		{"plcmail_active_alarms", "GAUGE", "link=modbus/tank", 1},
		{"plcmail_active_alarms", "GAUGE", "link=modbus/pump", 0},
		{"plcmail_modbus_polls_total", "COUNTER", "device=tank,result=ok", 97},
		{"plcmail_modbus_polls_total", "COUNTER", "device=tank,result=failed", 3},
		{"plcmail_modbus_polls_total", "COUNTER", "device=pump,result=ok", 0},
		{"plcmail_modbus_offline", "GAUGE", "device=pump", 1},
		{"plcmail_modbus_last_answer_timestamp_seconds", "GAUGE", "device=tank", float64(st.Now.Add(-time.Second).Unix())},
		{"plcmail_held_events", "GAUGE", "link=modbus/tank", 1},
		{"plcmail_held_events", "GAUGE", "link=press-line-1", 0},
	}
	checkSamples(t, fams, tests)
	if _, ok := fams["plcmail_modbus_last_answer_timestamp_seconds"].samples["device=pump"]; ok {
		t.Error("a device that never answered has a last answer timestamp")
	}
}

// TestPageModbus: the page lists the devices, their state and their active
// alarms (escaped), and a device's last error.
func TestPageModbus(t *testing.T) {
	st := modbusStatus()
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, newPageData(&st)); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		`<table id="modbus">`,
		`<td>tank</td><td>tcp://10.0.0.5:502</td><td>1</td><td class="ok">up</td><td>1s ago</td><td>100</td><td>3</td><td>5</td><td>2 (1 waiting for a digest)</td>`,
		`<td>pump</td><td>rtu:///dev/ttyUSB2</td><td>7</td><td class="bad">OFFLINE</td><td>none yet</td>`,
		`<td>tank</td><td>level</td><td>HH</td><td>Tank &lt;1&gt; overfull</td><td>critical</td><td>3m00s</td>`,
		`<td>modbus pump</td>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	st = sampleStatus()
	buf.Reset()
	pageTmpl.Execute(&buf, newPageData(&st))
	if strings.Contains(buf.String(), "Modbus") {
		t.Error("a gateway without Modbus devices shows a Modbus section")
	}
}

// TestPageModbusHeldWaiting: events held before a restart still wait for
// their digest while the since-start counter is 0; the page says so.
func TestPageModbusHeldWaiting(t *testing.T) {
	st := modbusStatus()
	st.Modbus[0].Held, st.Modbus[0].DigestPending = 0, 1
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, newPageData(&st)); err != nil {
		t.Fatal(err)
	}
	if want := "<td>0 (1 waiting for a digest)</td>"; !strings.Contains(buf.String(), want) {
		t.Errorf("page lacks %q:\n%s", want, buf.String())
	}
}

// TestPageModbusUnreadable: a tag the device refuses is in the page's
// errors, or "up" would hide that its alarms are not evaluated.
func TestPageModbusUnreadable(t *testing.T) {
	st := modbusStatus()
	st.Modbus[0].Unreadable = map[string]string{"level": "illegal data address"}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, newPageData(&st)); err != nil {
		t.Fatal(err)
	}
	if want := `<td>modbus tank, tag level</td><td></td><td class="err">illegal data address</td>`; !strings.Contains(buf.String(), want) {
		t.Errorf("page lacks %q:\n%s", want, buf.String())
	}
}
