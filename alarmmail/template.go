// Package alarmmail renders the mails of the serial path (alarms, digests,
// link notices) from the [[alarm]] templates of the configuration. It is the
// one domain package that reads config types: the templates, recipients and
// names are the configuration's own words.
package alarmmail

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	htmltemplate "html/template"
	"io"
	"math"
	netmail "net/mail"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/plcmail/plcmail/config"
)

// Kinds of mail the serial bridge renders; AlarmData.Kind holds one of them.
const (
	KindAlarm   = "alarm"   // one alarm event (or a reconciled one at PLC restart)
	KindDigest  = "digest"  // events held back by flood control
	KindOffline = "offline" // no frame within heartbeat_timeout
	KindOnline  = "online"  // first frame after an offline notice
	KindRestart = "restart" // new PLC boot id

	// Polled Modbus devices (package modbus): Link is the [[modbus]] name.
	KindDeviceOffline = "device-offline" // offline_after polls failed in a row
	KindDeviceOnline  = "device-online"  // the first good poll after that
)

// AlarmData is what a template sees. Everything that came over the wire is
// plain data: templates are parsed from the configuration only, and Text is
// stripped of control characters before any template runs.
type AlarmData struct {
	Kind  string // KindAlarm, KindDigest, ...
	Link  string // [[serial]] name
	Site  string // serial.site, else gateway.site
	Label string // serial.label (the machine behind the link)
	Port  string // device path or USB ids

	Code     int
	Name     string // alarm.name, else "Alarm <code>"
	Event    string // raise | clear | acknowledge
	Severity string // info | warning | alarm | critical (after alarm.severity)
	Values   []Value
	Text     string
	Note     string // why the mail exists when it is not a plain event ("active when the PLC restarted")

	Boot   uint32        // PLC boot id
	Seq    uint32        // frame sequence number
	Uptime time.Duration // PLC uptime when the event happened
	Time   time.Time     // gateway time when the frame arrived

	// Link notices.
	PrevBoot   uint32        // restart: the boot id before
	ResetCause string        // restart: decoded reset cause
	LastFrame  time.Time     // offline/online: the last frame before the silence
	Silence    time.Duration // offline: heartbeat_timeout; online: how long it was silent
	Active     []Entry       // restart: alarms active according to the PLC's hello

	// Digest entries, oldest first.
	Digest []Entry

	// Modbus tag alarms (Values[0] is the tag's value); Tag is empty for
	// framed alarms. Error is the last poll error of a device notice.
	Tag      string
	Unit     string
	Limit    string  // HH | H | L | LL, "" for a boolean alarm
	Setpoint float64 // the limit's value
	Error    string
}

// Entry is one event in a digest or one active alarm in a restart notice.
type Entry struct {
	Time     time.Time
	Code     int
	Name     string
	Event    string
	Severity string
	Values   []Value
	Text     string
	Boot     uint32
	Seq      uint32
	Reason   string // why it was not mailed on its own: "hold-off", "rate limit"
	// Tag, Unit and Limit are set for a polled Modbus tag, which has no
	// boot or event number to show; then Seq counts the rule's transitions.
	Tag   string `json:",omitempty"`
	Unit  string `json:",omitempty"`
	Limit string `json:",omitempty"`
}

// Value is one typed value from an event; it prints as its value.
type Value struct {
	Kind string // int32 | uint32 | float32 | bool
	Int  int64
	Uint uint64
	F    float64
	Bool bool
}

// String formats the value for humans ("-12", "3.25", "true").
func (v Value) String() string {
	switch v.Kind {
	case "int32":
		return strconv.FormatInt(v.Int, 10)
	case "uint32":
		return strconv.FormatUint(v.Uint, 10)
	case "float32":
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return strconv.FormatFloat(v.F, 'g', -1, 32)
		}
		return strconv.FormatFloat(v.F, 'g', 7, 32)
	case "bool":
		return strconv.FormatBool(v.Bool)
	}
	return "?"
}

// Built-in templates. DefaultSubject and DefaultBody apply to [[alarm]]
// entries that leave subject or body empty and to codes without an entry
// when the configuration has no default = true entry.
const (
	DefaultSubject = `[{{.Severity}}] {{.Name}}: {{.Event}}{{with .Label}} on {{.}}{{end}} ({{.Link}})`
	DefaultBody    = `{{.Name}}{{if not .Tag}} (code {{.Code}}){{end}}: {{.Event}}, severity {{.Severity}}
{{with .Note}}
{{.}}
{{end}}
Link:     {{.Link}}{{with .Label}} ({{.}}){{end}}{{with .Site}}
Site:     {{.}}{{end}}{{with .Text}}
Text:     {{.}}{{end}}{{with .Values}}
Values:   {{range $i, $v := .}}{{if $i}}, {{end}}{{$v}}{{end}}{{end}}
{{if .Tag}}Tag:      {{.Tag}} = {{index .Values 0}}{{with .Unit}} {{.}}{{end}}{{with .Limit}} ({{.}} limit {{$.Setpoint}}{{with $.Unit}} {{.}}{{end}}){{end}}
{{else}}PLC:      boot {{.Boot}}, event {{.Seq}}, uptime {{.Uptime}}
{{end}}Received: {{.Time.Format "2006-01-02 15:04:05 MST"}}
`
	noticeHead = `Link:     {{.Link}}{{with .Label}} ({{.}}){{end}}{{with .Site}}
Site:     {{.}}{{end}}
Port:     {{.Port}}
`
)

var noticeSources = map[string][2]string{
	KindOffline: {
		`[plcmail] PLC offline: {{.Link}}{{with .Label}} ({{.}}){{end}}`,
		`No frame from the PLC for {{.Silence}} (heartbeat_timeout).
{{if .LastFrame.IsZero}}No frame since the gateway started.{{else}}Last frame: {{.LastFrame.Format "2006-01-02 15:04:05 MST"}}{{end}}

` + noticeHead + `
Alarms raised while the link is down are mailed as soon as the PLC reaches the gateway again.
`},
	KindOnline: {
		`[plcmail] PLC back online: {{.Link}}{{with .Label}} ({{.}}){{end}}`,
		`The PLC is talking again after {{.Silence}} of silence.
Since: {{.Time.Format "2006-01-02 15:04:05 MST"}}

` + noticeHead,
	},
	KindRestart: {
		`[plcmail] PLC restarted: {{.Link}}{{with .Label}} ({{.}}){{end}}`,
		`The PLC restarted (boot {{.PrevBoot}} -> {{.Boot}}, uptime {{.Uptime}}, reset cause: {{.ResetCause}}).

` + noticeHead + `
Active alarms reported by the PLC: {{len .Active}}
{{range .Active}}  {{.Code}} {{.Name}} [{{.Severity}}]
{{end}}`},
	KindDeviceOffline: {
		`[plcmail] Modbus device offline: {{.Link}}{{with .Label}} ({{.}}){{end}}`,
		`The gateway cannot read the Modbus device: the last polls failed.
Last error: {{.Error}}
{{if .LastFrame.IsZero}}No good poll since the gateway started.{{else}}Last good poll: {{.LastFrame.Format "2006-01-02 15:04:05 MST"}}{{end}}

` + noticeHead + `
Its alarms keep their last state until the device answers again.
`},
	KindDeviceOnline: {
		`[plcmail] Modbus device back online: {{.Link}}{{with .Label}} ({{.}}){{end}}`,
		`The Modbus device answers again.
Since: {{.Time.Format "2006-01-02 15:04:05 MST"}}

` + noticeHead,
	},
	KindDigest: {
		`[plcmail] {{len .Digest}} alarm events on {{.Link}}{{with .Label}} ({{.}}){{end}}`,
		`These events were not mailed one by one (hold-off or rate limit):

{{range .Digest}}{{.Time.Format "2006-01-02 15:04:05"}}  {{if ge .Code 0}}{{.Code}} {{end}}{{.Name}}: {{.Event}} [{{.Severity}}]{{with .Text}} "{{.}}"{{end}}{{if .Tag}} ({{.Tag}}{{with .Values}} = {{index . 0}}{{end}}{{with .Unit}} {{.}}{{end}}{{with .Limit}}, {{.}} limit{{end}}){{else}}{{with .Values}} ({{range $i, $v := .}}{{if $i}}, {{end}}{{$v}}{{end}}){{end}}  boot {{.Boot}} event {{.Seq}}{{end}}, {{.Reason}}
{{end}}
` + noticeHead},
}

type alarmTemplate struct {
	name     string
	severity string
	holdoff  time.Duration
	to, cc   []string
	subject  *template.Template
	body     *template.Template
	html     *htmltemplate.Template // nil: text only
}

// Templates holds every parsed alarm and notice template of one
// configuration. It is immutable, so a reload swaps the whole value.
type Templates struct {
	from     string
	hostname string
	site     string
	codes    map[int]*alarmTemplate
	def      *alarmTemplate
	notices  map[string]*alarmTemplate
	builtin  *alarmTemplate      // DefaultSubject/DefaultBody, when a configured template fails at run time
	noticeTo map[string][]string // link -> recipients
	allTo    []string
	holdoff  time.Duration
}

// CompileTemplates parses every [[alarm]] template of cfg and the built-in
// notice templates, and renders each once with sample data so that a
// template that cannot run is found by `plcmail check`, not by the first
// alarm. Problems are returned as config.Errors located at their key.
func CompileTemplates(cfg *config.Config) (*Templates, error) {
	t := &Templates{
		from:     cfg.Upstream.From,
		hostname: cfg.Gateway.Hostname,
		site:     cfg.Gateway.Site,
		codes:    map[int]*alarmTemplate{},
		notices:  compileNotices(),
		noticeTo: map[string][]string{},
		holdoff:  cfg.Flood.Holdoff.D(),
	}
	// The built-in template is in place before the [[alarm]] entries are
	// tried with sample data, which has codes they may not configure.
	t.builtin = &alarmTemplate{
		holdoff: t.holdoff,
		subject: template.Must(template.New("default.subject").Parse(DefaultSubject)),
		body:    template.Must(template.New("default.body").Parse(DefaultBody)),
	}
	t.def = t.builtin // unless an entry is the default
	errs := t.addAlarms(cfg)
	t.builtin.to = t.allTo
	errs = append(errs, t.addLinkRecipients(cfg)...)
	errs = append(errs, checkAddrs(cfg, "upstream.from", []string{cfg.Upstream.From})...)
	if len(errs) > 0 {
		return nil, errs
	}
	return t, nil
}

// addAlarms compiles the [[alarm]] entries into t: by code, the default
// entry, and the union of their recipients (allTo, in file order).
func (t *Templates) addAlarms(cfg *config.Config) config.Errors {
	var errs config.Errors
	seenTo := map[string]bool{}
	defaultAt := -1
	for i := range cfg.Alarm {
		a := &cfg.Alarm[i]
		path := fmt.Sprintf("alarm[%d]", i)
		at, parseErrs := compileAlarm(cfg, path, a, t.holdoff)
		errs = append(errs, parseErrs...)
		errs = append(errs, checkAddrs(cfg, path+".to", a.To)...)
		errs = append(errs, checkAddrs(cfg, path+".cc", a.Cc)...)
		for _, r := range a.To {
			if !seenTo[strings.ToLower(r)] {
				seenTo[strings.ToLower(r)] = true
				t.allTo = append(t.allTo, r)
			}
		}
		switch {
		case a.Default && defaultAt >= 0:
			errs = append(errs, cfg.Errorf(path+".default", "a second default template (the first is alarm[%d])", defaultAt))
		case a.Default:
			defaultAt = i
			t.def = at
		case a.Code != nil:
			t.codes[*a.Code] = at
		}
		for _, err := range t.trySample(at, a) {
			errs = append(errs, cfg.Errorf(path+err.key, "renders with sample data: %v", cleanTemplateError(err.err)))
		}
	}
	return errs
}

// compileAlarm parses one [[alarm]] entry found at path (empty subject and
// body mean the built-in ones); holdoff is [flood] holdoff, which the entry
// may override.
func compileAlarm(cfg *config.Config, path string, a *config.Alarm, holdoff time.Duration) (*alarmTemplate, config.Errors) {
	at := &alarmTemplate{name: a.Name, severity: a.Severity, holdoff: holdoff, to: a.To, cc: a.Cc}
	if a.Holdoff > 0 {
		at.holdoff = a.Holdoff.D()
	}
	subj, body := a.Subject, a.Body
	if subj == "" {
		subj = DefaultSubject
	}
	if body == "" {
		body = DefaultBody
	}
	var errs config.Errors
	// parseText parses one text template; a template with an unknown name
	// is reported and dropped (nil), as one that does not parse, so that
	// trySample does not report it a second time.
	parseText := func(key, src string) *template.Template {
		tmpl, err := template.New(path + key).Parse(src)
		if err == nil {
			err = checkNames(trees(tmpl.Templates())...)
		}
		if err != nil {
			errs = append(errs, cfg.Errorf(path+key, "%v", cleanTemplateError(err)))
			return nil
		}
		return tmpl
	}
	at.subject = parseText(".subject", subj)
	at.body = parseText(".body", body)
	if a.HTML != "" {
		tmpl, err := htmltemplate.New(path + ".html").Parse(a.HTML)
		if err == nil {
			err = checkNames(trees(tmpl.Templates())...)
		}
		if err != nil {
			errs = append(errs, cfg.Errorf(path+".html", "%v", cleanTemplateError(err)))
		} else {
			at.html = tmpl
		}
	}
	return at, errs
}

// trySample runs each template of entry a that parsed (the others are nil,
// their parse error reported already) with sample data, to find templates
// that parse but cannot run. Each is run on its own, so that every failing
// one is reported, not only the first.
func (t *Templates) trySample(at *alarmTemplate, a *config.Alarm) []*renderError {
	sample := SampleData(KindAlarm)
	if a.Code != nil {
		sample.Code = *a.Code
	}
	sample.Name = a.Name
	t.fill(&sample)
	var errs []*renderError
	run := func(key string, tmpl interface {
		Execute(io.Writer, any) error
	}) {
		if err := tmpl.Execute(io.Discard, sample); err != nil {
			errs = append(errs, &renderError{key, err})
		}
	}
	if at.subject != nil {
		run(".subject", at.subject)
	}
	if at.body != nil {
		run(".body", at.body)
	}
	if at.html != nil {
		run(".html", at.html)
	}
	return errs
}

// compileNotices parses the built-in link notice templates.
func compileNotices() map[string]*alarmTemplate {
	notices := make(map[string]*alarmTemplate, len(noticeSources))
	for kind, src := range noticeSources {
		notices[kind] = &alarmTemplate{
			subject: template.Must(template.New(kind + ".subject").Parse(src[0])),
			body:    template.Must(template.New(kind + ".body").Parse(src[1])),
		}
	}
	return notices
}

// addLinkRecipients sets the recipients of each [[serial]] link's notices;
// a link whose notices would reach nobody is an error.
func (t *Templates) addLinkRecipients(cfg *config.Config) config.Errors {
	var errs config.Errors
	for i := range cfg.Serial {
		s := &cfg.Serial[i]
		path := fmt.Sprintf("serial[%d].to", i)
		to := cfg.NoticeRecipients(s)
		if len(to) == 0 && !alarmToFailed(cfg) {
			errs = append(errs, cfg.Errorf(path,
				"no recipients for link notices (offline, restart, digests): set to, or add [[alarm]] entries with to"))
		}
		t.noticeTo[s.Name] = to
		errs = append(errs, checkAddrs(cfg, path, s.To)...)
	}
	for i := range cfg.Modbus {
		m := &cfg.Modbus[i]
		path := fmt.Sprintf("modbus[%d].to", i)
		to := cfg.NoticeRecipients(&config.Serial{To: m.To})
		if len(to) == 0 && !alarmToFailed(cfg) {
			errs = append(errs, cfg.Errorf(path, "no recipients for the device's notices and alarms: set to, or add [[alarm]] entries with to"))
		}
		t.noticeTo[m.Name] = to
		errs = append(errs, checkAddrs(cfg, path, m.To)...)
	}
	return errs
}

// alarmToFailed reports whether some [[alarm]] to did not decode: the link
// notice recipients derive from them, so "no recipients" would be wrong.
func alarmToFailed(cfg *config.Config) bool {
	for i := range cfg.Alarm {
		if cfg.DecodeFailed(fmt.Sprintf("alarm[%d].to", i)) {
			return true
		}
	}
	return false
}

// checkAddrs checks addresses the way the message builder parses them, so
// that an address config validation let through cannot stop a mail later.
func checkAddrs(cfg *config.Config, path string, addrs []string) config.Errors {
	var errs config.Errors
	for i, a := range addrs {
		if _, err := netmail.ParseAddress(a); err != nil {
			key := path
			if path != "upstream.from" {
				key = fmt.Sprintf("%s[%d]", path, i)
			}
			errs = append(errs, cfg.Errorf(key, "%q: %v", a, err))
		}
	}
	return errs
}

// cleanTemplateError turns "template: alarm[0].subject:1: unexpected ..."
// into "template line 1: unexpected ...": the key is already named by the
// error's location.
func cleanTemplateError(err error) string {
	s := strings.TrimPrefix(err.Error(), "template: ")
	// An execution error names the template a second time:
	// `alarm[0].body:1:2: executing "alarm[0].body" at <.X>: ...`.
	if i := strings.Index(s, `executing "alarm[`); i >= 0 {
		if j := strings.Index(s[i+len(`executing "`):], `" `); j >= 0 {
			s = s[:i] + s[i+len(`executing "`)+j+2:]
		}
	}
	if strings.HasPrefix(s, "alarm[") {
		if _, rest, ok := strings.Cut(s, ":"); ok {
			if ln, msg, ok := strings.Cut(rest, ": "); ok && !strings.ContainsAny(ln, " ") {
				return "template line " + ln + ": " + msg
			}
			return strings.TrimSpace(rest)
		}
	}
	return s
}

// SampleData returns plausible data of the given kind, used to test-render
// templates at load time (`plcmail check`) and in documentation.
func SampleData(kind string) AlarmData {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e := Entry{Time: now, Code: 17, Name: "Hydraulic pressure low", Event: "raise", Severity: "alarm",
		Values: []Value{{Kind: "float32", F: 87.5}, {Kind: "int32", Int: -3}}, Text: "P1 < 90 bar", Boot: 42, Seq: 7, Reason: "hold-off"}
	return AlarmData{
		Kind: kind, Link: "press-line-1", Site: "Plant 2", Label: "Press 1", Port: "/dev/ttyUSB0",
		Code: 17, Name: "", Event: "raise", Severity: "alarm",
		Values: e.Values, Text: e.Text, Boot: 42, Seq: 7, Uptime: 3*time.Hour + 25*time.Second, Time: now,
		PrevBoot: 41, ResetCause: "power-on", LastFrame: now.Add(-time.Minute), Silence: time.Minute,
		Active: []Entry{e}, Digest: []Entry{e, e},
	}
}

// Holdoff returns how long a repeat of the same code and event is held back.
func (t *Templates) Holdoff(code int) time.Duration { return t.lookup(code).holdoff }

// Name returns the configured name of an alarm code ("" when it has none).
func (t *Templates) Name(code int) string { return t.lookup(code).name }

// Severity returns the configured severity override for code, or sent.
func (t *Templates) Severity(code int, sent string) string {
	if s := t.lookup(code).severity; s != "" {
		return s
	}
	return sent
}

// NoticeTo returns the recipients of a link's notices.
func (t *Templates) NoticeTo(link string) []string { return t.noticeTo[link] }

func (t *Templates) lookup(code int) *alarmTemplate {
	if at, ok := t.codes[code]; ok {
		return at
	}
	return t.def
}

// Mail is a rendered message: its SMTP envelope and its RFC 5322 bytes
// with CRLF line endings.
type Mail struct {
	From string
	To   []string // To and Cc recipients
	Data []byte
}

// Render builds the complete RFC 5322 message for data.
//
// If a configured alarm template fails on real data (it passed the sample
// rendering, but e.g. indexes a value the PLC did not send), the built-in
// template is used instead and the failure is reported in the mail: an alarm
// must never be lost to a template bug.
func (t *Templates) Render(data AlarmData) (Mail, error) {
	data.Text = SanitizeText(data.Text)
	t.fill(&data)
	var at *alarmTemplate
	switch data.Kind {
	case KindAlarm:
		at = t.lookup(data.Code)
	default:
		at = t.notices[data.Kind]
		if at == nil {
			return Mail{}, fmt.Errorf("alarmmail: no template for %q mails", data.Kind)
		}
	}
	to, cc := at.to, at.cc
	switch data.Kind {
	case KindDigest:
		to, cc = t.digestRecipients(data)
	case KindOffline, KindOnline, KindRestart, KindDeviceOffline, KindDeviceOnline:
		to, cc = t.noticeTo[data.Link], nil
	}
	if len(to) == 0 {
		to = t.noticeTo[data.Link]
	}
	if len(to) == 0 {
		to = t.allTo
	}
	sub, rerr := t.renderWith(at, data, &recipients{to: to, cc: cc})
	if rerr != nil && data.Kind == KindAlarm {
		data.Note = strings.TrimSpace(data.Note + "\n(the configured template failed: " + rerr.err.Error() + ")")
		sub, rerr = t.renderWith(t.builtin, data, &recipients{to: to, cc: cc})
	}
	if rerr != nil {
		return Mail{}, rerr.err
	}
	return sub, nil
}

// fill completes names and severity overrides from the configuration.
func (t *Templates) fill(d *AlarmData) {
	if d.Site == "" {
		d.Site = t.site
	}
	if d.Kind == KindAlarm {
		d.Name = t.nameOr(d.Code, d.Name)
		d.Severity = t.Severity(d.Code, d.Severity)
	}
	for _, list := range [][]Entry{d.Digest, d.Active} {
		for i := range list {
			e := &list[i]
			e.Text = SanitizeText(e.Text)
			e.Name = t.nameOr(e.Code, e.Name)
			e.Severity = t.Severity(e.Code, e.Severity)
		}
	}
}

// nameOr returns name, or when it is empty the configured name of code, or
// "Alarm <code>".
func (t *Templates) nameOr(code int, name string) string {
	if name == "" {
		name = t.Name(code)
	}
	if name == "" {
		name = "Alarm " + strconv.Itoa(code)
	}
	return name
}

func (t *Templates) digestRecipients(d AlarmData) (to, cc []string) {
	seen := map[string]bool{}
	add := func(dst []string, rs []string) []string {
		for _, r := range rs {
			if k := strings.ToLower(r); !seen[k] {
				seen[k] = true
				dst = append(dst, r)
			}
		}
		return dst
	}
	codes := map[int]bool{}
	for _, e := range d.Digest {
		codes[e.Code] = true
	}
	sorted := make([]int, 0, len(codes))
	for c := range codes {
		sorted = append(sorted, c)
	}
	sort.Ints(sorted)
	for _, c := range sorted {
		to = add(to, t.lookup(c).to)
	}
	for _, c := range sorted {
		cc = add(cc, t.lookup(c).cc)
	}
	return to, cc
}

type recipients struct{ to, cc []string }

type renderError struct {
	key string // ".subject", ".body", ".html"
	err error
}

func (e *renderError) Error() string { return e.err.Error() }

// renderWith executes at's templates; rcpt nil only checks that they run.
func (t *Templates) renderWith(at *alarmTemplate, data AlarmData, rcpt *recipients) (Mail, *renderError) {
	var subj, body, html bytes.Buffer
	if err := at.subject.Execute(&subj, data); err != nil {
		return Mail{}, &renderError{".subject", err}
	}
	if err := at.body.Execute(&body, data); err != nil {
		return Mail{}, &renderError{".body", err}
	}
	if at.html != nil {
		if err := at.html.Execute(&html, data); err != nil {
			return Mail{}, &renderError{".html", err}
		}
	}
	if rcpt == nil {
		return Mail{}, nil
	}
	msg, err := buildMessage(mailParts{
		from:      t.from,
		to:        rcpt.to,
		cc:        rcpt.cc,
		subject:   SanitizeHeader(subj.String()),
		date:      timeOr(data.Time),
		messageID: randomToken() + "@" + t.hostname,
		important: data.Kind == KindAlarm && (data.Severity == "alarm" || data.Severity == "critical"),
		text:      crlf(body.String()),
		alt:       at.html != nil,
		html:      crlf(html.String()),
	})
	if err != nil {
		return Mail{}, &renderError{"", err}
	}
	return Mail{From: t.from, To: append(append([]string(nil), rcpt.to...), rcpt.cc...), Data: msg}, nil
}

func timeOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// crlf normalises line endings to CRLF (bodies written in TOML have LF).
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

func randomToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxSubjectRunes keeps the subject readable and the encoded header well
// below the 998-character line limit of RFC 5322.
const maxSubjectRunes = 200

// SanitizeHeader makes s safe as the value of an unstructured header: every
// control character (CR and LF above all, which would start a new header) and
// invalid UTF-8 becomes a space, runs of white space collapse, and the result
// is trimmed and shortened. Non-ASCII is left for RFC 2047 encoding.
func SanitizeHeader(s string) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range strings.ToValidUTF8(s, " ") {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		if n >= maxSubjectRunes {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// SanitizeText makes text from the wire printable: invalid UTF-8 and control
// characters (including CR and LF) become U+FFFD, so the PLC's text can
// neither break a header nor forge lines in the body.
func SanitizeText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}
