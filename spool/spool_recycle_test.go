package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func freeFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, dirFree))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A delivered file is kept and the next message is written into it, with
// the length of the new message (shorter here), not of the old one.
func TestRecycledFileIsReused(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	unlock, err := s.LockDelivery()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()

	long := testSub(1, "k1")
	long.Data = bytes.Repeat([]byte("0123456789abcdef\r\n"), 200)
	id1, err := s.Enqueue(long)
	if err != nil {
		t.Fatal(err)
	}
	ino := inode(t, s.path(dirQueue, id1))
	if err := s.Delivered(id1); err != nil {
		t.Fatal(err)
	}
	if f := freeFiles(t, dir); len(f) != 1 {
		t.Fatalf("free/ after delivery: %v, want one recycled file", f)
	}
	if _, err := s.Get(id1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delivered message still found: %v", err)
	}

	// The message had a key: its move into free/ was made durable by the
	// key log, not by an fsync of queue/ (removeLogged), so the file is
	// reused only after the next such fsync, the next Enqueue's.
	filler, err := s.Enqueue(testSub(4, ""))
	if err != nil {
		t.Fatal(err)
	}
	if got := inode(t, s.path(dirQueue, filler)); got == ino {
		t.Errorf("free file reused before its move was durable")
	}
	short := testSub(2, "k2")
	id2, err := s.Enqueue(short)
	if err != nil {
		t.Fatal(err)
	}
	if got := inode(t, s.path(dirQueue, id2)); got != ino {
		t.Errorf("new message in inode %d, want the recycled %d", got, ino)
	}
	if f := freeFiles(t, dir); len(f) != 0 {
		t.Errorf("free/ after reuse: %v", f)
	}
	m, data, err := s.ReadMessage(id2)
	if err != nil || !bytes.Equal(data, short.Data) || m.Key != "k2" {
		t.Fatalf("reused file reads %q, %+v, %v", data, m, err)
	}
	// The key of the delivered message is still known.
	if _, err := s.Enqueue(testSub(3, "k1")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("key of the recycled message forgotten: %v", err)
	}
}

// Without the delivery lock (plcmail queue, plcmail send) nothing is
// recycled: another process may be writing into free/.
func TestNoRecyclingWithoutDeliveryLock(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	id, err := s.Enqueue(testSub(1, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(id); err != nil {
		t.Fatal(err)
	}
	if f := freeFiles(t, dir); len(f) != 0 {
		t.Fatalf("free/ without the delivery lock: %v", f)
	}

	// Nor after the lock is released.
	unlock, err := s.LockDelivery()
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	id, _ = s.Enqueue(testSub(2, ""))
	s.Delivered(id)
	if f := freeFiles(t, dir); len(f) != 0 {
		t.Fatalf("free/ after unlock: %v", f)
	}
}

// Files left in free/ by an earlier run are reused, except one that is
// still a queued message's file under another name (a rename torn by a
// power loss on a filesystem without a journal), and big ones.
func TestLeftoverFreeFiles(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	keep, err := s.Enqueue(testSub(1, "keep"))
	if err != nil {
		t.Fatal(err)
	}
	free := filepath.Join(dir, dirFree)
	if err := os.Link(s.path(dirQueue, keep), filepath.Join(free, "linked")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(free, "plain"), []byte("garbage"), 0o600)
	os.WriteFile(filepath.Join(free, "big"), make([]byte, maxRecycleBytes+maxHeaderLine+1), 0o600)

	s2 := openTestSpool(t, dir)
	unlock, err := s2.LockDelivery()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if f := freeFiles(t, dir); strings.Join(f, ",") != "plain" {
		t.Fatalf("free/ after taking the lock: %v, want only the plain file", f)
	}
	for i := range 3 {
		if _, err := s2.Enqueue(testSub(10+i, "")); err != nil {
			t.Fatal(err)
		}
	}
	_, data, err := s2.ReadMessage(keep)
	if err != nil || !bytes.Equal(data, testSub(1, "").Data) {
		t.Fatalf("queued message damaged by recycling: %q, %v", data, err)
	}
}

// A process reading the queue while the delivering one recycles files
// (plcmail queue list/show next to serve) never gets another message's
// bytes and never takes a recycled file for a corrupt one.
func TestReaderDuringRecycling(t *testing.T) {
	dir := t.TempDir()
	deliverer := openTestSpool(t, dir)
	unlock, err := deliverer.LockDelivery()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	reader := openTestSpool(t, dir)

	body := func(n int) []byte {
		return []byte(strings.Repeat(fmt.Sprintf("message %d\r\n", n), 1+n%300))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			sub := testSub(n, "")
			sub.Data = body(n)
			sub.Source = strconv.Itoa(n)
			id, err := deliverer.Enqueue(sub)
			if err != nil {
				t.Error(err)
				return
			}
			if err := deliverer.Delivered(id); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	reads, gone := 0, 0
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		ids, _ := reader.ids(dirQueue)
		for _, id := range ids {
			m, data, err := reader.ReadMessage(id)
			switch {
			case errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNotFound):
				gone++
			case err != nil:
				t.Fatalf("read %s during recycling: %v", id, err)
			default:
				reads++
				n, _ := strconv.Atoi(m.Source)
				if m.ID != id || !bytes.Equal(data, body(n)) {
					t.Fatalf("read %s: got message %s (source %s) with %d bytes: mixed up", id, m.ID, m.Source, len(data))
				}
			}
		}
	}
	close(stop)
	wg.Wait()
	if ents, _ := os.ReadDir(filepath.Join(dir, dirCorrupt)); len(ents) != 0 {
		t.Errorf("recycling made the reader quarantine files: %v", ents)
	}
	t.Logf("%d reads, %d messages gone while read", reads, gone)
}

// kill -9 of a delivering process that recycles: every acknowledged
// message still queued is intact, and no delivered one comes back.
func TestKill9WhileRecycling(t *testing.T) {
	if dir := os.Getenv("PLCMAIL_RECYCLE_CHILD"); dir != "" {
		s, err := Open(dir, nil)
		if err == nil {
			_, err = s.LockDelivery()
		}
		for i := 0; err == nil; i++ {
			var id string
			sub := testSub(i, "")
			sub.Data = bytes.Repeat(sub.Data, 1+i%7)
			id, err = s.Enqueue(sub)
			if err == nil && i%3 != 0 {
				if err = s.Delivered(id); err == nil {
					fmt.Println("D", id, i)
					continue
				}
			}
			if err == nil {
				fmt.Println("Q", id, i)
			}
		}
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	dir := t.TempDir()
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9WhileRecycling$")
		cmd.Env = append(os.Environ(), "PLCMAIL_RECYCLE_CHILD="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		queued, delivered := map[string]int{}, map[string]bool{}
		record := func(line string) {
			var what, id string
			var n int
			if _, err := fmt.Sscan(line, &what, &id, &n); err != nil {
				t.Fatalf("child: %s", line)
			}
			if what == "Q" {
				queued[id] = n
			} else {
				delivered[id] = true
			}
		}
		// The child is killed mid-stream: some time after its first line
		// (not after its start, which under -race and load can take
		// longer than the whole window) and only once it delivered
		// something, or there is no recycling to interrupt. A child that
		// never gets there is killed after a generous bound, which fails.
		var stalled atomic.Bool
		bound := time.AfterFunc(30*time.Second, func() {
			stalled.Store(true)
			cmd.Process.Signal(syscall.SIGKILL)
		})
		window := time.Duration(150+100*round) * time.Millisecond
		var deadline time.Time
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			record(sc.Text())
			if deadline.IsZero() {
				deadline = time.Now().Add(window)
			}
			if len(delivered) > 0 && !time.Now().Before(deadline) {
				break
			}
		}
		bound.Stop()
		cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() {
			record(sc.Text())
		}
		cmd.Wait()
		if stalled.Load() {
			t.Fatalf("round %d: killed after 30s without a point to kill it at: %d queued, %d delivered", round, len(queued), len(delivered))
		}
		if len(delivered) == 0 {
			t.Fatal("child delivered nothing")
		}
		s := openTestSpool(t, dir)
		for id, n := range queued {
			sub := testSub(n, "")
			_, data, err := s.ReadMessage(id)
			if err != nil || !bytes.Equal(data, bytes.Repeat(sub.Data, 1+n%7)) {
				t.Fatalf("round %d: acknowledged message %s lost or damaged: %v", round, id, err)
			}
		}
		for id := range delivered {
			if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("round %d: delivered message %s is back: %v", round, id, err)
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, dirCorrupt)); len(ents) != 0 {
			t.Errorf("kill -9 produced corrupt files: %v", ents)
		}
		t.Logf("round %d: %d queued intact, %d delivered gone, %d files in free/", round, len(queued), len(delivered), len(freeFiles(t, dir)))
	}
}

// A spool that cannot take the message fails the Enqueue also when a
// recycled file is at hand (the listener then answers 451), and works again
// once repaired.
func TestRecycledEnqueueFailure(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	unlock, err := s.LockDelivery()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	id, err := s.Enqueue(testSub(0, ""))
	if err == nil {
		err = s.Delivered(id)
	}
	if err != nil || len(freeFiles(t, dir)) != 1 {
		t.Fatalf("no recycled file to start with: %v", err)
	}
	queueDir := filepath.Join(dir, dirQueue)
	if err := os.Remove(queueDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(queueDir, nil, 0o600); err != nil { // the rename fails even for root
		t.Fatal(err)
	}
	if id, err := s.Enqueue(testSub(1, "k")); err == nil {
		t.Fatalf("Enqueue into a broken spool returned %s, nil", id)
	}
	os.Remove(queueDir)
	if err := os.Mkdir(queueDir, 0o700); err != nil {
		t.Fatal(err)
	}
	id, err = s.Enqueue(testSub(2, "k")) // the key of the failed one is free again
	if err != nil {
		t.Fatal(err)
	}
	if _, data, err := s.ReadMessage(id); err != nil || !bytes.Equal(data, testSub(2, "").Data) {
		t.Fatalf("after repair: %q, %v", data, err)
	}
}

// smallFS mounts a tmpfs of size bytes for the test: a real filesystem that
// runs full, with statfs and ENOSPC as on a small SD card partition.
// Mounting needs root; without it the test is skipped, except under CI,
// which runs as root.
func smallFS(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a %d-byte tmpfs: %v", size, err)
		}
		t.Skipf("cannot mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fsAvail is the free space of the filesystem holding dir.
func fsAvail(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// On a 1 MiB spool, a burst that filled the disk and was then delivered
// must not leave the space in free/: the gateway keeps only a small part of
// the free space for reuse, and any writer (plcmail send in another process
// here, or the gateway itself with a message bigger than any pooled file)
// that still meets ENOSPC gives the pool back and tries once more. Before,
// the pool kept 992 KiB of the 1 MiB and every send failed.
func TestRecyclePoolYieldsOnSmallDisk(t *testing.T) {
	mnt := smallFS(t, 1<<20)
	dir := filepath.Join(mnt, "spool")
	gw := openTestSpool(t, dir) // plcmail serve
	unlock, err := gw.LockDelivery()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	sub := testSub(0, "")
	sub.Data = append(sub.Data, bytes.Repeat([]byte("x"), 30<<10)...)
	var ids []string
	for {
		id, err := gw.Enqueue(sub)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if len(ids) > 100 {
			t.Fatal("a 1 MiB filesystem took 3 MiB")
		}
	}
	if len(ids) < 10 {
		t.Fatalf("only %d messages fit", len(ids))
	}
	for _, id := range ids {
		if err := gw.Delivered(id); err != nil {
			t.Fatal(err)
		}
	}
	if msgs, _ := gw.List(); len(msgs) != 0 {
		t.Fatalf("queue not empty: %d", len(msgs))
	}
	var pool int64
	for _, name := range freeFiles(t, dir) {
		if fi, err := os.Stat(filepath.Join(dir, dirFree, name)); err == nil {
			pool += diskBytes(fi.Size())
		}
	}
	avail := fsAvail(t, dir)
	t.Logf("%d messages filled the disk; after delivery free/ holds %d KiB, %d KiB available", len(ids), pool>>10, avail>>10)
	if pool > avail/4 {
		t.Errorf("free/ holds %d KiB of an empty 1 MiB spool, only %d KiB available", pool>>10, avail>>10)
	}

	// plcmail send, another process: no pool of its own.
	send := openTestSpool(t, dir)
	big := testSub(1, "")
	big.Data = append(big.Data, bytes.Repeat([]byte("y"), int(avail+pool/2))...)
	if id, err := send.Enqueue(big); err != nil {
		t.Errorf("send of %d KiB into an empty queue: %v", len(big.Data)>>10, err)
	} else if err := send.Delete(id); err != nil {
		t.Fatal(err)
	}

	// Fill the pool again as far as the gateway lets it, then have the
	// gateway queue a message that needs the pool's space.
	for range 3 {
		var batch []string
		for range 4 {
			id, err := gw.Enqueue(sub)
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, id)
		}
		for _, id := range batch {
			if err := gw.Delivered(id); err != nil {
				t.Fatal(err)
			}
		}
	}
	pool = 0
	for _, name := range freeFiles(t, dir) {
		if fi, err := os.Stat(filepath.Join(dir, dirFree, name)); err == nil {
			pool += diskBytes(fi.Size())
		}
	}
	if pool == 0 {
		t.Fatal("the gateway pooled nothing: no pool to give back")
	}
	huge := testSub(2, "")
	huge.Data = append(huge.Data, bytes.Repeat([]byte("z"), int(fsAvail(t, dir)+pool/2))...)
	id, err := gw.Enqueue(huge)
	if err != nil {
		t.Fatalf("gateway's own Enqueue of %d KiB with %d KiB available: %v", len(huge.Data)>>10, fsAvail(t, dir)>>10, err)
	}
	if _, data, err := gw.ReadMessage(id); err != nil || !bytes.Equal(data, huge.Data) {
		t.Fatalf("read back: %v", err)
	}
	if n := len(freeFiles(t, dir)); n != 0 {
		t.Errorf("%d files left in free/ after it was given back", n)
	}
}
