package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/plcmail/plcmail/protocol"
)

// Modbus is one polled Modbus device ([[modbus]]): a slave on an RS-485 bus
// (mode = "rtu") or a Modbus TCP server (mode = "tcp"). Several entries with
// the same device path (or address) share that bus: the gateway sends one
// request at a time on it, so several slave ids on one RS-485 pair are
// several [[modbus]] entries with the same device and different slave_id.
type Modbus struct {
	Name string `toml:"name"`
	Mode string `toml:"mode"` // rtu | tcp

	// Address is host:port of a Modbus TCP server (port 502 when omitted).
	Address string `toml:"address"`

	// Device and the port settings name an RS-485/RS-232 port, as in
	// [[serial]]; Modbus RTU's common default is 19200 8E1.
	Device   string   `toml:"device"`
	Baud     int      `toml:"baud"`
	DataBits int      `toml:"data_bits"`
	Parity   string   `toml:"parity"` // none | odd | even
	StopBits StopBits `toml:"stop_bits"`

	SlaveID *int `toml:"slave_id"` // unit id, default 1 (TCP: 255 for "the server itself" is fine too)

	PollInterval Duration `toml:"poll_interval"` // how often every tag is read (default 1s)
	Timeout      Duration `toml:"timeout"`       // one request's answer (default 1s)
	// MinGap is the silence the gateway keeps on the bus after each answer
	// or timeout before its next request, so that slow slaves and other
	// masters' tools get their share (default 20ms).
	MinGap Duration `toml:"min_gap"`
	// OfflineAfter failed polls in a row mail "device offline" once; the
	// next good poll mails "back online" (default 3).
	OfflineAfter int `toml:"offline_after"`

	Site  string   `toml:"site"`
	Label string   `toml:"label"`
	To    []string `toml:"to"` // device notices and alarms without their own to; default: all [[alarm]] recipients

	Tags []ModbusTag `toml:"tag"`
}

// ModbusTag is one value read from a device ([[modbus.tag]]).
type ModbusTag struct {
	Name string `toml:"name"`
	// Table is the Modbus data table: coil | discrete_input | holding | input.
	Table string `toml:"table"`
	// Address is the zero-based protocol address (register 40001 is
	// holding address 0).
	Address *int `toml:"address"`
	// Type is bool (coils and discrete inputs), or int16 | uint16 | int32 |
	// uint32 | float32 for registers (default uint16). 32-bit types read two
	// registers.
	Type string `toml:"type"`
	// WordOrder of 32-bit types: "high_first" (Modbus convention, default)
	// or "low_first" (many PLCs, "word swap").
	WordOrder string   `toml:"word_order"`
	Scale     *float64 `toml:"scale"` // value = raw*scale + offset; default 1
	Offset    float64  `toml:"offset"`
	Unit      string   `toml:"unit"`
	// PollInterval reads this tag at its own pace (a slow temperature
	// beside a fast level); default: the device's poll_interval.
	PollInterval Duration `toml:"poll_interval"`

	Alarms []ModbusAlarm `toml:"alarm"`
}

// ModbusAlarm is one alarm condition on a tag ([[modbus.tag.alarm]]), in
// the terms of OPC UA Part 9: either a limit alarm (limit = HH | H | L | LL
// with setpoint and deadband; each limit is its own condition, as in a
// non-exclusive limit alarm) or a boolean alarm (state = true: active while
// the tag is true).
type ModbusAlarm struct {
	Name     string   `toml:"name"`
	Limit    string   `toml:"limit"` // HH | H | L | LL
	Setpoint *float64 `toml:"setpoint"`
	State    *bool    `toml:"state"`
	// Deadband is the hysteresis: a high alarm clears only below
	// setpoint - deadband, a low alarm only above setpoint + deadband.
	Deadband float64  `toml:"deadband"`
	OnDelay  Duration `toml:"on_delay"`  // condition true this long before it is raised
	OffDelay Duration `toml:"off_delay"` // condition false this long before it clears
	// Severity: info | warning | alarm | critical. Default: critical for HH
	// and LL, warning for H and L, alarm for boolean alarms.
	Severity string `toml:"severity"`
	// Realarm mails the alarm again while it stays active this long after
	// its last mail (0: once).
	Realarm Duration `toml:"realarm"`
	// Code picks the [[alarm]] template (and its recipients) for this
	// alarm's mails; without it the default template applies.
	Code *int     `toml:"code"`
	To   []string `toml:"to"` // overrides the template's recipients
}

// Modbus defaults.
const (
	DefaultModbusBaud         = 19200
	DefaultModbusPollInterval = time.Second
	DefaultModbusTimeout      = time.Second
	DefaultModbusMinGap       = 20 * time.Millisecond
	DefaultModbusOfflineAfter = 3
)

func (m *Modbus) applyDefaults() {
	if m.Baud == 0 {
		m.Baud = DefaultModbusBaud
	}
	if m.DataBits == 0 {
		m.DataBits = 8
	}
	if m.Parity == "" {
		m.Parity = "even" // Modbus over serial line, 2.5.1: even parity is the default
	}
	if m.StopBits == "" {
		m.StopBits = "1"
	}
	if m.SlaveID == nil {
		one := 1
		m.SlaveID = &one
	}
	if m.PollInterval == 0 {
		m.PollInterval = Duration(DefaultModbusPollInterval)
	}
	if m.Timeout == 0 {
		m.Timeout = Duration(DefaultModbusTimeout)
	}
	if m.MinGap == 0 {
		m.MinGap = Duration(DefaultModbusMinGap)
	}
	if m.OfflineAfter == 0 {
		m.OfflineAfter = DefaultModbusOfflineAfter
	}
	for i := range m.Tags {
		t := &m.Tags[i]
		if t.Type == "" {
			if t.Table == "coil" || t.Table == "discrete_input" {
				t.Type = "bool"
			} else {
				t.Type = "uint16"
			}
		}
		if t.WordOrder == "" {
			t.WordOrder = "high_first"
		}
		if t.Scale == nil {
			one := 1.0
			t.Scale = &one
		}
	}
}

// Bus names the wire a device is on: devices with the same Bus share it and
// are polled one request at a time.
func (m *Modbus) Bus() string {
	if m.Mode == "rtu" {
		return "rtu:" + m.Device
	}
	addr := m.Address
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "502")
	}
	return "tcp:" + addr
}

// ModbusSeverity returns the severity of an alarm rule after defaults.
func (a *ModbusAlarm) ModbusSeverity() string {
	switch {
	case a.Severity != "":
		return a.Severity
	case a.Limit == "HH" || a.Limit == "LL":
		return "critical"
	case a.Limit != "":
		return "warning"
	}
	return "alarm"
}

// RuleID is the rule's name in spool keys and the state file: the limit,
// or "true"/"false" for a boolean alarm. It stays the same as long as the
// rule means the same.
func (a *ModbusAlarm) RuleID() string {
	if a.Limit != "" {
		return a.Limit
	}
	if a.State != nil && !*a.State {
		return "false"
	}
	return "true"
}

func (c *Config) validateModbus(v *validator) {
	names := map[string]bool{}
	for i := range c.Serial {
		names[c.Serial[i].Name] = true
	}
	buses := map[string]*Modbus{}
	slaves := map[string]*Modbus{} // bus and slave id
	for i := range c.Modbus {
		m := &c.Modbus[i]
		path := fmt.Sprintf("modbus[%d]", i)
		m.validate(v, path)
		if m.Name != "" && names[m.Name] {
			v.errf(path+".name", "duplicate name %q (names of [[serial]] and [[modbus]] share the spool keys)", m.Name)
		}
		names[m.Name] = true
		if m.Mode == "rtu" && m.Device != "" {
			if s := serialOn(c.Serial, m.Device); s != nil {
				v.errf(path+".device", "%s is the port of [[serial]] %q: a framed link and a Modbus master cannot share a port", m.Device, s.Name)
			}
		}
		if (m.Mode == "rtu" && m.Device != "") || (m.Mode == "tcp" && m.Address != "") {
			slave := fmt.Sprintf("%s#%d", samePort(m.Bus()), *m.SlaveID)
			if o := slaves[slave]; o != nil {
				same := ""
				if mine := busName(m); mine != busName(o) {
					same = fmt.Sprintf(" (%s is the same port)", mine)
					if m.Mode == "tcp" {
						same = fmt.Sprintf(" (%s is the same server)", mine)
					}
				}
				v.errf(path+".slave_id", "modbus %q polls slave %d on %s already%s: one slave is one [[modbus]] entry (put all its tags there)", o.Name, *m.SlaveID, busName(o), same)
			} else {
				slaves[slave] = m
			}
		}
		if m.Mode != "rtu" || m.Device == "" {
			continue
		}
		if o := buses[m.Bus()]; o != nil && (o.Baud != m.Baud || o.DataBits != m.DataBits || o.Parity != m.Parity || o.StopBits != m.StopBits) {
			v.errf(path+".baud", "device %s is shared with modbus %q, whose port settings differ: one bus has one baud rate, parity and stop bits", m.Device, o.Name)
		}
		buses[m.Bus()] = m
	}
}

// serialOn returns the [[serial]] link on device path, if any; two names
// for one port (a /dev/serial/by-id link and its ttyUSB) count as the same
// when the links resolve here.
func serialOn(links []Serial, path string) *Serial {
	for i := range links {
		if d := links[i].Device; d != "" && samePort(d) == samePort(path) {
			return &links[i]
		}
	}
	return nil
}

// busName is a device's bus as the user wrote it: the device path or
// host:port.
func busName(m *Modbus) string {
	return strings.TrimPrefix(strings.TrimPrefix(m.Bus(), "rtu:"), "tcp:")
}

// samePort is a port's path with symbolic links resolved where they
// resolve (plcmail check may run on another machine than the gateway), or
// a Modbus TCP address in one spelling per server (sameServer).
func samePort(path string) string {
	prefix := ""
	for _, p := range []string{"rtu:", "tcp:"} {
		if strings.HasPrefix(path, p) {
			prefix, path = p, path[len(p):]
		}
	}
	if prefix == "tcp:" {
		return prefix + sameServer(path)
	}
	if r, err := filepath.EvalSymlinks(path); err == nil {
		path = r
	}
	return prefix + path
}

// sameServer writes host:port one way for every spelling of the same
// server, so that two [[modbus]] entries polling one slave are found
// however they name it: the loopback names (localhost, *.localhost,
// 127.0.0.1, ::1, ::ffff:127.0.0.1) are one host, which a gateway dialling
// "localhost" reaches on either address; names are compared without case
// and without a trailing dot; IP addresses in their shortest form; the port
// as a number. Other names are not looked up: plcmail check may run on
// another machine than the gateway, and without DNS.
func sameServer(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	if n, err := strconv.ParseUint(port, 10, 16); err == nil {
		port = strconv.FormatUint(n, 10)
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap()
		host = a.String()
		if a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback() {
			host = "localhost"
		}
	} else if strings.HasSuffix(host, ".localhost") {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func (m *Modbus) validate(v *validator, path string) {
	if m.Name == "" {
		v.errf(path+".name", "required: a short name for the device (used in mails, logs and idempotency keys)")
	} else if strings.ContainsAny(m.Name, "/\\ \t\r\n") || m.Name == "." || m.Name == ".." {
		v.errf(path+".name", "%q must not contain '/', '\\' or white space", m.Name)
	}
	switch m.Mode {
	case "tcp":
		if m.Address == "" {
			v.errf(path+".address", `required with mode = "tcp": host:port of the Modbus TCP server`)
		}
		if m.Device != "" {
			v.errf(path+".device", `is for mode = "rtu"; a TCP device has an address`)
		}
	case "rtu":
		if m.Device == "" {
			v.errf(path+".device", `required with mode = "rtu": the serial port (e.g. /dev/ttyUSB0)`)
		}
		if m.Address != "" {
			v.errf(path+".address", `is for mode = "tcp"; an RTU device has a device path`)
		}
		if m.Baud < 300 || m.Baud > 4000000 {
			v.errf(path+".baud", "must be 300..4000000, not %d", m.Baud)
		}
		if m.DataBits != 7 && m.DataBits != 8 {
			v.errf(path+".data_bits", "must be 7 or 8, not %d", m.DataBits)
		}
		if m.Parity != "none" && m.Parity != "odd" && m.Parity != "even" {
			v.errf(path+".parity", `must be "none", "odd" or "even", not %q`, m.Parity)
		}
		if m.StopBits != "1" && m.StopBits != "2" {
			v.errf(path+".stop_bits", `must be 1 or 2, not %q`, m.StopBits)
		}
	default:
		v.errf(path+".mode", `required: "rtu" (serial line) or "tcp", not %q`, m.Mode)
	}
	if id := *m.SlaveID; id < 0 || id > 255 || (m.Mode == "rtu" && (id < 1 || id > 247)) {
		v.errf(path+".slave_id", "must be 1..247 (rtu) or 0..255 (tcp), not %d", id)
	}
	if m.PollInterval < Duration(10*time.Millisecond) {
		v.errf(path+".poll_interval", "must be at least 10ms")
	}
	if m.Timeout < Duration(10*time.Millisecond) {
		v.errf(path+".timeout", "must be at least 10ms")
	}
	if m.MinGap < 0 {
		v.errf(path+".min_gap", "must not be negative")
	}
	if m.OfflineAfter < 1 {
		v.errf(path+".offline_after", "must be at least 1")
	}
	checkAddresses(v, path+".to", m.To)
	if len(m.Tags) == 0 {
		v.errf(path, "has no [[modbus.tag]]: nothing to poll")
	}
	tags := map[string]bool{}
	for j := range m.Tags {
		t := &m.Tags[j]
		tp := fmt.Sprintf("%s.tag[%d]", path, j)
		t.validate(v, tp)
		if t.Name != "" && tags[t.Name] {
			v.errf(tp+".name", "duplicate tag name %q in this device", t.Name)
		}
		tags[t.Name] = true
	}
}

func (t *ModbusTag) validate(v *validator, path string) {
	if t.Name == "" {
		v.errf(path+".name", "required: the tag's name (used in mails and idempotency keys)")
	} else if strings.ContainsAny(t.Name, "/\\ \t\r\n") {
		v.errf(path+".name", "%q must not contain '/', '\\' or white space", t.Name)
	}
	bits := false
	switch t.Table {
	case "coil", "discrete_input":
		bits = true
		if t.Type != "bool" {
			v.errf(path+".type", "a %s is a bit: type must be bool, not %q", t.Table, t.Type)
		}
	case "holding", "input":
		switch t.Type {
		case "int16", "uint16", "int32", "uint32", "float32":
		default:
			v.errf(path+".type", "a %s register is int16, uint16, int32, uint32 or float32, not %q", t.Table, t.Type)
		}
	default:
		v.errf(path+".table", `must be "coil", "discrete_input", "holding" or "input", not %q`, t.Table)
	}
	if t.Address == nil {
		v.errf(path+".address", "required: the zero-based Modbus address")
	} else if a := *t.Address; t.Words() == 2 && (a < 0 || a > 65534) {
		v.errf(path+".address", "must be 0..65534 for a %s (two registers), not %d", t.Type, a)
	} else if a < 0 || a > 65535 {
		v.errf(path+".address", "must be 0..65535, not %d", a)
	}
	if t.PollInterval != 0 && t.PollInterval < Duration(10*time.Millisecond) {
		v.errf(path+".poll_interval", "must be at least 10ms (or left out: the device's poll_interval)")
	}
	if t.WordOrder != "high_first" && t.WordOrder != "low_first" {
		v.errf(path+".word_order", `must be "high_first" or "low_first", not %q`, t.WordOrder)
	}
	if bits && (*t.Scale != 1 || t.Offset != 0) {
		v.errf(path+".scale", "a bit has no scale or offset")
	} else if *t.Scale == 0 || math.IsNaN(*t.Scale) || math.IsInf(*t.Scale, 0) {
		v.errf(path+".scale", "must be a finite number other than 0")
	}
	seen := map[string]bool{}
	for k := range t.Alarms {
		a := &t.Alarms[k]
		ap := fmt.Sprintf("%s.alarm[%d]", path, k)
		a.validate(v, ap, t.Type == "bool")
		if id := a.RuleID(); seen[id] {
			v.errf(ap, "a second %s alarm on this tag", id)
		} else {
			seen[id] = true
		}
	}
}

// Words returns how many registers the tag's type takes (0 for a bit).
func (t *ModbusTag) Words() int {
	switch t.Type {
	case "int32", "uint32", "float32":
		return 2
	case "bool":
		return 0
	}
	return 1
}

func (a *ModbusAlarm) validate(v *validator, path string, boolTag bool) {
	switch {
	case a.Limit != "" && a.State != nil:
		v.errf(path+".state", "set either limit (a limit alarm) or state (a boolean alarm), not both")
	case a.Limit != "":
		switch a.Limit {
		case "HH", "H", "L", "LL":
		default:
			v.errf(path+".limit", `must be "HH", "H", "L" or "LL", not %q`, a.Limit)
		}
		if boolTag {
			v.errf(path+".limit", "a bool tag has no limits: use state = true (or false)")
		}
		if a.Setpoint == nil {
			v.errf(path+".setpoint", "required with limit: the value at which the alarm is raised")
		}
	case a.State != nil:
		if !boolTag {
			v.errf(path+".state", "a boolean alarm needs a bool tag; a register tag has limit and setpoint")
		}
	case badKey(v.bad, path+".state"):
		// reported at state already
	default:
		v.errf(path+".limit", `required: limit = "HH" | "H" | "L" | "LL" with setpoint, or state = true for a boolean alarm`)
	}
	if a.Deadband < 0 || math.IsNaN(a.Deadband) {
		v.errf(path+".deadband", "must not be negative")
	} else if a.Deadband > 0 && a.State != nil {
		v.errf(path+".deadband", "a boolean alarm has no deadband")
	}
	if a.OnDelay < 0 {
		v.errf(path+".on_delay", "must not be negative")
	}
	if a.OffDelay < 0 {
		v.errf(path+".off_delay", "must not be negative")
	}
	if a.Realarm < 0 {
		v.errf(path+".realarm", "must not be negative (0: mail once)")
	} else if a.Realarm > 0 && a.Realarm < Duration(time.Minute) {
		v.errf(path+".realarm", "must be at least 1m: a reminder more often is a mail flood")
	}
	if _, err := protocol.ParseSeverity(a.Severity); a.Severity != "" && err != nil {
		v.errf(path+".severity", "must be info, warning, alarm or critical, not %q", a.Severity)
	}
	if a.Code != nil && (*a.Code < 0 || *a.Code > 65535) {
		v.errf(path+".code", "must be 0..65535, not %d", *a.Code)
	}
	checkAddresses(v, path+".to", a.To)
}

// modbusWarnings are the Modbus rules whose code no [[alarm]] has: their
// mails are valid (the default template takes them, with its recipients),
// but a code that names nothing is most likely a typo or a template not
// written yet, and its mails would not look as the user meant.
func (c *Config) modbusWarnings() Errors {
	codes := map[int]bool{}
	def := "the built-in template"
	for i := range c.Alarm {
		a := &c.Alarm[i]
		if a.Code != nil {
			codes[*a.Code] = true
		}
		if a.Default {
			def = fmt.Sprintf("the default template (alarm[%d])", i)
		}
	}
	var out Errors
	for i := range c.Modbus {
		for j := range c.Modbus[i].Tags {
			for k, a := range c.Modbus[i].Tags[j].Alarms {
				if a.Code == nil || codes[*a.Code] || *a.Code < 0 || *a.Code > 65535 {
					continue
				}
				out = append(out, c.Errorf(fmt.Sprintf("modbus[%d].tag[%d].alarm[%d].code", i, j, k),
					"warning: no [[alarm]] has code %d: this rule's mails use %s", *a.Code, def))
			}
		}
	}
	return out
}
