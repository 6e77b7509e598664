package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/upstream"
)

// defaultQueueOptions is the delivery policy of config.Default() (lifetime
// 5 days, min_backoff 30s, max_backoff 1h, batch_size 100, scan_every 1s,
// connections 4), delivering to up.
func defaultQueueOptions(up upstream.Options) QueueOptions {
	return QueueOptions{
		Upstream:    up,
		Connections: 4,
		BatchSize:   100,
		ScanEvery:   time.Second,
		Lifetime:    5 * 24 * time.Hour,
		MinBackoff:  30 * time.Second,
		MaxBackoff:  time.Hour,
	}
}

// testQueueOptions is defaultQueueOptions with short retry times suited to
// tests (min_backoff 50ms, max_backoff 500ms, scan_every 100ms).
func testQueueOptions(up upstream.Options) QueueOptions {
	o := defaultQueueOptions(up)
	o.MinBackoff = 50 * time.Millisecond
	o.MaxBackoff = 500 * time.Millisecond
	o.ScanEvery = 100 * time.Millisecond
	return o
}

// runQueue starts a Queue on spool and stops it at the end of the test;
// final results arrive on the returned channel.
func runQueue(t *testing.T, s *Spool, opts QueueOptions) (*Queue, <-chan Result) {
	t.Helper()
	q, err := NewQueue(s, opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return q, startQueue(t, q)
}

// startQueue runs q until the end of the test; final results arrive on the
// returned channel.
func startQueue(t *testing.T, q *Queue) <-chan Result {
	t.Helper()
	results := make(chan Result, 1000)
	q.OnResult(func(r Result) { results <- r })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return results
}

func waitResults(t *testing.T, ch <-chan Result, n int, timeout time.Duration) []Result {
	t.Helper()
	var rs []Result
	deadline := time.After(timeout)
	for len(rs) < n {
		select {
		case r := <-ch:
			rs = append(rs, r)
		case <-deadline:
			t.Fatalf("got %d results, want %d: %+v", len(rs), n, rs)
		}
	}
	return rs
}

// upstreamSpool starts a fake upstream and returns it, queue options that
// deliver to it (testQueueOptions), and a spool in a fresh temporary
// directory.
func upstreamSpool(t *testing.T, uopts mailertest.Options) (*mailertest.Upstream, QueueOptions, *Spool) {
	u := mailertest.NewUpstream(t, uopts)
	return u, testQueueOptions(u.Options()), openTestSpool(t, t.TempDir())
}

func TestQueueDeliversAndKeysSurvive(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{RequireAuth: true})
	q, results := runQueue(t, s, opts)
	sub := testSub(1, "press/7/42")
	sub.To = []string{"a@example.com", "b@example.com"}
	id, err := s.Enqueue(sub)
	if err != nil {
		t.Fatal(err)
	}
	q.Wake()
	r := waitResults(t, results, 1, 5*time.Second)[0]
	if !r.Delivered || r.Code != 250 || r.Message.ID != id || r.Message.Key != "press/7/42" || r.Message.Source != "test" {
		t.Errorf("result %+v", r)
	}
	m := u.Messages()[0]
	if string(m.Data) != string(sub.Data) || !slices.Equal(m.To, sub.To) {
		t.Errorf("received %+v", m)
	}
	if msgs, _ := s.List(); len(msgs) != 0 {
		t.Errorf("still queued: %+v", msgs)
	}
	if st := q.Stats(); st.Delivered != 1 || st.LastSuccess.IsZero() || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
	// After delivery and a restart the key is still a duplicate.
	s2 := openTestSpool(t, s.Dir())
	if _, err := s2.Enqueue(testSub(2, "press/7/42")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("after delivery and reopen: %v, want ErrDuplicate", err)
	}
}

func TestQueueRetries4xx(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	var tries atomic.Int32
	u.SetData(func(mailertest.Received) error {
		if tries.Add(1) <= 2 {
			return mailertest.Reply(451, "greylisted, try again")
		}
		return nil
	})
	_, results := runQueue(t, s, opts)
	id, _ := s.Enqueue(testSub(1, ""))
	r := waitResults(t, results, 1, 10*time.Second)[0]
	if !r.Delivered || r.Message.ID != id {
		t.Fatalf("result %+v", r)
	}
	if r.Message.Attempts != 2 || !strings.Contains(r.Message.LastError, "451") {
		t.Errorf("attempts %d, last error %q; want 2 and the 451", r.Message.Attempts, r.Message.LastError)
	}
	if n := len(u.Messages()); n != 1 {
		t.Errorf("%d copies delivered", n)
	}
}

func TestQueueDeadLetters5xx(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	u.SetData(func(mailertest.Received) error { return mailertest.Reply(554, "content rejected") })
	q, results := runQueue(t, s, opts)
	id, _ := s.Enqueue(testSub(1, "k5"))
	r := waitResults(t, results, 1, 5*time.Second)[0]
	if r.Delivered || r.Code != 554 || !strings.Contains(r.Reason, "content rejected") {
		t.Fatalf("result %+v", r)
	}
	dead, _ := s.ListDead()
	if len(dead) != 1 || dead[0].ID != id || dead[0].Code != 554 || !strings.Contains(dead[0].Reason, "554") {
		t.Fatalf("dead %+v", dead)
	}
	// One attempt was made, and it failed for good.
	if dead[0].Attempts != 1 || r.Message.Attempts != 1 {
		t.Errorf("dead letter after %d attempts, result says %d; want 1", dead[0].Attempts, r.Message.Attempts)
	}
	if st := q.Stats(); st.DeadLettered != 1 {
		t.Errorf("stats %+v", st)
	}
	s.Close()
	if _, err := openTestSpool(t, s.Dir()).Enqueue(testSub(1, "k5")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("dead letter's key forgotten: %v", err)
	}
}

// TestQueuePartialRecipients: one recipient accepted, one refused for good,
// one deferred. Each gets the message at most once; the refused one ends up
// in the dead letter.
func TestQueuePartialRecipients(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	var later atomic.Int32
	u.SetRcpt(func(to string) error {
		switch to {
		case "nobody@example.com":
			return mailertest.Reply(550, "no such user")
		case "later@example.com":
			if later.Add(1) == 1 {
				return mailertest.Reply(450, "mailbox busy")
			}
		}
		return nil
	})
	_, results := runQueue(t, s, opts)
	sub := testSub(1, "")
	sub.To = []string{"ok@example.com", "nobody@example.com", "later@example.com"}
	id, _ := s.Enqueue(sub)
	r := waitResults(t, results, 1, 10*time.Second)[0]
	msgs := u.Messages()
	if len(msgs) != 2 || !slices.Equal(msgs[0].To, []string{"ok@example.com"}) || !slices.Equal(msgs[1].To, []string{"later@example.com"}) {
		t.Fatalf("deliveries %+v", msgs)
	}
	if r.Delivered || r.Code != 550 || !slices.Equal(r.Message.Envelope.To, []string{"nobody@example.com"}) {
		t.Errorf("result %+v", r)
	}
	dead, _ := s.ListDead()
	if len(dead) != 1 || dead[0].ID != id || !slices.Equal(dead[0].Envelope.To, []string{"nobody@example.com"}) || !strings.Contains(dead[0].Reason, "no such user") {
		t.Errorf("dead %+v", dead)
	}
}

func TestQueueExpires(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	s.now = func() time.Time { return time.Now().Add(-6 * 24 * time.Hour) }
	id, _ := s.Enqueue(testSub(1, ""))
	s.now = time.Now
	_, results := runQueue(t, s, opts)
	r := waitResults(t, results, 1, 5*time.Second)[0]
	if r.Delivered || r.Reason != "expired" || r.Code != 0 || r.Message.ID != id {
		t.Fatalf("result %+v", r)
	}
	if len(u.Messages()) != 0 {
		t.Error("expired message was sent")
	}
	if dead, _ := s.ListDead(); len(dead) != 1 || dead[0].Reason != "expired" {
		t.Errorf("dead %+v", dead)
	}
}

// TestQueueUpstreamOutage: the upstream is down while mail is queued; the
// loop backs off (a bounded number of connection attempts), and when the
// upstream returns everything drains exactly once.
func TestQueueUpstreamOutage(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.BatchSize = 7
	u.Stop()
	q, results := runQueue(t, s, opts)
	for i := 0; i < 20; i++ {
		if _, err := s.Enqueue(testSub(i, fmt.Sprintf("k%d", i))); err != nil {
			t.Fatal(err)
		}
		q.Wake()
	}
	time.Sleep(1500 * time.Millisecond)
	st := q.Stats()
	if st.Queued != 20 || st.LastError == "" || st.Delivered != 0 {
		t.Errorf("during outage: %+v", st)
	}
	// max_backoff is 500ms: over 1.5s at most a handful of dial rounds.
	if st.Deferred > 20*4 {
		t.Errorf("%d deferrals in 1.5s: retrying too eagerly", st.Deferred)
	}
	if fi := q.Stats(); fi.Queued != 20 {
		t.Errorf("stats: %+v", fi)
	}
	u.Start()
	rs := waitResults(t, results, 20, 15*time.Second)
	for _, r := range rs {
		if !r.Delivered {
			t.Errorf("not delivered: %+v", r)
		}
	}
	msgs := u.Messages()
	seen := map[string]bool{}
	for _, m := range msgs {
		if seen[string(m.Data)] {
			t.Errorf("delivered twice: %q", m.Data)
		}
		seen[string(m.Data)] = true
	}
	if len(msgs) != 20 {
		t.Errorf("%d delivered, want 20", len(msgs))
	}
}

func TestQueueBatchReusesConnection(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.BatchSize = 100
	opts.Connections = 1
	for i := 0; i < 25; i++ {
		s.Enqueue(testSub(i, ""))
	}
	_, results := runQueue(t, s, opts)
	waitResults(t, results, 25, 10*time.Second)
	if n := u.Connections(); n != 1 {
		t.Errorf("%d connections for 25 messages, want 1", n)
	}
	// Oldest first.
	msgs := u.Messages()
	for i, m := range msgs {
		if string(m.Data) != string(testSub(i, "").Data) {
			t.Fatalf("message %d out of order", i)
		}
	}
}

func TestQueueBatchSizeAndRsetAfterFailure(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.BatchSize = 4
	opts.Connections = 1
	u.SetRcpt(func(to string) error {
		if to == "bad@example.com" {
			return mailertest.Reply(550, "unknown")
		}
		return nil
	})
	for i := 0; i < 8; i++ {
		sub := testSub(i, "")
		if i == 1 {
			sub.To = []string{"bad@example.com"}
		}
		s.Enqueue(sub)
	}
	_, results := runQueue(t, s, opts)
	waitResults(t, results, 8, 10*time.Second)
	if n := u.Connections(); n != 2 {
		t.Errorf("%d connections for 8 messages in batches of 4, want 2", n)
	}
	if n := len(u.Messages()); n != 7 {
		t.Errorf("%d delivered, want 7", n)
	}
}

func TestQueueSkipsCorruptFile(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	s.Enqueue(testSub(1, ""))
	bad := newID()
	os.WriteFile(filepath.Join(s.Dir(), dirQueue, bad), []byte("{broken json\r\nSubject: x\r\n"), 0o600)
	s.Enqueue(testSub(2, ""))
	_, results := runQueue(t, s, opts)
	waitResults(t, results, 2, 5*time.Second)
	if n := len(u.Messages()); n != 2 {
		t.Errorf("%d delivered, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), dirCorrupt, dirQueue+"-"+bad)); err != nil {
		t.Errorf("corrupt file not moved aside: %v", err)
	}
}

// TestQueueOtherProcess: mail queued and flushed through another Spool on
// the same directory (plcmail send, plcmail queue flush) is picked up.
func TestQueueOtherProcess(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.MinBackoff = time.Hour
	opts.MaxBackoff = time.Hour
	var fail atomic.Bool
	fail.Store(true)
	u.SetData(func(mailertest.Received) error {
		if fail.Load() {
			return mailertest.Reply(421, "closing")
		}
		return nil
	})
	q, results := runQueue(t, s, opts)
	other := openTestSpool(t, s.Dir())
	if _, err := other.Enqueue(testSub(1, "")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Stats().Deferred == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if q.Stats().Deferred == 0 {
		t.Fatal("message from the other process never tried")
	}
	fail.Store(false)
	if err := other.Flush(); err != nil { // without it: an hour
		t.Fatal(err)
	}
	r := waitResults(t, results, 1, 5*time.Second)[0]
	if !r.Delivered {
		t.Errorf("result %+v", r)
	}
	// A second delivery loop on the same spool is refused.
	q2, _ := NewQueue(other, opts, nil)
	if err := q2.Run(context.Background()); !errors.Is(err, ErrLocked) {
		t.Errorf("second Run: %v, want ErrLocked", err)
	}
}

// TestQueueShutdownKeepsMail: cancelling Run while the upstream hangs
// returns within the command timeout and keeps the message queued.
func TestQueueShutdownKeepsMail(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.Upstream.Timeout = time.Second
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	u.SetData(func(mailertest.Received) error {
		<-release
		return mailertest.Reply(451, "slow")
	})
	id, _ := s.Enqueue(testSub(1, ""))
	q, err := NewQueue(s, opts, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(u.Events(), "rcpt ops@example.com") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	once.Do(func() { close(release) })
	if m, err := s.Get(id); err != nil || m.Attempts != 1 {
		t.Errorf("after shutdown: %+v %v; want still queued with 1 attempt", m, err)
	}
}

// TestQueue421EndsBatch: 421 means the server closes the connection; the
// rest of the batch is not charged with an attempt on a dead connection.
func TestQueue421EndsBatch(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.Connections = 1
	var n atomic.Int32
	u.SetData(func(mailertest.Received) error {
		if n.Add(1) == 1 {
			return mailertest.Reply(421, "shutting down")
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		s.Enqueue(testSub(i, ""))
	}
	_, results := runQueue(t, s, opts)
	rs := waitResults(t, results, 3, 10*time.Second)
	for _, r := range rs {
		if !r.Delivered {
			t.Errorf("%+v", r)
		}
	}
	var retried int
	for _, r := range rs {
		retried += r.Message.Attempts
	}
	if retried != 1 {
		t.Errorf("%d failed attempts charged, want 1 (only the message that got the 421)", retried)
	}
	// 421, then the two others on a new connection, which the retry
	// 50ms later reuses (idle for less than connIdle, NOOP answered).
	if c := u.Connections(); c != 2 {
		t.Errorf("%d connections, want 2", c)
	}
}

// TestQueueUnremovableFileSentOnce: when a delivered message's file cannot
// be removed (failing disk; here an immutable file), it is not sent again
// on every scan.
func TestQueueUnremovableFileSentOnce(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	id, _ := s.Enqueue(testSub(1, ""))
	path := s.path(dirQueue, id)
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("chattr +i not possible here (%v: %s); cannot simulate a failing disk", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
	runQueue(t, s, opts)
	u.Wait(t, 1, 5*time.Second)
	time.Sleep(time.Duration(5) * opts.ScanEvery)
	if n := len(u.Messages()); n != 1 {
		t.Errorf("sent %d times, want once", n)
	}
}

// A queue file whose envelope would break the SMTP command line (written by
// an older version, or by hand) is dead-lettered with a reason at its first
// turn: never sent, never retried. Enqueue refuses such envelopes, so the
// files are written directly.
func TestQueueDeadLettersBadEnvelope(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{Transcript: true})
	bad := map[string]Envelope{
		"crlf in sender": {From: "plc@example.com>\r\nRCPT TO:<victim@example.org", To: []string{"ops@example.com"}},
		"escape in rcpt": {From: "plc@example.com", To: []string{"ops@example.com", "\x1b]0;pwned\x07x@example.com"}},
		"NUL in rcpt":    {From: "plc@example.com", To: []string{"o\x00ps@example.com"}},
		"no rcpt":        {From: "plc@example.com"},
	}
	ids := map[string]string{}
	for name, env := range bad {
		id := s.newID()
		m := Message{ID: id, Envelope: env, Created: time.Now().UTC(), NextAttempt: time.Now().UTC(), Source: "test"}
		data := []byte("Subject: bad envelope\r\n\r\nx\r\n")
		m.Size = int64(len(data))
		if err := os.WriteFile(s.path(dirQueue, id), encodeSpoolFile(&m, data), 0o600); err != nil {
			t.Fatal(err)
		}
		ids[id] = name
	}
	good, err := s.Enqueue(testSub(1, ""))
	if err != nil {
		t.Fatal(err)
	}
	_, results := runQueue(t, s, opts)
	for _, r := range waitResults(t, results, len(bad)+1, 10*time.Second) {
		if r.Message.ID == good {
			if !r.Delivered {
				t.Errorf("the good message: %+v", r)
			}
			continue
		}
		name := ids[r.Message.ID]
		want := "control character"
		if name == "no rcpt" {
			want = "no recipients"
		}
		if r.Delivered || r.Code != 0 || !strings.Contains(r.Reason, "invalid envelope, not sent") || !strings.Contains(r.Reason, want) {
			t.Errorf("%s: result %+v", name, r)
		}
		if strings.ContainsAny(r.Reason, "\r\n\x1b\x00") {
			t.Errorf("%s: reason holds a raw control character: %q", name, r.Reason)
		}
	}
	dead, _ := s.ListDead()
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(bad))
	}
	for _, m := range dead {
		if m.Attempts != 0 {
			t.Errorf("%s: %d attempts recorded for a message never sent", ids[m.ID], m.Attempts)
		}
	}
	if msgs := u.Messages(); len(msgs) != 1 {
		t.Errorf("upstream received %d messages, want only the good one", len(msgs))
	}
	if tr := u.Transcript(); strings.Contains(tr, "victim") || strings.Contains(tr, "pwned") || strings.Contains(tr, "o\x00ps") {
		t.Errorf("a bad envelope reached the upstream:\n%s", tr)
	}
}

// TestQueueEnqueueWithoutWake: a message this process queues while the loop
// runs is delivered even when the caller does not call Wake: Enqueue wakes
// the loop itself. It used to wait for the next full listing (ten
// minutes), because inotify's report of the file is skipped as this
// process's; tests that queued right after starting the loop failed on a
// loaded machine.
func TestQueueEnqueueWithoutWake(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	_, results := runQueue(t, s, opts)
	// Wait until the loop tracks this process's messages (Run started).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		on := s.freshWake != nil
		s.mu.Unlock()
		if on {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("queue loop did not start")
		}
	}
	if _, err := s.Enqueue(testSub(1, "nowake")); err != nil {
		t.Fatal(err)
	}
	if r := waitResults(t, results, 1, 5*time.Second)[0]; !r.Delivered || len(u.Messages()) != 1 {
		t.Fatalf("result %+v, %d delivered", r, len(u.Messages()))
	}
}
