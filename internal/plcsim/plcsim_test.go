package plcsim_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/plcsim"
	"github.com/plcmail/plcmail/internal/pty"
	"github.com/plcmail/plcmail/protocol"
)

// link is a pty pair: the PLC on the master, the test as the gateway on
// the slave.
func link(t *testing.T) (plc *os.File, gw *os.File) {
	t.Helper()
	p, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.HoldSlave(); err != nil {
		t.Fatal(err)
	}
	gw, err = os.OpenFile(p.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return p.Master, gw
}

// gateway decodes what the PLC sends on gw and answers each frame with
// answer's reply (nil: none).
func gateway(gw *os.File, answer func(f protocol.Frame) *protocol.Frame) <-chan protocol.Frame {
	seen := make(chan protocol.Frame, 64)
	go func() {
		defer close(seen)
		r := protocol.NewReader(gw)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				var fe *protocol.FrameError
				if errors.As(err, &fe) {
					continue
				}
				return
			}
			seen <- *f
			if a := answer(*f); a != nil {
				protocol.WriteFrame(gw, a)
			}
		}
	}()
	return seen
}

func ack(f protocol.Frame, res protocol.AckResult) *protocol.Frame {
	return &protocol.Frame{Version: protocol.Version, Type: protocol.TypeAck, Boot: f.Boot, Seq: f.Seq, AckResult: res}
}

// reader runs Next in its own goroutine, as the demo does, and passes
// every frame on.
func reader(p *plcsim.PLC) <-chan plcsim.Received {
	ch := make(chan plcsim.Received, 16)
	go func() {
		defer close(ch)
		for {
			r, err := p.Next(time.Time{})
			if err != nil {
				return
			}
			ch <- r
		}
	}()
	return ch
}

// TestSendReliableRetransmitsSameBytes: the first ACK is lost (Lose), so
// the HELLO goes out again, byte for byte the same, after the wait; the
// second ACK ends it. Frames from the gateway that answer something else
// are skipped.
func TestSendReliableRetransmitsSameBytes(t *testing.T) {
	m, gw := link(t)
	seen := gateway(gw, func(f protocol.Frame) *protocol.Frame {
		// A stale answer first, then the real one.
		stale := ack(f, protocol.AckQueued)
		stale.Seq += 100
		protocol.WriteFrame(gw, stale)
		return ack(f, protocol.AckQueued)
	})
	p := plcsim.New(m, 42)
	var lost []int
	r := plcsim.Retry{Wait: 100 * time.Millisecond, MaxWait: 400 * time.Millisecond,
		Lose: func(a protocol.Frame, send int, wait time.Duration) bool {
			lost = append(lost, send)
			return send == 1
		}}
	hello := p.Hello(protocol.ActiveAlarm{Code: 17, Severity: protocol.SeverityAlarm})
	start := time.Now()
	a, sends, err := p.SendReliable(context.Background(), hello, reader(p), r)
	if err != nil {
		t.Fatal(err)
	}
	if sends != 2 || a.Frame.Type != protocol.TypeAck || a.Frame.Seq != 1 || a.Frame.Boot != 42 {
		t.Fatalf("sends %d, answer %+v; want 2 sends and the ACK of boot 42 seq 1", sends, a.Frame)
	}
	if d := time.Since(start); d < r.Wait {
		t.Errorf("retransmitted after %v, before the wait of %v", d, r.Wait)
	}
	if len(lost) != 2 || lost[0] != 1 || lost[1] != 2 {
		t.Errorf("Lose asked for sends %v, want [1 2] (the stale answer is not asked about)", lost)
	}
	first, second := <-seen, <-seen
	if first != second || first.Type != protocol.TypeHello || first.NActive != 1 || first.ActiveTotal != 1 || first.ResetCause != 1 {
		t.Errorf("gateway saw %+v then %+v, want the same HELLO twice", first, second)
	}
}

// TestSendReliableGivesUp: a gateway that never answers gets the frame
// Sends times, with the wait doubling up to MaxWait.
func TestSendReliableGivesUp(t *testing.T) {
	m, gw := link(t)
	seen := gateway(gw, func(protocol.Frame) *protocol.Frame { return nil })
	p := plcsim.New(m, 1)
	f, err := p.Event(17, protocol.EventRaise, protocol.SeverityCritical, "pump", protocol.Float32Value(62.5))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, sends, err := p.SendReliable(context.Background(), f, reader(p), plcsim.Retry{Wait: 20 * time.Millisecond, MaxWait: 80 * time.Millisecond, Sends: 4})
	if !errors.Is(err, plcsim.ErrNoAnswer) || sends != 4 {
		t.Fatalf("err %v after %d sends, want ErrNoAnswer after 4", err, sends)
	}
	// Waits 20+40+80+80 ms.
	if d := time.Since(start); d < 220*time.Millisecond {
		t.Errorf("gave up after %v, want at least 220ms of doubling waits", d)
	}
	for i := range 4 {
		g := <-seen
		if g.Type != protocol.TypeEvent || g.Seq != 1 || g.Code != 17 || g.TextString() != "pump" || g.ValueList()[0].Float32() != 62.5 {
			t.Fatalf("send %d: gateway saw %+v", i+1, g)
		}
	}
}

// TestNextDeadlineBadFrameAndDiscard: Next times out with an os.ErrDeadlineExceeded
// error, reports a corrupt frame as a *protocol.FrameError and goes on with
// the next good one, and Discard drops half a frame so that it does not
// spoil the next.
func TestNextDeadlineBadFrameAndDiscard(t *testing.T) {
	m, gw := link(t)
	p := plcsim.New(m, 1)
	select {
	case <-p.Heard():
		t.Fatal("heard before the gateway wrote anything")
	default:
	}
	if _, err := p.Next(time.Now().Add(50 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Next on a silent line: %v, want a timeout", err)
	}

	good, _ := protocol.AppendEncoded(nil, &protocol.Frame{Version: protocol.Version, Type: protocol.TypeDelivery, Boot: 1, Seq: 5,
		Status: protocol.DeliveryAccepted, SMTPCode: 250})
	bad := append([]byte(nil), good...)
	bad[3] ^= 0x55
	gw.Write(append(bad, good...))
	deadline := time.Now().Add(5 * time.Second)
	var fe *protocol.FrameError
	if _, err := p.Next(deadline); !errors.As(err, &fe) {
		t.Fatalf("Next on a corrupt frame: %v, want a *protocol.FrameError", err)
	}
	r, err := p.Next(deadline)
	if err != nil || r.Frame.Type != protocol.TypeDelivery || r.Frame.Seq != 5 || r.Frame.SMTPCode != 250 || r.At.IsZero() {
		t.Fatalf("Next after the corrupt frame: %+v, %v", r, err)
	}
	select {
	case <-p.Heard():
	default:
		t.Error("Heard not closed after the gateway's bytes")
	}

	// Half a frame, then the PLC restarts its decoder: the next whole frame
	// must come through.
	gw.Write(good[:len(good)/2])
	if _, err := p.Next(time.Now().Add(100 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Next on half a frame: %v, want a timeout", err)
	}
	p.Discard()
	gw.Write(good)
	if r, err := p.Next(deadline); err != nil || r.Frame.Seq != 5 {
		t.Fatalf("Next after Discard: %+v, %v", r, err)
	}
}

// TestWritePaced: the last byte goes out no earlier than the frame's time
// on the line.
func TestWritePaced(t *testing.T) {
	m, gw := link(t)
	seen := gateway(gw, func(protocol.Frame) *protocol.Frame { return nil })
	p := plcsim.New(m, 1)
	wire, err := plcsim.Encode(p.Heartbeat(3))
	if err != nil {
		t.Fatal(err)
	}
	const baud = 9600
	start := time.Now()
	end, err := p.WritePaced(wire, baud)
	if err != nil {
		t.Fatal(err)
	}
	if min := time.Duration(len(wire)) * 10 * time.Second / baud; end.Sub(start) < min {
		t.Errorf("%d bytes at %d baud took %v, want at least %v", len(wire), baud, end.Sub(start), min)
	}
	if f := <-seen; f.Type != protocol.TypeHeartbeat || f.ActiveTotal != 3 || f.Boot != 1 {
		t.Errorf("gateway saw %+v", f)
	}
}
