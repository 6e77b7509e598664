// Package channel carries alarms over fallback channels besides the mail
// (issue 15): a JSON webhook, ntfy, Microsoft Teams or Slack incoming
// webhooks, and MQTT. It decides which alarm takes which channel by the
// channel's rules, keeps every delivery durably in the spool directory and
// retries it until the receiver accepts it or it expires.
//
// The guarantees, like the mail's (package spool):
//
//   - A delivery is a record in SPOOL/channels/, written (temp file, fsync,
//     link, directory fsync) before the first attempt, so kill -9 or power
//     loss never loses it; the next start goes on with it.
//   - A record is named by the channel and the alarm's spool key, so a rule
//     that holds again (after a restart, at the next scan) finds it and
//     sends nothing new: one delivery per alarm and channel.
//   - Delivery is at least once: a crash between the receiver's answer and
//     the durable "delivered" mark sends that one alarm again. Every attempt
//     carries the same idempotency key (HTTP header Idempotency-Key, field
//     "id" of the JSON payload, also over MQTT) so that a receiver that
//     keeps keys drops the repetition, and a human sees it is one.
//   - Delivered and dead records stay KeepDone, so that the rules of an
//     alarm still queued as mail never send it again.
//
// The rules of a channel, any of which sends an alarm over it:
//
//   - SeverityAtLeast: an alarm of that severity or higher, at once. The
//     record is written by the spool's BeforeEnqueue hook (Hook), before the
//     mail exists, so that a mail delivered at once cannot slip by.
//   - NotAcceptedWithin: its mail is still in the queue that long after it
//     was queued (the queue is scanned every ScanEvery, see scanPeriod).
//   - UpstreamFailingFor: every upstream has been failing that long
//     (Options.UpstreamDownSince): every alarm still queued goes out.
//
// Mail relayed from the LAN (SMTP, plcmail send) takes a channel by the
// last two rules only if the channel says Relayed; it has no severity.
package channel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// Kind is how a channel carries an alarm.
type Kind string

// Channel kinds.
const (
	// Webhook POSTs the alarm as JSON (Payload) to a URL.
	Webhook Kind = "webhook"
	// Ntfy POSTs the text to an ntfy topic URL with Title, Priority and
	// Tags headers (https://docs.ntfy.sh/publish/).
	Ntfy Kind = "ntfy"
	// Teams POSTs an Adaptive Card message, the shape Microsoft Teams'
	// incoming webhooks (Workflows) take.
	Teams Kind = "teams"
	// Slack POSTs {"text": ...}, the shape of Slack's incoming webhooks
	// (and of Mattermost's and Rocket.Chat's).
	Slack Kind = "slack"
	// MQTT publishes Payload as JSON to a topic with QoS 1.
	MQTT Kind = "mqtt"
)

// ErrPermanent marks an error after which retrying a delivery is useless
// (a topic the broker refuses, a 4xx of the receiver): the record becomes
// a dead letter at once.
var ErrPermanent = errors.New("permanent failure")

// Channel is one configured channel ([[channel]]).
type Channel struct {
	Name  string
	Kind  Kind
	URL   string // webhook, ntfy, teams, slack
	Topic string // mqtt
	// Token is sent as "Authorization: Bearer"; Username and Password as
	// basic authentication instead.
	Token              string
	Username, Password string
	// RootCAs verifies the receiver's certificate; nil: the system roots.
	RootCAs *x509.CertPool
	// SeverityAtLeast, when HasSeverityRule, sends every alarm of this
	// severity or higher.
	HasSeverityRule bool
	SeverityAtLeast protocol.Severity
	// NotAcceptedWithin, if > 0, sends an alarm whose mail is still queued
	// this long after it was queued.
	NotAcceptedWithin time.Duration
	// UpstreamFailingFor, if > 0, sends the queued alarms once every
	// upstream has been failing this long.
	UpstreamFailingFor time.Duration
	// Relayed lets relayed LAN mail take the channel by the last two rules.
	Relayed bool
	// Lifetime is how long a delivery is retried (default 5 days).
	Lifetime time.Duration
	// Publish sends a payload to an MQTT topic (kind MQTT); an error
	// wrapping ErrPermanent is not retried.
	Publish func(ctx context.Context, topic string, payload []byte) error
}

// Options configure a Dispatcher.
type Options struct {
	// Hostname names the gateway in payloads and in idempotency keys, so
	// that the alarms of two gateways posting to one receiver never share
	// a key.
	Hostname string
	Channels []Channel
	// UpstreamDownSince returns since when every upstream has been
	// failing, or the zero time when one works (the queue's route state).
	UpstreamDownSince func() time.Time
	// ScanEvery is how often the queue may be checked against the rules
	// at most (default 15s); the period is longer for rules of longer
	// durations (scanPeriod).
	ScanEvery time.Duration
	// Timeout bounds one attempt (default 30s).
	Timeout time.Duration
	// Client sends the HTTP requests (default: a client with Timeout).
	Client *http.Client
}

// Defaults.
const (
	DefaultScanEvery = 15 * time.Second
	DefaultTimeout   = 30 * time.Second
	DefaultLifetime  = 5 * 24 * time.Hour
	// KeepDone is how long a delivered or dead record is kept.
	KeepDone = spool.KeyRetention
	// maxBackoff caps the wait between two attempts.
	maxBackoff = 10 * time.Minute
)

// Result is a delivery that reached its final state, for the DELIVERY
// frame (SPEC §3.6, via) and logs.
type Result struct {
	// Via is the channel's position in Options.Channels, from 1: the
	// DELIVERY frame's via byte.
	Via       int
	Channel   string
	Alarm     Alarm
	Delivered bool
	// Code is the receiver's HTTP status (0 for MQTT and for expiry).
	Code int
}

// Stats is one channel's state for status and metrics.
type Stats struct {
	Name        string    `json:"name"`
	Kind        Kind      `json:"kind"`
	Queued      int       `json:"queued"`    // records not yet final
	Delivered   uint64    `json:"delivered"` // since start
	Retried     uint64    `json:"retried"`   // failed attempts that will be retried
	Dead        uint64    `json:"dead"`      // given up (permanent failure or expired)
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
}

// Dispatcher runs the channels of one gateway on one spool directory.
type Dispatcher struct {
	o     Options
	sp    *spool.Spool
	store *store
	log   *slog.Logger
	now   func() time.Time
	// minBackoff is the first retry's wait (tests shorten it).
	minBackoff time.Duration

	clients []*http.Client // per channel: Options.Client, or one with its RootCAs

	// settled holds the queued messages every time-rule channel is done
	// with (recorded, or not for it): scan reads their headers only once,
	// so its cost during a long outage follows the new mail, not the queue.
	// Only scan touches it.
	settled map[string]struct{}
	// headerReads counts the headers scan has read (tests).
	headerReads int

	mu       sync.Mutex
	stats    []Stats
	onResult func(Result)
	wake     []chan struct{} // one per channel worker
}

// New opens SPOOL/channels of sp and loads the deliveries left there.
func New(sp *spool.Spool, o Options, log *slog.Logger) (*Dispatcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.ScanEvery <= 0 {
		o.ScanEvery = DefaultScanEvery
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout, CheckRedirect: noRedirect}
	}
	names := map[string]bool{}
	d := &Dispatcher{o: o, sp: sp, log: log, now: time.Now, minBackoff: 5 * time.Second}
	for i := range d.o.Channels {
		c := &d.o.Channels[i]
		if names[c.Name] || c.Name == "" {
			return nil, fmt.Errorf("channel %d: empty or duplicate name %q", i+1, c.Name)
		}
		names[c.Name] = true
		if c.Kind == MQTT && c.Publish == nil {
			return nil, fmt.Errorf("channel %q: kind mqtt needs a broker connection", c.Name)
		}
		if c.Lifetime <= 0 {
			c.Lifetime = DefaultLifetime
		}
		d.stats = append(d.stats, Stats{Name: c.Name, Kind: c.Kind})
		client := o.Client
		if c.RootCAs != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12}
			client = &http.Client{Timeout: o.Client.Timeout, CheckRedirect: o.Client.CheckRedirect, Transport: tr}
		}
		d.clients = append(d.clients, client)
		d.wake = append(d.wake, make(chan struct{}, 1))
	}
	st, err := openStore(sp.Dir(), log)
	if err != nil {
		return nil, err
	}
	d.store = st
	// Deliveries of a channel renamed or removed since are kept but never
	// sent: say so, once, rather than lose them silently.
	for name, n := range st.queued() {
		if !names[name] {
			log.Warn("channel deliveries left for a channel no longer configured are not sent; restore its [[channel]] to send them",
				"channel", name, "waiting", n, "dir", st.dir)
		}
	}
	return d, nil
}

// OnResult sets fn to be called when a delivery is final. Set it before Run.
func (d *Dispatcher) OnResult(fn func(Result)) {
	d.mu.Lock()
	d.onResult = fn
	d.mu.Unlock()
}

// Hook is the spool's BeforeEnqueue hook (spool.Spool.BeforeEnqueue): it
// records the alarm for every channel whose severity rule it meets,
// durably, before the mail is written.
func (d *Dispatcher) Hook(sub spool.Submission) error {
	sev, ok := severityOf(sub.Origin)
	if !ok || !isAlarm(sub.Source) {
		return nil
	}
	var a *Alarm
	for i := range d.o.Channels {
		c := &d.o.Channels[i]
		if !c.HasSeverityRule || sev < c.SeverityAtLeast {
			continue
		}
		if a == nil {
			al := alarmOf(sub.Key, sub.Source, sub.Origin, sub.Data, d.now())
			al.Severity = sev.String()
			a = &al
		}
		created, err := d.record(i, *a, "severity")
		if err != nil {
			return err
		}
		if created {
			d.poke(i)
		}
	}
	return nil
}

// record writes the delivery of a over channel i unless it exists; it
// reports whether it wrote one.
func (d *Dispatcher) record(i int, a Alarm, rule string) (bool, error) {
	c := &d.o.Channels[i]
	now := d.now().UTC()
	r := &Record{
		ID: recordID(c.Name, a.Key), Channel: c.Name, Rule: rule,
		IdempotencyKey: idempotencyKey(d.store.instance, d.o.Hostname, c.Name, a.Key),
		Alarm:          a, Created: now, NextAttempt: now, State: StateQueued,
	}
	created, err := d.store.create(r)
	if err != nil {
		return false, fmt.Errorf("channel %s: %w", c.Name, err)
	}
	if created {
		d.log.Info("alarm goes over channel", "channel", c.Name, "rule", rule, "key", a.Key, "id", r.IdempotencyKey)
	}
	return created, nil
}

func (d *Dispatcher) poke(i int) {
	select {
	case d.wake[i] <- struct{}{}:
	default:
	}
}

// Stats returns every channel's state, in configuration order.
func (d *Dispatcher) Stats() []Stats {
	queued := d.store.queued()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]Stats(nil), d.stats...)
	for i := range out {
		out[i].Queued = queued[out[i].Name]
	}
	return out
}

// Run delivers until ctx ends: one worker per channel, and the scan of the
// queue against the rules.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range d.o.Channels {
		wg.Add(1)
		go func() { defer wg.Done(); d.worker(ctx, i) }()
	}
	t := time.NewTicker(d.scanPeriod())
	defer t.Stop()
	for {
		d.scan()
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

// maxScanPeriod caps the wait between two scans: an alarm taking a
// channel by a time rule goes out at most this late.
const maxScanPeriod = 30 * time.Second

// scanPeriod is how often scan runs: a quarter of the shortest time rule,
// between ScanEvery and maxScanPeriod. A scan lists queue/ and reads the
// header of each mail it has not settled yet, which after hours of outage
// may be thousands of names: a rule of 15 minutes need not list them every
// second.
func (d *Dispatcher) scanPeriod() time.Duration {
	p := maxScanPeriod
	for _, c := range d.o.Channels {
		for _, r := range []time.Duration{c.NotAcceptedWithin, c.UpstreamFailingFor} {
			if r > 0 {
				p = min(p, r/4)
			}
		}
	}
	return max(p, d.o.ScanEvery)
}

// scan applies the rules that depend on time to the queued mail, and
// forgets final records older than KeepDone.
func (d *Dispatcher) scan() {
	now := d.now()
	d.store.prune(now.Add(-KeepDone))
	var rules []int
	for i := range d.o.Channels {
		if d.o.Channels[i].NotAcceptedWithin > 0 || d.o.Channels[i].UpstreamFailingFor > 0 {
			rules = append(rules, i)
		}
	}
	if len(rules) == 0 {
		return
	}
	var down time.Time
	if d.o.UpstreamDownSince != nil {
		down = d.o.UpstreamDownSince()
	}
	if !d.mayFireAt(rules, now, down, time.Time{}) { // a mail of any age
		return // spare listing the queue
	}
	ids, err := d.sp.QueuedIDs()
	if err != nil {
		d.log.Error("cannot list the queue for the channel rules", "err", err)
		return
	}
	if d.settled == nil {
		d.settled = map[string]struct{}{}
	}
	queued := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		queued[id] = struct{}{}
		if _, ok := d.settled[id]; ok {
			continue
		}
		// The id's time is the queue time (to the microsecond; the header
		// has it to the nanosecond), so a mail too young for every rule is
		// passed over without opening it.
		if at, ok := spool.IDTime(id); ok && !d.mayFireAt(rules, now, down, at.Add(-time.Second)) {
			continue
		}
		m, err := d.sp.Get(id)
		if err != nil {
			continue // delivered or deleted meanwhile
		}
		d.headerReads++
		if d.scanMessage(m, rules, now, down) {
			d.settled[id] = struct{}{}
		}
	}
	for id := range d.settled {
		if _, ok := queued[id]; !ok {
			delete(d.settled, id)
		}
	}
}

// scanMessage applies the time rules to one queued mail; it reports
// whether every time-rule channel is done with it.
func (d *Dispatcher) scanMessage(m spool.Message, rules []int, now, down time.Time) (settled bool) {
	alarm := isAlarm(m.Source)
	key := alarmKey(m)
	settled = true
	var a *Alarm
	for _, i := range rules {
		c := &d.o.Channels[i]
		if !alarm && !c.Relayed {
			continue
		}
		if d.store.has(recordID(c.Name, key)) {
			continue
		}
		rule := ""
		switch {
		case c.NotAcceptedWithin > 0 && now.Sub(m.Created) >= c.NotAcceptedWithin:
			rule = "not_accepted"
		case c.UpstreamFailingFor > 0 && !down.IsZero() && now.Sub(down) >= c.UpstreamFailingFor:
			rule = "upstream_failing"
		default:
			settled = false
			continue
		}
		if a == nil {
			_, data, err := d.sp.ReadMessage(m.ID)
			if err != nil {
				return false // delivered or deleted meanwhile
			}
			al := alarmOf(key, m.Source, m.Origin, data, m.Created)
			if sev, ok := severityOf(m.Origin); ok {
				al.Severity = sev.String()
			}
			a = &al
		}
		if created, err := d.record(i, *a, rule); err != nil {
			d.log.Error("cannot record a channel delivery", "channel", c.Name, "key", key, "err", err)
			settled = false
		} else if created {
			d.poke(i)
		}
	}
	return settled
}

// mayFireAt reports whether a time rule can hold now for a mail queued at
// queued; the zero time stands for a mail of any age.
func (d *Dispatcher) mayFireAt(rules []int, now, down, queued time.Time) bool {
	for _, i := range rules {
		c := &d.o.Channels[i]
		if c.NotAcceptedWithin > 0 && now.Sub(queued) >= c.NotAcceptedWithin ||
			c.UpstreamFailingFor > 0 && !down.IsZero() && now.Sub(down) >= c.UpstreamFailingFor {
			return true
		}
	}
	return false
}

// worker delivers the due records of channel i, oldest first.
func (d *Dispatcher) worker(ctx context.Context, i int) {
	c := &d.o.Channels[i]
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		next := time.Time{}
		for _, r := range d.store.pending(c.Name) {
			if ctx.Err() != nil {
				return
			}
			now := d.now()
			if r.NextAttempt.After(now) {
				if next.IsZero() || r.NextAttempt.Before(next) {
					next = r.NextAttempt
				}
				continue
			}
			d.attempt(ctx, i, r)
			if r.State == StateQueued && (next.IsZero() || r.NextAttempt.Before(next)) {
				next = r.NextAttempt
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(0, next.Sub(d.now()))
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.wake[i]:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// attempt sends r once and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, i int, r *Record) {
	c := &d.o.Channels[i]
	now := d.now()
	if now.Sub(r.Created) >= c.Lifetime && r.Attempts > 0 {
		d.final(i, r, false, 0, "expired: "+r.LastError)
		return
	}
	r.Attempts++
	actx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	code, err := d.send(actx, c, d.clients[i], r)
	cancel()
	if ctx.Err() != nil && err != nil {
		r.Attempts-- // stopped, not failed: the next start tries again
		return
	}
	switch {
	case err == nil:
		d.final(i, r, true, code, "")
	case errors.Is(err, ErrPermanent):
		d.log.Error("channel refused the alarm for good", "channel", c.Name, "key", r.Alarm.Key, "err", err)
		d.final(i, r, false, code, err.Error())
	default:
		r.LastError = err.Error()
		r.NextAttempt = d.now().Add(d.backoff(r.Attempts)).UTC()
		if err := d.store.update(r, false); err != nil {
			d.log.Error("cannot write channel retry state", "channel", c.Name, "err", err)
		}
		d.log.Warn("channel delivery failed, retrying", "channel", c.Name, "key", r.Alarm.Key,
			"attempts", r.Attempts, "next", r.NextAttempt, "err", err)
		d.count(i, func(s *Stats) { s.Retried++; s.LastError, s.LastErrorAt = err.Error(), d.now() })
	}
}

func (d *Dispatcher) backoff(n int) time.Duration {
	b := d.minBackoff
	for ; n > 1 && b < maxBackoff; n-- {
		b *= 2
	}
	return min(b, maxBackoff)
}

// final marks r delivered or dead, durably, then reports it.
func (d *Dispatcher) final(i int, r *Record, ok bool, code int, reason string) {
	c := &d.o.Channels[i]
	r.Done, r.Code = d.now().UTC(), code
	if ok {
		r.State = StateDelivered
	} else {
		r.State, r.LastError = StateDead, reason
	}
	if err := d.store.update(r, true); err != nil {
		// Still queued on disk: the next start sends it again, under the
		// same idempotency key.
		d.log.Error("cannot mark channel delivery final", "channel", c.Name, "key", r.Alarm.Key, "err", err)
	}
	if ok {
		d.log.Info("alarm delivered over channel", "channel", c.Name, "key", r.Alarm.Key, "code", code, "attempts", r.Attempts)
		d.count(i, func(s *Stats) { s.Delivered++; s.LastSuccess = d.now() })
	} else {
		d.log.Error("channel delivery dead-lettered", "channel", c.Name, "key", r.Alarm.Key, "reason", reason)
		d.count(i, func(s *Stats) { s.Dead++; s.LastError, s.LastErrorAt = reason, d.now() })
	}
	d.mu.Lock()
	fn := d.onResult
	d.mu.Unlock()
	if fn != nil {
		fn(Result{Via: i + 1, Channel: c.Name, Alarm: r.Alarm, Delivered: ok, Code: code})
	}
}

func (d *Dispatcher) count(i int, f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats[i])
	d.mu.Unlock()
}

// noRedirect keeps a redirect as the answer: Go would follow a 301 or 302
// of a POST with a GET, whose 200 would pass for a delivered alarm.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// isAlarm reports whether mail of this source is a PLC's alarm (or notice)
// rather than mail relayed from the LAN.
func isAlarm(source string) bool {
	return strings.HasPrefix(source, "serial:") || strings.HasPrefix(source, "modbus:")
}

// alarmKey is the key a queued message's records are named by.
func alarmKey(m spool.Message) string {
	if m.Key != "" {
		return m.Key
	}
	return "id:" + m.ID
}

// severityOf reads the alarm's severity from the source's origin (package
// bridge writes it as "sev").
func severityOf(origin json.RawMessage) (protocol.Severity, bool) {
	if len(origin) == 0 {
		return 0, false
	}
	var o struct {
		Sev string `json:"sev"`
	}
	if json.Unmarshal(origin, &o) != nil || o.Sev == "" {
		return 0, false
	}
	s, err := protocol.ParseSeverity(o.Sev)
	return s, err == nil
}

// sortRecords orders records oldest first.
func sortRecords(rs []*Record) {
	sort.Slice(rs, func(a, b int) bool {
		if !rs[a].Created.Equal(rs[b].Created) {
			return rs[a].Created.Before(rs[b].Created)
		}
		return rs[a].ID < rs[b].ID
	})
}
