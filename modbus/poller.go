package modbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/flood"
	"github.com/plcmail/plcmail/spool"
)

// Poller polls every configured device and queues their alarm mails.
type Poller struct {
	opts atomic.Pointer[Options] // swapped by Reload
	sp   *spool.Spool
	wake func()
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	devices []*device          // configuration order
	buses   map[string]*busRun // running buses by busName
	runCtx  context.Context    // nil until Run
	stopped bool               // Run's context is done
	wg      sync.WaitGroup     // running buses
}

// busRun is one running bus goroutine and the devices it polls.
type busRun struct {
	devs   []*device
	cancel context.CancelFunc
	done   chan struct{}
}

// New checks o and loads every device's durable state. wake, if not nil, is
// called after a mail is queued (the delivery loop's Wake).
func New(o Options, sp *spool.Spool, wake func(), log *slog.Logger) (*Poller, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Poller{sp: sp, wake: wake, log: log, now: time.Now, buses: map[string]*busRun{}}
	if err := p.check(&o); err != nil {
		return nil, err
	}
	for _, d := range o.Devices {
		dv, err := p.loadDevice(d, &o)
		if err != nil {
			return nil, err
		}
		p.devices = append(p.devices, dv)
	}
	p.opts.Store(&o)
	return p, nil
}

// check refuses options without templates or state directory and gives a
// flood control without a limiter its own.
func (p *Poller) check(o *Options) error {
	if o.Templates == nil {
		return errors.New("modbus: options without templates")
	}
	if o.StateDir == "" {
		return errors.New("modbus: options without a state directory")
	}
	if o.Flood != nil && o.Flood.Limiter == nil {
		f := *o.Flood
		if cur := p.opts.Load(); cur != nil && cur.Flood != nil {
			f.Limiter = cur.Flood.Limiter
		} else {
			f.Limiter = new(flood.Limiter)
		}
		o.Flood = &f
	}
	return nil
}

func (p *Poller) opt() *Options { return p.opts.Load() }

// device is one device at run time. Its fields are owned by the goroutine
// of its bus; status is also read by Status.
type device struct {
	Device
	st       *deviceState
	pending  map[string]time.Time // rule key -> condition differs since
	restored map[string]bool      // rules active in the state file, not yet evaluated
	failures int
	lastGood time.Time
	next     time.Time         // the next poll: the earliest of tagNext
	tagNext  []time.Time       // the next read of each tag
	tagErr   map[string]string // last exception per tag, logged once
	gate     *flood.Gate       // nil until flood control first decides
	digest   flood.Digest
	log      *slog.Logger

	mu     sync.Mutex
	status DeviceStatus
}

// cloneDevice copies d's tags and rules: the poller's goroutines read them
// while the caller may reuse its slices for the next Reload.
func cloneDevice(d Device) Device {
	d.Tags = slices.Clone(d.Tags)
	for i := range d.Tags {
		d.Tags[i].Rules = slices.Clone(d.Tags[i].Rules)
	}
	return d
}

// loadDevice reads the state file of d and prepares it for polling.
func (p *Poller) loadDevice(d Device, o *Options) (*device, error) {
	d = cloneDevice(d)
	st, err := loadState(o.StateDir, d.Name)
	if err != nil {
		return nil, err
	}
	dv := &device{Device: d, st: st, pending: map[string]time.Time{}, restored: map[string]bool{},
		tagErr: map[string]string{}, lastGood: st.LastGood, log: p.log.With("device", d.Name)}
	for k, rs := range st.Rules {
		if rs.Active {
			dv.restored[k] = true
		}
	}
	// Events held before a restart are in the state file: their digest is
	// due one delay after the start, like any other.
	dv.digest.Start(p.now(), digestDelay(o))
	if n := len(st.Held.Entries); n > 0 {
		dv.log.Info("held alarm events from before the restart await their digest", "held", n)
	}
	dv.status = DeviceStatus{Name: d.Name, Bus: busName(d.Bus), Slave: d.SlaveID, LastGood: st.LastGood}
	dv.publish(o.Templates)
	return dv, nil
}

// Run polls until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	p.mu.Lock()
	p.runCtx = ctx
	p.startBuses(p.devices)
	p.mu.Unlock()
	<-ctx.Done()
	p.mu.Lock()
	p.stopped = true // a Reload from now on starts nothing
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// startBuses starts a goroutine for each bus of devs that has none; p.mu
// must be held. Devices on one wire share it whatever their timeouts say:
// the bus runs with the Timeout and MinGap of its first device.
func (p *Poller) startBuses(devs []*device) {
	if p.stopped {
		return
	}
	for _, g := range groupBuses(devs) {
		name := busName(g[0].Bus)
		if p.buses[name] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(p.runCtx)
		br := &busRun{devs: g, cancel: cancel, done: make(chan struct{})}
		p.buses[name] = br
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer close(br.done)
			p.runBus(ctx, g[0].Bus, g)
		}()
	}
}

// groupBuses splits devs by bus, in order of first appearance.
func groupBuses(devs []*device) [][]*device {
	var order []string
	by := map[string][]*device{}
	for _, d := range devs {
		n := busName(d.Bus)
		if _, ok := by[n]; !ok {
			order = append(order, n)
		}
		by[n] = append(by[n], d)
	}
	out := make([][]*device, len(order))
	for i, n := range order {
		out[i] = by[n]
	}
	return out
}

// busName is the bus in logs: the TCP address or the serial device.
func busName(b Bus) string {
	if b.TCP != "" {
		return "tcp://" + b.TCP
	}
	return "rtu://" + b.Device
}

// runBus polls the devices of one bus, one request at a time.
func (p *Poller) runBus(ctx context.Context, b Bus, devs []*device) {
	log := p.log.With("bus", busName(b))
	var c *mb.ModbusClient
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	start := p.now()
	for _, d := range devs {
		d.next = start
		d.tagNext = make([]time.Time, len(d.Tags))
		for i := range d.tagNext {
			d.tagNext[i] = start
		}
	}
	for {
		now := p.now()
		var digestAt time.Time
		for _, o := range devs {
			p.flushDigest(o, now)
			if at, ok := o.digest.At(len(o.st.Held.Entries)); ok && (digestAt.IsZero() || at.Before(digestAt)) {
				digestAt = at
			}
		}
		d := devs[0]
		for _, o := range devs[1:] {
			if o.next.Before(d.next) {
				d = o
			}
		}
		if !digestAt.IsZero() && digestAt.Before(d.next) {
			if !sleep(ctx, digestAt.Sub(now)) {
				return
			}
			continue
		}
		if !sleep(ctx, d.next.Sub(now)) {
			return
		}
		due := d.dueTags()
		var err error
		if c == nil {
			c, err = openClient(b, log)
			if err != nil {
				c = nil
			}
		}
		if err == nil {
			err = p.poll(ctx, c, d, due, b.MinGap)
			if ctx.Err() != nil {
				return
			}
			if err != nil && needsReopen(b, err) {
				c.Close()
				c = nil
			}
		}
		if err != nil {
			p.failed(d, err)
			if c == nil && !sleep(ctx, b.MinGap) {
				return
			}
		}
		d.schedule(due, p.now())
	}
}

// dueTags returns which of d's tags are due at d.next.
func (d *device) dueTags() []bool {
	due := make([]bool, len(d.Tags))
	for i := range d.Tags {
		due[i] = !d.tagNext[i].After(d.next)
	}
	return due
}

// schedule sets the next time of each polled tag and of the device: each
// tag is due one of its intervals after it was due (its own poll_interval,
// else the device's); a bus that cannot keep up polls as often as it can,
// not in a burst later.
func (d *device) schedule(due []bool, now time.Time) {
	for i := range d.Tags {
		if !due[i] {
			continue
		}
		iv := d.Tags[i].PollInterval
		if iv <= 0 {
			iv = d.PollInterval
		}
		d.tagNext[i] = d.tagNext[i].Add(iv)
		if d.tagNext[i].Before(now) {
			d.tagNext[i] = now
		}
	}
	d.next = d.tagNext[0]
	for _, t := range d.tagNext[1:] {
		if t.Before(d.next) {
			d.next = t
		}
	}
}

func openClient(b Bus, log *slog.Logger) (*mb.ModbusClient, error) {
	conf := &mb.ClientConfiguration{Timeout: b.Timeout,
		Logger: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if b.TCP != "" {
		conf.URL = "tcp://" + b.TCP
	} else {
		conf.URL = "rtu://" + b.Device
		conf.Speed = uint(b.Baud)
		conf.DataBits = uint(b.DataBits)
		conf.StopBits = uint(b.StopBits)
		switch b.Parity {
		case "even":
			conf.Parity = mb.PARITY_EVEN
		case "odd":
			conf.Parity = mb.PARITY_ODD
		default:
			conf.Parity = mb.PARITY_NONE
		}
	}
	c, err := mb.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("modbus: %s: %w", conf.URL, err)
	}
	if err := c.Open(); err != nil {
		return nil, fmt.Errorf("modbus: open %s: %w", conf.URL, err)
	}
	return c, nil
}

// needsReopen reports whether err leaves the client unusable: a TCP stream
// after any failure may hold a late answer, so it is reconnected; a serial
// port only when the error is not a Modbus one (the port went away).
func needsReopen(b Bus, err error) bool {
	if b.TCP != "" {
		return true
	}
	var me mb.Error
	return !errors.As(err, &me)
}

// isException reports a Modbus exception answer: the device is there, the
// tag is wrong (address, function) or momentarily unreadable.
func isException(err error) bool {
	for _, e := range []error{mb.ErrIllegalFunction, mb.ErrIllegalDataAddress, mb.ErrIllegalDataValue,
		mb.ErrServerDeviceFailure, mb.ErrAcknowledge, mb.ErrServerDeviceBusy, mb.ErrMemoryParityError} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// read reads one tag.
func read(c *mb.ModbusClient, t *Tag) (value, error) {
	switch t.Table {
	case Coil, DiscreteInput:
		var bs []bool
		var err error
		if t.Table == Coil {
			bs, err = c.ReadCoils(t.Address, 1)
		} else {
			bs, err = c.ReadDiscreteInputs(t.Address, 1)
		}
		if err != nil {
			return value{}, err
		}
		if len(bs) != 1 {
			return value{}, fmt.Errorf("modbus: %d bits for one", len(bs))
		}
		return boolValue(bs[0]), nil
	}
	rt := mb.HOLDING_REGISTER
	if t.Table == Input {
		rt = mb.INPUT_REGISTER
	}
	n := uint16(1)
	switch t.Type {
	case "int32", "uint32", "float32":
		n = 2
	}
	regs, err := c.ReadRegisters(t.Address, n, rt)
	if err != nil {
		return value{}, err
	}
	return decodeRegisters(t, regs)
}

// poll reads the due tags of d and evaluates their rules. It returns the error
// that makes the poll a failed one (no answer, bad CRC, lost connection);
// an exception answer only leaves that tag unread.
func (p *Poller) poll(ctx context.Context, c *mb.ModbusClient, d *device, due []bool, gap time.Duration) error {
	vals := make([]*value, len(d.Tags))
	for i := range d.Tags {
		if !due[i] {
			continue
		}
		t := &d.Tags[i]
		if err := c.SetUnitId(d.SlaveID); err != nil {
			return err
		}
		v, err := read(c, t)
		if !sleep(ctx, gap) {
			return ctx.Err()
		}
		switch {
		case err == nil:
			vals[i] = &v
			if _, ok := d.tagErr[t.Name]; ok {
				delete(d.tagErr, t.Name)
				d.update(func(s *DeviceStatus) { delete(s.Unreadable, t.Name) })
			}
		case isException(err):
			if d.tagErr[t.Name] != err.Error() {
				d.log.Warn("tag cannot be read; its alarms keep their state", "tag", t.Name, "err", err)
				d.tagErr[t.Name] = err.Error()
				d.update(func(s *DeviceStatus) {
					if s.Unreadable == nil {
						s.Unreadable = map[string]string{}
					}
					s.Unreadable[t.Name] = err.Error()
				})
			}
		default:
			return fmt.Errorf("tag %s: %w", t.Name, err)
		}
	}
	p.good(d, vals)
	return nil
}

// failed records a failed poll of d.
func (p *Poller) failed(d *device, err error) {
	d.failures++
	clear(d.pending) // delays count good readings only
	d.update(func(s *DeviceStatus) { s.Polls++; s.PollErrors++; s.Up = false; s.LastError = err.Error() })
	d.log.Debug("poll failed", "failures", d.failures, "err", err)
	if d.failures < d.OfflineAfter || d.st.Offline {
		return
	}
	d.log.Warn("device offline", "failures", d.failures, "err", err)
	data := p.data(d, alarmmail.KindDeviceOffline)
	data.Error = err.Error()
	data.LastFrame = d.lastGood
	if !p.enqueue(d, data, fmt.Sprintf("modbus/%s/offline/%d", d.Name, d.st.Outages+1), nil) {
		return
	}
	d.st.Offline = true
	d.st.Outages++
	d.update(func(s *DeviceStatus) { s.Notices++ })
	p.save(d)
}

// good records a good poll of d with the values read (nil: not readable).
func (p *Poller) good(d *device, vals []*value) {
	now := p.now()
	d.failures = 0
	d.lastGood = now
	d.update(func(s *DeviceStatus) { s.Polls++; s.Up = true; s.LastGood = now; s.LastError = "" })
	if d.st.Offline {
		data := p.data(d, alarmmail.KindDeviceOnline)
		data.LastFrame = d.st.LastGood
		if p.enqueue(d, data, fmt.Sprintf("modbus/%s/online/%d", d.Name, d.st.Outages), nil) {
			d.log.Info("device back online")
			d.update(func(s *DeviceStatus) { s.Notices++ })
			d.st.Offline = false
			d.st.LastGood = now
			p.save(d)
		}
	}
	for i := range d.Tags {
		if vals[i] == nil {
			continue
		}
		t := &d.Tags[i]
		for j := range t.Rules {
			p.evaluate(d, t, &t.Rules[j], *vals[i], now)
		}
	}
}

// evaluate steps one rule with a reading and mails what it asks for. The
// new state is kept (and written) only once its mail is in the spool, so a
// mail that could not be queued is tried again at the next poll.
func (p *Poller) evaluate(d *device, t *Tag, r *Rule, v value, now time.Time) {
	key := t.Name + "/" + r.ID
	st := d.st.Rules[key]
	if st == nil {
		st = &ruleState{}
		d.st.Rules[key] = st
	}
	restored := d.restored[key]
	delete(d.restored, key)
	pending := d.pending[key]
	cond := r.condition(v, st.Active)
	ev := r.step(st, &pending, cond, now)
	d.pending[key] = pending
	if ev == evNone {
		return
	}
	next := *st
	data := p.data(d, alarmmail.KindAlarm)
	data.Code, data.Severity = r.Code, r.severity()
	data.Name = alarmName(p.opt().Templates, t, r)
	data.Tag, data.Unit, data.Limit, data.Setpoint = t.Name, t.Unit, r.Limit, r.Setpoint
	data.Values = []alarmmail.Value{v.mail}
	data.Time = now
	spoolKey := fmt.Sprintf("modbus/%s/%s/%s/", d.Name, t.Name, r.ID)
	switch ev {
	case evRaise, evClear:
		next.Active = ev == evRaise
		next.Count++
		next.Since = now
		data.Event = "clear"
		if ev == evRaise {
			data.Event = "raise"
			next.Mailed = now
			next.Reminders = 0
		} else if restored {
			data.Note = "The alarm was active when the gateway stopped; its condition was gone at the first poll after the restart."
		}
		data.Text = describe(t, r, v, next.Active)
		spoolKey += strconv.FormatUint(next.Count, 10)
	case evRealarm:
		next.Mailed = now
		next.Reminders++
		data.Event = "raise"
		data.Note = fmt.Sprintf("Still active since %s (reminder %d).", st.Since.Format("2006-01-02 15:04:05 MST"), next.Reminders)
		data.Text = describe(t, r, v, true)
		spoolKey += fmt.Sprintf("%d/realarm/%d", next.Count, next.Reminders)
	}
	holdKey := key + "/" + data.Event
	if reason := p.decide(d, r, ev, holdKey, now); reason != "" {
		// Held: the transition and the held event are written together,
		// so after a crash either both happened or neither did.
		*st = next
		delete(d.pending, key)
		n := d.st.Held.Add(alarmmail.Entry{Time: now, Code: r.Code, Name: data.Name, Event: data.Event,
			Severity: data.Severity, Values: data.Values, Text: data.Text, Seq: uint32(next.Count), Reason: reason,
			Tag: t.Name, Unit: t.Unit, Limit: r.Limit})
		d.digest.Held(now, p.digestDelay(), n)
		d.update(func(s *DeviceStatus) { s.Held++ })
		p.save(d)
		d.log.Info("alarm "+data.Event+" held for a digest", "tag", t.Name, "rule", r.ID, "reason", reason, "held", n)
		return
	}
	from := origin{Device: d.Name, Tag: t.Name, Rule: r.ID, Event: data.Event, Sev: data.Severity}.encode()
	if !p.enqueue(d, data, spoolKey, from) {
		return
	}
	if d.gate != nil && p.opt().Flood != nil {
		d.gate.Mailed(holdKey, now)
	}
	d.log.Info("alarm "+data.Event, "tag", t.Name, "rule", r.ID, "value", v.mail.String(), "key", spoolKey)
	d.update(func(s *DeviceStatus) { s.Mailed++ })
	*st = next
	delete(d.pending, key)
	p.save(d)
}

// decide is flood control for one event: "" to mail it on its own, else
// why it is held. Reminders have their own interval (realarm, at least a
// minute) instead of the hold-off, but count against the cap.
func (p *Poller) decide(d *device, r *Rule, ev event, holdKey string, now time.Time) string {
	f := p.opt().Flood
	if f == nil {
		return ""
	}
	if d.gate == nil { // flood control added by a reload
		d.gate = flood.NewGate(f.Limiter)
	}
	holdoff := p.opt().Templates.Holdoff(r.Code)
	if ev == evRealarm {
		holdoff = 0
	}
	return d.gate.Decide(now, holdKey, holdoff, f.MaxMailsPerMinute)
}

func (p *Poller) digestDelay() time.Duration { return digestDelay(p.opt()) }

func digestDelay(o *Options) time.Duration {
	if o.Flood == nil {
		return 0
	}
	return o.Flood.DigestDelay
}

// flushDigest queues the digest of d's held events when it is due. Its
// spool key counts d's digests, and the held events leave the state file
// only after it is queued: a crash in between queues it again under the
// same key, which the spool refuses, so the digest goes out exactly once.
func (p *Poller) flushDigest(d *device, now time.Time) {
	if !d.digest.Due(now, len(d.st.Held.Entries)) {
		return
	}
	entries, n := d.st.Held.Next()
	data := p.data(d, alarmmail.KindDigest)
	data.Digest = entries
	key := fmt.Sprintf("modbus/%s/digest/%d", d.Name, n)
	if !p.enqueue(d, data, key, digestOrigin(d.Name, entries)) {
		d.digest.Failed(now)
		return
	}
	d.st.Held.Done(len(entries))
	d.digest.Queued(now, p.digestDelay(), len(d.st.Held.Entries))
	d.update(func(s *DeviceStatus) { s.Digests++ })
	p.save(d)
	d.log.Info("digest queued", "key", key, "events", len(entries), "still_held", len(d.st.Held.Entries))
}

// alarmName is the alarm's name in mails and status: the rule's, else its
// [[alarm]] entry's, else the tag and the limit in words.
func alarmName(tmpl *alarmmail.Templates, t *Tag, r *Rule) string {
	name := r.Name
	if name == "" && r.Code >= 0 && tmpl != nil {
		name = tmpl.Name(r.Code)
	}
	if name == "" {
		name = ruleName(t, r)
	}
	return name
}

// severity is the rule's severity, "alarm" when it has none.
func (r *Rule) severity() string {
	if r.Severity == "" {
		return "alarm"
	}
	return r.Severity
}

// ruleName is the name of an alarm that neither the rule nor its [[alarm]]
// entry names: the tag and the limit in words ("level high-high").
func ruleName(t *Tag, r *Rule) string {
	switch r.Limit {
	case "HH":
		return t.Name + " high-high"
	case "H":
		return t.Name + " high"
	case "L":
		return t.Name + " low"
	case "LL":
		return t.Name + " low-low"
	}
	return t.Name + " = " + strconv.FormatBool(r.State)
}

// describe says in words why the alarm is in its state.
func describe(t *Tag, r *Rule, v value, active bool) string {
	unit := ""
	if t.Unit != "" {
		unit = " " + t.Unit
	}
	val := v.mail.String() + unit
	if r.Limit == "" {
		return fmt.Sprintf("%s = %s", t.Name, val)
	}
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', 7, 64) + unit }
	high := strings.HasPrefix(r.Limit, "H")
	switch {
	case active && high:
		return fmt.Sprintf("%s = %s, at or above the %s limit %s", t.Name, val, r.Limit, f(r.Setpoint))
	case active:
		return fmt.Sprintf("%s = %s, at or below the %s limit %s", t.Name, val, r.Limit, f(r.Setpoint))
	case high:
		return fmt.Sprintf("%s = %s, back below %s (%s limit %s, deadband %s)", t.Name, val, f(r.Setpoint-r.Deadband), r.Limit, f(r.Setpoint), f(r.Deadband))
	}
	return fmt.Sprintf("%s = %s, back above %s (%s limit %s, deadband %s)", t.Name, val, f(r.Setpoint+r.Deadband), r.Limit, f(r.Setpoint), f(r.Deadband))
}

// data starts the template data of one of d's mails.
func (p *Poller) data(d *device, kind string) alarmmail.AlarmData {
	port := busName(d.Bus)
	return alarmmail.AlarmData{Kind: kind, Link: d.Name, Site: d.Site, Label: d.Label,
		Port: fmt.Sprintf("%s, slave %d", port, d.SlaveID), Time: p.now()}
}

// enqueue renders data and queues it under key with origin (nil for
// device notices); a key the spool has seen (the same transition before a
// crash) counts as queued.
func (p *Poller) enqueue(d *device, data alarmmail.AlarmData, key string, origin json.RawMessage) bool {
	m, err := p.opt().Templates.Render(data)
	if err != nil {
		d.log.Error("cannot render mail", "kind", data.Kind, "key", key, "err", err)
		return false
	}
	_, err = p.sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: m.From, To: m.To}, Data: m.Data,
		Source: "modbus:" + d.Name, Key: key, Origin: origin})
	if errors.Is(err, spool.ErrDuplicate) {
		d.log.Info("mail was queued before the restart", "key", key)
		return true
	}
	if err != nil {
		d.log.Error("cannot queue mail; trying again at the next poll", "kind", data.Kind, "key", key, "err", err)
		return false
	}
	if p.wake != nil {
		p.wake()
	}
	return true
}

// save writes d's state; a failure is logged, the state stays in memory,
// and a repeat after a restart is caught by the spool keys.
func (p *Poller) save(d *device) {
	d.publish(p.opt().Templates)
	if err := d.st.save(p.opt().StateDir, d.Name); err != nil {
		d.log.Error("cannot write alarm state", "err", err)
	}
}
