package bridge

import (
	"slices"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
)

// BenchmarkEventToAck measures, over a pty opened with the real serial
// library, the time from the last byte of an EVENT frame written by the PLC
// to its ACK read back: decode, journal append with fsync, encode, write;
// the alarm mail is rendered and queued right after the ACK by the link's
// mailer goroutine, concurrently with the next frame.
//
// ptys ignore the baud rate, so the line rate is imposed by the test: in the
// "115200" cases the PLC writes all but the last byte of a frame, waits the
// frame's time on a 115200 baud line (10 bits per byte, reported as wire-ms)
// and then writes the last byte, as a real UART would deliver it. The
// "burst" case sends each frame the instant the previous ACK arrives, which
// no serial line can do; it shows the cost of back-to-back fsyncs.
func BenchmarkEventToAck(b *testing.B) {
	for _, bc := range []struct {
		name  string
		opts  testOpts
		paced bool
	}{
		{"mailed-115200", testOpts{}, true},                               // every event its own mail
		{"held-115200", testOpts{holdoff: "1h", digestDelay: "1h"}, true}, // every event a digest entry
		{"mailed-burst", testOpts{}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, p := startHello(b, bc.opts, 1)
			p.expectAck(p.event(17, protocol.EventRaise, "warm-up"), protocol.AckQueued)
			lat := make([]time.Duration, 0, b.N)
			var frameLen int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.Seq++
				f := &protocol.Frame{Version: 1, Type: protocol.TypeEvent, Boot: 1, Seq: p.Seq, Code: 17,
					Event: protocol.EventRaise, Severity: protocol.SeverityAlarm, Uptime: 1000, NValues: 2, TextLen: 20}
				f.Values[0], f.Values[1] = protocol.Float32Value(87.5), protocol.Int32Value(-3)
				copy(f.Text[:], "pressure below limit")
				buf, _ := protocol.AppendEncoded(nil, f)
				frameLen = len(buf)
				wire := time.Duration(len(buf)) * 10 * time.Second / 115200
				if bc.paced {
					t0 := time.Now()
					p.write(buf[:len(buf)-1])
					time.Sleep(wire - time.Since(t0))
					buf = buf[len(buf)-1:]
				}
				start := time.Now()
				p.write(buf)
				r := p.next(5 * time.Second)
				lat = append(lat, time.Since(start))
				if r == nil || r.Type != protocol.TypeAck || r.Seq != f.Seq {
					b.Fatalf("no ACK for seq %d: %+v", f.Seq, r)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
			b.ReportMetric(float64(frameLen*10)/115200*1000, "wire-ms")
		})
	}
}

// BenchmarkJournalAppend is the floor under BenchmarkEventToAck: one journal
// record appended and fsynced, the only disk wait before an ACK. Run both
// together; on a loaded machine the fsync tail dominates both p99s.
func BenchmarkJournalAppend(b *testing.B) {
	j, _, err := openJournal(b.TempDir(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer j.close()
	r := record{T: "ev", Boot: 1, Code: 17, Event: "raise", Sev: "alarm", Text: "pressure below limit", At: time.Now()}
	lat := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		r.Seq = uint32(i + 1)
		start := time.Now()
		if err := j.append(&r); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
}
