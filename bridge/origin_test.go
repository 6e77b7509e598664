package bridge

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

func TestOriginOf(t *testing.T) {
	tests := []struct {
		name   string
		key    string
		origin string
		want   origin
		ok     bool
	}{
		{"alarm mail", "line1/5/7", `{"link":"line1","boot":5,"seq":7}`, origin{Link: "line1", Boot: 5, Seq: 7}, true},
		// The origin is what counts, not the key.
		{"origin only", "", `{"link":"line2","boot":1,"seq":2}`, origin{Link: "line2", Boot: 1, Seq: 2}, true},
		{"broken origin", "line1/5/7", `{"link":"line1","boot":"x"}`, origin{}, false},
		{"origin of no link", "line1/5/7", `{"boot":5,"seq":7}`, origin{}, false},
		// Queued by a plcmail before Origin: routed by the key.
		{"legacy alarm mail", "line1/5/7", "", origin{Link: "line1", Boot: 5, Seq: 7}, true},
		{"legacy max ids", "a/4294967295/4294967295", "", origin{Link: "a", Boot: 1<<32 - 1, Seq: 1<<32 - 1}, true},
		{"legacy restart notice", "line1/5/7/restart", "", origin{}, false},
		{"legacy reconciled raise", "line1/5/7/raise/17", "", origin{}, false},
		{"legacy digest", "line1/digest/5/7", "", origin{}, false},
		{"legacy online notice", "line1/online/1767225600000000000", "", origin{}, false},
		{"legacy id too big", "line1/4294967296/7", "", origin{}, false},
		{"smtp mail", "", "", origin{}, false},
		// A repeated boot id, a HELLO's reconciliation mail, a digest.
		{"generation", "line1/5g2/7", `{"link":"line1","boot":5,"gen":2,"seq":7}`, origin{Link: "line1", Boot: 5, Gen: 2, Seq: 7}, true},
		{"legacy generation key", "line1/5g2/7", "", origin{}, false},
		{"hello part", "", `{"link":"line1","boot":5,"seq":1,"parts":3}`, origin{Link: "line1", Boot: 5, Seq: 1, Parts: 3}, true},
		{"digest", "line1/digest/5/7", `{"link":"line1","events":[{"boot":5,"seqs":[[7,9]]}]}`,
			origin{Link: "line1", Events: []originBoot{{Boot: 5, Seqs: [][2]uint32{{7, 9}}}}}, true},
		{"origin of nothing", "", `{"link":"line1"}`, origin{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := originOf(spool.Message{Key: tt.key, Origin: json.RawMessage(tt.origin)})
			if !reflect.DeepEqual(got, tt.want) || ok != tt.ok {
				t.Errorf("originOf(key %q, origin %s) = %+v, %v; want %+v, %v", tt.key, tt.origin, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestAlarmMailOrigin: an alarm mail is queued under the key of spools
// written before Origin existed, and with the origin that routes its
// delivery result; other mails have none.
func TestAlarmMailOrigin(t *testing.T) {
	g, p := startHello(t, testOpts{}, 21)
	ev := p.event(17, protocol.EventRaise, "x")
	p.expectAck(ev, protocol.AckQueued)
	msgs := g.waitMails(1)
	m := msgs[0].Meta
	if m.Key != "line1/21/2" {
		t.Errorf("key %q, want line1/21/2", m.Key)
	}
	if got, ok := originOf(m); !ok || !reflect.DeepEqual(got, origin{Link: "line1", Boot: 21, Seq: 2, Sev: "alarm"}) || string(m.Origin) != `{"link":"line1","boot":21,"seq":2,"sev":"alarm"}` {
		t.Errorf("origin %s: %+v %v", m.Origin, got, ok)
	}
}

// TestDeliveryResultRouting: a result reaches the PLC as a DELIVERY frame
// whether the message has an origin or, queued by an older plcmail, only
// its key; results of other mails send nothing.
func TestDeliveryResultRouting(t *testing.T) {
	g, p := startHello(t, testOpts{}, 30)
	ev := p.event(17, protocol.EventRaise, "x")
	p.expectAck(ev, protocol.AckQueued)
	g.waitMails(1)

	// Neither a notice nor a digest nor an unknown link answers the PLC.
	for _, m := range []spool.Message{
		{Key: "line1/30/1/restart"},
		{Key: fmt.Sprintf("line1/digest/30/%d", ev.Seq)},
		{Key: "nosuchlink/30/2"},
		{Origin: json.RawMessage(`{"link":"nosuchlink","boot":30,"seq":2}`)},
	} {
		g.b.DeliveryResult(spool.Result{Message: m, Delivered: true, Code: 250})
	}
	// Legacy: no origin, the key says which event.
	g.b.DeliveryResult(spool.Result{Message: spool.Message{Key: eventKey("line1", 30, 0, ev.Seq)}, Delivered: false, Code: 550})
	// With an origin the key is not read.
	g.b.DeliveryResult(spool.Result{Message: spool.Message{Key: "ignored",
		Origin: origin{Link: "line1", Boot: 30, Seq: ev.Seq}.encode()}, Delivered: true, Code: 250})

	for _, want := range []protocol.Frame{
		{Status: protocol.DeliveryFailed, SMTPCode: 550},
		{Status: protocol.DeliveryAccepted, SMTPCode: 250},
	} {
		r := p.next(5 * time.Second)
		if r == nil || r.Type != protocol.TypeDelivery || r.Boot != 30 || r.Seq != ev.Seq ||
			r.Status != want.Status || r.SMTPCode != want.SMTPCode {
			t.Fatalf("got %+v, want DELIVERY boot 30 seq %d %v/%d", r, ev.Seq, want.Status, want.SMTPCode)
		}
	}
	if r := p.next(300 * time.Millisecond); r != nil {
		t.Errorf("unexpected frame %v boot %d seq %d", r.Type, r.Boot, r.Seq)
	}
	if st := g.b.Status()[0]; st.Deliveries != 2 {
		t.Errorf("status deliveries = %d, want 2", st.Deliveries)
	}
}
