package mqtt

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mosquittotest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/internal/throwawayca"
)

// session is a Client running against a broker, with its log.
type session struct {
	c    *Client
	log  *testenv.SyncBuffer
	stop func() // cancels Run and waits for it
}

func testOptions(b *mosquittotest.Broker, id string) Options {
	return Options{
		Broker: b.TLSURL(), ClientID: id, Username: mosquittotest.Username, Password: mosquittotest.Password,
		RootCAs: b.CA.Pool(), StateTopic: "plcmail/" + id + "/state", QoS: 1,
		ConnectTimeout: 3 * time.Second, KeepAlive: 5 * time.Second, MaxBackoff: 2 * time.Second,
	}
}

func startSession(t *testing.T, o Options) *session {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	c, err := New(o, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return within 15s of its context ending")
		}
	}
	t.Cleanup(stop)
	return &session{c, logs, stop}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting: %s", d, what)
		}
	}
}

func isPayload(p string) func(mosquittotest.Message) bool {
	return func(m mosquittotest.Message) bool { return m.Payload == p }
}

// TestOnlineRetainedPublishOffline is the life of a session over TLS with
// a password: "online" retained on the state topic, a retained status seen
// by a subscriber that comes later, a QoS 1 Publish acknowledged and
// delivered, and "offline" (retained, not the will) when Run ends.
func TestOnlineRetainedPublishOffline(t *testing.T) {
	b := mosquittotest.Start(t)
	o := testOptions(b, "gw1")
	s := startSession(t, o)
	waitUntil(t, "connected", 10*time.Second, func() bool { return s.c.Connects() == 1 })

	// A dashboard that subscribes later gets the retained state.
	late := b.Subscribe(t, "plcmail/gw1/#")
	late.Wait(t, o.StateTopic, 5*time.Second, func(m mosquittotest.Message) bool { return m.Payload == Online && m.Retained })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.c.PublishRetained(ctx, "plcmail/gw1/status", []byte(`{"queued":3}`)); err != nil {
		t.Fatalf("PublishRetained: %v\n%s", err, s.log)
	}
	if err := s.c.Publish(ctx, "plcmail/gw1/alarm", []byte(`{"id":"1g1s7"}`)); err != nil {
		t.Fatalf("Publish: %v\n%s", err, s.log)
	}
	late.Wait(t, "plcmail/gw1/alarm", 5*time.Second, isPayload(`{"id":"1g1s7"}`))
	fresh := b.Subscribe(t, "plcmail/gw1/status")
	fresh.Wait(t, "plcmail/gw1/status", 5*time.Second, func(m mosquittotest.Message) bool { return m.Retained && m.Payload == `{"queued":3}` })

	s.stop()
	late.Wait(t, o.StateTopic, 5*time.Second, isPayload(Offline))
	after := b.Subscribe(t, o.StateTopic)
	after.Wait(t, o.StateTopic, 5*time.Second, func(m mosquittotest.Message) bool { return m.Payload == Offline && m.Retained })
	if !strings.Contains(b.Log(), "Client gw1 disconnected.") || strings.Contains(b.Log(), "gw1 closed its connection") {
		t.Errorf("broker did not see a clean DISCONNECT from gw1 (\"Client gw1 disconnected.\"):\n%s", b.Log())
	}
	if !errors.Is(s.c.Publish(ctx, "plcmail/gw1/alarm", []byte("x")), ErrNotConnected) {
		t.Error("Publish after Run ended: want ErrNotConnected")
	}
}

// TestConnectFailures: every way the first connect can fail is retried
// (Run keeps going, Publish says ErrNotConnected at once) and logged with
// what to fix.
func TestConnectFailures(t *testing.T) {
	b := mosquittotest.Start(t)
	other, err := throwawayca.New("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*Options)
		want []string
	}{
		{"wrong CA", func(o *Options) { o.RootCAs = other.Pool() }, []string{"certificate signed by unknown authority", "mqtt.ca_file"}},
		{"system roots only", func(o *Options) { o.RootCAs = nil }, []string{"certificate signed by unknown authority", "mqtt.ca_file"}},
		{"wrong password", func(o *Options) { o.Password = "wrong" }, []string{"mqtt.password_file"}},
		{"nobody listening", func(o *Options) { o.Broker = "mqtts://127.0.0.1:1" }, []string{"connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(b, "fail")
			tt.edit(&o)
			s := startSession(t, o)
			waitUntil(t, "a failed attempt logged", 10*time.Second, func() bool {
				return strings.Contains(s.log.String(), "cannot connect to the MQTT broker")
			})
			for _, w := range tt.want {
				if !strings.Contains(s.log.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, s.log)
				}
			}
			start := time.Now()
			err := s.c.Publish(context.Background(), "plcmail/x", []byte("x"))
			if !errors.Is(err, ErrNotConnected) || time.Since(start) > time.Second {
				t.Errorf("Publish while not connected: %v after %v, want ErrNotConnected at once", err, time.Since(start))
			}
			// Retried with backoff, repeats at debug level only.
			waitUntil(t, "a second attempt", 10*time.Second, func() bool { return strings.Contains(s.log.String(), "attempt=2") })
			if n := strings.Count(s.log.String(), "level=WARN msg=\"cannot connect"); n != 1 {
				t.Errorf("%d warnings for one unchanged reason, want 1:\n%s", n, s.log)
			}
			if s.c.Connects() != 0 {
				t.Errorf("connected despite %s", tt.name)
			}
			if strings.Contains(s.log.String(), mosquittotest.Password) {
				t.Error("log shows the password")
			}
		})
	}
}

// TestBrokerRestart: a broker restarted without persistence has lost the
// retained messages; the client reconnects by itself and says online
// again, and Connects tells the publisher of retained state to publish
// anew.
func TestBrokerRestart(t *testing.T) {
	b := mosquittotest.Start(t)
	o := testOptions(b, "gw2")
	s := startSession(t, o)
	waitUntil(t, "connected", 10*time.Second, func() bool { return s.c.Connects() == 1 })

	b.Restart()
	empty := b.Subscribe(t, o.StateTopic) // the restarted broker has nothing retained...
	waitUntil(t, "reconnected", 20*time.Second, func() bool { return s.c.Connects() == 2 })
	empty.Wait(t, o.StateTopic, 5*time.Second, isPayload(Online)) // ...until the client is back
	fresh := b.Subscribe(t, o.StateTopic)
	fresh.Wait(t, o.StateTopic, 5*time.Second, func(m mosquittotest.Message) bool { return m.Payload == Online && m.Retained })
	for _, w := range []string{"lost the connection to the MQTT broker", "connected to the MQTT broker", "down_for="} {
		if !strings.Contains(s.log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, s.log)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.c.Publish(ctx, "plcmail/gw2/alarm", []byte("after restart")); err != nil {
		t.Errorf("Publish after the restart: %v", err)
	}
}

// TestBrokerDownAtStart: a gateway that starts while the broker is down
// keeps trying with backoff and connects once the broker is up.
func TestBrokerDownAtStart(t *testing.T) {
	b := mosquittotest.Start(t)
	b.Stop()
	s := startSession(t, testOptions(b, "gw4"))
	waitUntil(t, "the refused attempts logged", 10*time.Second, func() bool { return strings.Contains(s.log.String(), "attempt=2") })
	b.Restart()
	waitUntil(t, "connected", 15*time.Second, func() bool { return s.c.Connects() == 1 })
	b.Subscribe(t, "plcmail/gw4/state").Wait(t, "plcmail/gw4/state", 5*time.Second, func(m mosquittotest.Message) bool { return m.Payload == Online })
	if !strings.Contains(s.log.String(), "failed_attempts=") {
		t.Errorf("the connect line does not say how many attempts failed:\n%s", s.log)
	}
}

// TestPublishBoundedByContext: a broker that hangs (SIGSTOP: the TCP
// connection stays, no PUBACK comes) cannot hold Publish beyond its
// context.
func TestPublishBoundedByContext(t *testing.T) {
	b := mosquittotest.Start(t)
	s := startSession(t, testOptions(b, "gw3"))
	waitUntil(t, "connected", 10*time.Second, func() bool { return s.c.Connects() == 1 })
	b.Freeze()
	defer b.Thaw()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.c.Publish(ctx, "plcmail/gw3/alarm", []byte("stuck"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no acknowledgement") {
		t.Errorf("Publish to a hung broker: %v, want a deadline error saying no acknowledgement came", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Publish took %v with a 300ms context", d)
	}
}

// TestPublishFailsWhenConnectionLost: a Publish waiting for its PUBACK
// when the connection breaks returns an error at once (to be retried), not
// when its context ends; and the client connects again by itself.
func TestPublishFailsWhenConnectionLost(t *testing.T) {
	b := mosquittotest.Start(t)
	s := startSession(t, testOptions(b, "gw5"))
	waitUntil(t, "connected", 10*time.Second, func() bool { return s.c.Connects() == 1 })
	b.Freeze()
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errc <- s.c.Publish(ctx, "plcmail/gw5/alarm", []byte("in flight"))
	}()
	time.Sleep(200 * time.Millisecond) // the PUBLISH is written, unanswered
	b.Restart()                        // the frozen broker ends, closing the connection
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, ErrBadTopic) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish when the connection broke: %v, want a retryable error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Publish still waiting 10s after the connection broke")
	}
	waitUntil(t, "reconnected", 20*time.Second, func() bool { return s.c.Connects() == 2 })
}

// TestPublishBadTopic: a wildcard topic would make the broker drop the
// connection; it is refused before sending, as permanent.
func TestPublishBadTopic(t *testing.T) {
	c, err := New(Options{Broker: "tcp://127.0.0.1:1", ClientID: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"", "a/+/b", "a/#", "a\x00b"} {
		if err := c.Publish(context.Background(), topic, nil); !errors.Is(err, ErrBadTopic) {
			t.Errorf("Publish(%q): %v, want ErrBadTopic", topic, err)
		}
	}
	if err := c.Publish(context.Background(), "a/b", nil); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Publish before Run: %v, want ErrNotConnected", err)
	}
}

func TestBrokerURL(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"mqtts://broker.example.com", "mqtts://broker.example.com:8883", ""},
		{"ssl://broker.example.com:8884", "ssl://broker.example.com:8884", ""},
		{"tcp://127.0.0.1", "tcp://127.0.0.1:1883", ""},
		{"mqtt://[::1]", "mqtt://[::1]:1883", ""},
		{"mqtts://broker.example.com/", "mqtts://broker.example.com:8883", ""},
		{"broker.example.com:8883", "", "e.g. mqtts://"},
		{"http://broker.example.com", "", "scheme must be mqtts://"},
		{"ws://broker.example.com", "", "scheme must be mqtts://"},
		{"mqtts://user:pw@broker.example.com", "", "password_file"},
		{"mqtts://broker.example.com/topic", "", "no path"},
		{"mqtts://", "", "not a broker URL"},
		{"", "", "not a broker URL"},
	}
	for _, tt := range tests {
		u, err := BrokerURL(tt.in)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("BrokerURL(%q): %v, want error with %q", tt.in, err, tt.err)
			}
		case err != nil:
			t.Errorf("BrokerURL(%q): %v", tt.in, err)
		case u.String() != tt.want:
			t.Errorf("BrokerURL(%q) = %s, want %s", tt.in, u, tt.want)
		}
	}
}
