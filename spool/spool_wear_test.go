package spool

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
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

// OpenNoKeys lists what Open lists, refuses to queue (it could not refuse a
// duplicate), and makes a spool that does not exist yet as Open does.
func TestOpenNoKeys(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	id, err := s.Enqueue(testSub(1, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenNoKeys(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := r.List(); err != nil || len(msgs) != 1 || msgs[0].ID != id || msgs[0].Key != "k1" {
		t.Errorf("List: %+v, %v", msgs, err)
	}
	if _, err := r.Enqueue(testSub(2, "")); !errors.Is(err, ErrNoKeys) {
		t.Errorf("Enqueue: %v, want ErrNoKeys", err)
	}
	fresh, err := OpenNoKeys(t.TempDir()+"/new", nil)
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := fresh.ListDead(); err != nil || len(msgs) != 0 {
		t.Errorf("new spool: %+v, %v", msgs, err)
	}
}

// BenchmarkList is `plcmail queue list`'s reading of 10,000 headers.
func BenchmarkList(b *testing.B) {
	dir := b.TempDir()
	s := openTestSpool(b, dir)
	now := time.Now().UTC()
	for i := range 10000 {
		id := s.newID()
		m := Message{ID: id, Envelope: Envelope{From: "plc@example.com", To: []string{"ops@example.com"}},
			Source: "serial:a", Key: id, Created: now, NextAttempt: now, Size: 4}
		if err := os.WriteFile(s.path(dirQueue, id), encodeSpoolFile(&m, []byte("x\r\n\r")), 0o600); err != nil {
			b.Fatal(err)
		}
		_ = i
	}
	r, err := OpenNoKeys(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if msgs, err := r.List(); err != nil || len(msgs) != 10000 {
			b.Fatal(len(msgs), err)
		}
	}
}

// A retry that fails as the last one did does not rewrite the retry state:
// during a long outage that was a file write per message per probe.
func TestRepeatedFailureKeepsState(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	u.SetData(func(mailertest.Received) error { return mailertest.Reply(451, "greylisted") })
	opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 40*time.Millisecond
	q, _ := runQueue(t, s, opts)
	id, err := s.Enqueue(testSub(1, ""))
	if err != nil {
		t.Fatal(err)
	}
	q.Wake()
	waitFor(t, "two attempts", func() bool { return q.Stats().Deferred >= 2 })
	ino := inode(t, s.path(dirState, id))
	waitFor(t, "five attempts", func() bool { return q.Stats().Deferred >= 5 })
	if got := inode(t, s.path(dirState, id)); got != ino {
		t.Errorf("retry state rewritten (inode %d, was %d) for the same failure", got, ino)
	}
	if m, err := s.Get(id); err != nil || !strings.Contains(m.LastError, "451") || m.Attempts < 1 {
		t.Errorf("state on disk: %+v, %v", m, err)
	}
}
