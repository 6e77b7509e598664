package spool

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// The hook runs before the message is written, only for a new key; its
// error fails the Enqueue and leaves the key free for the retransmission.
func TestBeforeEnqueue(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	var calls []string
	queued := 0
	fail := errors.New("disk full")
	var hookErr error
	s.BeforeEnqueue(func(sub Submission) error {
		// The message is not in the queue yet.
		if ms, _ := s.List(); len(ms) != queued {
			t.Errorf("hook of %s: %d queued before it, want %d", sub.Key, len(ms), queued)
		}
		calls = append(calls, sub.Key)
		return hookErr
	})
	if _, err := s.Enqueue(testSub(1, "")); err != nil { // no key: no hook
		t.Fatal(err)
	}
	queued++
	hookErr = fail
	if _, err := s.Enqueue(testSub(2, "k1")); !errors.Is(err, fail) {
		t.Fatalf("Enqueue with failing hook = %v", err)
	}
	hookErr = nil
	if _, err := s.Enqueue(testSub(2, "k1")); err != nil {
		t.Fatalf("retransmission after the hook failed: %v", err)
	}
	if _, err := s.Enqueue(testSub(2, "k1")); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("duplicate: %v", err)
	}
	if want := []string{"k1", "k1"}; len(calls) != 2 || calls[0] != "k1" || calls[1] != "k1" {
		t.Errorf("hook calls %q, want %q", calls, want)
	}
}

// QueuedIDs lists what List lists without reading headers, and IDTime
// gives each id's queue time, as the header's Created has it (to the
// second at least: both are taken at Enqueue).
func TestQueuedIDsAndIDTime(t *testing.T) {
	sp, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for i := range 3 {
		if _, err := sp.Enqueue(Submission{Envelope: Envelope{From: "a@example.com", To: []string{"b@example.com"}}, Data: []byte(fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))}); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := sp.QueuedIDs()
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := sp.List()
	if err != nil || len(msgs) != 3 || len(ids) != 3 {
		t.Fatalf("QueuedIDs %v, List %d messages (%v)", ids, len(msgs), err)
	}
	for _, m := range msgs {
		at, ok := IDTime(m.ID)
		if !ok || at.Sub(m.Created).Abs() > time.Second {
			t.Errorf("IDTime(%s) = %v, %v; Created %v", m.ID, at, ok, m.Created)
		}
		if !slices.Contains(ids, m.ID) {
			t.Errorf("QueuedIDs %v lacks %s", ids, m.ID)
		}
	}
	want := time.Date(2026, 12, 6, 3, 40, 0, 123456000, time.UTC)
	if at, ok := IDTime(newIDAt(uint64(want.UnixMicro()))); !ok || !at.Equal(want) {
		t.Errorf("IDTime of an id made at %v = %v, %v", want, at, ok)
	}
	for _, bad := range []string{"", "../../etc/passwd", "0000000000000000x", "ILOU000000000000"} {
		if _, ok := IDTime(bad); ok {
			t.Errorf("IDTime(%q) ok", bad)
		}
	}
}
