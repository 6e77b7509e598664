package spool

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
)

// TestIndexOrder drives the index with random adds, claims, releases and
// removals and checks against a plain list that promote moves exactly the
// entries whose time came, that ready hands them out oldest first, and that
// every entry is in the heap it says it is in.
func TestIndexOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ix := newIndex(time.Hour)
	const base = int64(1e18)
	live := map[string]bool{}
	for step := range 5000 {
		switch op := r.IntN(10); {
		case op < 5:
			id := fmt.Sprintf("%016d", step)
			k, _ := idKey(id)
			created := base + r.Int64N(1e12)
			ix.add(entry{id: k, created: created, next: created + r.Int64N(1e10), upstream: -1})
			live[id] = true
		case op < 7 && len(live) > 0:
			id := anyKey(r, live)
			ix.remove(id)
			delete(live, id)
		case op < 9 && len(live) > 0:
			e := ix.get(anyKey(r, live))
			if e.where == inClaimed {
				e.next += r.Int64N(1e10)
				ix.release(e)
			} else {
				ix.claim(e)
			}
		default:
			now := base + r.Int64N(2e12)
			ix.promote(now)
			for _, i := range ix.wait.s {
				if ix.when(&ix.slab[i]) <= now {
					t.Fatalf("step %d: %s due at %d, still waiting at %d", step, ix.slab[i].id, ix.when(&ix.slab[i]), now)
				}
			}
			var got []int64
			for e := ix.popReady(); e != nil; e = ix.popReady() {
				got = append(got, e.created)
				ix.claim(e)
			}
			if !slices.IsSorted(got) {
				t.Fatalf("step %d: ready handed out %v, not oldest first", step, got)
			}
		}
		if ix.len() != len(live) {
			t.Fatalf("step %d: %d entries, want %d", step, ix.len(), len(live))
		}
		for _, h := range []*entryHeap{&ix.wait, &ix.ready} {
			for pos, i := range h.s {
				if e := &ix.slab[i]; int(e.hidx) != pos || e.where != h.which {
					t.Fatalf("step %d: %s at %d in heap %d says %d in %d", step, e.id, pos, h.which, e.hidx, e.where)
				}
			}
		}
	}
}

func anyKey(r *rand.Rand, m map[string]bool) string {
	n := r.IntN(len(m))
	for k := range m {
		if n == 0 {
			return k
		}
		n--
	}
	return ""
}

// TestQueueNoticesOtherProcessWithoutScan: with scan_every an hour, a
// message another process queues is delivered, and one it deletes leaves
// the count, as soon as inotify reports them.
func TestQueueNoticesOtherProcessWithoutScan(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("inotify is Linux only")
	}
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.ScanEvery = time.Hour
	opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour
	var fail atomic.Bool
	u.SetData(func(mailertest.Received) error {
		if fail.Load() {
			return mailertest.Reply(451, "later")
		}
		return nil
	})
	q, results := runQueue(t, s, opts)
	other := openTestSpool(t, s.Dir())
	// One message through the loop's own spool: Run is past its first
	// listing of queue/ once it is delivered.
	if _, err := s.Enqueue(testSub(0, "")); err != nil {
		t.Fatal(err)
	}
	q.Wake()
	waitResults(t, results, 1, 5*time.Second)
	if _, err := other.Enqueue(testSub(1, "")); err != nil {
		t.Fatal(err)
	}
	if r := waitResults(t, results, 1, 5*time.Second)[0]; !r.Delivered {
		t.Fatalf("result %+v", r)
	}
	fail.Store(true)
	id, err := other.Enqueue(testSub(2, ""))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the attempt", func() bool { return q.Stats().Deferred == 1 })
	if err := other.Delete(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion", func() bool { return q.Stats().Queued == 0 })
}

// TestQueueScanWithoutInotify: the fallback lists queue/ when its time
// changed and picks up what other processes queued and deleted.
func TestQueueScanWithoutInotify(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	q, err := NewQueue(s, testQueueOptions(mailertest.NewUpstream(t, mailertest.Options{}).Options()), nil)
	if err != nil {
		t.Fatal(err)
	}
	other := openTestSpool(t, s.Dir())
	q.scan(true)
	id, err := other.Enqueue(testSub(1, ""))
	if err != nil {
		t.Fatal(err)
	}
	q.scan(true)
	if n := q.idx.len(); n != 1 {
		t.Fatalf("after a queueing: %d known, want 1", n)
	}
	if err := other.Delete(id); err != nil {
		t.Fatal(err)
	}
	q.scan(true)
	if n := q.idx.len(); n != 0 {
		t.Fatalf("after a deletion: %d known, want 0", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
