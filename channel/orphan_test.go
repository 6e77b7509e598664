package channel

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/spool"
)

// TestUnconfiguredChannelRecordsAreReported: deliveries left for a channel
// that was renamed or removed are never sent; the restart says so (a
// warning naming the channel and the count) rather than keep them silently.
func TestUnconfiguredChannelRecordsAreReported(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := New(sp, Options{Hostname: "gw", Channels: []Channel{
		{Name: "chat", Kind: Webhook, URL: "http://127.0.0.1:1/x", HasSeverityRule: true},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	old.minBackoff = time.Hour
	for i := range 2 {
		if _, err := old.record(0, Alarm{Key: "k" + string(rune('0'+i)), Severity: "alarm"}, "severity"); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := New(sp, Options{Hostname: "gw", Channels: []Channel{
		{Name: "chat2", Kind: Webhook, URL: "http://127.0.0.1:1/x", HasSeverityRule: true},
	}}, log); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "channel=chat ") || !strings.Contains(l, "waiting=2") {
		t.Errorf("log:\n%s", l)
	}
}
