package spool

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPeekSpoolCountsMessagesOnly(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	var ids []string
	for i := range 4 {
		id, err := s.Enqueue(testSub(i, ""))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// ids[0] dies (dead/ID and dead/ID.json), ids[1] is delivered; two stay.
	if err := s.DeadLetter(ids[0], 550, "no such user"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delivered(ids[1]); err != nil {
		t.Fatal(err)
	}
	// What is no message: a recycled file in free/ (named like an id), a
	// stray file and a directory in queue/.
	for _, p := range []string{filepath.Join(dirFree, newID()), filepath.Join(dirQueue, "notes.txt")} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, dirQueue, newID()), 0o700); err != nil {
		t.Fatal(err)
	}

	got, err := Peek(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Queued != 2 || got.Dead != 1 {
		t.Errorf("queued %d, dead %d; want 2, 1", got.Queued, got.Dead)
	}
	// ids[3] made older than ids[2]: the oldest is not simply the first
	// name listed.
	older := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(filepath.Join(dir, dirQueue, ids[3]), older, older); err != nil {
		t.Fatal(err)
	}
	got, err = Peek(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.OldestQueued.Equal(older) {
		t.Errorf("oldest queued %v, want %v (ids[3])", got.OldestQueued, older)
	}
	// The dead letter keeps its file, and so its creation time.
	if d := time.Since(got.OldestDead); got.OldestDead.IsZero() || d < 0 || d > time.Minute {
		t.Errorf("oldest dead %v, want the moment of Enqueue", got.OldestDead)
	}
}

// TestPeekSpoolLeavesTidyingToTheGateway: what Open would clean up (a
// stale temporary file, a stray name in dead/) is still there after a peek,
// and no area is created.
func TestPeekSpoolLeavesTidyingToTheGateway(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dirTmp, dirDead} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	stale := filepath.Join(dir, dirTmp, "half-written")
	stray := filepath.Join(dir, dirDead, "stray")
	for _, p := range []string{stale, stray} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)

	got, err := Peek(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got != (Summary{}) {
		t.Errorf("summary %+v, want empty", got)
	}
	for _, p := range []string{stale, stray} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("peek removed %s: %v", p, err)
		}
	}
	for _, d := range []string{dirQueue, dirCorrupt, dirKeys, dirFree} {
		if _, err := os.Stat(filepath.Join(dir, d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("peek created %s/ (%v)", d, err)
		}
	}
}

func TestPeekSpoolMissing(t *testing.T) {
	_, err := Peek(filepath.Join(t.TempDir(), "never-created"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

// BenchmarkPeekSpool10k: what `plcmail status` costs beside a stopped
// gateway with a large backlog (10,000 queued files, 100 dead letters).
func BenchmarkPeekSpool10k(b *testing.B) {
	dir := b.TempDir()
	for _, area := range []string{dirQueue, dirDead} {
		if err := os.Mkdir(filepath.Join(dir, area), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10_100 {
		area := dirQueue
		if i >= 10_000 {
			area = dirDead
		}
		if err := os.WriteFile(filepath.Join(dir, area, newID()), []byte("{}\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		s, err := Peek(dir)
		if err != nil || s.Queued != 10_000 || s.Dead != 100 {
			b.Fatal(s, err)
		}
	}
}
