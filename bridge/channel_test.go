package bridge

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/channel"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// An alarm carried by a fallback channel while its mail is still queued
// (no upstream runs here) is reported to the PLC with via = the channel's
// number and the channel's HTTP status, wired as serve wires it, but only
// to a PLC whose HELLO announced that it understands via (SPEC §3.1, 3.6):
// firmware from before via would take it for the mail's DELIVERY.
func TestChannelDeliveryFrame(t *testing.T) {
	for _, tt := range []struct {
		name     string
		features uint8
		wantVia  bool
	}{
		{"hello announces via", protocol.FeatureVia, true},
		{"hello without features", 0, false},
		{"hello with only reserved bits", 0xFE, false},
	} {
		t.Run(tt.name, func(t *testing.T) { testChannelDeliveryFrame(t, tt.features, tt.wantVia) })
	}
}

func testChannelDeliveryFrame(t *testing.T, features uint8, wantVia bool) {
	posted := make(chan string, 10)
	var posts atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		// Never block: a handler stuck on a full channel would hang the
		// server's Close, and so the test, instead of letting it fail.
		select {
		case posted <- r.Header.Get("Idempotency-Key"):
		default:
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(hook.Close)

	m, slave := openPty(t)
	cfg := testCfg(t, slave, testOpts{})
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sp, err := spool.Open(cfg.Gateway.SpoolDir, log)
	if err != nil {
		t.Fatal(err)
	}
	d, err := channel.New(sp, channel.Options{Hostname: "gw", Channels: []channel.Channel{
		{Name: "late", Kind: channel.Webhook, URL: hook.URL, NotAcceptedWithin: time.Hour},
		{Name: "hook", Kind: channel.Webhook, URL: hook.URL, HasSeverityRule: true, SeverityAtLeast: protocol.SeverityAlarm},
	}}, log)
	if err != nil {
		t.Fatal(err)
	}
	sp.BeforeEnqueue(d.Hook)
	b, err := New(optionsFor(t, cfg), sp, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	d.OnResult(func(r channel.Result) {
		if r.Delivered {
			b.ChannelDelivery(r.Alarm.Key, r.Alarm.Origin, r.Via, r.Code)
		}
	})
	runBeside(t, b, logs, d.Run)

	p := newPLC(t, m, 21)
	p.Features = features
	p.expectAck(p.hello(), protocol.AckQueued)
	if got := b.Status()[0].ChannelDeliveries; got != wantVia {
		t.Errorf("status says channel deliveries %v after a HELLO with features 0x%02x, want %v", got, features, wantVia)
	}
	raise := p.event(17, protocol.EventRaise, "P1 low", protocol.Float32Value(80))
	p.expectAck(raise, protocol.AckQueued)
	select {
	case <-posted:
	case <-time.After(15 * time.Second):
		t.Fatal("nothing posted")
	}
	if !wantVia {
		// The bridge has decided once it logs that it drops the channel's
		// DELIVERY; until then a DELIVERY it sends instead fails the test.
		// One goroutine writes DELIVERYs and ACKs, so one sent after the log
		// would still come before the ACK of the next frame.
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(logs.String(), "channel delivery not sent") {
			if time.Now().After(deadline) {
				t.Fatalf("the bridge neither sent nor dropped the channel's DELIVERY; log:\n%s", logs.String())
			}
			if r := p.next(50 * time.Millisecond); r != nil && r.Type == protocol.TypeDelivery && r.Via != 0 {
				t.Fatalf("a PLC whose HELLO has features 0x%02x got a channel DELIVERY: seq %d via %d code %d", features, r.Seq, r.Via, r.SMTPCode)
			}
		}
		p.expectAck(p.event(18, protocol.EventRaise, "P2 low"), protocol.AckQueued)
		for _, r := range p.deliveries {
			if r.Via != 0 {
				t.Fatalf("a PLC whose HELLO has features 0x%02x got a channel DELIVERY: seq %d via %d code %d", features, r.Seq, r.Via, r.SMTPCode)
			}
		}
		if n := b.Status()[0].Deliveries; n != 0 {
			t.Errorf("status counts %d DELIVERY frames sent, want 0", n)
		}
		return
	}
	var r *protocol.Frame
	if len(p.deliveries) > 0 {
		r = &p.deliveries[0]
	} else {
		r = p.next(15 * time.Second)
	}
	if r == nil || r.Type != protocol.TypeDelivery || r.Boot != 21 || r.Seq != raise.Seq {
		t.Fatalf("want a DELIVERY of seq %d, got %+v (the webhook was posted %d times)", raise.Seq, r, posts.Load())
	}
	if r.Status != protocol.DeliveryAccepted || r.SMTPCode != 202 || r.Via != 2 {
		t.Errorf("DELIVERY status %v code %d via %d, want accepted 202 via 2", r.Status, r.SMTPCode, r.Via)
	}
}

func TestDigestOriginSeverity(t *testing.T) {
	tests := []struct {
		sevs []string
		want string
	}{
		{[]string{"warning", "critical", "alarm"}, `"sev":"critical"`},
		{[]string{"info"}, `"sev":"info"`},
		{[]string{""}, ""},
	}
	for _, tt := range tests {
		var batch []record
		for i, s := range tt.sevs {
			batch = append(batch, record{T: "ev", Boot: 5, Seq: uint32(7 + i), Sev: s})
		}
		got := string(digestOrigin("line1", batch))
		if tt.want == "" && strings.Contains(got, "sev") || !strings.Contains(got, tt.want) {
			t.Errorf("%v: %s, want %s", tt.sevs, got, tt.want)
		}
		if o, ok := originOf(spool.Message{Origin: json.RawMessage(got)}); !ok || len(o.Events) != 1 {
			t.Errorf("%s does not route: %+v", got, o)
		}
	}
}

// TestChannelDeliveryAfterRestart: the features of the boot's HELLO are in
// the link's journal, so after a gateway restart a PLC that announced via
// still gets channel DELIVERYs, without a new HELLO (SPEC §3.1).
func TestChannelDeliveryAfterRestart(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(hook.Close)
	m, slave := openPty(t)
	cfg := testCfg(t, slave, testOpts{})
	logs := &testenv.SyncBuffer{}
	// run starts the gateway's bridge and channels as serve wires them;
	// stop ends both.
	run := func() (b *Bridge, stop func()) {
		t.Helper()
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		sp, err := spool.Open(cfg.Gateway.SpoolDir, log)
		if err != nil {
			t.Fatal(err)
		}
		d, err := channel.New(sp, channel.Options{Hostname: "gw", Channels: []channel.Channel{
			{Name: "hook", Kind: channel.Webhook, URL: hook.URL, HasSeverityRule: true, SeverityAtLeast: protocol.SeverityAlarm},
		}}, log)
		if err != nil {
			t.Fatal(err)
		}
		sp.BeforeEnqueue(d.Hook)
		b, err = New(optionsFor(t, cfg), sp, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		d.OnResult(func(r channel.Result) {
			if r.Delivered {
				b.ChannelDelivery(r.Alarm.Key, r.Alarm.Origin, r.Via, r.Code)
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{}, 2)
		go func() { d.Run(ctx); done <- struct{}{} }()
		go func() { b.Run(ctx); done <- struct{}{} }()
		stopped := false
		stop = func() {
			if !stopped {
				stopped = true
				cancel()
				<-done
				<-done
			}
		}
		t.Cleanup(stop)
		(&gateway{t: t, b: b, logs: logs}).waitConnected()
		return b, stop
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})

	_, stop := run()
	p := newPLC(t, m, 21)
	p.Features = protocol.FeatureVia
	p.expectAck(p.hello(), protocol.AckQueued)
	stop()
	p.discard()
	drain(m)

	b, _ := run()
	if !b.Status()[0].ChannelDeliveries {
		t.Error("after the restart the status forgot that the PLC announced via")
	}
	raise := p.event(17, protocol.EventRaise, "P1 low")
	p.expectAck(raise, protocol.AckQueued)
	var r *protocol.Frame
	if len(p.deliveries) > 0 {
		r = &p.deliveries[0]
	} else {
		r = p.next(15 * time.Second)
	}
	if r == nil || r.Type != protocol.TypeDelivery || r.Seq != raise.Seq || r.Via != 1 {
		t.Fatalf("after the restart: %+v, want the channel's DELIVERY (via 1) of seq %d; link %+v", r, raise.Seq, b.Status()[0])
	}
}
