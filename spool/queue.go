package spool

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plcmail/plcmail/upstream"
)

// Result is a message's final state, reported once to OnResult callbacks:
// accepted upstream (Delivered), or dead-lettered.
type Result struct {
	Message Message
	// Delivered is true when the upstream accepted the message for every
	// recipient. A message refused for some recipients but accepted for
	// others ends up dead-lettered for the refused ones, with Delivered
	// false and Message.Envelope.To naming only those.
	Delivered bool
	Code      int    // final upstream reply code; 0 when there was none ("expired")
	Reason    string // the upstream's reply, or "expired"
	// Upstream names the [[upstream]] entry of the last attempt ("" when
	// there was none).
	Upstream string
}

// Stats is a snapshot of the delivery loop for `plcmail status`.
type Stats struct {
	Queued       int       `json:"queued"`
	Oldest       time.Time `json:"oldest,omitzero"` // creation time of the oldest queued message
	LastSuccess  time.Time `json:"last_success,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	HoldUntil    time.Time `json:"hold_until,omitzero"` // upstream unreachable: no new attempt before
	Delivered    uint64    `json:"delivered"`           // since start
	Deferred     uint64    `json:"deferred"`
	DeadLettered uint64    `json:"dead_lettered"`
	// Attempts counts every delivery attempt by upstream and result
	// (queue_attempts.go).
	Attempts []AttemptCount `json:"attempts,omitempty"`
	// Upstreams is each upstream entry's state, in configuration order
	// (one for a single [upstream]).
	Upstreams []UpstreamStats `json:"upstreams,omitempty"`
}

// maxProbeInterval caps the wait between connection attempts to an
// unreachable upstream. When connecting (or TLS, or AUTH) fails, no message
// is at fault: the messages are held all together, with the upstream's
// backoff rather than their own, so that the first successful probe after
// an outage drains the whole queue at once. Probing every few minutes costs
// one TCP connection; waiting max_backoff (an hour) would delay alarms.
const maxProbeInterval = 5 * time.Minute

// connIdle is how long a worker keeps an idle upstream connection open for
// the next batch, like Postfix's smtp_connection_cache_time_limit: long
// enough to carry a steady trickle of mail without a handshake per message,
// short enough not to hold a session the provider would time out.
const connIdle = 2 * time.Second

// Queue is the delivery loop: it sends due messages from the spool in
// batches over up to queue.connections upstream connections at once,
// retries temporary failures with exponential backoff and jitter, and
// dead-letters permanent failures and expired messages. Only one Queue per
// spool directory runs at a time, across processes (Spool.LockDelivery).
//
// Run scans the spool and hands batches to workers, one per connection. A
// message handed out is claimed until its worker is done with it, so it is
// never in two transactions at once; the worker works on a copy and writes
// it back under smu. When a connection cannot be made, the upstream is held
// down for every worker, and after the hold a single worker probes before
// the others connect again, so an outage costs one connection attempt per
// probe interval, not one per worker.
type Queue struct {
	spool *Spool
	opts  QueueOptions
	log   *slog.Logger
	now   func() time.Time
	wake  chan struct{}
	// kick tells Run that a worker is free again or that the upstream
	// came back: dispatch now, without a rescan.
	kick chan struct{}
	jobs chan job
	// rescanReq makes the next Wake list the spool directory even when
	// this process queued something (a Flush request from outside).
	rescanReq atomic.Bool

	// Owned by the Run goroutine.
	lastScan, lastFull time.Time
	lastPrune          time.Time
	lastTmpClean       time.Time
	queueMod           time.Time // queue/'s modification time at the last full scan
	// watching: inotify reports changes in queue/ (watchSpool).
	watching bool
	// beforeWatchRead is watchSpool's beforeRead: nil but in tests, which
	// hold the inotify reader to make the kernel drop events.
	beforeWatchRead func()

	// Changes in queue/ that inotify reported, for Run.
	notesMu  sync.Mutex
	notes    []note
	overflow bool

	// smu guards the delivery state shared by Run and the workers.
	smu sync.Mutex
	// idx holds the queued messages this process knows of, compactly,
	// with their schedule (queue_index.go). A message handed to a worker
	// is claimed there until its worker is done with it.
	idx *index
	// settled holds ids that reached their final state but whose file
	// could not be removed (read-only or failing disk): never send them
	// again from this process, whatever the next scan finds.
	settled map[string]bool
	// removing holds delivered messages whose removal from the spool is
	// under way (see final); they stay claimed until it is durable.
	removing    map[string]bool
	removers    sync.WaitGroup
	removeSlots chan struct{}
	// routes are the upstream entries with their hold state (route.go).
	routes []*routeState
	busy   int // workers with a batch

	resultMu sync.Mutex // OnResult callbacks run one at a time
	mu       sync.Mutex
	onResult []func(Result)
	stats    Stats // counters and last outcomes; Stats derives Queued, Oldest, HoldUntil
	attempts map[attemptKey]uint64
}

// QueueOptions is the delivery policy, named after Postfix's equivalents,
// and the upstream to deliver to.
type QueueOptions struct {
	// Upstream is the one upstream when Routes is empty.
	Upstream upstream.Options
	// Routes are the upstream entries tried in order ([[upstream]]; see
	// Route for the failover policy).
	Routes []Route
	// Connections is how many upstream connections deliver at once
	// (default_destination_concurrency_limit); at least 1.
	Connections int
	// BatchSize is how many messages one connection carries before it is
	// closed; at least 1.
	BatchSize int
	// ScanEvery is how often the loop does its housekeeping (stale temp
	// files, the recycled files' share of the disk) and, without inotify,
	// looks for mail other processes queued or deleted (a stat of queue/,
	// a listing when it changed). With inotify such changes are seen at
	// once, and queue/ is listed in full only every fullScanEvery.
	ScanEvery time.Duration
	// Lifetime is how long a message is retried before it is
	// dead-lettered (maximal_queue_lifetime).
	Lifetime time.Duration
	// MinBackoff and MaxBackoff bound the retry delay, which doubles per
	// attempt (minimal_backoff_time, maximal_backoff_time).
	MinBackoff, MaxBackoff time.Duration
}

// NewQueue prepares a delivery loop; it checks what can be checked before
// the first connection (the TLS trust settings).
func NewQueue(spool *Spool, opts QueueOptions, log *slog.Logger) (*Queue, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	routes, err := newRoutes(&opts)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	opts.Connections = max(opts.Connections, 1)
	opts.BatchSize = max(opts.BatchSize, 1)
	return &Queue{spool: spool, opts: opts, log: log, now: time.Now, routes: routes,
		wake: make(chan struct{}, 1), kick: make(chan struct{}, 1), jobs: make(chan job),
		idx: newIndex(opts.Lifetime), settled: map[string]bool{},
		removing: map[string]bool{}, removeSlots: make(chan struct{}, maxRemoving)}, nil
}

// OnResult registers fn to be called each time a message reaches its final
// state; the spool change is durable by then. Calls come from the delivery
// goroutines but never overlap. fn must not block for long.
func (q *Queue) OnResult(fn func(Result)) {
	q.mu.Lock()
	q.onResult = append(q.onResult, fn)
	q.mu.Unlock()
}

// Wake makes the loop try due messages now, without waiting for the next
// scan. Messages queued through the Queue's own Spool are taken over
// directly, and their Enqueue wakes the loop itself; after an Enqueue on
// another Spool value (or in another process) Wake rescans the spool
// directory, unless inotify tells the loop what changed
// (queue_notify_linux.go).
func (q *Queue) Wake() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// rescan is Wake with a full listing of the spool directory.
func (q *Queue) rescan() {
	q.rescanReq.Store(true)
	q.Wake()
}

// note is a change in queue/ that inotify reported.
type note struct {
	name string
	gone bool // moved out or removed; else created or moved in
}

// noted records changes in queue/ for Run (from the watcher's goroutine).
func (q *Queue) noted(ns []note, overflow bool) {
	q.notesMu.Lock()
	q.notes = append(q.notes, ns...)
	q.overflow = q.overflow || overflow
	q.notesMu.Unlock()
	q.poke()
}

// addFresh adds the messages this process queued since the last call and
// reports whether there were any.
func (q *Queue) addFresh() bool {
	fresh := q.spool.takeFresh()
	if len(fresh) == 0 {
		return false
	}
	q.smu.Lock()
	for i := range fresh {
		// Already known (a scan found it), or settled: nothing to add. A
		// message delivered and forgotten meanwhile is re-added here and
		// dropped when its file is not found.
		if !q.settled[fresh[i].ID] {
			q.add(&fresh[i])
		}
	}
	q.smu.Unlock()
	return true
}

// add puts a message read from the spool into the index (unless it is
// known). The caller holds smu.
func (q *Queue) add(m *Message) {
	if e, ok := q.entryOf(m); ok {
		q.idx.add(e)
	}
}

// applyNotes applies the changes inotify reported in queue/: files other
// processes queued are read (their header line) and added, files they
// deleted are dropped. Changes this process made are known already. It
// reports false when the notes cannot be trusted (the kernel's event
// queue overflowed): the caller rescans.
func (q *Queue) applyNotes() bool {
	q.notesMu.Lock()
	ns, overflow := q.notes, q.overflow
	q.notes, q.overflow = nil, false
	q.notesMu.Unlock()
	if overflow {
		return false
	}
	for _, n := range ns {
		if !validID(n.name) {
			continue // not a message; the next full scan moves it aside
		}
		q.smu.Lock()
		e := q.idx.get(n.name)
		switch {
		case n.gone:
			// Deleted by `plcmail queue delete`, unless it is back (a
			// Narrow renames a new version in) or ours to settle.
			if e != nil && e.where != inClaimed && !q.removing[n.name] && !q.spool.exists(dirQueue, n.name) {
				q.idx.remove(n.name)
			}
			q.smu.Unlock()
			continue
		case e != nil || q.settled[n.name] || q.spool.ownPending(n.name):
			q.smu.Unlock()
			continue
		}
		q.smu.Unlock()
		m, err := q.spool.load(dirQueue, n.name)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				q.log.Error("queue: skipping message", "id", n.name, "err", err)
			}
			continue
		}
		q.spool.learnKey(m.Key, m.Created)
		q.smu.Lock()
		if !q.settled[m.ID] {
			q.add(&m)
		}
		q.smu.Unlock()
	}
	return true
}

func (q *Queue) poke() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the loop's state. Queued counts a message
// until its final state is durable, and no longer once its OnResult ran.
func (q *Queue) Stats() Stats {
	q.smu.Lock()
	oldest := fromNS(q.idx.oldest())
	queued := q.idx.len()
	q.smu.Unlock()
	ups, hold := q.upstreamStats(q.now())
	q.mu.Lock()
	st := q.stats
	st.Attempts = q.attemptCounts()
	q.mu.Unlock()
	st.Queued, st.Oldest, st.HoldUntil, st.Upstreams = queued, oldest, hold, ups
	return st
}

// connections is the number of delivery workers.
func (q *Queue) connections() int { return q.opts.Connections }

// fullScanEvery is how often the queue directory is listed in full while
// inotify reports its changes: a safety net that costs one listing per
// ten minutes (a few milliseconds at 50,000 messages), where a listing
// every scan_every cost 4 to 8% of a gateway's core.
const fullScanEvery = 10 * time.Minute

// Run delivers until ctx is done. Transactions in progress are completed
// (bounded by upstream.timeout), never cut off, so that a message the
// upstream accepted is also removed from the spool. It returns nil after
// ctx is done and every worker stopped, or an error when it cannot start
// (another process delivers).
func (q *Queue) Run(ctx context.Context) error {
	unlock, err := q.spool.LockDelivery()
	if err != nil {
		return err
	}
	defer unlock()
	q.spool.trackNew(q.Wake)
	defer q.spool.trackNew(nil)
	if stop, err := watchSpool(q.spool.dir, q.rescan, q.noted, q.beforeWatchRead); err == nil {
		q.watching = true
		defer stop()
	} else {
		q.log.Debug("queue: changes by other processes are seen at the next scan", "err", err)
	}
	defer q.removers.Wait() // after the workers, which start removals
	var workers sync.WaitGroup
	defer workers.Wait()
	for range q.connections() {
		workers.Add(1)
		go func() {
			defer workers.Done()
			q.worker(ctx)
		}()
	}
	q.scan(true)
	q.lastPrune = q.now() // Open just compacted
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			workers.Wait()
			q.removers.Wait()
			return nil
		}
		if !q.applyNotes() {
			// The kernel dropped events (its queue of them overflowed):
			// what other processes queued meanwhile is known only from a
			// listing, which is done now, not at the next fullScanEvery.
			q.log.Info("queue: inotify dropped change events (its queue overflowed); listing queue/ now")
			q.lastScan, q.lastFull = time.Time{}, time.Time{}
		}
		now := q.now()
		if now.Sub(q.lastScan) >= q.opts.ScanEvery {
			q.scan(now.Sub(q.lastFull) >= q.fullEvery())
		}
		if now.Sub(q.lastPrune) >= 24*time.Hour {
			q.lastPrune = now
			if err := q.spool.loadKeys(); err != nil {
				q.log.Error("queue: compacting idempotency keys", "err", err)
			}
		}
		q.dispatch(ctx, now)
		timer.Reset(q.sleep(now))
		select {
		case <-ctx.Done():
		case <-q.wake:
			if q.rescanReq.Swap(false) || !q.addFresh() && !q.watching {
				q.lastScan, q.lastFull = time.Time{}, time.Time{}
			}
		case <-q.kick:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// fullEvery is how often scan lists queue/ in full: every scan_every
// without inotify (when queue/ changed, see scan), every fullScanEvery
// with it.
func (q *Queue) fullEvery() time.Duration {
	if q.watching {
		return max(fullScanEvery, q.opts.ScanEvery)
	}
	return q.opts.ScanEvery
}

// sleep returns how long nothing is to be done.
func (q *Queue) sleep(now time.Time) time.Duration {
	next := q.lastScan.Add(q.opts.ScanEvery)
	q.smu.Lock()
	// Due messages wait in ready only while every worker is busy (a
	// worker kicks when it is free); otherwise the next thing to do is
	// the first time in the waiting heap: a retry, the end of a hold, or
	// an expiry.
	if q.freeWorkers() > 0 && q.idx.ready.Len() > 0 {
		next = now
	} else if t, ok := q.idx.nextWhen(); ok {
		next = earlier(next, fromNS(t))
	}
	q.smu.Unlock()
	d := next.Sub(now)
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// scan does the loop's periodic housekeeping (stale temp files, recycled
// files on a filling disk) and, when full is set, re-reads the queue
// directory: messages queued by other processes are added, deleted ones
// dropped, and a Flush request applied. Bodies are not read; only new
// files' header lines are. Without inotify, a full scan lists queue/ only
// when its modification time changed: a cheap check (one stat) for the
// usual idle gateway.
func (q *Queue) scan(full bool) {
	q.lastScan = q.now()
	// A temp file is stale after staleTmpAge: looking more often finds
	// nothing more.
	if full || q.lastScan.Sub(q.lastTmpClean) >= staleTmpAge {
		q.lastTmpClean = q.lastScan
		q.spool.cleanTmp()
	}
	q.spool.trimFree(q.spool.availBytes()) // other processes may be filling the disk
	// With inotify a flush request wakes the loop for a full scan
	// (watchSpool); without, the marker is looked for here.
	flush := false
	if full || !q.watching {
		flush = q.spool.takeFlush()
	}
	if !full && !flush {
		return
	}
	mod, modErr := q.spool.queueModTime()
	if !flush && !q.watching && modErr == nil && !q.lastFull.IsZero() && mod.Equal(q.queueMod) {
		q.lastFull = q.lastScan
		return
	}
	q.lastFull, q.queueMod = q.lastScan, mod
	if q.lastScan.Sub(mod) < 2*time.Second {
		// A change in the same tick of a coarse clock would leave the
		// time as it is: list again next time.
		q.queueMod = time.Time{}
	}
	q.addFresh() // the listing below includes them
	q.smu.Lock()
	defer q.smu.Unlock()
	// Listed under smu: a worker removes a delivered file before it
	// forgets the message under smu, so a listing that still shows the
	// file finds the message known and does not load it again.
	ids, err := q.spool.ids(dirQueue)
	if err != nil {
		q.log.Error("queue: scan", "err", err)
		return
	}
	seen := make(map[[16]byte]struct{}, len(ids))
	for _, id := range ids {
		k, _ := idKey(id)
		seen[k] = struct{}{}
		if q.idx.get(id) != nil || q.settled[id] {
			continue
		}
		m, err := q.spool.load(dirQueue, id)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				q.log.Error("queue: skipping message", "id", id, "err", err)
			}
			continue
		}
		q.spool.learnKey(m.Key, m.Created)
		q.add(&m)
	}
	var gone []string
	for k, i := range q.idx.byID {
		if _, ok := seen[k]; !ok && q.idx.slab[i].where != inClaimed {
			gone = append(gone, string(k[:])) // deleted by `plcmail queue delete`
		}
	}
	for _, id := range gone {
		q.idx.remove(id)
	}
	for id := range q.settled {
		if k, _ := idKey(id); !has(seen, k) {
			delete(q.settled, id)
		}
	}
	if flush {
		q.log.Info("queue: flush requested")
		for _, i := range q.idx.byID {
			q.idx.slab[i].next = ns(q.lastScan)
		}
		for _, r := range q.routes {
			r.holdUntil = time.Time{}
		}
		q.clearWaits()
	}
}

func has(set map[[16]byte]struct{}, k [16]byte) bool { _, ok := set[k]; return ok }

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (q *Queue) expired(created int64, now time.Time) bool {
	return now.Sub(fromNS(created)) > q.opts.Lifetime
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// job is a batch for one worker, all for one route.
type job struct {
	route int
	msgs  []Message
	probe bool // the first attempt at the route after a hold
}

// dispatch dead-letters expired messages and hands due ones to free
// workers, oldest first, each to the route it takes (pick), spread so that
// N due messages use N connections (up to queue.connections) and no batch
// exceeds batch_size. A route that failed gets one batch, its probe; while
// the probe runs, messages that may take another route take it.
//
// It touches only the messages whose time came and those it hands out
// (queue_index.go), not the whole queue.
func (q *Queue) dispatch(ctx context.Context, now time.Time) {
	q.smu.Lock()
	free := q.freeWorkers()
	var expired, unr []Message
	ix := q.idx
	// Due ones move to ready; expired ones are taken (a message expires
	// once it is older than the lifetime and its retry time has come).
	for len(ix.wait.s) > 0 {
		i := ix.wait.s[0]
		e := &ix.slab[i]
		if ix.when(e) > now.UnixNano() {
			break
		}
		heap.Pop(&ix.wait)
		if e.next <= now.UnixNano() && q.expired(e.created, now) {
			e.where = inClaimed
			expired = append(expired, q.messageOf(e))
			continue
		}
		heap.Push(&ix.ready, i)
	}
	var jobs []job
	if free > 0 && ix.ready.Len() > 0 {
		perRoute := make([][]Message, len(q.routes))
		for n := 0; n < free*q.opts.BatchSize; {
			e := ix.popReady()
			if e == nil {
				break
			}
			if q.expired(e.created, now) {
				e.where = inClaimed
				expired = append(expired, q.messageOf(e))
				continue
			}
			m := q.messageOf(e)
			ri, until := q.pick(&m, now)
			switch {
			case ri == -2:
				e.where = inClaimed
				unr = append(unr, m)
			case ri < 0:
				m.wait = until
				q.store(e, &m)
				ix.release(e)
			default:
				m.wait = time.Time{}
				q.store(e, &m)
				e.where = inClaimed
				perRoute[ri] = append(perRoute[ri], m)
				n++
			}
		}
		for ri, ms := range perRoute {
			r := q.routes[ri]
			f := free
			if r.connFails > 0 {
				f = min(f, 1) // the upstream failed last time: one probe, not a stampede
			}
			if f == 0 || len(ms) == 0 {
				continue
			}
			per := min(q.opts.BatchSize, (len(ms)+f-1)/f)
			for n := 0; n < f && len(ms) > 0; n++ {
				k := min(per, len(ms))
				jobs = append(jobs, job{route: ri, msgs: ms[:k:k], probe: r.connFails > 0})
				for i := range ms[:k] {
					ms[i].wait = time.Time{}
				}
				ms = ms[k:]
				free--
			}
			perRoute[ri] = ms
			if r.connFails > 0 {
				r.probing = true
			}
		}
		// What no worker took is due still.
		for _, ms := range perRoute {
			for i := range ms {
				if e := ix.get(ms[i].ID); e != nil {
					e.where = inNone
					ix.unpop(e)
				}
			}
		}
		q.busy += len(jobs)
	}
	q.smu.Unlock()
	for i := range expired {
		m := &expired[i]
		// The whole message for the dead letter and OnResult, with the
		// retry state on disk (its last error).
		full, err := q.spool.load(dirQueue, m.ID)
		if err != nil {
			q.forget(m.ID)
			continue
		}
		q.final(&full, false, 0, "expired")
	}
	for i := range unr {
		// A configuration matter (rules on every [[upstream]]), never the
		// message's: it waits for a fixed configuration, like any retry.
		m := &unr[i]
		q.deferMsg(m, errors.New("no [[upstream]] entry matches this message (recipient_domains/sender_domains)"))
		q.writeBack(m)
	}
	for i, j := range jobs {
		select {
		case q.jobs <- j:
		case <-ctx.Done():
			for _, j := range jobs[i:] {
				q.batchDone(j, j.msgs)
			}
			return
		}
	}
}

// freeWorkers returns how many workers may take a batch. The caller holds
// smu.
func (q *Queue) freeWorkers() int {
	return q.connections() - q.busy
}

// worker owns one upstream connection at a time and delivers the batches
// Run hands it. The connection stays open for the next batch (to the same
// upstream) for up to connIdle and carries at most batch_size messages.
func (q *Queue) worker(ctx context.Context) {
	w := &workerConn{}
	defer w.close()
	idle := time.NewTimer(connIdle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q.jobs:
			if w.route != j.route {
				w.close()
				w.route = j.route
			}
			done := q.deliver(ctx, w, j.route, j.msgs)
			q.batchDone(j, j.msgs[done:])
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(connIdle)
		case <-idle.C:
			w.close()
		}
	}
}

// workerConn is a worker's upstream connection and how much it carried.
type workerConn struct {
	uc     *upstream.Conn
	route  int // the route uc is connected to
	sent   int
	reused bool // idle since the last batch: check it before use
	// recorded is closed once the delivery of the last message this
	// worker sent is durable in the spool (nil: nothing pending).
	recorded <-chan struct{}
}

// waitRecorded returns once the last delivery over w is durable. A worker
// calls it before each MAIL FROM, so that a crash can re-send at most the
// one message whose transaction is under way on each connection: every
// message before it was recorded as delivered before it started. The wait
// is short: the removal started right after the 250, ran while the worker
// read the next message, and shares its fsyncs with the other workers'
// (groupSync).
func (w *workerConn) waitRecorded() {
	if w.recorded != nil {
		<-w.recorded
		w.recorded = nil
	}
}

func (w *workerConn) close() {
	if w.uc != nil {
		w.uc.Close()
		w.uc = nil
	}
}

// batchDone releases the untried rest of a batch (shutdown, or a hold: they
// stay due) and frees the worker. The tried messages were released one by
// one already and may by now be claimed by another worker: their claims are
// not this batch's to drop.
func (q *Queue) batchDone(j job, rest []Message) {
	q.smu.Lock()
	for i := range rest {
		id := rest[i].ID
		if e := q.idx.get(id); e != nil && e.where == inClaimed && !q.removing[id] {
			q.idx.release(e)
		}
	}
	q.busy--
	if r := q.routes[j.route]; j.probe && r.probing {
		r.probing = false
		q.clearWaits() // messages that waited for the probe pick again
	}
	q.smu.Unlock()
	q.poke()
}

// held reports whether route ri is held down (another worker could not
// connect): a worker that needs a new connection leaves its batch due.
func (q *Queue) held(ri int) bool {
	q.smu.Lock()
	defer q.smu.Unlock()
	return q.now().Before(q.routes[ri].holdUntil)
}

// connFailed records that route ri cannot deliver now and returns until
// when it is held down. Workers failing together during one hold count as
// one failure, so N connections do not back off N times faster.
func (q *Queue) connFailed(ri int, err error) time.Time {
	r := q.routes[ri]
	q.smu.Lock()
	now := q.now()
	if !now.Before(r.holdUntil) {
		r.connFails++
		r.holdUntil = now.Add(min(q.backoff(r.connFails), r.ProbeInterval))
		q.clearWaits() // its messages take the next route now
	}
	until := r.holdUntil
	q.smu.Unlock()
	q.routeStats(r, func(st *UpstreamStats) {
		st.ConnFailures++
		st.LastError, st.LastErrorAt = err.Error(), now
		if st.DownSince.IsZero() {
			st.DownSince = now
		}
	})
	return until
}

// connOK ends an outage of route ri; the other workers may connect again
// and messages that went elsewhere come back to it.
func (q *Queue) connOK(ri int) {
	r := q.routes[ri]
	q.smu.Lock()
	wasDown := r.connFails > 0
	r.connFails = 0
	r.holdUntil = time.Time{}
	r.probing = false
	if wasDown {
		q.clearWaits()
	}
	q.smu.Unlock()
	if wasDown {
		q.routeStats(r, func(st *UpstreamStats) { st.DownSince = time.Time{} })
		q.log.Info("queue: upstream is back", "upstream", r.Name)
		q.poke()
	}
}

// deliver sends a batch over the worker's connection to route ri,
// connecting when it has none (or the one it has is broken, used up or no
// longer answers). It returns how many messages of the batch it settled
// and released; the rest was not tried.
func (q *Queue) deliver(ctx context.Context, w *workerConn, ri int, batch []Message) int {
	w.reused = w.uc != nil
	for i := range batch {
		if ctx.Err() != nil {
			return i // the rest stays due, untouched
		}
		// The batch holds what the index keeps (queue_index.go): the
		// envelope and the body come from the file, read before a
		// connection is needed.
		data, ok := q.current(&batch[i])
		if !ok {
			continue
		}
		if err := checkEnvelope(&batch[i].Envelope); err != nil {
			// Never sent, never retried: no attempt would fare better.
			q.final(&batch[i], false, 0, "invalid envelope, not sent: "+err.Error())
			continue
		}
		if n, ok := q.ensureConn(ctx, w, ri, batch[i:]); !ok {
			return i + n
		}
		w.waitRecorded()
		if down := q.transact(w, ri, &batch[i], data); down {
			// The upstream refuses every transaction now (4xx to MAIL):
			// the rest goes back, to take the next route.
			w.close()
			return i + 1
		}
	}
	return len(batch)
}

// ensureConn gives w a connection to route ri fit for the first message
// of rest: it drops one that is broken or used up, checks one that was
// idle since the last batch, and dials when there is none. It reports
// false when w has no connection, with how many messages of rest it
// settled: none when the route is held down or the worker is shutting
// down (they stay due, untouched), all of them when the upstream could not
// be reached (holdRest).
func (q *Queue) ensureConn(ctx context.Context, w *workerConn, ri int, rest []Message) (settled int, ok bool) {
	if w.uc != nil && (w.uc.Broken() || w.sent >= q.opts.BatchSize) {
		w.close()
	}
	if w.uc != nil && w.reused {
		// Idle since the last batch: the server may have dropped
		// it. A failed NOOP costs a reconnect, not an attempt.
		w.reused = false
		if w.uc.Noop() != nil {
			w.close()
		} else {
			q.connOK(ri) // the upstream answers: a probe need not dial
		}
	}
	if w.uc != nil {
		return 0, true
	}
	if q.held(ri) {
		return 0, false // another worker found the upstream down
	}
	start := q.now()
	uc, err := upstream.Dial(ctx, q.routes[ri].Upstream, nil)
	if err != nil {
		if ctx.Err() != nil {
			return 0, false // shutting down: not a failure of the messages
		}
		q.holdRest(ri, rest, start, err)
		return len(rest), false
	}
	q.connOK(ri)
	w.uc, w.sent = uc, 0
	return 0, true
}

// holdRest handles the untried rest of a batch after route ri could not be
// reached: no message is at fault, so each waits for the end of the
// upstream's hold rather than its own backoff (see maxProbeInterval), or,
// when it may take another route, goes there at once.
func (q *Queue) holdRest(ri int, rest []Message, start time.Time, err error) {
	until := q.connFailed(ri, err)
	r := q.routes[ri]
	now := q.now()
	moved := 0
	for i := range rest {
		m := &rest[i]
		q.withHeader(m)
		m.Via = r.Name
		q.logAttempt(m, r, start, upstream.ReplyCode(err), err)
		next := until
		if q.hasAlternative(m, ri) {
			next = now
			moved++
		}
		q.deferUntil(m, r, next, err)
		q.writeBack(m)
	}
	if moved > 0 {
		q.routeStats(r, func(st *UpstreamStats) { st.FailedOver += uint64(moved) })
	}
	q.log.Warn("queue: upstream cannot deliver now", "upstream", r.Name, "err", err, "messages", len(rest),
		"to_next_upstream", moved, "retry_at", until.Format(time.RFC3339))
}

// current replaces the worker's copy m with the message as the spool has it
// now, keeping the retry state the worker tracks, and returns its body. It
// reports false when the message is no longer queued; it is then forgotten
// and released.
func (q *Queue) current(m *Message) ([]byte, bool) {
	// From queue/ only: a message that was dead-lettered meanwhile
	// must not be read from dead/ and sent.
	// The retry state is the worker's, but for the last error, which the
	// index does not keep: it comes from the state file, which only a
	// message that was tried before has.
	cur, data, err := q.spool.read(dirQueue, m.ID, true, m.Attempts > 0)
	if err != nil {
		q.forget(m.ID) // deleted meanwhile, or quarantined as corrupt
		if !errors.Is(err, fs.ErrNotExist) {
			q.log.Error("queue: cannot read message", "id", m.ID, "err", err)
		}
		return nil, false
	}
	cur.Attempts, cur.NextAttempt = m.Attempts, m.NextAttempt
	cur.Upstream, cur.UpstreamSince, cur.Refused, cur.Via = m.Upstream, m.UpstreamSince, m.Refused, m.Via
	cur.match, cur.matchSet, cur.stateHash = m.match, m.matchSet, m.stateHash
	*m = cur
	return data, true
}

// transact runs one mail transaction for m over w's connection to route
// ri, then settles the outcome and releases m. It reports whether the
// route cannot deliver now (4xx to MAIL FROM).
func (q *Queue) transact(w *workerConn, ri int, m *Message, data []byte) (down bool) {
	r := q.routes[ri]
	t0 := q.now()
	m.Via = r.Name
	res, err := w.uc.Send(m.Envelope.From, m.Envelope.To, data)
	w.sent++
	if res.Downgrade != "" {
		q.log.Info("queue: upstream lacks 8BITMIME; converted on the wire", "id", m.ID, "upstream", r.Name, "what", res.Downgrade)
	}
	code := res.Code
	if err != nil {
		code = upstream.ReplyCode(err)
	}
	q.logAttempt(m, r, t0, code, err)
	if routeDown(err) {
		q.holdRest(ri, []Message{*m}, t0, err)
		return true
	}
	if q.settle(w, ri, m, res, err) {
		q.writeBack(m)
	}
	return false
}

// writeBack stores a worker's copy of a message that stays queued and
// releases its claim.
func (q *Queue) writeBack(m *Message) {
	q.smu.Lock()
	if e := q.idx.get(m.ID); e != nil {
		q.store(e, m)
		q.idx.release(e)
	}
	q.smu.Unlock()
}

// forget drops a message that is no longer in the spool.
func (q *Queue) forget(id string) {
	q.smu.Lock()
	q.idx.remove(id)
	q.smu.Unlock()
}

// settle records the outcome of one transaction over route ri durably and
// reports final states. It returns true when m stays queued. A delivery is
// recorded in the background; w.recorded says when it is durable.
func (q *Queue) settle(w *workerConn, ri int, m *Message, res upstream.Result, err error) bool {
	r := q.routes[ri]
	var se *upstream.SMTPError
	rejected := rejections(res.Rejected)
	switch {
	case err == nil:
		switch {
		case len(res.Deferred) > 0:
			if e := q.spool.Narrow(m.ID, res.Deferred, rejected); e != nil {
				q.log.Error("queue: cannot record partial delivery", "id", m.ID, "err", e)
			}
			m.Envelope.To, m.Rejected = res.Deferred, append(m.Rejected, rejected...)
			q.messageDefer(ri, m, fmt.Errorf("%d recipient(s) deferred", len(res.Deferred)))
			return true
		case len(rejected)+len(m.Rejected) > 0:
			m.Attempts++ // failed for good for the rejected recipients
			m.LastError = fmt.Sprintf("%d recipient(s) rejected", len(rejected)+len(m.Rejected))
			q.rejectRest(m, rejected)
		default:
			q.routeStats(r, func(st *UpstreamStats) { st.Delivered++; st.LastSuccess = q.now() })
			w.recorded = q.final(m, true, res.Code, res.Reply)
		}
	case errors.As(err, &se) && se.Temporary():
		if len(rejected) > 0 {
			if e := q.spool.Narrow(m.ID, res.Deferred, rejected); e == nil {
				m.Envelope.To, m.Rejected = res.Deferred, append(m.Rejected, rejected...)
			}
		}
		q.messageDefer(ri, m, err)
		return true
	case se != nil: // permanent
		q.routeStats(r, func(st *UpstreamStats) {
			st.Failed++
			st.LastError, st.LastErrorAt = se.Error(), q.now()
		})
		if policyRefusal(se) && q.refusedHere(ri, m, se) {
			return true
		}
		m.Attempts++ // the attempt that failed for good counts too
		m.LastError = se.Error()
		if se.Command == "RCPT" {
			q.rejectRest(m, rejected)
			return false
		}
		q.final(m, false, se.Code, se.Error())
	default:
		q.messageDefer(ri, m, err)
		return true
	}
	return false
}

// refusedHere records a policy refusal of m by route ri and, when another
// route may take m, sends it there at once and returns true.
func (q *Queue) refusedHere(ri int, m *Message, se *upstream.SMTPError) bool {
	r := q.routes[ri]
	if !q.hasAlternative(m, ri) {
		return false
	}
	m.Refused = append(m.Refused, r.Name)
	next := q.nextRoute(m, ri)
	if next == "" {
		m.Refused = m.Refused[:len(m.Refused)-1]
		return false
	}
	m.Upstream, m.UpstreamSince = next, time.Time{}
	q.countFailover(r)
	q.log.Warn("queue: refused for good by one upstream; trying the next", "id", m.ID, "upstream", r.Name,
		"next", next, "reply", se.Error())
	q.deferUntil(m, r, q.now(), se)
	return true
}

// messageDefer schedules m's next attempt after a failure of its own over
// route ri. On the entry it is on, the first such failure starts the
// entry's failover_after; once that has passed, m moves on to the next
// entry at once (see Route).
func (q *Queue) messageDefer(ri int, m *Message, cause error) {
	r := q.routes[ri]
	now := q.now()
	next := now.Add(q.backoff(m.Attempts + 1))
	cands := q.candidates(m)
	if len(cands) > 0 && cands[q.position(m, cands)] == ri {
		if m.Upstream != r.Name || m.UpstreamSince.IsZero() {
			m.Upstream, m.UpstreamSince = r.Name, now
		}
		if alt := q.nextRoute(m, ri); alt != "" {
			deadline := m.UpstreamSince.Add(r.FailoverAfter)
			if !now.Before(deadline) {
				q.countFailover(r)
				q.log.Warn("queue: moving message to the next upstream", "id", m.ID, "from", r.Name, "to", alt,
					"reason", "failing there for failover_after "+r.FailoverAfter.String(), "err", cause)
				m.Upstream, m.UpstreamSince = alt, time.Time{}
				next = now
			} else {
				next = earlier(next, deadline)
			}
		}
	}
	q.deferUntil(m, r, next, cause)
}

// rejectRest dead-letters what is left of m after every pending recipient
// was either accepted or refused: the dead letter's envelope names only the
// refused recipients.
func (q *Queue) rejectRest(m *Message, rejected []Rejection) {
	all := append(append([]Rejection(nil), m.Rejected...), rejected...)
	to := make([]string, len(all))
	reasons := make([]string, len(all))
	for i, r := range all {
		to[i], reasons[i] = r.Rcpt, r.Reason
	}
	if err := q.spool.Narrow(m.ID, to, rejected); err != nil {
		q.log.Error("queue: cannot record rejection", "id", m.ID, "err", err)
	}
	m.Envelope.To, m.Rejected = to, all
	q.final(m, false, all[0].Code, strings.Join(reasons, "; "))
}

// rejections converts the upstream's refusals into the spool's record of
// them.
func rejections(rs []upstream.Rejection) []Rejection {
	if len(rs) == 0 {
		return nil
	}
	out := make([]Rejection, len(rs))
	for i, r := range rs {
		out[i] = Rejection{Rcpt: r.Rcpt, Code: r.Code, Reason: r.Reason}
	}
	return out
}

// maxRemoving bounds the removals of delivered messages under way at once.
const maxRemoving = 64

// final takes m (a claimed copy) out of the queue: delivered (removed) or
// dead-lettered, and reports the result once that is durable.
//
// A delivered message is removed in the background, and the returned
// channel is closed once that is durable (for a dead letter, final returns
// nil when it is). The worker reads its next message meanwhile but waits
// for the channel before its next MAIL FROM (workerConn.waitRecorded):
// earlier versions went on with further transactions while removals
// waited for their fsyncs, so a kill -9 re-sent every message delivered
// during the last fsync or two (2 to 15 on an SD card). The message stays
// claimed (removing) until the removal is durable, so it is never handed
// out again; a crash before that sends it once more.
func (q *Queue) final(m *Message, delivered bool, code int, reason string) <-chan struct{} {
	if !delivered {
		q.settleFinal(m, false, code, reason, nil)
		return nil
	}
	q.smu.Lock()
	q.removing[m.ID] = true
	q.smu.Unlock()
	q.removeSlots <- struct{}{}
	q.removers.Add(1)
	mm := *m
	done := make(chan struct{})
	go func() {
		defer q.removers.Done()
		q.settleFinal(&mm, true, code, reason, done)
		<-q.removeSlots
	}()
	return done
}

// settleFinal makes the final state of m durable, closes recorded (when
// not nil) so that m's worker may go on, and reports it.
func (q *Queue) settleFinal(m *Message, delivered bool, code int, reason string, recorded chan struct{}) {
	var err error
	if delivered {
		err = q.spool.delivered(m)
	} else {
		err = q.spool.deadLetter(m, code, reason)
		q.log.Warn("queue: dead-lettered", "id", m.ID, "rcpts", len(m.Envelope.To), "code", code, "reason", reason)
	}
	if recorded != nil {
		close(recorded)
	}
	q.smu.Lock()
	q.idx.remove(m.ID)
	delete(q.removing, m.ID)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The file is still there. This process will not touch it again;
		// after a restart it is sent once more (for a delivered message,
		// one duplicate: the price of a failing disk, not a loop).
		q.settled[m.ID] = true
		q.smu.Unlock()
		q.log.Error("queue: cannot update spool", "id", m.ID, "err", err)
		return
	}
	q.smu.Unlock()
	now := q.now()
	m.Reason, m.Code = reason, code
	if !delivered {
		m.Died = now.UTC()
	}
	q.mu.Lock()
	if delivered {
		q.stats.Delivered++
		q.stats.LastSuccess = now
	} else {
		q.stats.DeadLettered++
	}
	fns := append([]func(Result){}, q.onResult...)
	q.mu.Unlock()
	r := Result{Message: *m, Delivered: delivered, Code: code, Reason: reason, Upstream: m.Via}
	q.resultMu.Lock()
	defer q.resultMu.Unlock()
	for _, fn := range fns {
		fn(r)
	}
}

// deferMsg schedules the next attempt of m after its own backoff, with no
// upstream involved.
func (q *Queue) deferMsg(m *Message, cause error) {
	q.deferUntil(m, nil, q.now().Add(q.backoff(m.Attempts+1)), cause)
}

// deferUntil records a failed attempt of m (a claimed copy) over route r
// (nil: none) and its next attempt time; the caller writes m back.
func (q *Queue) deferUntil(m *Message, r *routeState, next time.Time, cause error) {
	now := q.now()
	m.Attempts++
	m.NextAttempt = next
	m.LastError = cause.Error()
	if r != nil && len(q.routes) > 1 {
		m.LastError = r.Name + ": " + m.LastError // which upstream said so
	}
	// The state file is rewritten only when it would say something new
	// besides the count and the time: a retry that failed as the last one
	// did (an upstream down for hours, probed with the same batch every
	// few minutes; greylisting) costs no write. The state is advisory
	// (package doc): on disk the count may lag and the time be earlier,
	// which only makes a retry after a restart come sooner.
	if h := stateHash(m); h != m.stateHash || m.Attempts == 1 {
		if err := q.spool.deferState(m); err != nil {
			q.log.Error("queue: cannot record retry state", "id", m.ID, "err", err)
		} else {
			m.stateHash = h
		}
	}
	q.mu.Lock()
	q.stats.Deferred++
	q.stats.LastError, q.stats.LastErrorAt = m.LastError, now
	if r != nil {
		r.st.Deferred++
		r.st.LastError, r.st.LastErrorAt = cause.Error(), now
	}
	q.mu.Unlock()
}

// stateHash sums what a retry state says besides the count and the time
// (FNV-1a; 0 is kept for "not written by this process").
func stateHash(m *Message) uint32 {
	h := uint32(2166136261)
	add := func(s string) {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint32(s[i])) * 16777619
		}
		h = (h ^ 0xff) * 16777619
	}
	add(m.LastError)
	add(m.Upstream)
	add(m.UpstreamSince.UTC().Format(time.RFC3339Nano))
	for _, r := range m.Refused {
		add(r)
	}
	add(m.Via)
	return max(h, 1)
}

// backoff returns the delay before attempt n+1: min_backoff doubled per
// attempt, capped at max_backoff, with ±20% jitter so that a burst queued
// together does not retry in lockstep against a recovering upstream.
func (q *Queue) backoff(n int) time.Duration {
	lo, hi := q.opts.MinBackoff, q.opts.MaxBackoff
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return min(max(d, lo), hi)
}

func (q *Queue) logAttempt(m *Message, r *routeState, start time.Time, code int, err error) {
	q.countAttempt(&r.Upstream, err)
	attrs := []any{"id", m.ID, "upstream", r.Name, "rcpts", len(m.Envelope.To), "code", code,
		"duration", q.now().Sub(start).Round(time.Millisecond), "attempt", m.Attempts + 1, "source", m.Source}
	if err != nil {
		q.log.Info("delivery attempt failed", append(attrs, "err", err)...)
		return
	}
	q.log.Info("delivered", attrs...)
}
