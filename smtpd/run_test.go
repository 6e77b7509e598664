package smtpd

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/spool"
)

// testServer is a Server on listen with the options of a minimal [smtp]
// section and a spool in a temporary directory.
func testServer(t *testing.T, listen ...string) *Server {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{
		Listen:              listen,
		AllowedNetworks:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxMessageBytes:     1 << 20,
		MaxRecipients:       50,
		MaxConnections:      100,
		MaxConnectionsPerIP: 10,
		CommandTimeout:      60 * time.Second,
		DataTimeout:         5 * time.Minute,
		MaxLineLength:       2000,
		Hostname:            "gw.test",
		Fallback:            "gw@example.com",
	}, sp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRunWaitsForInterface: the interface of the listen address comes up
// after the gateway started. Binding to an address no interface has cannot
// be provoked on loopback alone, so the listen function fails with the
// kernel's EADDRNOTAVAIL twice before the real net.Listen runs.
func TestRunWaitsForInterface(t *testing.T) {
	s := testServer(t, "127.0.0.1:0")
	s.retry = 50 * time.Millisecond
	fails := 2
	bound := make(chan net.Addr, 1)
	s.listen = func(network, addr string) (net.Listener, error) {
		if fails > 0 {
			fails--
			return nil, &net.OpError{Op: "listen", Net: network, Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)}
		}
		l, err := net.Listen(network, addr)
		if err == nil {
			bound <- l.Addr()
		}
		return l, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var addr net.Addr
	select {
	case addr = <-bound:
	case <-time.After(5 * time.Second):
		t.Fatal("never bound")
	}
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err != nil || string(buf) != "220" {
		t.Fatalf("greeting %q %v", buf, err)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRunPortInUse: a port taken by another MTA is a clear error at once.
func TestRunPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := testServer(t, l.Addr().String())
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not fail")
	}
}
