package smtpd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/spool"
)

func testServer(t *testing.T, listen ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	var quoted []string
	for _, l := range listen {
		quoted = append(quoted, fmt.Sprintf("%q", l))
	}
	cfg, err := config.Parse("t.toml", []byte(fmt.Sprintf(`
[gateway]
hostname = "gw.test"
spool_dir = %q
[upstream]
host = "127.0.0.1"
security = "none"
auth = "none"
from = "gw@example.com"
[smtp]
listen = [%s]
`, filepath.Join(dir, "spool"), strings.Join(quoted, ", "))))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(cfg.Gateway.SpoolDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, sp, nil, nil)
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
