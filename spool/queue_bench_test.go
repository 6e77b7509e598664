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

// BenchmarkDrainLoop is the delivery loop's own cost per message while it
// drains a backlog (bench/queuedepth.sh prints it per depth): dispatch
// hands batches to the workers and each message is settled as delivered,
// without the upstream and the disk. ns/msg must not grow with the backlog.
func BenchmarkDrainLoop(b *testing.B) {
	for _, backlog := range []int{1000, 10000, 50000, 100000} {
		b.Run(fmt.Sprint(backlog), func(b *testing.B) {
			opts := defaultQueueOptions(upstream.Options{Port: 587, Security: upstream.StartTLS, Auth: "auto", Timeout: 30 * time.Second})
			ctx := context.Background()
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				q, err := NewQueue(openTestSpool(b, b.TempDir()), opts, nil)
				if err != nil {
					b.Fatal(err)
				}
				now := time.Now()
				q.smu.Lock()
				for i := range backlog {
					id := fmt.Sprintf("M%015d", i)
					q.add(&Message{ID: id, Created: now.Add(time.Duration(i%977) * time.Millisecond), NextAttempt: now,
						Envelope: Envelope{From: "a@example.com", To: []string{"b@example.com"}}})
				}
				q.smu.Unlock()
				workers := make(chan struct{})
				go func() {
					defer close(workers)
					for n := 0; n < backlog; {
						j := <-q.jobs
						for i := range j.msgs {
							q.forget(j.msgs[i].ID)
						}
						n += len(j.msgs)
						q.batchDone(j, nil)
					}
				}()
				b.StartTimer()
				t0 := time.Now()
				for queued(q) > 0 {
					q.dispatch(ctx, now)
					q.sleep(now)
					<-q.kick // a batch is done
				}
				total += time.Since(t0)
				b.StopTimer()
				<-workers
				b.StartTimer()
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*backlog), "ns/msg")
		})
	}
}

func queued(q *Queue) int {
	q.smu.Lock()
	defer q.smu.Unlock()
	return q.idx.len()
}
