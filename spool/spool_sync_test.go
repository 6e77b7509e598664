package spool

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupSyncNeedsALaterSync: a caller that arrives while an fsync runs
// is not covered by it (that fsync may have started before the caller's
// change) and returns only after the next one.
func TestGroupSyncNeedsALaterSync(t *testing.T) {
	var count atomic.Int32
	started := make(chan int32, 10)
	release := make(chan struct{})
	g := newGroupSync(func() error {
		n := count.Add(1)
		started <- n
		<-release
		return nil
	})
	aDone := make(chan struct{})
	go func() { g.Sync(); close(aDone) }()
	if n := <-started; n != 1 {
		t.Fatalf("first sync is %d", n)
	}
	var bSawDone int32
	bDone := make(chan struct{})
	go func() {
		g.Sync()
		g.mu.Lock()
		bSawDone = int32(g.done)
		g.mu.Unlock()
		close(bDone)
	}()
	// B is waiting (or about to) while sync 1 runs; let sync 1 finish.
	time.Sleep(20 * time.Millisecond)
	release <- struct{}{}
	<-aDone
	select {
	case <-bDone:
		t.Fatal("B returned on a sync that started before it called")
	case n := <-started:
		if n != 2 {
			t.Fatalf("second sync is %d", n)
		}
	}
	release <- struct{}{}
	<-bDone
	if bSawDone != 2 {
		t.Errorf("B returned after sync %d, want 2", bSawDone)
	}
}

// TestGroupSyncReportsFailure: a failed covering fsync fails every caller
// it covered; the next caller gets a fresh attempt.
func TestGroupSyncReportsFailure(t *testing.T) {
	fail := errors.New("EIO")
	var bad atomic.Bool
	bad.Store(true)
	g := newGroupSync(func() error {
		if bad.Load() {
			return fail
		}
		return nil
	})
	if err := g.Sync(); !errors.Is(err, fail) {
		t.Fatalf("Sync = %v, want the fsync's error", err)
	}
	bad.Store(false)
	if err := g.Sync(); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// TestConcurrentEnqueueSharesDirSync: many concurrent Enqueues share the
// directory fsync, and none returns before an fsync that started after its
// file was in queue/ has completed. The hook lists queue/ when an fsync
// starts and marks those names covered when it ends; every id Enqueue
// returns must already be covered.
func TestConcurrentEnqueueSharesDirSync(t *testing.T) {
	for _, tmpfile := range []bool{true, false} {
		t.Run(fmt.Sprintf("tmpfile=%v", tmpfile), func(t *testing.T) {
			s := openTestSpool(t, t.TempDir())
			if tmpfile && !s.tmpfile {
				t.Skip("O_TMPFILE not supported on this filesystem; the rename path is tested below")
			}
			s.tmpfile = tmpfile
			var mu sync.Mutex
			covered := map[string]bool{}
			var syncs atomic.Int32
			inner := s.queueSync.sync
			s.queueSync.sync = func() error {
				syncs.Add(1)
				ents, err := os.ReadDir(filepath.Join(s.Dir(), dirQueue))
				if err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond) // a slow disk: let callers pile up
				if err := inner(); err != nil {
					return err
				}
				mu.Lock()
				for _, e := range ents {
					covered[e.Name()] = true
				}
				mu.Unlock()
				return nil
			}
			const workers, each = 32, 10
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						id, err := s.Enqueue(testSub(i, fmt.Sprintf("w%d/%d", w, i)))
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						ok := covered[id]
						mu.Unlock()
						if !ok {
							t.Errorf("Enqueue returned %s before a directory fsync covering it completed", id)
						}
					}
				}()
			}
			wg.Wait()
			n := syncs.Load()
			t.Logf("%d enqueues, %d directory fsyncs", workers*each, n)
			if n >= workers*each {
				t.Errorf("%d directory fsyncs for %d concurrent enqueues: not shared", n, workers*each)
			}
			msgs, _ := s.List()
			if len(msgs) != workers*each {
				t.Errorf("%d queued, want %d", len(msgs), workers*each)
			}
			for _, m := range msgs {
				var w, i int
				fmt.Sscanf(m.Key, "w%d/%d", &w, &i)
				if _, data, err := s.ReadMessage(m.ID); err != nil || !bytes.Equal(data, testSub(i, "").Data) {
					t.Fatalf("%s (%s) damaged: %v", m.ID, m.Key, err)
				}
			}
			if ents, _ := os.ReadDir(filepath.Join(s.Dir(), dirTmp)); len(ents) != 0 {
				t.Errorf("left in tmp/: %v", ents)
			}
		})
	}
}

// TestConcurrentDeliveredSharesKeySync: removing keyed messages from many
// goroutines (the delivery workers) shares the key log fsync, and every key
// is in the log, durably, before its file is gone.
func TestConcurrentDeliveredSharesKeySync(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	const n = 200
	ids := make([]string, n)
	for i := range ids {
		var err error
		if ids[i], err = s.Enqueue(testSub(i, fmt.Sprintf("key/%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	logPath := filepath.Join(s.Dir(), dirKeys, "log")
	var keySyncs atomic.Int32
	inner := s.keysSync.sync
	s.keysSync.sync = func() error {
		keySyncs.Add(1)
		time.Sleep(time.Millisecond)
		return inner()
	}
	var dirSyncs atomic.Int32
	innerQ := s.queueSync.sync
	s.queueSync.sync = func() error {
		dirSyncs.Add(1)
		return innerQ()
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := s.Delivered(ids[i]); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d removals: %d key log fsyncs, %d directory fsyncs", n, keySyncs.Load(), dirSyncs.Load())
	if keySyncs.Load() >= n {
		t.Errorf("%d key log fsyncs for %d concurrent removals: not shared", keySyncs.Load(), n)
	}
	b, _ := os.ReadFile(logPath)
	for i := 0; i < n; i++ {
		if !bytes.Contains(b, []byte(fmt.Sprintf("%q\n", fmt.Sprintf("key/%d", i)))) {
			t.Fatalf("key/%d not in the key log", i)
		}
	}
	s2 := openTestSpool(t, s.Dir())
	for i := 0; i < n; i += 37 {
		if _, err := s2.Enqueue(testSub(i, fmt.Sprintf("key/%d", i))); !errors.Is(err, ErrDuplicate) {
			t.Errorf("key/%d after delivery and reopen: %v", i, err)
		}
	}
}
