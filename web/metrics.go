package web

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/plcmail/plcmail/modbus"
)

// The Prometheus text exposition format (version 0.0.4) is written by hand:
// it is a dozen lines of rules (HELP/TYPE per family, escaped label values,
// one sample per line), and the official client_golang would add its
// protobuf and runtime collectors to a binary that has to fit on a router.
// The tests parse the output with Prometheus' own parser (expfmt).

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// expo writes metric families; a family is only written once it has a
// sample, so a gateway without serial links has no empty link families.
type expo struct {
	w               *bufio.Writer
	name, typ, help string
	headerDone      bool
}

// family starts the family name (type "gauge" or "counter").
func (e *expo) family(name, typ, help string) {
	e.name, e.typ, e.help, e.headerDone = name, typ, help, false
}

// sample writes one sample of the current family; labels are name, value
// pairs.
func (e *expo) sample(v float64, labels ...string) {
	if !e.headerDone {
		e.w.WriteString("# HELP " + e.name + " " + escapeHelp(e.help) + "\n")
		e.w.WriteString("# TYPE " + e.name + " " + e.typ + "\n")
		e.headerDone = true
	}
	e.w.WriteString(e.name)
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			e.w.WriteByte('{')
		} else {
			e.w.WriteByte(',')
		}
		e.w.WriteString(labels[i] + `="` + escapeLabel(labels[i+1]) + `"`)
		if i+2 >= len(labels) {
			e.w.WriteByte('}')
		}
	}
	e.w.WriteByte(' ')
	e.w.WriteString(formatValue(v))
	e.w.WriteByte('\n')
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// escapeLabel escapes a label value; values come from the configuration
// (link names, upstream hosts) and must not break the line structure.
func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// WriteMetrics writes st in the Prometheus text format. Names follow the
// Prometheus conventions: a plcmail_ prefix, base units (seconds),
// _total for counters, _timestamp_seconds for points in time. Counters
// count since the gateway started; Prometheus' rate() handles the reset
// at a restart.
func WriteMetrics(w io.Writer, st *Status) error {
	bw := bufio.NewWriter(w)
	e := &expo{w: bw}

	e.family("plcmail_build_info", "gauge", "Build of the running gateway; always 1.")
	e.sample(1, "version", st.Version, "commit", st.Commit, "goversion", st.GoVersion)
	e.family("plcmail_start_time_seconds", "gauge", "When the gateway started, in seconds since the epoch.")
	e.sample(seconds(st.Started))

	q := &st.Queue
	e.family("plcmail_queue_messages", "gauge", "Messages waiting for delivery in the spool.")
	e.sample(float64(st.Waiting()))
	e.family("plcmail_queue_oldest_message_timestamp_seconds", "gauge", "Creation time of the oldest waiting message; absent when the queue is empty.")
	if oldest := st.OldestWaiting(); !oldest.IsZero() && st.Waiting() > 0 {
		e.sample(seconds(oldest))
	}
	e.family("plcmail_dead_letters", "gauge", "Messages that failed for good and wait in the dead-letter area (plcmail queue list).")
	e.sample(float64(st.Dead))
	e.family("plcmail_spool_corrupt_messages", "gauge", "Spool files found corrupt and moved aside; they are never sent.")
	e.sample(float64(st.Corrupt))
	e.family("plcmail_messages_delivered_total", "counter", "Messages the upstream accepted for every recipient.")
	e.sample(float64(q.Delivered))
	e.family("plcmail_messages_dead_lettered_total", "counter", "Messages moved to the dead letters (refused for good or expired).")
	e.sample(float64(q.DeadLettered))
	e.family("plcmail_delivery_attempts_total", "counter", "Delivery attempts by upstream and result (accepted, deferred, rejected, conn_error).")
	for _, a := range q.Attempts {
		e.sample(float64(a.Count), "upstream", a.Upstream, "result", a.Result)
	}
	e.family("plcmail_last_delivery_timestamp_seconds", "gauge", "When the upstream last accepted a message; absent before the first.")
	if !q.LastSuccess.IsZero() {
		e.sample(seconds(q.LastSuccess))
	}
	e.family("plcmail_upstream_held", "gauge", "1 while the upstream is unreachable and delivery waits for the next probe.")
	e.sample(b2f(q.HoldUntil.After(st.Now)))
	e.family("plcmail_upstream_up", "gauge", "Per [[upstream]] entry: 0 while it is held down after failures, else 1.")
	for _, u := range q.Upstreams {
		e.sample(b2f(u.State != "down"), "upstream", u.Name, "addr", u.Addr)
	}
	e.family("plcmail_upstream_failed_over_total", "counter", "Messages sent on from an [[upstream]] entry to the next one.")
	for _, u := range q.Upstreams {
		e.sample(float64(u.FailedOver), "upstream", u.Name, "addr", u.Addr)
	}

	e.family("plcmail_channel_deliveries_total", "counter", "Fallback channel ([[channel]]) attempts by result: delivered, retried (failed, tried again), dead (given up).")
	for _, c := range st.Channels {
		for _, r := range []struct {
			result string
			n      uint64
		}{{"delivered", c.Delivered}, {"retried", c.Retried}, {"dead", c.Dead}} {
			e.sample(float64(r.n), "channel", c.Name, "result", r.result)
		}
	}
	e.family("plcmail_channel_queue_records", "gauge", "Fallback channel deliveries waiting in SPOOL/channels.")
	for _, c := range st.Channels {
		e.sample(float64(c.Queued), "channel", c.Name)
	}

	e.family("plcmail_link_up", "gauge", "1 when the serial port is open and the PLC was heard within heartbeat_timeout; for a link modbus/DEVICE, when its last poll was answered.")
	for _, l := range st.Links {
		e.sample(b2f(l.Connected && !l.Offline), "link", l.Name)
	}
	modbusSamples(e, st, func(d *modbus.DeviceStatus) float64 { return b2f(d.Up && !d.Offline) })
	e.family("plcmail_link_connected", "gauge", "1 when the serial port of the link is open.")
	for _, l := range st.Links {
		e.sample(b2f(l.Connected), "link", l.Name)
	}
	e.family("plcmail_link_last_frame_timestamp_seconds", "gauge", "When the last valid frame arrived on the link; absent before the first.")
	for _, l := range st.Links {
		if !l.LastFrame.IsZero() {
			e.sample(seconds(l.LastFrame), "link", l.Name)
		}
	}
	e.family("plcmail_frames_total", "counter", "Valid frames by type: hello, event, heartbeat received from the PLC; ack, nak, delivery sent to it.")
	for _, l := range st.Links {
		for _, f := range []struct {
			typ string
			n   uint64
		}{{"hello", l.Hellos}, {"event", l.Events}, {"heartbeat", l.Heartbeats}, {"ack", l.Acks}, {"nak", l.Naks}, {"delivery", l.Deliveries}} {
			e.sample(float64(f.n), "link", l.Name, "type", f.typ)
		}
	}
	e.family("plcmail_frame_errors_total", "counter", "Frames lost to CRC, COBS, length, version, type or payload errors.")
	for _, l := range st.Links {
		e.sample(float64(l.FrameErrors), "link", l.Name)
	}
	e.family("plcmail_duplicate_frames_total", "counter", "Retransmitted frames ACKed as duplicates (not mailed again).")
	for _, l := range st.Links {
		e.sample(float64(l.Duplicates), "link", l.Name)
	}
	e.family("plcmail_busy_frames_total", "counter", "Frames refused with NAK busy because nothing could be stored.")
	for _, l := range st.Links {
		e.sample(float64(l.Busy), "link", l.Name)
	}
	e.family("plcmail_link_reconnects_total", "counter", "Times the serial port was reopened.")
	for _, l := range st.Links {
		e.sample(float64(l.Reconnects), "link", l.Name)
	}
	e.family("plcmail_alarm_mails_total", "counter", "Mails queued for single alarm events.")
	for _, l := range st.Links {
		e.sample(float64(l.Mailed), "link", l.Name)
	}
	modbusSamples(e, st, func(d *modbus.DeviceStatus) float64 { return float64(d.Mailed) })
	e.family("plcmail_digest_mails_total", "counter", "Digest mails queued for events held by flood control.")
	for _, l := range st.Links {
		e.sample(float64(l.Digests), "link", l.Name)
	}
	modbusSamples(e, st, func(d *modbus.DeviceStatus) float64 { return float64(d.Digests) })
	e.family("plcmail_active_alarms", "gauge", "Alarms the PLC reports active (for modbus/DEVICE: the active alarm rules of its tags).")
	for _, l := range st.Links {
		e.sample(float64(len(l.Active)), "link", l.Name)
	}
	modbusSamples(e, st, func(d *modbus.DeviceStatus) float64 { return float64(len(d.Active)) })
	e.family("plcmail_unmailed_events", "gauge", "ACKed events whose mail is not in the spool yet (the spool write is failing).")
	for _, l := range st.Links {
		e.sample(float64(l.Unmailed), "link", l.Name)
	}
	writeModbusMetrics(e, st) // modbus.go
	return bw.Flush()
}
