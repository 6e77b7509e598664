package config

import (
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Failover holds the keys an [[upstream]] entry adds to [upstream]: its
// name, its routing rules and its failover timing (spool.Route has the
// policy). They are embedded in Upstream, so the single [upstream] table
// accepts name and the timings too, harmlessly; rules there are an error.
type Failover struct {
	// Name identifies the entry in logs, status, metrics and each queued
	// message's state; default "host:port". Keep it stable: a message
	// stays on its entry across restarts by this name.
	Name string `toml:"name"`
	// RecipientDomains and SenderDomains limit the entry to messages whose
	// recipients (all of them) or envelope sender are in these domains;
	// ".example.com" matches subdomains. Empty: every message.
	RecipientDomains []string `toml:"recipient_domains"`
	SenderDomains    []string `toml:"sender_domains"`
	// FailoverAfter (default 10m) is how long a message stays on this entry after its
	// first failure there that is the message's own (4xx to RCPT or DATA)
	// before it moves to the next entry. An entry that cannot deliver at
	// all (down, TLS, AUTH, 4xx to MAIL) is left at once.
	FailoverAfter Duration `toml:"failover_after"`
	// ProbeInterval (default 5m) caps the wait before a failed entry is tried again: how
	// soon a recovered primary carries mail again.
	ProbeInterval Duration `toml:"probe_interval"`
}

// Failover defaults.
const (
	DefaultFailoverAfter = 10 * time.Minute
	DefaultProbeInterval = 5 * time.Minute
)

// decodeUpstreamList takes an [[upstream]] array of tables out of top and
// decodes it into c.Upstreams, each entry starting from the [upstream]
// defaults; c.Upstream then holds the first entry, which the rest of the
// program reads for from, the EHLO timeout and `plcmail test`. A single
// [upstream] table is left to the generic decoder.
func (c *Config) decodeUpstreamList(d *decoder, top map[string]toml.Primitive) {
	p, ok := top["upstream"]
	if !ok {
		return
	}
	var elems []toml.Primitive
	if _, isArr := d.raw(p).([]map[string]any); !isArr || d.md.PrimitiveDecode(p, &elems) != nil {
		return
	}
	delete(top, "upstream")
	def := Default().Upstream
	c.Upstreams = make([]Upstream, len(elems))
	for i, e := range elems {
		c.Upstreams[i] = def
		d.value(e, reflect.ValueOf(&c.Upstreams[i]).Elem(), fmt.Sprintf("upstream[%d]", i))
	}
	if len(c.Upstreams) > 0 {
		c.Upstream = c.Upstreams[0]
	}
}

// UpstreamEntries returns the upstream entries in order with the key path
// of each ("upstream" for the single table, "upstream[N]" for a list).
func (c *Config) UpstreamEntries() ([]*Upstream, []string) {
	if len(c.Upstreams) == 0 {
		return []*Upstream{&c.Upstream}, []string{"upstream"}
	}
	us := make([]*Upstream, len(c.Upstreams))
	paths := make([]string, len(c.Upstreams))
	for i := range c.Upstreams {
		us[i], paths[i] = &c.Upstreams[i], fmt.Sprintf("upstream[%d]", i)
	}
	return us, paths
}

// EntryName is the entry's name: name, or "host:port".
func (u *Upstream) EntryName() string {
	if u.Name != "" {
		return u.Name
	}
	return net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(u.Port))
}

// applyUpstreamDefaults fills the derived defaults of every entry and keeps
// c.Upstream the first entry of a list.
func (c *Config) applyUpstreamDefaults() {
	us, paths := c.UpstreamEntries()
	for i, u := range us {
		if u.Port == 587 && u.Security == SecurityTLS && !c.pos.has(paths[i]+".port") {
			u.Port = 465
		}
	}
	if len(c.Upstreams) > 0 {
		c.Upstream = c.Upstreams[0]
	}
}

// validateUpstreams checks every entry, and what only makes sense across
// entries: distinct names and OAuth token files, rules only in a list.
func (c *Config) validateUpstreams(v *validator) {
	us, paths := c.UpstreamEntries()
	names := map[string]string{}
	tokens := map[string]string{}
	for i, u := range us {
		p := paths[i]
		u.validateAt(v, p, i == 0)
		if i > 0 && u.From != "" && u.From != us[0].From {
			// Messages are queued with one sender; a per-entry sender
			// would rewrite mail already signed or filtered on it.
			v.errf(p+".from", "only the first [[upstream]] sets from (the sender of alarm mails); remove it here or make it %q", us[0].From)
		}
		c.validateOAuthAt(v, u, p)
		if u.Name != "" && strings.TrimSpace(u.Name) != u.Name || strings.ContainsAny(u.Name, "\r\n\t") {
			v.errf(p+".name", "%q: no leading or trailing spaces, no control characters", u.Name)
		}
		if first, dup := names[u.EntryName()]; dup {
			if u.Name != "" {
				v.errf(p+".name", "duplicate upstream name %q (also %s)", u.Name, first)
			} else {
				v.errf(p, "another entry (%s) has the same host and port: give each a distinct name", first)
			}
		}
		names[u.EntryName()] = p
		if u.OAuth != nil {
			tf := c.OAuthTokenFileFor(u)
			if first, dup := tokens[tf]; dup {
				v.errf(p+".oauth.token_file", "%s is also the token file of %s: set token_file, or a distinct name, for each signed-in account", tf, first)
			}
			tokens[tf] = p
		}
		if len(c.Upstreams) == 0 {
			for _, k := range []struct {
				key string
				set bool
			}{{"recipient_domains", len(u.RecipientDomains) > 0}, {"sender_domains", len(u.SenderDomains) > 0}} {
				if k.set {
					v.errf(p+"."+k.key, "routing rules need a list of upstreams: write [[upstream]] entries (a single [upstream] takes every message)")
				}
			}
		}
		for _, k := range []struct {
			key  string
			list []string
		}{{"recipient_domains", u.RecipientDomains}, {"sender_domains", u.SenderDomains}} {
			for j, d := range k.list {
				dd := strings.TrimPrefix(d, ".")
				if dd == "" || strings.ContainsAny(dd, " \t\r\n@<>,;*") || strings.Contains(dd, "..") {
					v.errf(fmt.Sprintf("%s.%s[%d]", p, k.key, j), "%q is not a domain (\"example.com\", or \".example.com\" for its subdomains)", d)
				}
			}
		}
		// Zero is the default (a configuration built in code); written
		// out, it must be positive.
		if u.FailoverAfter < 0 || u.FailoverAfter == 0 && c.pos.has(p+".failover_after") {
			v.errf(p+".failover_after", "must be positive")
		}
		if u.ProbeInterval < 0 || u.ProbeInterval == 0 && c.pos.has(p+".probe_interval") {
			v.errf(p+".probe_interval", "must be positive")
		}
	}
	if len(c.Upstreams) > 0 && !c.DecodeFailed("upstream") {
		last := us[len(us)-1]
		catchAll := false
		for _, u := range us {
			catchAll = catchAll || len(u.RecipientDomains)+len(u.SenderDomains) == 0
		}
		if !catchAll && last != nil {
			v.errf(paths[len(paths)-1], "every [[upstream]] has routing rules: mail that matches none would wait in the queue; leave the rules out of one entry (usually the last)")
		}
	}
}
