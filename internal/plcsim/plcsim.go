// Package plcsim plays the PLC's side of a serial link (SPEC.md, as
// firmware-sketch/ implements it) over any io.ReadWriter: it numbers and
// sends HELLO, EVENT and HEARTBEAT frames, retransmits a frame until its
// answer comes, writes raw bytes for noise, and decodes what the gateway
// sends back (ACK, NAK, DELIVERY). The demo, bench/serialbench and the
// bridge and cmd tests all drive the gateway with it; it does not import
// testing, and each test keeps its own thin wrapper that turns errors into
// test failures.
package plcsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/plcmail/plcmail/protocol"
)

// PLC is one simulated PLC on a link. Receiving (Next, Discard) may run in
// one goroutine while another sends; apart from that a PLC is not safe for
// concurrent use.
type PLC struct {
	// Boot is the boot id the frames carry.
	Boot uint32
	// Seq is the sequence number of the last HELLO or EVENT built; the
	// next one gets Seq+1.
	Seq uint32
	// Booted is when the PLC booted, for the uptime in its frames; New
	// sets it to now.
	Booted time.Time
	// Features is the features byte of its HELLOs (SPEC.md 3.1); New
	// leaves it 0, a PLC whose firmware predates it. protocol.FeatureVia
	// plays the firmware library that reports fallback channels.
	Features uint8

	rw io.ReadWriter

	// The receiving side.
	dec     *protocol.Decoder
	pending []Received
	errs    []error
	rbuf    []byte
	heard   chan struct{}
	isHeard bool
}

// Received is one frame from the gateway.
type Received struct {
	Frame protocol.Frame
	// At is when the read that completed the frame returned.
	At time.Time
}

// New returns a PLC of boot id boot on rw. Reads with a deadline need rw
// to have a SetReadDeadline method, as *os.File has.
func New(rw io.ReadWriter, boot uint32) *PLC {
	return &PLC{Boot: boot, Booted: time.Now(), rw: rw, dec: protocol.NewDecoder(),
		rbuf: make([]byte, 512), heard: make(chan struct{})}
}

// Uptime is the uptime in whole seconds, as the frames carry it.
func (p *PLC) Uptime() uint32 { return uint32(time.Since(p.Booted).Seconds()) }

// Hello returns the next HELLO: a new sequence number, reset cause 1
// (power-on) and active as the snapshot of active alarms.
func (p *PLC) Hello(active ...protocol.ActiveAlarm) *protocol.Frame {
	p.Seq++
	f := &protocol.Frame{Version: protocol.Version, Type: protocol.TypeHello, Boot: p.Boot, Seq: p.Seq,
		Uptime: p.Uptime(), ResetCause: 1, ActiveTotal: uint8(len(active)), Features: p.Features}
	f.NActive = uint8(copy(f.Active[:], active))
	return f
}

// Event returns the next EVENT. It fails when text or values do not fit
// in a frame.
func (p *PLC) Event(code uint16, kind protocol.EventKind, sev protocol.Severity, text string, vals ...protocol.Value) (*protocol.Frame, error) {
	p.Seq++
	f := &protocol.Frame{Version: protocol.Version, Type: protocol.TypeEvent, Boot: p.Boot, Seq: p.Seq,
		Uptime: p.Uptime(), Code: code, Event: kind, Severity: sev}
	for _, v := range vals {
		if err := f.AddValue(v); err != nil {
			return nil, fmt.Errorf("plcsim: event %d: %w", code, err)
		}
	}
	if err := f.SetText(text); err != nil {
		return nil, fmt.Errorf("plcsim: event %d: %w", code, err)
	}
	return f, nil
}

// Heartbeat returns a HEARTBEAT with active alarms active. Heartbeats
// carry no sequence number: the gateway does not ACK them.
func (p *PLC) Heartbeat(active uint8) *protocol.Frame {
	return &protocol.Frame{Version: protocol.Version, Type: protocol.TypeHeartbeat, Boot: p.Boot,
		Uptime: p.Uptime(), ActiveTotal: active}
}

// Encode returns f on the wire: COBS-encoded with its delimiter. It sets
// f.Version, which every frame this PLC sends carries.
func Encode(f *protocol.Frame) ([]byte, error) {
	f.Version = protocol.Version
	b, err := protocol.AppendEncoded(nil, f)
	if err != nil {
		return nil, fmt.Errorf("plcsim: encode %v: %w", f.Type, err)
	}
	return b, nil
}

// Send encodes f (see Encode) and writes it.
func (p *PLC) Send(f *protocol.Frame) error {
	b, err := Encode(f)
	if err != nil {
		return err
	}
	return p.Write(b)
}

// Write writes raw bytes: encoded frames, delimiters, and the noise and
// truncated frames a real line carries.
func (p *PLC) Write(b []byte) error {
	if _, err := p.rw.Write(b); err != nil {
		return fmt.Errorf("plcsim: write: %w", err)
	}
	return nil
}

// WritePaced writes b as a UART at baud (10 bits a byte) delivers it, and
// returns when its last byte was written. A pty passes bytes as fast as they
// are written, whatever the baud rate, so all bytes but the last go at once
// and the last one after the time the whole of b takes on the line: the
// gateway then sees the end of a frame when a real line would show it.
func (p *PLC) WritePaced(b []byte, baud int) (time.Time, error) {
	if len(b) == 0 {
		return time.Now(), nil
	}
	wire := time.Duration(len(b)) * 10 * time.Second / time.Duration(baud)
	t0 := time.Now()
	if err := p.Write(b[:len(b)-1]); err != nil {
		return time.Time{}, err
	}
	time.Sleep(wire - time.Since(t0))
	if err := p.Write(b[len(b)-1:]); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// Heard is closed when the first byte from the gateway arrives (it writes
// a delimiter when it opens the port), as Next sees it.
func (p *PLC) Heard() <-chan struct{} { return p.heard }

// Next returns the next frame from the gateway, reading as needed until
// deadline (the zero time: no deadline). After the deadline it returns an
// error that is os.ErrDeadlineExceeded (errors.Is). A frame that fails to decode is
// returned as an error wrapping the *protocol.FrameError: the caller decides
// whether to go on; other errors are the link's.
func (p *PLC) Next(deadline time.Time) (Received, error) {
	var dl interface{ SetReadDeadline(time.Time) error }
	if !deadline.IsZero() {
		var ok bool
		if dl, ok = p.rw.(interface{ SetReadDeadline(time.Time) error }); !ok {
			return Received{}, errors.New("plcsim: the link has no read deadline")
		}
	}
	for len(p.pending) == 0 && len(p.errs) == 0 {
		if dl != nil {
			if time.Now().After(deadline) {
				return Received{}, fmt.Errorf("plcsim: read: %w", os.ErrDeadlineExceeded)
			}
			if err := dl.SetReadDeadline(deadline); err != nil {
				return Received{}, fmt.Errorf("plcsim: read: %w", err)
			}
		}
		n, err := p.rw.Read(p.rbuf)
		at := time.Now()
		if n > 0 && !p.isHeard {
			p.isHeard = true
			close(p.heard)
		}
		p.dec.Feed(p.rbuf[:n], func(f *protocol.Frame, err error) {
			if err != nil {
				p.errs = append(p.errs, fmt.Errorf("plcsim: bad frame from the gateway: %w", err))
				return
			}
			p.pending = append(p.pending, Received{Frame: *f, At: at})
		})
		if err != nil && len(p.pending) == 0 && len(p.errs) == 0 {
			return Received{}, fmt.Errorf("plcsim: read: %w", err)
		}
	}
	// Bad frames are reported where they were on the line, before the
	// frames of later reads; within one read the order between the two is
	// not kept, which no user needs.
	if len(p.errs) > 0 {
		err := p.errs[0]
		p.errs = p.errs[1:]
		return Received{}, err
	}
	r := p.pending[0]
	p.pending = p.pending[1:]
	return r, nil
}

// Discard forgets frames received but not yet returned by Next and the
// start of a frame not complete yet, as a PLC does when the gateway
// restarted: nothing of the old connection must be glued to the new one.
func (p *PLC) Discard() {
	p.pending, p.errs = nil, nil
	p.dec = protocol.NewDecoder()
}

// ErrNoAnswer is returned by SendReliable when the gateway did not answer
// within Retry.Sends sends.
var ErrNoAnswer = errors.New("plcsim: no answer")

// ErrClosed is returned by SendReliable when answers is closed.
var ErrClosed = errors.New("plcsim: answers closed")

// Retry is how SendReliable retransmits.
type Retry struct {
	// Wait is how long the first send waits for its answer.
	Wait time.Duration
	// MaxWait, when above Wait, makes the wait double after each send up
	// to MaxWait, as the firmware does (SPEC.md §4: 1 s, doubling, at most
	// 30 s). Zero keeps it at Wait.
	MaxWait time.Duration
	// Sends is how many times the frame is sent before SendReliable gives
	// up with ErrNoAnswer; zero sends until ctx ends.
	Sends int
	// Lose, when set, is asked about each answer to the frame: true drops
	// it as if noise had eaten it on the wire, and the frame goes out again
	// when the wait ends. send counts from 1; wait is the current wait.
	Lose func(answer protocol.Frame, send int, wait time.Duration) bool
}

// Firmware is the retry the firmware uses: 1 s, doubling up to 30 s,
// forever.
var Firmware = Retry{Wait: time.Second, MaxWait: 30 * time.Second}

// SendReliable sends f and waits for its answer (an ACK or NAK with f's
// boot and seq) on answers, which the caller fills from Next in its reading
// goroutine; other frames there are skipped. Without an answer within the
// wait it sends the same bytes again, as r says. It returns the answer
// (the caller checks whether it is a NAK) and how many times it sent f,
// also on error.
func (p *PLC) SendReliable(ctx context.Context, f *protocol.Frame, answers <-chan Received, r Retry) (Received, int, error) {
	wire, err := Encode(f)
	if err != nil {
		return Received{}, 0, err
	}
	wait := r.Wait
	for sends := 1; ; sends++ {
		if err := p.Write(wire); err != nil {
			return Received{}, sends - 1, err
		}
		timer := time.NewTimer(wait)
	await:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return Received{}, sends, ctx.Err()
			case <-timer.C:
				break await
			case a, ok := <-answers:
				if !ok {
					timer.Stop()
					return Received{}, sends, ErrClosed
				}
				if !isAnswer(f, a.Frame) {
					continue // a late answer to an earlier frame, or a report
				}
				if r.Lose != nil && r.Lose(a.Frame, sends, wait) {
					continue
				}
				timer.Stop()
				return a, sends, nil
			}
		}
		if r.Sends > 0 && sends >= r.Sends {
			return Received{}, sends, fmt.Errorf("%w to %v seq %d after %d sends", ErrNoAnswer, f.Type, f.Seq, sends)
		}
		if r.MaxWait > wait {
			wait = min(2*wait, r.MaxWait)
		}
	}
}

// isAnswer reports whether a answers f.
func isAnswer(f *protocol.Frame, a protocol.Frame) bool {
	return (a.Type == protocol.TypeAck || a.Type == protocol.TypeNak) && a.Boot == f.Boot && a.Seq == f.Seq
}

// Forge returns f on the wire after patch has changed its raw form (header
// and payload, without the CRC, which Forge computes afterwards): for the
// frames a correct sender never sends, such as boot 0 or a frame longer
// than protocol.MaxFrame, which Encode refuses to build. patch may return
// a longer or shorter slice.
func Forge(f *protocol.Frame, patch func(raw []byte) []byte) ([]byte, error) {
	f.Version = protocol.Version
	raw, err := protocol.AppendRaw(nil, f)
	if err != nil {
		return nil, fmt.Errorf("plcsim: forge %v: %w", f.Type, err)
	}
	raw = patch(raw[:len(raw)-protocol.CRCLen])
	crc := protocol.CRC16(raw)
	raw = append(raw, byte(crc), byte(crc>>8))
	return append(protocol.COBSEncode(nil, raw), 0), nil
}
