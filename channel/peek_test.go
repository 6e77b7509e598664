package channel

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPeek: the records still to deliver are counted per channel from the
// directory alone (a stopped gateway's status), delivered ones are not, and
// a spool without channels has none.
func TestPeek(t *testing.T) {
	if got, err := Peek(t.TempDir()); err != nil || len(got) != 0 {
		t.Fatalf("empty spool: %v %v", got, err)
	}
	failing := newReceiver(t, 503, 503, 503)
	ok := newReceiver(t)
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "down", Kind: Webhook, URL: failing.srv.URL, HasSeverityRule: true},
		{Name: "up", Kind: Webhook, URL: ok.srv.URL, HasSeverityRule: true},
	}})
	f.d.minBackoff = time.Hour // one attempt of the failing one
	f.alarm(t, "press-1", 1, "alarm")
	f.run(t)
	if r := f.result(t); r.Channel != "up" || !r.Delivered {
		t.Fatalf("result %+v", r)
	}
	waitFor(t, "the failed attempt", func() bool { return f.d.Stats()[0].Retried == 1 })
	// A write cut short is no record.
	if err := os.WriteFile(filepath.Join(f.d.store.dir, tmpPrefix+"x"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Peek(filepath.Dir(f.d.store.dir))
	if want := map[string]int{"down": 1}; err != nil || !maps.Equal(got, want) {
		t.Errorf("Peek = %v, %v; want %v", got, err, want)
	}
}
