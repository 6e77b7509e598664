package spool

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
)

// TestQueueAttemptCounts counts each kind of attempt against a real
// upstream: refused connections while it is down, a greylisting 451 twice,
// a 554, and the acceptances.
func TestQueueAttemptCounts(t *testing.T) {
	u, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.Connections = 1
	up := net.JoinHostPort(opts.Upstream.Host, strconv.Itoa(opts.Upstream.Port))
	u.Stop()
	q, results := runQueue(t, s, opts)
	if _, err := s.Enqueue(testSub(1, "")); err != nil {
		t.Fatal(err)
	}
	q.Wake()
	counts := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, a := range q.Stats().Attempts {
			if a.Upstream != up {
				t.Errorf("attempt towards %q, want %q", a.Upstream, up)
			}
			m[a.Result] += a.Count
		}
		return m
	}
	deadline := time.Now().Add(10 * time.Second)
	for counts()[AttemptConnError] == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var grey atomic.Int32
	u.SetData(func(m mailertest.Received) error {
		switch {
		case bytes.Contains(m.Data, []byte("body 2")) && grey.Add(1) <= 2:
			return mailertest.Reply(451, "greylisted")
		case bytes.Contains(m.Data, []byte("body 3")):
			return mailertest.Reply(554, "content rejected")
		}
		return nil
	})
	u.Start()
	for i := 2; i <= 3; i++ {
		if _, err := s.Enqueue(testSub(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	q.Wake()
	waitResults(t, results, 3, 20*time.Second)
	got := counts()
	connErrs := got[AttemptConnError]
	delete(got, AttemptConnError)
	want := map[string]uint64{AttemptAccepted: 2, AttemptDeferred: 2, AttemptRejected: 1}
	if fmt.Sprint(got) != fmt.Sprint(want) || connErrs == 0 {
		t.Errorf("attempts %v and %d conn_error, want %v and at least one", got, connErrs, want)
	}
}
