package modbus

import (
	"maps"
	"slices"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
)

// DeviceStatus is a snapshot of one device for `plcmail status`, the status
// page and /metrics.
type DeviceStatus struct {
	Name  string `json:"name"`
	Bus   string `json:"bus"` // tcp://host:port or rtu:///dev/...
	Slave uint8  `json:"slave"`
	// Up is true while the last poll was answered.
	Up bool `json:"up"`
	// Offline is true from the "device offline" notice to the first good
	// poll after it (durable across restarts).
	Offline   bool      `json:"offline"`
	LastGood  time.Time `json:"last_good,omitzero"`
	LastError string    `json:"last_error,omitempty"`

	Polls      uint64 `json:"polls"`       // polls of all tags since start
	PollErrors uint64 `json:"poll_errors"` // polls that failed (no answer, bad CRC, lost connection)
	// Mails is every mail the device queued, what its recipients receive:
	// Mailed + Digests + Notices (set by Status).
	Mails         uint64 `json:"mails"`
	Mailed        uint64 `json:"mailed"`         // alarm mails queued (raise, clear, reminder)
	Held          uint64 `json:"held"`           // alarm events held for a digest by flood control
	Digests       uint64 `json:"digests"`        // digest mails queued
	DigestPending int    `json:"digest_pending"` // held events not yet in a queued digest
	Notices       uint64 `json:"notices"`        // offline/online notices queued
	// Unreadable are the tags the device answers with an exception
	// (wrong address or table) and their error: their alarms are not
	// evaluated while the device is up.
	Unreadable map[string]string `json:"unreadable,omitempty"`

	// Active are the device's active alarms, in configuration order.
	Active []ActiveAlarm `json:"active,omitempty"`
}

// ActiveAlarm is one active alarm rule of a tag.
type ActiveAlarm struct {
	Tag      string    `json:"tag"`
	Rule     string    `json:"rule"` // HH, H, L, LL, true, false
	Name     string    `json:"name"`
	Severity string    `json:"severity"`
	Since    time.Time `json:"since"`
}

// Status returns a snapshot of every device, in configuration order.
func (p *Poller) Status() []DeviceStatus {
	p.mu.Lock()
	devs := slices.Clone(p.devices)
	p.mu.Unlock()
	out := make([]DeviceStatus, 0, len(devs))
	for _, d := range devs {
		d.mu.Lock()
		s := d.status
		s.Active = slices.Clone(s.Active)
		s.Unreadable = maps.Clone(s.Unreadable)
		d.mu.Unlock()
		s.Mails = s.Mailed + s.Digests + s.Notices
		out = append(out, s)
	}
	return out
}

func (d *device) update(f func(s *DeviceStatus)) {
	d.mu.Lock()
	f(&d.status)
	d.mu.Unlock()
}

// publish copies the durable state into the status: offline, held events
// and the active alarms.
func (d *device) publish(tmpl *alarmmail.Templates) {
	var active []ActiveAlarm
	for i := range d.Tags {
		t := &d.Tags[i]
		for j := range t.Rules {
			r := &t.Rules[j]
			if st := d.st.Rules[t.Name+"/"+r.ID]; st != nil && st.Active {
				active = append(active, ActiveAlarm{Tag: t.Name, Rule: r.ID, Name: alarmName(tmpl, t, r),
					Severity: r.severity(), Since: st.Since})
			}
		}
	}
	d.update(func(s *DeviceStatus) {
		s.Offline = d.st.Offline
		s.DigestPending = len(d.st.Held.Entries)
		s.Active = active
	})
}

// PeekDigestPending counts, for each device in devices, the alarm events
// flood control holds for its next digest, from the state files in
// stateDir: `plcmail status` of a stopped gateway shows them as the running
// one does (DeviceStatus.DigestPending), since they are mailed only once a
// gateway runs again. It only reads; devices with nothing held (or no
// state file yet) are left out. A state file that cannot be read is
// skipped and its error returned, after the others are counted.
func PeekDigestPending(stateDir string, devices []string) (map[string]int, error) {
	out := map[string]int{}
	var first error
	for _, name := range devices {
		st, err := loadState(stateDir, name)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if n := len(st.Held.Entries); n > 0 {
			out[name] = n
		}
	}
	return out, first
}
