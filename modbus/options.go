package modbus

import (
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/flood"
)

// Options is everything the poller runs with.
type Options struct {
	Devices []Device
	// Templates render every mail.
	Templates *alarmmail.Templates
	// StateDir holds one state file per device (SPOOL/modbus).
	StateDir string
	// Flood is the [flood] control of alarm mails, as for framed alarms
	// (the hold-off of each rule is its Code's, in Templates); nil mails
	// every event on its own.
	Flood *Flood
}

// Flood is the flood control of the devices' alarm mails: an event within
// its hold-off or beyond the cap is held in the device's state file and
// mailed in a digest (package flood).
type Flood struct {
	// MaxMailsPerMinute caps the individual alarm mails, together with
	// every other source sharing Limiter.
	MaxMailsPerMinute int
	// DigestDelay is how long held events wait for their digest.
	DigestDelay time.Duration
	// Limiter is shared with the serial bridge; nil: the poller's own.
	Limiter *flood.Limiter
}

// Device is one slave on a bus.
type Device struct {
	// Name identifies the device in mails, logs, spool keys and its state
	// file, so it must stay the same across restarts.
	Name    string
	Bus     Bus
	SlaveID uint8
	// PollInterval is the time from the start of one poll of the tags to
	// the next, for tags without a PollInterval of their own.
	PollInterval time.Duration
	// OfflineAfter failed polls in a row make the device offline.
	OfflineAfter int
	Site, Label  string
	Tags         []Tag
}

// Bus is the wire: devices with equal Bus values share one client and are
// polled one request at a time.
type Bus struct {
	// TCP is host:port of a Modbus TCP server; empty for RTU.
	TCP string
	// Serial port settings for RTU.
	Device   string
	Baud     int
	DataBits int
	Parity   string // none | odd | even
	StopBits int
	// Timeout is how long one request waits for its answer.
	Timeout time.Duration
	// MinGap is the silence after each answer or timeout.
	MinGap time.Duration
}

// Table is a Modbus data table.
type Table string

// The four Modbus data tables.
const (
	Coil          Table = "coil"
	DiscreteInput Table = "discrete_input"
	Holding       Table = "holding"
	Input         Table = "input"
)

// Tag is one value of a device and its alarm rules.
type Tag struct {
	Name    string
	Table   Table
	Address uint16
	// Type is bool, int16, uint16, int32, uint32 or float32.
	Type string
	// LowWordFirst swaps the two registers of a 32-bit value.
	LowWordFirst bool
	Scale        float64 // value = raw*Scale + Offset
	Offset       float64
	Unit         string
	// PollInterval, if not 0, reads this tag at its own pace instead of
	// the device's (a slow temperature beside a fast level).
	PollInterval time.Duration
	Rules        []Rule
}

// Rule is one alarm condition on a tag.
type Rule struct {
	// ID names the rule in spool keys and the state file: HH, H, L, LL,
	// true or false.
	ID string
	// Name is the alarm's name in mails ("Tank 1 level high").
	Name string
	// Limit is HH, H, L or LL; empty for a boolean alarm.
	Limit    string
	Setpoint float64
	// State is the value of a bool tag that raises a boolean alarm.
	State    bool
	Deadband float64
	OnDelay  time.Duration
	OffDelay time.Duration
	Realarm  time.Duration
	Severity string
	// Code picks the [[alarm]] template; -1 for the default one.
	Code int
}
