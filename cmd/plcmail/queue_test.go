package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/spool"
)

func openTestSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestQueueListDelete(t *testing.T) {
	c := newTestConfig(t)
	path := c.write(t)

	for _, args := range [][]string{{"plcmail", "queue", "-c", path, "list"}, {"mailq", "-c", path}, {"plcmail", "-c", path, "send", "-bp"}} {
		if r := runCLI(t, "", args...); r.code != 0 || r.stdout != "Mail queue is empty\n" {
			t.Errorf("%q on an empty queue: %+v", args, r)
		}
	}

	sp := openTestSpool(t, c.Spool)
	enqueue := func(from string, to ...string) string {
		id, err := sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: from, To: to}, Data: []byte("Subject: x\r\n\r\nbody\r\n"), Source: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	fresh := enqueue("plc@example.com", "ops@example.com", "boss@example.com")
	retried := enqueue("", "ops@example.com")
	dead := enqueue("plc@example.com", "nobody@example.com")
	if err := sp.Defer(retried, 3, time.Now().Add(10*time.Minute), "421 4.7.0 Try again\nlater"); err != nil {
		t.Fatal(err)
	}
	if err := sp.DeadLetter(dead, 550, "550 5.1.1 no such user"); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, "", "mailq", "-c", path)
	if r.code != 0 {
		t.Fatalf("mailq: %+v", r)
	}
	t.Logf("mailq:\n%s", r.stdout)
	wantLines := []string{
		`^-Queue ID-------  --Size-- ----Arrival Time---- -Sender/Recipient-------$`,
		`^` + fresh + `        20 \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d  plc@example.com$`,
		`^\(waiting for the first delivery attempt\)$`,
		`^ {48}ops@example.com$`,
		`^ {48}boss@example.com$`,
		`^ {48}from test$`,
		`^$`,
		`^` + retried + ` .*  <>$`,
		`^\(3 attempts, next in (10m0s|9m5\ds): 421 4.7.0 Try again later\)$`,
		`^ {48}ops@example.com$`,
		`^ {48}from test$`,
		`^$`,
		`^-- Dead letters: not retried; remove with plcmail queue delete ID --$`,
		`^-Queue ID-------`,
		`^` + dead + ` .*  plc@example.com$`,
		`^\(DEAD since .* not attempted: 550 5.1.1 no such user\)$`,
		`^ {48}nobody@example.com$`,
		`^ {48}from test$`,
		`^$`,
		`^-- 1 KiB in 3 requests \(2 queued, 1 dead\)\.$`,
	}
	got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(got) != len(wantLines) {
		t.Fatalf("got %d lines, want %d", len(got), len(wantLines))
	}
	for i, re := range wantLines {
		if !regexp.MustCompile(re).MatchString(got[i]) {
			t.Errorf("line %d: %q does not match %s", i+1, got[i], re)
		}
	}

	r = runCLI(t, "", "plcmail", "-c", path, "queue", "list", "--json")
	var states []string
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m struct {
			State string
			ID    string
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("--json line %q: %v", l, err)
		}
		states = append(states, m.State+" "+m.ID)
	}
	if strings.Join(states, ",") != "queued "+fresh+",queued "+retried+",dead "+dead {
		t.Errorf("--json: %v", states)
	}

	// Unknown ids are named, the known ones still deleted, exit 1.
	r = runCLI(t, "", "plcmail", "-c", path, "queue", "delete", fresh, "0000000000NOSUCH", dead)
	if r.code != 1 || r.stdout != fresh+": deleted\n"+dead+": deleted\n" || !strings.Contains(r.stderr, "0000000000NOSUCH: no such message") {
		t.Errorf("delete with an unknown id: %+v", r)
	}
	if msgs, _ := sp.List(); len(msgs) != 1 || msgs[0].ID != retried {
		t.Errorf("after delete: %v", msgs)
	}
	if r = runCLI(t, "", "plcmail", "-c", path, "queue", "delete"); r.code != 2 {
		t.Errorf("delete without ids: %+v", r)
	}

	enqueue("plc@example.com", "a@example.com")
	r = runCLI(t, "", "plcmail", "-c", path, "queue", "delete", "--all")
	if r.code != 0 || r.stdout != "deleted 2 messages\n" {
		t.Errorf("delete --all: %+v", r)
	}
	if r = runCLI(t, "", "mailq", "-c", path); r.stdout != "Mail queue is empty\n" {
		t.Errorf("after delete --all: %+v", r)
	}
	if r = runCLI(t, "", "plcmail", "-c", path, "queue", "frobnicate"); r.code != 2 {
		t.Errorf("unknown action: %+v", r)
	}
}

func TestQueueFlush(t *testing.T) {
	c := newTestConfig(t)
	path := c.write(t)
	sp := openTestSpool(t, c.Spool)
	id, err := sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: "a@example.com", To: []string{"b@example.com"}}, Data: []byte("\r\nx\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Defer(id, 2, time.Now().Add(time.Hour), "421 later"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"plcmail", "-c", path, "queue", "flush"}, {"sendmail", "-c", path, "-q"}} {
		if r := runCLI(t, "", args...); r.code != 0 {
			t.Fatalf("%q: %+v", args, r)
		}
		m, err := sp.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.NextAttempt.After(time.Now()) || m.Attempts != 2 {
			t.Errorf("%q: next attempt %v, attempts %d: want due now, attempts kept", args, m.NextAttempt, m.Attempts)
		}
		sp.Defer(id, 2, time.Now().Add(time.Hour), "421 later")
	}
}

// writeQueueFile writes a queue file the way an older version or another
// program might have: with an envelope Enqueue would refuse.
func writeQueueFile(t *testing.T, spoolDir, id string, env spool.Envelope, data string) {
	t.Helper()
	hdr, err := json.Marshal(spool.Message{ID: id, Envelope: env, Created: time.Now().UTC(), NextAttempt: time.Now().UTC(),
		Size: int64(len(data)), Source: "old\x1b[1mversion"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spoolDir, "queue", id), append(append(hdr, '\n'), data...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// `queue list` shows what was moved to corrupt/, and never prints an
// envelope's control characters raw.
func TestQueueListCorruptAndEscapes(t *testing.T) {
	c := newTestConfig(t)
	path := c.write(t)
	sp := openTestSpool(t, c.Spool)
	good, err := sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: "plc@example.com", To: []string{"ops@example.com"}}, Data: []byte("Subject: x\r\n\r\nbody\r\n")})
	if err != nil {
		t.Fatal(err)
	}
	const evil = "0000000000000000" // a valid id that sorts first
	writeQueueFile(t, c.Spool, evil, spool.Envelope{From: "plc@example.com\r\n-Queue ID------- forged", To: []string{"\x1b[2Jops@example.com"}}, "Subject: x\r\n\r\nx\r\n")
	// Unreadable: a header that is no JSON, and a stray name.
	if err := os.WriteFile(filepath.Join(c.Spool, "queue", "1111111111111111"), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Spool, "queue", "stray\x1b[31m.tmp"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := runCLI(t, "", "mailq", "-c", path)
	if r.code != 0 {
		t.Fatalf("mailq: %+v", r)
	}
	t.Logf("mailq:\n%s", r.stdout)
	if strings.ContainsAny(r.stdout, "\r\x1b") || strings.Contains(r.stdout, "\n-Queue ID------- forged") {
		t.Errorf("raw control characters in the listing:\n%q", r.stdout)
	}
	for _, re := range []string{
		`(?m)^` + evil + ` .* "plc@example.com\\r\\n-Queue ID------- forged"$`,
		`(?m)^ +"\\x1b\[2Jops@example.com"$`,
		`(?m)^ +from "old\\x1b\[1mversion"$`,
		`(?m)^` + good + ` .* plc@example.com$`,
		`(?m)^-- Corrupt: unreadable, moved aside and never sent; inspect them in .*corrupt --$`,
		`(?m)^queue-1111111111111111 +8 `,
		`(?m)^"queue-stray\\x1b\[31m.tmp" +1 `,
		`(?m)^\(CORRUPT: see the gateway's log for why\)$`,
		`(?m)^-- 1 KiB in 4 requests \(2 queued, 0 dead, 2 corrupt\)\.$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("mailq output does not match %s", re)
		}
	}
	r = runCLI(t, "", "plcmail", "-c", path, "queue", "list", "--json")
	if n := strings.Count(r.stdout, `"state":"corrupt"`); r.code != 0 || n != 2 {
		t.Errorf("queue list --json: %d corrupt entries, want 2: %+v", n, r)
	}
	// Once the corrupt files are gone, the queue is as before.
	os.RemoveAll(filepath.Join(c.Spool, "corrupt"))
	if r := runCLI(t, "", "mailq", "-c", path); !strings.HasSuffix(r.stdout, "-- 1 KiB in 2 requests.\n") {
		t.Errorf("mailq without corrupt files:\n%s", r.stdout)
	}
}
