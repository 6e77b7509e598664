// Package bridge connects PLC serial links to the mail spool.
//
// Each [[serial]] entry becomes a link: one goroutine owns the port, decodes
// frames (package protocol), renders alarm mails (mailer.Templates), queues
// them durably (mailer.Spool) and only then ACKs the frame. A link survives
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/mailer"
)

// Bridge runs all serial links of one configuration.
type Bridge struct {
	spool *mailer.Spool
	log   *slog.Logger
	wake  func() // tells the delivery loop that mail was queued; may be nil

	rt      atomic.Pointer[settings]
	limiter rateLimiter
	links   []*Link
	byName  map[string]*Link
}

// settings is everything Reload swaps at once.
type settings struct {
	cfg    *config.Config
	tmpl   *mailer.Templates
	serial map[string]*config.Serial
}

func newSettings(cfg *config.Config) (*settings, error) {
	tmpl, err := mailer.CompileTemplates(cfg)
	if err != nil {
		return nil, err
	}
	s := &settings{cfg: cfg, tmpl: tmpl, serial: map[string]*config.Serial{}}
	for i := range cfg.Serial {
		s.serial[cfg.Serial[i].Name] = &cfg.Serial[i]
	}
	return s, nil
}

// link returns the [[serial]] entry of a running link. Reload carries the
// entries of links the new configuration removed over from the old one, so
// every running link has one.
func (s *settings) link(name string) *config.Serial { return s.serial[name] }

// newBridge builds a bridge whose links use the given openers (by link
// name); a missing opener means the real serial port of the config.
func newBridge(cfg *config.Config, spool *mailer.Spool, wake func(), log *slog.Logger, openers map[string]Opener) (*Bridge, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := newSettings(cfg)
	if err != nil {
		return nil, err
	}
	b := &Bridge{spool: spool, log: log, wake: wake, byName: map[string]*Link{}}
	b.rt.Store(st)
	dir := filepath.Join(spool.Dir(), "links")
	for i := range cfg.Serial {
		sc := cfg.Serial[i]
		l, err := newLink(b, sc.Name, openers[sc.Name], dir)
		if err != nil {
			for _, l := range b.links {
				l.j.close()
			}
			return nil, fmt.Errorf("link %s: %w", sc.Name, err)
		}
		b.links = append(b.links, l)
		b.byName[sc.Name] = l
	}
	return b, nil
}

// Run runs every link until ctx is done, then closes their ports and
// journals and returns nil (or an error closing a journal; a deadline
// exceeded is returned as such). Link errors (a missing device, a read
// error) never end Run: the link logs them and reconnects.
func (b *Bridge) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, l := range b.links {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(ctx)
		}()
	}
	wg.Wait()
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

// Reload switches to cfg's templates, recipients, flood settings and link
// settings (heartbeat timeout, labels, notices) without closing any port; a
// link whose port settings (device, baud, parity, ...) changed reopens its
// port with the new ones. An invalid cfg is refused with its errors
// (config.Errors) and the running configuration stays. Added or removed
// [[serial]] links take effect at the next start of the daemon.
func (b *Bridge) Reload(cfg *config.Config) error {
	st, err := newSettings(cfg)
	if err != nil {
		b.log.Error("reload refused, keeping the running configuration", "err", err)
		return err
	}
	old := b.rt.Load()
	for name := range st.serial {
		if _, ok := b.byName[name]; !ok {
			b.log.Warn("reload: new [[serial]] link starts at the next restart", "link", name)
		}
	}
	for name, sc := range old.serial {
		if _, ok := st.serial[name]; !ok {
			b.log.Warn("reload: removed [[serial]] link keeps running until the next restart", "link", name)
			st.serial[name] = sc
		}
	}
	b.rt.Store(st)
	b.log.Info("configuration reloaded", "alarms", len(cfg.Alarm), "links", len(cfg.Serial))
	return nil
}

// Status returns a snapshot of every link, in configuration order.
func (b *Bridge) Status() []LinkStatus {
	out := make([]LinkStatus, 0, len(b.links))
	for _, l := range b.links {
		out = append(out, l.Status())
	}
	return out
}

// DeliveryResult routes a final delivery outcome to the link that queued the
// message, which tells the PLC in a DELIVERY frame. Keys that are not event
// keys ("link/boot/seq") are ignored, as are events of an earlier boot.
func (b *Bridge) DeliveryResult(key string, delivered bool, smtpCode int) {
	name, boot, seq, ok := parseEventKey(key)
	if !ok {
		return
	}
	l := b.byName[name]
	if l == nil {
		return
	}
	l.deliveryResult(delivery{boot: boot, seq: seq, ok: delivered, code: smtpCode})
}

func eventKey(link string, boot, seq uint32) string {
	return link + "/" + strconv.FormatUint(uint64(boot), 10) + "/" + strconv.FormatUint(uint64(seq), 10)
}

func parseEventKey(key string) (link string, boot, seq uint32, ok bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 3 {
		return "", 0, 0, false
	}
	b, err1 := strconv.ParseUint(parts[1], 10, 32)
	s, err2 := strconv.ParseUint(parts[2], 10, 32)
	if err1 != nil || err2 != nil {
		return "", 0, 0, false
	}
	return parts[0], uint32(b), uint32(s), true
}

// rateLimiter is the global cap on individual alarm mails per minute, shared
// by all links (the inboxes are shared too).
type rateLimiter struct {
	mu   sync.Mutex
	sent []time.Time
}

func (r *rateLimiter) allow(now time.Time, max int) bool {
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
