package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/plcmail/plcmail/channel"
)

// TestModbusAlarmTakesSeverityChannel: a polled tag crossing both its H
// (warning) and HH (critical) limits queues two alarm mails; a channel with
// severity_at_least = "critical" carries the HH alarm at once and never the
// H one, although the upstream is unreachable for both (so the time rules,
// which this channel does not have, would have taken either).
func TestModbusAlarmTakesSeverityChannel(t *testing.T) {
	port, do := startModbusSlave(t)
	var mu sync.Mutex
	var posted []channel.Payload
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p channel.Payload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("webhook body %q: %v", b, err)
		}
		mu.Lock()
		posted = append(posted, p)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	c := newTestConfig(t) // upstream 127.0.0.1:1: connection refused
	c.Extra = fmt.Sprintf(`
[[alarm]]
code = 500
name = "Tank 1 high"
subject = "{{.Name}}: {{.Event}} at {{index .Values 0}} {{.Unit}}"
to = ["ops@example.com"]

[[alarm]]
code = 501
name = "Tank 1 overfull"
subject = "{{.Name}}: {{.Event}} at {{index .Values 0}} {{.Unit}}"
to = ["ops@example.com"]

[[channel]]
name = "pager"
kind = "webhook"
url = %q
severity_at_least = "critical"

[[modbus]]
name = "tank"
mode = "tcp"
address = "127.0.0.1:%d"
poll_interval = "50ms"
timeout = "200ms"
to = ["ops@example.com"]

[[modbus.tag]]
name = "level"
table = "holding"
address = 0
type = "int16"
scale = 0.1
unit = "%%"

[[modbus.tag.alarm]]
limit = "H"
setpoint = 90
code = 500

[[modbus.tag.alarm]]
limit = "HH"
setpoint = 95
code = 501
`, hook.URL+"/pager", port)
	path := c.write(t)
	srv := startServe(t, path)
	do("hr 0 975")

	// Both mails queued means both passed the channel hook, which runs
	// before the spool write; then the one record must be delivered and
	// none left waiting.
	waitFor(t, "two alarm mails queued", func() bool {
		ms, err := spoolList(t, c.Spool)
		return err == nil && len(ms) == 2
	})
	waitFor(t, "the channel delivered once and idle", func() bool {
		r := runCLI(t, "", "plcmail", "-c", path, "status")
		return strings.Contains(r.stdout, "delivered 1, retried 0, dead 0") && strings.Contains(r.stdout, "0 waiting")
	})
	mu.Lock()
	defer mu.Unlock()
	if len(posted) != 1 {
		t.Fatalf("webhook got %d posts, want 1: %+v\nlog:\n%s", len(posted), posted, srv.logs())
	}
	p := posted[0]
	if p.Rule != "severity" || p.Severity != "critical" || !strings.HasPrefix(p.Subject, "Tank 1 overfull: raise at 97.5 %") ||
		!strings.HasPrefix(p.Key, "modbus/tank/") || p.ID == "" {
		t.Errorf("posted %+v", p)
	}
	if logs, err := srv.stop(); err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}
