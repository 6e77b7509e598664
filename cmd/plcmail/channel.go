package main

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/channel"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/mqtt"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// channelDispatcher builds the fallback channels of cfg ([[channel]]) on
// the spool, or returns nil without any. It hooks them into the spool
// (alarms of a high severity are recorded before their mail is written)
// and sends the PLCs a DELIVERY frame with via for every alarm a channel
// accepted.
func channelDispatcher(cfg *config.Config, sp *spool.Spool, queue *spool.Queue, links *bridge.Bridge, mqttc *mqtt.Client, log *slog.Logger) (*channel.Dispatcher, error) {
	if len(cfg.Channel) == 0 {
		return nil, nil
	}
	o, err := channelOptions(cfg, mqttc)
	if err != nil {
		return nil, err
	}
	o.UpstreamDownSince = func() time.Time { return upstreamDownSince(queue.Stats()) }
	d, err := channel.New(sp, o, log.With("component", "channel"))
	if err != nil {
		return nil, err
	}
	sp.BeforeEnqueue(d.Hook)
	d.OnResult(func(r channel.Result) {
		if r.Delivered {
			links.ChannelDelivery(r.Alarm.Key, r.Alarm.Origin, r.Via, r.Code)
		}
	})
	return d, nil
}

// channelOptions turns [[channel]] into the dispatcher's options, reading
// the secrets.
func channelOptions(cfg *config.Config, mqttc *mqtt.Client) (channel.Options, error) {
	o := channel.Options{Hostname: cfg.Gateway.Hostname, Timeout: cfg.Upstream.Timeout.D(), ScanEvery: cfg.Queue.ScanEvery.D()}
	for _, c := range cfg.Channel {
		ch := channel.Channel{
			Name: c.Name, Kind: channel.Kind(c.Kind), URL: c.URL, Topic: c.Topic, Username: c.Username,
			NotAcceptedWithin: c.NotAcceptedWithin.D(), UpstreamFailingFor: c.UpstreamFailingFor.D(),
			Relayed: c.Relayed, Lifetime: c.Lifetime.D(),
		}
		secret, err := c.ChannelSecret()
		if err != nil {
			return o, fmt.Errorf("channel %s: %w", c.Name, err)
		}
		if c.TokenFile != "" {
			ch.Token = secret
		} else {
			ch.Password = secret
		}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return o, fmt.Errorf("channel %s: ca_file: %w", c.Name, err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return o, fmt.Errorf("channel %s: ca_file: %s holds no PEM certificate", c.Name, c.CAFile)
			}
			ch.RootCAs = pool
		}
		if c.SeverityAtLeast != "" {
			sev, err := protocol.ParseSeverity(c.SeverityAtLeast)
			if err != nil {
				return o, fmt.Errorf("channel %s: %w", c.Name, err)
			}
			ch.HasSeverityRule, ch.SeverityAtLeast = true, sev
		}
		if ch.Kind == channel.MQTT {
			if mqttc == nil {
				return o, fmt.Errorf("channel %s: kind mqtt needs [mqtt]", c.Name)
			}
			ch.Publish = channel.MQTTPublish(mqttc)
		}
		o.Channels = append(o.Channels, ch)
	}
	return o, nil
}

// upstreamDownSince is since when every upstream has been failing (the
// latest DownSince of them all), or zero while one is not down.
func upstreamDownSince(st spool.Stats) time.Time {
	var since time.Time
	if len(st.Upstreams) == 0 {
		return since
	}
	for _, u := range st.Upstreams {
		if u.State == "ok" || u.DownSince.IsZero() {
			return time.Time{}
		}
		if u.DownSince.After(since) {
			since = u.DownSince
		}
	}
	return since
}

// withChannels adds the channels' state to the status snapshots.
func withChannels(collect func() statusSnapshot, d *channel.Dispatcher) func() statusSnapshot {
	if d == nil {
		return collect
	}
	return func() statusSnapshot {
		s := collect()
		s.Channels = d.Stats()
		return s
	}
}
