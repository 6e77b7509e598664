package channel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// crashAlarms is how many alarms the crash tests send.
const crashAlarms = 20

// TestChannelChild is the gateway side of the crash tests, run in a child
// process: it queues the alarms (again, as a serial link replays its
// journal after a crash: the spool tells which are new) and delivers over
// the webhook until killed. With PLCMAIL_CHANNEL_DRAIN it instead makes one
// scan, prints how many deliveries are pending, and exits.
func TestChannelChild(t *testing.T) {
	dir, url := os.Getenv("PLCMAIL_CHANNEL_SPOOL"), os.Getenv("PLCMAIL_CHANNEL_URL")
	if dir == "" {
		t.Skip("child of the crash tests")
	}
	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(sp, Options{Hostname: "gw", Channels: []Channel{
		{Name: "hook", Kind: Webhook, URL: url, HasSeverityRule: true, SeverityAtLeast: protocol.SeverityAlarm},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.minBackoff = 10 * time.Millisecond
	sp.BeforeEnqueue(d.Hook)
	for i := 1; i <= crashAlarms; i++ {
		_, err := sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: "plc@example.com", To: []string{"ops@example.com"}},
			Data: []byte(alarmMail), Source: "serial:press-1", Key: fmt.Sprintf("press-1/7/%d", i),
			Origin: json.RawMessage(fmt.Sprintf(`{"link":"press-1","boot":7,"seq":%d,"sev":"critical"}`, i))})
		if err != nil && !errors.Is(err, spool.ErrDuplicate) {
			t.Fatal(err)
		}
	}
	if os.Getenv("PLCMAIL_CHANNEL_DRAIN") != "" {
		d.scan()
		fmt.Printf("pending %d\n", d.store.queued()["hook"])
		return
	}
	fmt.Println("running")
	d.Run(context.Background()) // until killed
}

// crashReceiver is the webhook receiver of the crash tests: it counts the
// requests per idempotency key, and can hold one request until told.
type crashReceiver struct {
	mu    sync.Mutex
	count map[string]int
	order []string
	hold  int           // hold the hold-th request (1-based); 0: none
	held  chan string   // its key, when it arrives
	free  chan struct{} // closed to answer it
	srv   *httptest.Server
}

func newCrashReceiver(t *testing.T, hold int) *crashReceiver {
	c := &crashReceiver{count: map[string]int{}, hold: hold, held: make(chan string, 1), free: make(chan struct{})}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		key := r.Header.Get("Idempotency-Key")
		c.mu.Lock()
		c.count[key]++
		c.order = append(c.order, key)
		n := len(c.order)
		c.mu.Unlock()
		if n == c.hold {
			c.held <- key
			<-c.free
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *crashReceiver) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.count)
}

type child struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

func startChild(t *testing.T, dir, url string, drain bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChannelChild$", "-test.v")
	cmd.Env = append(os.Environ(), "PLCMAIL_CHANNEL_SPOOL="+dir, "PLCMAIL_CHANNEL_URL="+url)
	if drain {
		cmd.Env = append(cmd.Env, "PLCMAIL_CHANNEL_DRAIN=1")
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // never outlive the test
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: bufio.NewReader(out)}
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
}

// line returns the child's next line that starts with prefix.
func (c *child) line(t *testing.T, prefix string) string {
	t.Helper()
	for {
		s, err := c.out.ReadString('\n')
		if strings.HasPrefix(s, prefix) {
			return strings.TrimSpace(s)
		}
		if err != nil {
			t.Fatalf("child ended without %q: %v", prefix, err)
		}
	}
}

// records reads the records on disk by state.
func records(t *testing.T, dir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	ents, err := os.ReadDir(filepath.Join(dir, dirChannels))
	if errors.Is(err, fs.ErrNotExist) {
		return out // the child has not opened it yet
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) || e.Name() == instanceFile {
			continue // being written, or not a record
		}
		b, err := os.ReadFile(filepath.Join(dir, dirChannels, e.Name()))
		var r Record
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out[r.State]++
	}
	return out
}

// waitFor polls cond (the children are other processes).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill -9 while the receiver holds a delivery: the receiver has it, the
// gateway never heard the answer. The next start sends that one again
// under the same key, and every other alarm once; a third start sends
// nothing.
func TestKillDuringDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	rcv := newCrashReceiver(t, 5)
	c := startChild(t, dir, rcv.srv.URL, false)
	var key string
	select {
	case key = <-rcv.held:
	case <-time.After(60 * time.Second):
		t.Fatal("the 5th delivery never came")
	}
	c.kill()
	close(rcv.free)

	c = startChild(t, dir, rcv.srv.URL, false)
	waitFor(t, "every alarm delivered", func() bool { return records(t, dir)[StateDelivered] == crashAlarms })
	c.kill()
	rcv.mu.Lock()
	total := len(rcv.order)
	for k, n := range rcv.count {
		if want := map[bool]int{true: 2, false: 1}[k == key]; n != want {
			t.Errorf("key %s received %d times, want %d", k, n, want)
		}
	}
	rcv.mu.Unlock()
	if n := rcv.distinct(); n != crashAlarms {
		t.Errorf("%d distinct alarms received, want %d", n, crashAlarms)
	}

	c = startChild(t, dir, rcv.srv.URL, true)
	if got := c.line(t, "pending"); got != "pending 0" {
		t.Errorf("third start: %s", got)
	}
	c.cmd.Wait()
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.order) != total {
		t.Errorf("third start sent %d more", len(rcv.order)-total)
	}
}

// kill -9 at many points (while alarms are being recorded and queued, while
// they are delivered): no alarm is lost, and an alarm received twice is
// recognisable by its key, at most once per kill.
func TestKillRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	rcv := newCrashReceiver(t, 0)
	kills := 0
	for round := 0; round < 6; round++ {
		c := startChild(t, dir, rcv.srv.URL, false)
		// Kill after a varying number of new requests (0: before any).
		before := len(rcv.snapshot())
		want := before + round%3
		waitFor(t, "requests", func() bool { return len(rcv.snapshot()) >= want || records(t, dir)[StateDelivered] == crashAlarms })
		c.kill()
		kills++
	}
	c := startChild(t, dir, rcv.srv.URL, false)
	waitFor(t, "every alarm delivered", func() bool { return records(t, dir)[StateDelivered] == crashAlarms })
	c.kill()
	if n := rcv.distinct(); n != crashAlarms {
		t.Errorf("%d distinct alarms received, want %d", n, crashAlarms)
	}
	extra := len(rcv.snapshot()) - crashAlarms
	if extra > kills {
		t.Errorf("%d repeated deliveries after %d kills", extra, kills)
	}
	t.Logf("%d kills, %d repeated deliveries (same key)", kills, extra)
	if st := records(t, dir); st[StateQueued] != 0 || st[StateDead] != 0 {
		t.Errorf("records %v", st)
	}
}

func (c *crashReceiver) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.order...)
}
