package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/channel"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/modbus"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

func TestAge(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"}, {0, "0s"}, {59 * time.Second, "59s"}, {61 * time.Second, "1m01s"},
		{59*time.Minute + 59*time.Second, "59m59s"}, {3*time.Hour + 5*time.Minute, "3h05m"},
		{47 * time.Hour, "47h00m"}, {50 * time.Hour, "2d02h"},
	} {
		if got := age(now, now.Add(-c.d)); got != c.want {
			t.Errorf("age(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

// TestStatusLifecycle: before serve runs, status says so (exit 1) and shows
// what waits in the spool; while it runs, status shows the serial links (one
// up with a PLC talking, one whose device is missing), the queue with its
// oldest message, the last delivery and the last upstream error; after
// serve stopped, status says "not running" again.
func TestStatusLifecycle(t *testing.T) {
	needPTY(t)
	u := mailertest.NewUpstream(t, mailertest.Options{})
	master, slave, slavePath, err := openPTY()
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	defer master.Close()

	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	c.Extra = fmt.Sprintf(`
[[serial]]
name = "press-1"
device = %q

[[serial]]
name = "unplugged"
device = %q

[[alarm]]
default = true
subject = "alarm {{.Code}} {{.Event}}"
body = "code {{.Code}}"
to = ["ops@example.com"]
`, slavePath, filepath.Join(c.Dir, "no-such-tty"))
	path := c.write(t)

	// Not running, one message waiting.
	if r := runCLI(t, "Subject: early\r\n\r\nqueued before serve\r\n", "plcmail", "-c", path, "send", "ops@example.com"); r.code != 0 {
		t.Fatalf("send: %d %s", r.code, r.stderr)
	}
	r := runCLI(t, "", "plcmail", "-c", path, "status")
	if r.code != 1 || !strings.Contains(r.stdout, "plcmail is not running") || !strings.Contains(r.stdout, "queued: 1, oldest") {
		t.Fatalf("status before serve: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	s := startServe(t, path)
	u.Wait(t, 1, 15*time.Second) // the early message goes out

	// The PLC says hello and raises an alarm; its mail is delivered.
	dec := protocol.NewDecoder()
	acks := make(chan protocol.Frame, 8)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := master.Read(buf)
			dec.Feed(buf[:n], func(f *protocol.Frame, err error) {
				if err == nil && f.Type == protocol.TypeAck {
					acks <- *f
				}
			})
			if err != nil {
				return
			}
		}
	}()
	for _, f := range []protocol.Frame{
		{Version: protocol.Version, Type: protocol.TypeHello, Boot: 7, Seq: 1, Uptime: 1},
		{Version: protocol.Version, Type: protocol.TypeEvent, Boot: 7, Seq: 2, Uptime: 2, Code: 5, Event: protocol.EventRaise},
	} {
		if err := protocol.WriteFrame(master, &f); err != nil {
			t.Fatal(err)
		}
		select {
		case <-acks:
		case <-time.After(10 * time.Second):
			t.Fatalf("no ACK for %v seq %d\n%s", f.Type, f.Seq, s.logs())
		}
	}
	u.Wait(t, 2, 15*time.Second)

	// The upstream starts refusing: a new message stays queued with its error.
	u.SetData(func(mailertest.Received) error { return mailertest.Reply(451, "4.3.0 mailbox busy, try later") })
	if r := runCLI(t, "Subject: late\r\n\r\nrefused for now\r\n", "plcmail", "-c", path, "send", "ops@example.com"); r.code != 0 {
		t.Fatalf("send: %d %s", r.code, r.stderr)
	}
	var st statusSnapshot
	waitFor(t, "the 451 to show in status", func() bool {
		r := runCLI(t, "", "plcmail", "-c", path, "status", "--json")
		if r.code != 0 {
			return false
		}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.stdout)
		}
		return strings.Contains(st.Queue.LastError, "451")
	})
	if len(st.Links) != 2 || !st.Links[0].Connected || st.Links[0].Frames != 2 || st.Links[1].Connected || st.Links[1].LastError == "" {
		t.Errorf("links in status --json: %+v", st.Links)
	}
	if st.Queue.Queued != 1 || st.Queue.Delivered != 2 || st.Queue.LastSuccess.IsZero() {
		t.Errorf("queue in status --json: %+v", st.Queue)
	}

	r = runCLI(t, "", "plcmail", "-c", path, "status")
	if r.code != 0 {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("plcmail status:\n%s", r.stdout)
	for _, re := range []string{
		`(?m)^plcmail \S+ running since .*, pid \d+, config ` + regexp.QuoteMeta(path) + `$`,
		`(?m)^  press-1\s+` + regexp.QuoteMeta(slavePath) + `\s+up\s+for \d+s\s+last frame \d+s ago\s+frames 2, errors 0, mails 1, duplicates 0$`,
		`(?m)^  unplugged\s+\S+no-such-tty\s+DOWN\s.*no frame yet`,
		`(?m)^\s+last error: .*no-such-tty.*$`,
		`(?m)^  1 waiting, oldest \d+s old; 0 dead letters`,
		`(?m)^  delivered 2, deferred [1-9]\d*, dead-lettered 0 since start$`,
		`(?m)^  last delivery: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+s ago\)$`,
		`(?m)^  last error: .* \(\d+s ago\): .*451.*mailbox busy`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("status output does not match %s", re)
		}
	}

	if logs, err := s.stop(); err != nil {
		t.Fatalf("serve: %v\n%s", err, logs)
	}
	r = runCLI(t, "", "plcmail", "-c", path, "status")
	if r.code != 1 || !strings.Contains(r.stdout, "plcmail is not running") || !strings.Contains(r.stdout, "queued: 1,") {
		t.Errorf("status after serve stopped: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestStatusUsage(t *testing.T) {
	c := newTestConfig(t)
	path := c.write(t)
	if r := runCLI(t, "", "plcmail", "-c", path, "status", "extra"); r.code != 2 {
		t.Errorf("status extra: exit %d, want 2", r.code)
	}
	if r := runCLI(t, "", "plcmail", "-c", filepath.Join(c.Dir, "missing.toml"), "status"); r.code != 1 || !strings.Contains(r.stderr, "missing.toml") {
		t.Errorf("status with a missing config: exit %d %s", r.code, r.stderr)
	}
}

// TestStatusSecondServe: a second serve on the same spool is refused (the
// delivery lock), and on its way out it must not take the status socket
// away from the gateway that runs.
func TestStatusSecondServe(t *testing.T) {
	c := newTestConfig(t)
	path := c.write(t)
	first := startServe(t, path)
	waitFor(t, "the first serve to answer status", func() bool {
		return runCLI(t, "", "plcmail", "-c", path, "status").code == 0
	})
	r := runCLI(t, "", "plcmail", "-c", path, "serve")
	if r.code != 1 || !strings.Contains(r.stderr, "already") {
		t.Fatalf("second serve: exit %d\n%s", r.code, r.stderr)
	}
	if r := runCLI(t, "", "plcmail", "-c", path, "status"); r.code != 0 {
		t.Errorf("status after a refused second serve: exit %d\n%s%s\nfirst serve's log:\n%s", r.code, r.stdout, r.stderr, first.logs())
	}
}

// TestStatusStoppedSpool: beside a stopped gateway, status counts queued
// messages and dead letters from the spool directory, and not the reasons
// of dead letters (dead/ID.json) nor recycled files (free/); a spool that
// was never created shows no counts.
func TestStatusStoppedSpool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	var out strings.Builder
	printSpoolOnly(&out, dir)
	if out.Len() != 0 {
		t.Errorf("never-created spool: %q, want nothing", out.String())
	}

	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub := spool.Submission{Envelope: spool.Envelope{From: "plc@example.com", To: []string{"ops@example.com"}},
		Data: []byte("Subject: x\r\n\r\nx\r\n")}
	var ids []string
	for range 3 {
		id, err := sp.Enqueue(sub)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := sp.DeadLetter(ids[0], 550, "no such user"); err != nil {
		t.Fatal(err)
	}
	unlock, err := sp.LockDelivery() // the delivering process recycles into free/
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Delivered(ids[1]); err != nil {
		t.Fatal(err)
	}
	unlock()
	sp.Close()
	if free, _ := os.ReadDir(filepath.Join(dir, "free")); len(free) == 0 {
		t.Fatal("the delivered message was not recycled into free/: the test checks nothing there")
	}

	out.Reset()
	printSpoolOnly(&out, dir)
	if !regexp.MustCompile(`^queued: 1, oldest \d+s ago\ndead letters: 1, oldest \d+s ago\n$`).MatchString(out.String()) {
		t.Errorf("status of a stopped spool:\n%s", out.String())
	}
}

// `plcmail status` of a running gateway counts what waits on disk, not
// only what its delivery loop has seen: mail queued by `plcmail send`
// since the last scan (an hour here), files moved to corrupt/, and the
// dead letter of an envelope that would have broken the SMTP dialogue,
// whose address is never printed raw.
func TestStatusShowsWhatWaits(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	path := c.write(t)
	text, _ := os.ReadFile(path)
	if err := os.WriteFile(path, bytes.Replace(text, []byte(`scan_every = "100ms"`), []byte(`scan_every = "1h"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(c.Spool, "queue"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeQueueFile(t, c.Spool, "0000000000000001", spool.Envelope{From: "plc@example.com", To: []string{"ops@example.com\r\nDATA"}}, "Subject: x\r\n\r\nx\r\n")
	if err := os.WriteFile(filepath.Join(c.Spool, "queue", "0000000000000002"), []byte("{not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	s := startServe(t, path)
	var st statusSnapshot
	read := func() bool {
		r := runCLI(t, "", "plcmail", "-c", path, "status", "--json")
		if r.code != 0 {
			return false // not up yet
		}
		st = statusSnapshot{}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.stdout)
		}
		return true
	}
	// The file reaches dead/ a moment before the loop counts it: wait for
	// both, the disk and the counter.
	waitFor(t, "the bad envelope dead-lettered", func() bool { return read() && st.Dead == 1 && st.Queue.DeadLettered == 1 })
	if st.Corrupt != 1 || st.Spooled != 0 || st.Queue.DeadLettered != 1 {
		t.Errorf("status --json: corrupt %d, spooled %d, dead-lettered %d; want 1, 0, 1", st.Corrupt, st.Spooled, st.Queue.DeadLettered)
	}
	r := runCLI(t, "", "plcmail", "-c", path, "status")
	if !regexp.MustCompile(`(?m)^  empty; 1 dead letters; 1 CORRUPT, moved aside and never sent \(plcmail queue list\)$`).MatchString(r.stdout) {
		t.Errorf("status:\n%s", r.stdout)
	}

	// Queued by another process. The gateway sees it at once (inotify)
	// and tries it: with the upstream down it stays waiting.
	u.Stop()
	if r := runCLI(t, "Subject: later\r\n\r\nx\r\n", "plcmail", "-c", path, "send", "ops@example.com"); r.code != 0 {
		t.Fatalf("send: %+v", r)
	}
	if !read() || st.Spooled != 1 {
		t.Errorf("status --json: spooled %d, want 1", st.Spooled)
	}
	r = runCLI(t, "", "plcmail", "-c", path, "status")
	t.Logf("status:\n%s", r.stdout)
	if !regexp.MustCompile(`(?m)^  1 waiting, oldest \d+s old; 1 dead letters; 1 CORRUPT`).MatchString(r.stdout) {
		t.Errorf("status with a message waiting:\n%s", r.stdout)
	}

	r = runCLI(t, "", "mailq", "-c", path)
	t.Logf("mailq:\n%s", r.stdout)
	if strings.Contains(r.stdout, "\r") || !strings.Contains(r.stdout, `"ops@example.com\r\nDATA"`) ||
		!regexp.MustCompile(`(?m)^\(DEAD since .*, not attempted: invalid envelope, not sent: recipient: "ops@example.com\\r\\nDATA" contains a control character\)$`).MatchString(r.stdout) ||
		!strings.Contains(r.stdout, "queue-0000000000000002") {
		t.Errorf("mailq:\n%q", r.stdout)
	}
	if len(u.Messages()) != 0 {
		t.Errorf("the upstream got %d messages", len(u.Messages()))
	}
	if logs, err := s.stop(); err != nil {
		t.Fatalf("serve: %v\n%s", err, logs)
	}
	r = runCLI(t, "", "plcmail", "-c", path, "status")
	if !strings.Contains(r.stdout, "queued: 1, oldest") || !regexp.MustCompile(`(?m)^corrupt: 1, oldest \S+ ago$`).MatchString(r.stdout) {
		t.Errorf("status of the stopped gateway:\n%s", r.stdout)
	}
}

// TestStatusMailsCountNotices: the offline/online notices and digests are
// mails the user receives, so `plcmail status` counts them in "mails", for
// a serial link and a Modbus device alike, and --json carries the same
// number as "mails" beside its parts.
func TestStatusMailsCountNotices(t *testing.T) {
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	s := &statusSnapshot{Now: now, Started: now,
		Links: []bridge.LinkStatus{{Name: "press-1", Connected: true, Frames: 9,
			Mails: 4, Mailed: 1, Digests: 1, Notices: 2}},
		Modbus: []modbus.DeviceStatus{{Name: "tank", Up: true, Polls: 8, LastGood: now,
			Mails: 3, Mailed: 1, Notices: 2}}}
	var b strings.Builder
	printStatus(&b, s)
	for _, want := range []string{"frames 9, errors 0, mails 4, duplicates 0", "polls 8, failed 0, mails 3, held 0"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status:\n%s\nwant %q", b.String(), want)
		}
	}
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"mails":4,"mailed":1`, `"mails":3,"mailed":1`} {
		if !bytes.Contains(j, []byte(want)) {
			t.Errorf("status --json lacks %s:\n%s", want, j)
		}
	}
}

// TestStatusChannelDeliveries: with fallback channels configured, a link
// whose PLC did not announce via in its HELLO (firmware library before
// 0.2.0) says that the PLC is not told of channel deliveries; a PLC that
// did, no PLC yet, or no channels say nothing.
func TestStatusChannelDeliveries(t *testing.T) {
	const warning = "PLC firmware does not report channel deliveries"
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name     string
		channels bool
		link     bridge.LinkStatus
		want     bool
	}{
		{"old firmware, channels", true, bridge.LinkStatus{Name: "l", Boot: 7}, true},
		{"firmware announced via", true, bridge.LinkStatus{Name: "l", Boot: 7, ChannelDeliveries: true}, false},
		{"no HELLO yet", true, bridge.LinkStatus{Name: "l"}, false},
		{"no channels", false, bridge.LinkStatus{Name: "l", Boot: 7}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &statusSnapshot{Now: now, Started: now, Links: []bridge.LinkStatus{tt.link}}
			if tt.channels {
				s.Channels = []channel.Stats{{Name: "hook"}}
			}
			var b strings.Builder
			printStatus(&b, s)
			if got := strings.Contains(b.String(), warning); got != tt.want {
				t.Errorf("warning shown %v, want %v:\n%s", got, tt.want, b.String())
			}
		})
	}
}
