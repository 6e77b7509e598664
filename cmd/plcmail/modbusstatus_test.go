package main

import (
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/modbus"
)

// TestPrintModbusHeldWaiting: events held before a restart wait for their
// digest while the since-start counter is 0; `plcmail status` must say that
// they wait, not "held 0".
func TestPrintModbusHeldWaiting(t *testing.T) {
	now := time.Date(2026, 12, 6, 3, 36, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		d    modbus.DeviceStatus
		want string
	}{
		{"after restart", modbus.DeviceStatus{Name: "tank", Up: true, Polls: 8, Held: 0, DigestPending: 1, LastGood: now},
			"held 0 (1 waiting for a digest)"},
		{"nothing waits", modbus.DeviceStatus{Name: "tank", Up: true, Polls: 8, Held: 3, DigestPending: 0, LastGood: now},
			"held 3, digests 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printModbus(&b, now, []modbus.DeviceStatus{tc.d})
			if !strings.Contains(b.String(), tc.want) {
				t.Errorf("status:\n%s\nwant %q", b.String(), tc.want)
			}
		})
	}
}

// TestPrintModbusUnreadable: a tag the device refuses is named in
// `plcmail status`, or "up" would hide that its alarms are not evaluated.
func TestPrintModbusUnreadable(t *testing.T) {
	now := time.Date(2026, 12, 6, 3, 50, 0, 0, time.UTC)
	var b strings.Builder
	printModbus(&b, now, []modbus.DeviceStatus{{Name: "tank", Up: true, Polls: 8, LastGood: now,
		Unreadable: map[string]string{"level": "illegal data address"}}})
	if want := "unreadable tag level: illegal data address"; !strings.Contains(b.String(), want) {
		t.Errorf("status:\n%s\nwant %q", b.String(), want)
	}
}
