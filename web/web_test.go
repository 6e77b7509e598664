package web

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/spool"
)

// sampleStatus is a gateway with two links (one down), a queue with an
// outage in progress, and wire text that tries to break out of HTML and of
// the metrics format.
func sampleStatus() Status {
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	return Status{
		Version: "v1.2.3", Commit: "abc123", GoVersion: "go1.26", PID: 4242, Config: "/etc/plcmail/plcmail.toml",
		Started: now.Add(-26 * time.Hour), Now: now,
		Links: []bridge.LinkStatus{
			{Name: "press-line-1", Port: "/dev/ttyUSB0", Connected: true, Since: now.Add(-time.Hour), LastFrame: now.Add(-2 * time.Second),
				Frames: 120, FrameErrors: 3, Acks: 20, Naks: 1, Deliveries: 18, Mails: 17, Mailed: 17, Duplicates: 2,
				Observed: bridge.Observed{Hellos: 1, Events: 19, Heartbeats: 100, Active: map[int]string{17: "alarm", 4: "warning"},
					Recent: []bridge.AlarmEvent{
						{At: now.Add(-5 * time.Minute), Code: 17, Event: "raise", Severity: "alarm", Text: `P1 < 90 <script>alert("x")</script>`},
						{At: now.Add(-time.Minute), Code: 4, Event: "raise", Severity: "warning", Text: "oil temp high", Held: "rate limit"},
					}}},
			{Name: "odd \"name\" \\ \n", Port: "/dev/ttyUSB1", Connected: false, Since: now.Add(-10 * time.Minute),
				LastError: "open /dev/ttyUSB1: no such file or directory"},
		},
		Queue: spool.Stats{Queued: 3, Oldest: now.Add(-90 * time.Minute), LastSuccess: now.Add(-2 * time.Hour),
			LastError: "dial: connection refused", LastErrorAt: now.Add(-30 * time.Second), HoldUntil: now.Add(4 * time.Minute),
			Delivered: 40, Deferred: 9, DeadLettered: 1,
			Attempts: []spool.AttemptCount{{Upstream: "smtp.example.com:587", Result: "accepted", Count: 40}, {Upstream: "smtp.example.com:587", Result: "conn_error", Count: 9}}},
		Spooled: 4, SpooledOldest: now.Add(-100 * time.Minute), Dead: 1, Corrupt: 2, SMTP: []string{"192.168.1.1:25"},
	}
}

// parseMetrics parses the exposition with Prometheus' own parser.
func parseMetrics(t *testing.T, text string) map[string]*familyView {
	t.Helper()
	// Legacy validation: the names must also suit Prometheus servers
	// older than 3.0, which knew no UTF-8 names.
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus parser: %v\n%s", err, text)
	}
	out := map[string]*familyView{}
	for name, f := range fams {
		if !model.LegacyValidation.IsValidMetricName(name) {
			t.Errorf("invalid metric name %q", name)
		}
		fv := &familyView{typ: f.GetType().String(), samples: map[string]float64{}}
		for _, m := range f.Metric {
			var key []string
			for _, l := range m.Label {
				key = append(key, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue()
			if m.Counter != nil {
				v = m.GetCounter().GetValue()
			}
			fv.samples[strings.Join(key, ",")] = v
		}
		out[name] = fv
	}
	return out
}

type familyView struct {
	typ     string
	samples map[string]float64 // "k=v,k=v" -> value
}

// sampleWant is one sample a metrics test expects.
type sampleWant struct {
	family, typ, labels string
	want                float64
}

// checkSamples holds parsed metrics to the samples a test expects, each of
// its family and type.
func checkSamples(t *testing.T, fams map[string]*familyView, wants []sampleWant) {
	t.Helper()
	for _, tt := range wants {
		f := fams[tt.family]
		if f == nil {
			t.Errorf("%s missing", tt.family)
			continue
		}
		if f.typ != tt.typ {
			t.Errorf("%s: type %s, want %s", tt.family, f.typ, tt.typ)
		}
		if got, ok := f.samples[tt.labels]; !ok || got != tt.want {
			t.Errorf("%s{%s} = %v (present %v), want %v; have %v", tt.family, tt.labels, got, ok, tt.want, f.samples)
		}
	}
}

func TestMetricsParse(t *testing.T) {
	st := sampleStatus()
	var buf bytes.Buffer
	if err := WriteMetrics(&buf, &st); err != nil {
		t.Fatal(err)
	}
	fams := parseMetrics(t, buf.String())
	tests := []sampleWant{
		{"plcmail_build_info", "GAUGE", "version=v1.2.3,commit=abc123,goversion=go1.26", 1},
		{"plcmail_queue_messages", "GAUGE", "", 4},
		{"plcmail_queue_oldest_message_timestamp_seconds", "GAUGE", "", float64(st.SpooledOldest.Unix())},
		{"plcmail_dead_letters", "GAUGE", "", 1},
		{"plcmail_spool_corrupt_messages", "GAUGE", "", 2},
		{"plcmail_delivery_attempts_total", "COUNTER", "upstream=smtp.example.com:587,result=conn_error", 9},
		{"plcmail_upstream_held", "GAUGE", "", 1},
		{"plcmail_link_up", "GAUGE", "link=press-line-1", 1},
		{"plcmail_link_up", "GAUGE", "link=odd \"name\" \\ \n", 0},
		{"plcmail_frames_total", "COUNTER", "link=press-line-1,type=heartbeat", 100},
		{"plcmail_frames_total", "COUNTER", "link=press-line-1,type=delivery", 18},
		{"plcmail_frame_errors_total", "COUNTER", "link=press-line-1", 3},
		{"plcmail_active_alarms", "GAUGE", "link=press-line-1", 2},
		{"plcmail_start_time_seconds", "GAUGE", "", float64(st.Started.Unix())},
	}
	checkSamples(t, fams, tests)
	// The empty queue has no oldest message rather than a timestamp of 0,
	// which would read as "55 years old".
	st.Queue.Queued, st.Spooled = 0, 0
	buf.Reset()
	WriteMetrics(&buf, &st)
	if fams := parseMetrics(t, buf.String()); fams["plcmail_queue_oldest_message_timestamp_seconds"] != nil {
		t.Error("oldest message timestamp present for an empty queue")
	}
}

func TestHandlerAuthAndMethods(t *testing.T) {
	st := sampleStatus()
	password := "s3cret"
	s := &Server{opts: Options{Username: "ops", Password: func() (string, error) { return password, nil }, Status: func() Status { return st }},
		log: slog.New(slog.DiscardHandler)}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	do := func(method, path, user, pass string) (*http.Response, string) {
		req, _ := http.NewRequest(method, ts.URL+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	tests := []struct {
		name, method, path, user, pass string
		code                           int
	}{
		{"no credentials", "GET", "/metrics", "", "", 401},
		{"wrong password", "GET", "/metrics", "ops", "guess", 401},
		{"wrong user", "GET", "/", "admin", "s3cret", 401},
		{"metrics", "GET", "/metrics", "ops", "s3cret", 200},
		{"page", "GET", "/", "ops", "s3cret", 200},
		{"head", "HEAD", "/", "ops", "s3cret", 200},
		{"post refused", "POST", "/metrics", "ops", "s3cret", 405},
		{"unknown path", "GET", "/admin", "ops", "s3cret", 404},
	}
	for _, tt := range tests {
		resp, body := do(tt.method, tt.path, tt.user, tt.pass)
		if resp.StatusCode != tt.code {
			t.Errorf("%s: %d, want %d: %s", tt.name, resp.StatusCode, tt.code, body)
		}
		if tt.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: no Basic challenge", tt.name)
		}
		if tt.code == 200 && tt.path == "/metrics" && resp.Header.Get("Content-Type") != ContentType {
			t.Errorf("content type %q", resp.Header.Get("Content-Type"))
		}
	}
	password = "" // an emptied password file locks everyone out rather than letting anyone in
	if resp, _ := do("GET", "/", "ops", ""); resp.StatusCode != 500 {
		t.Errorf("empty password: %d, want 500", resp.StatusCode)
	}
}

// With several [[upstream]] entries the page says which one carries the
// mail and which is down, and /metrics has one up sample per entry.
func TestPageAndMetricsUpstreams(t *testing.T) {
	st := sampleStatus()
	now := st.Now
	st.Queue.Upstreams = []spool.UpstreamStats{
		{Name: "primary", Addr: "smtp.example.com:587", State: "down", DownSince: now.Add(-20 * time.Minute), LastError: "535 5.7.3 <b>auth</b>", FailedOver: 7},
		{Name: "backup", Addr: "mail.example.net:465", State: "ok", Delivered: 7},
		{Name: "last", Addr: "relay.example.org:587", State: "ok"},
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, newPageData(&st)); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{`id="upstreams"`, "DOWN for 20m", "&lt;b&gt;auth", ">IN USE<", ">standby<"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Index(page, ">IN USE<") > strings.Index(page, ">standby<") {
		t.Error("the entry in use is not the first one up")
	}
	buf.Reset()
	if err := WriteMetrics(&buf, &st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`plcmail_upstream_up{upstream="primary",addr="smtp.example.com:587"} 0`,
		`plcmail_upstream_up{upstream="backup",addr="mail.example.net:465"} 1`,
		`plcmail_upstream_failed_over_total{upstream="primary",addr="smtp.example.com:587"} 7`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestPageEscapes(t *testing.T) {
	st := sampleStatus()
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, newPageData(&st)); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if strings.Contains(page, "<script>") {
		t.Error("alarm text reached the page unescaped")
	}
	for _, want := range []string{"&lt;script&gt;", "press-line-1", "DOWN", "dial: connection refused", "held: rate limit", ">4</span>, oldest 1h40m old"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}
