package modbus

import (
	"math"
	"testing"
	"time"
)

// TestRuleStep drives one rule through readings at given seconds and checks
// the events, against the OPC UA Part 9 semantics in the package doc.
func TestRuleStep(t *testing.T) {
	type reading struct {
		at   float64 // seconds
		v    float64
		want event
	}
	tests := []struct {
		name     string
		rule     Rule
		readings []reading
	}{
		{"high with deadband", Rule{Limit: "H", Setpoint: 10, Deadband: 2}, []reading{
			{0, 9.9, evNone}, {1, 10, evRaise}, {2, 8.5, evNone}, {3, 8, evNone}, {4, 7.9, evClear}, {5, 9.9, evNone}, {6, 10.1, evRaise},
		}},
		{"low with deadband", Rule{Limit: "LL", Setpoint: -5, Deadband: 1}, []reading{
			{0, -4, evNone}, {1, -5, evRaise}, {2, -4.5, evNone}, {3, -3.9, evClear},
		}},
		{"on-delay: a short excursion mails nothing", Rule{Limit: "H", Setpoint: 10, OnDelay: 3 * time.Second}, []reading{
			{0, 11, evNone}, {2, 11, evNone}, {2.5, 9, evNone}, {3.5, 11, evNone}, {6, 11, evNone}, {6.5, 11, evRaise},
		}},
		{"off-delay: a short return mails nothing", Rule{Limit: "L", Setpoint: 10, OffDelay: 2 * time.Second}, []reading{
			{0, 5, evRaise}, {1, 15, evNone}, {2, 5, evNone}, {3, 15, evNone}, {4.9, 15, evNone}, {5, 15, evClear},
		}},
		{"re-alarm while active", Rule{Limit: "H", Setpoint: 10, Realarm: time.Minute}, []reading{
			{0, 11, evRaise}, {59, 11, evNone}, {60, 11, evRealarm}, {61, 11, evNone}, {120, 11, evRealarm}, {121, 0, evClear}, {300, 0, evNone},
		}},
		{"boolean alarm on false", Rule{State: false}, []reading{
			{0, 1, evNone}, {1, 0, evRaise}, {2, 0, evNone}, {3, 1, evClear},
		}},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st ruleState
			var pending time.Time
			for _, rd := range tt.readings {
				now := t0.Add(time.Duration(rd.at * float64(time.Second)))
				v := value{f: rd.v, b: rd.v != 0}
				got := tt.rule.step(&st, &pending, tt.rule.condition(v, st.Active), now)
				if got != rd.want {
					t.Fatalf("at %vs value %v: event %d, want %d", rd.at, rd.v, got, rd.want)
				}
				// What evaluate does once the mail is queued.
				switch got {
				case evRaise, evClear:
					st.Active = got == evRaise
					st.Count++
					if got == evRaise {
						st.Mailed = now
					}
					pending = time.Time{}
				case evRealarm:
					st.Mailed = now
				}
			}
		})
	}
}

func TestDecodeRegisters(t *testing.T) {
	tests := []struct {
		tag  Tag
		regs []uint16
		want float64
		str  string
	}{
		{Tag{Type: "uint16", Scale: 1}, []uint16{65535}, 65535, "65535"},
		{Tag{Type: "int16", Scale: 1}, []uint16{65535}, -1, "-1"},
		{Tag{Type: "int16", Scale: 0.1, Offset: -40}, []uint16{650}, 25, "25"},
		{Tag{Type: "int32", Scale: 1}, []uint16{0xFFFF, 0xFFFE}, -2, "-2"},
		{Tag{Type: "int32", Scale: 1, LowWordFirst: true}, []uint16{0xFFFE, 0xFFFF}, -2, "-2"},
		{Tag{Type: "uint32", Scale: 1}, []uint16{0x0001, 0x86A0}, 100000, "100000"},
		{Tag{Type: "float32", Scale: 1}, []uint16{0x42AA, 0x0000}, 85, "85"},
		{Tag{Type: "float32", Scale: 1, LowWordFirst: true}, []uint16{0x0000, 0x42AA}, 85, "85"},
		{Tag{Type: "float32", Scale: 2}, []uint16{0xC0A0, 0x0000}, -10, "-10"},
	}
	for _, tt := range tests {
		v, err := decodeRegisters(&tt.tag, tt.regs)
		if err != nil {
			t.Errorf("%+v %x: %v", tt.tag, tt.regs, err)
			continue
		}
		if math.Abs(v.f-tt.want) > 1e-9 || v.mail.String() != tt.str {
			t.Errorf("%+v %x: %v (%s), want %v (%s)", tt.tag, tt.regs, v.f, v.mail.String(), tt.want, tt.str)
		}
	}
	for _, bad := range []struct {
		tag  Tag
		regs []uint16
	}{
		{Tag{Type: "float32", Scale: 1}, []uint16{0x7FC0, 0}}, // NaN
		{Tag{Type: "float32", Scale: 1}, []uint16{0x7F80, 0}}, // +Inf
		{Tag{Type: "int32", Scale: 1}, []uint16{1}},           // one register for two
	} {
		if _, err := decodeRegisters(&bad.tag, bad.regs); err == nil {
			t.Errorf("%+v %x: no error", bad.tag, bad.regs)
		}
	}
}
