package main

import (
	"log/slog"
	"path/filepath"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/flood"
	"github.com/plcmail/plcmail/modbus"
	"github.com/plcmail/plcmail/spool"
)

// modbusComponent polls the [[modbus]] devices; nil without any. Their
// alarm state lives in SPOOL/modbus. A reload does not change the devices
// (restartKeys names the section).
func modbusComponent(cfg *config.Config, tmpl *alarmmail.Templates, sp *spool.Spool, wake func(), lim *flood.Limiter, log *slog.Logger) (*component, error) {
	if len(cfg.Modbus) == 0 {
		return nil, nil
	}
	o := modbusOptions(cfg, tmpl)
	o.Flood.Limiter = lim
	p, err := modbus.New(o, sp, wake, log.With("component", "modbus"))
	if err != nil {
		return nil, err
	}
	return &component{"modbus", p.Run}, nil
}

// modbusOptions turns the [[modbus]] sections and [flood] into the poller's
// options (the limiter shared with the bridge is serve's to add).
func modbusOptions(cfg *config.Config, tmpl *alarmmail.Templates) modbus.Options {
	o := modbus.Options{Templates: tmpl, StateDir: filepath.Join(cfg.Gateway.SpoolDir, "modbus"),
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
