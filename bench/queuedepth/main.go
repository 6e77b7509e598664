// Command queuedepth measures what a deep queue costs the delivery loop
// (issue #18): for each depth it fills a spool with that many messages,
// then, in this process, runs the spool's Queue
//
//   - against an upstream that refuses connections, and reports the memory
//     the queued messages take (VmRSS and Go heap, per message, after a
//     GC) and the CPU the loop burns while it holds them (% of one core
//     over -idle);
//   - against a running SMTP sink (-sink, e.g. Postfix's smtp-sink), and
//     reports the time and the CPU it takes to drain them, per message.
//
// It uses the spool's public API only, so the same source measures an
// older tree (bench/queuedepth.sh does, for the "before" column). With
// -fill DIR it only fills DIR with -n messages and exits (for `plcmail
// queue list` against `postqueue -p`).
//
// The messages are written straight into queue/ in the spool's file format
// (a JSON header line, then the message), without fsyncs: filling 100,000
// through Enqueue would time the disk, not the loop.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/plcmail/plcmail/spool"
	"github.com/plcmail/plcmail/upstream"
	"golang.org/x/sys/unix"
)

func main() {
	depths := flag.String("n", "1000,10000,50000,100000", "queue depths, comma separated")
	sink := flag.String("sink", "", "host:port of an SMTP sink for the drain (none: no drain)")
	idle := flag.Duration("idle", 20*time.Second, "how long to measure the CPU of the loop holding the queue")
	size := flag.Int("size", 4096, "bytes per message")
	fill := flag.String("fill", "", "only fill this spool directory with -n messages")
	work := flag.String("dir", "", "work directory (default: a temporary one)")
	prof := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	wear := flag.Int("wear", 0, "only measure what this many alarm mails and as many relayed messages write (needs -sink)")
	dev := flag.String("dev", "", "with -wear: the block device under -dir (e.g. loop0), whose write counters in /sys/block/DEV/stat are reported per message")
	flag.Parse()
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var ns []int
	for _, f := range strings.Split(*depths, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			log.Fatalf("-n: %v", err)
		}
		ns = append(ns, n)
	}
	if *wear > 0 {
		if err := measureWear(*work, *wear, *size, *sink, *dev); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *fill != "" {
		if err := fillSpool(*fill, ns[0], *size); err != nil {
			log.Fatal(err)
		}
		return
	}
	dir := *work
	if dir == "" {
		d, err := os.MkdirTemp("", "queuedepth-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	fmt.Printf("| queued | load s | RSS B/msg | heap B/msg | idle CPU %% of a core | drain s | drain µs/msg | drain CPU µs/msg |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, n := range ns {
		r, err := measure(filepath.Join(dir, strconv.Itoa(n)), n, *size, *sink, *idle)
		if err != nil {
			log.Fatalf("%d: %v", n, err)
		}
		drain := "-"
		if *sink != "" {
			drain = fmt.Sprintf("%.2f | %.1f | %.1f", r.drain.Seconds(), float64(r.drain.Microseconds())/float64(n), float64(r.drainCPU.Microseconds())/float64(n))
		} else {
			drain = "- | - | -"
		}
		fmt.Printf("| %d | %.2f | %.0f | %.0f | %.3f | %s |\n", n, r.load.Seconds(), r.rss, r.heap, r.idleCPU, drain)
		os.RemoveAll(filepath.Join(dir, strconv.Itoa(n)))
	}
}

type result struct {
	load            time.Duration
	rss, heap       float64 // bytes per queued message
	idleCPU         float64 // % of one core
	drain, drainCPU time.Duration
}

func measure(dir string, n, size int, sink string, idle time.Duration) (result, error) {
	var r result
	if err := fillSpool(dir, n, size); err != nil {
		return r, err
	}
	log := slog.New(slog.DiscardHandler)
	sp, err := spool.Open(dir, log)
	if err != nil {
		return r, err
	}
	defer sp.Close()
	settle()
	rss0, heap0 := vmRSS(), heapAlloc()

	// Phase 1: the upstream refuses connections; the loop holds the queue.
	dead := freePort()
	opts := spool.QueueOptions{
		Upstream:    upstream.Options{Host: "127.0.0.1", Port: dead, Security: upstream.None, Auth: "none", Timeout: 10 * time.Second},
		Connections: 4, BatchSize: 100, ScanEvery: time.Second,
		Lifetime: 5 * 24 * time.Hour, MinBackoff: 30 * time.Second, MaxBackoff: time.Hour,
	}
	q, err := spool.NewQueue(sp, opts, log)
	if err != nil {
		return r, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- q.Run(ctx) }()
	for q.Stats().Queued < n {
		time.Sleep(20 * time.Millisecond)
	}
	r.load = time.Since(start)
	for q.Stats().HoldUntil.IsZero() { // the first probe failed: held
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the probe's retry states are written
	settle()
	r.rss = float64(vmRSS()-rss0) / float64(n)
	r.heap = float64(heapAlloc()-heap0) / float64(n)
	c0, t0 := cpuTime(), time.Now()
	time.Sleep(idle)
	r.idleCPU = 100 * float64(cpuTime()-c0) / float64(time.Since(t0))
	cancel()
	if err := <-done; err != nil {
		return r, err
	}
	if sink == "" {
		return r, nil
	}

	// Phase 2: a new loop against the sink drains the queue.
	host, port, _ := strings.Cut(sink, ":")
	opts.Upstream.Host = host
	opts.Upstream.Port, _ = strconv.Atoi(port)
	if err := sp.Flush(); err != nil { // the probe's batch was deferred
		return r, err
	}
	q, err = spool.NewQueue(sp, opts, log)
	if err != nil {
		return r, err
	}
	ctx, cancel = context.WithCancel(context.Background())
	c0, t0 = cpuTime(), time.Now()
	go func() { done <- q.Run(ctx) }()
	for q.Stats().Delivered < uint64(n) && time.Since(t0) < time.Duration(n)*10*time.Millisecond+time.Minute {
		time.Sleep(20 * time.Millisecond) // Stats is cheap, but not free
	}
	r.drain, r.drainCPU = time.Since(t0), cpuTime()-c0
	cancel()
	if err := <-done; err != nil {
		return r, err
	}
	if st := q.Stats(); st.Delivered != uint64(n) {
		return r, fmt.Errorf("delivered %d of %d (last error %s)", st.Delivered, n, st.LastError)
	}
	return r, nil
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// fillSpool writes n messages of size bytes into dir/queue as the spool
// stores them (spool.go: "queue/ID").
func fillSpool(dir string, n, size int) error {
	if err := os.MkdirAll(filepath.Join(dir, "queue"), 0o700); err != nil {
		return err
	}
	body := []byte("From: plc@example.com\r\nTo: ops@example.com\r\nSubject: depth test\r\n\r\n")
	for len(body) < size-2 {
		body = append(body, strings.Repeat("x", min(76, size-2-len(body)))...)
		body = append(body, "\r\n"...)
	}
	created := time.Now().Add(-time.Minute).UTC()
	us := uint64(created.UnixMicro())
	for i := range n {
		var r [4]byte
		rand.Read(r[:])
		var b [10]byte
		t := us + uint64(i)
		binary.BigEndian.PutUint16(b[0:], uint16(t>>38))
		binary.BigEndian.PutUint64(b[2:], t<<26|uint64(binary.BigEndian.Uint32(r[:]))&(1<<26-1))
		id := idEncoding.EncodeToString(b[:])
		m := spool.Message{ID: id, Envelope: spool.Envelope{From: "plc@example.com", To: []string{"ops@example.com"}},
			Source: "serial:press-line-1", Key: fmt.Sprintf("press/1/%d", i), Created: created.Add(time.Duration(i) * time.Microsecond),
			Size: int64(len(body)), NextAttempt: created}
		hdr, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "queue", id), append(append(hdr, '\n'), body...), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

func heapAlloc() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// vmRSS is the resident set of this process in bytes.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cpuTime is the user and system CPU time this process used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freePort finds a loopback port nobody listens on: connections to it are
// refused, like an upstream that is down.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// measureWear queues n alarm mails (with an idempotency key, as serial
// links queue them) and n relayed messages (without), one at a time, each
// delivered to the sink before the next is queued: the happy path. It
// prints, per message, what the kernel counted for this process in
// /proc/self/io (write_bytes: bytes this process caused to be written to
// the block layer; syscw: write system calls, the SMTP socket's included).
// bench/queuedepth.sh runs it under strace to count the file operations
// on the spool one by one.
//
// With dev (a block device that holds dir and nothing else busy, such as a
// loop device) it also reports what reached the device per message: write
// requests and bytes from /sys/block/DEV/stat, read after a syncfs at each
// phase's start and end, so that metadata the kernel writes back later is
// counted too.
func measureWear(dir string, n, size int, sink, dev string) error {
	if dir == "" || sink == "" {
		return fmt.Errorf("-wear needs -dir and -sink")
	}
	log := slog.New(slog.DiscardHandler)
	sp, err := spool.Open(filepath.Join(dir, "wear"), log)
	if err != nil {
		return err
	}
	defer sp.Close()
	host, port, _ := strings.Cut(sink, ":")
	p, _ := strconv.Atoi(port)
	q, err := spool.NewQueue(sp, spool.QueueOptions{
		Upstream:    upstream.Options{Host: host, Port: p, Security: upstream.None, Auth: "none", Timeout: 10 * time.Second},
		Connections: 4, BatchSize: 100, ScanEvery: time.Second,
		Lifetime: 5 * 24 * time.Hour, MinBackoff: 30 * time.Second, MaxBackoff: time.Hour,
	}, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.Run(ctx)
	body := []byte("From: plc@example.com\r\nTo: ops@example.com\r\nSubject: alarm\r\n\r\n" + strings.Repeat("x", max(size-80, 0)) + "\r\n")
	delivered := uint64(0)
	if dev == "" {
		fmt.Println("| kind | messages | write_bytes/msg | syscw/msg |\n|---|---:|---:|---:|")
	} else {
		fmt.Println("| kind | messages | write_bytes/msg | syscw/msg | device write requests/msg | device bytes written/msg |\n|---|---:|---:|---:|---:|---:|")
	}
	for _, kind := range []string{"alarm", "relayed"} {
		time.Sleep(500 * time.Millisecond)
		// A marker for the strace log: what follows is this kind.
		os.WriteFile(filepath.Join(dir, "phase-"+kind), nil, 0o600)
		d0, err := devWrites(dir, dev)
		if err != nil {
			return err
		}
		io0 := procIO()
		for i := range n {
			sub := spool.Submission{Envelope: spool.Envelope{From: "plc@example.com", To: []string{"ops@example.com"}}, Data: body, Source: kind}
			if kind == "alarm" {
				sub.Key = fmt.Sprintf("press-line-1/7/%d", i)
			}
			if _, err := sp.Enqueue(sub); err != nil {
				return err
			}
			q.Wake()
			delivered++
			for q.Stats().Delivered < delivered {
				time.Sleep(200 * time.Microsecond)
			}
		}
		time.Sleep(500 * time.Millisecond)
		io1 := procIO()
		d1, err := devWrites(dir, dev)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %d | %.0f | %.1f |", kind, n, float64(io1["write_bytes"]-io0["write_bytes"])/float64(n), float64(io1["syscw"]-io0["syscw"])/float64(n))
		if dev != "" {
			fmt.Printf(" %.2f | %.0f |", float64(d1[0]-d0[0])/float64(n), float64(d1[1]-d0[1])/float64(n))
		}
		fmt.Println()
	}
	return nil
}

// devWrites syncs dir's file system and returns dev's completed write
// requests and bytes written so far (fields 5 and 7 of /sys/block/DEV/stat,
// the latter in 512-byte sectors); zeros without dev.
func devWrites(dir, dev string) ([2]int64, error) {
	if dev == "" {
		return [2]int64{}, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return [2]int64{}, err
	}
	err = unix.Syncfs(int(f.Fd()))
	f.Close()
	if err != nil {
		return [2]int64{}, fmt.Errorf("syncfs %s: %w", dir, err)
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", dev, "stat"))
	if err != nil {
		return [2]int64{}, err
	}
	fs := strings.Fields(string(b))
	if len(fs) < 7 {
		return [2]int64{}, fmt.Errorf("/sys/block/%s/stat: %d fields", dev, len(fs))
	}
	ios, _ := strconv.ParseInt(fs[4], 10, 64)
	sectors, _ := strconv.ParseInt(fs[6], 10, 64)
	return [2]int64{ios, sectors * 512}, nil
}

func procIO() map[string]int64 {
	out := map[string]int64{}
	b, _ := os.ReadFile("/proc/self/io")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok {
			out[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return out
}
