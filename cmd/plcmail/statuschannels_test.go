package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcmail/plcmail/channel"
)

// TestStatusNotRunningChannels: `plcmail status` of a stopped gateway
// shows what waits in the spool, which includes the fallback channel
// deliveries in SPOOL/channels, not only the queued mail.
func TestStatusNotRunningChannels(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = `
[[channel]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:1/alarms"
severity_at_least = "critical"

[[channel]]
name = "idle"
kind = "slack"
url = "http://127.0.0.1:1/slack"
severity_at_least = "critical"
`
	path := c.write(t)
	dir := filepath.Join(c.Spool, "channels")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, r := range []channel.Record{
		{ID: "a1", Channel: "hook", State: channel.StateQueued},
		{ID: "a2", Channel: "hook", State: channel.StateQueued},
		{ID: "a3", Channel: "hook", State: channel.StateDelivered},
		{ID: "a4", Channel: "idle", State: channel.StateDead},
	} {
		b, _ := json.Marshal(r)
		if err := os.WriteFile(filepath.Join(dir, r.ID), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := runCLI(t, "", "plcmail", "-c", path, "status")
	if r.code != 1 || !strings.Contains(r.stdout, "plcmail is not running") ||
		!strings.Contains(r.stdout, "fallback channels: hook 2 waiting\n") {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestStatusJSONNotRunning: `status --json` of a stopped gateway is JSON
// too (monitoring parses it), with what waits in the spool, and exit 1.
func TestStatusJSONNotRunning(t *testing.T) {
	c := newTestConfig(t)
	path := c.write(t)
	if r := runCLI(t, "Subject: early\r\n\r\nqueued before serve\r\n", "plcmail", "-c", path, "send", "ops@example.com"); r.code != 0 {
		t.Fatalf("send: %d %s", r.code, r.stderr)
	}
	r := runCLI(t, "", "plcmail", "-c", path, "status", "--json")
	var s struct {
		Running *bool  `json:"running"`
		Spool   string `json:"spool"`
		Queued  int    `json:"queued"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || r.code != 1 ||
		s.Running == nil || *s.Running || s.Queued != 1 || s.Spool != c.Spool {
		t.Fatalf("status --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
}

// TestStatusNotRunningModbusHeld: `plcmail status` of a stopped gateway
// shows the Modbus alarm events held for a digest (in the devices' state
// files), as the running one does, in the text and in --json.
func TestStatusNotRunningModbusHeld(t *testing.T) {
	c := newTestConfig(t)
	device := func(name string) string {
		return `
[[modbus]]
name = "` + name + `"
mode = "tcp"
address = "127.0.0.1:1502"
slave_id = ` + map[string]string{"pump": "1", "tank": "2", "valve": "3"}[name] + `
to = ["ops@example.com"]
[[modbus.tag]]
name = "level"
table = "holding"
address = 0
[[modbus.tag.alarm]]
limit = "H"
setpoint = 90
`
	}
	c.Extra = device("pump") + device("tank") + device("valve")
	path := c.write(t)
	dir := filepath.Join(c.Spool, "modbus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, state := range map[string]string{
		"tank":  `{"rules":{},"held":{"entries":[{"Code":1,"Event":"raise"},{"Code":1,"Event":"clear"},{"Code":1,"Event":"raise"}],"digests":2}}`,
		"valve": `{"rules":{},"held":{"digests":1}}`,
		"pump":  `{"rules":{},"held":{"entries":[{"Code":1,"Event":"raise"}]}}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name+".json"), []byte(state), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := runCLI(t, "", "plcmail", "-c", path, "status")
	if r.code != 1 || !strings.Contains(r.stdout, "plcmail is not running") ||
		!strings.Contains(r.stdout, "modbus devices: pump 1 held for a digest, tank 3 held for a digest\n") {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "plcmail", "-c", path, "status", "--json")
	var s struct {
		Held map[string]int `json:"modbus_digest_pending"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || r.code != 1 || len(s.Held) != 2 || s.Held["tank"] != 3 || s.Held["pump"] != 1 {
		t.Fatalf("status --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
}
