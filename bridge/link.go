package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/flood"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// Reconnect backoff: a USB adapter re-enumerates within a second or two, so
// start fast, but do not spin on a port that is gone for hours.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
	tickEvery  = 100 * time.Millisecond

	// naksPerSecond limits NAK reason 1 (SPEC §4 rule 5): line noise must
	// not turn into a storm of NAKs the PLC answers with retransmissions.
	naksPerSecond = 4
)

// LinkStatus is a snapshot of one link for `plcmail status`.
type LinkStatus struct {
	Name      string    `json:"name"`
	Port      string    `json:"port"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"` // connected or disconnected since
	LastFrame time.Time `json:"last_frame,omitzero"`
	Boot      uint32    `json:"boot"`
	// ChannelDeliveries: the PLC's current boot announced in its HELLO
	// that it understands a DELIVERY's via (features bit 0, firmware
	// library 0.2.0 and later), so it is told when a fallback channel
	// carried an alarm; older firmware is not sent those frames.
	ChannelDeliveries bool   `json:"channel_deliveries"`
	Offline           bool   `json:"offline"` // "PLC offline" was mailed and no frame since
	LastError         string `json:"last_error,omitempty"`

	Frames      uint64 `json:"frames"`       // valid frames received
	FrameErrors uint64 `json:"frame_errors"` // frames lost to CRC, COBS, length, version, type, payload errors
	Naks        uint64 `json:"naks"`         // NAKs sent
	Acks        uint64 `json:"acks"`         // ACKs sent (queued or duplicate)
	Duplicates  uint64 `json:"duplicates"`   // frames ACKed as duplicates
	Busy        uint64 `json:"busy"`         // frames refused because nothing could be stored
	// Mails is every mail the link queued, what its recipients receive:
	// Mailed + Digests + Notices (set by Status).
	Mails         uint64 `json:"mails"`
	Mailed        uint64 `json:"mailed"`         // alarm mails queued
	Unmailed      int    `json:"unmailed"`       // ACKed events whose mail is not in the spool yet (spool write failing)
	Held          uint64 `json:"held"`           // events held back for a digest
	Digests       uint64 `json:"digests"`        // digest mails queued
	DigestPending int    `json:"digest_pending"` // held events not yet in a queued digest
	Notices       uint64 `json:"notices"`        // offline/online/restart notices queued
	Reconnects    uint64 `json:"reconnects"`
	Deliveries    uint64 `json:"deliveries"` // DELIVERY frames sent

	Observed // frames by type, active and recent alarms (observed.go)
}

// delivery is the final outcome of a mail that reports PLC frames: the
// frame (boot, gen, seq), one of parts mails of that HELLO, or the held
// events of a digest.
type delivery struct {
	boot, gen, seq uint32
	parts          int
	events         []originBoot
	ok             bool
	code           int
	via            uint8 // 0 the mail; k >= 1 the k-th fallback channel (channel.go)
}

// helloRef is a HELLO whose reconciliation mails are counted.
type helloRef struct{ boot, gen, seq uint32 }

// helloTally counts the final outcomes of a HELLO's mails.
type helloTally struct {
	left   int
	failed bool
	code   int // SMTP code of the first failure
}

// maxTallies bounds the HELLOs whose mails are counted; a gateway restart
// loses the counts anyway (DELIVERY is best-effort).
const maxTallies = 16

// holdKey is the hold-off key of an alarm event: a repeat of the same code
// and event within the code's hold-off is held.
func holdKey(code int, event string) string { return strconv.Itoa(code) + "/" + event }

// Link is one PLC connection. All of its state below mu is owned by the
// goroutine in run; Status and deliveryResult are safe from any goroutine.
type Link struct {
	b    *Bridge
	name string
	open Opener // nil: the configured serial port
	log  *slog.Logger

	j  *journal
	st *linkState

	cancel  context.CancelFunc // stops run; set when started
	stopped chan struct{}      // closed when run returned

	deliveries chan delivery
	mailed     chan mailDone

	// The mailer goroutine's queue.
	outMu   sync.Mutex
	out     []record
	outWake chan struct{}

	// Owned by run.
	w           io.Writer // the open port, nil while disconnected
	dec         *protocol.Decoder
	started     time.Time
	lastFrame   time.Time // zero: none since the gateway started
	openedAt    time.Time
	gate        *flood.Gate
	digest      flood.Digest
	noticeRetry time.Time
	nakRate     perSecond // NAKs of reason bad frame
	tooLong     bool      // a too-long frame awaits its delimiter and NAK
	errLogRate  perSecond // frame errors logged
	wbuf        []byte
	port        Port   // the settings of the open port
	decErrors   uint64 // the decoder's error count last put in the status
	tallies     map[helloRef]*helloTally

	mu     sync.Mutex
	status LinkStatus
}

// newLink prepares the link of sc; open nil means the serial port of its
// settings, re-read at every (re)open so that a reload can change it.
func newLink(b *Bridge, sc *LinkOptions, open Opener, journalDir string) (*Link, error) {
	name := sc.Name
	j, st, err := openJournal(journalDir, name)
	if err != nil {
		return nil, err
	}
	l := &Link{
		b: b, name: name, open: open,
		log:        b.log.With("link", name),
		j:          j,
		st:         st,
		deliveries: make(chan delivery, 64),
		stopped:    make(chan struct{}),
		mailed:     make(chan mailDone),
		outWake:    make(chan struct{}, 1),
		dec:        protocol.NewDecoder(),
		gate:       flood.NewGate(b.limiter),
		tallies:    map[helloRef]*helloTally{},
	}
	l.status = LinkStatus{Name: name, Port: portName(sc.Port), Boot: st.Boot, Offline: st.Offline, DigestPending: len(st.pending),
		ChannelDeliveries: st.features&protocol.FeatureVia != 0}
	l.status.Active = cloneActive(st.Active)
	if len(st.pending) > 0 {
		l.log.Info("held events from before the restart await their digest", "pending", len(st.pending))
	}
	return l, nil
}

// Status returns a snapshot of the link's state and counters.
func (l *Link) Status() LinkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	s.Mails = s.Mailed + s.Digests + s.Notices
	return s
}

func (l *Link) update(f func(s *LinkStatus)) {
	l.mu.Lock()
	f(&l.status)
	l.mu.Unlock()
}

// deliveryResult queues a DELIVERY frame; it never blocks the delivery loop.
func (l *Link) deliveryResult(d delivery) {
	select {
	case l.deliveries <- d:
	default:
		l.log.Warn("delivery status not sent to the PLC: too many pending", "boot", d.boot, "seq", d.seq)
	}
}

func (l *Link) run(ctx context.Context) {
	l.started = time.Now()
	// Events held before a restart are in the journal: their digest is
	// scheduled now, not when the next event is held.
	l.digest.Start(l.started, l.settings().Flood.DigestDelay)
	if n := len(l.st.unmailed); n > 0 {
		l.log.Info("queuing alarms ACKed before the restart", "events", n)
		for _, r := range l.st.unmailed {
			l.mailOut(r)
		}
	}
	mctx, stopMailer := context.WithCancel(ctx)
	mailerDone := make(chan struct{})
	go func() {
		defer close(mailerDone)
		l.mailer(mctx)
	}()
	defer func() {
		stopMailer()
		<-mailerDone
	}()
	backoff := minBackoff
	failures := 0
	for ctx.Err() == nil {
		l.port = l.settings().link(l.name).Port
		open := l.open
		if open == nil {
			open = SerialOpener(l.port)
		}
		name := portName(l.port)
		l.update(func(s *LinkStatus) { s.Port = name })
		port, err := open()
		if err != nil {
			failures++
			// Log the first failure and then rarely: an unplugged PLC is
			// already reported by the offline mail.
			if failures == 1 || failures%60 == 0 {
				l.log.Warn("cannot open port, retrying", "port", name, "err", err, "attempts", failures)
			}
			l.update(func(s *LinkStatus) { s.LastError = err.Error() })
			l.idle(ctx, backoff)
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff, failures = minBackoff, 0
		l.log.Info("port open", "port", name)
		err = l.serve(ctx, port)
		port.Close()
		l.w = nil
		now := time.Now()
		l.update(func(s *LinkStatus) {
			s.Connected, s.Since = false, now
			if err != nil && ctx.Err() == nil {
				s.LastError = err.Error()
				s.Reconnects++
			}
		})
		if ctx.Err() == nil {
			l.log.Warn("port lost, reconnecting", "port", name, "err", err)
		}
	}
}

// idle waits d while the port is closed, still supervising the PLC.
func (l *Link) idle(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-tick.C:
			l.tick(time.Now())
		case d := <-l.deliveries:
			l.onDelivery(d) // counted; its frames are lost with the port
		case d := <-l.mailed:
			l.mailedDone(d)
		}
	}
}

// serve runs one open port until it fails or ctx is done. A separate
// goroutine reads, so that supervision and delivery reports do not depend on
// the port's read timeout.
func (l *Link) serve(ctx context.Context, port io.ReadWriteCloser) error {
	reads := make(chan []byte, 16)
	errc := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := port.Read(buf)
			if n > 0 {
				p := make([]byte, n)
				copy(p, buf[:n])
				select {
				case reads <- p:
				case <-done:
					return
				}
			}
			if err == nil && n == 0 {
				select {
				case <-done:
					return
				default:
				}
				continue // read timeout
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = fmt.Errorf("port closed: %w", err)
				}
				errc <- err
				return
			}
		}
	}()

	now := time.Now()
	l.w = port
	l.openedAt = now
	l.dec.Reset()
	l.tooLong = false
	// A delimiter ends whatever half frame the PLC's receiver holds.
	port.Write([]byte{0})
	l.update(func(s *LinkStatus) { s.Connected, s.Since, s.LastError = true, now, "" })

	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case p := <-reads:
			l.feed(p)
		case d := <-l.deliveries:
			l.onDelivery(d)
		case d := <-l.mailed:
			l.mailedDone(d)
		case <-tick.C:
			l.tick(time.Now())
			if l.open == nil && l.settings().link(l.name).Port != l.port {
				l.log.Info("port settings changed by reload, reopening")
				return errReconfigured
			}
		}
	}
}

// errReconfigured ends serve when a reload changed the port settings.
var errReconfigured = errors.New("port settings changed")

func (l *Link) settings() *settings { return l.b.rt.Load() }

func (l *Link) syncDecoderStats() {
	if n := l.dec.Stats().Errors(); n != l.decErrors {
		l.decErrors = n
		l.update(func(s *LinkStatus) { s.FrameErrors = n })
	}
}

// emit handles one decoder result; f is only valid during the call.
func (l *Link) emit(f *protocol.Frame, err error) {
	now := time.Now()
	l.syncDecoderStats() // before any answer, so status agrees with what the PLC saw
	if err != nil {
		l.frameError(err, now)
		return
	}
	l.frameSeen(now)
	l.noteFrame(f.Type)
	switch f.Type {
	case protocol.TypeHello:
		l.handleHello(f, now)
	case protocol.TypeEvent:
		l.handleEvent(f, now)
	case protocol.TypeHeartbeat:
	default:
		// A gateway frame echoed back (loopback wiring, RS-485 echo):
		// ignore it, it is not from the PLC.
		l.log.Debug("ignoring frame of gateway type", "type", f.Type)
	}
	l.noteActive()
}

func (l *Link) frameError(err error, now time.Time) {
	var fe *protocol.FrameError
	if !errors.As(err, &fe) {
		return
	}
	if !fe.HeaderTrusted() && now.Sub(l.openedAt) < l.settings().link(l.name).ResetGrace {
		// Bootloader output after the DTR reset of opening the port. A
		// frame whose CRC matched is no noise: it is NAKed (SPEC §4 rule 6).
		l.log.Debug("frame error during reset grace", "err", err)
		return
	}
	// Line noise can produce thousands of errors a second: log a few per
	// second at info level; all are counted in the status.
	logIt, notLogged := l.errLogRate.allow(now, naksPerSecond)
	if notLogged > 0 {
		l.log.Info("frame errors not logged", "count", notLogged)
	}
	if logIt {
		l.log.Info("frame error", "err", err)
	}
	if errors.Is(err, protocol.ErrTooLong) && l.dec.Discarding() {
		// Reported before its delimiter, which may never come (idle
		// noise): feed NAKs it when the delimiter arrives (SPEC §4 rule 5).
		l.tooLong = true
		return
	}
	l.nakFrameError(fe, now)
}

// nakFrameError answers a frame error; NAKs of reason bad frame are
// rate-limited.
func (l *Link) nakFrameError(fe *protocol.FrameError, now time.Time) {
	reason := fe.NakReason()
	if reason == protocol.NakBadFrame {
		if ok, _ := l.nakRate.allow(now, naksPerSecond); !ok {
			return
		}
	}
	l.nak(fe.Boot, fe.Seq, reason)
}

// feed decodes bytes from the port one delimiter at a time, so that the NAK
// of a too-long frame goes out when its delimiter arrives, before the
// answers to the frames after it.
func (l *Link) feed(p []byte) {
	for len(p) > 0 {
		n := len(p)
		if i := bytes.IndexByte(p, 0); i >= 0 {
			n = i + 1
		}
		l.dec.Feed(p[:n], l.emit)
		p = p[n:]
		if l.tooLong && !l.dec.Discarding() {
			l.tooLong = false
			l.nakFrameError(&protocol.FrameError{Err: protocol.ErrTooLong}, time.Now())
		}
	}
	l.syncDecoderStats()
}

// perSecond admits up to max events in each one-second window.
type perSecond struct {
	start   time.Time
	n       int // admitted in the current window
	refused int // refused in the current window
}

// allow reports whether one more event fits in the current window; when now
// opens a new window, refused is how many the previous one turned away.
func (w *perSecond) allow(now time.Time, max int) (ok bool, refused int) {
	if now.Sub(w.start) >= time.Second {
		refused, w.start, w.n, w.refused = w.refused, now, 0, 0
	}
	if w.n >= max {
		w.refused++
		return false, refused
	}
	w.n++
	return true, refused
}

// frameSeen does the link supervision for any valid frame.
func (l *Link) frameSeen(now time.Time) {
	prev := l.lastFrame
	if l.st.Offline {
		silence := now.Sub(prev)
		if prev.IsZero() {
			silence = now.Sub(l.started)
		}
		data := l.noticeData(alarmmail.KindOnline, now)
		data.LastFrame, data.Silence = prev, silence.Round(time.Second)
		key := fmt.Sprintf("%s/online/%d", l.name, now.UnixNano())
		if l.queueNotice(data, key) {
			l.journal(&record{T: "online"})
			l.log.Info("PLC back online", "silence", data.Silence)
		}
	}
	l.lastFrame = now
	l.update(func(s *LinkStatus) { s.Frames++; s.LastFrame = now; s.Offline = l.st.Offline })
}

// tick runs the timers: heartbeat supervision and digest flushing.
func (l *Link) tick(now time.Time) {
	st := l.settings()
	sc := st.link(l.name)
	since := l.lastFrame
	if since.IsZero() {
		since = l.started
	}
	if !l.st.Offline && now.Sub(since) >= sc.HeartbeatTimeout && !now.Before(l.noticeRetry) {
		data := l.noticeData(alarmmail.KindOffline, now)
		data.LastFrame, data.Silence = l.lastFrame, sc.HeartbeatTimeout
		key := fmt.Sprintf("%s/offline/%d", l.name, since.UnixNano())
		if l.queueNotice(data, key) {
			l.journal(&record{T: "offline"})
			l.update(func(s *LinkStatus) { s.Offline = true })
			l.log.Warn("PLC offline: no frame within heartbeat_timeout", "timeout", sc.HeartbeatTimeout, "last_frame", l.lastFrame)
		} else {
			l.noticeRetry = now.Add(flood.Retry)
		}
	}
	if l.digest.Due(now, len(l.st.pending)) {
		l.flushDigest(now)
	}
}

// journal appends r and applies it to the state. For records that follow a
// queued mail a failed append is logged, not fatal: the spool holds the
// promise, and replay after a restart meets the mail's key as a duplicate.
func (l *Link) journal(r *record) error {
	err := l.j.append(r)
	if err != nil {
		l.log.Error("journal append failed", "err", err)
	}
	l.st.apply(r)
	l.compact()
	return err
}

// compact rewrites the journal once it is larger than compactBytes and no
// held event waits for its digest.
func (l *Link) compact() {
	if l.j.size > compactBytes && len(l.st.pending) == 0 {
		if err := l.j.rewrite(l.st); err != nil {
			l.log.Error("journal compaction failed", "err", err)
		}
	}
}

func (l *Link) noticeData(kind string, now time.Time) alarmmail.AlarmData {
	sc := l.settings().link(l.name)
	return alarmmail.AlarmData{Kind: kind, Link: l.name, Site: sc.Site, Label: sc.Label, Port: portName(sc.Port),
		Boot: l.st.Boot, Time: now}
}

// queueNotice renders and enqueues a link notice; it reports whether the
// notice is queued (or was queued before under the same key).
func (l *Link) queueNotice(data alarmmail.AlarmData, key string) bool {
	ok := l.enqueue(data, key)
	if ok {
		l.update(func(s *LinkStatus) { s.Notices++ })
	}
	return ok
}

// enqueue renders data and queues it under key. It returns false only when
// the mail could not be stored.
func (l *Link) enqueue(data alarmmail.AlarmData, key string) bool {
	return l.enqueueFrom(data, key, nil)
}

// enqueueFrom is enqueue for a mail that reports PLC frames (origin).
func (l *Link) enqueueFrom(data alarmmail.AlarmData, key string, from json.RawMessage) bool {
	sub, err := l.render(data, key)
	sub.Origin = from
	if err != nil {
		l.log.Error("cannot render mail", "kind", data.Kind, "key", key, "err", err)
		return false
	}
	if _, err := l.store(sub); err != nil {
		l.log.Error("cannot queue mail", "kind", data.Kind, "key", key, "err", err)
		return false
	}
	return true
}

// render renders data as this link's mail under key.
func (l *Link) render(data alarmmail.AlarmData, key string) (spool.Submission, error) {
	m, err := l.settings().Templates.Render(data)
	sub := spool.Submission{Envelope: spool.Envelope{From: m.From, To: m.To}, Data: m.Data,
		Source: "serial:" + l.name, Key: key}
	return sub, err
}

// store queues sub in the spool and wakes the delivery loop. dup reports
// that the spool had its key already (not an error).
func (l *Link) store(sub spool.Submission) (dup bool, err error) {
	_, err = l.b.spool.Enqueue(sub)
	if errors.Is(err, spool.ErrDuplicate) {
		return true, nil
	}
	if err == nil && l.b.wake != nil {
		l.b.wake()
	}
	return false, err
}

func (l *Link) send(f *protocol.Frame) {
	if l.w == nil {
		return
	}
	var err error
	l.wbuf, err = protocol.AppendEncoded(l.wbuf[:0], f)
	if err != nil {
		l.log.Error("cannot encode frame", "type", f.Type, "err", err)
		return
	}
	if _, err := l.w.Write(l.wbuf); err != nil {
		l.log.Warn("write to port failed", "err", err)
	}
}

func (l *Link) ack(f *protocol.Frame, res protocol.AckResult) {
	l.update(func(s *LinkStatus) {
		s.Acks++
		if res == protocol.AckDuplicate {
			s.Duplicates++
		}
	})
	l.send(&protocol.Frame{Version: protocol.Version, Type: protocol.TypeAck, Boot: f.Boot, Seq: f.Seq, AckResult: res})
}

// nak refuses frame (boot, seq); NakBusy means nothing could be stored.
func (l *Link) nak(boot, seq uint32, reason protocol.NakReason) {
	l.update(func(s *LinkStatus) {
		s.Naks++
		if reason == protocol.NakBusy {
			s.Busy++
		}
	})
	l.send(&protocol.Frame{Version: protocol.Version, Type: protocol.TypeNak, Boot: boot, Seq: seq, NakReason: reason})
}

// onDelivery tells the PLC the outcome of d (SPEC §3.6): one DELIVERY per
// event of the current boot, a HELLO's once all of its mails are final.
func (l *Link) onDelivery(d delivery) {
	for _, e := range d.events {
		set := seqSet{r: e.Seqs}
		for _, rg := range set.r {
			for seq := rg[0]; ; seq++ {
				l.sendDelivery(e.Boot, e.Gen, seq, d.ok, d.code, d.via)
				if seq == rg[1] {
					break
				}
			}
		}
	}
	if d.seq == 0 {
		return
	}
	if d.parts > 1 && d.via == 0 {
		ref := helloRef{d.boot, d.gen, d.seq}
		t := l.tallies[ref]
		if t == nil {
			if len(l.tallies) >= maxTallies {
				clear(l.tallies)
			}
			t = &helloTally{left: d.parts}
			l.tallies[ref] = t
		}
		if !d.ok && !t.failed {
			t.failed, t.code = true, d.code
		}
		if t.left--; t.left > 0 {
			return
		}
		delete(l.tallies, ref)
		if t.failed {
			d.ok, d.code = false, t.code
		}
	}
	l.sendDelivery(d.boot, d.gen, d.seq, d.ok, d.code, d.via)
}

func (l *Link) sendDelivery(boot, gen, seq uint32, ok bool, code int, via uint8) {
	if boot != l.st.Boot || gen != l.st.Gen {
		return // the PLC restarted since; it would ignore the frame
	}
	if via != 0 && l.st.features&protocol.FeatureVia == 0 {
		// Firmware that did not announce via in its HELLO would take a
		// channel's DELIVERY for the mail's (SPEC §3.6). Logged at info:
		// it tells why a PLC hears nothing of its channels (old firmware).
		l.log.Info("channel delivery not sent: the PLC's HELLO did not announce via (firmware from before it)", "boot", boot, "seq", seq, "via", via)
		return
	}
	if l.w == nil {
		l.log.Info("delivery status not sent: port closed", "boot", boot, "seq", seq)
		return
	}
	status := protocol.DeliveryFailed
	if ok {
		status = protocol.DeliveryAccepted
	}
	l.update(func(s *LinkStatus) { s.Deliveries++ })
	l.send(&protocol.Frame{Version: protocol.Version, Type: protocol.TypeDelivery, Boot: boot, Seq: seq,
		Status: status, SMTPCode: uint16(max(0, min(code, 65535))), Via: via})
}

func recordFromFrame(f *protocol.Frame, gen uint32, now time.Time) record {
	r := record{T: "ev", Boot: f.Boot, Gen: gen, Seq: f.Seq, Code: int(f.Code), Event: f.Event.String(),
		Sev: f.Severity.String(), Text: f.TextString(), Uptime: int64(f.Uptime), At: now.UTC()}
	if vs := f.ValueList(); len(vs) > 0 {
		r.Values = slices.Clone(vs) // vs aliases the decoder's frame
	}
	return r
}

// templateValues converts event values for the templates, which print
// them their own way (floats with 7 significant digits).
func templateValues(vs []protocol.Value) []alarmmail.Value {
	if len(vs) == 0 {
		return nil
	}
	out := make([]alarmmail.Value, len(vs))
	for i, v := range vs {
		out[i] = templateValue(v)
	}
	return out
}

func templateValue(v protocol.Value) alarmmail.Value {
	switch v.Kind {
	case protocol.ValueInt32:
		return alarmmail.Value{Kind: "int32", Int: int64(v.Int32())}
	case protocol.ValueUint32:
		return alarmmail.Value{Kind: "uint32", Uint: uint64(v.Uint32())}
	case protocol.ValueFloat32:
		return alarmmail.Value{Kind: "float32", F: float64(v.Float32())}
	case protocol.ValueBool:
		return alarmmail.Value{Kind: "bool", Bool: v.Bool()}
	}
	return alarmmail.Value{Kind: v.Kind.String()}
}

func (l *Link) alarmData(r *record, note string) alarmmail.AlarmData {
	sc := l.settings().link(l.name)
	return alarmmail.AlarmData{Kind: alarmmail.KindAlarm, Link: l.name, Site: sc.Site, Label: sc.Label, Port: portName(sc.Port),
		Code: r.Code, Event: r.Event, Severity: r.Sev, Values: templateValues(r.Values), Text: r.Text, Note: note,
		Boot: r.Boot, Seq: r.Seq, Uptime: time.Duration(r.Uptime) * time.Second, Time: r.At}
}

func entryFromRecord(r *record) alarmmail.Entry {
	return alarmmail.Entry{Time: r.At, Code: r.Code, Event: r.Event, Severity: r.Sev, Values: templateValues(r.Values),
		Text: r.Text, Boot: r.Boot, Seq: r.Seq, Reason: r.Held}
}

// handleEvent implements SPEC §4 rules 1-4 plus flood control. The event is
// appended to the journal (fsynced) and then ACKed; an event to be mailed on
// its own is queued right after the ACK (mailOut), an event held by flood
// control waits in the journal for its digest. See journal.go for why this
// order loses nothing and doubles nothing.
func (l *Link) handleEvent(f *protocol.Frame, now time.Time) {
	gen := l.st.Gen
	switch o := l.st.oldBoot(f.Boot); {
	case f.Boot == l.st.Boot:
		if l.st.seen.has(f.Seq) {
			l.ack(f, protocol.AckDuplicate)
			return
		}
	case o != nil:
		// A late frame of an earlier boot (SPEC §4 rule 4): answered, never
		// made current again.
		if (&seqSet{r: o.Seen}).has(f.Seq) {
			l.ack(f, protocol.AckDuplicate)
			return
		}
		gen = o.Gen
		l.log.Warn("late event of an earlier boot, mailing it", "key", eventKey(l.name, f.Boot, gen, f.Seq), "current_boot", l.st.Boot)
	default:
		// The firmware always sends HELLO first, but a lost journal or a
		// foreign sender may not: the new boot is taken over without a
		// restart notice.
		gen = l.st.genFor(f.Boot)
		if l.st.Boot != 0 {
			l.log.Warn("event from a new boot without HELLO", "boot", f.Boot, "previous", l.st.Boot)
		}
	}
	r := recordFromFrame(f, gen, now)
	st := l.settings()
	hk := holdKey(r.Code, r.Event)
	r.Held = l.gate.Decide(now, hk, st.Templates.Holdoff(r.Code), st.Flood.MaxMailsPerMinute)
	key := eventKey(l.name, f.Boot, gen, f.Seq)
	if err := l.j.append(&r); err != nil {
		l.log.Error("cannot record event, NAK busy", "key", key, "err", err)
		l.nak(f.Boot, f.Seq, protocol.NakBusy)
		return
	}
	l.st.apply(&r)
	// Bookkeeping first, so that a status read after the ACK includes it.
	l.update(func(s *LinkStatus) { s.Boot = l.st.Boot })
	l.noteEvent(&r)
	if r.Held == "" {
		l.gate.Mailed(hk, now)
		l.update(func(s *LinkStatus) { s.Unmailed = len(l.st.unmailed) })
		l.ack(f, protocol.AckQueued)
		l.mailOut(r)
		return
	}
	l.digest.Held(now, st.Flood.DigestDelay, len(l.st.pending))
	if len(l.st.pending) == 1 {
		l.log.Info("holding alarms for a digest", "reason", r.Held, "digest_in", st.Flood.DigestDelay)
	}
	l.update(func(s *LinkStatus) { s.Held++; s.DigestPending = len(l.st.pending) })
	l.ack(f, protocol.AckQueued)
	l.log.Debug("alarm held for digest", "key", key, "reason", r.Held)
}

// mailDone reports that the mailer goroutine queued (or could not render)
// the mail of an unmailed journal entry.
type mailDone struct {
	boot, gen, seq uint32
	dup            bool // the spool had it already (queued before a restart)
	failed         bool // rendering failed: the event moves to the digest
}

// mailer queues the mails of journaled events, off the frame loop so that a
// slow spool write (fsync under I/O load) never delays the next ACK. It owns
// nothing of the link's state: it gets copies of the records and reports
// back on l.mailed; the frame loop writes the journal.
func (l *Link) mailer(ctx context.Context) {
	for {
		l.outMu.Lock()
		for len(l.out) == 0 {
			l.outMu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-l.outWake:
			}
			l.outMu.Lock()
		}
		r := l.out[0]
		l.outMu.Unlock()

		done := mailDone{boot: r.Boot, gen: r.Gen, seq: r.Seq}
		key := eventKey(l.name, r.Boot, r.Gen, r.Seq)
		sub, err := l.render(l.alarmData(&r, ""), key)
		sub.Origin = origin{Link: l.name, Boot: r.Boot, Gen: r.Gen, Seq: r.Seq, Sev: r.Sev}.encode()
		if err != nil {
			l.log.Error("cannot render alarm, moving it to the digest", "key", key, "err", err)
			done.failed = true
		} else if done.dup, err = l.store(sub); err != nil {
			// The event is safe in the journal; the spool takes it later.
			l.log.Error("cannot queue alarm, retrying", "key", key, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(flood.Retry):
			}
			continue
		}
		select {
		case l.mailed <- done:
		case <-ctx.Done():
			return // the journal replays it at the next start; the spool knows the key
		}
		l.outMu.Lock()
		l.out = l.out[1:]
		l.outMu.Unlock()
	}
}

// mailOut hands a journaled event to the mailer goroutine.
func (l *Link) mailOut(r record) {
	l.outMu.Lock()
	l.out = append(l.out, r)
	l.outMu.Unlock()
	select {
	case l.outWake <- struct{}{}:
	default:
	}
}

// mailedDone records in the journal what the mailer goroutine did.
func (l *Link) mailedDone(d mailDone) {
	key := eventKey(l.name, d.boot, d.gen, d.seq)
	if d.failed {
		l.journal(&record{T: "mailfail", Boot: d.boot, Gen: d.gen, Seq: d.seq, Held: "render failed"})
		if len(l.st.pending) == 1 {
			l.digest.Now(time.Now())
		}
	} else {
		mr := record{T: "mailed", Boot: d.boot, Gen: d.gen, Seq: d.seq}
		if err := l.j.appendNoSync(&mr); err != nil {
			l.log.Error("journal append failed", "err", err)
		}
		l.st.apply(&mr)
		// Alarms mailed one by one write only ev and mailed records: this
		// is where a PLC that never restarts makes the journal grow.
		l.compact()
	}
	l.update(func(s *LinkStatus) {
		s.Unmailed = len(l.st.unmailed)
		s.DigestPending = len(l.st.pending)
		if !d.dup && !d.failed {
			s.Mailed++
		}
	})
	switch {
	case d.dup:
		l.log.Info("alarm was queued before a restart", "key", key)
	case !d.failed:
		l.log.Info("alarm queued", "key", key)
	}
}

// handleHello implements SPEC §4 rule 4: a HELLO that opens a new boot
// (classifyHello: also one whose id repeats) gets a restart notice, and the
// PLC's active alarms are reconciled with what was mailed. All mails of one
// HELLO have keys derived from the HELLO's key, so a retransmitted HELLO
// after a crash re-queues nothing.
func (l *Link) handleHello(f *protocol.Frame, now time.Time) {
	kind := l.st.classifyHello(f.Boot, f.Seq, f.Uptime)
	if kind == helloDuplicate {
		l.ack(f, protocol.AckDuplicate)
		return
	}
	prevBoot, gen := l.st.Boot, l.st.Gen
	if kind == helloNewBoot {
		gen = l.st.genFor(f.Boot)
	}
	ok := true
	if kind == helloNewBoot && prevBoot != 0 && l.settings().link(l.name).RestartNotice {
		ok = l.queueRestartNotice(f, gen, prevBoot, now)
	}
	snapshot := map[int]string{}
	for _, a := range f.ActiveAlarms() {
		snapshot[int(a.Code)] = a.Severity.String()
	}
	active, reconciled := l.reconcile(f, gen, snapshot, now)
	if !ok || !reconciled {
		l.nak(f.Boot, f.Seq, protocol.NakBusy)
		return
	}
	up := f.Uptime
	r := record{T: "hello", Boot: f.Boot, Gen: gen, Seq: f.Seq, Active: active, New: kind == helloNewBoot,
		Uptime: int64(f.Uptime), HelloUp: &up, Features: f.Features}
	if err := l.journal(&r); err != nil {
		l.nak(f.Boot, f.Seq, protocol.NakBusy)
		return
	}
	if kind == helloNewBoot {
		l.log.Info("PLC hello", "boot", f.Boot, "previous_boot", prevBoot, "generation", gen, "reset_cause", resetCause(f.ResetCause),
			"active", len(snapshot), "active_total", f.ActiveTotal)
		if len(l.st.pending) == 0 {
			if err := l.j.rewrite(l.st); err != nil {
				l.log.Error("journal compaction failed", "err", err)
			}
		}
	}
	l.update(func(s *LinkStatus) { s.Boot, s.ChannelDeliveries = f.Boot, f.Features&protocol.FeatureVia != 0 })
	l.ack(f, protocol.AckQueued)
}

// queueRestartNotice queues the "PLC restarted" notice of HELLO f.
func (l *Link) queueRestartNotice(f *protocol.Frame, gen, prevBoot uint32, now time.Time) bool {
	data := l.noticeData(alarmmail.KindRestart, now)
	data.Boot, data.PrevBoot, data.Seq = f.Boot, prevBoot, f.Seq
	data.Uptime, data.ResetCause = time.Duration(f.Uptime)*time.Second, resetCause(f.ResetCause)
	for _, a := range f.ActiveAlarms() {
		data.Active = append(data.Active, alarmmail.Entry{Code: int(a.Code), Severity: a.Severity.String(), Event: "raise"})
	}
	return l.queueNotice(data, eventKey(l.name, f.Boot, gen, f.Seq)+"/restart")
}

// Notes of the alarm mails that reconcile a HELLO.
const (
	noteRaised  = "This alarm was active when the PLC (re)connected; the gateway had not mailed it."
	noteCleared = "This alarm cleared while the gateway did not hear the PLC (the PLC no longer reports it active)."
)

// reconcile mails the raises and clears the gateway did not hear, comparing
// the journal's active alarms with the snapshot (code -> severity) of HELLO
// f. It returns the active set to journal, which takes in only the mails
// that were queued, and whether all of them were.
func (l *Link) reconcile(f *protocol.Frame, gen uint32, snapshot map[int]string, now time.Time) (active map[int]string, ok bool) {
	key := eventKey(l.name, f.Boot, gen, f.Seq)
	raised, cleared := diffActive(l.st.Active, snapshot, int(f.ActiveTotal) <= int(f.NActive))
	ok = true
	// The PLC hears of these mails as the DELIVERY of its HELLO, once all
	// of them are final (onDelivery).
	from := origin{Link: l.name, Boot: f.Boot, Gen: gen, Seq: f.Seq, Parts: len(raised) + len(cleared)}.encode()
	mail := func(a activeAlarm, event, note string) bool {
		r := record{Boot: f.Boot, Seq: f.Seq, Code: a.code, Event: event, Sev: a.sev, Uptime: int64(f.Uptime), At: now.UTC()}
		if !l.enqueueFrom(l.alarmData(&r, note), fmt.Sprintf("%s/%s/%d", key, event, a.code), from) {
			ok = false
			return false
		}
		l.update(func(s *LinkStatus) { s.Mailed++ })
		return true
	}
	active = maps(l.st.Active)
	for _, a := range raised {
		if mail(a, "raise", noteRaised) {
			active[a.code] = a.sev
		}
	}
	for _, a := range cleared {
		if mail(a, "clear", noteCleared) {
			delete(active, a.code)
		}
	}
	return active, ok
}

// activeAlarm is an alarm code with its severity.
type activeAlarm struct {
	code int
	sev  string
}

// diffActive compares the alarms the journal has active (before) with a
// HELLO's snapshot (now), both code -> severity. raised are active on the
// PLC but unknown to the gateway, with the PLC's severity; cleared were
// active and the PLC no longer reports them, with their last severity.
// Only a complete snapshot tells clears: a HELLO carries at most
// protocol.MaxActive alarms, so one missing from a partial snapshot may
// still be active. Both lists are in code order, so that reconciliation
// mails are queued in the same order every time.
func diffActive(before, now map[int]string, complete bool) (raised, cleared []activeAlarm) {
	for code, sev := range now {
		if _, known := before[code]; !known {
			raised = append(raised, activeAlarm{code, sev})
		}
	}
	if complete {
		for code, sev := range before {
			if _, still := now[code]; !still {
				cleared = append(cleared, activeAlarm{code, sev})
			}
		}
	}
	byCode := func(a, b activeAlarm) int { return a.code - b.code }
	slices.SortFunc(raised, byCode)
	slices.SortFunc(cleared, byCode)
	return raised, cleared
}

func resetCause(c uint8) string {
	if c == 0 {
		return "unknown"
	}
	var s []string
	for _, b := range []struct {
		bit  uint8
		name string
	}{{1, "power-on"}, {2, "external reset"}, {4, "brown-out"}, {8, "watchdog"}} {
		if c&b.bit != 0 {
			s = append(s, b.name)
		}
	}
	if len(s) == 0 {
		return fmt.Sprintf("0x%02x", c)
	}
	return strings.Join(s, ", ")
}

// flushDigest queues the pending entries (up to flood.MaxDigestEntries) as one
// digest mail keyed by its first entry, then records that in the journal.
func (l *Link) flushDigest(now time.Time) {
	n := flood.Batch(len(l.st.pending))
	batch := l.st.pending[:n]
	data := l.noticeData(alarmmail.KindDigest, now)
	for i := range batch {
		data.Digest = append(data.Digest, entryFromRecord(&batch[i]))
	}
	first := batch[0]
	key := fmt.Sprintf("%s/digest/%s/%d", l.name, bootTag(first.Boot, first.Gen), first.Seq)
	if !l.enqueueFrom(data, key, digestOrigin(l.name, batch)) {
		l.digest.Failed(now)
		return
	}
	l.journal(&record{T: "flushed", N: n})
	l.digest.Queued(now, l.settings().Flood.DigestDelay, len(l.st.pending))
	l.update(func(s *LinkStatus) { s.Digests++; s.DigestPending = len(l.st.pending) })
	l.log.Info("digest queued", "key", key, "events", n, "still_pending", len(l.st.pending))
}

// digestOrigin is the origin of a digest of batch: each event it reports
// learns the digest's outcome (SPEC §3.6).
func digestOrigin(link string, batch []record) json.RawMessage {
	o := origin{Link: link, Sev: highestSev(batch)} // channel.go
	for _, r := range batch {
		i := slices.IndexFunc(o.Events, func(e originBoot) bool { return e.Boot == r.Boot && e.Gen == r.Gen })
		if i < 0 {
			o.Events = append(o.Events, originBoot{Boot: r.Boot, Gen: r.Gen})
			i = len(o.Events) - 1
		}
		set := seqSet{r: o.Events[i].Seqs}
		set.add(r.Seq)
		o.Events[i].Seqs = set.r
	}
	return o.encode()
}
