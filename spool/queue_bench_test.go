package spool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/plcmail/plcmail/upstream"
)

// BenchmarkLoopPassHeldBacklog is one pass of the delivery loop (dispatch,
// then sleep) after a Wake, with the upstream held down and a backlog
// queued: what every message accepted during an outage costs the loop.
// It must not grow with the backlog.
func BenchmarkLoopPassHeldBacklog(b *testing.B) {
	for _, backlog := range []int{100, 10000} {
		b.Run(fmt.Sprint(backlog), func(b *testing.B) {
			q, err := NewQueue(openTestSpool(b, b.TempDir()), defaultQueueOptions(upstream.Options{
				Port: 587, Security: upstream.StartTLS, Auth: "auto", Timeout: 30 * time.Second}), nil)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			for i := range backlog {
				id := fmt.Sprintf("M%015d", i)
				q.add(&Message{ID: id, Created: now, NextAttempt: now})
			}
			q.routes[0].holdUntil = now.Add(time.Minute)
			q.routes[0].connFails = 1
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				q.dispatch(ctx, now)
				q.sleep(now)
			}
		})
	}
}
