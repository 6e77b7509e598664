// Package systemd talks to the service manager the way sd_notify(3) and
// sd-daemon(3) describe: readiness, reload and stop notifications, the
// watchdog, and log priorities the journal understands.
//
// The notify protocol is one datagram of NAME=value lines to the Unix
// socket named by $NOTIFY_SOCKET; these few lines replace go-systemd's
// daemon package, which brings nothing more for this use.
package systemd

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notifier sends notifications to the service manager. A nil *Notifier
// (not started by systemd with Type=notify) accepts every call and does
// nothing, so callers need no checks.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration
}

// FromEnv returns the notifier of $NOTIFY_SOCKET, or nil when it is not set
// (not run by systemd, or not Type=notify). getenv is os.Getenv outside
// tests.
func FromEnv(getenv func(string) string) (*Notifier, error) {
	path := getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil, nil
	}
	// "@name" is an abstract socket; Go's net package maps the leading
	// "@" to the NUL byte itself.
	if !strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "@") {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: only Unix socket paths are supported", path)
	}
	n := &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
	// WatchdogSec= sets WATCHDOG_USEC; WATCHDOG_PID says for which
	// process, so that a child inheriting the environment does not ping.
	if us, err := strconv.ParseInt(getenv("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
		if pid := getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(us) * time.Microsecond
		}
	}
	return n, nil
}

// WatchdogInterval is how often Watchdog must be called: half of
// WatchdogSec=, as sd_watchdog_enabled(3) recommends; 0 when the watchdog
// is off.
func (n *Notifier) WatchdogInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog / 2
}

// Ready reports that start-up (or a reload) is complete; status is shown by
// systemctl status.
func (n *Notifier) Ready(status string) error { return n.send("READY=1", status) }

// Reloading reports that a reload begins; Ready reports its end.
// MONOTONIC_USEC lets the manager tell this reload from an earlier one.
func (n *Notifier) Reloading() error {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return err
	}
	return n.send("RELOADING=1", "", "MONOTONIC_USEC="+strconv.FormatInt(ts.Nano()/1000, 10))
}

// Stopping reports that the service is shutting down.
func (n *Notifier) Stopping() error { return n.send("STOPPING=1", "") }

// Watchdog tells the manager the service is alive; status, when not empty,
// updates the line systemctl status shows.
func (n *Notifier) Watchdog(status string) error { return n.send("WATCHDOG=1", status) }

// Status updates the line systemctl status shows.
func (n *Notifier) Status(status string) error { return n.send("", status) }

func (n *Notifier) send(state, status string, extra ...string) error {
	if n == nil {
		return nil
	}
	var lines []string
	if state != "" {
		lines = append(lines, state)
	}
	lines = append(lines, extra...)
	if status != "" {
		lines = append(lines, "STATUS="+strings.ReplaceAll(status, "\n", " "))
	}
	if len(lines) == 0 {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	msg := strings.Join(lines, "\n") + "\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
