package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/plcmail/plcmail/systemd"
)

// serveLogger is serve's logger: plain text lines on stderr, or, when
// stderr is the journal, lines with syslog priorities the journal files
// under the right PRIORITY.
func serveLogger(e *env, level slog.Leveler) *slog.Logger {
	if f, ok := e.stderr.(*os.File); ok && systemd.IsJournal(e.getenv, f) {
		return slog.New(systemd.JournalHandler(f, level))
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// serviceManager tells systemd (Type=notify) where serve is: ready once
// every component runs, reloading during a SIGHUP, stopping, and alive for
// the watchdog. Without $NOTIFY_SOCKET every call does nothing.
type serviceManager struct {
	n       *systemd.Notifier
	log     *slog.Logger
	collect func() statusSnapshot
	tick    *time.Ticker
}

func newServiceManager(collect func() statusSnapshot, log *slog.Logger) *serviceManager {
	n, err := systemd.FromEnv(os.Getenv)
	if err != nil {
		log.Warn("not notifying systemd", "err", err)
	}
	m := &serviceManager{n: n, log: log, collect: collect}
	if d := n.WatchdogInterval(); d > 0 {
		m.tick = time.NewTicker(d)
		log.Info("systemd watchdog on", "ping_every", d)
	}
	return m
}

// watchdog fires when the next ping is due; never without WatchdogSec=.
func (m *serviceManager) watchdog() <-chan time.Time {
	if m.tick == nil {
		return nil
	}
	return m.tick.C
}

// ping proves liveness: the snapshot takes the delivery loop's and every
// link's lock, so a gateway deadlocked there stops pinging and systemd
// restarts it; the spooled mail is delivered after the restart.
func (m *serviceManager) ping() { m.report(m.n.Watchdog(m.summary())) }

func (m *serviceManager) ready()     { m.report(m.n.Ready(m.summary())) }
func (m *serviceManager) reloading() { m.report(m.n.Reloading()) }

func (m *serviceManager) stopping() {
	m.report(m.n.Stopping())
	if m.tick != nil {
		m.tick.Stop()
	}
}

func (m *serviceManager) report(err error) {
	if err != nil {
		m.log.Warn("systemd notification failed", "err", err)
	}
}

// summary is the one line `systemctl status plcmail` shows.
func (m *serviceManager) summary() string {
	if m.n == nil {
		return ""
	}
	s := m.collect()
	up := 0
	for _, l := range s.Links {
		if l.Connected && !l.Offline {
			up++
		}
	}
	return fmt.Sprintf("%d/%d links up, %d queued, %d dead letters", up, len(s.Links), max(s.Queue.Queued, s.Spooled), s.Dead)
}
