package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
)

func TestRaiseClearQueuedBeforeAck(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave, testOpts{}), dir)
	g.waitConnected()
	p := newPLC(t, m, 7)
	p.expectAck(p.hello(), protocol.AckQueued)

	raise := p.event(17, protocol.EventRaise, "P1 < 90", protocol.Float32Value(87.5))
	p.expectAck(raise, protocol.AckQueued)
	// The ACK promises the mail is on disk: it must be there the moment the ACK is.
	msgs := spoolMessages(t, dir)
	if len(msgs) != 1 {
		t.Fatalf("after raise ACK: %d mails queued, want 1", len(msgs))
	}
	clear := p.event(17, protocol.EventClear, "ok", protocol.Float32Value(95))
	p.expectAck(clear, protocol.AckQueued)
	unknown := p.event(99, protocol.EventRaise, "")
	p.expectAck(unknown, protocol.AckQueued)

	msgs = spoolMessages(t, dir)
	want := map[string]string{
		"line1/7/2": "Pressure low raise on Press 1: P1 < 90",
		"line1/7/3": "Pressure low clear on Press 1: ok",
		"line1/7/4": "[alarm] Alarm 99: raise on Press 1 (line1)",
	}
	for _, q := range msgs {
		w, ok := want[q.Meta.Key]
		if !ok {
			t.Errorf("unexpected mail %q: %q", q.Meta.Key, q.Subject)
			continue
		}
		delete(want, q.Meta.Key)
		if q.Subject != w {
			t.Errorf("%s: subject %q, want %q", q.Meta.Key, q.Subject, w)
		}
		if q.Meta.Source != "serial:line1" {
			t.Errorf("%s: source %q", q.Meta.Key, q.Meta.Source)
		}
		if q.Meta.Key == "line1/7/2" && !strings.Contains(q.Body, "Pressure 87.5 bar") {
			t.Errorf("body %q", q.Body)
		}
		if q.Meta.Key == "line1/7/4" && q.Meta.Envelope.To[0] != "all@example.com" {
			t.Errorf("default template to %v", q.Meta.Envelope.To)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing mails: %v", want)
	}
	st := g.b.Status()[0]
	if st.Mailed != 3 || st.Acks != 4 || st.Boot != 7 || !st.Connected || st.Frames != 4 {
		t.Errorf("status %+v", st)
	}
}

func TestDuplicateFrameAckedNotMailedTwice(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave, testOpts{}), dir)
	g.waitConnected()
	p := newPLC(t, m, 9)
	p.expectAck(p.hello(), protocol.AckQueued)
	ev := p.event(17, protocol.EventRaise, "x")
	p.expectAck(ev, protocol.AckQueued)
	for i := 0; i < 3; i++ { // the PLC missed the ACK and retransmits the same bytes
		p.sendFrame(ev)
		p.expectAck(ev, protocol.AckDuplicate)
	}
	if n := len(spoolMessages(t, dir)); n != 1 {
		t.Fatalf("%d mails, want 1", n)
	}
	if st := g.b.Status()[0]; st.Duplicates != 3 {
		t.Errorf("duplicates = %d", st.Duplicates)
	}
}

func TestGarbageAndTruncatedFrames(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave, testOpts{}), dir)
	g.waitConnected()
	p := newPLC(t, m, 3)
	p.expectAck(p.hello(), protocol.AckQueued)

	good, _ := protocol.AppendEncoded(nil, &protocol.Frame{Version: 1, Type: protocol.TypeEvent, Boot: 3, Seq: 2,
		Code: 17, Event: protocol.EventRaise})
	bad := append([]byte(nil), good...)
	bad[5] ^= 0x40 // CRC fails
	var junk []byte
	for i := 0; i < 2000; i++ {
		junk = append(junk, byte(i*7+3))
	}
	p.write([]byte("\r\nAVR bootloader garbage\xff\xfe\r\n\x00"))
	p.write(bad)
	p.write(good[:len(good)/2]) // truncated: the next delimiter ends it
	p.write([]byte{0})
	p.write(junk)
	p.write([]byte{0})
	unknownType, _ := protocol.AppendRaw(nil, &protocol.Frame{Version: 1, Type: protocol.TypeHeartbeat, Boot: 3})
	unknownType[1] = 0x44
	crc := protocol.CRC16(unknownType[:len(unknownType)-2])
	unknownType[len(unknownType)-2], unknownType[len(unknownType)-1] = byte(crc), byte(crc>>8)
	p.write(append(protocol.COBSEncode(nil, unknownType), 0))

	// The link stays usable: the real event still goes through.
	ev := p.event(17, protocol.EventRaise, "after junk")
	for {
		r := p.next(5 * time.Second)
		if r == nil {
			t.Fatal("no ACK after junk")
		}
		if r.Type == protocol.TypeNak {
			continue
		}
		if r.Type != protocol.TypeAck || r.Seq != ev.Seq {
			t.Fatalf("got %v seq %d", r.Type, r.Seq)
		}
		break
	}
	msgs := spoolMessages(t, dir)
	if len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "after junk") {
		t.Fatalf("mails: %+v", msgs)
	}
	st := g.b.Status()[0]
	if st.FrameErrors < 4 || st.Naks == 0 || st.Naks > st.FrameErrors {
		t.Errorf("status %+v: want >= 4 frame errors counted and some (rate-limited) NAKs", st)
	}
}
