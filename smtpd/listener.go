package smtpd

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// gateListener enforces access control and connection limits at accept time,
// before go-smtp sees the connection and before any greeting: a peer outside
// the allowed networks, or one over the limits, never reaches the SMTP state
// machine. go-smtp has no such limits itself.
type gateListener struct {
	net.Listener
	allowed  []netip.Prefix
	maxTotal int
	maxPerIP int
	log      *slog.Logger
	refusals chan struct{} // bounds goroutines that linger on refused connections

	tlsOffered bool // STARTTLS is offered: lineFixer must step aside after it

	mu    sync.Mutex
	perIP map[netip.Addr]int
	conns map[*gateConn]struct{} // open connections; len is the total
}

// refusalLinger is how long a refused connection is kept half-open so the
// client reads our reply before the socket closes (closing with unread input
// makes the kernel send RST, which may destroy the reply on the client side).
const refusalLinger = 2 * time.Second

func newGateListener(l net.Listener, allowed []netip.Prefix, maxTotal, maxPerIP int, log *slog.Logger) *gateListener {
	return &gateListener{
		Listener: l,
		allowed:  allowed,
		maxTotal: maxTotal,
		maxPerIP: maxPerIP,
		log:      log,
		refusals: make(chan struct{}, 64),
		perIP:    map[netip.Addr]int{},
		conns:    map[*gateConn]struct{}{},
	}
}

// Accept returns the next connection that may talk to the server; refused
// connections are answered and closed here and never returned.
func (g *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := peerAddr(c)
		if !g.isAllowed(ip) {
			g.log.Warn("smtp: connection refused", "peer", c.RemoteAddr().String(), "reason", "not in allowed_networks")
			g.refuse(c, "554 5.7.1 Access denied: your address is not allowed to use this gateway\r\n")
			continue
		}
		g.mu.Lock()
		switch {
		case len(g.conns) >= g.maxTotal:
			g.mu.Unlock()
			g.log.Warn("smtp: connection refused", "peer", c.RemoteAddr().String(), "reason", "max_connections reached", "limit", g.maxTotal)
			g.refuse(c, "421 4.7.0 Too many connections, try again later\r\n")
			continue
		case g.perIP[ip] >= g.maxPerIP:
			g.mu.Unlock()
			g.log.Warn("smtp: connection refused", "peer", c.RemoteAddr().String(), "reason", "max_connections_per_ip reached", "limit", g.maxPerIP)
			g.refuse(c, "421 4.7.0 Too many connections from your address, try again later\r\n")
			continue
		}
		g.perIP[ip]++
		gc := &gateConn{Conn: c, gate: g, ip: ip}
		gc.fix.tls = g.tlsOffered
		gc.fix.helo = implicitHelo(ip)
		gc.fix.qualify = true
		gc.fix.implicit = gc.implicitHelo
		g.conns[gc] = struct{}{}
		g.mu.Unlock()
		return gc, nil
	}
}

func (g *gateListener) isAllowed(ip netip.Addr) bool {
	for _, p := range g.allowed {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// refuse writes one reply line and closes c. The write cannot block for long:
// a fresh socket's send buffer is empty, and a deadline guards the rest.
func (g *gateListener) refuse(c net.Conn, reply string) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte(reply))
	g.linger(c)
}

// linger closes c after a last reply: it half-closes c, reads and discards
// what the client still sends for up to refusalLinger, then closes. A
// client that sent its commands blind would otherwise get a RST, which may
// destroy the reply (and an earlier 250) before it read them.
func (g *gateListener) linger(c net.Conn) {
	select {
	case g.refusals <- struct{}{}:
	default:
		c.Close() // under a flood: no lingering, just close
		return
	}
	go func() {
		defer func() { <-g.refusals }()
		if tc, ok := c.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(refusalLinger))
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		c.Close()
	}()
}

func (g *gateListener) release(c *gateConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.conns[c]; !ok {
		return
	}
	delete(g.conns, c)
	if g.perIP[c.ip]--; g.perIP[c.ip] <= 0 {
		delete(g.perIP, c.ip)
	}
}

// closeIdle closes every connection that is not inside a DATA transfer, so a
// shutdown does not wait for idle clients but lets messages in flight finish.
func (g *gateListener) closeIdle() {
	g.mu.Lock()
	var idle []*gateConn
	for c := range g.conns {
		if !c.inData() {
			idle = append(idle, c)
		}
	}
	g.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// closeAll closes every connection, also those inside DATA.
func (g *gateListener) closeAll() {
	g.mu.Lock()
	all := make([]*gateConn, 0, len(g.conns))
	for c := range g.conns {
		all = append(all, c)
	}
	g.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

func (g *gateListener) active() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

func peerAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// gateConn is an accepted connection: it returns its slot to the listener on
// Close, repairs the command stream on the read side (see lineFixer) and
// hides go-smtp's reply to an implicit HELO on the write side.
type gateConn struct {
	net.Conn
	gate *gateListener
	ip   netip.Addr
	fix  lineFixer

	// hide is the reply to the implicit HELO while go-smtp writes it.
	// go-smtp's connection goroutine alone reads and writes the SMTP
	// dialogue and touches fix and hide; hiding is atomic because a TLS
	// close_notify may be written from the goroutine that closes the server.
	hiding atomic.Bool
	hide   replyHider

	// readErr is the first error a Read returned, kept and returned again
	// by every later Read. go-smtp reads commands through a bufio.Reader,
	// which hands out the bytes it holds as a line when the next Read
	// fails and forgets the error: a command cut off by command_timeout
	// would be executed, and the next command would get a fresh timeout,
	// so a client sending a byte now and then could hold its slot for
	// ever. A sticky error makes go-smtp's next read fail, which answers
	// "421 4.4.2 Idle timeout" and closes. lineFixer drops a partial line
	// before the error, so in clear no partial command reaches go-smtp at
	// all; inside TLS, where the fixer cannot see lines, the session
	// refuses any command that arrives after readErr was set (cutOff).
	// Only go-smtp's connection goroutine reads, so no lock.
	readErr error

	// hangingUp: the session ends after the reply go-smtp writes next
	// (hangUp). Reads return io.EOF, writes after that reply are dropped,
	// and Close lingers so that the client can read the reply.
	hangingUp atomic.Bool
	muted     atomic.Bool

	closeOnce sync.Once
	mu        sync.Mutex
	busy      bool // inside DATA: a graceful shutdown waits for it
}

func (c *gateConn) Read(b []byte) (int, error) {
	if c.hangingUp.Load() {
		return 0, io.EOF
	}
	if c.readErr != nil {
		return 0, c.readErr
	}
	n, err := c.fix.read(c.Conn, b)
	if err != nil {
		c.readErr = err
	}
	return n, err
}

// hangUp makes the reply go-smtp writes next the last one of the session;
// go-smtp closes the connection when its next read gets io.EOF. Commands
// go-smtp still holds in its buffer are handled with their replies
// dropped; the session refuses every transaction on a connection it hangs
// up, so none of them can queue a message.
func (c *gateConn) hangUp() { c.hangingUp.Store(true) }

// Write passes go-smtp's replies on, except the one to an implicit HELO: the
// client never sent that command and must not see an answer to it, or every
// later reply would be one off for a client that sent its commands blind.
func (c *gateConn) Write(b []byte) (int, error) {
	if c.muted.Load() {
		return len(b), nil
	}
	if !c.hiding.Load() {
		n, err := c.Conn.Write(b)
		if c.hangingUp.Load() {
			c.muted.Store(true)
		}
		return n, err
	}
	n := c.hide.consume(b)
	if !c.hide.active {
		c.hiding.Store(false)
		if !bytes.HasPrefix(c.hide.first, []byte("2")) {
			c.gate.log.Warn("smtp: implicit HELO refused", "peer", c.ip.String(), "reply", string(c.hide.first))
		}
	}
	if n == len(b) {
		return n, nil
	}
	m, err := c.Conn.Write(b[n:])
	return n + m, err
}

// implicitHelo is lineFixer's report that it put a HELO in front of verb.
func (c *gateConn) implicitHelo(verb string) {
	c.hide = replyHider{active: true}
	c.hiding.Store(true)
	c.gate.log.Info("smtp: no HELO/EHLO before "+verb+", assuming the peer address as HELO name",
		"peer", c.ip.String(), "helo", strings.TrimSpace(string(c.fix.helo[5:])))
}

// replyHider swallows one SMTP reply, single- or multi-line ("250-..."
// lines up to a "250 ..." line), however go-smtp splits it into writes.
type replyHider struct {
	active bool
	col    int    // bytes seen of the current line
	more   bool   // the current line is a continuation line ("250-")
	first  []byte // start of the reply, for the log
}

// consume takes the bytes of b that belong to the reply and returns how
// many; active turns false once the reply is complete.
func (h *replyHider) consume(b []byte) int {
	for i, c := range b {
		if len(h.first) < 80 && c != '\r' && c != '\n' {
			h.first = append(h.first, c)
		}
		if c == '\n' {
			if !h.more {
				h.active = false
				return i + 1
			}
			h.col, h.more = 0, false
			continue
		}
		if h.col == 3 {
			h.more = c == '-'
		}
		h.col++
	}
	return len(b)
}

func (c *gateConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		if c.hangingUp.Load() {
			c.gate.release(c)
			c.gate.linger(c.Conn)
			err = nil
			return
		}
		err = c.Conn.Close()
		c.gate.release(c)
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (c *gateConn) setBusy(b bool) {
	c.mu.Lock()
	c.busy = b
	c.mu.Unlock()
}

func (c *gateConn) inData() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy
}
