package config

import (
	"crypto/x509"
	"os"
	"strings"
	"time"

	"github.com/plcmail/plcmail/mqtt"
	"github.com/plcmail/plcmail/upstream"
)

// MQTT configures the optional connection to an MQTT broker ([mqtt]): the
// fleet view publishes the gateway's status there, retained, with a last
// will, so that many gateways are watched from one place. The section absent
// means no connection.
type MQTT struct {
	// Broker is the broker's URL: mqtts://host[:8883] (or ssl://) with the
	// certificate verified against the system roots plus ca_file;
	// tcp://host[:1883] sends the password in clear and is allowed towards a
	// loopback host only, like upstream security = "none".
	Broker   string `toml:"broker"`
	Username string `toml:"username"`
	// PasswordFile holds the password on its first line, mode 0600.
	PasswordFile string `toml:"password_file"`
	CAFile       string `toml:"ca_file"` // extra trust anchors, PEM
	// ClientID must be unique per gateway at the broker; default
	// "plcmail-" + gateway.hostname.
	ClientID string `toml:"client_id"`
	// TopicPrefix is where this gateway's topics live (PREFIX/state,
	// PREFIX/status); default "plcmail/" + gateway.hostname.
	TopicPrefix string `toml:"topic_prefix"`
	// StatusInterval is how often the status is published when nothing
	// changes (it is published at once on a change); default 60s.
	StatusInterval Duration `toml:"status_interval"`
	// QoS of the retained state and status messages: 0, 1 (default) or 2.
	QoS *int `toml:"qos"`
	// HomeAssistant publishes MQTT discovery configurations (retained,
	// under homeassistant/), so that Home Assistant shows the gateway as a
	// device with its sensors without any YAML.
	HomeAssistant bool `toml:"home_assistant"`
}

// DefaultMQTTStatusInterval is the status period when [mqtt] sets none: a
// dashboard's "last seen" stays fresh, and a gateway sends 1440 small
// messages a day.
const DefaultMQTTStatusInterval = Duration(60 * time.Second)

// applyDefaults fills the values derived from the gateway's host name.
func (m *MQTT) applyDefaults(g *Gateway) {
	if m.ClientID == "" {
		m.ClientID = "plcmail-" + g.Hostname
	}
	if m.TopicPrefix == "" {
		m.TopicPrefix = "plcmail/" + g.Hostname
	}
	if m.StatusInterval == 0 {
		m.StatusInterval = DefaultMQTTStatusInterval
	}
	if m.QoS == nil {
		one := 1
		m.QoS = &one
	}
}

func (m *MQTT) validate(v *validator) {
	if m.Broker == "" {
		v.errf("mqtt.broker", "required: the broker's URL, e.g. mqtts://broker.example.com:8883")
	} else if u, err := mqtt.BrokerURL(m.Broker); err != nil {
		v.errf("mqtt.broker", "%v", err)
	} else if !mqtt.IsTLS(u) && !upstream.IsLoopbackHost(u.Hostname()) {
		v.errf("mqtt.broker", "%q sends the password and the gateway's status in clear; plaintext tcp:// is only allowed towards a loopback host: use mqtts://", m.Broker)
	} else if !mqtt.IsTLS(u) && m.CAFile != "" {
		v.errf("mqtt.ca_file", "is for TLS; the broker URL %q has none (use mqtts://)", m.Broker)
	}
	switch {
	case m.Username == "" && m.PasswordFile == "":
	case m.Username == "":
		v.errf("mqtt.username", "required with password_file")
	case m.PasswordFile != "":
		if pw, err := ReadSecret(m.PasswordFile); err != nil {
			v.errf("mqtt.password_file", "%v", err)
		} else if pw == "" {
			v.errf("mqtt.password_file", "%s is empty: put the password on its first line", m.PasswordFile)
		}
	}
	if m.CAFile != "" {
		if pem, err := os.ReadFile(m.CAFile); err != nil {
			v.errf("mqtt.ca_file", "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			v.errf("mqtt.ca_file", "%s holds no PEM certificate", m.CAFile)
		}
	}
	if m.ClientID == "" || len(m.ClientID) > 65535 || strings.ContainsAny(m.ClientID, "\x00") {
		v.errf("mqtt.client_id", "%q is not a client id", m.ClientID)
	}
	switch p := m.TopicPrefix; {
	case strings.ContainsAny(p, "+#"):
		v.errf("mqtt.topic_prefix", "%q: a topic to publish to has no wildcards + or #", p)
	case strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//"):
		v.errf("mqtt.topic_prefix", "%q: no leading, trailing or double /: topics become PREFIX/status and PREFIX/state", p)
	case strings.HasPrefix(p, "$"):
		v.errf("mqtt.topic_prefix", "%q: topics starting with $ are the broker's own", p)
	case strings.ContainsAny(p, "\x00\r\n"):
		v.errf("mqtt.topic_prefix", "%q: must not contain control characters", p)
	}
	if m.StatusInterval < Duration(time.Second) {
		v.errf("mqtt.status_interval", "must be at least 1s")
	}
	if m.QoS != nil && (*m.QoS < 0 || *m.QoS > 2) {
		v.errf("mqtt.qos", "must be 0, 1 or 2, not %d", *m.QoS)
	}
}

// MQTTPassword returns the broker password from password_file ("" without
// one).
func (m *MQTT) MQTTPassword() (string, error) {
	if m.PasswordFile == "" {
		return "", nil
	}
	return ReadSecret(m.PasswordFile)
}
