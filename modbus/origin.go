package modbus

import (
	"encoding/json"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/protocol"
)

// origin is what a Modbus alarm mail says about itself in
// spool.Submission.Origin. Sev is the key other parts read: the fallback
// channels (package channel) send an alarm of at least their severity
// right away, whatever its source; it is "sev" as in the bridge's origins.
// It has no "link", so the bridge never takes it for one of its frames.
type origin struct {
	Device string `json:"device"`
	Tag    string `json:"tag,omitempty"`
	Rule   string `json:"rule,omitempty"`
	Event  string `json:"event,omitempty"` // raise | clear; a digest has none
	Sev    string `json:"sev,omitempty"`
	Events int    `json:"events,omitempty"` // a digest: how many events it holds
}

func (o origin) encode() json.RawMessage {
	b, err := json.Marshal(o)
	if err != nil { // strings and an int
		panic(err)
	}
	return b
}

// digestOrigin is a digest's origin: its severity is the highest of its
// events', so a critical alarm held by flood control still reaches the
// channels that want critical alarms.
func digestOrigin(device string, entries []alarmmail.Entry) json.RawMessage {
	o := origin{Device: device, Events: len(entries)}
	var top protocol.Severity
	for _, e := range entries {
		if s, err := protocol.ParseSeverity(e.Severity); err == nil && (o.Sev == "" || s > top) {
			top, o.Sev = s, e.Severity
		}
	}
	return o.encode()
}
