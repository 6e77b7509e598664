// Command serialbench plays the PLC on one end of a pty pair whose other end
// a running `plcmail serve` owns as a [[serial]] link, and measures the serial
// path end to end through the real binary, for bench/run.sh:
//
//   - frame to ACK: from the last byte of an EVENT frame to its ACK;
//   - frame to upstream acceptance: from the same instant to the DELIVERY
//     frame the gateway sends once the upstream answered 250 to the mail;
//   - frames/s: events sent the way the firmware sends them (stop-and-wait,
//     each frame paced at the line rate), with every one ACKed as queued and
//     every one delivered (no loss, no duplicate).
//
// A pty ignores the baud rate, so the line rate is imposed here: all bytes of a
// frame but the last are written, then the frame's time on a 115200 baud line
// (10 bits per byte) is waited out before the last byte, as a UART would
// deliver it. The result is one line of key=value pairs on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/plcmail/plcmail/protocol"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "serialbench:", err)
		os.Exit(1)
	}
}

type result struct {
	at    time.Time
	frame protocol.Frame
}

// peer decodes what the gateway sends and hands ACK/NAK and DELIVERY frames
// to the sender.
type peer struct {
	f    *os.File
	acks chan result

	mu        sync.Mutex
	delivered map[uint32]result
	nak       int
}

func (p *peer) read() {
	dec := protocol.NewDecoder()
	buf := make([]byte, 512)
	for {
		n, err := p.f.Read(buf)
		at := time.Now()
		dec.Feed(buf[:n], func(f *protocol.Frame, err error) {
			if err != nil {
				return
			}
			switch f.Type {
			case protocol.TypeAck, protocol.TypeNak:
				p.acks <- result{at: at, frame: *f}
			case protocol.TypeDelivery:
				p.mu.Lock()
				if _, seen := p.delivered[f.Seq]; !seen {
					p.delivered[f.Seq] = result{at: at, frame: *f}
				}
				p.mu.Unlock()
			}
		})
		if err != nil {
			close(p.acks)
			return
		}
	}
}

// send writes one encoded frame paced at the line rate and returns the
// instant its last byte was written.
func (p *peer) send(buf []byte, baud int) (time.Time, error) {
	wire := time.Duration(len(buf)) * 10 * time.Second / time.Duration(baud)
	t0 := time.Now()
	if _, err := p.f.Write(buf[:len(buf)-1]); err != nil {
		return time.Time{}, err
	}
	time.Sleep(wire - time.Since(t0))
	if _, err := p.f.Write(buf[len(buf)-1:]); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// await waits for the ACK or NAK of seq, skipping stale answers.
func (p *peer) await(seq uint32, timeout time.Duration) (result, error) {
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-p.acks:
			if !ok {
				return result{}, errors.New("link closed")
			}
			if r.frame.Seq != seq {
				continue
			}
			if r.frame.Type == protocol.TypeNak {
				p.nak++
			}
			return r, nil
		case <-deadline:
			return result{}, fmt.Errorf("no ACK for seq %d within %v", seq, timeout)
		}
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("serialbench", flag.ContinueOnError)
	tty := fs.String("tty", "", "PLC end of the pty pair")
	n := fs.Int("n", 200, "events to send")
	baud := fs.Int("baud", 115200, "line rate imposed on the writes")
	code := fs.Int("code", 17, "alarm code of the events")
	wait := fs.Duration("deliveries", 60*time.Second, "how long to wait for the last DELIVERY")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tty == "" {
		return errors.New("-tty is required")
	}
	f, err := os.OpenFile(*tty, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	p := &peer{f: f, acks: make(chan result, 64), delivered: map[uint32]result{}}
	go p.read()

	boot := uint32(time.Now().Unix())
	seq := uint32(1)
	encode := func(fr *protocol.Frame) []byte {
		b, err := protocol.AppendEncoded([]byte{0}, fr) // leading delimiter, as the firmware sends at boot
		if err != nil {
			panic(err)
		}
		return b
	}

	// HELLO, retransmitted every second like the firmware does, until the
	// gateway (which may still be opening the port) ACKs it.
	hello := encode(&protocol.Frame{Version: protocol.Version, Type: protocol.TypeHello, Boot: boot, Seq: seq, Uptime: 1})
	for try := 0; ; try++ {
		if _, err := p.send(hello, *baud); err != nil {
			return err
		}
		if _, err := p.await(seq, time.Second); err == nil {
			break
		}
		if try == 15 {
			return errors.New("gateway does not answer HELLO")
		}
	}

	ends := make(map[uint32]time.Time, *n)
	ackLat := make([]time.Duration, 0, *n)
	queued, dup := 0, 0
	var frameLen int
	start := time.Now()
	for i := 0; i < *n; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		seq++
		fr := &protocol.Frame{Version: protocol.Version, Type: protocol.TypeEvent, Boot: boot, Seq: seq,
			Code: uint16(*code), Event: protocol.EventRaise, Severity: protocol.SeverityAlarm,
			Uptime: uint32(2 + i), NValues: 2}
		fr.Values[0], fr.Values[1] = protocol.Float32Value(87.5), protocol.Int32Value(int32(i))
		fr.TextLen = uint8(copy(fr.Text[:], fmt.Sprintf("pressure below limit %d", i)))
		buf := encode(fr)[1:]
		frameLen = len(buf)
		end, err := p.send(buf, *baud)
		if err != nil {
			return err
		}
		r, err := p.await(seq, 10*time.Second)
		if err != nil {
			return err
		}
		ends[seq] = end
		ackLat = append(ackLat, r.at.Sub(end))
		switch {
		case r.frame.Type == protocol.TypeAck && r.frame.AckResult == protocol.AckQueued:
			queued++
		case r.frame.Type == protocol.TypeAck:
			dup++
		}
	}
	elapsed := time.Since(start)

	// Wait for the DELIVERY of every event.
	deadline := time.Now().Add(*wait)
	var delivered, failed int
	var delLat []time.Duration
	for {
		p.mu.Lock()
		delivered, failed, delLat = 0, 0, delLat[:0]
		for s, end := range ends {
			d, ok := p.delivered[s]
			switch {
			case !ok:
			case d.frame.Status == protocol.DeliveryAccepted:
				delivered++
				delLat = append(delLat, d.at.Sub(end))
			default:
				failed++
			}
		}
		p.mu.Unlock()
		if delivered+failed >= *n || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	slices.Sort(ackLat)
	slices.Sort(delLat)
	wire := float64(frameLen*10) / float64(*baud)
	out := []string{
		fmt.Sprintf("events=%d", *n),
		fmt.Sprintf("acked_queued=%d", queued),
		fmt.Sprintf("acked_duplicate=%d", dup),
		fmt.Sprintf("nak=%d", p.nak),
		fmt.Sprintf("delivered=%d", delivered),
		fmt.Sprintf("delivery_failed=%d", failed),
		fmt.Sprintf("frame_bytes=%d", frameLen),
		fmt.Sprintf("wire_ms=%.2f", wire*1000),
		fmt.Sprintf("ack_p50_ms=%.2f", pct(ackLat, 50)),
		fmt.Sprintf("ack_p99_ms=%.2f", pct(ackLat, 99)),
		fmt.Sprintf("ack_max_ms=%.2f", pct(ackLat, 100)),
		fmt.Sprintf("upstream_p50_ms=%.1f", pct(delLat, 50)),
		fmt.Sprintf("upstream_p99_ms=%.1f", pct(delLat, 99)),
		fmt.Sprintf("frames_per_s=%.1f", float64(*n)/elapsed.Seconds()),
		fmt.Sprintf("line_max_frames_per_s=%.1f", 1/wire),
	}
	fmt.Fprintln(stdout, strings.Join(out, " "))
	if queued != *n || delivered != *n {
		return fmt.Errorf("loss: %d events, %d ACKed as queued, %d delivered", *n, queued, delivered)
	}
	return nil
}

// pct returns the q-th percentile of sorted durations in milliseconds, 0
// when there are none.
func pct(sorted []time.Duration, q int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, len(sorted)*q/100)
	return float64(sorted[i]) / float64(time.Millisecond)
}
