package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/mqtt"
)

// Topics under [mqtt] topic_prefix (README, "Fleet view on an MQTT broker").
const (
	mqttStateTopic  = "/state"  // "online" / "offline", retained; the last will
	mqttStatusTopic = "/status" // fleetStatus as JSON, retained
)

// fleetPoll is how often the status is taken to see whether it changed: a
// link that drops shows on the broker within a second, and a busy gateway
// publishes at most once a second.
const fleetPoll = time.Second

// mqttOptions turns [mqtt] into the client's options. The password and the
// CA file are read here, once: a changed file takes effect at the next
// start, as for every [mqtt] setting (restartKeys names the section).
func mqttOptions(cfg *config.Config) (mqtt.Options, error) {
	m := cfg.MQTT
	o := mqtt.Options{
		Broker:     m.Broker,
		ClientID:   m.ClientID,
		Username:   m.Username,
		StateTopic: m.TopicPrefix + mqttStateTopic,
		QoS:        byte(*m.QoS),
	}
	pw, err := m.MQTTPassword()
	if err != nil {
		return o, fmt.Errorf("mqtt.password_file: %w", err)
	}
	o.Password = pw
	if m.CAFile != "" {
		pem, err := os.ReadFile(m.CAFile)
		if err != nil {
			return o, fmt.Errorf("mqtt.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return o, fmt.Errorf("mqtt.ca_file: %s holds no PEM certificate", m.CAFile)
		}
		o.RootCAs = pool
	}
	return o, nil
}

// mqttClient is the gateway's broker session, nil without [mqtt]. The
// fleet view publishes on it; a fallback channel may too (Publish).
func mqttClient(cfg *config.Config, log *slog.Logger) (*mqtt.Client, error) {
	if cfg.MQTT == nil {
		return nil, nil
	}
	o, err := mqttOptions(cfg)
	if err != nil {
		return nil, err
	}
	return mqtt.New(o, log.With("component", "mqtt"))
}

// fleetComponent runs the broker session and publishes the gateway's
// status on it: retained at PREFIX/status whenever it changes (checked
// every fleetPoll), every status_interval, and after every connect. When
// the gateway stops, a last status with online = false goes out before
// the client says "offline" and disconnects. The broker being down never
// stops the gateway or holds up anything else: publishing is skipped until
// it is back.
func fleetComponent(cfg *config.Config, client *mqtt.Client, collect func() statusSnapshot, log *slog.Logger) component {
	topic := cfg.MQTT.TopicPrefix + mqttStatusTopic
	every := cfg.MQTT.StatusInterval.D()
	log = log.With("component", "mqtt")
	return component{"mqtt", func(ctx context.Context) error {
		// The client outlives ctx by the final status: it stops when
		// this function says so.
		cctx, stopClient := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- client.Run(cctx) }()

		f := fleet{client: client, topic: topic, hostname: cfg.Gateway.Hostname, collect: collect, log: log}
		if cfg.MQTT.HomeAssistant {
			f.discovery = homeAssistantDiscovery(cfg, readBuildInfo().Version)
		}
		f.run(ctx, every)
		final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		f.publish(final, false, true)
		cancel()
		stopClient()
		return <-done
	}}
}

// fleet publishes the status of one gateway.
type fleet struct {
	client   *mqtt.Client
	topic    string
	hostname string
	collect  func() statusSnapshot
	log      *slog.Logger

	// discovery are Home Assistant's configurations (topic, payload),
	// published after each connect before the status.
	discovery    []retained
	discoveredAt uint64 // client.Connects() when they were last published

	last       []byte    // the stable part of the status last published
	lastAt     time.Time // when
	connectsAt uint64    // client.Connects() then
	failures   int       // publishes failed in a row, for the log
}

// run publishes until ctx ends.
func (f *fleet) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(fleetPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// A new connection (the broker may have restarted and lost every
		// retained message) is republished on the next poll too: a
		// fresh session always gets the status once.
		force := time.Since(f.lastAt) >= every || f.reconnected()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		f.publish(pctx, true, force)
		cancel()
	}
}

// reconnected reports whether the client connected again since the last
// publish: the session then has no retained status yet.
func (f *fleet) reconnected() bool {
	return f.client.Connects() != f.connectsAt
}

// publish sends the status when it changed since the last one sent, or
// when force is set. Not connected, it does nothing: the status is sent on
// the next poll after the connect.
func (f *fleet) publish(ctx context.Context, online, force bool) {
	if !f.client.Connected() {
		return
	}
	if connects := f.client.Connects(); len(f.discovery) > 0 && f.discoveredAt != connects {
		for _, d := range f.discovery {
			if err := f.client.PublishRetained(ctx, d.topic, d.payload); err != nil {
				f.log.Warn("could not publish the Home Assistant discovery configuration; trying again", "topic", d.topic, "err", err)
				return
			}
		}
		f.discoveredAt = connects
	}
	s := fleetStatusOf(f.collect(), f.hostname, online)
	stable := s.stable()
	if !force && bytes.Equal(stable, f.last) {
		return
	}
	connects := f.client.Connects()
	payload, _ := json.Marshal(s)
	if err := f.client.PublishRetained(ctx, f.topic, payload); err != nil {
		f.failures++
		if f.failures == 1 {
			f.log.Warn("could not publish the status to the MQTT broker; trying again", "topic", f.topic, "err", err)
		}
		return
	}
	if f.failures > 0 {
		f.log.Info("published the status to the MQTT broker again", "topic", f.topic, "failed", f.failures)
	}
	f.failures = 0
	f.last, f.lastAt, f.connectsAt = stable, time.Now(), connects
}

// fleetStatus is what PREFIX/status holds: flat, so that a Home Assistant
// value_template or a Node-RED switch reads a field without digging.
type fleetStatus struct {
	// Online is false only in the last status of an orderly stop; after
	// a crash the retained status still says true, so PREFIX/state (the
	// last will) is the word on whether the gateway runs.
	Online   bool      `json:"online"`
	Hostname string    `json:"hostname"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Time     time.Time `json:"time"` // when this status was taken

	LinksUp   int         `json:"links_up"`
	LinksDown int         `json:"links_down"` // port closed, or PLC silent
	Links     []fleetLink `json:"links"`

	Queued           int       `json:"queued"`                   // messages waiting for delivery
	OldestQueued     time.Time `json:"oldest_queued,omitzero"`   // when the oldest of them was queued
	OldestAgeSeconds int64     `json:"oldest_age_seconds"`       // how long it waits; 0 when none
	DeadLetters      int       `json:"dead_letters"`             // given up, see plcmail queue list
	Delivered        uint64    `json:"delivered"`                // since start
	LastDelivery     time.Time `json:"last_delivery,omitzero"`   // last success
	LastError        string    `json:"last_error"`               // last delivery error; "" when none
	LastErrorAt      time.Time `json:"last_error_at,omitzero"`   // when
	Upstream         string    `json:"upstream"`                 // the entry new mail takes; "" when none is usable
	UpstreamsDown    []string  `json:"upstreams_down,omitempty"` // entries held after failures
}

// fleetLink is one serial link in fleetStatus.
type fleetLink struct {
	Name      string    `json:"name"`
	Up        bool      `json:"up"`
	Connected bool      `json:"connected"` // the port is open
	Silent    bool      `json:"plc_silent"`
	LastFrame time.Time `json:"last_frame,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

func fleetStatusOf(s statusSnapshot, hostname string, online bool) fleetStatus {
	f := fleetStatus{
		Online: online, Hostname: hostname, Version: s.Version, Started: s.Started.UTC(), Time: s.Now.UTC(),
		DeadLetters: s.Dead, Delivered: s.Queue.Delivered, LastDelivery: s.Queue.LastSuccess.UTC(),
		LastError: oneLine(s.Queue.LastError), LastErrorAt: s.Queue.LastErrorAt.UTC(),
		Links: []fleetLink{},
	}
	for _, l := range s.Links {
		up := l.Connected && !l.Offline
		if up {
			f.LinksUp++
		} else {
			f.LinksDown++
		}
		f.Links = append(f.Links, fleetLink{Name: l.Name, Up: up, Connected: l.Connected, Silent: l.Offline,
			LastFrame: l.LastFrame.UTC(), LastError: oneLine(l.LastError)})
	}
	// As printStatus counts: the directory has the last word.
	f.Queued = max(s.Queue.Queued, s.Spooled)
	oldest := s.Queue.Oldest
	if !s.SpooledOldest.IsZero() && (oldest.IsZero() || s.SpooledOldest.Before(oldest)) {
		oldest = s.SpooledOldest
	}
	if f.Queued > 0 && !oldest.IsZero() {
		f.OldestQueued = oldest.UTC()
		f.OldestAgeSeconds = max(0, int64(s.Now.Sub(oldest)/time.Second))
	}
	// The first usable entry is the one in use, as printUpstreams says.
	for _, u := range s.Queue.Upstreams {
		if u.State == "ok" {
			if f.Upstream == "" {
				f.Upstream = u.Name
			}
		} else {
			f.UpstreamsDown = append(f.UpstreamsDown, u.Name)
		}
	}
	return f
}

// stable is the status without what changes by itself as time passes
// (the time it was taken, the age of the oldest message): two statuses
// with the same stable part say the same thing.
func (f fleetStatus) stable() []byte {
	f.Time, f.OldestAgeSeconds = time.Time{}, 0
	b, _ := json.Marshal(f)
	return b
}

// retained is one retained message.
type retained struct {
	topic   string
	payload []byte
}

// homeAssistantDiscovery returns the MQTT discovery configurations that
// make Home Assistant show the gateway as a device: connectivity from
// PREFIX/state (the last will turns it off), and sensors read from the
// fields of PREFIX/status. Each entity is unavailable while the gateway is
// offline. They live under Home Assistant's default discovery prefix,
// homeassistant/, one node per gateway (the client id, in the characters
// a node id allows).
func homeAssistantDiscovery(cfg *config.Config, version string) []retained {
	m := cfg.MQTT
	node := haNodeID(m.ClientID)
	state, status := m.TopicPrefix+mqttStateTopic, m.TopicPrefix+mqttStatusTopic
	device := map[string]any{
		"identifiers": []string{node}, "name": "plcmail " + cfg.Gateway.Hostname,
		"manufacturer": "plcmail", "model": "PLC alarm mail gateway", "sw_version": version,
	}
	entity := func(component, object, name string, fields map[string]any) retained {
		c := map[string]any{
			"name": name, "unique_id": node + "_" + object, "device": device,
			"availability_topic": state, "payload_available": mqtt.Online, "payload_not_available": mqtt.Offline,
		}
		for k, v := range fields {
			c[k] = v
		}
		b, _ := json.Marshal(c)
		return retained{"homeassistant/" + component + "/" + node + "/" + object + "/config", b}
	}
	sensor := func(object, name, field string, extra map[string]any) retained {
		f := map[string]any{"state_topic": status, "value_template": "{{ value_json." + field + " }}"}
		for k, v := range extra {
			f[k] = v
		}
		return entity("sensor", object, name, f)
	}
	measure := map[string]any{"state_class": "measurement"}
	return []retained{
		entity("binary_sensor", "online", "Online", map[string]any{
			"state_topic": state, "payload_on": mqtt.Online, "payload_off": mqtt.Offline, "device_class": "connectivity",
		}),
		sensor("queued", "Queued messages", "queued", measure),
		sensor("oldest_age", "Oldest queued message age", "oldest_age_seconds",
			map[string]any{"state_class": "measurement", "device_class": "duration", "unit_of_measurement": "s"}),
		sensor("dead_letters", "Dead letters", "dead_letters", measure),
		sensor("links_up", "Serial links up", "links_up", measure),
		sensor("links_down", "Serial links down", "links_down", measure),
		sensor("upstream", "Upstream in use", "upstream", nil),
		sensor("last_error", "Last delivery error", "last_error[:250]", nil), // a state holds 255 characters
	}
}

// haNodeID turns a client id into a discovery node id ([a-zA-Z0-9_-]).
func haNodeID(id string) string {
	b := []byte(id)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}
