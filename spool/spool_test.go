package spool

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openTestSpool(t testing.TB, dir string) *Spool {
	t.Helper()
	s, err := Open(dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testSub(n int, key string) Submission {
	return Submission{
		Envelope: Envelope{From: "plc@example.com", To: []string{"ops@example.com"}},
		Data:     []byte(fmt.Sprintf("Subject: alarm %d\r\n\r\n.leading dot\r\nbody %d\r\n", n, n)),
		Source:   "test",
		Key:      key,
	}
}

func TestEnqueueStoresExactBytes(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	sub := testSub(1, "")
	sub.Data = append(sub.Data, 0xff, 'x', '\n', '\r') // not even text: still kept byte for byte
	id, err := s.Enqueue(sub)
	if err != nil {
		t.Fatal(err)
	}
	if !validID(id) {
		t.Fatalf("id %q", id)
	}
	m, data, err := s.ReadMessage(id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, sub.Data) {
		t.Errorf("data %q, want %q", data, sub.Data)
	}
	if m.Envelope.From != sub.From || len(m.Envelope.To) != 1 || m.Envelope.To[0] != "ops@example.com" || m.Source != "test" {
		t.Errorf("metadata %+v", m)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), dirTmp)); len(ents) != 0 {
		t.Errorf("tmp/ not empty after Enqueue: %v", ents)
	}
}

func TestEnqueueRejects(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	for name, sub := range map[string]Submission{
		"no rcpt":          {Envelope: Envelope{From: "a@b"}, Data: []byte("x")},
		"empty rcpt":       {Envelope: Envelope{From: "a@b", To: []string{""}}, Data: []byte("x")},
		"crlf in rcpt":     {Envelope: Envelope{From: "a@b", To: []string{"x@y>\r\nRCPT TO:<evil@z"}}, Data: []byte("x")},
		"bracket in from":  {Envelope: Envelope{From: "<a@b>", To: []string{"c@d"}}, Data: []byte("x")},
		"newline in key":   {Envelope: Envelope{From: "a@b", To: []string{"c@d"}}, Data: []byte("x"), Key: "k\n1"},
		"space in address": {Envelope: Envelope{From: "a@b", To: []string{"c d@e"}}, Data: []byte("x")},
		"tab in from":      {Envelope: Envelope{From: "a\t@b", To: []string{"c@d"}}, Data: []byte("x")},
		"escape in rcpt":   {Envelope: Envelope{From: "a@b", To: []string{"\x1b[2Jc@d"}}, Data: []byte("x")},
		"NUL in rcpt":      {Envelope: Envelope{From: "a@b", To: []string{"c\x00@d"}}, Data: []byte("x")},
		"DEL in from":      {Envelope: Envelope{From: "a\x7f@b", To: []string{"c@d"}}, Data: []byte("x")},
		"C1 CSI in rcpt":   {Envelope: Envelope{From: "a@b", To: []string{"c\u009b@d"}}, Data: []byte("x")},
	} {
		if _, err := s.Enqueue(sub); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := s.Enqueue(Submission{Envelope: Envelope{From: "", To: []string{"c@d"}}, Data: []byte("x")}); err != nil {
		t.Errorf("null sender refused: %v", err)
	}
}

func TestListOldestFirstAndDelete(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 5; i++ {
		s.now = func() time.Time { return base.Add(time.Duration(4-i) * time.Minute) } // newest first
		id, err := s.Enqueue(testSub(i, ""))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	msgs, err := s.List()
	if err != nil || len(msgs) != 5 {
		t.Fatalf("List: %d %v", len(msgs), err)
	}
	for i, m := range msgs {
		if m.ID != ids[4-i] {
			t.Errorf("List[%d] = %s, want %s (oldest first)", i, m.ID, ids[4-i])
		}
	}
	if err := s.Delete(ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of a path: %v", err)
	}
	if err := s.DeadLetter(ids[1], 550, "no such user"); err != nil {
		t.Fatal(err)
	}
	dead, _ := s.ListDead()
	if len(dead) != 1 || dead[0].ID != ids[1] || dead[0].Code != 550 || dead[0].Reason != "no such user" || dead[0].Died.IsZero() {
		t.Fatalf("ListDead = %+v", dead)
	}
	if msgs, _ := s.List(); len(msgs) != 3 {
		t.Errorf("queue has %d, want 3", len(msgs))
	}
	n, err := s.DeleteAll()
	if err != nil || n != 4 {
		t.Errorf("DeleteAll = %d, %v; want 4", n, err)
	}
	msgs, _ = s.List()
	dead, _ = s.ListDead()
	if len(msgs)+len(dead) != 0 {
		t.Errorf("left after DeleteAll: %d queued, %d dead", len(msgs), len(dead))
	}
}

func TestDeferKeepsBodyAndFlush(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	id, _ := s.Enqueue(testSub(1, ""))
	before, _ := os.ReadFile(s.path(dirQueue, id))
	next := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if err := s.Defer(id, 3, next, "451 later"); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(s.path(dirQueue, id))
	if !bytes.Equal(before, after) {
		t.Error("Defer rewrote the message file")
	}
	m, _ := s.Get(id)
	if m.Attempts != 3 || !m.NextAttempt.Equal(next) || m.LastError != "451 later" {
		t.Errorf("state not applied: %+v", m)
	}
	fresh, _ := s.Enqueue(testSub(2, "")) // never deferred: due already
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	m, _ = s.Get(id)
	if m.NextAttempt.After(time.Now()) || m.Attempts != 3 || m.LastError != "451 later" {
		t.Errorf("after Flush: %+v", m)
	}
	if _, err := os.Stat(s.path(dirState, fresh)); !os.IsNotExist(err) {
		t.Errorf("Flush wrote a state for a message that was due already: %v", err)
	}
	if m, _ := s.Get(fresh); m.NextAttempt.After(time.Now()) {
		t.Errorf("never-deferred message not due: %+v", m)
	}
	if !s.takeFlush() || s.takeFlush() {
		t.Error("flush marker not set exactly once")
	}
	// A damaged state file only loses the retry state.
	os.WriteFile(s.path(dirState, id), []byte("{garbage"), 0o600)
	if m, err := s.Get(id); err != nil || m.Attempts != 0 {
		t.Errorf("damaged state: %+v %v", m, err)
	}
}

func TestOpenCleansStaleTmp(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	stale := filepath.Join(dir, dirTmp, "w-123")
	fresh := filepath.Join(dir, dirTmp, "w-456")
	os.WriteFile(stale, []byte("half a mess"), 0o600)
	os.WriteFile(fresh, []byte("being written"), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)
	s.Close()
	openTestSpool(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Error("stale temp file survived Open")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("fresh temp file (another process writing) was removed")
	}
}

func TestCorruptFilesMovedAside(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	good, _ := s.Enqueue(testSub(1, "good-key"))
	cases := map[string][]byte{
		newID():        []byte("not json\nbody"),
		newID():        []byte(`{"id":"X"`), // no header line end
		newID():        {},
		"notes.txt~":   []byte("an editor's backup"),
		"0000000000AA": []byte("short name"),
	}
	truncated := newID()
	full, _ := os.ReadFile(s.path(dirQueue, good))
	cases[truncated] = bytes.Replace(full[:len(full)-3], []byte(good), []byte(truncated), 1)
	for name, b := range cases {
		os.WriteFile(filepath.Join(dir, dirQueue, name), b, 0o600)
	}
	s2 := openTestSpool(t, dir) // must not fail on the bad files
	msgs, err := s2.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].ID != good {
		t.Fatalf("List = %+v, want only %s", msgs, good)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, dirCorrupt))
	if len(ents) != len(cases) {
		t.Errorf("corrupt/ holds %d files, want %d", len(ents), len(cases))
	}
	if _, err := s2.Enqueue(testSub(2, "good-key")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("key of the good message lost: %v", err)
	}
}

func TestKeysSurviveRestartDeliveryDeadAndDelete(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	ids := map[string]string{}
	for _, k := range []string{"link/1/1", "link/1/2", "link/1/3", "link/1/4"} {
		id, err := s.Enqueue(testSub(1, k))
		if err != nil {
			t.Fatal(err)
		}
		ids[k] = id
	}
	if _, err := s.Enqueue(testSub(1, "link/1/1")); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("same process: %v", err)
	}
	if err := s.Delivered(ids["link/1/2"]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter(ids["link/1/3"], 550, "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ids["link/1/4"]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestSpool(t, dir)
	for k := range ids {
		if _, err := s.Enqueue(testSub(1, k)); !errors.Is(err, ErrDuplicate) {
			t.Errorf("after restart, key %s: %v, want ErrDuplicate", k, err)
		}
	}
	// The dead letter's key survives its deletion too.
	if err := s.Delete(ids["link/1/3"]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestSpool(t, dir)
	if _, err := s.Enqueue(testSub(1, "link/1/3")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("deleted dead letter's key forgotten: %v", err)
	}
	if _, err := s.Enqueue(testSub(1, "link/2/1")); err != nil {
		t.Errorf("new key refused: %v", err)
	}
}

func TestKeyLogPrunedAndTornLineTolerated(t *testing.T) {
	dir := t.TempDir()
	s := openTestSpool(t, dir)
	now := time.Now()
	s.now = func() time.Time { return now.Add(-40 * 24 * time.Hour) }
	old, _ := s.Enqueue(testSub(1, "old"))
	s.now = func() time.Time { return now.Add(-2 * 24 * time.Hour) }
	recent, _ := s.Enqueue(testSub(2, "recent"))
	s.Delivered(old)
	s.Delivered(recent)
	f, _ := os.OpenFile(filepath.Join(dir, dirKeys, "log"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`1700000000 "torn`) // crash in the middle of an append
	f.Close()
	s.Close()
	s = openTestSpool(t, dir)
	if _, err := s.Enqueue(testSub(1, "recent")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("recent key: %v, want ErrDuplicate", err)
	}
	if _, err := s.Enqueue(testSub(1, "old")); err != nil {
		t.Errorf("key older than KeyRetention still known: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, dirKeys, "log"))
	if strings.Contains(string(b), "torn") || strings.Contains(string(b), `"old"`) {
		t.Errorf("log not compacted: %q", b)
	}
}

// TestSharedSpool is two Spool values on one directory, as `plcmail send`
// and `plcmail serve` are: concurrent enqueues never collide, only one may
// deliver.
func TestSharedSpool(t *testing.T) {
	dir := t.TempDir()
	a, b := openTestSpool(t, dir), openTestSpool(t, dir)
	var wg sync.WaitGroup
	ids := make(chan string, 200)
	for _, s := range []*Spool{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				id, err := s.Enqueue(testSub(i, ""))
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
	if msgs, _ := a.List(); len(msgs) != 200 {
		t.Errorf("List = %d, want 200", len(msgs))
	}
	unlock, err := a.LockDelivery()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.LockDelivery(); !errors.Is(err, ErrLocked) {
		t.Errorf("second LockDelivery: %v, want ErrLocked", err)
	}
	unlock()
	unlock2, err := b.LockDelivery()
	if err != nil {
		t.Errorf("after unlock: %v", err)
	} else {
		unlock2()
	}
}

// TestKill9DuringEnqueue runs a child process that enqueues as fast as it
// can and prints each id once Enqueue returned, kills it with SIGKILL at a
// random instant, and checks that every printed id is intact.
func TestKill9DuringEnqueue(t *testing.T) {
	if os.Getenv("PLCMAIL_SPOOL_CHILD") != "" {
		s, err := Open(os.Getenv("PLCMAIL_SPOOL_CHILD"), nil)
		if err != nil {
			fmt.Println("ERR", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			id, err := s.Enqueue(testSub(i, "child/"+strconv.Itoa(os.Getpid())+"/"+strconv.Itoa(i)))
			if err != nil {
				fmt.Println("ERR", err)
				os.Exit(1)
			}
			fmt.Println(id, i)
		}
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9DuringEnqueue$")
		cmd.Env = append(os.Environ(), "PLCMAIL_SPOOL_CHILD="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]int{}
		sc := bufio.NewScanner(out)
		deadline := time.After(time.Duration(150+100*round) * time.Millisecond)
	read:
		for sc.Scan() {
			var id string
			var n int
			if _, err := fmt.Sscan(sc.Text(), &id, &n); err != nil {
				t.Fatalf("child: %s", sc.Text())
			}
			acked[id] = n
			select {
			case <-deadline:
				break read
			default:
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() { // ids printed before the kill landed
			var id string
			var n int
			if _, err := fmt.Sscan(sc.Text(), &id, &n); err == nil {
				acked[id] = n
			}
		}
		cmd.Wait()
		if len(acked) == 0 {
			t.Fatal("child queued nothing")
		}
		s := openTestSpool(t, dir)
		for id, n := range acked {
			_, data, err := s.ReadMessage(id)
			if err != nil {
				t.Fatalf("round %d: acked message %s lost: %v", round, id, err)
			}
			if !bytes.Equal(data, testSub(n, "").Data) {
				t.Fatalf("round %d: message %s damaged", round, id)
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, dirCorrupt)); len(ents) != 0 {
			t.Errorf("kill -9 produced corrupt files: %v", ents)
		}
		t.Logf("round %d: %d acknowledged messages all intact", round, len(acked))
	}
}

// FuzzSpoolFile: whatever bytes a queue file holds, reading the queue never
// panics, and a file is either listed with its exact body or moved aside.
func FuzzSpoolFile(f *testing.F) {
	dir := f.TempDir()
	s, _ := Open(dir, nil)
	id, _ := s.Enqueue(testSub(1, "seed"))
	good, _ := os.ReadFile(s.path(dirQueue, id))
	f.Add(good)
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"id":"` + id + `","size":3}` + "\nabc"))
	f.Add([]byte(`{"id":"` + id + `","size":-1}` + "\n"))
	f.Add([]byte(`{"id":"` + id + `","size":99999999999}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(s.path(dirQueue, id), b, 0o600)
		msgs, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 {
			_, data, err := s.ReadMessage(id)
			if err != nil || int64(len(data)) != msgs[0].Size {
				t.Fatalf("listed but unreadable: %v", err)
			}
			return
		}
		if _, err := os.Stat(filepath.Join(dir, dirCorrupt, dirQueue+"-"+id)); err != nil {
			t.Fatalf("not listed and not moved aside: %v", err)
		}
	})
}

// Queue ids of one spool are unique and increase with time, also when many
// are made in the same microsecond, and carry the time in a form that does
// not wrap before the year 2541.
func TestQueueIDs(t *testing.T) {
	s := openTestSpool(t, t.TempDir())
	before := time.Now()
	prev := ""
	for range 10000 {
		id := s.newID()
		if !validID(id) {
			t.Fatalf("invalid id %q", id)
		}
		if id <= prev {
			t.Fatalf("id %s after %s: not increasing", id, prev)
		}
		prev = id
	}
	b, err := idEncoding.DecodeString(prev)
	if err != nil {
		t.Fatal(err)
	}
	us := uint64(b[0])<<46 | uint64(b[1])<<38 | binary.BigEndian.Uint64(b[2:])>>26
	got := time.UnixMicro(int64(us))
	// 10000 ids may run ahead of the clock by at most 10000 µs.
	if got.Before(before) || got.After(time.Now().Add(10*time.Millisecond)) {
		t.Errorf("id time %v, want about %v", got, before)
	}
	late := newIDAt(uint64(time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()))
	if !validID(late) || late <= prev {
		t.Errorf("id of 2500 %q does not sort after today's %q", late, prev)
	}
}
