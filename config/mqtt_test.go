package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/throwawayca"
)

func TestMQTTDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(validBase))
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT != nil {
		t.Errorf("no [mqtt] section gave %+v, want no broker", c.MQTT)
	}
	c, err = Parse("t.toml", []byte(validBase+"\n[mqtt]\nbroker = \"mqtts://broker.example.com\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := c.MQTT
	if m.ClientID != "plcmail-gw.example.com" || m.TopicPrefix != "plcmail/gw.example.com" ||
		m.StatusInterval.D() != time.Minute || m.QoS == nil || *m.QoS != 1 {
		t.Errorf("defaults: %+v (qos %v)", m, m.QoS)
	}
	if pw, err := m.MQTTPassword(); pw != "" || err != nil {
		t.Errorf("MQTTPassword without a file = %q, %v", pw, err)
	}
}

func TestMQTTValid(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "mqtt.secret")
	os.WriteFile(secret, []byte("pw\n"), 0o600)
	authority, err := throwawayca.New("broker CA")
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, authority.PEM(), 0o644)
	for _, body := range []string{
		fmt.Sprintf("broker = \"mqtts://broker.example.com:8883\"\nusername = \"gw\"\npassword_file = %q\nca_file = %q\nclient_id = \"press-hall-2\"\ntopic_prefix = \"factory/hall2/gw\"\nstatus_interval = \"10s\"\nqos = 0\n", secret, ca),
		"broker = \"ssl://broker.example.com\"\n",
		"broker = \"tcp://127.0.0.1:1883\"\n",
		"broker = \"tcp://localhost\"\nusername = \"gw\"\n", // a user name without password is allowed
		"broker = \"mqtt://[::1]:1883\"\nqos = 2\n",
	} {
		c, err := Parse("t.toml", []byte(validBase+"\n[mqtt]\n"+body))
		if err != nil {
			t.Errorf("%s:\n%v", body, err)
			continue
		}
		if strings.Contains(body, "press-hall-2") {
			if pw, err := c.MQTT.MQTTPassword(); pw != "pw" || err != nil {
				t.Errorf("MQTTPassword = %q, %v", pw, err)
			}
		}
	}
}

func TestMQTTErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("pw\n"), 0o644)
	empty := filepath.Join(dir, "empty.secret")
	os.WriteFile(empty, nil, 0o600)
	good := filepath.Join(dir, "good.secret")
	os.WriteFile(good, []byte("pw\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.txt")
	os.WriteFile(notPEM, []byte("not a certificate\n"), 0o644)

	base := validBase + "\n[mqtt]\n" // [mqtt] is on line 13
	const broker = "broker = \"mqtts://broker.example.com\"\n"
	tests := []struct {
		name, src, want string
	}{
		{"no broker", "", ":13: mqtt.broker: required"},
		{"plaintext to a remote broker", "broker = \"tcp://broker.example.com:1883\"\n", ":14: mqtt.broker: \"tcp://broker.example.com:1883\" sends the password and the gateway's status in clear"},
		{"plaintext to a LAN address", "broker = \"tcp://192.168.1.10\"\n", ":14: mqtt.broker: \"tcp://192.168.1.10\" sends"},
		{"websocket", "broker = \"wss://broker.example.com\"\n", ":14: mqtt.broker: \"wss://broker.example.com\": scheme must be mqtts://"},
		{"no scheme", "broker = \"broker.example.com:8883\"\n", ":14: mqtt.broker: \"broker.example.com:8883\" is not a broker URL"},
		{"password in URL", "broker = \"mqtts://gw:pw@broker.example.com\"\n", ":14: mqtt.broker: \"mqtts://gw:pw@broker.example.com\": put the user name in username"},
		{"ca_file without TLS", fmt.Sprintf("broker = \"tcp://127.0.0.1\"\nca_file = %q\n", notPEM), ":15: mqtt.ca_file: is for TLS"},
		{"file without user", broker + fmt.Sprintf("password_file = %q\n", good), ":13: mqtt.username: required with password_file"},
		{"readable password file", broker + fmt.Sprintf("username = \"gw\"\npassword_file = %q\n", open), ":16: mqtt.password_file: " + open + " is readable by group or others (mode 0644)"},
		{"empty password file", broker + fmt.Sprintf("username = \"gw\"\npassword_file = %q\n", empty), ":16: mqtt.password_file: " + empty + " is empty"},
		{"missing password file", broker + "username = \"gw\"\npassword_file = \"/nonexistent/x\"\n", ":16: mqtt.password_file: stat /nonexistent/x: no such file"},
		{"missing CA file", broker + "ca_file = \"/nonexistent/ca.pem\"\n", ":15: mqtt.ca_file: open /nonexistent/ca.pem: no such file"},
		{"CA file not PEM", broker + fmt.Sprintf("ca_file = %q\n", notPEM), ":15: mqtt.ca_file: " + notPEM + " holds no PEM certificate"},
		{"wildcard prefix", broker + "topic_prefix = \"plant/+/gw\"\n", ":15: mqtt.topic_prefix: \"plant/+/gw\": a topic to publish to has no wildcards"},
		{"trailing slash", broker + "topic_prefix = \"plant/gw/\"\n", ":15: mqtt.topic_prefix: \"plant/gw/\": no leading, trailing or double /"},
		{"system topic", broker + "topic_prefix = \"$SYS/gw\"\n", ":15: mqtt.topic_prefix: \"$SYS/gw\": topics starting with $"},
		{"short interval", broker + "status_interval = \"100ms\"\n", ":15: mqtt.status_interval: must be at least 1s"},
		{"bad interval", broker + "status_interval = 60\n", ":15: mqtt.status_interval: must be a duration in quotes"},
		{"bad qos", broker + "qos = 3\n", ":15: mqtt.qos: must be 0, 1 or 2, not 3"},
		{"unknown key", broker + "url = \"x\"\n", ":15: mqtt.url: unknown key"},
		{"misspelt key", broker + "topicprefix = \"x\"\n", ":15: mqtt.topicprefix: unknown key (did you mean topic_prefix?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(base+tt.src))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got\n%v\nwant a line containing %q", err, tt.want)
			}
		})
	}
	// A host name the prefix cannot take is named with the fix.
	c, errs := ParseAll("t.toml", []byte(strings.Replace(validBase, "gw.example.com", "gw#1", 1)+"\n[mqtt]\n"+broker))
	if c == nil || !strings.Contains(errs.Error(), "mqtt.topic_prefix: \"plcmail/gw#1\"") {
		t.Errorf("hostname with # gave:\n%v", errs)
	}
}
