package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/spool"
)

// upstreamRoutes turns the upstream entries (an [[upstream]] list, or the
// single [upstream]) into the delivery loop's routes, in order, each with
// its own client options (credentials, TLS policy, OAuth token source).
func upstreamRoutes(cfg *config.Config) []spool.Route {
	us, _ := cfg.UpstreamEntries()
	routes := make([]spool.Route, len(us))
	for i, u := range us {
		routes[i] = spool.Route{
			Name:             u.EntryName(),
			Upstream:         upstreamOptionsFor(cfg, u),
			RecipientDomains: u.RecipientDomains,
			SenderDomains:    u.SenderDomains,
			FailoverAfter:    u.FailoverAfter.D(),
			ProbeInterval:    u.ProbeInterval.D(),
		}
	}
	return routes
}

// upstreamNames lists the entries for the start-up log line.
func upstreamNames(cfg *config.Config) []string {
	us, _ := cfg.UpstreamEntries()
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = u.EntryName()
	}
	return names
}

// upstreamNamed returns the entry whose EntryName is name, or nil.
func upstreamNamed(cfg *config.Config, name string) *config.Upstream {
	us, _ := cfg.UpstreamEntries()
	for _, u := range us {
		if u.EntryName() == name {
			return u
		}
	}
	return nil
}

// printUpstreams shows, for an [[upstream]] list, which entry new mail
// takes and why the others are skipped. A single upstream needs no such
// section: the queue lines above say all.
func printUpstreams(w io.Writer, now time.Time, ups []spool.UpstreamStats) {
	if len(ups) < 2 {
		return
	}
	fmt.Fprintln(w, "\nupstreams (tried in order):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	inUse := false
	for _, u := range ups {
		state := ""
		switch u.State {
		case "ok":
			if !inUse {
				state, inUse = "IN USE", true
			} else {
				state = "standby"
			}
		case "probing":
			state = "DOWN, being tried again now"
		default:
			state = "DOWN"
			if !u.DownSince.IsZero() {
				state += " for " + age(now, u.DownSince)
			}
			if u.HoldUntil.After(now) {
				state += ", next try in " + age(u.HoldUntil, now)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\tdelivered %d, deferred %d, refused %d, sent on to the next %d\n",
			u.Name, u.Addr, state, u.Delivered, u.Deferred, u.Failed, u.FailedOver)
		if u.LastError != "" && u.State != "ok" {
			fmt.Fprintf(tw, "  \t\twhy: %s (%s ago)\n", oneLine(u.LastError), age(now, u.LastErrorAt))
		}
	}
	tw.Flush()
	if !inUse {
		fmt.Fprintln(w, "  no upstream is usable: mail waits in the queue until one answers")
	}
}

// loginEntry returns the upstream entry `plcmail login` signs in: the one
// named, or the first with [upstream.oauth].
func loginEntry(cfg *config.Config, name string) (*config.Upstream, error) {
	us, _ := cfg.UpstreamEntries()
	for _, u := range us {
		if name != "" && u.EntryName() != name {
			continue
		}
		if u.OAuth != nil {
			return u, nil
		}
		if name != "" {
			return nil, fmt.Errorf("upstream %q in %s has no [upstream.oauth] section: nothing to sign in to", name, cfg.File)
		}
	}
	if name != "" {
		return nil, fmt.Errorf("%s has no upstream named %q (names: %s)", cfg.File, name, strings.Join(upstreamNames(cfg), ", "))
	}
	return nil, fmt.Errorf("%s has no [upstream.oauth] section: nothing to sign in to (see README, \"Point it at your mail provider\")", cfg.File)
}
