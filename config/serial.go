package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/plcmail/plcmail/protocol"
)

// Serial is one PLC link ([[serial]]). The bridge helper owns this file.
//
// The port is named either by Device (a path; /dev/serial/by-id/... survives
// re-enumeration after an unplug) or by USBVID/USBPID/USBSerial, which the
// bridge resolves with the OS's USB enumeration each time it (re)opens the
// link, so a board that comes back as /dev/ttyACM1 instead of ttyACM0 is
// still found.
type Serial struct {
	Name      string   `toml:"name"`
	Device    string   `toml:"device"`
	USBVID    string   `toml:"usb_vid"`    // hex, e.g. "2341" (Arduino)
	USBPID    string   `toml:"usb_pid"`    // hex
	USBSerial string   `toml:"usb_serial"` // USB iSerial string
	Baud      int      `toml:"baud"`
	DataBits  int      `toml:"data_bits"` // 5..8
	Parity    string   `toml:"parity"`    // none | odd | even | mark | space
	StopBits  StopBits `toml:"stop_bits"` // 1 | 1.5 | 2

	// HeartbeatTimeout is how long the link may be silent before the gateway
	// mails "PLC offline". The firmware sends a heartbeat every 10 s.
	HeartbeatTimeout Duration `toml:"heartbeat_timeout"`
	// ResetGrace is how long after opening the port decode errors are only
	// counted, not NAKed: opening a USB Arduino toggles DTR, which resets the
	// board, and its bootloader prints garbage for up to ~2 s.
	ResetGrace Duration `toml:"reset_grace"`

	Site  string `toml:"site"`  // overrides gateway.site in this link's mails
	Label string `toml:"label"` // the machine behind the link ("Press 1")

	// RestartNotice mails "PLC restarted" when the boot id changes (default true).
	RestartNotice *bool `toml:"restart_notice"`
	// To receives the link notices (offline, online, restarted, digests of
	// unknown codes). Default: the union of every [[alarm]]'s to.
	To []string `toml:"to"`
}

// Serial defaults.
const (
	DefaultBaud             = 115200
	DefaultHeartbeatTimeout = 60 * time.Second
	DefaultResetGrace       = 2 * time.Second
)

func (s *Serial) applyDefaults() {
	if s.Baud == 0 {
		s.Baud = DefaultBaud
	}
	if s.DataBits == 0 {
		s.DataBits = 8
	}
	if s.Parity == "" {
		s.Parity = "none"
	}
	if s.StopBits == "" {
		s.StopBits = "1"
	}
	if s.HeartbeatTimeout == 0 {
		s.HeartbeatTimeout = Duration(DefaultHeartbeatTimeout)
	}
	if s.ResetGrace == 0 {
		s.ResetGrace = Duration(DefaultResetGrace)
	}
	if s.RestartNotice == nil {
		t := true
		s.RestartNotice = &t
	}
}

// WantsRestartNotice reports whether a new boot id is announced by mail.
func (s *Serial) WantsRestartNotice() bool { return s.RestartNotice == nil || *s.RestartNotice }

func (s *Serial) validate(v *validator, path string) {
	if s.Name == "" {
		v.errf(path+".name", "required: a short name for the link (used in mails, logs and idempotency keys)")
	} else if strings.ContainsAny(s.Name, "/\\ \t\r\n") || s.Name == "." || s.Name == ".." {
		v.errf(path+".name", "%q must not contain '/', '\\' or white space", s.Name)
	}
	usb := s.USBVID != "" || s.USBPID != "" || s.USBSerial != ""
	switch {
	case s.Device == "" && !usb:
		v.errf(path+".device", "required: a device path (e.g. /dev/serial/by-id/...) or usb_vid/usb_pid/usb_serial")
	case s.Device != "" && usb:
		v.errf(path+".device", "set either device or usb_vid/usb_pid/usb_serial, not both")
	}
	for _, k := range []struct{ key, val string }{{"usb_vid", s.USBVID}, {"usb_pid", s.USBPID}} {
		if k.val == "" {
			continue
		}
		if _, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(k.val), "0x"), 16, 16); err != nil {
			v.errf(path+"."+k.key, "%q is not a 16-bit hex USB id (e.g. \"2341\")", k.val)
		}
	}
	if s.Baud < 50 || s.Baud > 4000000 {
		v.errf(path+".baud", "must be 50..4000000, not %d", s.Baud)
	}
	if s.DataBits < 5 || s.DataBits > 8 {
		v.errf(path+".data_bits", "must be 5, 6, 7 or 8, not %d", s.DataBits)
	}
	switch s.Parity {
	case "none", "odd", "even", "mark", "space":
	default:
		v.errf(path+".parity", `must be "none", "odd", "even", "mark" or "space", not %q`, s.Parity)
	}
	switch s.StopBits {
	case "1", "1.5", "2":
	default:
		v.errf(path+".stop_bits", `must be "1", "1.5" or "2", not %q`, s.StopBits)
	}
	if s.HeartbeatTimeout < Duration(time.Second) {
		v.errf(path+".heartbeat_timeout", "must be at least 1s (the PLC sends a heartbeat every 10 s)")
	}
	if s.ResetGrace < 0 {
		v.errf(path+".reset_grace", "must not be negative")
	}
	checkAddresses(v, path+".to", s.To)
}

// checkAddresses reports each entry of list that is not a mail address, at
// key[i].
func checkAddresses(v *validator, key string, list []string) {
	for i, a := range list {
		if !looksLikeAddress(a) {
			v.errf(fmt.Sprintf("%s[%d]", key, i), "%q is not a mail address", a)
		}
	}
}

// Alarm is one alarm template ([[alarm]]). An entry with default = true (and
// no code) is the template for codes that have no entry of their own; without
// one, a built-in default is used and sent to the union of all recipients.
type Alarm struct {
	Code    *int   `toml:"code"`
	Default bool   `toml:"default"`
	Name    string `toml:"name"`    // "Hydraulic pressure low"; .Name in templates
	Subject string `toml:"subject"` // text/template; default: see alarmmail.DefaultSubject
	Body    string `toml:"body"`    // text/template
	HTML    string `toml:"html"`    // html/template, optional second part
	// Severity, when set, replaces the severity the PLC sent
	// (info | warning | alarm | critical).
	Severity string   `toml:"severity"`
	To       []string `toml:"to"`
	Cc       []string `toml:"cc"`
	// Holdoff overrides flood.holdoff for this alarm.
	Holdoff Duration `toml:"holdoff"`
}

func (a *Alarm) validate(v *validator, path string) {
	switch {
	case a.Code == nil && !a.Default:
		v.errf(path+".code", "required (or default = true for the template of codes without an entry)")
	case a.Code != nil && a.Default:
		v.errf(path+".default", "a default template has no code")
	case a.Code != nil && (*a.Code < 0 || *a.Code > 65535):
		v.errf(path+".code", "must be 0..65535, not %d", *a.Code)
	}
	if _, err := protocol.ParseSeverity(a.Severity); a.Severity != "" && err != nil {
		v.errf(path+".severity", "must be info, warning, alarm or critical, not %q", a.Severity)
	}
	if len(a.To) == 0 {
		v.errf(path+".to", "required: at least one recipient")
	}
	checkAddresses(v, path+".to", a.To)
	checkAddresses(v, path+".cc", a.Cc)
	if a.Holdoff < 0 {
		v.errf(path+".holdoff", "must not be negative")
	}
}

// Flood configures hold-off and digests ([flood]).
//
// An alarm that repeats (same code and event) within Holdoff is not mailed on
// its own again; more than MaxMailsPerMinute alarm mails in a minute (all
// links together) are not sent individually either. Such events are still
// recorded and go into one digest mail per link, sent DigestDelay after the
// first held event.
type Flood struct {
	Holdoff           Duration `toml:"holdoff"`
	MaxMailsPerMinute int      `toml:"max_mails_per_minute"`
	DigestDelay       Duration `toml:"digest_delay"`
}

func defaultFlood() Flood {
	return Flood{
		Holdoff:           Duration(5 * time.Minute),
		MaxMailsPerMinute: 20,
		DigestDelay:       Duration(1 * time.Minute),
	}
}

func (f *Flood) validate(v *validator) {
	if f.Holdoff < 0 {
		v.errf("flood.holdoff", "must not be negative (0 disables the hold-off)")
	}
	if f.MaxMailsPerMinute < 1 {
		v.errf("flood.max_mails_per_minute", "must be at least 1")
	}
	if f.DigestDelay <= 0 {
		v.errf("flood.digest_delay", "must be positive")
	}
}

// StopBits is 1, 1.5 or 2; TOML may write it as an integer, a float or a
// string, and all three mean the same.
type StopBits string

// UnmarshalTOML implements toml.Unmarshaler.
func (b *StopBits) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		*b = StopBits(strconv.FormatInt(x, 10))
	case float64:
		*b = StopBits(strconv.FormatFloat(x, 'f', -1, 64))
	case string:
		*b = StopBits(x)
	default:
		return fmt.Errorf("stop_bits must be 1, 1.5 or 2, not %v", v)
	}
	return nil
}

// NoticeRecipients returns who gets s's link notices: its own to, or else the
// union of all alarm recipients in order of first appearance.
func (c *Config) NoticeRecipients(s *Serial) []string {
	if len(s.To) > 0 {
		return s.To
	}
	var out []string
	seen := map[string]bool{}
	for _, a := range c.Alarm {
		for _, r := range a.To {
			if !seen[strings.ToLower(r)] {
				seen[strings.ToLower(r)] = true
				out = append(out, r)
			}
		}
	}
	return out
}
