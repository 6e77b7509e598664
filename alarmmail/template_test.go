package alarmmail

import (
	"bytes"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"

	"github.com/plcmail/plcmail/config"
)

const templateConfig = `
[gateway]
hostname = "gw.example.com"
site = "Plant 2"
[upstream]
host = "127.0.0.1"
security = "none"
auth = "none"
from = "plc@example.com"

[[serial]]
name = "press-1"
device = "/dev/ttyUSB0"
label = "Press 1"

[[alarm]]
code = 17
name = "Hydraulic pressure low"
subject = "{{.Name}} {{.Event}}: {{.Text}}"
body = """
Pressure {{index .Values 0}} bar on {{.Label}}.
Text: {{.Text}}
"""
html = "<p>{{.Text}}</p>"
to = ["ops@example.com"]
cc = ["boss@example.com"]
severity = "critical"

[[alarm]]
default = true
to = ["all@example.com"]
`

func compile(t *testing.T, src string) (*config.Config, *Templates) {
	t.Helper()
	cfg, err := config.Parse("plcmail.toml", []byte(src))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	tm, err := CompileTemplates(cfg)
	if err != nil {
		t.Fatalf("CompileTemplates: %v", err)
	}
	return cfg, tm
}

func parseMsg(t *testing.T, data []byte) (*mail.Message, string) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatalf("bare LF in message:\n%s", data)
	}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ReadMessage: %v\n%s", err, data)
	}
	body, _ := io.ReadAll(m.Body)
	return m, string(body)
}

func decodeHeader(t *testing.T, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		t.Fatalf("decode %q: %v", v, err)
	}
	return s
}

func TestRenderAlarm(t *testing.T) {
	_, tm := compile(t, templateConfig)
	d := SampleData(KindAlarm)
	d.Link, d.Label, d.Code, d.Severity, d.Text = "press-1", "Press 1", 17, "warning", "P1 low"
	d.Values = []Value{{Kind: "float32", F: 87.5}}
	sub, err := tm.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	if sub.From != "plc@example.com" || strings.Join(sub.To, ",") != "ops@example.com,boss@example.com" {
		t.Errorf("envelope = from %q to %q", sub.From, sub.To)
	}
	m, body := parseMsg(t, sub.Data)
	if got := decodeHeader(t, m.Header.Get("Subject")); got != "Hydraulic pressure low raise: P1 low" {
		t.Errorf("Subject = %q", got)
	}
	if !strings.HasSuffix(strings.Trim(m.Header.Get("Message-Id"), "<>"), "@gw.example.com") {
		t.Errorf("Message-ID = %q", m.Header.Get("Message-Id"))
	}
	if m.Header.Get("Date") == "" || m.Header.Get("Cc") == "" {
		t.Errorf("missing Date or Cc: %v", m.Header)
	}
	if !strings.Contains(m.Header.Get("Content-Type"), "multipart/alternative") {
		t.Errorf("Content-Type = %q, want multipart/alternative (html set)", m.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "Pressure 87.5 bar on Press 1.") || !strings.Contains(body, "<p>P1 low</p>") {
		t.Errorf("body:\n%s", body)
	}
}

func TestRenderDefaultForUnknownCode(t *testing.T) {
	_, tm := compile(t, templateConfig)
	d := SampleData(KindAlarm)
	d.Link, d.Code, d.Severity = "press-1", 999, "info"
	sub, err := tm.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sub.To, ",") != "all@example.com" {
		t.Errorf("To = %v", sub.To)
	}
	m, body := parseMsg(t, sub.Data)
	if got := decodeHeader(t, m.Header.Get("Subject")); !strings.Contains(got, "Alarm 999: raise") {
		t.Errorf("Subject = %q", got)
	}
	if !strings.Contains(body, "code 999") {
		t.Errorf("body:\n%s", body)
	}
}

// TestHeaderInjection proves that text from the wire can neither add a
// header nor a recipient, whatever control bytes it carries.
func TestHeaderInjection(t *testing.T) {
	_, tm := compile(t, templateConfig)
	for _, text := range []string{
		"x\r\nBcc: evil@x",
		"x\nBcc: evil@x",
		"x\rBcc: evil@x",
		"x\r\n\r\nforged body",
		"\x00\x1b[31mred\x7f\u2028Bcc: evil@x",
		"\xff\xfe\r\nBcc: evil@x",
	} {
		d := SampleData(KindAlarm)
		d.Link, d.Code, d.Text = "press-1", 17, text
		d.Values = []Value{{Kind: "int32", Int: 1}}
		sub, err := tm.Render(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range sub.To {
			if strings.Contains(r, "evil") {
				t.Errorf("%q: envelope recipient %q", text, r)
			}
		}
		m, _ := parseMsg(t, sub.Data)
		if m.Header.Get("Bcc") != "" {
			t.Errorf("%q: Bcc header created", text)
		}
		hdr := string(sub.Data[:bytes.Index(sub.Data, []byte("\r\n\r\n"))])
		for _, line := range strings.Split(hdr, "\r\n") {
			if strings.HasPrefix(strings.ToLower(line), "bcc") || strings.HasPrefix(line, "forged") {
				t.Errorf("%q: header line %q", text, line)
			}
		}
		subj := decodeHeader(t, m.Header.Get("Subject"))
		if strings.ContainsAny(subj, "\r\n\x00\x1b\x7f") {
			t.Errorf("%q: subject %q keeps control characters", text, subj)
		}
	}
}

func TestSubjectNonASCIIEncoded(t *testing.T) {
	_, tm := compile(t, templateConfig)
	d := SampleData(KindAlarm)
	d.Link, d.Code, d.Text = "press-1", 17, "Öldruck über 90 °C"
	d.Values = []Value{{Kind: "int32", Int: 1}}
	sub, err := tm.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range sub.Data[:bytes.Index(sub.Data, []byte("\r\n\r\n"))] {
		if b >= 0x80 {
			t.Fatalf("raw 8-bit byte in header:\n%s", sub.Data)
		}
	}
	m, _ := parseMsg(t, sub.Data)
	if got := decodeHeader(t, m.Header.Get("Subject")); !strings.Contains(got, "Öldruck über 90 °C") {
		t.Errorf("Subject = %q", got)
	}
}

func TestTemplateErrorsLocated(t *testing.T) {
	src := strings.Replace(templateConfig, `subject = "{{.Name}} {{.Event}}: {{.Text}}"`, `subject = "{{.Name}"`, 1)
	src = strings.Replace(src, `html = "<p>{{.Text}}</p>"`, `html = "<p>{{.Nope}}</p>"`, 1)
	cfg, err := config.Parse("plcmail.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	_, err = CompileTemplates(cfg)
	es := config.AsErrors(err)
	if len(es) != 2 {
		t.Fatalf("errors = %v", err)
	}
	// The subject's parse error does not keep the html, which parsed,
	// from being run with sample data: both problems show in one run.
	if es[0].Key != "alarm[0].subject" || es[0].Line != cfg.Line("alarm[0].subject") || es[0].Line == 0 {
		t.Errorf("error = %+v", es[0])
	}
	if es[1].Key != "alarm[0].html" || es[1].Line != cfg.Line("alarm[0].html") || !strings.Contains(es[1].Msg, "Nope") {
		t.Errorf("error = %+v", es[1])
	}
	src = strings.Replace(templateConfig, `html = "<p>{{.Text}}</p>"`, `html = "<p>{{.Nope}}</p>"`, 1)
	cfg, _ = config.Parse("plcmail.toml", []byte(src))
	_, err = CompileTemplates(cfg)
	es = config.AsErrors(err)
	if len(es) != 1 || es[0].Key != "alarm[0].html" || !strings.Contains(es[0].Msg, "Nope") {
		t.Fatalf("errors = %v", err)
	}
	if want := "plcmail.toml:"; !strings.HasPrefix(es[0].Error(), want) {
		t.Errorf("Error() = %q", es[0].Error())
	}
}

func TestTwoDefaultsRefused(t *testing.T) {
	src := templateConfig + "\n[[alarm]]\ndefault = true\nto = [\"x@example.com\"]\n"
	cfg, err := config.Parse("plcmail.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	_, err = CompileTemplates(cfg)
	if es := config.AsErrors(err); len(es) != 1 || es[0].Key != "alarm[2].default" {
		t.Fatalf("err = %v", err)
	}
}

func TestRuntimeTemplateFailureFallsBack(t *testing.T) {
	_, tm := compile(t, templateConfig)
	d := SampleData(KindAlarm)
	d.Link, d.Code, d.Values = "press-1", 17, nil // index .Values 0 fails
	sub, err := tm.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	_, body := parseMsg(t, sub.Data)
	if !strings.Contains(body, "configured template failed") || !strings.Contains(body, "code 17") {
		t.Errorf("body:\n%s", body)
	}
}

func TestNoticesAndDigest(t *testing.T) {
	_, tm := compile(t, templateConfig)
	for _, kind := range []string{KindOffline, KindOnline, KindRestart, KindDigest} {
		d := SampleData(kind)
		d.Link = "press-1"
		d.Digest = []Entry{{Code: 17, Event: "raise"}, {Code: 5, Event: "clear", Text: "a\r\nb"}}
		sub, err := tm.Render(d)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		m, body := parseMsg(t, sub.Data)
		subj := decodeHeader(t, m.Header.Get("Subject"))
		t.Logf("%s: %s -> %v", kind, subj, sub.To)
		switch kind {
		case KindDigest:
			if strings.Join(sub.To, ",") != "all@example.com,ops@example.com,boss@example.com" {
				t.Errorf("digest To = %v", sub.To)
			}
			if !strings.Contains(subj, "2 alarm events") || !strings.Contains(body, "Hydraulic pressure low: raise") ||
				!strings.Contains(body, "Alarm 5: clear") {
				t.Errorf("digest:\n%s", body)
			}
		default:
			if strings.Join(sub.To, ",") != "ops@example.com,all@example.com" {
				t.Errorf("%s To = %v", kind, sub.To)
			}
		}
	}
}

func TestSanitizeHeader(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\nb":         "a b",
		"  a \t\t b  ":   "a b",
		"\x00x\x1fy\x7f": "x y",
		"ok":             "ok",
	} {
		if got := SanitizeHeader(in); got != want {
			t.Errorf("SanitizeHeader(%q) = %q, want %q", in, got, want)
		}
	}
	long := strings.Repeat("x", 1000)
	if got := SanitizeHeader(long); len([]rune(got)) > maxSubjectRunes+1 {
		t.Errorf("long subject kept %d runes", len([]rune(got)))
	}
}

func TestAddressesCheckedLikeTheMessageBuilder(t *testing.T) {
	src := strings.Replace(templateConfig, `cc = ["boss@example.com"]`, `cc = ["boss@@example.com"]`, 1)
	cfg, err := config.Parse("plcmail.toml", []byte(src))
	if err != nil {
		t.Skipf("config validation already refuses it: %v", err)
	}
	_, err = CompileTemplates(cfg)
	if es := config.AsErrors(err); len(es) != 1 || es[0].Key != "alarm[0].cc[0]" || es[0].Line == 0 {
		t.Fatalf("err = %v", err)
	}
}

// TestCompileWithoutDefaultEntry: a configuration with neither a default
// entry nor the sample data's code 17 compiles (trying its templates with
// the sample once dereferenced the default template before it was set),
// and codes it does not configure use the built-in template, to every
// [[alarm]] recipient.
func TestCompileWithoutDefaultEntry(t *testing.T) {
	src := templateConfig[:strings.Index(templateConfig, "[[alarm]]")] + `
[[alarm]]
code = 1
subject = "{{.Name}}{{range .Active}} {{.Name}}{{end}}"
to = ["ops@example.com"]
`
	_, tm := compile(t, src)
	d := SampleData(KindAlarm)
	d.Code = 5
	m, err := tm.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	if msg, _ := parseMsg(t, m.Data); !strings.Contains(msg.Header.Get("Subject"), "Alarm 5: raise") ||
		strings.Join(m.To, ",") != "ops@example.com" {
		t.Errorf("subject %q to %v", msg.Header.Get("Subject"), m.To)
	}
}

// A digest of held Modbus events names the tag, value, unit and limit
// instead of the boot and event numbers, which a polled tag does not have.
func TestDigestModbusEntries(t *testing.T) {
	_, tm := compile(t, templateConfig)
	d := SampleData(KindDigest)
	d.Link = "modbus/tank"
	d.Digest = []Entry{
		{Code: 17, Event: "raise", Severity: "critical", Values: []Value{{Kind: "float32", F: 97.5}}, Tag: "level", Unit: "%", Limit: "HH", Seq: 3, Reason: "hold-off"},
		{Code: 5, Event: "clear", Values: []Value{{Kind: "bool", Bool: false}}, Tag: "door", Seq: 2, Reason: "rate limit"},
		{Code: 5, Event: "raise", Values: []Value{{Kind: "int32", Int: 4}}, Boot: 7, Seq: 9, Reason: "hold-off"},
	}
	sub, err := tm.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	_, qp := parseMsg(t, sub.Data)
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(qp)))
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, want := range []string{
		"Hydraulic pressure low: raise [critical] (level = 97.5 %, HH limit), hold-off",
		"Alarm 5: clear [] (door = false), rate limit",
		"Alarm 5: raise [] (4)  boot 7 event 9, hold-off",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("digest lacks %q:\n%s", want, body)
		}
	}
	if strings.Count(body, "boot ") != 1 {
		t.Errorf("boot numbers shown for Modbus entries:\n%s", body)
	}
}

// TestDigestModbusWithoutCode: a Modbus alarm without `code` has Code -1
// (the default template); the default digest shows no code for it, not "-1".
func TestDigestModbusWithoutCode(t *testing.T) {
	_, tm := compile(t, templateConfig)
	d := SampleData(KindDigest)
	d.Link = "modbus/tank"
	d.Digest = []Entry{
		{Code: -1, Name: "level high-high", Event: "raise", Severity: "critical", Values: []Value{{Kind: "float32", F: 96}}, Tag: "level", Unit: "%", Limit: "HH", Seq: 1, Reason: "hold-off"},
	}
	sub, err := tm.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	_, qp := parseMsg(t, sub.Data)
	b, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(qp)))
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	if strings.Contains(body, "-1") || !strings.Contains(body, "  level high-high: raise [critical] (level = 96 %, HH limit), hold-off") {
		t.Errorf("digest:\n%s", body)
	}
}
