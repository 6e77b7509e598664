package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const validBase = `
[gateway]
hostname  = "gw.example.com"
spool_dir = "/var/spool/plcmail"

[upstream]
host = "smtp.example.com"
port = 587
security = "starttls"
auth = "none"
from = "plc@example.com"
`

func TestParseValid(t *testing.T) {
	c, err := Parse("t.toml", []byte(validBase))
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.Port != 587 || c.Queue.Lifetime.D() != 5*24*time.Hour {
		t.Errorf("defaults not applied: %+v %+v", c.Upstream, c.Queue)
	}
	if c.SMTP != nil {
		t.Error("listener must be off when [smtp] is absent")
	}
}

func TestImplicitTLSDefaultsTo465(t *testing.T) {
	src := strings.Replace(validBase, "port = 587\nsecurity = \"starttls\"", `security = "tls"`, 1)
	c, err := Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstream.Port != 465 {
		t.Errorf("port = %d, want 465 for implicit TLS without explicit port", c.Upstream.Port)
	}
}

// TestErrorsNameKeyAndLine checks each class of mistake the issue lists: the
// error must name the key and the line it is on.
func TestErrorsNameKeyAndLine(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("pw\n"), 0o644)
	missing := filepath.Join(dir, "missing.secret")
	empty := filepath.Join(dir, "empty.secret")
	os.WriteFile(empty, nil, 0o600)

	tests := []struct {
		name string
		src  string
		want string // substring of one error line, "FILE:LINE: key: msg"
	}{
		{"unknown key", validBase + "colour = 1\n", "t.toml:12: upstream.colour: unknown key"},
		{"unknown section", validBase + "[foo]\nbar = 1\n", "t.toml:12: foo: unknown section"},
		{"unknown key in array table", validBase + "[[serial]]\nname = \"a\"\ndevice = \"/dev/x\"\nbaudrate = 9600\n", "t.toml:15: serial[0].baudrate: unknown key (did you mean baud?)"},
		{"wrong type", strings.Replace(validBase, "port = 587", `port = "587"`, 1), "t.toml:8: upstream.port:"},
		{"port zero", strings.Replace(validBase, "port = 587", "port = 0", 1), "t.toml:8: upstream.port: must be 1..65535"},
		{"unknown security", strings.Replace(validBase, `"starttls"`, `"ssl"`, 1), "t.toml:9: upstream.security: must be"},
		{"cleartext to remote host", strings.Replace(validBase, `"starttls"`, `"none"`, 1), "t.toml:9: upstream.security: \"none\" sends mail and credentials in clear"},
		{"missing host", strings.Replace(validBase, `host = "smtp.example.com"`, "", 1), "t.toml:6: upstream.host: required"},
		{"unreadable password_file", strings.Replace(validBase, `auth = "none"`, `username = "u"`+"\npassword_file = \""+missing+"\"", 1), "t.toml:11: upstream.password_file: stat " + missing},
		{"world-readable password_file", strings.Replace(validBase, `auth = "none"`, `username = "u"`+"\npassword_file = \""+open+"\"", 1), "t.toml:11: upstream.password_file: " + open + " is readable by group or others (mode 0644)"},
		{"empty password_file", strings.Replace(validBase, `auth = "none"`, `username = "u"`+"\npassword_file = \""+empty+"\"", 1), "t.toml:11: upstream.password_file: " + empty + " is empty"},
		{"bad duration", validBase + "[queue]\nlifetime = \"five days\"\n", "t.toml:13: queue.lifetime:"},
		{"bad fingerprint", strings.Replace(validBase, `auth = "none"`, "auth = \"none\"\ntls_fingerprints = [\"ab:cd\"]", 1), "t.toml:11: upstream.tls_fingerprints[0]: fingerprint"},
		{"syntax error", validBase + "[gateway\n", "t.toml:12:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tt.src))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error\n%v\ndoes not contain\n%s", err, tt.want)
			}
		})
	}
}

func TestAllErrorsReportedInLineOrder(t *testing.T) {
	src := validBase + "nope = 1\n[queue]\nbatch_size = 0\n"
	src = strings.Replace(src, "port = 587", "port = 70000", 1)
	_, err := Parse("t.toml", []byte(src))
	es := AsErrors(err)
	if len(es) != 3 {
		t.Fatalf("got %d errors, want 3:\n%v", len(es), err)
	}
	for i, want := range []int{8, 12, 14} {
		if es[i].Line != want {
			t.Errorf("error %d at line %d, want %d: %v", i, es[i].Line, want, es[i])
		}
	}
}

func TestSecretFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s")
	os.WriteFile(p, []byte("hunter2\r\nsecond line ignored\n"), 0o600)
	got, err := ReadSecret(p)
	if err != nil || got != "hunter2" {
		t.Fatalf("ReadSecret = %q, %v", got, err)
	}
	os.Chmod(p, 0o640)
	if _, err := ReadSecret(p); err == nil {
		t.Fatal("group-readable secret accepted")
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30s": 30 * time.Second, "5d": 120 * time.Hour, "1.5h": 90 * time.Minute} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("%q -> %v, %v", in, d.D(), err)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Error("accepted \"soon\"")
	}
}

func TestPositions(t *testing.T) {
	src := `# comment [not.a.table]
[gateway]
hostname = "a # not a comment"
[[alarm]]
code = 1
body = """
x = not a key
[not.a.table]
"""
to = [
  "a=b@example.com",
]
[[alarm]]
code = 2
[smtp]
listen = ["127.0.0.1:25"]
"quoted key" = 1
tls.cert = "x"
`
	p := indexPositions([]byte(src))
	for path, want := range map[string]int{
		"gateway.hostname": 3, "alarm[0]": 4, "alarm[0].code": 5, "alarm[0].body": 6,
		"alarm[0].to": 10, "alarm[1].code": 14, "smtp.listen": 16, "smtp.quoted key": 17,
		"alarm[1].subject": 13, // absent key: its table
		"smtp.tls":         18, // the table of a dotted key
	} {
		if got := p.line2(path); got != want {
			t.Errorf("line2(%q) = %d, want %d", path, got, want)
		}
	}
	if p.has("not.a.table") || p.has("alarm[0].x") {
		t.Error("text inside a multi-line string was taken for a key or table")
	}
}

// TestEveryDecodeProblem: a wrong type anywhere (a section, an array of
// tables, an element, a sub-table) is reported at its key, and decoding goes
// on with the other keys, so one Parse lists them all.
func TestEveryDecodeProblem(t *testing.T) {
	src := `gateway = 5
[upstream]
host = "127.0.0.1"
security = "none"
auth = "none"
from = "plc@example.com"
tls_fingerprints = [1]
timeout = 10:00:00
[queue]
lifetime = true
[[serial]]
name = "a"
device = "/dev/x"
stop_bits = true
[[serial]]
name = "b"
device = "/dev/y"
nope = 1
[smtp]
listen = ["127.0.0.1:2525"]
[[smtp.account]]
username = "u"
password = "x"
[flood]
holdoff = [1]
[[alarm]]
code = 1
to = ["a@example.com", 2]
`
	_, err := Parse("t.toml", []byte(src))
	want := []string{
		"t.toml:1: gateway: must be a table, not an integer",
		"t.toml:7: upstream.tls_fingerprints: must be an array of strings, not an array holding an integer",
		`t.toml:8: upstream.timeout: must be a duration in quotes (e.g. "30s"), not a date or time`,
		`t.toml:10: queue.lifetime: must be a duration in quotes (e.g. "30s"), not a boolean`,
		"t.toml:14: serial[0].stop_bits: stop_bits must be 1, 1.5 or 2, not true",
		"t.toml:18: serial[1].nope: unknown key",
		"t.toml:21: smtp.account[0].password_file: required: a file holding the password (mode 0600)",
		"t.toml:23: smtp.account[0].password: unknown key (did you mean password_file?)",
		`t.toml:25: flood.holdoff: must be a duration in quotes (e.g. "30s"), not an array`,
		"t.toml:28: alarm[0].to: must be an array of strings, not an array holding an integer",
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}

	// A table where a value belongs, and an array of something else than
	// tables where [[serial]] belongs.
	_, err = Parse("t.toml", []byte("serial = [1]"+validBase+"[queue.lifetime]\nx = 1\n[alarm]\ncode = 1\n"))
	want = []string{
		"t.toml:1: serial[0]: must be a table, not an integer",
		`t.toml:12: queue.lifetime: must be a duration in quotes (e.g. "30s"), not a table`,
		"t.toml:14: alarm: must be an array of tables: write [[alarm]], not [alarm]",
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
}

// TestEncoding: UTF-16 (with either byte order mark, or without one) and NUL
// bytes are refused with a message saying what to do; a UTF-8 byte order
// mark is accepted and does not shift the lines.
func TestEncoding(t *testing.T) {
	utf16 := func(s string, bigEndian, bom bool) []byte {
		var b []byte
		if bom {
			if bigEndian {
				b = append(b, 0xFE, 0xFF)
			} else {
				b = append(b, 0xFF, 0xFE)
			}
		}
		for _, r := range []byte(s) {
			if bigEndian {
				b = append(b, 0, r)
			} else {
				b = append(b, r, 0)
			}
		}
		return b
	}
	for name, data := range map[string][]byte{
		"utf-16le":        utf16(validBase, false, true),
		"utf-16be":        utf16(validBase, true, true),
		"utf-16le no bom": utf16(validBase, false, false),
		"bom only":        {0xFF, 0xFE},
	} {
		_, err := Parse("t.toml", data)
		if err == nil || err.Error() != "t.toml:1: file is UTF-16; save it as UTF-8" {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err := Parse("t.toml", []byte(validBase+"# \x00\n"))
	if err == nil || err.Error() != "t.toml:12: file contains a NUL byte; save it as UTF-8 text" {
		t.Errorf("NUL: %v", err)
	}
	bom := "\xEF\xBB\xBF[gateway]\nhostname = \"gw.example.com\"\n" + strings.TrimPrefix(validBase, "\n[gateway]\nhostname  = \"gw.example.com\"\n") + "nope = 1\n"
	_, err = Parse("t.toml", []byte(bom))
	if err == nil || err.Error() != "t.toml:11: upstream.nope: unknown key" {
		t.Errorf("UTF-8 BOM: %v", err)
	}
}

// FuzzParseAll: whatever the bytes, ParseAll does not panic (the decoder
// walks structs by reflection), and a nil configuration comes with a reason.
func FuzzParseAll(f *testing.F) {
	f.Add([]byte(validBase))
	f.Add([]byte("gateway = 5\nserial = [1]\n[[alarm]]\ncode = \"x\"\nto = [1]\n[smtp]\naccount = 3\n"))
	files, _ := filepath.Glob("../cmd/plcmail/testdata/check/*.toml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, errs := ParseAll("f.toml", data)
		if c == nil && len(errs) == 0 {
			t.Fatal("nil configuration without a problem")
		}
		for _, e := range errs {
			if e.File != "f.toml" || strings.Contains(e.Msg, "\n") && !strings.Contains(e.Msg, "template") {
				t.Fatalf("problem %q", e.Error())
			}
		}
	})
}
