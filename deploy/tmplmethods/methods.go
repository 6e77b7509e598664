// Package template is not imported by anything: methods.go is added to
// the standard library's text/template by overlay.sh, for router builds
// (`make openwrt`, `make cross`, bench/size.sh).
//
// text/template finds the method of a template's {{.Name}} with
// reflect.Value.MethodByName and a name known only at run time. That one
// call makes the linker keep every exported method of every type the binary
// can reflect on, used or not: 1.4 MB of a 12 MB MIPS binary. The overlay
// replaces the call with plcmailMethod below, which knows the methods
// plcmail's templates call (time.Time's and time.Duration's, and String)
// and hands them over as plain func values, which the linker sees.
//
// Every other method is missing in such a build. alarmmail checks every
// template for names that are neither a field of the mail data nor one of
// these methods in every build, so `plcmail check` rejects the same
// templates on a router and on a PC; TestTemplateOverlay in package deploy
// proves the two lists agree.
//
// The package is named template, as the directory it joins, and compiles
// on its own, so that vet and its test check it like any other file.
package template

import (
	"fmt"
	"reflect"
	"time"
)

// plcmailMethod returns v's method name as a func value, or the zero Value
// when it is not one of the methods router builds keep. v is what
// text/template passed to MethodByName: usually a pointer to the value.
func plcmailMethod(v reflect.Value, name string) reflect.Value {
	if !v.IsValid() || !v.CanInterface() {
		return reflect.Value{}
	}
	x := v.Interface()
	switch p := x.(type) {
	case *time.Time:
		if p == nil {
			return reflect.Value{}
		}
		x = *p
	case *time.Duration:
		if p == nil {
			return reflect.Value{}
		}
		x = *p
	}
	var f any
	switch t := x.(type) {
	case time.Time:
		switch name {
		case "Format":
			f = t.Format
		case "IsZero":
			f = t.IsZero
		case "UTC":
			f = t.UTC
		case "Local":
			f = t.Local
		case "Unix":
			f = t.Unix
		case "Year":
			f = t.Year
		case "Month":
			f = t.Month
		case "Day":
			f = t.Day
		case "Hour":
			f = t.Hour
		case "Minute":
			f = t.Minute
		case "Second":
			f = t.Second
		case "Weekday":
			f = t.Weekday
		}
	case time.Duration:
		switch name {
		case "Hours":
			f = t.Hours
		case "Minutes":
			f = t.Minutes
		case "Seconds":
			f = t.Seconds
		case "Milliseconds":
			f = t.Milliseconds
		case "Round":
			f = t.Round
		case "Truncate":
			f = t.Truncate
		}
	}
	if s, ok := x.(fmt.Stringer); ok && f == nil && name == "String" {
		f = s.String
	}
	if f == nil {
		return reflect.Value{}
	}
	return reflect.ValueOf(f)
}
