package alarmmail

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/mail/*.eml from the current output")

// formatConfig adds an entry with enough recipients to fold the To field,
// a non-ASCII subject, a trailing blank in the body and an HTML template
// that can render empty to templateConfig.
const formatConfig = templateConfig + `
[[alarm]]
code = 40
subject = "Zähler {{.Code}}"
body = "line one\nline two with trailing blank \n"
html = "{{if .Text}}<b>{{.Text}}</b>{{end}}"
to = ["ops@example.com", "maintenance.shift.leader@example.com", "jg@example.com", "plant-2-electrical@example.com"]
cc = ["night@example.com", "boss@example.com"]
severity = "info"
`

// TestMessageFormat pins the bytes of rendered mails (header fields, their
// order and folding, RFC 2047 and quoted-printable encodings, the MIME
// structure) against testdata/mail. The files were written by the go-mail
// v0.8.1 message builder the package used before it built the MIME itself,
// so they prove the change kept the mails the same. The Message-ID token
// and the multipart boundary are random and compared as placeholders.
func TestMessageFormat(t *testing.T) {
	_, tm := compile(t, formatConfig)
	long := "a very long text that goes on" + strings.Repeat(" and on", 25) + " ÄÖÜ" + strings.Repeat(" and on", 6)
	type tc struct {
		name string
		data func() AlarmData
	}
	alarm := func(code int, severity, text string, values ...Value) func() AlarmData {
		return func() AlarmData {
			d := SampleData(KindAlarm)
			d.Link, d.Code, d.Severity, d.Text, d.Values = "press-1", code, severity, text, values
			return d
		}
	}
	cases := []tc{
		{"alarm-html", alarm(17, "warning", "P1 low", Value{Kind: "float32", F: 87.5})},
		{"alarm-default", alarm(999, "alarm", "P1 low", Value{Kind: "int32", Int: 3})},
		{"alarm-info", alarm(999, "info", "")},
		{"alarm-utf8", alarm(17, "warning", "Öldruck über 90 °C", Value{Kind: "int32", Int: 1})},
		{"alarm-long", alarm(17, "warning", long, Value{Kind: "int32", Int: 1})},
		{"alarm-long-default", alarm(999, "critical", long)},
		{"alarm-injection", alarm(17, "warning", "x\r\nBcc: evil@x\r\n\r\nforged", Value{Kind: "int32", Int: 1})},
		{"alarm-control", alarm(999, "alarm", "\x00\x1b[31mred\x7f\u2028Bcc: evil@x\xff\xfe")},
		{"alarm-names", alarm(40, "alarm", "")},
		{"alarm-names-html", alarm(40, "alarm", "hot")},
	}
	for _, kind := range []string{KindOffline, KindOnline, KindRestart, KindDigest, KindDeviceOffline, KindDeviceOnline} {
		cases = append(cases, tc{kind, func() AlarmData {
			d := SampleData(kind)
			d.Link = "press-1"
			d.Digest = []Entry{{Code: 17, Event: "raise"}, {Code: 5, Event: "clear", Text: "a\r\nb"}}
			return d
		}})
	}
	random := regexp.MustCompile(`<[0-9a-f]{24}@|\b[0-9a-f]{60}\b`)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := tm.Render(c.data())
			if err != nil {
				t.Fatal(err)
			}
			got := "MAIL FROM " + m.From + "\r\nRCPT TO " + strings.Join(m.To, ", ") + "\r\n\r\n" + string(m.Data)
			got = random.ReplaceAllStringFunc(got, func(s string) string {
				if s[0] == '<' {
					return "<MESSAGEID@"
				}
				return "BOUNDARY"
			})
			file := filepath.Join("testdata", "mail", c.name+".eml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", file, got, want)
			}
		})
	}
}
