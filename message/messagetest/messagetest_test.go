package messagetest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// fakeTB records the failures a check reports instead of failing the test.
type fakeTB struct {
	testing.TB
	errors []string
	fatal  bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.fatal = true
}

func TestCheckQPLines(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       string // part of the one error expected; "" for none
	}{
		{"quoted-printable", "K=C3=BChlung\r\n" + strings.Repeat("x", 75) + "=\r\nlast line without end", ""},
		{"76 characters", strings.Repeat("x", 76) + "\r\n", ""},
		{"77 characters", strings.Repeat("x", 77) + "\r\n", "line 0 is 77 characters"},
		{"8-bit", "ok\r\nK\xfchlung\r\n", "8-bit byte left"},
		{"bare LF", "ok\r\nbare\nok\r\n", "line 1 ends in bare LF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTB{}
			CheckQPLines(f, []byte(tc.body))
			switch {
			case tc.want == "" && len(f.errors) > 0:
				t.Errorf("errors for a good body: %q", f.errors)
			case tc.want != "" && (len(f.errors) != 1 || !strings.Contains(f.errors[0], tc.want)):
				t.Errorf("errors %q, want one with %q", f.errors, tc.want)
			}
		})
	}
}

func TestDecodeQP(t *testing.T) {
	if got := DecodeQP(t, []byte("K=C3=BChl=\r\nung\r\n")); string(got) != "Kühlung\r\n" {
		t.Errorf("decoded %q", got)
	}
	f := &fakeTB{}
	DecodeQP(f, []byte("a\x01b\r\n"))
	if !f.fatal {
		t.Error("a control character decoded without failing the test")
	}
}

func TestHeaderAndBody(t *testing.T) {
	hdr, body := HeaderAndBody(t, []byte("A: b\r\nC: d\r\n\r\nbody\r\n\r\nmore\r\n"))
	if hdr != "A: b\r\nC: d\r\n" || string(body) != "body\r\n\r\nmore\r\n" {
		t.Errorf("got %q, %q", hdr, body)
	}
	f := &fakeTB{}
	HeaderAndBody(f, []byte("A: b\r\n"))
	if !f.fatal {
		t.Error("a message without empty line split without failing the test")
	}
}

// TestRepaired8BitIsACopy: a test that changes the slice it got must not
// change what the next caller gets.
func TestRepaired8BitIsACopy(t *testing.T) {
	a := Repaired8Bit()
	want := bytes.Clone(a)
	a[0] = 'X'
	if b := Repaired8Bit(); !bytes.Equal(b, want) {
		t.Errorf("second call returned %q", b)
	}
}
