package modbus

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/flood"
)

// TestPeekDigestPending: the events a device holds for a digest are
// counted from the state file the poller writes, for `plcmail status` of a
// stopped gateway; a device with none held or without a state file is left
// out, and a broken state file is an error that does not hide the others.
func TestPeekDigestPending(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	held := &deviceState{Rules: map[string]*ruleState{}, Held: flood.Held{Entries: []alarmmail.Entry{
		{Time: now, Code: 1, Tag: "level", Limit: "H", Event: "raise"},
		{Time: now, Code: 1, Tag: "level", Limit: "H", Event: "clear"},
	}, Digests: 3}}
	if err := held.save(dir, "tank"); err != nil {
		t.Fatal(err)
	}
	none := &deviceState{Rules: map[string]*ruleState{}, Held: flood.Held{Digests: 1}}
	if err := none.save(dir, "pump"); err != nil {
		t.Fatal(err)
	}
	n, err := PeekDigestPending(dir, []string{"tank", "pump", "new"})
	if err != nil || len(n) != 1 || n["tank"] != 2 {
		t.Fatalf("PeekDigestPending = %v, %v; want tank 2 only", n, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err = PeekDigestPending(dir, []string{"broken", "tank"})
	if err == nil || n["tank"] != 2 {
		t.Fatalf("with a broken state file: %v, %v; want tank 2 and an error", n, err)
	}
}
