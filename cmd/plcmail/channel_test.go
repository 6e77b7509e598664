package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plcmail/plcmail/channel"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/mosquittotest"
	"github.com/plcmail/plcmail/spool"
)

// serve with the upstream unreachable: a relayed mail not accepted within
// 1s goes out over the webhook channel, and the one whose rule is an
// upstream failing for 1s too; plcmail status shows both channels.
func TestServeChannels(t *testing.T) {
	posted := make(chan channel.Payload, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p channel.Payload
		if err := json.Unmarshal(b, &p); err != nil || r.Header.Get("Authorization") != "Bearer tok3n" || r.Header.Get("Idempotency-Key") != p.ID {
			t.Errorf("request %s %v: %v", b, r.Header, err)
		}
		posted <- p
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hook.Close)

	c := newTestConfig(t) // upstream 127.0.0.1:1: connection refused
	tok := filepath.Join(c.Dir, "hook.token")
	os.WriteFile(tok, []byte("tok3n\n"), 0o600)
	c.Extra = fmt.Sprintf(`
[[channel]]
name = "late"
kind = "webhook"
url = %q
token_file = %q
not_accepted_within = "1s"
relayed = true

[[channel]]
name = "outage"
kind = "webhook"
url = %q
token_file = %q
upstream_failing_for = "1s"
relayed = true
`, hook.URL+"/late", tok, hook.URL+"/outage", tok)
	path := c.write(t)
	srv := startServe(t, path)
	if r := runCLI(t, "Subject: boiler pressure\n\nPressure 9 bar.\n", "sendmail", "-c", path, "ops@example.com"); r.code != 0 {
		t.Fatalf("send: %+v", r)
	}
	got := map[string]channel.Payload{}
	for len(got) < 2 {
		select {
		case p := <-posted:
			got[p.Channel] = p
		case <-time.After(30 * time.Second):
			t.Fatalf("posted %v; log:\n%s", got, srv.logs())
		}
	}
	if p := got["late"]; p.Rule != "not_accepted" || p.Subject != "boiler pressure" || p.Text != "Pressure 9 bar." || p.Gateway != "gw.test" || p.Source != "send" {
		t.Errorf("late: %+v", p)
	}
	if p := got["outage"]; p.Rule != "upstream_failing" || p.ID == got["late"].ID {
		t.Errorf("outage: %+v", p)
	}
	// Both delivered, shown by status.
	deadline := time.Now().Add(10 * time.Second)
	var r result
	for time.Now().Before(deadline) {
		r = runCLI(t, "", "plcmail", "-c", path, "status")
		if strings.Count(r.stdout, "delivered 1, retried 0, dead 0") == 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"fallback channels (via = position):", "1 late", "2 outage", "webhook", "0 waiting"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s\n%s", want, r.stdout, r.stderr)
		}
	}
	// The mail itself stays queued: the channels are a fallback, not a
	// replacement.
	if ms, err := spoolList(t, c.Spool); err != nil || len(ms) != 1 {
		t.Errorf("queue: %d messages, %v", len(ms), err)
	}
	if logs, err := srv.stop(); err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}

func spoolList(t *testing.T, dir string) ([]spool.Message, error) {
	t.Helper()
	sp, err := spool.Open(dir, nil)
	if err != nil {
		return nil, err
	}
	defer sp.Close()
	return sp.List()
}

func TestUpstreamDownSince(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		ups  []spool.UpstreamStats
		want time.Time
	}{
		{"no upstream stats", nil, time.Time{}},
		{"one down", []spool.UpstreamStats{{State: "down", DownSince: t0}}, t0},
		{"probing counts as failing", []spool.UpstreamStats{{State: "probing", DownSince: t0}}, t0},
		{"one of two ok", []spool.UpstreamStats{{State: "down", DownSince: t0}, {State: "ok"}}, time.Time{}},
		{"both down: since the later", []spool.UpstreamStats{{State: "down", DownSince: t0}, {State: "down", DownSince: t0.Add(time.Hour)}}, t0.Add(time.Hour)},
	}
	for _, tt := range tests {
		if got := upstreamDownSince(spool.Stats{Upstreams: tt.ups}); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The commented [[channel]] blocks of the example configuration, with
// [mqtt] for the mqtt one, are valid as they stand.
func TestExampleChannelSection(t *testing.T) {
	dir := t.TempDir()
	secret := func(name, v string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(v+"\n"), 0o600)
		return strconv.Quote(p)
	}
	files := strings.NewReplacer(`"/etc/plcmail/upstream.secret"`, secret("upstream.secret", "app-password"),
		`"/etc/plcmail/mqtt.secret"`, secret("mqtt.secret", "pw"), `"/etc/plcmail/ntfy.token"`, secret("ntfy.token", "tk_x"))
	example, err := os.ReadFile("../../configs/plcmail.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(files.Replace(string(example)), "\n")
	in, found := false, 0
	for i, l := range lines {
		if l == "#[mqtt]" || l == "#[[channel]]" {
			in = true
		}
		switch {
		case in && strings.HasPrefix(l, "#ca_file"):
			lines[i] = "" // needs a real CA; config's tests cover it
		case in && l == "#":
		case in && strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# "):
			lines[i] = l[1:]
			if strings.HasPrefix(l, "#[[channel]]") {
				found++
			}
		case in:
			in = false
		}
	}
	if found != 3 {
		t.Fatalf("example: %d commented [[channel]] blocks, want 3", found)
	}
	cfg, err := config.Parse("example", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("example with [[channel]] uncommented:\n%v", err)
	}
	o, err := channelOptions(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "kind mqtt needs [mqtt]") {
		t.Errorf("mqtt channel without a client: %v", err)
	}
	if len(cfg.Channel) != 3 || cfg.Channel[1].Lifetime.D() != 24*time.Hour || !cfg.Channel[2].Relayed {
		t.Fatalf("channels %+v", cfg.Channel)
	}
	cfg.Channel = cfg.Channel[:2]
	if o, err = channelOptions(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if c := o.Channels[0]; c.Token != "tk_x" || !c.HasSeverityRule || c.SeverityAtLeast.String() != "critical" || c.Kind != channel.Ntfy {
		t.Errorf("ntfy: %+v", c)
	}
	if c := o.Channels[1]; c.NotAcceptedWithin != 15*time.Minute || c.UpstreamFailingFor != time.Hour || c.HasSeverityRule {
		t.Errorf("teams: %+v", c)
	}
}

func TestChannelNeedsRestart(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = "\n[[channel]]\nname = \"n\"\nkind = \"slack\"\nurl = \"https://hooks.example.com/x\"\nseverity_at_least = \"alarm\"\n"
	old, err := loadConfig(&env{configPath: c.write(t)})
	if err != nil {
		t.Fatal(err)
	}
	n := *old
	n.Channel = append([]config.Channel(nil), old.Channel...)
	if got := restartKeys(old, &n); len(got) != 0 {
		t.Errorf("unchanged: %v", got)
	}
	n.Channel[0].SeverityAtLeast = "critical"
	if got := strings.Join(restartKeys(old, &n), ","); got != "channel" {
		t.Errorf("[[channel]] changed: restart keys %q, want channel", got)
	}
}

// kill -9 of a real `plcmail serve` while the webhook holds a fallback
// delivery: after the restart every mail was carried by the channel, the
// held one twice under the same Idempotency-Key (the gateway never heard
// the answer), every other once.
func TestKill9DuringChannelDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("child-process crash test; skipped with -short")
	}
	bin := plcmailBinary(t)
	const total, holdAt = 10, 3
	var mu sync.Mutex
	count := map[string]int{}
	subjects := map[string]bool{}
	n := 0
	held, free := make(chan string, 1), make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p channel.Payload
		json.NewDecoder(r.Body).Decode(&p)
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		count[key]++
		subjects[p.Subject] = true
		n++
		hold := n == holdAt
		mu.Unlock()
		if hold {
			held <- key
			<-free
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(hook.Close)

	c := newTestConfig(t) // upstream unreachable: the mails stay queued
	c.Extra = fmt.Sprintf("\n[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = %q\nnot_accepted_within = \"1ms\"\nrelayed = true\n", hook.URL)
	path := c.write(t)
	for i := range total {
		if r := runCLI(t, fmt.Sprintf("Subject: mail %d\n\nbody\n", i), "sendmail", "-c", path, "ops@example.com"); r.code != 0 {
			t.Fatalf("send: %+v", r)
		}
	}
	d := newDaemon(t, bin, path)
	d.start()
	var heldKey string
	select {
	case heldKey = <-held:
	case <-time.After(30 * time.Second):
		t.Fatalf("no delivery %d; log:\n%s", holdAt, d.logs())
	}
	d.kill()
	close(free)

	d.start()
	delivered := func() int {
		ents, _ := os.ReadDir(filepath.Join(c.Spool, "channels"))
		k := 0
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(c.Spool, "channels", e.Name()))
			if strings.Contains(string(b), `"state":"delivered"`) {
				k++
			}
		}
		return k
	}
	if !poll(30*time.Second, func() bool { return delivered() == total }) {
		t.Fatalf("%d of %d delivered; log:\n%s", delivered(), total, d.logs())
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(count) != total || len(subjects) != total {
		t.Errorf("%d keys, %d subjects received, want %d", len(count), len(subjects), total)
	}
	for k, got := range count {
		want := 1
		if k == heldKey {
			want = 2
		}
		if got != want {
			t.Errorf("key %s received %d times, want %d", k, got, want)
		}
	}
}

func TestPrintChannels(t *testing.T) {
	now := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)
	var b strings.Builder
	printChannels(&b, now, nil)
	if b.Len() != 0 {
		t.Errorf("no channels printed %q", b.String())
	}
	printChannels(&b, now, []channel.Stats{
		{Name: "phones", Kind: channel.Ntfy, Delivered: 3, LastSuccess: now.Add(-2 * time.Minute)},
		{Name: "teams", Kind: channel.Teams, Queued: 2, Retried: 5, LastError: "503 Service Unavailable:\nbusy", LastErrorAt: now.Add(-time.Minute)},
	})
	want := `
fallback channels (via = position):
  1 phones  ntfy   0 waiting  delivered 3, retried 0, dead 0  last delivery 2m00s ago
  2 teams   teams  2 waiting  delivered 0, retried 5, dead 0  last delivery none since start
                   last error (1m00s ago): 503 Service Unavailable: busy
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// serve with a kind mqtt channel publishes over the [mqtt] connection (TLS,
// password) to a real mosquitto.
func TestServeMQTTChannel(t *testing.T) {
	b := mosquittotest.Start(t)
	sub := b.Subscribe(t, "plcmail/gw.test/alarm")
	c := newTestConfig(t) // upstream unreachable
	c.Extra = mqttSection(b, "1h") + "\n[[channel]]\nname = \"scada\"\nkind = \"mqtt\"\ntopic = \"plcmail/gw.test/alarm\"\nnot_accepted_within = \"1ms\"\nrelayed = true\n"
	path := c.write(t)
	srv := startServe(t, path)
	if r := runCLI(t, "Subject: tank level\n\nLevel 98 %.\n", "sendmail", "-c", path, "ops@example.com"); r.code != 0 {
		t.Fatalf("send: %+v", r)
	}
	m := sub.Wait(t, "plcmail/gw.test/alarm", 30*time.Second, func(mosquittotest.Message) bool { return true })
	var p channel.Payload
	if err := json.Unmarshal([]byte(m.Payload), &p); err != nil {
		t.Fatal(err)
	}
	if p.Subject != "tank level" || p.Text != "Level 98 %." || p.Channel != "scada" || !strings.HasPrefix(p.ID, "plcmail-") || m.Retained {
		t.Errorf("published %+v (retained %v)", p, m.Retained)
	}
	if logs, err := srv.stop(); err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}
