// Package mqtt is the gateway's client of an MQTT broker: one session, kept
// up with reconnects and backoff, that announces the gateway "online" when it
// connects and "offline" when it stops (a clean publish on an orderly stop,
// the broker's last will when the process dies), and a Publish that returns
// only once the broker has acknowledged the message.
//
// Two parts of the gateway use it: the fleet view (the gateway's status,
// retained on the broker, so that many gateways are watched from one
// Node-RED, Home Assistant or Grafana) and the mqtt fallback channel for
// alarms. Neither may hold up an alarm: nothing here blocks longer than its
// caller's context, and a broker that is down makes Publish fail at once
// with ErrNotConnected rather than queue in memory.
//
// The protocol is eclipse/paho.mqtt.golang's (MQTT 3.1.1): the Eclipse
// Foundation's Go client, maintained since 2013, pure Go, with keep-alive,
// automatic reconnect and QoS 1/2 flows that a hand-written client would
// have to get right again. It adds 576 KiB to the stripped
// linux/mipsle binary (README, "Fleet view").
package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// The payloads of Options.StateTopic: Home Assistant's defaults for an
// availability topic, so an entity needs no payload_available settings.
const (
	Online  = "online"
	Offline = "offline"
)

// Options configure a Client. Broker is required; the zero value of every
// other field has a working default.
type Options struct {
	// Broker is the broker's URL: mqtts://host[:port] (also ssl:// or
	// tls://; port 8883 by default) for TLS, tcp://host[:port] (or
	// mqtt://; port 1883) for plaintext. Whether plaintext is acceptable
	// is the configuration's decision (config/mqtt.go allows it towards
	// loopback hosts only).
	Broker string
	// ClientID identifies the session at the broker; two clients with the
	// same id take the session from each other, so it must be unique per
	// gateway.
	ClientID string
	Username string
	Password string
	// RootCAs verifies the broker's certificate chain; nil means the
	// system roots. The host name is always verified.
	RootCAs *x509.CertPool
	// StateTopic, when set, gets Online (retained) after each connect and
	// Offline (retained) both as the last will, which the broker publishes
	// when the connection dies without a DISCONNECT (process killed, box
	// unplugged, network gone for 1.5 keep-alives), and from Run when its
	// context ends.
	StateTopic string
	// QoS of the state messages and of PublishRetained: 0, 1 or 2.
	QoS byte
	// ConnectTimeout bounds a connection attempt (TCP, TLS and CONNACK);
	// default 10s.
	ConnectTimeout time.Duration
	// KeepAlive is the MQTT keep-alive: how soon the broker notices a
	// dead connection and publishes the will (1.5 times this); default 30s.
	KeepAlive time.Duration
	// MaxBackoff caps the wait between connection attempts, which doubles
	// from one second after each failure; default one minute.
	MaxBackoff time.Duration
}

// Errors of Publish and PublishRetained.
var (
	// ErrNotConnected: the client has no connection to the broker right
	// now (not yet, or it is reconnecting); the message was not sent.
	// Retry later.
	ErrNotConnected = errors.New("not connected to the MQTT broker")
	// ErrBadTopic: the topic is empty or has a wildcard or NUL; retrying
	// cannot help.
	ErrBadTopic = errors.New("not a topic to publish to")
)

// Client is one MQTT session with the broker of its Options. Publish can be
// called from any goroutine, before, during and after Run.
type Client struct {
	o      Options
	broker *url.URL
	log    *slog.Logger
	pc     paho.Client

	mu       sync.Mutex
	failures int       // failed attempts since the last connect
	lastErr  string    // the error of the last failed attempt, logged once
	downAt   time.Time // when the connection was lost, for the "connected" log line
	stopping bool

	lostc    chan struct{} // the connection broke: Run connects again
	connects atomic.Uint64
}

// Defaults of Options.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultKeepAlive      = 30 * time.Second
	DefaultMaxBackoff     = time.Minute
	minBackoff            = time.Second
	// writeTimeout bounds paho's hand-over of one packet to its writer;
	// Publish is bounded by its context anyway.
	writeTimeout = 10 * time.Second
	// stopTimeout bounds the Offline message and the DISCONNECT at the end
	// of Run, so a broker that does not answer cannot delay a shutdown.
	stopTimeout = 2 * time.Second
)

// New checks o and prepares the client; it does not connect (Run does).
func New(o Options, log *slog.Logger) (*Client, error) {
	u, err := BrokerURL(o.Broker)
	if err != nil {
		return nil, err
	}
	if o.ClientID == "" {
		return nil, errors.New("mqtt: a client id is required")
	}
	if o.QoS > 2 {
		return nil, fmt.Errorf("mqtt: QoS must be 0, 1 or 2, not %d", o.QoS)
	}
	if o.StateTopic != "" {
		if err := checkTopic(o.StateTopic); err != nil {
			return nil, err
		}
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{o: o, broker: u, log: log, lostc: make(chan struct{}, 1)}

	po := paho.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(o.ClientID).
		SetCleanSession(true). // nothing to resume: the state is republished on connect
		SetOrderMatters(false).
		SetConnectTimeout(o.ConnectTimeout).
		SetKeepAlive(o.KeepAlive).
		SetPingTimeout(o.ConnectTimeout).
		SetWriteTimeout(writeTimeout).
		// Run reconnects, not paho: paho's reconnect resends what was in
		// flight while new messages are being written, and races with
		// them over the shared packets (go test -race found it). A new
		// clean session instead fails what was in flight (the caller
		// retries) and starts empty.
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetProtocolVersion(4). // 3.1.1; no silent fall back to 3.1
		SetDialer(&net.Dialer{Timeout: o.ConnectTimeout}).
		SetOnConnectHandler(func(paho.Client) { c.connected() }).
		SetConnectionLostHandler(func(_ paho.Client, err error) { c.lost(err) }).
		SetConnectionNotificationHandler(func(_ paho.Client, n paho.ConnectionNotification) {
			if f, ok := n.(paho.ConnectionNotificationFailed); ok {
				c.failed(f.Reason)
			}
		})
	if o.Username != "" {
		po.SetUsername(o.Username)
		po.SetPassword(o.Password)
	}
	if isTLS(u.Scheme) {
		po.SetTLSConfig(&tls.Config{RootCAs: o.RootCAs, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12})
	}
	if o.StateTopic != "" {
		po.SetWill(o.StateTopic, Offline, o.QoS, true)
	}
	c.pc = paho.NewClient(po)
	return c, nil
}

// BrokerURL parses a broker URL as Options.Broker takes it and returns it
// with the default port filled in. Its errors say what is wrong for a
// configuration message.
func BrokerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%q is not a broker URL (e.g. mqtts://broker.example.com:8883)", s)
	}
	port := "1883"
	switch u.Scheme {
	case "mqtts", "ssl", "tls":
		port = "8883"
	case "tcp", "mqtt":
	default:
		return nil, fmt.Errorf("%q: scheme must be mqtts:// (or ssl://, tls://) for TLS, or tcp:// (or mqtt://) without", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q: put the user name in username and the password in password_file, not in the URL", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: a broker URL has no path or query", s)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.Path = ""
	return u, nil
}

// IsTLS reports whether a broker URL as BrokerURL returns it uses TLS.
func IsTLS(u *url.URL) bool { return isTLS(u.Scheme) }

func isTLS(scheme string) bool { return scheme == "mqtts" || scheme == "ssl" || scheme == "tls" }

// Run connects, retrying with backoff until the broker answers, and
// connects again whenever the connection breaks, until ctx ends. The wait
// between attempts doubles from one second to MaxBackoff, and starts over
// only after a connection that lasted MaxBackoff: a broker that accepts and
// drops us at once (another gateway with our client id) is not hammered.
// When ctx ends Run publishes Offline on the state topic, waits up to two
// seconds for it to be acknowledged, and disconnects cleanly. It returns
// nil: a broker that is down or refuses us is logged, never a reason to
// stop the gateway.
func (c *Client) Run(ctx context.Context) error {
	wait := minBackoff
	for {
		t := c.pc.Connect()
		select {
		case <-t.Done():
		case <-ctx.Done():
			// The attempt ends within ConnectTimeout; a session it
			// opens after all is closed again at once.
			go func() {
				t.Wait()
				c.pc.Disconnect(0)
			}()
			return nil
		}
		// A failed attempt is logged by the notification handler (failed).
		if t.Error() == nil {
			up := time.Now()
			select {
			case <-ctx.Done():
				c.stop()
				return nil
			case <-c.lostc:
			}
			if time.Since(up) >= c.o.MaxBackoff {
				wait = minBackoff
			}
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		wait = min(2*wait, c.o.MaxBackoff)
	}
}

// stop says Offline (the will is not sent after a clean DISCONNECT) and
// disconnects.
func (c *Client) stop() {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	if c.o.StateTopic != "" && c.pc.IsConnectionOpen() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		err := c.publish(ctx, c.o.StateTopic, c.o.QoS, true, []byte(Offline))
		cancel()
		if err != nil {
			c.log.Warn("could not say offline to the MQTT broker before stopping", "err", err)
		}
	}
	c.pc.Disconnect(uint(stopTimeout / time.Millisecond))
	c.log.Info("disconnected from the MQTT broker", "broker", c.broker.Redacted())
}

// Connects counts the connects since New, each counted once its Online
// message is sent. A broker restarted without persistence has lost every
// retained message: whoever publishes retained state compares this count
// with the one at its last publish, and publishes again when it grew.
func (c *Client) Connects() uint64 { return c.connects.Load() }

// Connected reports whether the client has a connection to the broker
// right now.
func (c *Client) Connected() bool { return c.pc.IsConnectionOpen() }

// Publish sends payload to topic with QoS 1, not retained, and returns once
// the broker has acknowledged it (PUBACK), or with an error when ctx ends
// first. Every error but ErrBadTopic is temporary: the caller keeps the
// message and calls Publish again later. An error after the message was
// sent (ctx ended while waiting for the PUBACK, connection lost) does not
// prove it did not arrive, and QoS 1 is at-least-once anyway: a subscriber
// may see a message twice, so give payloads an id to recognise a repeat by.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	return c.publish(ctx, topic, 1, false, payload)
}

// PublishRetained sends payload to topic retained, with Options.QoS, and
// waits like Publish (for QoS 0 only until it is written). The broker
// keeps the last retained message of a topic and hands it to every new
// subscriber: the way a status is published.
func (c *Client) PublishRetained(ctx context.Context, topic string, payload []byte) error {
	return c.publish(ctx, topic, c.o.QoS, true, payload)
}

func (c *Client) publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	// Not connected, paho would fail the message anyway; the caller
	// keeps it, durably, and tries again.
	if !c.pc.IsConnectionOpen() {
		return fmt.Errorf("mqtt: publishing to %s: %w", topic, ErrNotConnected)
	}
	// paho's Publish itself can wait (up to writeTimeout) for its writer:
	// in a goroutine, so that ctx bounds the whole call.
	tc := make(chan paho.Token, 1)
	go func() { tc <- c.pc.Publish(topic, qos, retained, payload) }()
	var t paho.Token
	select {
	case t = <-tc:
	case <-ctx.Done():
		return fmt.Errorf("mqtt: publishing to %s: %w", topic, context.Cause(ctx))
	}
	select {
	case <-t.Done():
	case <-ctx.Done():
		return fmt.Errorf("mqtt: publishing to %s: no acknowledgement from the broker: %w", topic, context.Cause(ctx))
	}
	if err := t.Error(); err != nil {
		if errors.Is(err, paho.ErrNotConnected) {
			err = ErrNotConnected
		}
		return fmt.Errorf("mqtt: publishing to %s: %w", topic, err)
	}
	return nil
}

// checkTopic refuses what a broker would answer by closing the connection.
func checkTopic(topic string) error {
	if topic == "" || strings.ContainsAny(topic, "+#\x00") || len(topic) > 65535 {
		return fmt.Errorf("mqtt: %q: %w (no wildcards + or #)", topic, ErrBadTopic)
	}
	return nil
}

// connected runs after each successful connect: birth message, then
// the count Connects reports.
func (c *Client) connected() {
	c.mu.Lock()
	failures, down := c.failures, c.downAt
	c.failures, c.lastErr, c.downAt = 0, "", time.Time{}
	c.mu.Unlock()
	args := []any{"broker", c.broker.Redacted(), "client_id", c.o.ClientID}
	if !down.IsZero() {
		args = append(args, "down_for", time.Since(down).Round(time.Second).String())
	}
	if failures > 0 {
		args = append(args, "failed_attempts", failures)
	}
	c.log.Info("connected to the MQTT broker", args...)
	if c.o.StateTopic != "" {
		ctx, cancel := context.WithTimeout(context.Background(), c.o.ConnectTimeout)
		err := c.publish(ctx, c.o.StateTopic, c.o.QoS, true, []byte(Online))
		cancel()
		if err != nil {
			c.log.Warn("could not say online to the MQTT broker", "topic", c.o.StateTopic, "err", err)
		}
	}
	c.connects.Add(1)
}

// lost logs a connection that broke and has Run connect again.
func (c *Client) lost(err error) {
	c.mu.Lock()
	c.downAt = time.Now()
	c.mu.Unlock()
	c.log.Warn("lost the connection to the MQTT broker; reconnecting", "broker", c.broker.Redacted(), "err", err)
	select {
	case c.lostc <- struct{}{}:
	default:
	}
}

// failed logs a failed connection attempt: the first one of an outage,
// and whenever the reason changes, at warning level; repeats at debug
// level, so that a broker down for a day does not fill the journal.
func (c *Client) failed(err error) {
	err = explain(err)
	c.mu.Lock()
	c.failures++
	n, repeat, stopping := c.failures, c.lastErr == err.Error(), c.stopping
	c.lastErr = err.Error()
	c.mu.Unlock()
	if stopping {
		return
	}
	level := slog.LevelWarn
	if repeat {
		level = slog.LevelDebug
	}
	c.log.Log(context.Background(), level, "cannot connect to the MQTT broker; retrying with backoff", "broker", c.broker.Redacted(), "attempt", n, "err", err)
}

// explain adds what to do to the errors a user can fix.
func explain(err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (the broker's certificate is not signed by a CA among the system roots or in mqtt.ca_file)", err)
	case errors.As(err, &host):
		return fmt.Errorf("%w (connect by the name the certificate is issued for)", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w (the broker's certificate is expired or not valid for a server)", err)
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return fmt.Errorf("%w (the broker refused mqtt.username and the password in mqtt.password_file)", err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Errorf("%w (the broker refused mqtt.client_id)", err)
	}
	return err
}
