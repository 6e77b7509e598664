package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/mosquittotest"
	"github.com/plcmail/plcmail/internal/throwawayca"
	"github.com/plcmail/plcmail/spool"
)

// mqttSection is an [mqtt] section for broker b over TLS, verified with its
// CA, with the password in a 0600 file.
func mqttSection(b *mosquittotest.Broker, interval string) string {
	return fmt.Sprintf("\n[mqtt]\nbroker = %q\nusername = %q\npassword_file = %q\nca_file = %q\nstatus_interval = %q\n",
		b.TLSURL(), mosquittotest.Username, b.PasswordFile, b.CAFile, interval)
}

// unpluggedLink is a [[serial]] link whose port does not exist: down.
func unpluggedLink(dir string) string {
	return fmt.Sprintf("\n[[serial]]\nname = \"press-1\"\ndevice = %q\nto = [\"ops@example.com\"]\n", filepath.Join(dir, "no-such-tty"))
}

func decodeFleet(t *testing.T, payload string) fleetStatus {
	t.Helper()
	var s fleetStatus
	if err := json.Unmarshal([]byte(payload), &s); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, payload)
	}
	return s
}

// TestMQTTFleetStatus: serve with [mqtt] says online and publishes its
// status retained (a dashboard subscribing later gets it), publishes again
// as soon as the queue changes (long before status_interval), and on an
// orderly stop leaves "offline" and a last status with online = false.
func TestMQTTFleetStatus(t *testing.T) {
	b := mosquittotest.Start(t)
	c := newTestConfig(t) // its upstream is never reachable: mail stays queued
	c.Extra = unpluggedLink(c.Dir) + mqttSection(b, "1h") + "home_assistant = true\n"
	path := c.write(t)
	ha := b.Subscribe(t, "homeassistant/#")
	srv := startServe(t, path)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve's log:\n%s", srv.logs())
		}
	})

	sub := b.Subscribe(t, "plcmail/gw.test/#")
	sub.Wait(t, "plcmail/gw.test/state", 15*time.Second, func(m mosquittotest.Message) bool { return m.Payload == "online" })
	first := decodeFleet(t, sub.Wait(t, "plcmail/gw.test/status", 15*time.Second, func(mosquittotest.Message) bool { return true }).Payload)
	if !first.Online || first.Hostname != "gw.test" || first.Queued != 0 || first.LinksDown != 1 || first.LinksUp != 0 ||
		len(first.Links) != 1 || first.Links[0].Name != "press-1" || first.Links[0].Up || first.Upstream == "" || first.Version == "" {
		t.Errorf("first status: %+v", first)
	}

	checkHomeAssistant(t, ha, first)
	b.Subscribe(t, "homeassistant/#").Wait(t, "", 5*time.Second, func(m mosquittotest.Message) bool { return m.Retained })

	// A dashboard that starts later sees the same, retained.
	late := b.Subscribe(t, "plcmail/gw.test/+")
	late.Wait(t, "plcmail/gw.test/state", 5*time.Second, func(m mosquittotest.Message) bool { return m.Retained && m.Payload == "online" })
	late.Wait(t, "plcmail/gw.test/status", 5*time.Second, func(m mosquittotest.Message) bool { return m.Retained && decodeFleet(t, m.Payload).Online })

	// A message queued: published on change, well within the hour.
	if r := runCLI(t, "Subject: waits\n\nx\n", "sendmail", "-c", path, "ops@example.com"); r.code != 0 {
		t.Fatalf("send: %+v", r)
	}
	queued := decodeFleet(t, sub.Wait(t, "plcmail/gw.test/status", 15*time.Second, func(m mosquittotest.Message) bool {
		s := decodeFleet(t, m.Payload)
		return s.Queued == 1 && s.LastError != ""
	}).Payload)
	if queued.OldestQueued.IsZero() || queued.LastErrorAt.IsZero() {
		t.Errorf("status with a message waiting: %+v", queued)
	}

	logs, err := srv.stop()
	if err != nil {
		t.Fatalf("serve: %v\n%s", err, logs)
	}
	last := decodeFleet(t, sub.Wait(t, "plcmail/gw.test/status", 5*time.Second, func(m mosquittotest.Message) bool { return !decodeFleet(t, m.Payload).Online }).Payload)
	if last.Queued != 1 {
		t.Errorf("last status: %+v", last)
	}
	sub.Wait(t, "plcmail/gw.test/state", 5*time.Second, func(m mosquittotest.Message) bool { return m.Payload == "offline" })
	after := b.Subscribe(t, "plcmail/gw.test/state")
	after.Wait(t, "plcmail/gw.test/state", 5*time.Second, func(m mosquittotest.Message) bool { return m.Retained && m.Payload == "offline" })
	if !strings.Contains(b.Log(), "Client plcmail-gw.test disconnected.") {
		t.Errorf("broker saw no clean DISCONNECT:\n%s", b.Log())
	}
	for _, w := range []string{"connected to the MQTT broker", "components=", "mqtt"} {
		if !strings.Contains(logs, w) {
			t.Errorf("serve log lacks %q:\n%s", w, logs)
		}
	}
	if strings.Contains(logs, mosquittotest.Password) {
		t.Error("serve log shows the broker password")
	}
}

// TestMQTTLastWillOnKill9: a gateway process killed with SIGKILL cannot say
// anything; the broker publishes its last will "offline", retained.
func TestMQTTLastWillOnKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("child-process test; skipped with -short")
	}
	b := mosquittotest.Start(t)
	c := newTestConfig(t)
	c.Extra = mqttSection(b, "1h")
	path := c.write(t)
	d := newDaemon(t, plcmailBinary(t), path)
	d.start()

	sub := b.Subscribe(t, "plcmail/gw.test/state")
	sub.Wait(t, "plcmail/gw.test/state", 20*time.Second, func(m mosquittotest.Message) bool { return m.Payload == "online" })
	d.kill()
	sub.Wait(t, "plcmail/gw.test/state", 10*time.Second, func(m mosquittotest.Message) bool { return m.Payload == "offline" })
	fresh := b.Subscribe(t, "plcmail/gw.test/state")
	fresh.Wait(t, "plcmail/gw.test/state", 5*time.Second, func(m mosquittotest.Message) bool { return m.Retained && m.Payload == "offline" })
	// Over TLS mosquitto calls the end of a connection without DISCONNECT
	// "Protocol error"; a clean one would be "disconnected." alone.
	if strings.Contains(b.Log(), "Client plcmail-gw.test disconnected.") || strings.Contains(b.Log(), "Received DISCONNECT from plcmail-gw.test") {
		t.Errorf("broker log shows a clean DISCONNECT from a killed gateway:\n%s", b.Log())
	}

	// Started again, it is online again.
	d.start()
	sub.Wait(t, "plcmail/gw.test/state", 20*time.Second, func(m mosquittotest.Message) bool { return m.Payload == "online" })
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("serve after restart: %v\n%s", err, d.logs())
	}
	sub.Wait(t, "plcmail/gw.test/state", 5*time.Second, func(m mosquittotest.Message) bool { return m.Payload == "offline" })
}

// TestMQTTBrokerRestart: the broker restarts without persistence and so
// forgets every retained message; the gateway reconnects by itself and
// publishes state and status again. Before that, an unchanged status is
// published again every status_interval.
func TestMQTTBrokerRestart(t *testing.T) {
	b := mosquittotest.Start(t)
	c := newTestConfig(t)
	c.Extra = mqttSection(b, "2s")
	path := c.write(t)
	srv := startServe(t, path)

	sub := b.Subscribe(t, "plcmail/gw.test/status")
	first := decodeFleet(t, sub.Wait(t, "plcmail/gw.test/status", 15*time.Second, func(mosquittotest.Message) bool { return true }).Payload)
	again := decodeFleet(t, sub.Wait(t, "plcmail/gw.test/status", 10*time.Second, func(mosquittotest.Message) bool { return true }).Payload)
	if d := again.Time.Sub(first.Time); d < 1500*time.Millisecond || d > 5*time.Second {
		t.Errorf("unchanged status published again after %v, want about status_interval (2s)", d)
	}

	b.Restart()
	fresh := b.Subscribe(t, "plcmail/gw.test/+")
	fresh.Wait(t, "plcmail/gw.test/state", 30*time.Second, func(m mosquittotest.Message) bool { return m.Payload == "online" })
	fresh.Wait(t, "plcmail/gw.test/status", 10*time.Second, func(m mosquittotest.Message) bool { return decodeFleet(t, m.Payload).Online })
	logs, err := srv.stop()
	if err != nil {
		t.Fatalf("serve: %v\n%s", err, logs)
	}
	for _, w := range []string{"lost the connection to the MQTT broker", "down_for="} {
		if !strings.Contains(logs, w) {
			t.Errorf("serve log lacks %q:\n%s", w, logs)
		}
	}
}

// TestMQTTWrongCA: a broker whose certificate does not chain to ca_file is
// refused with an error that says so, and the gateway runs on without it
// (and stops cleanly).
func TestMQTTWrongCA(t *testing.T) {
	b := mosquittotest.Start(t)
	other, err := throwawayca.New("not the broker's CA")
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong-ca.pem")
	os.WriteFile(wrong, other.PEM(), 0o644)
	c := newTestConfig(t)
	c.Extra = strings.Replace(mqttSection(b, "1h"), b.CAFile, wrong, 1)
	path := c.write(t)
	srv := startServe(t, path)
	waitFor(t, "the TLS failure logged", func() bool { return strings.Contains(srv.logs(), "cannot connect to the MQTT broker") })
	logs, err := srv.stop()
	if err != nil {
		t.Fatalf("serve stopped with %v; a broker it cannot trust must not stop the gateway\n%s", err, logs)
	}
	for _, w := range []string{"certificate signed by unknown authority", "mqtt.ca_file", "plcmail running", "plcmail stopped"} {
		if !strings.Contains(logs, w) {
			t.Errorf("serve log lacks %q:\n%s", w, logs)
		}
	}
	if strings.Contains(b.Log(), "New client connected") {
		t.Errorf("the broker saw a session:\n%s", b.Log())
	}
}

// TestMQTTConfigCheck: [mqtt] problems stop check and serve with the key and
// line, like every other section.
func TestMQTTConfigCheck(t *testing.T) {
	c := newTestConfig(t)
	secret := filepath.Join(c.Dir, "mqtt.secret")
	os.WriteFile(secret, []byte("pw\n"), 0o644)
	c.Extra = fmt.Sprintf("\n[mqtt]\nbroker = \"tcp://broker.example.com\"\nusername = \"gw\"\npassword_file = %q\nqos = 5\n", secret)
	path := c.write(t)
	text, _ := os.ReadFile(path)
	lineOf := func(key string) int {
		for i, l := range strings.Split(string(text), "\n") {
			if strings.HasPrefix(l, key+" ") {
				return i + 1
			}
		}
		t.Fatalf("no %s in the test config", key)
		return 0
	}
	for _, cmd := range []string{"check", "serve"} {
		r := runCLI(t, "", "plcmail", "-c", path, cmd)
		if r.code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s", cmd, r.code, r.stderr)
		}
		for _, w := range []string{
			fmt.Sprintf("%s:%d: mqtt.broker: \"tcp://broker.example.com\" sends the password", path, lineOf("broker")),
			fmt.Sprintf("%s:%d: mqtt.password_file: %s is readable by group or others", path, lineOf("password_file"), secret),
			fmt.Sprintf("%s:%d: mqtt.qos: must be 0, 1 or 2, not 5", path, lineOf("qos")),
		} {
			if !strings.Contains(r.stdout+r.stderr, w) {
				t.Errorf("%s output lacks %q:\n%s%s", cmd, w, r.stdout, r.stderr)
			}
		}
	}
}

// TestMQTTFleetStatusOf: what the snapshot becomes, field by field.
func TestMQTTFleetStatusOf(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	snap := statusSnapshot{
		Version: "1.2.3", Started: now.Add(-time.Hour), Now: now,
		Links: []bridge.LinkStatus{
			{Name: "up", Connected: true, LastFrame: now.Add(-time.Second)},
			{Name: "silent", Connected: true, Offline: true},
			{Name: "unplugged", LastError: "open /dev/ttyUSB9: no such file\nsecond line"},
		},
		Queue: spool.Stats{Queued: 2, Oldest: now.Add(-90 * time.Second), LastError: "451 try later", LastErrorAt: now.Add(-time.Minute),
			Upstreams: []spool.UpstreamStats{{Name: "primary", State: "down"}, {Name: "backup", State: "ok"}, {Name: "third", State: "ok"}}},
		Spooled: 3, SpooledOldest: now.Add(-2 * time.Minute), Dead: 4,
	}
	f := fleetStatusOf(snap, "gw1", true)
	if f.LinksUp != 1 || f.LinksDown != 2 || f.Links[1].Up || !f.Links[1].Silent || f.Links[2].LastError != "open /dev/ttyUSB9: no such file second line" {
		t.Errorf("links: %+v", f)
	}
	if f.Queued != 3 || f.OldestAgeSeconds != 120 || !f.OldestQueued.Equal(now.Add(-2*time.Minute)) || f.DeadLetters != 4 {
		t.Errorf("queue: %+v", f)
	}
	if f.Upstream != "backup" || strings.Join(f.UpstreamsDown, ",") != "primary" {
		t.Errorf("upstream %q, down %v", f.Upstream, f.UpstreamsDown)
	}
	// Time passing alone is no change; a new message is.
	later := snap
	later.Now = now.Add(30 * time.Second)
	if string(fleetStatusOf(later, "gw1", true).stable()) != string(f.stable()) {
		t.Error("the stable part changed with time alone")
	}
	later.Spooled = 4
	if string(fleetStatusOf(later, "gw1", true).stable()) == string(f.stable()) {
		t.Error("the stable part did not change with the queue")
	}
	// Nothing waiting: no age.
	empty := fleetStatusOf(statusSnapshot{Now: now, Queue: spool.Stats{Oldest: now.Add(-time.Hour)}}, "gw1", true)
	if empty.OldestAgeSeconds != 0 || !empty.OldestQueued.IsZero() || empty.Links == nil {
		t.Errorf("empty queue: %+v", empty)
	}
}

// checkHomeAssistant reads the discovery configurations and checks that
// each entity reads a topic the gateway publishes, and a field its status
// has.
func checkHomeAssistant(t *testing.T, ha *mosquittotest.Subscriber, status fleetStatus) {
	t.Helper()
	raw, _ := json.Marshal(status)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fieldRE := regexp.MustCompile(`^\{\{ value_json\.([a-z_]+)(\[:\d+\])? \}\}$`)
	seen := map[string]bool{}
	for len(seen) < 8 {
		m := ha.Wait(t, "", 10*time.Second, func(m mosquittotest.Message) bool { return strings.HasSuffix(m.Topic, "/config") })
		if seen[m.Topic] {
			continue
		}
		seen[m.Topic] = true
		var c map[string]any
		if err := json.Unmarshal([]byte(m.Payload), &c); err != nil {
			t.Fatalf("%s: %v\n%s", m.Topic, err, m.Payload)
		}
		if !strings.HasPrefix(m.Topic, "homeassistant/") || c["unique_id"] == "" || c["availability_topic"] != "plcmail/gw.test/state" || c["device"] == nil {
			t.Errorf("%s: %s", m.Topic, m.Payload)
		}
		switch c["state_topic"] {
		case "plcmail/gw.test/state":
			if c["payload_on"] != "online" || c["payload_off"] != "offline" {
				t.Errorf("%s: %s", m.Topic, m.Payload)
			}
		case "plcmail/gw.test/status":
			tmpl, _ := c["value_template"].(string)
			sm := fieldRE.FindStringSubmatch(tmpl)
			if sm == nil {
				t.Errorf("%s: value_template %q", m.Topic, tmpl)
			} else if _, ok := fields[sm[1]]; !ok {
				t.Errorf("%s reads %s, which the status lacks: %s", m.Topic, sm[1], raw)
			}
		default:
			t.Errorf("%s: state_topic %v", m.Topic, c["state_topic"])
		}
	}
}

// TestExampleMQTTSection uncomments the example's [mqtt] block (the files it
// names made in a temporary folder) and loads it, and loads the README's
// [mqtt] block the same way: what users copy must be valid.
func TestExampleMQTTSection(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "mqtt.secret")
	os.WriteFile(secret, []byte("pw\n"), 0o600)
	ca, err := throwawayca.New("broker CA")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "broker-ca.pem")
	os.WriteFile(caFile, ca.PEM(), 0o644)
	files := strings.NewReplacer(`"/etc/plcmail/mqtt.secret"`, strconv.Quote(secret), `"/etc/plcmail/broker-ca.pem"`, strconv.Quote(caFile))

	example, err := os.ReadFile("../../configs/plcmail.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	upstreamSecret := filepath.Join(dir, "upstream.secret")
	os.WriteFile(upstreamSecret, []byte("app-password\n"), 0o600)
	lines := strings.Split(strings.ReplaceAll(string(example), `"/etc/plcmail/upstream.secret"`, strconv.Quote(upstreamSecret)), "\n")
	in := false
	found := 0
	for i, l := range lines {
		if l == "#[mqtt]" {
			in = true
		}
		if in && strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "# ") {
			lines[i] = files.Replace(l[1:])
			found++
		} else if in {
			in = false
		}
	}
	if found < 9 {
		t.Fatalf("example: found %d lines of a commented [mqtt] block, want it with all its keys", found)
	}
	cfg, err := config.Parse("example", []byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatalf("example with [mqtt] uncommented:\n%v", err)
	}
	if m := cfg.MQTT; m == nil || m.Broker != "mqtts://broker.example.com:8883" || m.PasswordFile != secret || m.TopicPrefix != "plcmail/gw.example.com" {
		t.Errorf("example [mqtt]: %+v", cfg.MQTT)
	}
	if _, err := mqttOptions(cfg); err != nil {
		t.Errorf("mqttOptions(example): %v", err)
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "```toml\n[mqtt]")
	block, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatal("README has no ```toml [mqtt] block")
	}
	c := newTestConfig(t)
	c.Extra = "\n[mqtt]" + files.Replace(block)
	if r := runCLI(t, "", "plcmail", "-c", c.write(t), "check"); r.code != 0 {
		t.Errorf("README's [mqtt] block: check exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestMQTTRestartKeys: the broker session keeps the settings it started
// with, so a reload that changes [mqtt] says a restart is needed.
func TestMQTTRestartKeys(t *testing.T) {
	one := 1
	old := config.Default()
	n := *old
	if got := restartKeys(old, &n); len(got) != 0 {
		t.Fatalf("nothing changed: %v", got)
	}
	n.MQTT = &config.MQTT{Broker: "mqtts://broker.example.com", QoS: &one}
	if got := strings.Join(restartKeys(old, &n), ","); got != "mqtt" {
		t.Errorf("[mqtt] added: restart keys %q, want mqtt", got)
	}
	o2 := n
	o2.MQTT = &config.MQTT{Broker: "mqtts://broker.example.com", QoS: &one}
	if got := restartKeys(&n, &o2); len(got) != 0 {
		t.Errorf("same [mqtt] read again: restart keys %v", got)
	}
	o2.MQTT.TopicPrefix = "elsewhere"
	if got := strings.Join(restartKeys(&n, &o2), ","); got != "mqtt" {
		t.Errorf("[mqtt] changed: restart keys %q, want mqtt", got)
	}
}

// TestMQTTHungBrokerHoldsNothing: a broker that stops answering (SIGSTOP:
// connections stay open, nothing comes back) delays neither a mail nor the
// gateway's shutdown.
func TestMQTTHungBrokerHoldsNothing(t *testing.T) {
	b := mosquittotest.Start(t)
	u := mailertest.NewUpstream(t, mailertest.Options{})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	c.Extra = mqttSection(b, "1s")
	path := c.write(t)
	srv := startServe(t, path)
	b.Subscribe(t, "plcmail/gw.test/status").Wait(t, "plcmail/gw.test/status", 15*time.Second, func(mosquittotest.Message) bool { return true })

	b.Freeze()
	defer b.Thaw()
	if r := runCLI(t, "Subject: while the broker hangs\n\nx\n", "sendmail", "-c", path, "ops@example.com"); r.code != 0 {
		t.Fatalf("send: %+v", r)
	}
	u.Wait(t, 1, 15*time.Second)
	start := time.Now()
	logs, err := srv.stop()
	if err != nil {
		t.Fatalf("serve: %v\n%s", err, logs)
	}
	// The last status and "offline" wait 2s each for an answer, the
	// DISCONNECT 2s: well under the 10s allowed here.
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("serve took %v to stop with a hung broker", d)
	}
	if !strings.Contains(logs, "plcmail stopped") {
		t.Errorf("serve log:\n%s", logs)
	}
}
