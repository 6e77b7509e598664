package config

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/upstream"
)

// Channel is one [[channel]]: a fallback path for alarms besides the mail
// (issue 15), a webhook or an MQTT topic, and the rules of when an alarm
// takes it. An alarm takes a channel when any of its rules holds:
// severity_at_least (at once, whatever the mail does), not_accepted_within
// (the mail is still queued that long after it was queued) or
// upstream_failing_for (every upstream has been down that long, e.g. its
// credentials were revoked). Each delivery is kept in the spool and
// retried like mail (package channel).
type Channel struct {
	// Name identifies the channel in logs, status, metrics and its
	// deliveries in the spool; it must be stable across restarts.
	Name string `toml:"name"`
	// Kind is webhook (JSON POST of the alarm), ntfy, teams, slack
	// (their incoming webhooks' JSON shapes) or mqtt (publish over the
	// [mqtt] broker connection).
	Kind string `toml:"kind"`
	// URL is where webhook, ntfy, teams and slack POST to: https, or
	// http towards a loopback host only.
	URL string `toml:"url"`
	// Topic is where kind mqtt publishes (QoS 1).
	Topic string `toml:"topic"`
	// TokenFile holds a bearer token on its first line (mode 0600), sent
	// as "Authorization: Bearer" (ntfy access tokens, webhook receivers).
	TokenFile string `toml:"token_file"`
	// Username and PasswordFile are HTTP basic authentication instead.
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"`
	// CAFile adds trust anchors (PEM) for the receiver's certificate, for
	// a receiver on the LAN with a private CA (Node-RED, Home Assistant).
	CAFile string `toml:"ca_file"`
	// SeverityAtLeast sends every alarm of this severity or above (info,
	// warning, alarm, critical); "" turns the rule off.
	SeverityAtLeast string `toml:"severity_at_least"`
	// NotAcceptedWithin sends an alarm whose mail is not accepted by the
	// upstream this long after it was queued; 0 turns the rule off.
	NotAcceptedWithin Duration `toml:"not_accepted_within"`
	// UpstreamFailingFor sends the queued alarms once every upstream has
	// been failing this long; 0 turns the rule off.
	UpstreamFailingFor Duration `toml:"upstream_failing_for"`
	// Relayed lets mail relayed from the LAN (SMTP, plcmail send) take the
	// channel by the not_accepted_within and upstream_failing_for rules
	// too; by default only alarms of serial and Modbus links do.
	Relayed bool `toml:"relayed"`
	// Lifetime is how long a delivery is retried before it becomes a
	// dead letter; default queue.lifetime.
	Lifetime Duration `toml:"lifetime"`
}

// Channel kinds.
var channelKinds = []string{"webhook", "ntfy", "teams", "slack", "mqtt"}

var channelName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) applyChannelDefaults() {
	for i := range c.Channel {
		if c.Channel[i].Lifetime == 0 {
			c.Channel[i].Lifetime = c.Queue.Lifetime
		}
	}
}

func (c *Config) validateChannels(v *validator) {
	names := map[string]bool{}
	for i := range c.Channel {
		ch := &c.Channel[i]
		path := fmt.Sprintf("channel[%d]", i)
		ch.validate(v, path, c.MQTT != nil)
		if ch.Name != "" && names[ch.Name] {
			v.errf(path+".name", "duplicate channel name %q", ch.Name)
		}
		names[ch.Name] = true
	}
	if len(c.Channel) > 255 {
		v.errf(fmt.Sprintf("channel[%d]", 255), "at most 255 channels: the DELIVERY frame names the channel in one byte")
	}
}

func (ch *Channel) validate(v *validator, path string, haveMQTT bool) {
	if !channelName.MatchString(ch.Name) {
		v.errf(path+".name", "%q: required, letters, digits, '.', '_' and '-', at most 64", ch.Name)
	}
	known := false
	for _, k := range channelKinds {
		known = known || ch.Kind == k
	}
	if !known {
		v.errf(path+".kind", "must be one of %s, not %q", strings.Join(channelKinds, ", "), ch.Kind)
	}
	if ch.Kind == "mqtt" {
		if !haveMQTT {
			v.errf(path+".kind", "mqtt publishes over the [mqtt] broker connection: add an [mqtt] section")
		}
		switch t := ch.Topic; {
		case t == "":
			v.errf(path+".topic", "required for kind mqtt, e.g. \"plcmail/gw1/alarm\"")
		case strings.ContainsAny(t, "+#\x00\r\n") || strings.HasPrefix(t, "$"):
			v.errf(path+".topic", "%q: a topic to publish to has no wildcards, control characters or leading $", t)
		}
		if ch.URL != "" || ch.TokenFile != "" || ch.Username != "" || ch.PasswordFile != "" || ch.CAFile != "" {
			v.errf(path+".url", "kind mqtt takes topic only; the broker and its credentials are in [mqtt]")
		}
	} else if known {
		if ch.Topic != "" {
			v.errf(path+".topic", "is for kind mqtt; kind %s posts to url", ch.Kind)
		}
		u, err := url.Parse(ch.URL)
		switch {
		case ch.URL == "":
			v.errf(path+".url", "required for kind %s", ch.Kind)
		// The messages name scheme and host only: a Slack or Teams URL's
		// path is the secret, and a reload's problems go to the log.
		case err == nil && u.Scheme != "" && u.Scheme != "https" && u.Scheme != "http":
			v.errf(path+".url", "scheme %q is not http or https", u.Scheme)
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.errf(path+".url", "not an http(s) URL (https://host/path)")
		case u.Scheme == "http" && !upstream.IsLoopbackHost(u.Hostname()):
			v.errf(path+".url", "http://%s sends alarms in clear; plain http is only allowed towards a loopback host: use https", u.Host)
		case u.User != nil:
			v.errf(path+".url", "no credentials in the URL: use token_file or username and password_file")
		}
		if ch.CAFile != "" {
			if pem, err := os.ReadFile(ch.CAFile); err != nil {
				v.errf(path+".ca_file", "%v", err)
			} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
				v.errf(path+".ca_file", "%s holds no PEM certificate", ch.CAFile)
			} else if u, err := url.Parse(ch.URL); err == nil && u.Scheme == "http" {
				v.errf(path+".ca_file", "is for TLS; the url %q has none (use https)", ch.URL)
			}
		}
		if ch.TokenFile != "" && (ch.Username != "" || ch.PasswordFile != "") {
			v.errf(path+".token_file", "either token_file or username and password_file, not both")
		}
		if ch.TokenFile != "" {
			if tok, err := ReadSecret(ch.TokenFile); err != nil {
				v.errf(path+".token_file", "%v", err)
			} else if tok == "" {
				v.errf(path+".token_file", "%s is empty: put the token on its first line", ch.TokenFile)
			}
		}
		switch {
		case ch.Username == "" && ch.PasswordFile == "":
		case ch.Username == "":
			v.errf(path+".username", "required with password_file")
		case ch.PasswordFile == "":
			v.errf(path+".password_file", "required with username")
		default:
			if _, err := ReadSecret(ch.PasswordFile); err != nil {
				v.errf(path+".password_file", "%v", err)
			}
		}
	}
	if ch.SeverityAtLeast != "" {
		if _, err := protocol.ParseSeverity(ch.SeverityAtLeast); err != nil {
			v.errf(path+".severity_at_least", "must be info, warning, alarm or critical, not %q", ch.SeverityAtLeast)
		}
	}
	if ch.NotAcceptedWithin < 0 {
		v.errf(path+".not_accepted_within", "must not be negative")
	}
	if ch.UpstreamFailingFor < 0 {
		v.errf(path+".upstream_failing_for", "must not be negative")
	}
	// A rule whose value did not decode is reported at its key already.
	ruleBad := badKey(v.bad, path+".severity_at_least") || badKey(v.bad, path+".not_accepted_within") ||
		badKey(v.bad, path+".upstream_failing_for")
	if ch.SeverityAtLeast == "" && ch.NotAcceptedWithin == 0 && ch.UpstreamFailingFor == 0 && !ruleBad {
		v.errf(path, "no rule: set severity_at_least, not_accepted_within or upstream_failing_for, or the channel never carries an alarm")
	}
	if ch.Lifetime < Duration(time.Minute) {
		v.errf(path+".lifetime", "must be at least 1m")
	}
}

// ChannelSecret returns the token (bearer) or password (basic) of the
// channel, read from its file at start ("" without one).
func (ch *Channel) ChannelSecret() (string, error) {
	switch {
	case ch.TokenFile != "":
		return ReadSecret(ch.TokenFile)
	case ch.PasswordFile != "":
		return ReadSecret(ch.PasswordFile)
	}
	return "", nil
}
