package modbus

import (
	"reflect"
	"slices"
	"strings"
	"time"
)

// Reload switches to o. A device whose settings are unchanged keeps
// polling; its bus goroutine is restarted only if another device on the
// same bus was added, removed or changed. A changed device keeps the alarm
// state of its rules (a new setpoint is applied at the next poll), and an
// active rule that is gone from the configuration ends without a clear
// mail, so that editing rules never mails a storm of clears. A removed device stops; its state file stays for when it comes
// back, and its held events are mailed in a digest at once. If a new
// device's state file cannot be read, Reload returns the error and nothing
// changes. Templates and flood settings apply to every device at once.
func (p *Poller) Reload(o Options) error {
	if err := p.check(&o); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := map[string]*device{}
	for _, d := range p.devices {
		old[d.Name] = d
	}
	// New devices first: if one cannot load its state, nothing changes.
	var next []*device
	fresh := map[string]*device{}
	for _, d := range o.Devices {
		if old[d.Name] != nil {
			continue
		}
		dv, err := p.loadDevice(d, &o)
		if err != nil {
			p.log.Error("reload refused, keeping the running configuration", "err", err)
			return err
		}
		fresh[d.Name] = dv
	}
	changed := map[string]bool{} // buses to restart, by busName
	for _, d := range o.Devices {
		switch od := old[d.Name]; {
		case od == nil:
			p.log.Info("reload: new device", "device", d.Name)
			changed[busName(d.Bus)] = true
			next = append(next, fresh[d.Name])
		case reflect.DeepEqual(od.Device, d):
			next = append(next, od)
		default:
			p.log.Info("reload: device changed, restarting its bus", "device", d.Name)
			changed[busName(od.Bus)] = true
			changed[busName(d.Bus)] = true
			next = append(next, od) // replaced below, once its bus is stopped
		}
	}
	var removed []*device
	for _, od := range p.devices {
		if !slices.ContainsFunc(o.Devices, func(d Device) bool { return d.Name == od.Name }) {
			p.log.Info("reload: device removed, stopping it", "device", od.Name)
			changed[busName(od.Bus)] = true
			removed = append(removed, od)
		}
	}
	for name, br := range p.buses {
		if changed[name] {
			br.cancel()
			<-br.done
			delete(p.buses, name)
		}
	}
	p.opts.Store(&o)
	for i, d := range o.Devices {
		if od := old[d.Name]; od != nil && !reflect.DeepEqual(od.Device, d) {
			next[i] = p.reconfigure(od, d)
		}
	}
	now := p.now()
	for _, d := range removed {
		if len(d.st.Held.Entries) > 0 {
			d.digest.Now(now)
			p.flushDigest(d, now)
		}
	}
	p.devices = next
	if p.runCtx != nil {
		p.startBuses(next)
	}
	p.log.Info("modbus configuration reloaded", "devices", len(next))
	return nil
}

// reconfigure gives the stopped device od the settings d, keeping the
// state of the rules d still has and forgetting the others.
func (p *Poller) reconfigure(od *device, d Device) *device {
	keep := map[string]bool{}
	for _, t := range d.Tags {
		for _, r := range t.Rules {
			keep[t.Name+"/"+r.ID] = true
		}
	}
	// A removed rule's state stays inactive with its count: if the rule
	// comes back, its next raise gets a spool key of its own rather than
	// one the spool still remembers.
	dropped := 0
	for k, rs := range od.st.Rules {
		if !keep[k] && rs.Active {
			rs.Active, rs.Reminders = false, 0
			dropped++
		}
	}
	for k := range od.pending {
		if !keep[k] {
			delete(od.pending, k)
		}
	}
	for k := range od.restored {
		if !keep[k] {
			delete(od.restored, k)
		}
	}
	if od.gate != nil { // hold-off keys are "TAG/RULE/EVENT"
		od.gate.Forget(func(k string) bool { return !keep[k[:max(0, strings.LastIndexByte(k, '/'))]] })
	}
	od.Device = cloneDevice(d)
	od.next = time.Time{}
	clear(od.tagErr) // the next poll finds out again: an address may be fixed
	od.update(func(s *DeviceStatus) { s.Bus, s.Slave, s.Unreadable = busName(d.Bus), d.SlaveID, nil })
	if dropped > 0 {
		od.log.Info("reload: active alarm rules removed; they end without a clear mail", "rules", dropped)
	}
	p.save(od)
	return od
}
