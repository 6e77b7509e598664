package main

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/flood"
	"github.com/plcmail/plcmail/modbus"
	"github.com/plcmail/plcmail/spool"
)

// modbusComponent polls the [[modbus]] devices. Their alarm state lives in
// SPOOL/modbus. The poller runs even without devices, so that a SIGHUP can
// add the first one (reloadModbus); with none it opens nothing.
func modbusComponent(cfg *config.Config, tmpl *alarmmail.Templates, sp *spool.Spool, wake func(), lim *flood.Limiter, log *slog.Logger) (*modbus.Poller, component, error) {
	o := modbusOptions(cfg, tmpl)
	o.Flood.Limiter = lim
	p, err := modbus.New(o, sp, wake, log.With("component", "modbus"))
	if err != nil {
		return nil, component{}, err
	}
	return p, component{"modbus", p.Run}, nil
}

// reloadModbus hands a reloaded configuration to the poller: devices added,
// removed or changed restart their buses, the others poll on (poller.Reload).
func reloadModbus(p *modbus.Poller, cfg *config.Config, tmpl *alarmmail.Templates) error {
	if p == nil {
		return nil
	}
	return p.Reload(modbusOptions(cfg, tmpl))
}

// withModbus adds the devices' status to every snapshot collect takes.
func withModbus(collect func() statusSnapshot, p *modbus.Poller) func() statusSnapshot {
	return func() statusSnapshot {
		s := collect()
		if p != nil {
			s.Modbus = p.Status()
		}
		return s
	}
}

// modbusOptions turns the [[modbus]] sections and [flood] into the poller's
// options (the limiter shared with the bridge is serve's to add).
func modbusOptions(cfg *config.Config, tmpl *alarmmail.Templates) modbus.Options {
	o := modbus.Options{Templates: tmpl, StateDir: modbusStateDir(cfg),
		Flood: &modbus.Flood{MaxMailsPerMinute: cfg.Flood.MaxMailsPerMinute, DigestDelay: cfg.Flood.DigestDelay.D()}}
	for i := range cfg.Modbus {
		m := &cfg.Modbus[i]
		d := modbus.Device{
			Name:         m.Name,
			SlaveID:      uint8(*m.SlaveID),
			PollInterval: m.PollInterval.D(),
			OfflineAfter: m.OfflineAfter,
			Site:         m.Site,
			Label:        m.Label,
			Bus:          modbus.Bus{Timeout: m.Timeout.D(), MinGap: m.MinGap.D()},
		}
		if m.Mode == "tcp" {
			d.Bus.TCP = m.Bus()[len("tcp:"):]
		} else {
			d.Bus.Device, d.Bus.Baud, d.Bus.DataBits, d.Bus.Parity = m.Device, m.Baud, m.DataBits, m.Parity
			d.Bus.StopBits = 1
			if m.StopBits == "2" {
				d.Bus.StopBits = 2
			}
		}
		for j := range m.Tags {
			t := &m.Tags[j]
			tag := modbus.Tag{
				Name:         t.Name,
				Table:        modbus.Table(t.Table),
				Address:      uint16(*t.Address),
				Type:         t.Type,
				LowWordFirst: t.WordOrder == "low_first",
				Scale:        *t.Scale,
				Offset:       t.Offset,
				Unit:         t.Unit,
				PollInterval: t.PollInterval.D(),
			}
			for k := range t.Alarms {
				a := &t.Alarms[k]
				r := modbus.Rule{
					ID:       a.RuleID(),
					Name:     a.Name,
					Limit:    a.Limit,
					Deadband: a.Deadband,
					OnDelay:  a.OnDelay.D(),
					OffDelay: a.OffDelay.D(),
					Realarm:  a.Realarm.D(),
					Severity: a.ModbusSeverity(),
					Code:     -1,
				}
				if a.Setpoint != nil {
					r.Setpoint = *a.Setpoint
				}
				if a.State != nil {
					r.State = *a.State
				}
				if a.Code != nil {
					r.Code = *a.Code
				}
				tag.Rules = append(tag.Rules, r)
			}
			d.Tags = append(d.Tags, tag)
		}
		o.Devices = append(o.Devices, d)
	}
	return o
}

// printModbus is the Modbus part of `plcmail status`: one line per device,
// its last error, and its active alarms.
func printModbus(w io.Writer, now time.Time, devs []modbus.DeviceStatus) {
	if len(devs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nmodbus devices:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, d := range devs {
		state := "up"
		switch {
		case d.Offline:
			state = "OFFLINE"
		case !d.Up && d.Polls > 0:
			state = "not answering"
		case d.Polls == 0:
			state = "not polled yet"
		}
		last := "no answer yet"
		if !d.LastGood.IsZero() {
			last = "last answer " + age(now, d.LastGood) + " ago"
		}
		// Held counts since the start; events held before a restart still
		// wait for their digest, so those are shown apart.
		held := fmt.Sprint(d.Held)
		if d.DigestPending > 0 {
			held += fmt.Sprintf(" (%d waiting for a digest)", d.DigestPending)
		}
		fmt.Fprintf(tw, "  %s\t%s slave %d\t%s\t%s\tpolls %d, failed %d, mails %d, held %s, digests %d\n",
			d.Name, d.Bus, d.Slave, state, last, d.Polls, d.PollErrors, d.Mails, held, d.Digests)
		if d.LastError != "" {
			fmt.Fprintf(tw, "  \t\tlast error: %s\n", oneLine(d.LastError))
		}
		for _, tag := range slices.Sorted(maps.Keys(d.Unreadable)) {
			fmt.Fprintf(tw, "  \t\tunreadable tag %s: %s\n", tag, oneLine(d.Unreadable[tag]))
		}
		for _, a := range d.Active {
			fmt.Fprintf(tw, "  \t\tactive: %s (%s/%s, %s) for %s\n", a.Name, a.Tag, a.Rule, a.Severity, age(now, a.Since))
		}
	}
	tw.Flush()
}

// modbusStateDir is where the devices' alarm states are kept.
func modbusStateDir(cfg *config.Config) string {
	return filepath.Join(cfg.Gateway.SpoolDir, "modbus")
}

// modbusNames are the configured devices' names, in configuration order.
func modbusNames(cfg *config.Config) []string {
	names := make([]string, len(cfg.Modbus))
	for i := range cfg.Modbus {
		names[i] = cfg.Modbus[i].Name
	}
	return names
}

// printModbusOnly shows the Modbus alarm events that a stopped gateway
// holds for a digest (in each device's state file), in configuration
// order; nothing when none waits. They go out once the gateway runs.
func printModbusOnly(w io.Writer, cfg *config.Config) {
	names := modbusNames(cfg)
	held, err := modbus.PeekDigestPending(modbusStateDir(cfg), names)
	if err != nil {
		fmt.Fprintf(w, "cannot read a Modbus device's state: %v\n", err)
	}
	var parts []string
	for _, n := range names {
		if held[n] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d held for a digest", n, held[n]))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "modbus devices: %s\n", strings.Join(parts, ", "))
	}
}
