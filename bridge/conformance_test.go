package bridge

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/plcsim"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// Tests of SPEC.md conformance through the real pty harness (issue 13,
// items 7 and 8).

// expectNak waits for a NAK of reason want answering (boot, seq), skipping
// DELIVERY frames.
func (p *plc) expectNak(boot, seq uint32, want protocol.NakReason) {
	p.t.Helper()
	r := p.expect(&protocol.Frame{Boot: boot, Seq: seq}, protocol.TypeNak)
	if r.NakReason != want {
		p.t.Fatalf("NAK reason %d, want %d", r.NakReason, want)
	}
}

// expectNothing fails if the gateway sends a frame within d.
func (p *plc) expectNothing(d time.Duration, why string) {
	p.t.Helper()
	if r := p.next(d); r != nil {
		p.t.Fatalf("%s: got %v boot %d seq %d (ack %d nak %d)", why, r.Type, r.Boot, r.Seq, r.AckResult, r.NakReason)
	}
}

// TestTooLongFrameNaked: SPEC §1.4 step 2, §4 rule 5. A frame longer than
// MaxEncoded is answered with NAK 1 once its delimiter arrives (not while
// its bytes still come: that may be idle noise), and the link goes on.
func TestTooLongFrameNaked(t *testing.T) {
	_, p := startHello(t, testOpts{}, 3)
	long, err := plcsim.Forge(&protocol.Frame{Type: protocol.TypeEvent, Boot: 3, Seq: 2, Code: 17, Event: protocol.EventRaise},
		func(raw []byte) []byte { return append(raw, bytes.Repeat([]byte{'x'}, 100)...) })
	if err != nil {
		t.Fatal(err)
	}
	p.write(long[:len(long)-1])
	p.expectNothing(300*time.Millisecond, "before the delimiter")
	p.write([]byte{0})
	p.expectNak(0, 0, protocol.NakBadFrame)
	// A run of noise longer than MaxEncoded, ended by a delimiter, too.
	p.write(append(bytes.Repeat([]byte{0x55}, 200), 0))
	p.expectNak(0, 0, protocol.NakBadFrame)
	p.expectAck(p.event(17, protocol.EventRaise, "after"), protocol.AckQueued)
}

// TestHeartbeatBoot0Naked: SPEC §2, a PLC frame with boot 0 is malformed:
// NAK reason 4 for that frame (boot 0, seq 0), also during reset_grace
// (SPEC §4 rule 6): a frame whose CRC matched is no bootloader noise.
func TestHeartbeatBoot0Naked(t *testing.T) {
	m, slave := openPty(t)
	g := startGateway(t, testCfg(t, slave, testOpts{resetGrace: "1h"}), t.TempDir())
	g.waitConnected()
	p := newPLC(t, m, 3)
	hb, err := plcsim.Forge(p.Heartbeat(0), func(raw []byte) []byte {
		copy(raw[2:6], []byte{0, 0, 0, 0})
		return raw
	})
	if err != nil {
		t.Fatal(err)
	}
	p.write([]byte("bootloader noise\x00"))
	p.write(hb)
	p.expectNak(0, 0, protocol.NakMalformed)
	p.expectAck(p.hello(), protocol.AckQueued)
	p.write(hb)
	p.expectNak(0, 0, protocol.NakMalformed)
	if st := g.b.Status()[0]; st.Boot != 3 || st.Naks != 2 {
		t.Errorf("status %+v: want boot 3 and 2 NAKs (none for the noise)", st)
	}
}

// keysWith returns the spool keys that contain s.
func keysWith(t *testing.T, dir, s string) []string {
	var out []string
	for _, q := range spoolMessages(t, dir) {
		if strings.Contains(q.Meta.Key, s) {
			out = append(out, q.Meta.Key)
		}
	}
	return out
}

// messageWithKey returns the queued message with key k.
func messageWithKey(t *testing.T, dir, k string) queued {
	t.Helper()
	for _, q := range spoolMessages(t, dir) {
		if q.Meta.Key == k {
			return q
		}
	}
	t.Fatalf("no message with key %s", k)
	return queued{}
}

// TestLateFrameOfOldBoot: frames of the previous boot that arrive after the
// new boot's HELLO (a USB or RS-485 converter's buffer, a retransmission
// under way while the PLC reset) never switch the link back to the old
// boot: one already journaled is ACKed as a duplicate, one never heard is
// journaled and mailed under its own key; DELIVERY frames keep going to
// the current boot, and the next restart notice names the right boots.
func TestLateFrameOfOldBoot(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave, testOpts{}), dir)
	g.waitConnected()
	old := newPLC(t, m, 100)
	old.expectAck(old.hello(), protocol.AckQueued)
	journaledEv := old.event(17, protocol.EventRaise, "journaled")
	old.expectAck(journaledEv, protocol.AckQueued)
	neverHeard, err := old.Event(18, protocol.EventRaise, protocol.SeverityAlarm, "never heard")
	if err != nil {
		t.Fatal(err)
	}
	g.waitMails(1)

	cur := newPLC(t, m, 101)
	cur.expectAck(cur.hello(protocol.ActiveAlarm{Code: 17, Severity: protocol.SeverityAlarm}), protocol.AckQueued)
	ev := cur.event(20, protocol.EventRaise, "current")
	cur.expectAck(ev, protocol.AckQueued)

	// Late frames of boot 100.
	old.sendFrame(journaledEv)
	old.expectAck(journaledEv, protocol.AckDuplicate)
	old.sendFrame(neverHeard)
	old.expectAck(neverHeard, protocol.AckQueued)
	old.sendFrame(neverHeard)
	old.expectAck(neverHeard, protocol.AckDuplicate)
	if st := g.b.Status()[0]; st.Boot != 101 {
		t.Fatalf("late frames of boot 100 switched the link to boot %d", st.Boot)
	}
	g.waitFor("the late event's mail", func() bool { return len(keysWith(t, dir, "line1/100/3")) == 1 })
	if n := len(keysWith(t, dir, "line1/100/2")); n != 1 {
		t.Errorf("%d mails of the journaled event, want 1", n)
	}

	// The current boot still gets its DELIVERY frames.
	q := messageWithKey(t, dir, eventKey("line1", 101, 0, ev.Seq))
	g.b.DeliveryResult(spool.Result{Message: q.Meta, Delivered: true, Code: 250})
	d := cur.expect(ev, protocol.TypeDelivery)
	if d.Status != protocol.DeliveryAccepted || d.SMTPCode != 250 {
		t.Errorf("delivery %+v", d)
	}
	// And its next event is not a duplicate of boot 100's.
	cur.expectAck(cur.event(21, protocol.EventRaise, "next"), protocol.AckQueued)

	next := newPLC(t, m, 102)
	h := next.hello()
	next.expectAck(h, protocol.AckQueued)
	notice := messageWithKey(t, dir, eventKey("line1", 102, 0, h.Seq)+"/restart")
	if !strings.Contains(notice.Body, "boot 101 -> 102") {
		t.Errorf("restart notice names the wrong boots:\n%s", notice.Body)
	}
}

// TestRepeatedBootIdIsNewBoot: a PLC whose boot id repeats (EEPROM erased,
// board swapped) starts again at seq 1 with a HELLO that may even be byte
// for byte the first HELLO of the earlier boot. The gateway sees the
// restart because the earlier boot had already gone past that HELLO
// (SPEC §4 rule 4), journals it, and mails the new boot's alarms, also
// after a gateway restart; retransmissions stay duplicates.
func TestRepeatedBootIdIsNewBoot(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	cfg := testCfg(t, slave, testOpts{})
	g := startGateway(t, cfg, dir)
	g.waitConnected()
	first := newPLC(t, m, 5)
	h1 := first.hello()
	first.expectAck(h1, protocol.AckQueued)
	first.sendFrame(h1) // a lost ACK: the same HELLO again is a duplicate
	first.expectAck(h1, protocol.AckDuplicate)
	for i := range 3 {
		first.expectAck(first.event(17, protocol.EventRaise, fmt.Sprintf("first %d", i)), protocol.AckQueued)
	}
	g.waitMails(3)

	again := newPLC(t, m, 5) // same boot id, seq from 1
	h2 := again.hello(protocol.ActiveAlarm{Code: 30, Severity: protocol.SeverityAlarm})
	h2.ActiveTotal, h2.NActive = 0, 0 // byte for byte h1
	again.sendFrame(h2)
	again.expectAck(h2, protocol.AckQueued)
	if n := len(keysWith(t, dir, "/restart")); n != 1 {
		t.Errorf("%d restart notices, want 1", n)
	}

	// The decision is durable: after a gateway restart the retransmitted
	// HELLO is a duplicate, the new boot's events are mailed.
	g.stop()
	drain(m)
	again.discard()
	g2 := startGateway(t, cfg, dir)
	g2.waitConnected()
	again.sendFrame(h2)
	again.expectAck(h2, protocol.AckDuplicate)
	var evs []*protocol.Frame
	for i := range 3 {
		ev := again.event(17, protocol.EventRaise, fmt.Sprintf("again %d", i))
		again.expectAck(ev, protocol.AckQueued)
		evs = append(evs, ev)
	}
	again.sendFrame(evs[0])
	again.expectAck(evs[0], protocol.AckDuplicate)
	g2.waitFor("the new boot's mails", func() bool { return countKind(spoolMessages(t, dir), "again") == 3 })
	if n := countKind(spoolMessages(t, dir), "first"); n != 3 {
		t.Errorf("%d mails of the first boot, want 3", n)
	}
	if n := len(keysWith(t, dir, "/restart")); n != 1 {
		t.Errorf("%d restart notices after the gateway restart, want 1", n)
	}
}

// TestDeliveryForDigestAndReconcile: every event the PLC sent learns its
// outcome. A held event gets the DELIVERY of the digest that reports it;
// a HELLO whose snapshot caused alarm mails gets one DELIVERY once all of
// them are final (accepted only when all were accepted).
func TestDeliveryForDigestAndReconcile(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave, testOpts{holdoff: "1h", digestDelay: "200ms"}), dir)
	g.waitConnected()
	p := newPLC(t, m, 40)
	p.expectAck(p.hello(), protocol.AckQueued)
	p.expectAck(p.event(17, protocol.EventRaise, "mailed"), protocol.AckQueued)
	held1 := p.event(17, protocol.EventRaise, "held 1")
	p.expectAck(held1, protocol.AckQueued)
	held2 := p.event(17, protocol.EventRaise, "held 2")
	p.expectAck(held2, protocol.AckQueued)
	g.waitFor("digest", func() bool { return g.b.Status()[0].Digests == 1 })
	digest := messageWithKey(t, dir, fmt.Sprintf("line1/digest/40/%d", held1.Seq))
	g.b.DeliveryResult(spool.Result{Message: digest.Meta, Delivered: false, Code: 552})
	for _, f := range []*protocol.Frame{held1, held2} {
		d := p.expect(f, protocol.TypeDelivery)
		if d.Status != protocol.DeliveryFailed || d.SMTPCode != 552 {
			t.Errorf("seq %d: delivery %+v", f.Seq, d)
		}
	}

	// A new boot whose HELLO lists two alarms the gateway never heard of
	// and omits 17: three reconciliation mails.
	p2 := newPLC(t, m, 41)
	h := p2.hello(protocol.ActiveAlarm{Code: 18, Severity: protocol.SeverityAlarm},
		protocol.ActiveAlarm{Code: 19, Severity: protocol.SeverityAlarm})
	p2.expectAck(h, protocol.AckQueued)
	base := eventKey("line1", 41, 0, h.Seq)
	keys := []string{base + "/raise/18", base + "/raise/19", base + "/clear/17"}
	for i, k := range keys {
		q := messageWithKey(t, dir, k)
		code := 250
		if i == 1 {
			code = 550
		}
		if i < len(keys)-1 {
			g.b.DeliveryResult(spool.Result{Message: q.Meta, Delivered: code == 250, Code: code})
			p2.expectNothing(200*time.Millisecond, "DELIVERY before all mails of the HELLO are final")
			continue
		}
		// The restart notice is not one of them.
		g.b.DeliveryResult(spool.Result{Message: messageWithKey(t, dir, base+"/restart").Meta, Delivered: true, Code: 250})
		g.b.DeliveryResult(spool.Result{Message: q.Meta, Delivered: true, Code: 250})
	}
	d := p2.expect(h, protocol.TypeDelivery)
	if d.Status != protocol.DeliveryFailed || d.SMTPCode != 550 {
		t.Errorf("HELLO delivery %+v, want failed 550", d)
	}
	p2.expectNothing(200*time.Millisecond, "a second DELIVERY for the HELLO")
}
