package flood

import (
	"testing"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// TestGate steps a clock through hold-off and the shared cap.
func TestGate(t *testing.T) {
	lim := new(Limiter)
	a, b := NewGate(lim), NewGate(lim) // two sources share the cap
	steps := []struct {
		g       *Gate
		at      float64
		key     string
		holdoff time.Duration
		want    string
	}{
		{a, 0, "7/raise", time.Minute, ""},
		{a, 1, "7/raise", time.Minute, ReasonHoldoff},
		{a, 2, "7/clear", time.Minute, ""},
		{b, 3, "7/raise", time.Minute, ""}, // another source's hold-off is its own
		{a, 61, "7/raise", time.Minute, ""},
		{b, 61.5, "8/raise", 0, ReasonRateLimit}, // 2, 3, 61 in the last minute, cap 3
		{b, 62.5, "8/raise", 0, ""},              // the one at 2 s left
	}
	for i, s := range steps {
		got := s.g.Decide(at(s.at), s.key, s.holdoff, 3)
		if got != s.want {
			t.Fatalf("step %d (%s at %vs): %q, want %q", i, s.key, s.at, got, s.want)
		}
		if got == "" {
			s.g.Mailed(s.key, at(s.at))
		}
	}
}

// TestDigestSchedule: the first held event starts the delay, a restart
// schedules held events from before it, a full batch sends the rest at
// once, a failure retries.
func TestDigestSchedule(t *testing.T) {
	var d Digest
	delay := 10 * time.Second
	d.Start(at(0), delay)
	if d.Due(at(0), 0) {
		t.Fatal("due without held events")
	}
	if d.Due(at(5), 3) || !d.Due(at(10), 3) {
		t.Fatal("events held before the restart are not due one delay after the start")
	}
	d.Queued(at(10), delay, 0)
	d.Held(at(12), delay, 1)
	d.Held(at(20), delay, 2) // does not push the digest back
	if d.Due(at(21.9), 2) || !d.Due(at(22), 2) {
		t.Fatal("digest not due one delay after the first held event")
	}
	d.Failed(at(22))
	if d.Due(at(22), 2) || !d.Due(at(22).Add(Retry), 2) {
		t.Fatal("failed digest not retried after Retry")
	}
	d.Queued(at(30), delay, 5)
	if !d.Due(at(30), 5) {
		t.Fatal("the rest of a full batch is not due at once")
	}
}

// TestHeld: digests take at most MaxDigestEntries, in order, and count.
func TestHeld(t *testing.T) {
	var h Held
	for i := range MaxDigestEntries + 5 {
		h.Add(alarmmail.Entry{Seq: uint32(i)})
	}
	b, n := h.Next()
	if len(b) != MaxDigestEntries || n != 1 || b[0].Seq != 0 {
		t.Fatalf("first batch %d entries, number %d", len(b), n)
	}
	h.Done(len(b))
	b, n = h.Next()
	if len(b) != 5 || n != 2 || b[0].Seq != MaxDigestEntries {
		t.Fatalf("second batch %d entries from %d, number %d", len(b), b[0].Seq, n)
	}
}

// BenchmarkGateDecide is one flood decision as a link or device makes it
// per event: 50 alarm keys, the default cap of 20 mails a minute, events
// 10 ms apart (a flood: most are held).
func BenchmarkGateDecide(b *testing.B) {
	g := NewGate(new(Limiter))
	keys := make([]string, 50)
	for i := range keys {
		keys[i] = string(rune('a'+i%26)) + "/raise"
	}
	now := t0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(10 * time.Millisecond)
		k := keys[i%len(keys)]
		if g.Decide(now, k, 5*time.Minute, 20) == "" {
			g.Mailed(k, now)
		}
	}
}
