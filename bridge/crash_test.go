package bridge

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
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

// startChildGateway starts TestKill9Child, a gateway process on device with its
// spool in dir, in a process group of its own. It dies with the test
// process (Pdeathsig): a gateway that outlives its test (go test -timeout,
// ^C, a test binary killed) keeps reopening the pty's path, and pty numbers
// are reused, so it would answer a later test's frames with its own journal
// and spool, and that test would miss events it saw ACKed. Pdeathsig follows
// the thread that started the child; should the runtime retire that thread,
// the child dies early, which is one more kill to this test.
func startChildGateway(device, dir string) (*exec.Cmd, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.v")
	cmd.Env = append(os.Environ(), "PLCMAIL_TEST_CHILD_DEVICE="+device, "PLCMAIL_TEST_CHILD_SPOOL="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	return cmd, nil
}

// foreignOpeners returns the processes other than gw (nil: none) and this
// one that have path open, read from /proc.
func foreignOpeners(path string, gw *exec.Cmd) []int {
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	var pids []int
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err != nil || target != path {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err != nil || pid == os.Getpid() || gw != nil && pid == gw.Process.Pid || slices.Contains(pids, pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// describe names processes by pid and command line.
func describe(pids []int) string {
	var out []string
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
	}
	return strings.Join(out, ", ")
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
		child *exec.Cmd // nil: none running
	)
	// start and kill run with mu held. start may run on the killer
	// goroutine, where t.Fatal must not be called.
	start := func() error {
		var err error
		child, err = startChildGateway(slave, dir)
		if err != nil {
			child = nil
		}
		return err
	}
	kill := func() {
		if child == nil {
			return // never Kill a pid that was reaped: it may be reused
		}
		syscall.Kill(-child.Process.Pid, syscall.SIGKILL)
		child.Wait()
		child = nil
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	// Stopping the killer must come before the last kill, on every way out
	// of the test (t.Fatalf included): a killer still running after it
	// would start a gateway nobody kills.
	stopKiller := make(chan struct{})
	killerDone := make(chan struct{})
	stop := sync.OnceFunc(func() {
		close(stopKiller)
		<-killerDone
	})
	t.Cleanup(func() {
		stop()
		mu.Lock()
		kill()
		mu.Unlock()
	})
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
			err := start()
			mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
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
	stop()
	mu.Lock()
	if pids := foreignOpeners(slave, child); len(pids) > 0 {
		// Its ACKs count as the gateway's, its journal and spool are
		// elsewhere: the events it took look lost here.
		t.Errorf("processes other than this test's gateway have its pty %s open: %s; a gateway that outlived an earlier test (pty numbers are reused) answers frames with its own journal", slave, describe(pids))
	}
	// Let the last gateway queue what it ACKed (or replay it after a restart).
	kill()
	err := start()
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
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

// TestKill9ChildParent is a test process that starts a gateway with
// startChildGateway and waits to be killed; it only runs when
// TestKill9GatewayDiesWithTest starts it.
func TestKill9ChildParent(t *testing.T) {
	dir := os.Getenv("PLCMAIL_TEST_PARENT_SPOOL")
	if dir == "" {
		t.Skip("helper process for TestKill9GatewayDiesWithTest")
	}
	// No port to open: the gateway retries, as a gateway that outlived its
	// pty does.
	gw, err := startChildGateway(filepath.Join(dir, "no-such-tty"), dir)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("gateway %d\n", gw.Process.Pid)
	select {} // until SIGKILL
}

// TestKill9GatewayDiesWithTest kills a test process that started a gateway
// as TestKill9NothingLostNothingDoubled does, without its cleanups (as
// go test -timeout or ^C end it), and checks that the gateway dies too. A
// gateway that outlived its test once answered a later test's frames on a
// reused pty with its own journal: that test saw ACKed events go missing.
func TestKill9GatewayDiesWithTest(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns and kills processes")
	}
	dir := t.TempDir()
	parent := exec.Command(os.Args[0], "-test.run=^TestKill9ChildParent$")
	parent.Env = append(os.Environ(), "PLCMAIL_TEST_PARENT_SPOOL="+dir)
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { parent.Process.Kill(); parent.Wait() })
	var gw int
	if _, err = fmt.Fscanf(out, "gateway %d\n", &gw); err != nil {
		t.Fatalf("no gateway pid from the test process: %v", err)
	}
	t.Cleanup(func() {
		if alive(gw) {
			syscall.Kill(-gw, syscall.SIGKILL) // not to leak it when the test fails
		}
	})
	// The gateway is up once it compacted its journal.
	journal := filepath.Join(dir, "links", "line1.journal")
	for {
		if _, err := os.Stat(journal); err == nil {
			break
		}
		if !alive(gw) {
			t.Fatal("the gateway died before it opened its journal")
		}
		time.Sleep(10 * time.Millisecond)
	}
	parent.Process.Kill()
	parent.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for alive(gw) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(gw) {
		t.Fatalf("gateway pid %d outlived the test process that started it", gw)
	}
}

// alive reports whether process pid runs: it exists and is not a zombie
// (its new parent may not reap it).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

// TestForeignOpeners checks the check that tells a gateway that outlived
// its test from a lost event: a process holding the pty is named.
func TestForeignOpeners(t *testing.T) {
	_, slave := openPty(t)
	f, err := os.OpenFile(slave, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if pids := foreignOpeners(slave, nil); len(pids) != 0 {
		t.Errorf("this process's own descriptor counted: %v", pids)
	}
	holder := exec.Command("sleep", "60")
	holder.Stdin = f
	if err := holder.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	if pids := foreignOpeners(slave, nil); !slices.Contains(pids, holder.Process.Pid) {
		t.Errorf("holder pid %d not found: %v", holder.Process.Pid, pids)
	}
	if pids := foreignOpeners(slave, holder); len(pids) != 0 {
		t.Errorf("the gateway itself counted: %v", pids)
	}
}
