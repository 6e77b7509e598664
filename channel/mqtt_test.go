package channel

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mosquittotest"
	"github.com/plcmail/plcmail/mqtt"
	"github.com/plcmail/plcmail/protocol"
)

func brokerClient(t *testing.T, b *mosquittotest.Broker) *mqtt.Client {
	t.Helper()
	c, err := mqtt.New(mqtt.Options{Broker: b.PlainURL(), ClientID: "plcmail-gw-test", Username: mosquittotest.Username,
		Password: mosquittotest.Password, MaxBackoff: time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// An alarm published through a real mosquitto reaches a subscriber, with
// the idempotency key as its id.
func TestMQTTChannel(t *testing.T) {
	b := mosquittotest.Start(t)
	sub := b.Subscribe(t, "plcmail/gw1/alarm")
	c := brokerClient(t, b)
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "broker", Kind: MQTT, Topic: "plcmail/gw1/alarm", Publish: MQTTPublish(c), HasSeverityRule: true, SeverityAtLeast: protocol.SeverityCritical},
	}})
	key := f.alarm(t, "press-1", 9, "critical")
	f.run(t)
	m := sub.Wait(t, "plcmail/gw1/alarm", 30*time.Second, func(mosquittotest.Message) bool { return true })
	var p Payload
	if err := json.Unmarshal([]byte(m.Payload), &p); err != nil {
		t.Fatal(err)
	}
	if p.ID != idempotencyKey(f.d.store.instance, "gw.example.com", "broker", key) || p.Subject != "Pumpe überhitzt" || p.Severity != "critical" || m.Retained {
		t.Errorf("message %+v retained=%v", p, m.Retained)
	}
	if r := f.result(t); !r.Delivered || r.Code != 0 || r.Via != 1 {
		t.Errorf("result %+v", r)
	}
}

// With the broker down the delivery waits, retried, and goes out once the
// broker is back; a topic the client refuses is dead at once.
func TestMQTTChannelBrokerDown(t *testing.T) {
	b := mosquittotest.Start(t)
	c := brokerClient(t, b)
	b.Stop()
	f := newFixture(t, Options{Channels: []Channel{
		{Name: "broker", Kind: MQTT, Topic: "plcmail/gw1/alarm", Publish: MQTTPublish(c), HasSeverityRule: true},
		{Name: "bad", Kind: MQTT, Topic: "plcmail/+/alarm", Publish: MQTTPublish(c), HasSeverityRule: true},
	}})
	f.d.minBackoff = 50 * time.Millisecond
	f.alarm(t, "press-1", 10, "info")
	f.run(t)
	if r := f.result(t); r.Channel != "bad" || r.Delivered {
		t.Fatalf("bad topic: %+v", r)
	}
	waitFor(t, "a failed attempt", func() bool { return f.d.Stats()[0].Retried > 0 })
	b.Restart()
	// Delivered means the broker acknowledged it (PUBACK); a subscriber
	// could only race the reconnect.
	if r := f.result(t); r.Channel != "broker" || !r.Delivered {
		t.Fatalf("after restart: %+v", r)
	}
}
