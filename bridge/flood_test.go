package bridge

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/flood"
	"github.com/plcmail/plcmail/protocol"
)

var digestLine = regexp.MustCompile(`boot (\d+) event (\d+), (hold-off|rate limit)`)

// TestFloodBoundedAndAccounted sends 10,000 events stop-and-wait, like the
// firmware does. With a cap of 20 mails per minute and a 5 minute hold-off
// the gateway must queue a bounded number of mails, and every single event
// must be in exactly one of them: its own mail or one digest line.
func TestFloodBoundedAndAccounted(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 events over a pty")
	}
	g, p := startHello(t, testOpts{holdoff: "5m", maxPerMin: 20, digestDelay: "300ms"}, 77)
	dir := g.dir
	const n = 10000
	start := time.Now()
	for i := 0; i < n; i++ {
		code := uint16(i % 50)
		ev := protocol.EventRaise
		if i%100 >= 50 {
			ev = protocol.EventClear
		}
		f := p.event(code, ev, fmt.Sprintf("e%d", i))
		p.expectAck(f, protocol.AckQueued)
	}
	g.waitFor("digests flushed", func() bool { st := g.b.Status()[0]; return st.DigestPending == 0 && st.Unmailed == 0 })
	elapsed := time.Since(start)

	seen := map[string]int{}
	msgs := spoolMessages(t, dir)
	individual, digests := 0, 0
	for _, q := range msgs {
		switch {
		case strings.HasPrefix(q.Meta.Key, "line1/77/"):
			individual++
			seen[strings.TrimPrefix(q.Meta.Key, "line1/")]++
		case strings.Contains(q.Meta.Key, "/digest/"):
			digests++
			for _, sm := range digestLine.FindAllStringSubmatch(q.Body, -1) {
				seen[sm[1]+"/"+sm[2]]++
			}
		default:
			t.Errorf("unexpected mail %s %q", q.Meta.Key, q.Subject)
		}
	}
	t.Logf("%d events -> %d mails (%d individual, %d digests)", n, len(msgs), individual, digests)
	if individual > 20 {
		t.Errorf("%d individual mails exceed the cap of 20 per minute", individual)
	}
	// One digest per digest_delay while the flood lasts, plus one per
	// flood.MaxDigestEntries events.
	if max := int(elapsed/(300*time.Millisecond)) + n/flood.MaxDigestEntries + 1; digests > max {
		t.Errorf("%d digests in %v, want at most %d", digests, elapsed, max)
	}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("77/%d", i+2) // seq 1 is the hello
		if seen[k] != 1 {
			t.Fatalf("event %s accounted %d times", k, seen[k])
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct events accounted, want %d", len(seen), n)
	}
	st := g.b.Status()[0]
	if st.Mailed+st.Held != n || st.Digests != uint64(digests) {
		t.Errorf("counters %+v", st)
	}
}

// TestHoldoffRaiseAndClearInDigest: a flapping alarm is mailed once per
// event kind, and the repeated raise and clear are both in the digest.
func TestHoldoffRaiseAndClearInDigest(t *testing.T) {
	g, p := startHello(t, testOpts{holdoff: "1h", digestDelay: "200ms"}, 4)
	dir := g.dir
	for i := 0; i < 3; i++ {
		p.expectAck(p.event(17, protocol.EventRaise, fmt.Sprintf("r%d", i)), protocol.AckQueued)
		p.expectAck(p.event(17, protocol.EventClear, fmt.Sprintf("c%d", i)), protocol.AckQueued)
	}
	g.waitFor("digest", func() bool { return g.b.Status()[0].Digests == 1 })
	msgs := spoolMessages(t, dir)
	if len(msgs) != 3 {
		t.Fatalf("%d mails, want raise + clear + digest", len(msgs))
	}
	var digest string
	for _, q := range msgs {
		if strings.Contains(q.Meta.Key, "/digest/") {
			digest = q.Body
		}
	}
	for _, want := range []string{`Pressure low: raise [alarm] "r1"`, `Pressure low: clear [alarm] "c1"`,
		`"r2"`, `"c2"`, "hold-off"} {
		if !strings.Contains(digest, want) {
			t.Errorf("digest lacks %q:\n%s", want, digest)
		}
	}
}

// TestHeldEventsSurviveRestart: events held for a digest are ACKed before
// any mail exists; a gateway stop before the digest is sent must not lose
// them, and their retransmission must be a duplicate.
func TestHeldEventsSurviveRestart(t *testing.T) {
	m, slave := openPty(t)
	dir := t.TempDir()
	cfg := testCfg(t, slave, testOpts{holdoff: "1h", digestDelay: "1h"})
	g := startGateway(t, cfg, dir)
	g.waitConnected()
	p := newPLC(t, m, 8)
	p.expectAck(p.hello(), protocol.AckQueued)
	p.expectAck(p.event(17, protocol.EventRaise, "first"), protocol.AckQueued)
	held := p.event(17, protocol.EventRaise, "held")
	p.expectAck(held, protocol.AckQueued)
	if st := g.b.Status()[0]; st.Held != 1 || st.DigestPending != 1 {
		t.Fatalf("status %+v", st)
	}
	g.stop()
	drain(m)
	p.discard()

	cfg2 := testCfg(t, slave, testOpts{holdoff: "1h", digestDelay: "100ms"})
	g2 := startGateway(t, cfg2, dir)
	g2.waitConnected()
	p.sendFrame(held)
	p.expectAck(held, protocol.AckDuplicate)
	g2.waitFor("digest after restart", func() bool { return g2.b.Status()[0].Digests == 1 })
	msgs := spoolMessages(t, dir)
	if len(msgs) != 2 {
		t.Fatalf("%d mails, want first + digest", len(msgs))
	}
	for _, q := range msgs {
		if strings.Contains(q.Meta.Key, "/digest/") && !strings.Contains(q.Body, `"held"`) {
			t.Errorf("digest lacks the held event:\n%s", q.Body)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(spoolMessages(t, dir)); n != 2 {
		t.Errorf("%d mails after a while, want 2 (digest sent once)", n)
	}
}

// TestRepeatedBootIdFlood: a PLC whose EEPROM was erased restarts at the
// same boot id and sends the same frames again (HELLO seq 1, raise 17
// seq 2, clear 17 seq 3). Rule 4c makes it a new boot, and flood control
// treats its events like any others of the link: with the hold-off of
// `plcmail serve` (5 min) the repeated raise and clear come within the
// hold-off of the earlier boot's, so they are held and reported once in
// the digest, DigestDelay after the first of them (1 min by default, a
// second here); with no hold-off (as the simavr tests run) each is mailed
// on its own. Either way every event is accounted for exactly once, the
// earlier boot's mails are not repeated and the restart notice is sent at
// once.
func TestRepeatedBootIdFlood(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    testOpts
		held bool
	}{
		{"serve defaults", testOpts{holdoff: "5m", maxPerMin: 20, digestDelay: "1s"}, true},
		{"no hold-off", testOpts{holdoff: "0s", maxPerMin: 1000}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, slave := openPty(t)
			g := startGateway(t, testCfg(t, slave, tc.o), t.TempDir())
			g.waitConnected()
			p := newPLC(t, m, 1)
			p.expectAck(p.hello(), protocol.AckQueued)
			p.expectAck(p.event(17, protocol.EventRaise, "boot A raise"), protocol.AckQueued)
			p.expectAck(p.event(17, protocol.EventClear, "boot A clear"), protocol.AckQueued)
			g.waitMails(2)

			again := newPLC(t, m, 1) // EEPROM erased: boot id 1 again, seq from 1
			again.expectAck(again.hello(), protocol.AckQueued)
			again.expectAck(again.event(17, protocol.EventRaise, "boot B raise"), protocol.AckQueued)
			again.expectAck(again.event(17, protocol.EventClear, "boot B clear"), protocol.AckQueued)

			individual := []string{"line1/1/2", "line1/1/3", "line1/1g1/1/restart"}
			if tc.held {
				// Held, not lost: journaled and waiting for the digest.
				if st := g.b.Status()[0]; st.Held != 2 || st.DigestPending != 2 {
					t.Fatalf("status after the new boot's events: %+v", st)
				}
				g.waitFor("digest", func() bool { st := g.b.Status()[0]; return st.Digests == 1 && st.DigestPending == 0 })
			} else {
				individual = append(individual, "line1/1g1/2", "line1/1g1/3")
				g.waitMails(len(individual))
			}
			msgs := spoolMessages(t, g.dir)
			got := map[string]int{}
			for _, q := range msgs {
				switch {
				case strings.Contains(q.Meta.Key, "/digest/"):
					if q.Meta.Key != "line1/digest/1g1/2" {
						t.Errorf("digest key %s, want the new boot's first held event", q.Meta.Key)
					}
					for _, s := range []string{`"boot B raise"`, `"boot B clear"`} {
						if n := strings.Count(q.Body, s); n != 1 {
							t.Errorf("digest lists %s %d times:\n%s", s, n, q.Body)
						}
					}
					if strings.Contains(q.Body, "boot A") {
						t.Errorf("digest repeats the earlier boot:\n%s", q.Body)
					}
				default:
					got[q.Meta.Key]++
				}
			}
			for _, k := range individual {
				if got[k] != 1 {
					t.Errorf("mail %s queued %d times, want 1 (spool %v)", k, got[k], got)
				}
			}
			if len(got) != len(individual) {
				t.Errorf("individual mails %v, want %v", got, individual)
			}
			if n := countKind(msgs, "boot B"); tc.held == (n != 0) {
				t.Errorf("%d individual mails of the new boot's events (held %v)", n, tc.held)
			}
		})
	}
}
