package modbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/plcmail/plcmail/durable"
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

// save writes the state durably (durable.WriteFile: a temp file, fsync,
// rename, fsync of the directory), so a crash leaves either the old or the
// new state, whole.
func (st *deviceState) save(dir, device string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// The temporary name ends in .tmp, never .json: a leftover of a crash
	// is never read as a device's state.
	return durable.WriteFile(statePath(dir, device), b, durable.Options{TempPattern: device + ".*.tmp"})
}
