package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
)

var seqHeader = regexp.MustCompile(`(?m)^X-Burst-Seq: (\d+)\r$`)

// TestKill9DuringBurst is the durability proof at the process level: the
// real binary, a burst of `plcmail send` processes (several at once) while
// `plcmail serve` is killed with SIGKILL at random moments and restarted.
// Every message that send reported as queued (exit 0) must reach the real
// TLS upstream. A duplicate is possible only for a message the upstream had
// accepted when serve died before removing it from the spool (at most one
// per connection and kill; TestKill9RedeliveryWindow proves that bound);
// they are counted and reported.
func TestKill9DuringBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("child-process crash test; skipped with -short")
	}
	bin := plcmailBinary(t)
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	path := c.write(t)

	d := newDaemon(t, bin, path)
	d.start()

	const total, workers = 200, 4
	var mu sync.Mutex
	queued := map[int]bool{}
	var sendFailures []string
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range jobs {
				cmd := exec.Command(bin, "-c", path, "send", "-t")
				cmd.Stdin = strings.NewReader(fmt.Sprintf("To: ops@example.com\nSubject: burst %d\nX-Burst-Seq: %d\n\nmessage %d of the burst\n", seq, seq, seq))
				out, err := cmd.CombinedOutput()
				mu.Lock()
				if err == nil {
					queued[seq] = true
				} else {
					sendFailures = append(sendFailures, fmt.Sprintf("%d: %v: %s", seq, err, out))
				}
				mu.Unlock()
			}
		}()
	}
	sendsDone := make(chan struct{})
	go func() {
		for i := 0; i < total; i++ {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(sendsDone)
	}()

	kills := 0
	start := time.Now()
	func() {
		for {
			select {
			case <-sendsDone:
				return
			case <-time.After(time.Duration(20+rand.IntN(130)) * time.Millisecond):
			}
			d.kill()
			kills++
			if rand.IntN(3) == 0 {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond) // down for a while
			}
			d.start()
		}
	}()
	sendTime := time.Since(start)
	// A few more kills while the backlog drains.
	for i := 0; i < 3; i++ {
		time.Sleep(time.Duration(20+rand.IntN(150)) * time.Millisecond)
		d.kill()
		kills++
		d.start()
	}

	if len(sendFailures) > 0 {
		// send never needs serve; a failure here is a bug of its own.
		t.Errorf("%d sends failed:\n%s", len(sendFailures), strings.Join(sendFailures, "\n"))
	}
	var received map[int]int
	deadline := time.Now().Add(60 * time.Second)
	for {
		received = map[int]int{}
		for _, m := range u.Messages() {
			sm := seqHeader.FindSubmatch(m.Data)
			if sm == nil {
				t.Fatalf("upstream got a message without X-Burst-Seq:\n%s", m.Data)
			}
			n, _ := strconv.Atoi(string(sm[1]))
			received[n]++
		}
		missing := 0
		for seq := range queued {
			if received[seq] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			var ids []string
			for seq := range queued {
				if received[seq] == 0 {
					ids = append(ids, strconv.Itoa(seq))
				}
			}
			t.Fatalf("%d of %d queued messages never arrived: %s\nmailq:\n%s\nserve log (last run):\n%s", missing, len(queued), strings.Join(ids, " "),
				runCLI(t, "", "mailq", "-c", path).stdout, tail(d.logs(), 60))
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups := 0
	for seq, n := range received {
		if !queued[seq] {
			t.Errorf("message %d arrived but send did not report it queued", seq)
		}
		dups += n - 1
	}
	t.Logf("%d sends queued in %v, all delivered after %v; %d kills, %d upstream connections, %d messages received, %d duplicates",
		len(queued), sendTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), kills, u.Connections(), len(u.Messages()), dups)
	// Messages go one after the other over the connection, so each kill
	// can repeat at most the one message whose 250 had arrived while the
	// spool was still recording its delivery (a few milliseconds of fsync).
	// No SMTP client can close that window: the upstream has the mail, and
	// we cannot know it. Anything more would be a bug.
	if dups > kills {
		t.Errorf("%d duplicates for %d kills", dups, kills)
	}
	if r := runCLI(t, "", "mailq", "-c", path); r.stdout != "Mail queue is empty\n" {
		t.Errorf("spool not empty after the burst:\n%s", r.stdout)
	}
	if !d.waitRunning(10 * time.Second) {
		t.Fatalf("serve did not come up after the last restart:\n%s", tail(d.logs(), 30))
	}
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, tail(d.logs(), 30))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestArgv0Links runs the binary as `sendmail` and `mailq` through symlinks,
// as /usr/sbin/sendmail and /usr/bin/mailq would be installed.
func TestArgv0Links(t *testing.T) {
	bin := plcmailBinary(t)
	dir := t.TempDir()
	for _, name := range []string{"sendmail", "mailq"} {
		if err := os.Symlink(bin, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	c := newTestConfig(t)
	path := c.write(t)
	run := func(stdin string, name string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(dir, name), args...)
		cmd.Env = append(os.Environ(), "PLCMAIL_CONFIG="+path)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// What cron runs: sendmail -FCronDaemon -i -B8BITMIME -oem root@...
	if out, err := run("To: ops@example.com\nSubject: cron\n\nhello\n", "sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-t"); err != nil || out != "" {
		t.Fatalf("sendmail: %v: %q", err, out)
	}
	out, err := run("", "mailq")
	if err != nil || !strings.Contains(out, "ops@example.com") || !strings.Contains(out, "-- 1 KiB in 1 request.") {
		t.Errorf("mailq: %v:\n%s", err, out)
	}
	out, err = run("", "sendmail", "-t")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exDataErr || !strings.Contains(out, "no recipients") {
		t.Errorf("sendmail -t without recipients: %v: %q", err, out)
	}
	out, err = run("", "sendmail", "-bs")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exUsage {
		t.Errorf("sendmail -bs: %v: %q", err, out)
	}
}

// TestServeSignals: SIGHUP with a broken file keeps the running config and
// says why; SIGHUP with a good one applies it; SIGTERM exits 0.
func TestServeSignals(t *testing.T) {
	bin := plcmailBinary(t)
	u := mailertest.NewUpstream(t, mailertest.Options{})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	path := c.write(t)
	d := newDaemon(t, bin, path)
	d.start()
	if !d.waitRunning(10 * time.Second) {
		t.Fatalf("serve did not start:\n%s", d.logs())
	}

	good, _ := os.ReadFile(path)
	os.WriteFile(path, append(good, "[upstream.bogus]\n"...), 0o600)
	d.signal(syscall.SIGHUP)
	if !d.waitLog("reload failed, keeping the running configuration", 10*time.Second) {
		t.Fatalf("no reload error logged:\n%s", d.logs())
	}
	// Still delivering with the old configuration.
	if r := runCLI(t, "Subject: after bad reload\n\nx\n", "sendmail", "-c", c.write(t), "ops@example.com"); r.code != 0 {
		t.Fatal(r)
	}
	u.Wait(t, 1, 10*time.Second)

	os.WriteFile(path, append(good, "\n[flood]\nholdoff = \"1m\"\n"...), 0o600)
	d.signal(syscall.SIGHUP)
	if !d.waitLog("reloaded configuration", 10*time.Second) {
		t.Fatalf("reload not logged:\n%s", d.logs())
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, d.logs())
	}
	if !strings.Contains(d.logs(), "plcmail stopped") {
		t.Errorf("no clean stop logged:\n%s", d.logs())
	}
}

var messageIDHeader = regexp.MustCompile(`(?mi)^Message-ID: (<[^>\r\n]+>)\r$`)

// TestKill9RedeliveryWindow bounds what a crash re-sends: `plcmail serve`,
// delivering a backlog over one upstream connection, is killed with SIGKILL
// at the moment the upstream receives a message (its DATA is in, its 250
// not yet sent), several times, and restarted each time. The upstream
// counts what it received by Message-ID. The message in flight at each
// kill may arrive twice (the upstream has it; the spool cannot know), every
// message delivered before it must not: its delivery was recorded durably
// before the next MAIL FROM. And every queued message arrives.
func TestKill9RedeliveryWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("child-process crash test; skipped with -short")
	}
	bin := plcmailBinary(t)
	u := mailertest.NewUpstream(t, mailertest.Options{})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	c.Extra = "connections = 1\nbatch_size = 1000\n"
	path := c.write(t)

	const total = 240
	send := func(seq int) {
		msg := fmt.Sprintf("To: ops@example.com\nSubject: burst %d\nMessage-ID: <burst-%d@gw.test>\nX-Burst-Seq: %d\n\nmessage %d\n", seq, seq, seq, seq)
		if r := runCLI(t, msg, "plcmail", "-c", path, "send", "-t"); r.code != 0 {
			t.Fatalf("send %d: %+v", seq, r)
		}
	}
	// Half the burst is queued before serve starts, the other half while
	// it delivers and is killed.
	for seq := 0; seq < total/2; seq++ {
		send(seq)
	}

	d := newDaemon(t, bin, path)
	var pid atomic.Int64
	killed := make(chan struct{}, 1)
	kill := func() {
		if p := int(pid.Load()); p > 0 && syscall.Kill(p, syscall.SIGKILL) == nil {
			pid.Store(0)
			killed <- struct{}{}
		}
	}
	// Kills at a RCPT: the message before it got its 250 a moment ago and
	// must not come again. Kills at a DATA: that message is the one in
	// flight and may come again, once.
	var rcpts, datas atomic.Int64
	killAtRcpt := map[int64]bool{30: true, 110: true, 190: true}
	killAtData := map[int64]bool{70: true, 150: true}
	u.SetRcpt(func(string) error {
		if killAtRcpt[rcpts.Add(1)] {
			kill()
		}
		return nil
	})
	u.SetData(func(mailertest.Received) error {
		if killAtData[datas.Add(1)] {
			kill()
		}
		return nil
	})
	sendsDone := make(chan struct{})
	go func() {
		defer close(sendsDone)
		for seq := total / 2; seq < total; seq++ {
			send(seq)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	kills := 0
	for kills < len(killAtRcpt)+len(killAtData) {
		d.start()
		pid.Store(int64(d.cmd.Process.Pid))
		select {
		case <-killed:
		case <-time.After(60 * time.Second):
			t.Fatalf("no kill after %d messages received (%d kills):\n%s", datas.Load(), kills, tail(d.logs(), 40))
		}
		d.kill()
		kills++
	}
	<-sendsDone
	d.start()

	count := func() map[string]int {
		got := map[string]int{}
		for _, m := range u.Messages() {
			sm := messageIDHeader.FindSubmatch(m.Data)
			if sm == nil {
				t.Fatalf("upstream got a message without Message-ID:\n%s", m.Data)
			}
			got[string(sm[1])]++
		}
		return got
	}
	if !poll(60*time.Second, func() bool { return len(count()) >= total }) {
		t.Fatalf("%d of %d messages arrived:\n%s", len(count()), total, tail(d.logs(), 40))
	}
	got := count()
	dups := 0
	var doubled []string
	for id, n := range got {
		if n > 1 {
			dups += n - 1
			doubled = append(doubled, fmt.Sprintf("%s ×%d", id, n))
		}
	}
	for seq := 0; seq < total; seq++ {
		if got[fmt.Sprintf("<burst-%d@gw.test>", seq)] == 0 {
			t.Errorf("message %d was queued but never arrived", seq)
		}
	}
	t.Logf("%d messages, %d kills, %d received upstream, %d duplicates", total, kills, len(u.Messages()), dups)
	// One connection: at most the one message in flight per kill, and
	// none when the kill came before the DATA.
	if dups > len(killAtData) {
		t.Errorf("%d duplicates for %d kills at DATA and %d at RCPT, with one connection: %s",
			dups, len(killAtData), len(killAtRcpt), strings.Join(doubled, ", "))
	}
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, tail(d.logs(), 30))
	}
}
