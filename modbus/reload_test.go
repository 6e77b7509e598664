package modbus

import (
	"slices"
	"testing"
)

// TestReload: a reload keeps the alarm state of the rules that stay, drops
// a removed rule without a clear mail, starts an added device and stops a
// removed one, while the unchanged marker tag polls on throughout.
func TestReload(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	g := newGateway(t, s, tcpDevice(port, levelTag()))
	s.do("hr 0 960")
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1")

	// HH goes away, H gets a setpoint of 97: still active within its
	// deadband at 96, so neither mails.
	o := g.opts
	dev := o.Devices[0]
	dev.Tags = slices.Clone(dev.Tags)
	lvl := &dev.Tags[1]
	lvl.Rules = []Rule{lvl.Rules[0]}
	lvl.Rules[0].Setpoint = 97
	o.Devices = []Device{dev}
	if err := g.p.Reload(o); err != nil {
		t.Fatal(err)
	}
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1")
	st, err := loadState(o.StateDir, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if hh := st.Rules["level/HH"]; hh == nil || hh.Active || hh.Count != 1 || !st.Rules["level/H"].Active {
		t.Errorf("state after the reload: HH %+v, H %+v", st.Rules["level/HH"], st.Rules["level/H"])
	}
	// HH back: a new alarm, raised under a key the spool has not seen.
	lvl.Rules = []Rule{lvl.Rules[0], levelTag().Rules[1]}
	o.Devices = []Device{dev}
	if err := g.p.Reload(o); err != nil {
		t.Fatal(err)
	}
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1", "modbus/dev/level/HH/2")
	// The kept rule works with its new setpoint: 92 is below 97-2 (and
	// below 95-2 for HH).
	s.do("hr 0 920")
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1", "modbus/dev/level/HH/2", "modbus/dev/level/H/2", "modbus/dev/level/HH/3")

	// A second device on the same bus (slave 2 shares the slave's data).
	flag := Tag{Name: "flag", Table: Coil, Address: 5, Type: "bool", Scale: 1,
		Rules: []Rule{{ID: "true", State: true, Code: -1}}}
	dev2 := tcpDevice(port, flag)
	dev2.Name, dev2.SlaveID = "dev2", 2
	o.Devices = []Device{dev, dev2}
	if err := g.p.Reload(o); err != nil {
		t.Fatal(err)
	}
	s.do("co 5 1")
	g.waitKey("modbus/dev2/flag/true/1")
	g.sync()
	if names := deviceNames(g.p.Status()); !slices.Equal(names, []string{"dev", "dev2"}) {
		t.Errorf("devices after adding one: %v", names)
	}

	// Removed again: it stops, so its clear is not mailed.
	o.Devices = []Device{dev}
	if err := g.p.Reload(o); err != nil {
		t.Fatal(err)
	}
	s.do("co 5 0")
	g.sync()
	g.sync()
	g.wantKeys("modbus/dev/level/H/1", "modbus/dev/level/HH/1", "modbus/dev/level/HH/2", "modbus/dev/level/H/2", "modbus/dev/level/HH/3",
		"modbus/dev2/flag/true/1")
	if names := deviceNames(g.p.Status()); !slices.Equal(names, []string{"dev"}) {
		t.Errorf("devices after removing one: %v", names)
	}
}

func deviceNames(st []DeviceStatus) []string {
	var n []string
	for _, d := range st {
		n = append(n, d.Name)
	}
	return n
}
