package spool

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
)

// TestQueueInotifyOverflow makes the kernel's inotify event queue really
// overflow (the reader held by a test hook while more events than
// fs.inotify.max_queued_events happen in queue/), has another process queue
// a message during the overflow (its event is dropped), and checks that the
// loop lists queue/ at once and delivers it: with scan_every an hour, the
// next listing would otherwise come an hour later.
func TestQueueInotifyOverflow(t *testing.T) {
	if dir := os.Getenv("PLCMAIL_SPOOL_ENQUEUE_ONE"); dir != "" {
		s, err := Open(dir, nil)
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		id, err := s.Enqueue(testSub(2, "other/process"))
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		fmt.Println(id)
		os.Exit(0)
	}
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skipf("inotify limits unknown: %v", err)
	}
	maxEvents, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || maxEvents > 1<<20 {
		t.Skipf("fs.inotify.max_queued_events is %q: too many events to overflow in a test", b)
	}

	_, opts, s := upstreamSpool(t, mailertest.Options{})
	opts.ScanEvery = time.Hour
	logs := &lockedBuffer{}
	q, err := NewQueue(s, opts, slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	var hold atomic.Bool
	held := make(chan struct{}, 1)
	resume := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(resume) }) }
	t.Cleanup(release)
	q.beforeWatchRead = func() {
		if hold.Load() {
			select {
			case held <- struct{}{}:
			default:
			}
			<-resume
		}
	}
	results := startQueue(t, q)
	// One message through the loop's own spool: Run is past its first
	// listing of queue/ once it is delivered.
	if _, err := s.Enqueue(testSub(0, "")); err != nil {
		t.Fatal(err)
	}
	q.Wake()
	waitResults(t, results, 1, 5*time.Second)

	// Hold the reader: it reads one more batch of events (this one), then
	// stops before its next read.
	hold.Store(true)
	queueDir := filepath.Join(s.Dir(), dirQueue)
	noise := filepath.Join(queueDir, "noise")
	touch := func() {
		f, err := os.Create(noise)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := os.Remove(noise); err != nil {
			t.Fatal(err)
		}
	}
	touch()
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the inotify reader did not reach the hook")
	}
	// Two events (IN_CREATE, IN_DELETE) per touch: the queue overflows.
	for range maxEvents/2 + 10 {
		touch()
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestQueueInotifyOverflow$")
	cmd.Env = append(os.Environ(), "PLCMAIL_SPOOL_ENQUEUE_ONE="+s.Dir())
	out, err := cmd.Output()
	id := strings.TrimSpace(string(out))
	if err != nil || !validID(id) {
		t.Fatalf("the other process: %v: %s", err, out)
	}
	release()
	r := waitResults(t, results, 1, 5*time.Second)[0]
	if !r.Delivered || r.Message.ID != id {
		t.Fatalf("result %+v, want %s delivered", r, id)
	}
	if !strings.Contains(logs.String(), "inotify dropped change events") {
		t.Errorf("no overflow logged (did the kernel's queue overflow?):\n%s", logs.String())
	}
}

// lockedBuffer is a bytes.Buffer for a logger written from several
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
