// Package flood is plcmail's flood control, shared by every alarm source
// (the framed serial links of package bridge and the polled Modbus devices
// of package modbus): an alarm that repeats within its hold-off, or that
// would exceed the cap of individual mails per minute, is not mailed on its
// own but held for a digest mail, never dropped.
//
// The package is pure logic: every decision takes the time as an argument,
// so that callers inject their clock and tests step it. It keeps no files;
// a source makes its held events durable where it keeps its own state (the
// bridge in its journal, the Modbus poller in its device state file, with
// Held), and after a restart Digest.Start schedules the digest of events
// held before the crash, so that none waits for a new one to be held.
package flood

import (
	"sync"
	"time"
)

// Reasons an event is held for a digest; they appear in digest mails.
const (
	ReasonHoldoff   = "hold-off"
	ReasonRateLimit = "rate limit"
)

const (
	// MaxDigestEntries bounds one digest mail (~100 bytes per entry); more
	// held events go out in further digests right after.
	MaxDigestEntries = 1000
	// Retry is how soon a digest (or notice) that could not be queued is
	// tried again.
	Retry = 5 * time.Second
)

// Limiter is the cap on individual alarm mails per minute. One Limiter is
// shared by all sources of a gateway, because their mails go to the same
// inboxes. It is safe for concurrent use.
type Limiter struct {
	mu   sync.Mutex
	sent []time.Time
}

// Allow reports whether one more individual mail at now stays within max
// per minute (a sliding minute), and counts it if so.
func (r *Limiter) Allow(now time.Time, max int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := 0
	for cut < len(r.sent) && now.Sub(r.sent[cut]) >= time.Minute {
		cut++
	}
	r.sent = r.sent[cut:]
	if len(r.sent) >= max {
		return false
	}
	r.sent = append(r.sent, now)
	return true
}

// Gate decides for one source whether an event is mailed on its own. The
// hold-off memory is per source and in memory only: after a restart the
// first repeat of an alarm is mailed again, which can double a mail's
// content but never loses an event. A Gate belongs to one goroutine.
type Gate struct {
	lim  *Limiter
	last map[string]time.Time // alarm key -> last individual mail
}

// NewGate returns a gate whose rate cap is lim (shared by all sources).
func NewGate(lim *Limiter) *Gate {
	return &Gate{lim: lim, last: map[string]time.Time{}}
}

// Decide returns "" when the event of alarm key (an alarm and its event,
// e.g. "code 7 raise") may be mailed on its own at now, else the reason to
// hold it: ReasonHoldoff when the same key was mailed less than holdoff
// ago, ReasonRateLimit when the shared cap of maxPerMinute is reached. An
// allowed event takes a slot of the cap; call Mailed once it is recorded.
func (g *Gate) Decide(now time.Time, key string, holdoff time.Duration, maxPerMinute int) string {
	if last, ok := g.last[key]; ok && now.Sub(last) < holdoff {
		return ReasonHoldoff
	}
	if !g.lim.Allow(now, maxPerMinute) {
		return ReasonRateLimit
	}
	return ""
}

// Mailed starts the hold-off of key at now.
func (g *Gate) Mailed(key string, now time.Time) { g.last[key] = now }

// Forget drops the hold-off of the keys for which drop is true (a rule
// that was removed by a reload).
func (g *Gate) Forget(drop func(key string) bool) {
	for k := range g.last {
		if drop(k) {
			delete(g.last, k)
		}
	}
}

// Digest is the schedule of one source's digest mails: the first held event
// starts a delay, after which everything held so far goes out in one mail.
// A Digest belongs to one goroutine; its zero value is due at once.
type Digest struct {
	due time.Time
}

// Start schedules the digest of events held before a restart: they go out
// delay after the start like any others (and at once with delay 0).
func (d *Digest) Start(now time.Time, delay time.Duration) { d.due = now.Add(delay) }

// Held records that an event was held at now; pending is the number of held
// events now waiting, this one included. The first one starts the delay.
func (d *Digest) Held(now time.Time, delay time.Duration, pending int) {
	if pending == 1 {
		d.due = now.Add(delay)
	}
}

// Due reports whether a digest of pending events should be queued at now.
func (d *Digest) Due(now time.Time, pending int) bool {
	return pending > 0 && !now.Before(d.due)
}

// At returns when the digest of pending events is due; false with none.
func (d *Digest) At(pending int) (time.Time, bool) { return d.due, pending > 0 }

// Batch is how many of pending held events the next digest takes.
func Batch(pending int) int { return min(pending, MaxDigestEntries) }

// Queued records that a digest was queued at now and left events are still
// held: more than one digest's worth goes out at once, else the next digest
// waits delay.
func (d *Digest) Queued(now time.Time, delay time.Duration, left int) {
	d.due = now.Add(delay)
	if left > 0 {
		d.due = now
	}
}

// Failed records that the digest could not be queued at now; it is tried
// again after Retry.
func (d *Digest) Failed(now time.Time) { d.due = now.Add(Retry) }

// Now makes the digest due at now (an event that could not be mailed on its
// own joined the held ones and should not wait).
func (d *Digest) Now(now time.Time) { d.due = now }
