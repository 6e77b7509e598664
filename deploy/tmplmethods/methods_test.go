package template

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

type stringer struct{}

func (stringer) String() string { return "s" }
func (stringer) Other() string  { return "o" }

// TestPlcmailMethod: the listed methods come back as funcs of the value
// (through a pointer too), anything else as no method.
func TestPlcmailMethod(t *testing.T) {
	tm := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := 90 * time.Minute
	var nilTime *time.Time
	for _, c := range []struct {
		v    any
		name string
		want string // "" when there must be no method
	}{
		{&tm, "Year", "2026"},
		{tm, "Format", "func(string) string"},
		{&d, "Hours", "1.5"},
		{d, "String", "1h30m0s"},
		{stringer{}, "String", "s"},
		{stringer{}, "Other", ""},
		{&tm, "Nanosecond", ""},
		{nilTime, "Year", ""},
		{&d, "Abs", ""},
	} {
		m := plcmailMethod(reflect.ValueOf(c.v), c.name)
		got := ""
		switch {
		case !m.IsValid():
		case m.Type().NumIn() == 0:
			got = fmt.Sprint(m.Call(nil)[0].Interface())
		default:
			got = m.Type().String()
		}
		if got != c.want {
			t.Errorf("%T.%s: %q, want %q", c.v, c.name, got, c.want)
		}
	}
}
