package bridge

import (
	"time"

	"github.com/plcmail/plcmail/protocol"
)

// recentAlarms is how many alarm events a link keeps for the status page.
const recentAlarms = 20

// Observed is what a link reports about the traffic itself, beyond its
// counters: frames by type for metrics, the PLC's active alarms and the
// last alarm events for the status page. It is part of LinkStatus.
type Observed struct {
	// Valid frames received, by type; Frames is their sum plus any
	// gateway-type frame echoed back.
	Hellos     uint64 `json:"hellos"`
	Events     uint64 `json:"events"`
	Heartbeats uint64 `json:"heartbeats"`

	// Active is the PLC's set of active alarms as the journal has it,
	// code -> severity. Replaced, never modified in place, so that
	// snapshots share it safely.
	Active map[int]string `json:"active,omitempty"`
	// Recent are the last alarm events accepted (duplicates excluded),
	// oldest first; replaced like Active.
	Recent []AlarmEvent `json:"recent,omitempty"`
}

// AlarmEvent is one accepted EVENT frame, as the status page shows it.
type AlarmEvent struct {
	At       time.Time `json:"at"` // when the gateway received it
	Code     int       `json:"code"`
	Event    string    `json:"event"`    // raise | clear | acknowledge
	Severity string    `json:"severity"` // as the PLC sent it
	Text     string    `json:"text,omitempty"`
	Held     string    `json:"held,omitempty"` // why it waits for a digest; empty when mailed on its own
}

// noteFrame counts a valid frame by type.
func (l *Link) noteFrame(t protocol.Type) {
	l.update(func(s *LinkStatus) {
		switch t {
		case protocol.TypeHello:
			s.Hellos++
		case protocol.TypeEvent:
			s.Events++
		case protocol.TypeHeartbeat:
			s.Heartbeats++
		}
	})
}

// noteActive refreshes the active set, which the HELLO or EVENT just
// handled may have changed. Only the link's goroutine writes
// l.status.Active, so it may read it without the lock.
func (l *Link) noteActive() {
	if sameActive(l.status.Active, l.st.Active) {
		return
	}
	active := cloneActive(l.st.Active)
	l.update(func(s *LinkStatus) { s.Active = active })
}

// noteEvent adds an accepted event to the recent ones, before its ACK, so
// that a status read after the ACK shows it.
func (l *Link) noteEvent(r *record) {
	e := AlarmEvent{At: r.At, Code: r.Code, Event: r.Event, Severity: r.Sev, Text: r.Text, Held: r.Held}
	l.noteActive()
	l.update(func(s *LinkStatus) {
		keep := s.Recent[max(0, len(s.Recent)-recentAlarms+1):]
		s.Recent = append(append(make([]AlarmEvent, 0, len(keep)+1), keep...), e)
	})
}

func cloneActive(m map[int]string) map[int]string {
	if len(m) == 0 {
		return nil
	}
	return maps(m) // journal.go
}

func sameActive(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
