package bridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
)

func TestRaiseClearMailed(t *testing.T) {
	g, p := startHello(t, testOpts{}, 7)
	dir := g.dir

	raise := p.event(17, protocol.EventRaise, "P1 < 90", protocol.Float32Value(87.5))
	p.expectAck(raise, protocol.AckQueued)
	// The ACK promises the event is on disk: it must be the moment the ACK is.
	if !journaled(t, dir, 7, raise.Seq) {
		t.Fatal("event ACKed but not in the journal")
	}
	g.waitMails(1)
	clear := p.event(17, protocol.EventClear, "ok", protocol.Float32Value(95))
	p.expectAck(clear, protocol.AckQueued)
	unknown := p.event(99, protocol.EventRaise, "")
	p.expectAck(unknown, protocol.AckQueued)

	msgs := g.waitMails(3)
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
	// The link counts a mail once the spool returned and its journal says
	// so, a moment after the file appears: wait for the count.
	g.waitFor("3 mails counted", func() bool { return g.b.Status()[0].Mailed == 3 })
	st := g.b.Status()[0]
	if st.Mailed != 3 || st.Acks != 4 || st.Boot != 7 || !st.Connected || st.Frames != 4 {
		t.Errorf("status %+v", st)
	}
}

func TestDuplicateFrameAckedNotMailedTwice(t *testing.T) {
	g, p := startHello(t, testOpts{}, 9)
	dir := g.dir
	ev := p.event(17, protocol.EventRaise, "x")
	p.expectAck(ev, protocol.AckQueued)
	for i := 0; i < 3; i++ { // the PLC missed the ACK and retransmits the same bytes
		p.sendFrame(ev)
		p.expectAck(ev, protocol.AckDuplicate)
	}
	g.waitMails(1)
	time.Sleep(100 * time.Millisecond)
	if n := len(spoolMessages(t, dir)); n != 1 {
		t.Fatalf("%d mails, want 1", n)
	}
	if st := g.b.Status()[0]; st.Duplicates != 3 {
		t.Errorf("duplicates = %d", st.Duplicates)
	}
}

func TestGarbageAndTruncatedFrames(t *testing.T) {
	g, p := startHello(t, testOpts{}, 3)

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
	msgs := g.waitMails(1)
	if len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "after junk") {
		t.Fatalf("mails: %+v", msgs)
	}
	st := g.b.Status()[0]
	if st.FrameErrors < 4 || st.Naks == 0 || st.Naks > st.FrameErrors {
		t.Errorf("status %+v: want >= 4 frame errors counted and some (rate-limited) NAKs", st)
	}
}

func TestHeartbeatTimeoutOneOfflineOneOnline(t *testing.T) {
	g, p := startHello(t, testOpts{heartbeat: "1s"}, 5)
	dir := g.dir
	// Silence for 3 heartbeat timeouts: exactly one offline mail.
	g.waitFor("offline notice", func() bool { return countKind(spoolMessages(t, dir), "PLC offline") == 1 })
	time.Sleep(2500 * time.Millisecond)
	msgs := spoolMessages(t, dir)
	if n := countKind(msgs, "PLC offline"); n != 1 {
		t.Fatalf("%d offline mails, want 1", n)
	}
	if n := countKind(msgs, "back online"); n != 0 {
		t.Fatalf("online mail before any frame")
	}
	if !g.b.Status()[0].Offline {
		t.Errorf("status not offline")
	}
	// Heartbeats are not ACKed but prove life: exactly one online mail. The
	// PLC keeps sending them (every 200 ms, well within the 1 s timeout)
	// while the test looks, so a slow machine cannot cause a second offline.
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for {
			p.sendFrame(&protocol.Frame{Type: protocol.TypeHeartbeat, Boot: 5, Uptime: 100})
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	g.waitFor("online notice", func() bool { return countKind(spoolMessages(t, dir), "back online") == 1 })
	time.Sleep(500 * time.Millisecond)
	msgs = spoolMessages(t, dir)
	close(stop)
	<-sent
	if countKind(msgs, "back online") != 1 || countKind(msgs, "PLC offline") != 1 || len(msgs) != 2 {
		for _, q := range msgs {
			t.Logf("mail %s: %s", q.Meta.Key, q.Subject)
		}
		t.Fatalf("want exactly one offline and one online mail")
	}
	for _, q := range msgs {
		if q.Meta.Envelope.To[0] != "ops@example.com" || !strings.Contains(q.Body, "Press 1") {
			t.Errorf("notice %q to %v body %q", q.Subject, q.Meta.Envelope.To, q.Body)
		}
	}
	// The notices are mails the user receives: plcmail status counts them
	// in the link's mails.
	g.waitFor("both notices counted", func() bool { return g.b.Status()[0].Notices == 2 })
	if st := g.b.Status()[0]; st.Mails != 2 {
		t.Errorf("status: %d mails (%d alarm mails, %d digests, %d notices), want the 2 notices", st.Mails, st.Mailed, st.Digests, st.Notices)
	}
}

// TestGatewayRestartBetweenFrameAndAck stops the gateway after it accepted
// an event but before the PLC saw the ACK, in the two states a crash can
// leave: the event journaled and its mail queued, or journaled only (the
// crash hit between the journal fsync and the spool write). After the
// restart the retransmission is ACKed as a duplicate, and the mail exists
// exactly once.
func TestGatewayRestartBetweenFrameAndAck(t *testing.T) {
	for _, mailLost := range []bool{false, true} {
		t.Run(map[bool]string{false: "mail-queued", true: "only-journaled"}[mailLost], func(t *testing.T) {
			m, slave := openPty(t)
			dir := t.TempDir()
			cfg := testCfg(t, slave, testOpts{})
			g := startGateway(t, cfg, dir)
			g.waitConnected()
			p := newPLC(t, m, 11)
			p.expectAck(p.hello(), protocol.AckQueued)
			ev := p.event(17, protocol.EventRaise, "before crash")
			// The journal's "mailed" line follows the spool write; waiting
			// for the spool alone let stop() land between the two.
			journal := dir + "/links/line1.journal"
			g.waitFor("mail queued and journaled", func() bool {
				data, _ := os.ReadFile(journal)
				return len(spoolMessages(t, dir)) == 1 && strings.Contains(string(data), `"t":"mailed"`)
			})
			g.stop() // the PLC never reads this ACK
			p.discard()
			drain(m)
			if mailLost {
				removeLastLine(t, journal, `"t":"mailed"`)
				for _, q := range spoolMessages(t, dir) {
					if err := os.Remove(filepath.Join(dir, "queue", q.Meta.ID)); err != nil {
						t.Fatal(err)
					}
				}
			}
			g2 := startGateway(t, cfg, dir)
			g2.waitConnected()
			p.sendFrame(ev) // retransmission, same bytes
			p.expectAck(ev, protocol.AckDuplicate)
			next := p.event(17, protocol.EventClear, "after restart")
			p.expectAck(next, protocol.AckQueued)
			msgs := g2.waitMails(2)
			keys := map[string]int{}
			for _, q := range msgs {
				keys[q.Meta.Key]++
			}
			if len(msgs) != 2 || keys["line1/11/2"] != 1 || keys["line1/11/3"] != 1 {
				t.Fatalf("mails by key: %v, want line1/11/2 and line1/11/3 once each", keys)
			}
		})
	}
}

func drain(m interface {
	Read([]byte) (int, error)
	SetReadDeadline(time.Time) error
}) {
	buf := make([]byte, 1024)
	for {
		m.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := m.Read(buf); err != nil {
			return
		}
	}
}

// TestResetGraceNoNakForBootloaderNoise: opening a USB Arduino resets it and
// its bootloader talks for a moment; those bytes are counted, not NAKed.
// The same noise after reset_grace is NAKed (rate-limited).
func TestResetGraceNoNakForBootloaderNoise(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	g := startGateway(t, testCfg(t, slave, testOpts{resetGrace: "1500ms"}), dir)
	g.waitConnected()
	noise := []byte("\x00avrdude stk500 sync\x00\x11\x22\x33\x00")
	p := newPLC(t, m, 2)
	p.write(noise)
	if r := p.next(300 * time.Millisecond); r != nil {
		t.Fatalf("answered bootloader noise with %v", r.Type)
	}
	if st := g.b.Status()[0]; st.FrameErrors == 0 || st.Naks != 0 {
		t.Fatalf("during grace: %+v", st)
	}
	time.Sleep(1300 * time.Millisecond)
	p.write(noise)
	r := p.next(2 * time.Second)
	if r == nil || r.Type != protocol.TypeNak || r.NakReason != protocol.NakBadFrame {
		t.Fatalf("after grace: got %+v, want NAK bad frame", r)
	}
}

// TestWireTextCannotInjectHeaders sends header-injection attempts as event
// text over the line: the mails keep their recipients and headers.
func TestWireTextCannotInjectHeaders(t *testing.T) {
	g, p := startHello(t, testOpts{}, 6)
	dir := g.dir
	attacks := []string{"x\r\nBcc: evil@x", "\r\n\r\nforged body", "y\nTo: evil@x\n", "{{.Link}}\x00\x1b"}
	for _, a := range attacks {
		p.expectAck(p.event(17, protocol.EventRaise, a), protocol.AckQueued)
	}
	for _, q := range g.waitMails(len(attacks)) {
		if len(q.Meta.Envelope.To) != 1 || q.Meta.Envelope.To[0] != "ops@example.com" {
			t.Errorf("envelope %v", q.Meta.Envelope.To)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "queue", q.Meta.ID))
		if err != nil {
			t.Fatal(err)
		}
		_, msg, _ := strings.Cut(string(raw), "\n")
		hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
		for _, line := range strings.Split(hdr, "\r\n") {
			l := strings.ToLower(line)
			if strings.HasPrefix(l, "bcc:") || strings.HasPrefix(l, "forged") || (strings.HasPrefix(l, "to:") && strings.Contains(l, "evil")) {
				t.Errorf("injected header line %q", line)
			}
		}
		if q.Meta.Key == "line1/6/5" && !strings.Contains(q.Subject, "{{.Link}}") {
			t.Errorf("wire text was not kept as plain data: %q", q.Subject)
		}
		if strings.ContainsAny(q.Subject, "\r\n\x00\x1b") {
			t.Errorf("control characters in subject %q", q.Subject)
		}
	}
}
