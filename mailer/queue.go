package mailer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/plcmail/plcmail/config"
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
	Updated      time.Time `json:"updated"` // when the status file was written (ReadStats only)
}

// maxProbeInterval caps the wait between connection attempts to an
// unreachable upstream. When connecting (or TLS, or AUTH) fails, no message
// is at fault: the messages are held all together, with the upstream's
// backoff rather than their own, so that the first successful probe after
// an outage drains the whole queue at once. Probing every few minutes costs
// one TCP connection; waiting max_backoff (an hour) would delay alarms.
const maxProbeInterval = 5 * time.Minute

// statusFile is where Run publishes Stats for other processes (plcmail
// status); it is informational and not fsynced.
const statusFile = "status.json"

// ReadStats returns the Stats last published by the delivery loop running on
// the spool in dir (possibly in another process).
func ReadStats(dir string) (Stats, error) {
	var st Stats
	b, err := os.ReadFile(filepath.Join(dir, statusFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// Queue is the delivery loop: it sends due messages from the spool in
// batches over one upstream connection, retries temporary failures with
// exponential backoff and jitter, and dead-letters permanent failures and
// expired messages. Only one Queue per spool directory runs at a time,
// across processes (Spool.LockDelivery).
type Queue struct {
	spool *Spool
	cfg   *config.Config
	log   *slog.Logger
	now   func() time.Time
	wake  chan struct{}

	// Owned by the Run goroutine.
	msgs map[string]*Message
	// settled holds ids that reached their final state but whose file
	// could not be removed (read-only or failing disk): never send them
	// again from this process, whatever the next scan finds.
	settled   map[string]bool
	holdUntil time.Time
	connFails int
	lastScan  time.Time
	lastPrune time.Time
	published Stats

	mu       sync.Mutex
	onResult []func(Result)
	stats    Stats
}

// NewQueue prepares a delivery loop; it checks what can be checked before
// the first connection (the TLS trust settings).
func NewQueue(spool *Spool, cfg *config.Config, log *slog.Logger) (*Queue, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := tlsConfig(&cfg.Upstream); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return &Queue{spool: spool, cfg: cfg, log: log, now: time.Now,
		wake: make(chan struct{}, 1), msgs: map[string]*Message{}, settled: map[string]bool{}}, nil
}

// OnResult registers fn to be called, from the delivery goroutine, each
// time a message reaches its final state; the spool change is durable by
// then. fn must not block for long.
func (q *Queue) OnResult(fn func(Result)) {
	q.mu.Lock()
	q.onResult = append(q.onResult, fn)
	q.mu.Unlock()
}

// Wake makes the loop rescan the spool and try due messages now, without
// waiting for the next scan; call it after an in-process Enqueue.
func (q *Queue) Wake() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Stats returns a snapshot of the loop's state.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.stats
}

// Run delivers until ctx is done. A transaction in progress is completed
// (bounded by upstream.timeout), never cut off, so that a message the
// upstream accepted is also removed from the spool. It returns nil after
// ctx is done, or an error when it cannot start (another process delivers).
func (q *Queue) Run(ctx context.Context) error {
	unlock, err := q.spool.LockDelivery()
	if err != nil {
		return err
	}
	defer unlock()
	q.scan()
	q.lastPrune = q.now() // OpenSpool just compacted
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			q.publish()
			return nil
		}
		now := q.now()
		if now.Sub(q.lastScan) >= q.cfg.Queue.ScanEvery.D() {
			q.scan()
		}
		if now.Sub(q.lastPrune) >= 24*time.Hour {
			q.lastPrune = now
			if err := q.spool.loadKeys(); err != nil {
				q.log.Error("queue: compacting idempotency keys", "err", err)
			}
		}
		if batch := q.due(now); len(batch) > 0 {
			q.deliver(ctx, batch)
			q.publish()
			continue
		}
		q.publish()
		timer.Reset(q.sleep(now))
		select {
		case <-ctx.Done():
		case <-q.wake:
			q.lastScan = time.Time{}
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

// sleep returns how long nothing is to be done.
func (q *Queue) sleep(now time.Time) time.Duration {
	next := q.lastScan.Add(q.cfg.Queue.ScanEvery.D())
	for _, m := range q.msgs {
		t := m.NextAttempt
		if t.Before(q.holdUntil) && !q.expired(m, now) {
			t = q.holdUntil
		}
		if t.Before(next) {
			next = t
		}
	}
	d := next.Sub(now)
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// scan re-reads the queue directory: messages queued by other processes
// are added, deleted ones dropped, and a Flush request applied. Bodies are
// not read; only new files' header lines are.
func (q *Queue) scan() {
	q.lastScan = q.now()
	q.spool.cleanTmp()
	ids, err := q.spool.ids(dirQueue)
	if err != nil {
		q.log.Error("queue: scan", "err", err)
		return
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
		if _, ok := q.msgs[id]; ok || q.settled[id] {
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
		q.msgs[id] = &m
	}
	for id := range q.msgs {
		if !seen[id] {
			delete(q.msgs, id) // deleted by `plcmail queue delete`
		}
	}
	for id := range q.settled {
		if !seen[id] {
			delete(q.settled, id)
		}
	}
	if q.spool.takeFlush() {
		q.log.Info("queue: flush requested")
		for _, m := range q.msgs {
			m.NextAttempt = q.lastScan
		}
		q.holdUntil = time.Time{}
	}
}

func (q *Queue) expired(m *Message, now time.Time) bool {
	return now.Sub(m.Created) > q.cfg.Queue.Lifetime.D()
}

// due returns up to batch_size messages to try now, oldest first, after
// dead-lettering the expired ones. While the upstream is held down, only
// expiry happens.
func (q *Queue) due(now time.Time) []*Message {
	var due []*Message
	for _, m := range q.msgs {
		if m.NextAttempt.After(now) {
			continue
		}
		if q.expired(m, now) {
			q.final(m, false, 0, "expired")
			continue
		}
		due = append(due, m)
	}
	if now.Before(q.holdUntil) {
		return nil
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].Created.Equal(due[j].Created) {
			return due[i].Created.Before(due[j].Created)
		}
		return due[i].ID < due[j].ID
	})
	if len(due) > q.cfg.Queue.BatchSize {
		due = due[:q.cfg.Queue.BatchSize]
	}
	return due
}

// deliver sends a batch over one connection.
func (q *Queue) deliver(ctx context.Context, batch []*Message) {
	start := q.now()
	uc, err := dialUpstream(ctx, q.cfg, nil)
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: not a failure of the messages
		}
		q.connFails++
		q.holdUntil = q.now().Add(min(q.backoff(q.connFails), maxProbeInterval))
		for _, m := range batch {
			q.logAttempt(m, start, ReplyCode(err), err)
			q.deferUntil(m, q.holdUntil, err)
		}
		q.log.Warn("queue: upstream unreachable", "err", err, "messages", len(batch), "retry_at", q.holdUntil.Format(time.RFC3339))
		return
	}
	q.connFails = 0
	q.holdUntil = time.Time{}
	defer uc.close()
	for _, m := range batch {
		if ctx.Err() != nil || uc.broken {
			return // the rest stays due, untouched
		}
		cur, data, err := q.spool.ReadMessage(m.ID)
		if err != nil {
			delete(q.msgs, m.ID) // deleted meanwhile, or quarantined as corrupt
			if !errors.Is(err, ErrNotFound) {
				q.log.Error("queue: cannot read message", "id", m.ID, "err", err)
			}
			continue
		}
		cur.Attempts, cur.NextAttempt, cur.LastError = m.Attempts, m.NextAttempt, m.LastError
		*m = cur
		t0 := q.now()
		res, err := uc.send(m.Envelope, data)
		code := res.Code
		if err != nil {
			code = ReplyCode(err)
		}
		q.logAttempt(m, t0, code, err)
		q.settle(m, res, err)
	}
}

// settle records the outcome of one transaction durably and reports final
// states.
func (q *Queue) settle(m *Message, res txResult, err error) {
	var se *SMTPError
	switch {
	case err == nil:
		switch {
		case len(res.Deferred) > 0:
			if e := q.spool.Narrow(m.ID, res.Deferred, res.Rejected); e != nil {
				q.log.Error("queue: cannot record partial delivery", "id", m.ID, "err", e)
			}
			m.Envelope.To, m.Rejected = res.Deferred, append(m.Rejected, res.Rejected...)
			q.deferMsg(m, fmt.Errorf("%d recipient(s) deferred", len(res.Deferred)))
		case len(res.Rejected)+len(m.Rejected) > 0:
			q.rejectRest(m, res.Rejected)
		default:
			q.final(m, true, res.Code, res.Reply)
		}
	case errors.As(err, &se) && se.Temporary():
		if len(res.Rejected) > 0 {
			if e := q.spool.Narrow(m.ID, res.Deferred, res.Rejected); e == nil {
				m.Envelope.To, m.Rejected = res.Deferred, append(m.Rejected, res.Rejected...)
			}
		}
		q.deferMsg(m, err)
	case se != nil: // permanent
		if se.Command == "RCPT" {
			q.rejectRest(m, res.Rejected)
			return
		}
		q.final(m, false, se.Code, se.Error())
	default:
		q.deferMsg(m, err)
	}
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

// final takes m out of the queue: delivered (removed) or dead-lettered.
func (q *Queue) final(m *Message, delivered bool, code int, reason string) {
	var err error
	if delivered {
		err = q.spool.Delivered(m.ID)
	} else {
		err = q.spool.DeadLetter(m.ID, code, reason)
		q.log.Warn("queue: dead-lettered", "id", m.ID, "rcpts", len(m.Envelope.To), "code", code, "reason", reason)
	}
	delete(q.msgs, m.ID)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The file is still there. This process will not touch it again;
		// after a restart it is sent once more (for a delivered message,
		// one duplicate: the price of a failing disk, not a loop).
		q.settled[m.ID] = true
		q.log.Error("queue: cannot update spool", "id", m.ID, "err", err)
		return
	}
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
	r := Result{Message: *m, Delivered: delivered, Code: code, Reason: reason}
	for _, fn := range fns {
		fn(r)
	}
}

// deferMsg schedules the next attempt of m after its own backoff.
func (q *Queue) deferMsg(m *Message, cause error) {
	q.deferUntil(m, q.now().Add(q.backoff(m.Attempts+1)), cause)
}

// deferUntil records a failed attempt of m and its next attempt time.
func (q *Queue) deferUntil(m *Message, next time.Time, cause error) {
	now := q.now()
	m.Attempts++
	m.NextAttempt = next
	m.LastError = cause.Error()
	if err := q.spool.Defer(m.ID, m.Attempts, m.NextAttempt, m.LastError); err != nil {
		q.log.Error("queue: cannot record retry state", "id", m.ID, "err", err)
	}
	q.mu.Lock()
	q.stats.Deferred++
	q.stats.LastError, q.stats.LastErrorAt = m.LastError, now
	q.mu.Unlock()
}

// backoff returns the delay before attempt n+1: min_backoff doubled per
// attempt, capped at max_backoff, with ±20% jitter so that a burst queued
// together does not retry in lockstep against a recovering upstream.
func (q *Queue) backoff(n int) time.Duration {
	lo, hi := q.cfg.Queue.MinBackoff.D(), q.cfg.Queue.MaxBackoff.D()
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return min(max(d, lo), hi)
}

func (q *Queue) logAttempt(m *Message, start time.Time, code int, err error) {
	attrs := []any{"id", m.ID, "rcpts", len(m.Envelope.To), "code", code,
		"duration", q.now().Sub(start).Round(time.Millisecond), "attempt", m.Attempts + 1, "source", m.Source}
	if err != nil {
		q.log.Info("delivery attempt failed", append(attrs, "err", err)...)
		return
	}
	q.log.Info("delivered", attrs...)
}

// publish updates Stats and the status file.
func (q *Queue) publish() {
	var oldest time.Time
	for _, m := range q.msgs {
		if oldest.IsZero() || m.Created.Before(oldest) {
			oldest = m.Created
		}
	}
	q.mu.Lock()
	q.stats.Queued, q.stats.Oldest, q.stats.HoldUntil = len(q.msgs), oldest, q.holdUntil
	st := q.stats
	q.mu.Unlock()
	// Write only on change: gateways run from SD cards.
	if st == q.published {
		return
	}
	q.published = st
	st.Updated = q.now().UTC()
	b, _ := json.Marshal(st)
	path := filepath.Join(q.spool.dir, statusFile)
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, path)
	}
}
