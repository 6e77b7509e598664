package deploy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/smtp"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/throwawayca"
	"github.com/plcmail/plcmail/smtpd"
	"github.com/plcmail/plcmail/spool"
)

// The benchmarks in this file are the router's hot paths, put together from
// the real packages, so that the compiler and linker flags of the router
// build (Makefile: ROUTER_GCFLAGS) can be weighed in CPU and not only in
// bytes: bench/RESULTS.md's Size section builds this test binary for
// mipsle softfloat with and without the flags and runs it under
// qemu-mipsel. Client, gateway and upstream share the process, so each side
// of every handshake is built with the flags under test.

// BenchmarkRouterTLSHandshake is one TLS 1.3 handshake over loopback with an
// ECDSA P-256 certificate from a test CA, verified by the client, and one
// byte each way: crypto/tls, x509 and the curves, nothing of plcmail.
func BenchmarkRouterTLSHandshake(b *testing.B) {
	ca, err := throwawayca.New("router bench CA")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Issue("gw.test")
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	srvConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, srvConf)
				var one [1]byte
				if _, err := io.ReadFull(tc, one[:]); err == nil {
					tc.Write(one[:])
				}
			}()
		}
	}()
	cliConf := &tls.Config{RootCAs: ca.Pool(), ServerName: "gw.test", MinVersion: tls.VersionTLS13}
	cpu := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		c, err := tls.Dial("tcp", l.Addr().String(), cliConf)
		if err != nil {
			b.Fatal(err)
		}
		var one [1]byte
		if _, err := c.Write([]byte{'x'}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one[:]); err != nil {
			b.Fatal(err)
		}
		if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
			b.Fatalf("TLS version %x, want 1.3", v)
		}
		c.Close()
	}
	b.StopTimer()
	reportCPU(b, cpu)
}

// BenchmarkRouterRelay is one message through the gateway, end to end and
// one at a time: a LAN client connects to the SMTP listener, says EHLO,
// STARTTLS (TLS 1.3, the gateway's ECDSA certificate), sends a 1 KiB
// message, which the gateway fsyncs into its spool before its 250; the
// delivery queue (4 connections) then relays it over STARTTLS with AUTH to
// a local upstream, verifying the upstream's certificate against a test CA.
// An op ends when the upstream has accepted the message. upstream-conns/op
// says how many of the upstream TLS handshakes the op paid for (the queue
// reuses an open connection when it has one).
func BenchmarkRouterRelay(b *testing.B) {
	ca, err := throwawayca.New("router bench CA")
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Issue("gw.test")
	if err != nil {
		b.Fatal(err)
	}
	got := make(chan struct{}, 1)
	u := mailertest.NewUpstream(b, mailertest.Options{RequireAuth: true,
		Data: func(mailertest.Received) error { got <- struct{}{}; return nil }})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp, err := spool.Open(filepath.Join(b.TempDir(), "spool"), log)
	if err != nil {
		b.Fatal(err)
	}
	up := u.Options()
	q, err := spool.NewQueue(sp, spool.QueueOptions{
		Upstream:    up,
		Connections: 4,
		BatchSize:   100,
		ScanEvery:   time.Second,
		Lifetime:    5 * 24 * time.Hour,
		MinBackoff:  50 * time.Millisecond,
		MaxBackoff:  500 * time.Millisecond,
	}, log)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := smtpd.New(smtpd.Options{
		Listen:              []string{"127.0.0.1:0"},
		AllowedNetworks:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MaxMessageBytes:     1 << 20,
		MaxRecipients:       50,
		MaxConnections:      100,
		MaxConnectionsPerIP: 10,
		CommandTimeout:      60 * time.Second,
		DataTimeout:         5 * time.Minute,
		MaxLineLength:       2000,
		AuthMaxFailures:     5,
		AuthFailureWindow:   10 * time.Minute,
		AuthLockout:         15 * time.Minute,
		Hostname:            "gw.test",
		Fallback:            u.Config().From,
		Certificate:         &cert,
	}, sp, q.Wake, log)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	qdone := make(chan error, 1)
	go func() { qdone <- q.Run(ctx) }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sdone := make(chan error, 1)
	go func() { sdone <- srv.Serve(l) }()
	defer func() {
		cancel()
		srv.Close()
		<-sdone
		<-qdone
	}()

	body := "Subject: Alarm 17\r\nFrom: plc@example.com\r\nTo: ops@example.com\r\n\r\n" +
		strings.Repeat(strings.Repeat("0123456789", 7)+"\r\n", 1024/72)
	cliConf := &tls.Config{RootCAs: ca.Pool(), ServerName: "gw.test", MinVersion: tls.VersionTLS13}
	send := func() error {
		c, err := smtp.Dial(l.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Hello("plc.lan"); err != nil {
			return err
		}
		if err := c.StartTLS(cliConf); err != nil {
			return err
		}
		if st, ok := c.TLSConnectionState(); !ok || st.Version != tls.VersionTLS13 {
			b.Fatalf("client TLS %v %x, want 1.3", ok, st.Version)
		}
		if err := c.Mail("plc@example.com"); err != nil {
			return err
		}
		if err := c.Rcpt("ops@example.com"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		io.WriteString(w, body)
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	wait := func() {
		select {
		case <-got:
		case <-time.After(60 * time.Second):
			b.Fatal("upstream did not receive the message within 60 s")
		}
	}
	// One message before the clock starts: the first upstream connection
	// and the spool's first files are set-up, not the steady state.
	if err := send(); err != nil {
		b.Fatal(err)
	}
	wait()
	conns := u.Connections()
	b.SetBytes(int64(len(body)))
	cpu := cpuTime(b)
	b.ResetTimer()
	for range b.N {
		if err := send(); err != nil {
			b.Fatal(err)
		}
		wait()
	}
	b.StopTimer()
	reportCPU(b, cpu)
	b.ReportMetric(float64(u.Connections()-conns)/float64(b.N), "upstream-conns/op")
}

// cpuTime is the CPU time (user and system) the process has used so far.
// Under qemu-user it is the emulator's, which is what the flags change;
// unlike ns/op it leaves out the time spent waiting for fsync and for
// the goroutines of the other side.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time used since start per op, as cpu-ms/op.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
