package web

import (
	"cmp"
	"fmt"
	"html/template"
	"slices"
	"time"

	"github.com/plcmail/plcmail/spool"
)

// pageData is the status page's view of a Status: everything formatted
// for people, so that the template only lays it out.
type pageData struct {
	Version, Config, Started, Uptime, Now string
	PID                                   int

	Links  []linkRow
	Active []activeRow
	Queue  queueView
	Errors []errorRow
	Recent []recentRow
	SMTP   []string

	Modbus       []modbusRow // modbus.go
	ModbusActive []modbusActiveRow
	// Channels are the fallback channels, numbered as DELIVERY's via.
	Channels []channelRow
}

type channelRow struct {
	Via                      int
	Name, Kind, LastDelivery string
	Queued                   int
	Delivered, Retried, Dead uint64
}

type linkRow struct {
	Name, Port, State, Class, Since, LastFrame, LastError string
	Frames, FrameErrors, Mails, Duplicates                uint64
}

type activeRow struct {
	Link, Severity string
	Code           int
}

type queueView struct {
	Waiting, Dead, Corrupt            int
	Oldest, LastDelivery, HeldFor     string
	Delivered, Deferred, DeadLettered uint64
	Attempts                          []spool.AttemptCount
	// Upstreams lists the [[upstream]] entries in the order they are
	// tried; empty for a single upstream, which the rows above describe.
	Upstreams []upstreamRow
}

type upstreamRow struct {
	Name, Addr, State, Class, Since, LastError string
	Delivered, FailedOver                      uint64
}

type errorRow struct{ Where, When, Msg string }

type recentRow struct {
	Link, Time, Event, Severity, Text, Held string
	Code                                    int
	at                                      time.Time
}

// maxRecent bounds the recent alarms shown, across all links.
const maxRecent = 50

func newPageData(s *Status) *pageData {
	now := s.Now
	d := &pageData{
		Version: s.Version, Config: s.Config, PID: s.PID, SMTP: s.SMTP,
		Started: stamp(s.Started), Uptime: age(now, s.Started), Now: stamp(now),
	}
	for _, l := range s.Links {
		r := linkRow{Name: l.Name, Port: l.Port, State: "up", Class: "ok", LastError: l.LastError,
			Frames: l.Frames, FrameErrors: l.FrameErrors, Mails: l.Mails, Duplicates: l.Duplicates}
		switch {
		case !l.Connected:
			r.State, r.Class = "DOWN", "bad"
		case l.Offline:
			r.State, r.Class = "PLC silent", "warn"
		}
		if !l.Since.IsZero() {
			r.Since = age(now, l.Since)
		}
		r.LastFrame = "none yet"
		if !l.LastFrame.IsZero() {
			r.LastFrame = age(now, l.LastFrame) + " ago"
		}
		d.Links = append(d.Links, r)
		for code, sev := range l.Active {
			d.Active = append(d.Active, activeRow{Link: l.Name, Code: code, Severity: sev})
		}
		if l.LastError != "" {
			d.Errors = append(d.Errors, errorRow{Where: "link " + l.Name, Msg: l.LastError})
		}
		for _, e := range l.Recent {
			d.Recent = append(d.Recent, recentRow{Link: l.Name, Time: stamp(e.At), Code: e.Code, Event: e.Event,
				Severity: e.Severity, Text: e.Text, Held: e.Held, at: e.At})
		}
	}
	addModbus(d, s) // modbus.go
	slices.SortFunc(d.Active, func(a, b activeRow) int { return cmp.Or(cmp.Compare(a.Link, b.Link), cmp.Compare(a.Code, b.Code)) })
	slices.SortStableFunc(d.Recent, func(a, b recentRow) int { return b.at.Compare(a.at) })
	d.Recent = d.Recent[:min(len(d.Recent), maxRecent)]

	q := &s.Queue
	d.Queue = queueView{Waiting: s.Waiting(), Dead: s.Dead, Corrupt: s.Corrupt,
		Delivered: q.Delivered, Deferred: q.Deferred, DeadLettered: q.DeadLettered, Attempts: q.Attempts,
		LastDelivery: "none since start"}
	if d.Queue.Waiting > 0 {
		d.Queue.Oldest = age(now, s.OldestWaiting())
	}
	if !q.LastSuccess.IsZero() {
		d.Queue.LastDelivery = stamp(q.LastSuccess) + " (" + age(now, q.LastSuccess) + " ago)"
	}
	if q.HoldUntil.After(now) {
		d.Queue.HeldFor = age(q.HoldUntil, now)
	}
	if len(q.Upstreams) > 1 {
		inUse := false
		for _, u := range q.Upstreams {
			r := upstreamRow{Name: u.Name, Addr: u.Addr, LastError: u.LastError, Delivered: u.Delivered, FailedOver: u.FailedOver}
			switch {
			case u.State == "down":
				r.State, r.Class = "DOWN", "bad"
				if !u.DownSince.IsZero() {
					r.Since = age(now, u.DownSince)
				}
			case u.State == "probing":
				r.State, r.Class = "probing", "warn"
			case !inUse:
				r.State, r.Class, inUse = "IN USE", "ok", true
			default:
				r.State = "standby"
			}
			d.Queue.Upstreams = append(d.Queue.Upstreams, r)
		}
	}
	if q.LastError != "" {
		d.Errors = append([]errorRow{{Where: "delivery", When: stamp(q.LastErrorAt), Msg: q.LastError}}, d.Errors...)
	}
	for i, c := range s.Channels {
		r := channelRow{Via: i + 1, Name: c.Name, Kind: string(c.Kind), Queued: c.Queued, Delivered: c.Delivered,
			Retried: c.Retried, Dead: c.Dead, LastDelivery: "none since start"}
		if !c.LastSuccess.IsZero() {
			r.LastDelivery = age(now, c.LastSuccess) + " ago"
		}
		d.Channels = append(d.Channels, r)
		if c.LastError != "" {
			d.Errors = append(d.Errors, errorRow{Where: "channel " + c.Name, When: stamp(c.LastErrorAt), Msg: c.LastError})
		}
	}
	return d
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

// age formats the time from then to now for people, as `plcmail status`
// does: "4s", "12m05s", "3h05m", "2d04h".
func age(now, then time.Time) string {
	d := max(now.Sub(then), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// pageTmpl is the status page: plain HTML refreshed by the browser every
// 10 seconds, no script. html/template escapes every value, alarm texts
// from the wire included.
var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10">
<title>plcmail status</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: .2em; }
h2 { font-size: 1.1em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .25em .8em .25em 0; vertical-align: top; }
th { font-weight: 600; color: #555; }
.meta { color: #666; }
.ok { color: #17692a; font-weight: 600; }
.warn { color: #a06000; font-weight: 600; }
.bad { color: #b00020; font-weight: 600; }
.none { color: #777; font-style: italic; }
.err { font-family: ui-monospace, monospace; font-size: .9em; }
</style>
</head>
<body>
<h1>plcmail status</h1>
<p class="meta">version {{.Version}}, pid {{.PID}}, running since {{.Started}} ({{.Uptime}}), config {{.Config}}; as of {{.Now}}</p>

<h2>Serial links</h2>
{{if .Links}}<table id="links">
<tr><th>link</th><th>port</th><th>state</th><th>for</th><th>last frame</th><th>frames</th><th>frame errors</th><th>mails</th><th>duplicates</th></tr>
{{range .Links}}<tr><td>{{.Name}}</td><td>{{.Port}}</td><td class="{{.Class}}">{{.State}}</td><td>{{.Since}}</td><td>{{.LastFrame}}</td><td>{{.Frames}}</td><td>{{.FrameErrors}}</td><td>{{.Mails}}</td><td>{{.Duplicates}}</td></tr>
{{end}}</table>{{else}}<p class="none">No serial links configured.</p>{{end}}
{{template "modbus" .}}

<h2>Active alarms</h2>
{{if .Active}}<table id="active">
<tr><th>link</th><th>code</th><th>severity</th></tr>
{{range .Active}}<tr><td>{{.Link}}</td><td>{{.Code}}</td><td>{{.Severity}}</td></tr>
{{end}}</table>{{else}}<p class="none">No active alarms.</p>{{end}}

<h2>Queue</h2>
<table id="queue">
<tr><th>waiting</th><td>{{if .Queue.Waiting}}<span class="warn">{{.Queue.Waiting}}</span>, oldest {{.Queue.Oldest}} old{{else}}none{{end}}</td></tr>
<tr><th>dead letters</th><td>{{if .Queue.Dead}}<span class="bad">{{.Queue.Dead}}</span> (plcmail queue list){{else}}0{{end}}</td></tr>
{{if .Queue.Corrupt}}<tr><th>corrupt</th><td class="bad">{{.Queue.Corrupt}}, moved aside and never sent</td></tr>{{end}}
<tr><th>since start</th><td>delivered {{.Queue.Delivered}}, deferred {{.Queue.Deferred}}, dead-lettered {{.Queue.DeadLettered}}</td></tr>
<tr><th>last delivery</th><td>{{.Queue.LastDelivery}}</td></tr>
{{if .Queue.HeldFor}}<tr><th>upstream</th><td class="bad">unreachable, next attempt in {{.Queue.HeldFor}}</td></tr>{{end}}
{{range .Queue.Attempts}}<tr><th>attempts</th><td>{{.Upstream}}: {{.Result}} {{.Count}}</td></tr>
{{end}}</table>
{{if .Queue.Upstreams}}<table id="upstreams">
<tr><th>upstream (tried in order)</th><th>address</th><th>state</th><th>delivered</th><th>failed over</th><th>last error</th></tr>
{{range .Queue.Upstreams}}<tr><td>{{.Name}}</td><td>{{.Addr}}</td><td class="{{.Class}}">{{.State}}{{if .Since}} for {{.Since}}{{end}}</td><td>{{.Delivered}}</td><td>{{.FailedOver}}</td><td>{{.LastError}}</td></tr>
{{end}}</table>{{end}}
{{if .Channels}}<table id="channels">
<tr><th>fallback channel (via)</th><th>kind</th><th>waiting</th><th>delivered</th><th>retried</th><th>dead</th><th>last delivery</th></tr>
{{range .Channels}}<tr><td>{{.Via}} {{.Name}}</td><td>{{.Kind}}</td><td{{if .Queued}} class="warn"{{end}}>{{.Queued}}</td><td>{{.Delivered}}</td><td>{{.Retried}}</td><td{{if .Dead}} class="bad"{{end}}>{{.Dead}}</td><td>{{.LastDelivery}}</td></tr>
{{end}}</table>{{end}}
{{if .SMTP}}<p>SMTP listener: {{range $i, $a := .SMTP}}{{if $i}}, {{end}}{{$a}}{{end}}</p>{{end}}

<h2>Last errors</h2>
{{if .Errors}}<table id="errors">
<tr><th>where</th><th>when</th><th>error</th></tr>
{{range .Errors}}<tr><td>{{.Where}}</td><td>{{.When}}</td><td class="err">{{.Msg}}</td></tr>
{{end}}</table>{{else}}<p class="none">No errors since start.</p>{{end}}

<h2>Recent alarms</h2>
{{if .Recent}}<table id="recent">
<tr><th>time</th><th>link</th><th>code</th><th>event</th><th>severity</th><th>text</th><th>mail</th></tr>
{{range .Recent}}<tr><td>{{.Time}}</td><td>{{.Link}}</td><td>{{.Code}}</td><td>{{.Event}}</td><td>{{.Severity}}</td><td>{{.Text}}</td><td>{{if .Held}}held: {{.Held}}{{else}}queued{{end}}</td></tr>
{{end}}</table>{{else}}<p class="none">No alarm received since start.</p>{{end}}
</body>
</html>
`))
