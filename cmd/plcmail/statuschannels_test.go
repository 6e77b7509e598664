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
