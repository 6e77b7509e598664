package smtpd

import (
	"net/netip"
	"testing"
	"time"
)

// TestAuthGuard: failures older than the window do not count, a lockout
// ends by itself, attempts during a lockout do not extend it, and
// addresses are counted apart.
func TestAuthGuard(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newAuthGuard(3, 10*time.Minute, 15*time.Minute)
	g.now = func() time.Time { return now }
	a, b := netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("192.168.1.11")
	step := func(d time.Duration) { now = now.Add(d) }

	for i := 0; i < 2; i++ {
		if _, started := g.failed(a); started {
			t.Fatalf("locked after %d failures", i+1)
		}
		step(6 * time.Minute)
	}
	// The first failure is 12 minutes old now: two within the window.
	if _, started := g.failed(a); started {
		t.Fatal("a failure outside the window counted")
	}
	step(time.Minute)
	until, started := g.failed(a)
	if !started || !until.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("third failure in the window: started %v until %v", started, until)
	}
	if _, ok := g.locked(b); ok {
		t.Error("other address locked")
	}
	step(14 * time.Minute)
	if _, started := g.failed(a); started {
		t.Error("a failure during the lockout started another")
	}
	if _, ok := g.locked(a); !ok {
		t.Error("lockout ended early")
	}
	step(time.Minute)
	if _, ok := g.locked(a); ok {
		t.Error("lockout did not end")
	}
	// After the lockout the count starts from zero.
	for i := 0; i < 2; i++ {
		if _, started := g.failed(a); started {
			t.Fatalf("locked again after %d failures", i+1)
		}
	}
}

// TestAuthGuardPrune: the table forgets addresses whose failures are old.
func TestAuthGuardPrune(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newAuthGuard(5, time.Minute, time.Minute)
	g.now = func() time.Time { return now }
	for i := 0; i < 1000; i++ {
		g.failed(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
		now = now.Add(time.Second)
	}
	if n := len(g.peers); n > 200 {
		t.Errorf("%d addresses kept, want about the last minute's 60 (at most twice that before a prune)", n)
	}
}
