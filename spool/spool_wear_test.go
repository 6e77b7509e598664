package spool

import (
	"errors"
	"testing"
	"time"
)

// A delivered alarm (a message with a key) is removed without an fsync of
// queue/: its key in the log is the durable record (removeLogged). A crash
// that undoes the removal leaves the file; Open must remove it rather than
// send the alarm again, and must keep a queued message whose key was logged
// for an earlier message (other creation time) or not at all.
func TestLoggedRemovalSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	delivered, err := s.Enqueue(testSub(1, "press/1/1"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Enqueue(testSub(2, "press/1/2"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.Enqueue(testSub(3, ""))
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Get(delivered)
	if err != nil {
		t.Fatal(err)
	}
	// What remove does first; the crash comes before the rename is on disk.
	if err := s.appendKey(m.Key, m.Created); err != nil {
		t.Fatal(err)
	}
	// The same key logged for a message created at another time is not
	// this file's record.
	if err := s.appendKey("press/1/2", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	s2 := openTestSpool(t, dir)
	if _, err := s2.Get(delivered); !errors.Is(err, ErrNotFound) {
		t.Errorf("delivered alarm after the crash: %v, want it removed", err)
	}
	for _, id := range []string{other, plain} {
		if _, err := s2.Get(id); err != nil {
			t.Errorf("%s: %v, want it queued still", id, err)
		}
	}
	if _, err := s2.Enqueue(testSub(4, "press/1/1")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("key of the removed alarm: %v, want ErrDuplicate", err)
	}
}

// The happy path of an alarm: after delivery the file is gone from queue/
// at once, and no fsync of queue/ ran for it (counted on the groupSync).
func TestLoggedRemovalSkipsDirSync(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	id, err := s.Enqueue(testSub(1, "press/1/1"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	inner := s.queueSync.sync
	s.queueSync.sync = func() error { n++; return inner() }
	if err := s.Delivered(id); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d fsyncs of queue/ for a delivered alarm, want 0", n)
	}
	if s.exists(dirQueue, id) {
		t.Error("delivered alarm still in queue/")
	}
}
