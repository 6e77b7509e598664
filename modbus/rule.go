package modbus

import "time"

// ruleState is the durable part of one rule's state.
type ruleState struct {
	Active bool `json:"active"`
	// Count is the number of transitions (raises and clears) so far: the
	// last part of the spool key, so that a repeated transition after a
	// crash is recognised as the same one.
	Count     uint64    `json:"count"`
	Since     time.Time `json:"since"`               // time of the last transition
	Mailed    time.Time `json:"mailed"`              // last raise or re-alarm mail
	Reminders int       `json:"reminders,omitempty"` // re-alarm mails since the raise
}

// event is what an evaluation asks to mail.
type event int

const (
	evNone event = iota
	evRaise
	evClear
	evRealarm
)

// condition reports whether the rule's alarm condition holds for v, given
// whether the alarm is active: an active limit alarm stays in condition
// until the value is beyond the deadband (hysteresis).
func (r *Rule) condition(v value, active bool) bool {
	if r.Limit == "" {
		return v.b == r.State
	}
	x := v.f
	switch r.Limit {
	case "HH", "H":
		if active {
			return x >= r.Setpoint-r.Deadband
		}
		return x >= r.Setpoint
	default: // L, LL
		if active {
			return x <= r.Setpoint+r.Deadband
		}
		return x <= r.Setpoint
	}
}

// step advances a rule with one good reading at now. pending is the time
// the condition started to differ from the state (zero: it does not); it is
// not durable, so a restart starts a delay over, which can only make a
// raise or clear later, never doubled.
func (r *Rule) step(st *ruleState, pending *time.Time, cond bool, now time.Time) event {
	if cond == st.Active {
		*pending = time.Time{}
		if st.Active && r.Realarm > 0 && now.Sub(st.Mailed) >= r.Realarm {
			return evRealarm
		}
		return evNone
	}
	if pending.IsZero() {
		*pending = now
	}
	delay := r.OffDelay
	if cond {
		delay = r.OnDelay
	}
	if now.Sub(*pending) < delay {
		return evNone
	}
	if cond {
		return evRaise
	}
	return evClear
}
