package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/durable"
	"github.com/plcmail/plcmail/internal/mailertest"
)

// BenchmarkEnqueue measures what the serial bridge waits for before it may
// ACK a frame: one durable Enqueue (write, fsync, rename, directory fsync)
// of a typical 1 KiB alarm mail with an idempotency key. It reports p50 and
// p99 latency. The spool is in $PLCMAIL_BENCH_DIR when set (to measure the
// target's SD card or eMMC), else in t.TempDir(); the filesystem is logged
// because fsync cost is a property of the filesystem and the device.
func BenchmarkEnqueue(b *testing.B) {
	dir := b.TempDir()
	if d := os.Getenv("PLCMAIL_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "plcmail-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	b.Logf("spool on %s (%s)", dir, fsType(dir))
	s, err := Open(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	sub := testSub(0, "")
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	sub.Data = append(sub.Data, body...)
	var n atomic.Int64 // keys unique across the rounds of b.N and -count
	b.Run("Enqueue", func(b *testing.B) {
		measure(b, func(i int) error {
			sub.Key = fmt.Sprintf("bench/%d", n.Add(1))
			_, err := s.Enqueue(sub)
			return err
		})
	})
	// 16 concurrent writers, as 16 SMTP sessions or serial links are:
	// what group commit of the directory fsync buys (ns/op is wall time
	// per message across all writers). "rename" writes a named temp file
	// and renames it, where "tmpfile" links an O_TMPFILE inode; both share
	// the directory fsync.
	for _, tmpfile := range []bool{true, false} {
		name := map[bool]string{true: "Enqueue-parallel16-tmpfile", false: "Enqueue-parallel16-rename"}[tmpfile]
		b.Run(name, func(b *testing.B) {
			if tmpfile && !s.tmpfile {
				b.Skip("no O_TMPFILE here")
			}
			was := s.tmpfile
			s.tmpfile = tmpfile
			defer func() { s.tmpfile = was }()
			b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				sub := sub
				for pb.Next() {
					sub.Key = fmt.Sprintf("bench-par/%d", n.Add(1))
					if _, err := s.Enqueue(sub); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
	// The floor: the bare write, fsync, rename, directory fsync that
	// Enqueue is built on, measured on the same disk in the same run.
	b.Run("writeDurable", func(b *testing.B) {
		data := encodeSpoolFile(&Message{ID: newID()}, sub.Data)
		measure(b, func(i int) error {
			return durable.WriteFile(filepath.Join(dir, dirQueue, fmt.Sprintf("raw%d", i)), data, durable.Options{TempDir: filepath.Join(dir, dirTmp), TempPattern: tmpPattern})
		})
	})
}

func measure(b *testing.B, op func(i int) error) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown: " + err.Error()
	}
	names := map[int64]string{0xEF53: "ext4", 0x01021994: "tmpfs", 0x58465342: "xfs", 0x9123683E: "btrfs",
		0x794c7630: "overlayfs", 0x4d44: "vfat", 0x5346544e: "ntfs", 0xF2F52010: "f2fs", 0x6969: "nfs"}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("fs magic %#x", st.Type)
}

// BenchmarkRelayCycle is the spool's share of relaying one message, as the
// listener and the delivery loop do it under a burst: Enqueue, then
// Delivered, from 16 goroutines. "recycled" holds the delivery lock, so
// delivered files are reused (spool_recycle.go); "new" creates and unlinks
// a file per message. Both durable; ns/op is wall time per message.
func BenchmarkRelayCycle(b *testing.B) {
	for _, recycle := range []bool{false, true} {
		b.Run(map[bool]string{false: "new", true: "recycled"}[recycle], func(b *testing.B) {
			dir := b.TempDir()
			s, err := Open(dir, nil)
			if err != nil {
				b.Fatal(err)
			}
			if recycle {
				unlock, err := s.LockDelivery()
				if err != nil {
					b.Fatal(err)
				}
				defer unlock()
			}
			sub := testSub(0, "")
			sub.Data = append(sub.Data, make([]byte, 4096)...)
			b.Logf("spool on %s (%s)", dir, fsType(dir))
			b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id, err := s.Enqueue(sub)
					if err == nil {
						err = s.Delivered(id)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkDeliverBacklog is the delivery side of a burst: a backlog of
// b.N 1 KiB messages in the spool, drained by a Queue over 1 and over 4
// connections to a fake upstream on loopback (plaintext, no AUTH, so that
// the spool's share shows), which answers DATA at once or, as a provider
// across the Internet would, after 5ms. Every delivery is recorded durably
// before the next MAIL FROM on its connection, which is what bounds a crash
// to one repeated message per connection; msgs/s is what that costs.
func BenchmarkDeliverBacklog(b *testing.B) {
	for _, bc := range []struct {
		conns int
		delay time.Duration
	}{{1, 0}, {4, 0}, {1, 5 * time.Millisecond}, {4, 5 * time.Millisecond}} {
		b.Run(fmt.Sprintf("conns%d-data%v", bc.conns, bc.delay), func(b *testing.B) {
			conns := bc.conns
			u := mailertest.NewUpstream(b, mailertest.Options{Security: mailertest.Plain, NoAuth: true,
				Data: func(mailertest.Received) error { time.Sleep(bc.delay); return nil }})
			dir := b.TempDir()
			s, err := Open(dir, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("spool on %s (%s)", dir, fsType(dir))
			sub := testSub(0, "")
			sub.Data = append(sub.Data, make([]byte, 1024)...)
			for range b.N {
				if _, err := s.Enqueue(sub); err != nil {
					b.Fatal(err)
				}
			}
			opts := defaultQueueOptions(u.Options())
			opts.Connections = conns
			q, err := NewQueue(s, opts, nil)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			var n atomic.Int64
			q.OnResult(func(Result) {
				if n.Add(1) == int64(b.N) {
					close(done)
				}
			})
			ctx, cancel := context.WithCancel(context.Background())
			stopped := make(chan error, 1)
			b.ResetTimer()
			go func() { stopped <- q.Run(ctx) }()
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Errorf("%d of %d delivered", n.Load(), b.N)
			}
			b.StopTimer()
			cancel()
			if err := <-stopped; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
