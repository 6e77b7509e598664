package modbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/plcmail/plcmail/flood"
)

// deviceState is what survives a gateway restart for one device: its rules'
// states and whether the device was offline.
type deviceState struct {
	Rules map[string]*ruleState `json:"rules"` // "TAG/RULE"
	// Offline is true once the offline notice is queued; Outages counts
	// them, for the notices' spool keys.
	Offline  bool      `json:"offline"`
	Outages  uint64    `json:"outages"`
	LastGood time.Time `json:"last_good,omitzero"`
	// Held are the alarm events flood control held for the next digest,
	// written with the rule transition that made them.
	Held flood.Held `json:"held,omitzero"`
}

func statePath(dir, device string) string { return filepath.Join(dir, device+".json") }

// loadState reads a device's state; a missing file is a fresh device.
func loadState(dir, device string) (*deviceState, error) {
	st := &deviceState{Rules: map[string]*ruleState{}}
	b, err := os.ReadFile(statePath(dir, device))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("modbus: state of %s: %w", device, err)
	}
	if st.Rules == nil {
		st.Rules = map[string]*ruleState{}
	}
	return st, nil
}

// save writes the state durably: a temp file, fsync, rename, fsync of the
// directory, so a crash leaves either the old or the new state, whole.
func (st *deviceState) save(dir, device string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, device+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this finds nothing
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, statePath(dir, device)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
