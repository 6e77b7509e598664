package bridge

import (
	"errors"
	"slices"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/flood"
)

// Options is everything the bridge runs with; Reload swaps all of it at
// once, without closing the ports that stay.
type Options struct {
	// Links are the serial links, in the order Status lists them.
	Links []LinkOptions
	// Flood is the flood control shared by all links.
	Flood Flood
	// Templates render every mail and hold each alarm code's hold-off.
	Templates *alarmmail.Templates
	// Limiter is the cap of Flood.MaxMailsPerMinute, shared with the other
	// alarm sources of the gateway (Modbus); nil: the bridge's own. A
	// Reload keeps the limiter the bridge started with.
	Limiter *flood.Limiter
}

// LinkOptions are the settings of one serial link.
type LinkOptions struct {
	// Name identifies the link in mails, logs, spool keys and the name of
	// its journal, so it must stay the same across restarts.
	Name string
	// Port is where the PLC is; a reload that changes it reopens the port.
	Port Port
	// HeartbeatTimeout is how long the PLC may be silent before the
	// "PLC offline" notice.
	HeartbeatTimeout time.Duration
	// ResetGrace is how long after opening the port frame errors are only
	// counted: opening a USB Arduino resets it, and its bootloader talks.
	ResetGrace time.Duration
	// Site and Label describe the machine in the link's mails; an empty
	// Site leaves the templates' default.
	Site, Label string
	// RestartNotice mails "PLC restarted" when the boot id changes.
	RestartNotice bool
}

// Flood is the flood control: events beyond these limits are not mailed one
// by one but held for a digest, never dropped. The hold-off of a repeated
// alarm is per code, in the Templates.
type Flood struct {
	// MaxMailsPerMinute caps the individual alarm mails of all links
	// together (the inboxes are shared too).
	MaxMailsPerMinute int
	// DigestDelay is how long held events wait for their digest.
	DigestDelay time.Duration
}

// errNoTemplates refuses Options without templates: every mail needs them.
var errNoTemplates = errors.New("bridge: options without templates")

// settings is what Reload swaps at once: the options and their links by
// name.
type settings struct {
	Options
	byName map[string]*LinkOptions
}

func newSettings(o Options) (*settings, error) {
	if o.Templates == nil {
		return nil, errNoTemplates
	}
	o.Links = slices.Clone(o.Links) // the caller's slice may change
	s := &settings{Options: o, byName: make(map[string]*LinkOptions, len(o.Links))}
	for i := range s.Links {
		s.byName[s.Links[i].Name] = &s.Links[i]
	}
	return s, nil
}

// link returns the settings of a link (Reload stops a link before it
// installs settings without it).
func (s *settings) link(name string) *LinkOptions { return s.byName[name] }
