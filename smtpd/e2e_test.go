package smtpd_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/smtpd"
	"github.com/plcmail/plcmail/spool"
)

// TestEndToEnd: the blind bare-LF Arduino dialogue on the listener, the
// durable spool, the delivery queue, and a real TLS upstream with AUTH. The
// upstream must receive a well-formed message over TLS.
func TestEndToEnd(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	})

	addr, sp := startRelay(t, testOptions(), u, log)

	out := converse(t, addr, "",
		"EHLO 192.168.1.177\nMAIL FROM:<plc@example.com>\nRCPT TO:<ops@example.com>\nDATA\nSubject: Alarm\nPump 3 failed\n.\nQUIT\n")
	if got := codeList(out); got != "220 250 250 250 354 250 221" {
		t.Fatalf("dialogue: %q\n%s", got, out)
	}
	got := u.Wait(t, 1, 15*time.Second)[0]
	if !got.TLS || got.User == "" {
		t.Errorf("delivered without TLS or AUTH: %+v", got)
	}
	if len(got.To) != 1 || got.To[0] != "ops@example.com" {
		t.Errorf("upstream envelope %v -> %v", got.From, got.To)
	}
	t.Logf("as received upstream:\n%s", got.Data)
	m, body := parse(t, got.Data)
	if m.Header.Get("Subject") != "Alarm" || body != "Pump 3 failed\r\n" {
		t.Errorf("subject %q body %q", m.Header.Get("Subject"), body)
	}
	if !strings.HasSuffix(m.Header.Get("Message-Id"), "@gw.test>") {
		t.Errorf("Message-ID %q", m.Header.Get("Message-Id"))
	}
	eventually(t, "the spool to empty", func() bool {
		list, err := sp.List()
		return err == nil && len(list) == 0
	})
}

// startRelay wires a spool, the delivery queue and the listener as `plcmail
// serve` does, on 127.0.0.1, and returns the listener's address and the spool.
// The listener has opts, with u's sender as the fallback From (as
// u.GatewayConfig has it); the queue delivers to u with opts.Hostname as EHLO
// name and the queue timings of u.GatewayConfig.
func startRelay(t *testing.T, opts smtpd.Options, u *mailertest.Upstream, log *slog.Logger) (string, *spool.Spool) {
	t.Helper()
	opts.Fallback = u.Config().From
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), log)
	if err != nil {
		t.Fatal(err)
	}
	up := u.Options()
	up.Hostname = opts.Hostname
	// GatewayConfig's queue timings; the rest are config.Default()'s.
	q, err := spool.NewQueue(sp, spool.QueueOptions{
		Upstream:    up,
		Connections: 4,
		BatchSize:   100,
		ScanEvery:   100 * time.Millisecond,
		Lifetime:    5 * 24 * time.Hour,
		MinBackoff:  50 * time.Millisecond,
		MaxBackoff:  500 * time.Millisecond,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtpd.New(opts, sp, q.Wake, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	qdone := make(chan error, 1)
	go func() { qdone <- q.Run(ctx) }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sdone := make(chan error, 1)
	go func() { sdone <- srv.Serve(l) }()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		<-sdone
		<-qdone
	})
	return l.Addr().String(), sp
}
