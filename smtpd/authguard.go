package smtpd

import (
	"net/netip"
	"sync"
	"time"
)

// authGuard is the brake on password guessing: after max failed AUTH
// attempts from one client address within window, AUTH from that address
// is refused for lockout, whatever the password. It is what fail2ban does
// for a Postfix log, or Postfix's anvil(8) with smtpd_client_auth_rate_limit,
// inside the listener: boards on a LAN have no fail2ban in front of them.
// Failures are counted per address, not per connection, so opening new
// connections does not reset the count; a success does not reset it either,
// so that a client knowing one account cannot use it to guess another's.
type authGuard struct {
	max     int
	window  time.Duration
	lockout time.Duration
	now     func() time.Time

	mu      sync.Mutex
	peers   map[netip.Addr]*authPeer
	pruneAt int // prune when peers has grown to this size
}

type authPeer struct {
	fails []time.Time // failures within window, oldest first; fewer than max
	until time.Time   // locked out until then
}

func newAuthGuard(max int, window, lockout time.Duration) *authGuard {
	return &authGuard{max: max, window: window, lockout: lockout, now: time.Now,
		peers: map[netip.Addr]*authPeer{}, pruneAt: 64}
}

// locked reports whether ip is locked out now, and until when.
func (g *authGuard) locked(ip netip.Addr) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peers[ip]
	if p == nil || !g.now().Before(p.until) {
		return time.Time{}, false
	}
	return p.until, true
}

// failed records a failed AUTH from ip. It reports whether this failure
// started a lockout, and its end; the caller logs it, once per lockout.
func (g *authGuard) failed(ip netip.Addr) (until time.Time, started bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.prune(now)
	p := g.peers[ip]
	if p == nil {
		p = &authPeer{}
		g.peers[ip] = p
	}
	if now.Before(p.until) {
		return p.until, false // an attempt that was under way when the lockout began
	}
	keep := p.fails[:0]
	for _, t := range p.fails {
		if now.Sub(t) < g.window {
			keep = append(keep, t)
		}
	}
	p.fails = append(keep, now)
	if len(p.fails) < g.max {
		return time.Time{}, false
	}
	p.fails = p.fails[:0]
	p.until = now.Add(g.lockout)
	return p.until, true
}

// prune forgets addresses that are neither locked out nor have a failure
// within window. It runs when the table has doubled since the last time, so
// its cost per failure stays constant and the table bounded by the
// addresses that failed recently.
func (g *authGuard) prune(now time.Time) {
	if len(g.peers) < g.pruneAt {
		return
	}
	for ip, p := range g.peers {
		if !now.Before(p.until) && (len(p.fails) == 0 || now.Sub(p.fails[len(p.fails)-1]) >= g.window) {
			delete(g.peers, ip)
		}
	}
	g.pruneAt = max(64, 2*len(g.peers))
}
