package alarmmail

import (
	"strings"
	"testing"
	"text/template"

	"github.com/plcmail/plcmail/config"
)

// methodsTemplate calls every one of templateMethods. deploy's
// TestTemplateOverlay runs TestTemplateMethods with the router builds'
// text/template, which proves that it keeps each of them.
const methodsTemplate = `{{.Time.Format "2006-01-02"}} {{.Time.IsZero}} {{.Time.UTC.Year}} {{.Time.Local.IsZero}} ` +
	`{{.Time.Unix}} {{.Time.Month}} {{.Time.Day}} {{.Time.Hour}} {{.Time.Minute}} {{.Time.Second}} {{.Time.Weekday}} | ` +
	`{{.Uptime.Hours}} {{.Uptime.Minutes}} {{.Uptime.Seconds}} {{.Uptime.Milliseconds}} ` +
	`{{.Uptime.Round 3600000000000}} {{.Uptime.Truncate 3600000000000}} {{.Uptime.String}} | {{(index .Values 0).String}}`

func TestTemplateMethods(t *testing.T) {
	for _, m := range templateMethods {
		if !strings.Contains(methodsTemplate, "."+m) {
			t.Errorf("methodsTemplate does not call %s", m)
		}
	}
	src := strings.Replace(templateConfig, `subject = "{{.Name}} {{.Event}}: {{.Text}}"`, `subject = '`+methodsTemplate+`'`, 1)
	_, tm := compile(t, src)
	d := SampleData(KindAlarm)
	d.Link, d.Code, d.Values = "press-1", 17, []Value{{Kind: "float32", F: 87.5}}
	m, err := tm.Render(d)
	if err != nil {
		t.Fatal(err)
	}
	msg, body := parseMsg(t, m.Data)
	want := "2026-01-02 false 2026 false 1767323045 January 2 3 4 5 Friday | " +
		"3.0069444444444446 180.41666666666666 10825 10825000 3h0m0s 3h0m0s 3h0m25s | 87.5"
	if got := decodeHeader(t, msg.Header.Get("Subject")); got != want {
		t.Errorf("subject\n got %q\nwant %q", got, want)
	}
	if strings.Contains(body, "configured template failed") {
		t.Errorf("the template failed at run time:\n%s", body)
	}
}

// TestTemplateNamesChecked: a name that is neither a field nor one of
// templateMethods is refused at load time with its key, also where sample
// data does not reach it, and the built-in templates pass the check.
func TestTemplateNamesChecked(t *testing.T) {
	for _, c := range []struct{ key, tmpl, bad string }{
		{"subject", `{{.Time.AddDate 0 0 1}}`, ".AddDate"},
		{"body", `{{if .Tag}}{{.Time.Nanosecond}}{{end}}`, ".Nanosecond"},
		{"body", `{{range .Digest}}{{.Time.YearDay}}{{end}}`, ".YearDay"},
		{"body", `{{with $t := .Time}}{{$t.Zone}}{{end}}`, ".Zone"},
		{"body", `{{define "x"}}{{.Sev}}{{end}}{{template "x" .}}`, ".Sev"},
		{"subject", `{{(index .Values 0).Kind.Bogus}}`, ".Bogus"},
		{"html", `<p>{{.Label.Len}}</p>`, ".Len"},
	} {
		src := templateConfig
		switch c.key {
		case "subject":
			src = strings.Replace(src, `subject = "{{.Name}} {{.Event}}: {{.Text}}"`, `subject = '`+c.tmpl+`'`, 1)
		case "body":
			src = strings.Replace(src, "body = \"\"\"\nPressure {{index .Values 0}} bar on {{.Label}}.\nText: {{.Text}}\n\"\"\"",
				"body = '"+c.tmpl+"'", 1)
		case "html":
			src = strings.Replace(src, `html = "<p>{{.Text}}</p>"`, `html = '`+c.tmpl+`'`, 1)
		}
		cfg, err := config.Parse("plcmail.toml", []byte(src))
		if err != nil {
			t.Fatalf("%s: config: %v", c.tmpl, err)
		}
		_, err = CompileTemplates(cfg)
		es := config.AsErrors(err)
		if len(es) != 1 || es[0].Key != "alarm[0]."+c.key || es[0].Line == 0 ||
			!strings.Contains(es[0].Msg, c.bad+": not a field of the mail data, nor one of the methods templates may call (Day, Format,") {
			t.Errorf("%s: errors = %v", c.tmpl, err)
		}
	}
	for name, src := range map[string]string{"subject": DefaultSubject, "body": DefaultBody} {
		if err := checkNames(template.Must(template.New(name).Parse(src)).Tree); err != nil {
			t.Errorf("built-in %s: %v", name, err)
		}
	}
	for kind, src := range noticeSources {
		for _, s := range src {
			if err := checkNames(template.Must(template.New(kind).Parse(s)).Tree); err != nil {
				t.Errorf("built-in %s notice: %v", kind, err)
			}
		}
	}
}
