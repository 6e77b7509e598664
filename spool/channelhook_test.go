package spool

import (
	"errors"
	"testing"
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
