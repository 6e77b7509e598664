package web

import (
	"fmt"
	"html/template"
	"maps"
	"slices"

	"github.com/plcmail/plcmail/modbus"
)

// The Modbus devices in the metrics and on the status page. In the
// families that serial links have too (up, alarm mails, digests, active
// alarms) a device is the link "modbus/NAME", so one query covers both
// kinds of source; the poll counters are families of their own.

// modbusLink is a device's link label.
func modbusLink(d *modbus.DeviceStatus) string { return "modbus/" + d.Name }

// modbusSamples adds one sample per device to the family just written.
func modbusSamples(e *expo, st *Status, v func(d *modbus.DeviceStatus) float64) {
	for i := range st.Modbus {
		e.sample(v(&st.Modbus[i]), "link", modbusLink(&st.Modbus[i]))
	}
}

// writeModbusMetrics writes the held events of every source and the
// families only Modbus devices have.
func writeModbusMetrics(e *expo, st *Status) {
	e.family("plcmail_held_events", "gauge", "Alarm events held by flood control that wait for their digest.")
	for _, l := range st.Links {
		e.sample(float64(l.DigestPending), "link", l.Name)
	}
	modbusSamples(e, st, func(d *modbus.DeviceStatus) float64 { return float64(d.DigestPending) })
	if len(st.Modbus) == 0 {
		return
	}
	e.family("plcmail_modbus_polls_total", "counter", "Polls of a Modbus device (its tags that are due) by result: ok, or failed (no answer, bad CRC, lost connection).")
	for _, d := range st.Modbus {
		e.sample(float64(d.Polls-d.PollErrors), "device", d.Name, "result", "ok")
		e.sample(float64(d.PollErrors), "device", d.Name, "result", "failed")
	}
	e.family("plcmail_modbus_last_answer_timestamp_seconds", "gauge", "When the Modbus device last answered a whole poll; absent before the first.")
	for _, d := range st.Modbus {
		if !d.LastGood.IsZero() {
			e.sample(seconds(d.LastGood), "device", d.Name)
		}
	}
	e.family("plcmail_modbus_offline", "gauge", "1 from the device offline notice to the next answered poll.")
	for _, d := range st.Modbus {
		e.sample(b2f(d.Offline), "device", d.Name)
	}
}

// modbusRow is one device on the status page.
type modbusRow struct {
	Name, Bus, State, Class, LastAnswer, LastError string
	// Held is the since-start count, with the events that still wait for
	// their digest (also those held before a restart).
	Held                     string
	Slave                    uint8
	Polls, PollErrors, Mails uint64
}

// addModbus puts the devices and their active alarms into the page data.
func addModbus(d *pageData, s *Status) {
	for _, m := range s.Modbus {
		r := modbusRow{Name: m.Name, Bus: m.Bus, Slave: m.Slave, State: "up", Class: "ok", LastError: m.LastError,
			Polls: m.Polls, PollErrors: m.PollErrors, Mails: m.Mails, Held: fmt.Sprint(m.Held), LastAnswer: "none yet"}
		if m.DigestPending > 0 {
			r.Held += fmt.Sprintf(" (%d waiting for a digest)", m.DigestPending)
		}
		switch {
		case m.Offline:
			r.State, r.Class = "OFFLINE", "bad"
		case m.Polls == 0:
			r.State, r.Class = "not polled yet", "warn"
		case !m.Up:
			r.State, r.Class = "not answering", "warn"
		}
		if !m.LastGood.IsZero() {
			r.LastAnswer = age(s.Now, m.LastGood) + " ago"
		}
		d.Modbus = append(d.Modbus, r)
		for _, a := range m.Active {
			d.ModbusActive = append(d.ModbusActive, modbusActiveRow{Device: m.Name, Tag: a.Tag, Rule: a.Rule,
				Name: a.Name, Severity: a.Severity, Since: age(s.Now, a.Since)})
		}
		if m.LastError != "" {
			d.Errors = append(d.Errors, errorRow{Where: "modbus " + m.Name, Msg: m.LastError})
		}
		for _, tag := range slices.Sorted(maps.Keys(m.Unreadable)) {
			d.Errors = append(d.Errors, errorRow{Where: "modbus " + m.Name + ", tag " + tag, Msg: m.Unreadable[tag]})
		}
	}
}

type modbusActiveRow struct{ Device, Tag, Rule, Name, Severity, Since string }

var _ = template.Must(pageTmpl.New("modbus").Parse(`{{if .Modbus}}
<h2>Modbus devices</h2>
<table id="modbus">
<tr><th>device</th><th>bus</th><th>slave</th><th>state</th><th>last answer</th><th>polls</th><th>failed</th><th>mails</th><th>held</th></tr>
{{range .Modbus}}<tr><td>{{.Name}}</td><td>{{.Bus}}</td><td>{{.Slave}}</td><td class="{{.Class}}">{{.State}}</td><td>{{.LastAnswer}}</td><td>{{.Polls}}</td><td>{{.PollErrors}}</td><td>{{.Mails}}</td><td>{{.Held}}</td></tr>
{{end}}</table>
{{if .ModbusActive}}<table id="modbus-active">
<tr><th>device</th><th>tag</th><th>rule</th><th>alarm</th><th>severity</th><th>active for</th></tr>
{{range .ModbusActive}}<tr><td>{{.Device}}</td><td>{{.Tag}}</td><td>{{.Rule}}</td><td>{{.Name}}</td><td>{{.Severity}}</td><td>{{.Since}}</td></tr>
{{end}}</table>{{else}}<p class="none">No active Modbus alarms.</p>{{end}}
{{end}}`))
