package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/spool"
)

// writeListConfig writes a configuration with an [[upstream]] entry per
// body, in order, and returns its path.
func writeListConfig(t *testing.T, dir string, bodies ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "[gateway]\nhostname = \"gw.test\"\nspool_dir = %q\n\n[queue]\nmin_backoff = \"50ms\"\nmax_backoff = \"500ms\"\nscan_every = \"100ms\"\n",
		filepath.Join(dir, "spool"))
	for _, body := range bodies {
		fmt.Fprintf(&b, "\n[[upstream]]\n%s", body)
	}
	path := filepath.Join(dir, "plcmail.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// entryTOML is an [[upstream]] body for u, with a name and short failover
// timings; from is left out on all but the first entry.
func entryTOML(u config.Upstream, name string, first bool) string {
	s := upstreamTOML(u)
	if !first {
		s = regexp.MustCompile(`(?m)^from = .*\n`).ReplaceAllString(s, "")
	}
	return s + fmt.Sprintf("name = %q\nprobe_interval = \"300ms\"\nfailover_after = \"1s\"\n", name)
}

var messageIDRE = regexp.MustCompile(`(?mi)^Message-ID: (<[^>\r\n]+>)\r?$`)

// TestKill9DuringFailover: the real binary delivers through an
// [[upstream]] list whose primary is down, so mail fails over to the
// secondary, while serve is killed with SIGKILL at random moments and
// restarted; halfway through the primary comes back and takes over again.
// Counted at both upstreams by Message-ID, every queued message arrives,
// and a duplicate is possible only for the one message per connection
// whose 250 had arrived when serve died (as in TestKill9DuringBurst).
func TestKill9DuringFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("child-process crash test; skipped with -short")
	}
	bin := plcmailBinary(t)
	p := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	s := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	p.Stop()
	path := writeListConfig(t, t.TempDir(), entryTOML(p.Config(), "primary", true), entryTOML(s.Config(), "secondary", false))
	d := newDaemon(t, bin, path)
	d.start()

	const total = 80
	queued := map[string]bool{}
	kills := 0
	next := time.Now()
	for i := 0; i < total; i++ {
		id := fmt.Sprintf("<failover-%d@gw.test>", i)
		r := runCLI(t, fmt.Sprintf("To: ops@example.com\nSubject: failover %d\nMessage-ID: %s\n\nmessage %d\n", i, id, i), "plcmail", "-c", path, "send", "-t")
		if r.code != 0 {
			t.Fatalf("send %d: %+v", i, r)
		}
		queued[id] = true
		if i == total/2 {
			// Kills may have kept serve from delivering so far: let the
			// secondary carry some before the primary comes back.
			if !d.waitRunning(10 * time.Second) {
				t.Fatalf("serve is not running:\n%s", tail(d.logs(), 30))
			}
			s.Wait(t, 1, 30*time.Second)
			p.Start() // the primary is back for the second half
		}
		if time.Now().After(next) {
			d.kill()
			kills++
			d.start()
			next = time.Now().Add(time.Duration(20+rand.IntN(150)) * time.Millisecond)
		}
	}
	count := func() map[string]int {
		n := map[string]int{}
		for _, u := range []*mailertest.Upstream{p, s} {
			for _, m := range u.Messages() {
				sm := messageIDRE.FindSubmatch(m.Data)
				if sm == nil {
					t.Fatalf("a message without Message-ID:\n%s", m.Data)
				}
				n[string(sm[1])]++
			}
		}
		return n
	}
	var received map[string]int
	deadline := time.Now().Add(60 * time.Second)
	for {
		received = count()
		missing := 0
		for id := range queued {
			if received[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages never arrived\nmailq:\n%s\nserve log:\n%s", missing, total,
				runCLI(t, "", "mailq", "-c", path).stdout, tail(d.logs(), 60))
		}
		time.Sleep(100 * time.Millisecond)
	}
	dups := 0
	for id, n := range received {
		if !queued[id] {
			t.Errorf("%s arrived but was never queued", id)
		}
		dups += n - 1
	}
	t.Logf("%d kills; primary got %d, secondary %d; %d duplicates", kills, len(p.Messages()), len(s.Messages()), dups)
	if dups > kills {
		t.Errorf("%d duplicates for %d kills", dups, kills)
	}
	if len(s.Messages()) == 0 {
		t.Error("nothing failed over to the secondary while the primary was down")
	}
	// The primary is back: new mail goes through it again.
	before := len(p.Messages())
	for i := 0; i < 3; i++ {
		if r := runCLI(t, fmt.Sprintf("To: ops@example.com\nSubject: after %d\n\nafter\n", i), "plcmail", "-c", path, "send", "-t"); r.code != 0 {
			t.Fatalf("send: %+v", r)
		}
	}
	p.Wait(t, before+3, 30*time.Second)
	if !d.waitRunning(10 * time.Second) {
		t.Fatalf("serve is not running:\n%s", tail(d.logs(), 30))
	}
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, tail(d.logs(), 30))
	}
}

// TestStatusShowsUpstreams: `plcmail status` names the upstream in use and
// why another one is skipped.
func TestStatusShowsUpstreams(t *testing.T) {
	var b strings.Builder
	now := time.Now()
	printUpstreams(&b, now, []spool.UpstreamStats{
		{Name: "primary", Addr: "smtp.a:587", State: "down", DownSince: now.Add(-3 * time.Minute), HoldUntil: now.Add(time.Minute),
			LastError: "auth: 535 5.7.8 Authentication failed", LastErrorAt: now.Add(-10 * time.Second), ConnFailures: 4, FailedOver: 12},
		{Name: "backup", Addr: "smtp.b:465", State: "ok", Delivered: 12},
	})
	out := b.String()
	for _, want := range []string{"upstreams (tried in order):", "primary", "DOWN for 3m", "next try in", "why: auth: 535 5.7.8 Authentication failed",
		"backup", "IN USE", "delivered 12", "sent on to the next 12"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	b.Reset()
	printUpstreams(&b, now, []spool.UpstreamStats{{Name: "only", State: "ok"}})
	if b.Len() != 0 {
		t.Errorf("a single upstream gets a section: %q", b.String())
	}
}

// TestCheckUpstreamList: `plcmail check` accepts a list and names the
// line of a bad entry.
func TestCheckUpstreamList(t *testing.T) {
	dir := t.TempDir()
	good := "host = \"127.0.0.1\"\nport = 2525\nsecurity = \"none\"\nauth = \"none\"\n"
	path := writeListConfig(t, dir, good+"from = \"gw@example.com\"\nname = \"a\"\n", good+"name = \"b\"\nfailover_after = \"soon\"\n")
	r := runCLI(t, "", "plcmail", "-c", path, "check")
	// Line 24 is failover_after of the second entry.
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, path+":24: upstream[1].failover_after: invalid duration") {
		t.Errorf("check: %+v", r)
	}
	path = writeListConfig(t, dir, good+"from = \"gw@example.com\"\nname = \"a\"\n", good+"name = \"b\"\n")
	if r := runCLI(t, "", "plcmail", "-c", path, "check"); r.code != 0 {
		t.Errorf("valid list: %+v", r)
	}
}
