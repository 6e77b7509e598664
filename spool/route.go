package spool

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/plcmail/plcmail/upstream"
)

// Route is one entry of the upstream list ([[upstream]]): where to send,
// which messages may go there, and when a message gives up on it.
//
// The failover policy, decided here once:
//
//   - Entries are tried in order. A message goes to the first entry whose
//     rules match it (an entry without rules matches every message); the
//     others that match are its fallbacks, in order.
//   - An upstream that cannot deliver now, whatever the message: the
//     connection, TLS, EHLO or AUTH failed (an OAuth sign-in missing too),
//     or it answered MAIL FROM with a 4xx (rate limit, account
//     throttled). It is held down for everyone, with backoff up to
//     ProbeInterval, and its messages move to the next entry at once.
//     After the hold one worker probes it; once it answers, new mail and
//     retries go through it again (the primary comes back by itself,
//     messages do not stay stuck on a fallback).
//   - A message-level temporary failure (4xx to RCPT or DATA, a
//     connection lost during the transaction) keeps the message on its
//     entry with the usual backoff, until FailoverAfter has passed since
//     the first such failure there: then it moves on to the next entry
//     (after the last, back to the first), durably (Message.Upstream).
//   - A permanent refusal (5xx) of the message ends it, as with one
//     upstream, except when another provider may well answer otherwise:
//     a 5xx to MAIL FROM (the sender or the account is refused: "5.7.60
//     not allowed to send as", a sending quota) and a 5.7.x policy or
//     security reply to RCPT or DATA when every recipient was refused
//     ("relaying denied" on a misconfigured account, a provider's content
//     or reputation filter). Such a message goes to the next entry that
//     has not refused it yet, and is dead-lettered once every entry did.
//     Postfix's smtp_fallback_relay is used only for unreachable or
//     temporarily failing destinations and a 5xx bounces at once; that is
//     right for a recipient's own MX, whose 5xx speaks for the mailbox.
//     A relay's 5.7.x and MAIL 5xx speak for that provider's policy and
//     our account there, so for an alarm a second provider is worth one
//     more try. Mailbox answers (5.1.x unknown user, 5.2.x mailbox full,
//     5.3.x size, 5.6.x content) stay final: the next relay would reach
//     the same mailbox and hear the same.
//   - Recipients refused one by one while others were accepted stay
//     refused: the message went out, it is never sent twice.
type Route struct {
	// Name identifies the entry in logs, status, metrics and the message's
	// state; default "host:port". It must be unique and stable across
	// restarts for a message to stay on its entry.
	Name     string
	Upstream upstream.Options
	// RecipientDomains, when set, limits the entry to messages whose
	// recipients are all in these domains; SenderDomains to messages
	// whose envelope sender is. "example.com" matches that domain,
	// ".example.com" its subdomains (Postfix's notation).
	RecipientDomains, SenderDomains []string
	// FailoverAfter is how long a message stays on this entry after its
	// first message-level failure there (default 10m).
	FailoverAfter time.Duration
	// ProbeInterval caps the wait between attempts to reach this
	// upstream once it is down (default 5m): how soon a recovered primary
	// carries mail again.
	ProbeInterval time.Duration
}

// Default failover timing of a Route.
const (
	DefaultFailoverAfter = 10 * time.Minute
	DefaultProbeInterval = maxProbeInterval
)

// UpstreamStats is one upstream entry's state and counters since start,
// for `plcmail status` and metrics.
type UpstreamStats struct {
	Name string `json:"name"`
	Addr string `json:"addr"` // host:port
	// State is "ok", "down" (held until HoldUntil after failures) or
	// "probing" (one attempt under way after a hold).
	State       string    `json:"state"`
	HoldUntil   time.Time `json:"hold_until,omitzero"`
	DownSince   time.Time `json:"down_since,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Delivered counts messages accepted, Deferred attempts that failed
	// temporarily, Failed permanent refusals, ConnFailures failed
	// connections (or 4xx to MAIL), FailedOver messages sent on to the
	// next entry from this one.
	Delivered    uint64 `json:"delivered"`
	Deferred     uint64 `json:"deferred"`
	Failed       uint64 `json:"failed"`
	ConnFailures uint64 `json:"conn_failures"`
	FailedOver   uint64 `json:"failed_over"`
}

// routeState is a Route with its hold state (under smu) and counters
// (under mu).
type routeState struct {
	Route
	holdUntil time.Time
	connFails int
	probing   bool // a single worker tries the upstream after a hold
	st        UpstreamStats
}

// newRoutes fills in the defaults of the configured routes, or makes the
// one route of a single upstream.
func newRoutes(opts *QueueOptions) ([]*routeState, error) {
	routes := opts.Routes
	if len(routes) == 0 {
		routes = []Route{{Upstream: opts.Upstream}}
	}
	if len(routes) > maxRoutes {
		return nil, fmt.Errorf("%d upstream entries, at most %d", len(routes), maxRoutes)
	}
	out := make([]*routeState, len(routes))
	names := map[string]bool{}
	for i, r := range routes {
		addr := net.JoinHostPort(strings.Trim(r.Upstream.Host, "[]"), strconv.Itoa(r.Upstream.Port))
		if r.Name == "" {
			r.Name = addr
		}
		if names[r.Name] {
			return nil, fmt.Errorf("upstream %d: duplicate name %q", i+1, r.Name)
		}
		names[r.Name] = true
		if err := r.Upstream.Validate(); err != nil {
			return nil, fmt.Errorf("upstream %q: %w", r.Name, err)
		}
		if r.FailoverAfter <= 0 {
			r.FailoverAfter = DefaultFailoverAfter
		}
		if r.ProbeInterval <= 0 {
			r.ProbeInterval = DefaultProbeInterval
		}
		out[i] = &routeState{Route: r, st: UpstreamStats{Name: r.Name, Addr: addr}}
	}
	return out, nil
}

// matches reports whether the route's rules admit m.
func (r *Route) matches(m *Message) bool {
	if len(r.SenderDomains) > 0 && !domainIn(m.Envelope.From, r.SenderDomains) {
		return false
	}
	if len(r.RecipientDomains) > 0 {
		for _, to := range m.Envelope.To {
			if !domainIn(to, r.RecipientDomains) {
				return false
			}
		}
	}
	return true
}

func domainIn(addr string, domains []string) bool {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return false
	}
	d := strings.ToLower(addr[i+1:])
	for _, x := range domains {
		x = strings.ToLower(x)
		if d == x || strings.HasPrefix(x, ".") && strings.HasSuffix(d, x) {
			return true
		}
	}
	return false
}

// candidates returns the indexes of the routes m may take, in order: those
// whose rules match and that have not refused it for good. The caller
// holds smu or owns m.
func (q *Queue) candidates(m *Message) []int {
	var out []int
	for i, r := range q.routes {
		ok := m.match&(1<<i) != 0
		if !m.matchSet {
			ok = r.matches(m)
		}
		if ok && !contains(m.Refused, r.Name) {
			out = append(out, i)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// position returns the index in cands of the entry m is on (0 when it
// names none of them: new, or the configuration changed).
func (q *Queue) position(m *Message, cands []int) int {
	for k, ri := range cands {
		if q.routes[ri].Name == m.Upstream {
			return k
		}
	}
	return 0
}

// pick chooses the route for m's next attempt, or returns -1 and until
// when none of its routes is usable (held down, or probed by another
// worker: then until is far off, and the end of the probe clears it), or
// -2 when no route matches m at all. The caller holds smu.
func (q *Queue) pick(m *Message, now time.Time) (ri int, until time.Time) {
	cands := q.candidates(m)
	if len(cands) == 0 {
		return -2, time.Time{}
	}
	start := q.position(m, cands)
	// failover_after passed on its entry: move on. The attempt's outcome
	// makes this durable.
	if r := q.routes[cands[start]]; len(cands) > 1 && !m.UpstreamSince.IsZero() && !now.Before(m.UpstreamSince.Add(r.FailoverAfter)) {
		start = (start + 1) % len(cands)
		m.Upstream, m.UpstreamSince = q.routes[cands[start]].Name, time.Time{}
		q.countFailover(r)
		q.log.Warn("queue: moving message to the next upstream", "id", m.ID, "from", r.Name,
			"to", m.Upstream, "reason", "failing there for failover_after "+r.FailoverAfter.String())
	}
	probe := false
	for k := range cands {
		ri := cands[(start+k)%len(cands)]
		r := q.routes[ri]
		if now.Before(r.holdUntil) {
			until = earlierSet(until, r.holdUntil)
			continue
		}
		if r.connFails > 0 && r.probing {
			probe = true
			continue
		}
		return ri, time.Time{}
	}
	if probe || until.IsZero() {
		until = now.Add(100 * 365 * 24 * time.Hour)
	}
	return -1, until
}

// earlierSet is earlier with the zero time meaning unset.
func earlierSet(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return earlier(a, b)
}

// nextRoute returns the name of the entry after the one m is on, among
// those it may take, or "" when there is no other.
func (q *Queue) nextRoute(m *Message, failed int) string {
	cands := q.candidates(m)
	k := -1
	for i, ri := range cands {
		if ri == failed {
			k = i
		}
	}
	if k < 0 {
		if len(cands) == 0 {
			return ""
		}
		return q.routes[cands[q.position(m, cands)]].Name // failed refused it: its entry's next is the first
	}
	if len(cands) < 2 {
		return ""
	}
	return q.routes[cands[(k+1)%len(cands)]].Name
}

// hasAlternative reports whether m may take a route other than ri.
func (q *Queue) hasAlternative(m *Message, ri int) bool {
	for _, c := range q.candidates(m) {
		if c != ri {
			return true
		}
	}
	return false
}

// enhancedRE finds an RFC 3463 enhanced status code at the start of a
// reply text.
var enhancedRE = regexp.MustCompile(`^\s*([245])\.(\d{1,3})\.\d{1,3}\b`)

// policyRefusal reports whether a permanent refusal speaks for the
// upstream's policy or our account there rather than for the message's
// mailboxes, so that another upstream may accept it (see Route).
func policyRefusal(se *upstream.SMTPError) bool {
	if se.Command == "MAIL" {
		return true
	}
	if se.Command != "RCPT" && se.Command != "DATA" {
		return false
	}
	m := enhancedRE.FindStringSubmatch(se.Msg)
	return m != nil && m[2] == "7"
}

// routeDown reports whether err means the upstream cannot deliver now,
// whatever the message: a failed connection setup, or a 4xx to MAIL FROM.
func routeDown(err error) bool {
	var se *upstream.SMTPError
	return errors.As(err, &se) && se.Temporary() && se.Command == "MAIL"
}

// countFailover counts a message moved on from r.
func (q *Queue) countFailover(r *routeState) {
	q.mu.Lock()
	r.st.FailedOver++
	q.mu.Unlock()
}

// routeStats records an outcome of r for status.
func (q *Queue) routeStats(r *routeState, f func(st *UpstreamStats)) {
	q.mu.Lock()
	f(&r.st)
	q.mu.Unlock()
}

// clearWaits makes every message pick its route afresh: a route came back
// or a probe ended, sooner than the waits assumed. The caller holds smu.
func (q *Queue) clearWaits() {
	for _, i := range q.idx.byID {
		q.idx.slab[i].wait = 0
	}
	q.idx.rebuild()
}

// maxRoutes is how many [[upstream]] entries a queue takes: the index keeps
// a message's routes as bits of a word (queue_index.go).
const maxRoutes = 64

// matchMask returns the routes whose rules admit m, as bits.
func (q *Queue) matchMask(m *Message) uint64 {
	if m.matchSet {
		return m.match
	}
	var mask uint64
	for i, r := range q.routes {
		if r.matches(m) {
			mask |= 1 << i
		}
	}
	return mask
}

// routeIndex returns the index of the route named name, or -1.
func (q *Queue) routeIndex(name string) int8 {
	if name == "" {
		return -1
	}
	for i, r := range q.routes {
		if r.Name == name {
			return int8(i)
		}
	}
	return -1
}

// entryOf is m as the index keeps it; false when m.ID is not an id.
// Failover state naming entries that are no longer configured is dropped:
// routing only ever compares it with configured names.
func (q *Queue) entryOf(m *Message) (entry, bool) {
	k, ok := idKey(m.ID)
	if !ok {
		return entry{}, false
	}
	e := entry{id: k, created: ns(m.Created), match: q.matchMask(m)}
	q.store(&e, m)
	return e, true
}

// store copies the schedule and failover state of m (a worker's copy, or
// one dispatch made) into its index entry.
func (q *Queue) store(e *entry, m *Message) {
	e.next, e.wait, e.since = ns(m.NextAttempt), ns(m.wait), ns(m.UpstreamSince)
	e.attempts = int32(min(m.Attempts, 1<<31-1))
	e.state = m.stateHash
	e.upstream = q.routeIndex(m.Upstream)
	e.refused = 0
	for _, name := range m.Refused {
		if ri := q.routeIndex(name); ri >= 0 {
			e.refused |= 1 << ri
		}
	}
}

// messageOf is the Message a worker starts from: id, schedule and failover
// state; current reads the rest from the file.
func (q *Queue) messageOf(e *entry) Message {
	m := Message{ID: string(e.id[:]), Created: fromNS(e.created), NextAttempt: fromNS(e.next),
		Attempts: int(e.attempts), UpstreamSince: fromNS(e.since), wait: fromNS(e.wait),
		match: e.match, matchSet: true, stateHash: e.state}
	if e.upstream >= 0 {
		m.Upstream = q.routes[e.upstream].Name
	}
	for i, r := range q.routes {
		if e.refused&(1<<i) != 0 {
			m.Refused = append(m.Refused, r.Name)
		}
	}
	return m
}

// withHeader fills in what the index does not keep (envelope, source,
// key, size), for a message of a batch that current did not read yet.
func (q *Queue) withHeader(m *Message) {
	if m.Envelope.To != nil {
		return
	}
	h, _, err := q.spool.read(dirQueue, m.ID, false, false)
	if err != nil {
		return
	}
	m.Envelope, m.Source, m.Key, m.Origin, m.Size, m.Rejected = h.Envelope, h.Source, h.Key, h.Origin, h.Size, h.Rejected
}

// upstreamStats snapshots the routes for Stats, and returns until when
// every route is held down (zero when one is usable).
func (q *Queue) upstreamStats(now time.Time) ([]UpstreamStats, time.Time) {
	out := make([]UpstreamStats, len(q.routes))
	var holdEnd time.Time
	allHeld := true
	q.smu.Lock()
	for i, r := range q.routes {
		out[i].State = "ok"
		switch {
		case now.Before(r.holdUntil):
			out[i].State = "down"
			out[i].HoldUntil = r.holdUntil
			holdEnd = earlierSet(holdEnd, r.holdUntil)
		case r.connFails > 0 && r.probing:
			out[i].State = "probing"
		case r.connFails > 0:
			out[i].State = "down" // due for a probe
		}
		if !now.Before(r.holdUntil) {
			allHeld = false
		}
	}
	if !allHeld {
		holdEnd = time.Time{}
	}
	q.smu.Unlock()
	q.mu.Lock()
	for i, r := range q.routes {
		st := r.st
		st.State, st.HoldUntil = out[i].State, out[i].HoldUntil
		if st.State == "ok" {
			st.DownSince = time.Time{}
		}
		out[i] = st
	}
	q.mu.Unlock()
	return out, holdEnd
}
