package spool

import "sync"

// groupSync shares one fsync among every caller that changed the synced
// object before it started: group commit, as databases do for their log.
//
// A caller makes its change (a link into queue/, an unlink, an append to the
// key log), then calls Sync, which returns only after an fsync that started
// after the call began has completed. Any fsync started later also covers
// the change, so callers that pile up while one fsync runs are all covered
// by the next one: with 16 SMTP sessions queueing at once, the directory is
// fsynced a few times instead of 16. A lone caller pays exactly what it paid
// before (no timer, no background goroutine: the first waiter runs the fsync
// itself).
type groupSync struct {
	sync func() error // the fsync; tests wrap it to count and inspect

	mu      sync.Mutex
	cond    sync.Cond
	started uint64 // fsyncs started; while running, the running one is number started
	done    uint64 // number of the last completed fsync; done < started while one runs
	failed  uint64 // number of the last fsync that failed, 0 when none did
	failErr error
}

func newGroupSync(fn func() error) *groupSync {
	g := &groupSync{sync: fn}
	g.cond.L = &g.mu
	return g
}

// Sync returns once a change made before the call is durable. An error
// means it may not be: the fsync that covered the change, or one that ran
// after it, failed (reported conservatively: a later failure after a
// covering success also counts, so nobody is told "durable" by mistake).
func (g *groupSync) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// The running fsync, if any, may have started before our change: only
	// one numbered after it is known to cover the change.
	need := g.started + 1
	for g.done < need {
		if g.done < g.started { // one is running
			g.cond.Wait()
			continue
		}
		g.started++
		n := g.started
		g.mu.Unlock()
		err := g.sync()
		g.mu.Lock()
		g.done = n
		if err != nil {
			g.failed, g.failErr = n, err
		}
		g.cond.Broadcast()
	}
	if g.failed >= need {
		return g.failErr
	}
	return nil
}
