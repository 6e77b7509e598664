// Package bridge connects PLC serial links to the mail spool.
//
// Each [[serial]] entry becomes a link: one goroutine owns the port, decodes
// frames (package protocol), appends each accepted event to the link's
// journal (fsynced) and only then ACKs the frame; the alarm mail is rendered
// (alarmmail.Templates) and queued durably (spool.Spool) right after. A link survives
// its port disappearing (USB unplug) by reopening it with backoff, supervises
// the PLC with a heartbeat timeout, reconciles the PLC's active alarms after
// a restart, and holds back floods of alarms into digest mails without
// losing a single event: everything a link ACKs is either in a queued mail or
// in its journal (see journal.go) until a queued digest covers it.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/plcmail/plcmail/flood"
	"github.com/plcmail/plcmail/spool"
)

// Bridge runs all serial links of one configuration.
type Bridge struct {
	spool *spool.Spool
	log   *slog.Logger
	wake  func() // tells the delivery loop that mail was queued; may be nil

	rt         atomic.Pointer[settings]
	limiter    *flood.Limiter    // individual mails per minute, shared with other sources
	openers    map[string]Opener // tests: link name -> opener
	journalDir string

	mu     sync.Mutex
	links  []*Link // in configuration order
	byName map[string]*Link
	runCtx context.Context // nil until Run
	wg     sync.WaitGroup  // running links
}

// newBridge builds a bridge whose links use the given openers (by link
// name); a missing opener means the link's serial port.
func newBridge(o Options, spool *spool.Spool, wake func(), log *slog.Logger, openers map[string]Opener) (*Bridge, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := newSettings(o)
	if err != nil {
		return nil, err
	}
	lim := o.Limiter
	if lim == nil {
		lim = new(flood.Limiter)
	}
	b := &Bridge{spool: spool, log: log, wake: wake, byName: map[string]*Link{}, openers: openers,
		journalDir: filepath.Join(spool.Dir(), "links"), limiter: lim}
	b.rt.Store(st)
	links, err := b.openLinks(st)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		b.addLink(l)
	}
	return b, nil
}

// openLinks prepares the links of st that b does not have yet, loading
// their journals; if one fails, it closes the journals it opened. b.mu must
// be held or b not yet shared.
func (b *Bridge) openLinks(st *settings) ([]*Link, error) {
	var added []*Link
	for i := range st.Links {
		sc := &st.Links[i]
		if _, ok := b.byName[sc.Name]; ok {
			continue
		}
		l, err := newLink(b, sc, b.openers[sc.Name], b.journalDir)
		if err != nil {
			for _, l := range added {
				l.j.close()
			}
			return nil, fmt.Errorf("link %s: %w", sc.Name, err)
		}
		added = append(added, l)
	}
	return added, nil
}

// addLink registers l and starts it if Run is running; b.mu must be held
// or b not yet shared.
func (b *Bridge) addLink(l *Link) {
	b.links = append(b.links, l)
	b.byName[l.name] = l
	if b.runCtx != nil {
		b.startLink(l)
	}
}

func (b *Bridge) startLink(l *Link) {
	ctx, cancel := context.WithCancel(b.runCtx)
	l.cancel = cancel
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(l.stopped)
		l.run(ctx)
	}()
}

// removeLink stops the link called name, waits for it and closes its
// journal; b.mu must be held.
func (b *Bridge) removeLink(name string) {
	l := b.byName[name]
	delete(b.byName, name)
	b.links = slices.DeleteFunc(b.links, func(x *Link) bool { return x == l })
	if l.cancel != nil {
		l.cancel()
		<-l.stopped
	}
	if err := l.j.close(); err != nil {
		b.log.Error("closing journal", "link", name, "err", err)
	}
}

// Run runs every link until ctx is done, then closes their ports and
// journals and returns nil (or an error closing a journal; a deadline
// exceeded is returned as such). Link errors (a missing device, a read
// error) never end Run: the link logs them and reconnects.
func (b *Bridge) Run(ctx context.Context) error {
	b.mu.Lock()
	b.runCtx = ctx
	for _, l := range b.links {
		b.startLink(l)
	}
	b.mu.Unlock()
	<-ctx.Done()
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, l := range b.links {
		if err := l.j.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}

// Reload switches to o's templates, recipients, flood control and link
// settings (heartbeat timeout, labels, notices) without closing any port; a
// link whose Port changed reopens its port with the new one, a new link
// starts, a removed one stops (its journal stays for when it comes back).
// If a new link cannot load its journal, Reload returns the error and the
// running options stay.
func (b *Bridge) Reload(o Options) error {
	st, err := newSettings(o)
	if err != nil {
		b.log.Error("reload refused, keeping the running configuration", "err", err)
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// New links first: if one cannot load its journal, nothing changes.
	added, err := b.openLinks(st)
	if err != nil {
		b.log.Error("reload refused, keeping the running configuration", "err", err)
		return err
	}
	for name := range b.byName {
		if st.link(name) == nil {
			b.log.Info("reload: link removed, stopping it", "link", name)
			b.removeLink(name)
		}
	}
	b.rt.Store(st)
	for _, l := range added {
		b.log.Info("reload: new link", "link", l.name)
		b.addLink(l)
	}
	b.log.Info("configuration reloaded", "links", len(st.Links))
	return nil
}

// Status returns a snapshot of every link, in configuration order.
func (b *Bridge) Status() []LinkStatus {
	b.mu.Lock()
	links := slices.Clone(b.links)
	b.mu.Unlock()
	out := make([]LinkStatus, 0, len(links))
	for _, l := range links {
		out = append(out, l.Status())
	}
	return out
}

// DeliveryResult routes a final delivery outcome to the link that queued the
// message, which tells the PLC in DELIVERY frames; it has the signature of
// spool.Queue.OnResult's callback. Alarm mails, the reconciliation mails of
// a HELLO and digests are routed (not notices or mail from other sources),
// and a link drops the results of an earlier boot.
func (b *Bridge) DeliveryResult(r spool.Result) {
	o, ok := originOf(r.Message)
	if !ok {
		return
	}
	if l := b.link(o.Link); l != nil {
		l.deliveryResult(delivery{boot: o.Boot, gen: o.Gen, seq: o.Seq, parts: o.Parts, events: o.Events, ok: r.Delivered, code: r.Code})
	}
}

// link returns the running link called name, nil if there is none (a link
// removed by a reload since the mail was queued).
func (b *Bridge) link(name string) *Link {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byName[name]
}
