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

	"github.com/plcmail/plcmail/internal/plcsim"
	"github.com/plcmail/plcmail/protocol"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "serialbench:", err)
		os.Exit(1)
	}
}

// peer reads what the gateway sends and hands ACK/NAK and DELIVERY frames
// to the sender.
type peer struct {
	sim  *plcsim.PLC
	acks chan plcsim.Received

	mu        sync.Mutex
	delivered map[uint32]plcsim.Received
	nak       int
}

func (p *peer) read() {
	var bad *protocol.FrameError
	for {
		r, err := p.sim.Next(time.Time{})
		if errors.As(err, &bad) {
			continue
		}
		if err != nil {
			close(p.acks)
			return
		}
		switch r.Frame.Type {
		case protocol.TypeAck, protocol.TypeNak:
			p.acks <- r
		case protocol.TypeDelivery:
			p.mu.Lock()
			if _, seen := p.delivered[r.Frame.Seq]; !seen {
				p.delivered[r.Frame.Seq] = r
			}
			p.mu.Unlock()
		}
	}
}

// await waits for the ACK or NAK of seq, skipping stale answers.
func (p *peer) await(seq uint32, timeout time.Duration) (plcsim.Received, error) {
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-p.acks:
			if !ok {
				return plcsim.Received{}, errors.New("link closed")
			}
			if r.Frame.Seq != seq {
				continue
			}
			if r.Frame.Type == protocol.TypeNak {
				p.nak++
			}
			return r, nil
		case <-deadline:
			return plcsim.Received{}, fmt.Errorf("no ACK for seq %d within %v", seq, timeout)
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
	p := &peer{sim: plcsim.New(f, uint32(time.Now().Unix())), acks: make(chan plcsim.Received, 64),
		delivered: map[uint32]plcsim.Received{}}
	go p.read()

	// HELLO, retransmitted every second like the firmware does at boot,
	// until the gateway (which may still be opening the port) answers.
	// A leading delimiter ends whatever was on the line before.
	hello := p.sim.Hello()
	hello.Uptime, hello.ResetCause = 1, 0
	if err := p.sim.Write([]byte{0}); err != nil {
		return err
	}
	a, _, err := p.sim.SendReliable(ctx, hello, p.acks, plcsim.Retry{Wait: time.Second, Sends: 16})
	if errors.Is(err, plcsim.ErrNoAnswer) {
		return errors.New("gateway does not answer HELLO")
	}
	if err != nil {
		return err
	}
	if a.Frame.Type == protocol.TypeNak {
		p.nak++
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
		fr, err := p.sim.Event(uint16(*code), protocol.EventRaise, protocol.SeverityAlarm,
			fmt.Sprintf("pressure below limit %d", i), protocol.Float32Value(87.5), protocol.Int32Value(int32(i)))
		if err != nil {
			return err
		}
		fr.Uptime = uint32(2 + i)
		buf, err := plcsim.Encode(fr)
		if err != nil {
			return err
		}
		frameLen = len(buf)
		end, err := p.sim.WritePaced(buf, *baud)
		if err != nil {
			return err
		}
		r, err := p.await(fr.Seq, 10*time.Second)
		if err != nil {
			return err
		}
		ends[fr.Seq] = end
		ackLat = append(ackLat, r.At.Sub(end))
		switch {
		case r.Frame.Type == protocol.TypeAck && r.Frame.AckResult == protocol.AckQueued:
			queued++
		case r.Frame.Type == protocol.TypeAck:
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
			case d.Frame.Status == protocol.DeliveryAccepted:
				delivered++
				delLat = append(delLat, d.At.Sub(end))
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
