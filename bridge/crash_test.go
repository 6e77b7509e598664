package bridge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// TestKill9Child is the gateway process of TestKill9NothingLostNothingDoubled;
// it only runs when that test starts it.
func TestKill9Child(t *testing.T) {
	dev, dir := os.Getenv("PLCMAIL_TEST_CHILD_DEVICE"), os.Getenv("PLCMAIL_TEST_CHILD_SPOOL")
	if dev == "" {
		t.Skip("helper process for TestKill9NothingLostNothingDoubled")
	}
	cfg := testCfg(t, dev, testOpts{})
	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBridge(optionsFor(t, cfg), sp, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Run(context.Background()) // until SIGKILL
}

// TestKill9NothingLostNothingDoubled kills the gateway process with SIGKILL
// at random moments while a PLC sends events stop-and-wait with
// retransmission, like the firmware. Every event must end up mailed exactly
// once: none lost (an ACK promised it), none doubled (retransmissions of
// frames whose ACK died with the process).
func TestKill9NothingLostNothingDoubled(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns and kills gateway processes")
	}
	m, slave := openPty(t)
	dir := t.TempDir()
	var (
		mu    sync.Mutex
		child *exec.Cmd
	)
	start := func() {
		child = exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.v")
		child.Env = append(os.Environ(), "PLCMAIL_TEST_CHILD_DEVICE="+slave, "PLCMAIL_TEST_CHILD_SPOOL="+dir)
		child.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
	}
	kill := func() {
		syscall.Kill(-child.Process.Pid, syscall.SIGKILL)
		child.Wait()
	}
	start()
	t.Cleanup(func() { mu.Lock(); kill(); mu.Unlock() })
	// Wait until the child set the pty to raw mode, or the PLC's first
	// bytes would be echoed back.
	time.Sleep(500 * time.Millisecond)

	p := newPLC(t, m, 5)
	// The killer strikes at random moments: while a frame is on its way,
	// between the journal fsync and the ACK, while a mail is queued...
	kills := 0
	// ackCount counts ACKs the PLC saw. The killer waits for one ACK from each
	// new child before it aims again: a child that starts slower than the
	// kill interval (a busy machine, -race) would otherwise never ACK
	// anything and the PLC would give up, testing nothing.
	var ackCount atomic.Int64
	stopKiller := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			since := ackCount.Load()
			for ackCount.Load() == since {
				select {
				case <-stopKiller:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
			select {
			case <-stopKiller:
				return
			case <-time.After(time.Duration(rng.IntN(200)) * time.Millisecond):
			}
			mu.Lock()
			kill()
			kills++
			start()
			mu.Unlock()
		}
	}()
	const n = 300
	for i := 0; i <= n; i++ {
		time.Sleep(5 * time.Millisecond) // about one frame time at 115200 baud
		var f *protocol.Frame
		if i == 0 {
			f = p.hello()
		} else {
			f = p.event(uint16(i%7), protocol.EventRaise, fmt.Sprintf("event %d", i))
		}
		acked := false
		for tries := 0; !acked; tries++ {
			if tries > 0 {
				p.sendFrame(f) // retransmission: same boot, same seq
			}
			deadline := time.Now().Add(400 * time.Millisecond)
			for !acked && time.Now().Before(deadline) {
				r := p.next(time.Until(deadline))
				acked = r != nil && r.Type == protocol.TypeAck && r.Seq == f.Seq
			}
			if acked {
				ackCount.Add(1)
			}
			if tries > 100 {
				t.Fatalf("seq %d never ACKed", f.Seq)
			}
		}
	}
	close(stopKiller)
	<-killerDone
	// Let the last gateway queue what it ACKed (or replay it after a restart).
	mu.Lock()
	kill()
	start()
	mu.Unlock()
	var keys map[string]int
	deadline := time.Now().Add(20 * time.Second)
	for {
		keys = map[string]int{}
		for _, q := range spoolMessages(t, dir) {
			keys[q.Meta.Key]++
		}
		if len(keys) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d events, %d kills, %d mails", n, kills, len(keys))
	if kills < 3 {
		t.Errorf("only %d kills: the test did not test much", kills)
	}
	for i := 1; i <= n; i++ {
		k := fmt.Sprintf("line1/5/%d", i+1)
		if keys[k] != 1 {
			t.Errorf("event %s mailed %d times", k, keys[k])
		}
	}
	for k, c := range keys {
		if !strings.HasPrefix(k, "line1/5/") || c != 1 {
			t.Errorf("unexpected mail %s x%d", k, c)
		}
	}
}
