package channel

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// alarmMail is an alarm mail as alarmmail renders it: encoded subject,
// quoted-printable body.
const alarmMail = "From: plc@example.com\r\nTo: ops@example.com\r\n" +
	"Subject: =?UTF-8?q?Pumpe_=C3=BCberhitzt?=\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
	"Press 1: temperature 98 =C2=B0C (limit 90)\r\nAcknowledge at the panel.\r\n"

// received is one request a test receiver got.
type received struct {
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is an in-process HTTP endpoint that answers with the codes in
// answers (then 200) and keeps every request.
type receiver struct {
	mu      sync.Mutex
	got     []received
	answers []int
	ch      chan received
	srv     *httptest.Server
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{answers: answers, ch: make(chan received, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		rc := received{Path: req.URL.Path, Header: req.Header.Clone(), Body: b}
		r.mu.Lock()
		r.got = append(r.got, rc)
		code := 200
		if len(r.answers) > 0 {
			code, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(code)
		io.WriteString(w, "ok")
		r.ch <- rc
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) wait(t *testing.T) received {
	t.Helper()
	select {
	case rc := <-r.ch:
		return rc
	case <-time.After(20 * time.Second):
		t.Fatal("no request")
	}
	return received{}
}

type fixture struct {
	sp      *spool.Spool
	d       *Dispatcher
	results chan Result
}

func newFixture(t *testing.T, o Options) *fixture {
	t.Helper()
	sp, err := spool.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Hostname == "" {
		o.Hostname = "gw.example.com"
	}
	d, err := New(sp, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.minBackoff = time.Millisecond
	f := &fixture{sp: sp, d: d, results: make(chan Result, 100)}
	d.OnResult(func(r Result) { f.results <- r })
	sp.BeforeEnqueue(d.Hook)
	return f
}

func (f *fixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (f *fixture) alarm(t *testing.T, link string, seq uint32, sev string) string {
	t.Helper()
	key := link + "/7/" + strconvU(seq)
	_, err := f.sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: "plc@example.com", To: []string{"ops@example.com"}},
		Data: []byte(alarmMail), Source: "serial:" + link, Key: key,
		Origin: json.RawMessage(`{"link":"` + link + `","boot":7,"seq":` + strconvU(seq) + `,"sev":"` + sev + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func strconvU(n uint32) string { return strings.TrimSpace(jsonString(n)) }

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

func (f *fixture) result(t *testing.T) Result {
	t.Helper()
	select {
	case r := <-f.results:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no result")
	}
	return Result{}
}

func TestWebhookSeverityRule(t *testing.T) {
	rcv := newReceiver(t)
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "other", Kind: Webhook, URL: rcv.srv.URL + "/other", NotAcceptedWithin: time.Hour},
		{Name: "hook", Kind: Webhook, URL: rcv.srv.URL + "/hook", HasSeverityRule: true, SeverityAtLeast: protocol.SeverityAlarm, Token: "s3cret"},
	}})
	f.alarm(t, "press-1", 1, "warning") // below the rule
	key := f.alarm(t, "press-1", 2, "critical")
	f.run(t)
	got := rcv.wait(t)
	if got.Path != "/hook" || got.Header.Get("Authorization") != "Bearer s3cret" || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %v", got.Path, got.Header)
	}
	var p Payload
	if err := json.Unmarshal(got.Body, &p); err != nil {
		t.Fatal(err)
	}
	want := idempotencyKey(f.d.store.instance, "gw.example.com", "hook", key)
	if p.ID != want || got.Header.Get("Idempotency-Key") != want {
		t.Errorf("id %q, header %q, want %q", p.ID, got.Header.Get("Idempotency-Key"), want)
	}
	if p.Subject != "Pumpe überhitzt" || p.Text != "Press 1: temperature 98 °C (limit 90)\nAcknowledge at the panel." ||
		p.Severity != "critical" || p.Rule != "severity" || p.Key != key || p.Gateway != "gw.example.com" || p.Attempt != 1 {
		t.Errorf("payload %+v", p)
	}
	r := f.result(t)
	if r.Via != 2 || !r.Delivered || r.Code != 200 || r.Alarm.Key != key || !strings.Contains(string(r.Alarm.Origin), `"seq":2`) {
		t.Errorf("result %+v", r)
	}
	// The record is on disk, final; the warning has none.
	b, err := os.ReadFile(filepath.Join(f.sp.Dir(), dirChannels, recordID("hook", key)))
	if err != nil || !strings.Contains(string(b), `"state":"delivered"`) {
		t.Errorf("record %s, %v", b, err)
	}
	if n := len(f.d.store.all()); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
	st := f.d.Stats()
	if st[1].Delivered != 1 || st[1].Queued != 0 || st[0].Delivered != 0 {
		t.Errorf("stats %+v", st)
	}
}

// ntfyServer answers like ntfy's publish endpoint (POST /TOPIC with the
// message as body, Title/Priority/Tags headers, RFC 2047 decoded, a JSON
// message event back), checking the access token.
func ntfyServer(t *testing.T, token string) (*httptest.Server, chan map[string]any) {
	msgs := make(chan map[string]any, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"code":40101,"http":401,"error":"unauthorized"}`, 401)
			return
		}
		topic := strings.TrimPrefix(r.URL.Path, "/")
		if r.Method != http.MethodPost && r.Method != http.MethodPut || topic == "" || strings.Contains(topic, "/") {
			http.Error(w, `{"code":40401,"http":404,"error":"page not found"}`, 404)
			return
		}
		title, err := new(mime.WordDecoder).DecodeHeader(r.Header.Get("Title"))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body, _ := io.ReadAll(r.Body)
		m := map[string]any{"id": "n1", "time": time.Now().Unix(), "event": "message", "topic": topic,
			"title": title, "message": string(body), "priority": r.Header.Get("Priority"), "tags": strings.Split(r.Header.Get("Tags"), ",")}
		json.NewEncoder(w).Encode(m)
		msgs <- m
	}))
	t.Cleanup(srv.Close)
	return srv, msgs
}

func TestNtfy(t *testing.T) {
	srv, msgs := ntfyServer(t, "tk_123")
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "phone", Kind: Ntfy, URL: srv.URL + "/plant2-alarms", Token: "tk_123", HasSeverityRule: true, SeverityAtLeast: protocol.SeverityCritical},
	}})
	f.alarm(t, "press-1", 3, "critical")
	f.run(t)
	var m map[string]any
	select {
	case m = <-msgs:
	case <-time.After(20 * time.Second):
		t.Fatal("nothing published")
	}
	if m["topic"] != "plant2-alarms" || m["title"] != "Pumpe überhitzt" || m["priority"] != "5" ||
		!strings.HasPrefix(m["message"].(string), "Press 1: temperature 98 °C") || jsonString(m["tags"]) != `["plcmail","critical"]` {
		t.Errorf("published %v", m)
	}
	if r := f.result(t); !r.Delivered || r.Code != 200 {
		t.Errorf("result %+v", r)
	}
}

func TestTeamsAndSlackShapes(t *testing.T) {
	rcv := newReceiver(t)
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "teams", Kind: Teams, URL: rcv.srv.URL + "/teams", HasSeverityRule: true},
		{Name: "slack", Kind: Slack, URL: rcv.srv.URL + "/slack", HasSeverityRule: true},
	}})
	f.alarm(t, "press-1", 4, "info")
	f.run(t)
	for range 2 {
		got := rcv.wait(t)
		var v map[string]any
		if err := json.Unmarshal(got.Body, &v); err != nil {
			t.Fatal(err)
		}
		switch got.Path {
		case "/teams":
			att := v["attachments"].([]any)[0].(map[string]any)
			body := att["content"].(map[string]any)["body"].([]any)
			if v["type"] != "message" || att["contentType"] != "application/vnd.microsoft.card.adaptive" ||
				body[0].(map[string]any)["text"] != "Pumpe überhitzt" || !strings.HasPrefix(body[1].(map[string]any)["text"].(string), "Press 1") {
				t.Errorf("teams %s", got.Body)
			}
		case "/slack":
			if !strings.HasPrefix(v["text"].(string), "*Pumpe überhitzt*\nPress 1: temperature") {
				t.Errorf("slack %s", got.Body)
			}
		}
	}
}

func TestRetryKeepsTheKey(t *testing.T) {
	rcv := newReceiver(t, 503, 429)
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "hook", Kind: Webhook, URL: rcv.srv.URL, HasSeverityRule: true},
	}})
	f.alarm(t, "press-1", 5, "alarm")
	f.run(t)
	var keys []string
	for range 3 {
		keys = append(keys, rcv.wait(t).Header.Get("Idempotency-Key"))
	}
	if keys[0] == "" || keys[0] != keys[1] || keys[1] != keys[2] {
		t.Errorf("keys %q", keys)
	}
	r := f.result(t)
	if !r.Delivered {
		t.Errorf("result %+v", r)
	}
	if st := f.d.Stats()[0]; st.Retried != 2 || st.Delivered != 1 || !strings.Contains(st.LastError, "429") {
		t.Errorf("stats %+v", st)
	}
}

func TestPermanentRefusal(t *testing.T) {
	rcv := newReceiver(t, 404)
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "hook", Kind: Webhook, URL: rcv.srv.URL, HasSeverityRule: true},
	}})
	f.alarm(t, "press-1", 6, "alarm")
	f.run(t)
	rcv.wait(t)
	r := f.result(t)
	if r.Delivered || r.Code != 404 {
		t.Errorf("result %+v", r)
	}
	recs := f.d.store.all()
	if len(recs) != 1 || recs[0].State != StateDead || !strings.Contains(recs[0].LastError, "404") {
		t.Errorf("record %+v", recs[0])
	}
}

func TestExpiry(t *testing.T) {
	rcv := newReceiver(t, 503, 503, 503, 503, 503, 503, 503, 503)
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "hook", Kind: Webhook, URL: rcv.srv.URL, HasSeverityRule: true, Lifetime: time.Hour},
	}})
	f.alarm(t, "press-1", 7, "alarm")
	var mu sync.Mutex
	skew := time.Duration(0)
	f.d.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(skew) }
	f.run(t)
	rcv.wait(t)
	mu.Lock()
	skew = 2 * time.Hour // the hour is over
	mu.Unlock()
	r := f.result(t)
	if r.Delivered || !strings.Contains(f.d.store.all()[0].LastError, "expired: 503") {
		t.Errorf("result %+v, record %+v", r, f.d.store.all()[0])
	}
}

// The time rules are applied by scan; the clock is moved instead of waited.
func TestTimeRules(t *testing.T) {
	var down time.Time
	var skew time.Duration
	f := newFixture(t, Options{
		Channels: []Channel{
			{Name: "late", Kind: Webhook, URL: "http://127.0.0.1:1/", NotAcceptedWithin: time.Hour},
			{Name: "outage", Kind: Webhook, URL: "http://127.0.0.1:1/", UpstreamFailingFor: 2 * time.Hour, Relayed: true},
		},
		UpstreamDownSince: func() time.Time { return down },
	})
	f.d.now = func() time.Time { return time.Now().Add(skew) }
	alarm := f.alarm(t, "press-1", 8, "")
	if _, err := f.sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: "a@example.com", To: []string{"b@example.com"}},
		Data: []byte("Subject: relayed\r\n\r\nhello\r\n"), Source: "smtp:10.0.0.5"}); err != nil {
		t.Fatal(err)
	}
	ids := func() map[string]bool {
		out := map[string]bool{}
		for _, r := range f.d.store.all() {
			out[r.Channel+" "+r.Alarm.Key+" "+r.Rule] = true
		}
		return out
	}
	f.d.scan()
	if got := ids(); len(got) != 0 {
		t.Fatalf("fresh mail, upstream fine: %v", got)
	}
	skew = 90 * time.Minute
	down = time.Now().Add(skew - time.Hour) // failing, not long enough
	f.d.scan()
	if got := ids(); len(got) != 1 || !got["late "+alarm+" not_accepted"] {
		t.Fatalf("after 90 min: %v", got)
	}
	down = time.Now().Add(skew - 3*time.Hour)
	f.d.scan()
	got := ids()
	if len(got) != 3 || !got["outage "+alarm+" upstream_failing"] {
		t.Fatalf("after 3 h down: %v", got)
	}
	relayed := false
	for k := range got {
		relayed = relayed || strings.HasPrefix(k, "outage id:")
	}
	if !relayed {
		t.Errorf("relayed mail not sent over the relayed channel: %v", got)
	}
	reads := f.d.headerReads
	f.d.scan() // again: nothing new
	if n := len(ids()); n != 3 {
		t.Errorf("second scan: %d records", n)
	}
	// Every queued mail is settled: the scan reads the directory, not the
	// headers, so its cost during an outage does not grow with the queue.
	if f.d.headerReads != reads {
		t.Errorf("second scan read %d headers of mails already settled", f.d.headerReads-reads)
	}
}

func TestMailText(t *testing.T) {
	tests := []struct{ name, mail, subj, text string }{
		{"qp", alarmMail, "Pumpe überhitzt", "Press 1: temperature 98 °C (limit 90)\nAcknowledge at the panel."},
		{"plain", "Subject: hi\r\n\r\nline 1\r\nline 2\r\n", "hi", "line 1\nline 2"},
		{"alternative", "Subject: A\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nZ3LDvMOfZQ==\r\n--b--\r\n", "A", "grüße"},
		{"html only", "Subject: A\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n", "A", ""},
		{"not a mail", "garbage", "", "garbage"},
	}
	for _, tt := range tests {
		s, txt := mailText([]byte(tt.mail))
		if s != tt.subj || txt != tt.text {
			t.Errorf("%s: %q %q, want %q %q", tt.name, s, txt, tt.subj, tt.text)
		}
	}
	long := strings.Repeat("ü", maxText)
	if _, txt := mailText([]byte("Subject: x\r\n\r\n" + long)); len(txt) > maxText+3 || !strings.HasSuffix(txt, "…") {
		t.Errorf("long text: %d bytes", len(txt))
	}
}

func TestScanPeriod(t *testing.T) {
	tests := []struct {
		every time.Duration
		chans []Channel
		want  time.Duration
	}{
		{time.Second, []Channel{{Name: "a", HasSeverityRule: true}}, maxScanPeriod},
		{time.Second, []Channel{{Name: "a", NotAcceptedWithin: 15 * time.Minute}}, maxScanPeriod},
		{time.Second, []Channel{{Name: "a", NotAcceptedWithin: time.Hour}, {Name: "b", UpstreamFailingFor: time.Minute}}, 15 * time.Second},
		{time.Second, []Channel{{Name: "a", NotAcceptedWithin: 2 * time.Second}}, time.Second},
		{100 * time.Millisecond, []Channel{{Name: "a", NotAcceptedWithin: time.Millisecond}}, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		d := &Dispatcher{o: Options{ScanEvery: tt.every, Channels: tt.chans}}
		if got := d.scanPeriod(); got != tt.want {
			t.Errorf("%v %+v: %v, want %v", tt.every, tt.chans, got, tt.want)
		}
	}
}

// A redirect is not followed (a 302 turns a POST into a GET whose 200 would
// count as delivered): the channel's URL is wrong, the delivery dead.
func TestRedirectIsNotDelivered(t *testing.T) {
	rcv := newReceiver(t)
	redir := httptest.NewServer(http.RedirectHandler(rcv.srv.URL+"/moved", http.StatusFound))
	t.Cleanup(redir.Close)
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "hook", Kind: Webhook, URL: redir.URL, HasSeverityRule: true},
	}})
	f.alarm(t, "press-1", 11, "alarm")
	f.run(t)
	if r := f.result(t); r.Delivered || r.Code != http.StatusFound {
		t.Errorf("result %+v", r)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.got) != 0 {
		t.Errorf("the redirect was followed: %+v", rcv.got)
	}
}

// A receiver with a private CA: refused (and retried) against the system
// roots, delivered with the channel's RootCAs.
func TestPrivateCA(t *testing.T) {
	got := make(chan string, 10)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Idempotency-Key")
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "system-roots", Kind: Webhook, URL: srv.URL, HasSeverityRule: true},
		{Name: "private-ca", Kind: Webhook, URL: srv.URL, HasSeverityRule: true, RootCAs: pool},
	}})
	f.d.minBackoff = time.Hour // one attempt of the refused one
	f.alarm(t, "press-1", 12, "alarm")
	f.run(t)
	if r := f.result(t); r.Channel != "private-ca" || !r.Delivered {
		t.Errorf("result %+v", r)
	}
	<-got
	waitFor(t, "the refused attempt", func() bool { return f.d.Stats()[0].Retried == 1 })
	if st := f.d.Stats()[0]; !strings.Contains(st.LastError, "certificate") || st.Delivered != 0 {
		t.Errorf("system roots: %+v", st)
	}
}

// The idempotency key of one alarm on one channel stays the same across
// restarts of the gateway, but a spool made anew, whose sources count their
// keys from 1 again (Modbus: modbus/DEV/TAG/RULE/1), gives its alarms keys
// no earlier spool gave: a receiver that drops repeats would otherwise
// drop the new alarm.
func TestIdempotencyKeyPerSpool(t *testing.T) {
	const key = "modbus/tank/level/HH/1"
	open := func(dir string) string {
		t.Helper()
		sp, err := spool.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		d, err := New(sp, Options{Hostname: "gw", Channels: []Channel{{Name: "hook", Kind: Webhook, URL: "http://127.0.0.1:1/", NotAcceptedWithin: time.Hour}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.record(0, Alarm{Key: key}, "not_accepted"); err != nil {
			t.Fatal(err)
		}
		return idempotencyKey(d.store.instance, "gw", "hook", key)
	}
	dir := t.TempDir()
	first := open(dir)
	if again := open(dir); again != first {
		t.Errorf("after a restart: key %s, was %s", again, first)
	}
	if other := open(t.TempDir()); other == first {
		t.Errorf("a new spool gave the alarm %s the old spool's key %s", key, first)
	}
	// A torn instance file (a crash on first start, before this fix's
	// fsync) is made anew, not used.
	os.WriteFile(filepath.Join(dir, dirChannels, instanceFile), []byte("12"), 0o600)
	if torn := open(dir); torn == first || len(torn) != len(first) {
		t.Errorf("torn instance: key %s", torn)
	}
}
