package bridge

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// TestMailsReachTLSUpstream runs the whole path: PLC frames on a pty, the
// real serial library, spool, delivery queue, STARTTLS with AUTH to an
// in-process upstream verified against a test CA, and the DELIVERY frames
// back to the PLC (accepted with 250, and failed with 550).
func TestMailsReachTLSUpstream(t *testing.T) {
	up := mailertest.NewUpstream(t, mailertest.Options{})
	up.SetRcpt(func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return mailertest.Reply(550, "no such user")
		}
		return nil
	})
	m, slave := openPty(t)
	cfg := testCfg(t, slave, testOpts{extra: `
[[alarm]]
code = 66
to = ["nobody@example.com"]
`})
	gw := up.GatewayConfig(t)
	cfg.Upstream, cfg.Queue, cfg.Gateway.SpoolDir = gw.Upstream, gw.Queue, gw.Gateway.SpoolDir
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sp, err := spool.Open(cfg.Gateway.SpoolDir, log)
	if err != nil {
		t.Fatal(err)
	}
	// GatewayConfig's queue timings; the rest are config.Default()'s.
	q, err := spool.NewQueue(sp, spool.QueueOptions{
		Upstream:    up.Options(),
		Connections: 4,
		BatchSize:   100,
		ScanEvery:   100 * time.Millisecond,
		Lifetime:    5 * 24 * time.Hour,
		MinBackoff:  50 * time.Millisecond,
		MaxBackoff:  500 * time.Millisecond,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(optionsFor(t, cfg), sp, q.Wake, log)
	if err != nil {
		t.Fatal(err)
	}
	// Final delivery results go back to the PLC, as serve wires them.
	q.OnResult(b.DeliveryResult)
	runBeside(t, b, logs, q.Run)

	p := newPLC(t, m, 21)
	p.expectAck(p.hello(), protocol.AckQueued)
	raise := p.event(17, protocol.EventRaise, "P1 low", protocol.Float32Value(80))
	p.expectAck(raise, protocol.AckQueued)
	clear := p.event(17, protocol.EventClear, "P1 ok", protocol.Float32Value(95))
	p.expectAck(clear, protocol.AckQueued)
	bounce := p.event(66, protocol.EventRaise, "")
	p.expectAck(bounce, protocol.AckQueued)

	// DELIVERY frames come back as the upstream answers, in any order.
	want := map[uint32]protocol.Frame{
		raise.Seq:  {Status: protocol.DeliveryAccepted, SMTPCode: 250},
		clear.Seq:  {Status: protocol.DeliveryAccepted, SMTPCode: 250},
		bounce.Seq: {Status: protocol.DeliveryFailed, SMTPCode: 550},
	}
	for len(want) > 0 {
		var r *protocol.Frame
		if len(p.deliveries) > 0 {
			r, p.deliveries = &p.deliveries[0], p.deliveries[1:]
		} else {
			r = p.next(15 * time.Second)
		}
		if r == nil {
			t.Fatalf("missing DELIVERY frames for %v", want)
		}
		w, ok := want[r.Seq]
		if r.Type != protocol.TypeDelivery || r.Boot != 21 || !ok {
			t.Fatalf("unexpected frame %v boot %d seq %d", r.Type, r.Boot, r.Seq)
		}
		if r.Status != w.Status || r.SMTPCode != w.SMTPCode {
			t.Errorf("seq %d: delivery %v/%d, want %v/%d", r.Seq, r.Status, r.SMTPCode, w.Status, w.SMTPCode)
		}
		delete(want, r.Seq)
	}
	msgs := up.Wait(t, 2, 10*time.Second)
	subjects := map[string]string{}
	for _, rm := range msgs {
		if !rm.TLS || rm.User == "" {
			t.Errorf("message not over authenticated TLS: %+v", rm)
		}
		subj, body := decodeMail(t, rm.Data)
		subjects[subj] = body
	}
	for subj, body := range map[string]string{
		"Pressure low raise on Press 1: P1 low": "Pressure 80 bar.",
		"Pressure low clear on Press 1: P1 ok":  "Pressure 95 bar.",
	} {
		got, ok := subjects[subj]
		if !ok {
			t.Errorf("no mail with subject %q; got %v", subj, subjects)
		} else if !strings.Contains(got, body) {
			t.Errorf("%q: body %q lacks %q", subj, got, body)
		}
	}
	if st := b.Status()[0]; st.Deliveries != 3 {
		t.Errorf("status deliveries = %d", st.Deliveries)
	}
}
