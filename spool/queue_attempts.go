package spool

import (
	"cmp"
	"errors"
	"net"
	"slices"
	"strconv"

	"github.com/plcmail/plcmail/upstream"
)

// AttemptCount is how many delivery attempts towards one upstream ended
// with one result since the start, for plcmail_delivery_attempts_total.
type AttemptCount struct {
	Upstream string `json:"upstream"` // host:port
	// Result is accepted (the upstream took the message), deferred (a 4xx
	// reply), rejected (a 5xx reply) or conn_error (no usable connection:
	// dial, TLS, AUTH, or I/O failed; every message of the batch counts).
	Result string `json:"result"`
	Count  uint64 `json:"count"`
}

// Results of AttemptCount.
const (
	AttemptAccepted  = "accepted"
	AttemptDeferred  = "deferred"
	AttemptRejected  = "rejected"
	AttemptConnError = "conn_error"
)

type attemptKey struct{ upstream, result string }

// attemptResult classifies the outcome of one attempt.
func attemptResult(err error) string {
	var ce *upstream.ConnError
	var se *upstream.SMTPError
	switch {
	case err == nil:
		return AttemptAccepted
	case errors.As(err, &ce):
		return AttemptConnError
	case errors.As(err, &se) && se.Temporary():
		return AttemptDeferred
	case se != nil:
		return AttemptRejected
	}
	return AttemptConnError
}

// countAttempt counts one attempt towards u.
func (q *Queue) countAttempt(u *upstream.Options, err error) {
	k := attemptKey{net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), attemptResult(err)}
	q.mu.Lock()
	if q.attempts == nil {
		q.attempts = map[attemptKey]uint64{}
	}
	q.attempts[k]++
	q.mu.Unlock()
}

// attemptCounts returns the counts in a stable order; the caller holds q.mu.
func (q *Queue) attemptCounts() []AttemptCount {
	out := make([]AttemptCount, 0, len(q.attempts))
	for k, n := range q.attempts {
		out = append(out, AttemptCount{Upstream: k.upstream, Result: k.result, Count: n})
	}
	slices.SortFunc(out, func(a, b AttemptCount) int {
		return cmp.Or(cmp.Compare(a.Upstream, b.Upstream), cmp.Compare(a.Result, b.Result))
	})
	return out
}
