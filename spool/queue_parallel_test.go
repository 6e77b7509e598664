package spool

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
)

// TestQueueParallelConnections: with connections = 4 and 4 messages due,
// the four are in DATA at the same time, over four connections.
func TestQueueParallelConnections(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.Connections = 4
	var inData atomic.Int32
	all := make(chan struct{})
	var once sync.Once
	u.SetData(func(mailertest.Received) error {
		if inData.Add(1) == 4 {
			once.Do(func() { close(all) })
		}
		select {
		case <-all:
			return nil
		case <-time.After(5 * time.Second):
			return mailertest.Reply(451, "the four were never in DATA together")
		}
	})
	for i := 0; i < 4; i++ {
		if _, err := s.Enqueue(testSub(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	_, results := runQueue(t, s, opts)
	for _, r := range waitResults(t, results, 4, 15*time.Second) {
		if !r.Delivered || r.Message.Attempts != 0 {
			t.Errorf("not delivered at the first attempt: %+v", r)
		}
	}
	// Four in DATA at once (the hook waited for that) over four connections.
	if c := u.Connections(); c != 4 {
		t.Errorf("%d connections, want 4", c)
	}
}

// TestQueueParallelExactlyOnce: 500 keyed messages over 4 connections,
// with some 451 replies (deferred, retried by whichever worker) and some
// 421 replies (the connection closes in the middle of a batch). Every
// message is accepted exactly once, never in two transactions at once, and
// results and Stats add up.
func TestQueueParallelExactlyOnce(t *testing.T) {
	const n = 500
	u, opts, s := upstreamSpool(t, mailertest.Options{Security: mailertest.Plain, NoAuth: true})
	opts.Connections = 4
	opts.BatchSize = 25
	opts.MinBackoff = 20 * time.Millisecond
	opts.MaxBackoff = 100 * time.Millisecond
	var mu sync.Mutex
	inflight := map[string]bool{}
	tries := map[string]int{}
	var overlaps, failures atomic.Int32
	u.SetData(func(m mailertest.Received) error {
		subj, _, _ := strings.Cut(string(m.Data), "\r\n")
		mu.Lock()
		if inflight[subj] {
			overlaps.Add(1)
		}
		inflight[subj] = true
		tries[subj]++
		first := tries[subj] == 1
		mu.Unlock()
		time.Sleep(100 * time.Microsecond) // widen the window an overlap would need
		mu.Lock()
		delete(inflight, subj)
		mu.Unlock()
		var k int
		fmt.Sscanf(subj, "Subject: alarm %d", &k)
		switch {
		case first && k%50 == 7:
			failures.Add(1)
			return mailertest.Reply(421, "closing, try later")
		case first && k%7 == 3:
			failures.Add(1)
			return mailertest.Reply(451, "greylisted")
		}
		return nil
	})
	for i := 0; i < n; i++ {
		if _, err := s.Enqueue(testSub(i, "k/"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	q, results := runQueue(t, s, opts)
	rs := waitResults(t, results, n, 60*time.Second)
	keys := map[string]bool{}
	for _, r := range rs {
		if !r.Delivered || keys[r.Message.Key] {
			t.Fatalf("result %+v (key seen before: %v)", r, keys[r.Message.Key])
		}
		keys[r.Message.Key] = true
	}
	got := map[string]int{}
	for _, m := range u.Messages() {
		got[string(m.Data)]++
	}
	for i := 0; i < n; i++ {
		if c := got[string(testSub(i, "").Data)]; c != 1 {
			t.Errorf("message %d accepted %d times", i, c)
		}
	}
	if o := overlaps.Load(); o != 0 {
		t.Errorf("%d times a message was in two transactions at once", o)
	}
	select {
	case r := <-results:
		t.Errorf("extra result %+v", r)
	case <-time.After(200 * time.Millisecond):
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Stats().Queued != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // Run publishes Queued after the workers report back
	}
	st := q.Stats()
	if st.Delivered != n || st.Queued != 0 || st.Deferred != uint64(failures.Load()) {
		t.Errorf("stats %+v; want %d delivered, 0 queued, %d deferred", st, n, failures.Load())
	}
	if msgs, _ := s.List(); len(msgs) != 0 {
		t.Errorf("%d still queued", len(msgs))
	}
	t.Logf("%d messages, %d temporary failures, %d connections", n, failures.Load(), u.Connections())
	if c := u.Connections(); c < 4 {
		t.Errorf("only %d connections used", c)
	}
}

// TestQueue4xxOnOneWorkerNoDuplicate: a 451 to one message of a parallel
// run defers that message only; the others are not resent, and it is
// accepted once, later.
func TestQueue4xxOnOneWorkerNoDuplicate(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.Connections = 4
	victim := string(testSub(3, "").Data)
	var refused atomic.Bool
	u.SetData(func(m mailertest.Received) error {
		if string(m.Data) == victim && !refused.Swap(true) {
			return mailertest.Reply(451, "mailbox busy")
		}
		return nil
	})
	for i := 0; i < 8; i++ {
		s.Enqueue(testSub(i, fmt.Sprintf("v/%d", i)))
	}
	_, results := runQueue(t, s, opts)
	for _, r := range waitResults(t, results, 8, 10*time.Second) {
		want := 0
		if r.Message.Key == "v/3" {
			want = 1
		}
		if !r.Delivered || r.Message.Attempts != want {
			t.Errorf("%s: %+v, want delivered after %d failed attempts", r.Message.Key, r, want)
		}
	}
	seen := map[string]int{}
	for _, m := range u.Messages() {
		seen[string(m.Data)]++
	}
	if len(seen) != 8 {
		t.Errorf("%d distinct messages accepted, want 8", len(seen))
	}
	for d, c := range seen {
		if c != 1 {
			t.Errorf("accepted %d times: %q", c, d)
		}
	}
}

// TestQueueOutageHoldShared: an upstream that accepts TCP and hangs up
// before its greeting. With 4 workers and 40 messages due, connection
// attempts are bounded by the shared hold: at most one round of up to 4 at
// the start, then one probe per hold (300 ms here). Without the shared hold
// each of the 4 workers would dial every round.
func TestQueueOutageHoldShared(t *testing.T) {
	_, opts, s := upstreamSpool(t, mailertest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close()
		}
	}()
	opts.Upstream.Port = ln.Addr().(*net.TCPAddr).Port
	opts.Connections = 4
	opts.MinBackoff = 300 * time.Millisecond
	opts.MaxBackoff = 300 * time.Millisecond
	for i := 0; i < 40; i++ {
		s.Enqueue(testSub(i, ""))
	}
	q, _ := runQueue(t, s, opts)
	time.Sleep(1300 * time.Millisecond)
	a := accepts.Load()
	st := q.Stats()
	t.Logf("%d connection attempts in 1.3 s; stats %+v", a, st)
	// Rounds start at 0 and then no sooner than every 300 ms: at most
	// 0, 0.3, 0.6, 0.9, 1.2 s. A slow machine only makes fewer.
	if a == 0 || a > 4+4 {
		t.Errorf("%d connection attempts, want 1..8", a)
	}
	if st.HoldUntil.IsZero() || st.Queued != 40 || st.Delivered != 0 || !strings.Contains(st.LastError, "greeting") {
		t.Errorf("stats during the outage: %+v", st)
	}
}

// TestQueueFlushSeenAtOnce: a Flush from another process (plcmail queue
// flush) takes effect at once, not at the next scan (an hour here).
func TestQueueFlushSeenAtOnce(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.ScanEvery = time.Hour
	opts.MinBackoff = time.Hour
	opts.MaxBackoff = time.Hour
	var refused atomic.Bool
	u.SetData(func(mailertest.Received) error {
		if !refused.Swap(true) {
			return mailertest.Reply(451, "later")
		}
		return nil
	})
	if _, err := s.Enqueue(testSub(1, "")); err != nil {
		t.Fatal(err)
	}
	q, results := runQueue(t, s, opts)
	deadline := time.Now().Add(5 * time.Second)
	for q.Stats().Deferred == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := openTestSpool(t, s.Dir()).Flush(); err != nil {
		t.Fatal(err)
	}
	if r := waitResults(t, results, 1, 5*time.Second)[0]; !r.Delivered || r.Message.Attempts != 1 {
		t.Errorf("result %+v", r)
	}
}

// TestQueueWakeTakesOwnEnqueues: a message queued through the Queue's own
// Spool reaches the loop on Wake without a directory scan (scan_every is an
// hour here); one queued through another Spool value makes Wake rescan.
func TestQueueWakeTakesOwnEnqueues(t *testing.T) {
	_, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.ScanEvery = time.Hour
	q, results := runQueue(t, s, opts)
	time.Sleep(50 * time.Millisecond) // Run's first scan is done
	if _, err := s.Enqueue(testSub(1, "")); err != nil {
		t.Fatal(err)
	}
	q.Wake()
	if r := waitResults(t, results, 1, 5*time.Second)[0]; !r.Delivered {
		t.Errorf("%+v", r)
	}
	if _, err := openTestSpool(t, s.Dir()).Enqueue(testSub(2, "")); err != nil {
		t.Fatal(err)
	}
	q.Wake()
	if r := waitResults(t, results, 1, 5*time.Second)[0]; !r.Delivered {
		t.Errorf("%+v", r)
	}
}
