package main

import (
	"log/slog"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/web"
)

// webComponent starts the [http] listener (metrics and status page) on the
// same snapshots `plcmail status` shows. It reports false when [http] is
// absent or its address cannot be bound: monitoring must never keep the
// alarms from going out, so the gateway then runs on without it, and says
// so in the log (and a scraper sees the target down).
func webComponent(cfg *config.Config, collect func() statusSnapshot, log *slog.Logger) (component, bool) {
	h := cfg.HTTP
	if h == nil {
		return component{}, false
	}
	log = log.With("component", "http")
	b := readBuildInfo()
	o := web.Options{Listen: h.Listen, Status: func() web.Status { return webStatus(collect(), b) }}
	if h.PasswordFile != "" {
		o.Username, o.Password = h.Username, h.HTTPPassword
	} else if !h.IsLoopback() {
		log.Warn("http listener without authentication on a non-loopback address: anyone who reaches it can read the status page; set [http] username and password_file", "listen", h.Listen)
	}
	srv, err := web.Listen(o, log)
	if err != nil {
		log.Error("no metrics or status page", "err", err)
		return component{}, false
	}
	return component{"http", srv.Run}, true
}

// webStatus is the listener's view of a snapshot.
func webStatus(s statusSnapshot, b buildInfo) web.Status {
	return web.Status{
		Version: b.Version, Commit: b.commitString(), GoVersion: b.Go, PID: s.PID, Config: s.Config,
		Started: s.Started, Now: s.Now, Links: s.Links, Queue: s.Queue,
		Spooled: s.Spooled, SpooledOldest: s.SpooledOldest, Dead: s.Dead, Corrupt: s.Corrupt, SMTP: s.SMTP,
		Modbus:   s.Modbus,
		Channels: s.Channels,
	}
}
