package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/smtp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/protocol"
)

// TestServeSerialUnderSMTPFlood checks that the SMTP listener cannot starve
// the serial path: while 500 sessions from 50 loopback addresses are open
// and idle on the listener and 8 LAN clients send 4 KiB mails as fast as
// they can (each one fsynced before its 250), a PLC raises 30 alarms,
// stop-and-wait as the firmware does. Every alarm must be ACKed and mailed
// exactly once, and the LAN mail that was accepted must arrive too. The ACK
// latencies under load are logged, not asserted (performance lives in
// benchmarks); the 10 s per ACK bound in expect only catches starvation.
func TestServeSerialUnderSMTPFlood(t *testing.T) {
	gwPath, plcPath := newPTYPair(t)
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	listen := freeAddr(t)
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	// Limits high enough that all 500 sessions are really open at once.
	c.Extra = gatewayExtra(gwPath, listen) + "max_connections = 1000\nmax_connections_per_ip = 20\n"
	srv := startServe(t, c.write(t))
	plc := openPLC(t, plcPath, srv.logs)
	plc.hello()

	_, port, _ := net.SplitHostPort(listen)
	var greeted, refused atomic.Int64
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	for i := 0; i < 500; i++ {
		conns.Add(1)
		go func(i int) {
			defer conns.Done()
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%50))}}
			conn, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
			if err != nil {
				refused.Add(1)
				return
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			if strings.HasPrefix(line, "220") {
				greeted.Add(1)
				mu.Lock()
				open = append(open, conn) // held open, idle, until the end
				mu.Unlock()
				return
			}
			refused.Add(1)
			conn.Close()
		}(i)
	}
	conns.Wait()
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	t.Logf("500 connections: %d greeted and held idle, %d refused", greeted.Load(), refused.Load())
	if greeted.Load() != 500 {
		t.Errorf("%d of 500 sessions greeted; the limits in this test allow all", greeted.Load())
	}

	// Busy LAN senders, from addresses the idle connections do not use.
	stop := make(chan struct{})
	var lanSent atomic.Int64
	var senders sync.WaitGroup
	for i := 0; i < 8; i++ {
		senders.Add(1)
		go func(i int) {
			defer senders.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf("Subject: lan %d-%d\r\n\r\n%s", i, n, strings.Repeat(strings.Repeat("x", 62)+"\r\n", 64))
				if err := sendFrom(net.IPv4(127, 0, 2, byte(1+i)), listen, msg); err == nil {
					lanSent.Add(1)
				} else {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}(i)
	}

	const events = 30
	var lat []time.Duration
	for seq := uint32(2); seq < 2+events; seq++ {
		ev := &protocol.Frame{Type: protocol.TypeEvent, Seq: seq, Uptime: seq, Code: 17, Event: protocol.EventRaise, Severity: protocol.SeverityAlarm}
		start := time.Now()
		plc.send(ev)
		if ack := plc.expect(protocol.TypeAck, seq); ack.AckResult != protocol.AckQueued {
			t.Fatalf("seq %d: ack result %v", seq, ack.AckResult)
		}
		lat = append(lat, time.Since(start))
	}
	close(stop)
	senders.Wait()

	msgs := u.Wait(t, events+int(lanSent.Load()), 60*time.Second)
	seen := map[string]int{}
	lan := 0
	for _, m := range msgs {
		s := string(m.Data)
		if i := strings.Index(s, "(raise) #"); i >= 0 {
			seen[strings.Fields(s[i+len("(raise) #"):])[0]]++
		} else if strings.Contains(s, "Subject: lan ") {
			lan++
		}
	}
	for seq := 2; seq < 2+events; seq++ {
		if n := seen[fmt.Sprint(seq)]; n != 1 {
			t.Errorf("alarm seq %d mailed %d times", seq, n)
		}
	}
	if int64(lan) != lanSent.Load() {
		t.Errorf("LAN mails: %d accepted by the listener, %d arrived upstream", lanSent.Load(), lan)
	}
	slices.Sort(lat)
	t.Logf("event->ACK under SMTP load: p50 %v, max %v; %d LAN mails accepted meanwhile", lat[len(lat)/2], lat[len(lat)-1], lanSent.Load())
	if logs, err := srv.stop(); err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}

// sendFrom sends one message to the listener from a given loopback address.
func sendFrom(ip net.IP, addr, msg string) error {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	host, _, _ := net.SplitHostPort(addr)
	cl, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer cl.Close()
	if err := cl.Mail("board@lan.test"); err != nil {
		return err
	}
	if err := cl.Rcpt("ops@example.com"); err != nil {
		return err
	}
	w, err := cl.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return cl.Quit()
}

// TestModbusDigestAfterKill9: a Modbus alarm held by [flood] when serve is
// killed with SIGKILL is mailed in a digest by the next serve, once: the
// held event is in the device's state file, and the digest's spool key is
// counted there too.
func TestModbusDigestAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("child-process crash test; skipped with -short")
	}
	bin := plcmailBinary(t)
	port, do := startModbusSlave(t)
	u := mailertest.NewUpstream(t, mailertest.Options{})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	config := func(digestDelay string) {
		c.Extra = fmt.Sprintf(`
[flood]
holdoff = "1h"
digest_delay = %q

[[alarm]]
default = true
to = ["ops@example.com"]

[[modbus]]
name = "tank"
mode = "tcp"
address = "127.0.0.1:%d"
poll_interval = "50ms"

[[modbus.tag]]
name = "level"
table = "holding"
address = 0
scale = 0.1
unit = "%%"

[[modbus.tag.alarm]]
limit = "H"
setpoint = 90
`, digestDelay, port)
	}
	config("1h")
	path := c.write(t)
	d := newDaemon(t, bin, path)
	d.start()
	subjects := func(n int) []string {
		t.Helper()
		var s []string
		for _, m := range u.Wait(t, n, 30*time.Second) {
			_, rest, _ := strings.Cut(string(m.Data), "Subject: ")
			subj, _, _ := strings.Cut(rest, "\r\n")
			s = append(s, subj)
		}
		return s
	}
	do("hr 0 950")
	subjects(1) // the raise
	do("hr 0 100")
	subjects(2) // the clear
	do("hr 0 960")
	if !d.waitLog("alarm raise held for a digest", 30*time.Second) {
		t.Fatalf("the second raise was not held:\n%s", d.logs())
	}
	d.kill()

	config("100ms")
	c.write(t)
	d.start()
	got := subjects(3)
	if !strings.Contains(got[2], "1 alarm events on tank") {
		t.Fatalf("third mail %q, want the digest of the held raise", got[2])
	}
	// Killed again after the digest: the next serve mails it no more. (The
	// kill waits until the queue has removed the digest: a mail the
	// upstream took just before a kill is sent again, which is the queue's
	// window, tested in TestKill9RedeliveryWindow, not flood control's.)
	if !poll(30*time.Second, func() bool {
		st, err := readStatus(context.Background(), c.Spool)
		return err == nil && st.Queue.Delivered == 1 && st.Queue.Queued == 0 && st.Spooled == 0 // counted since this start
	}) {
		t.Fatal("the digest stays in the spool")
	}
	d.kill()
	d.start()
	// The hold-off memory is not durable (as for serial links): after the
	// restart the clear and the raise go out on their own, the next clear
	// is held, and its digest comes after any repeat of the first would.
	do("hr 0 100")
	subjects(4)
	do("hr 0 970")
	subjects(5)
	do("hr 0 100")
	got = subjects(6)
	digests := 0
	for _, s := range got {
		if strings.Contains(s, "alarm events on tank") {
			digests++
		}
	}
	if digests != 2 || len(u.Messages()) != 6 || !strings.Contains(got[5], "1 alarm events on tank") {
		t.Errorf("mails %q: want raise, clear, digest, clear, raise, digest", got)
	}
	body := string(u.Messages()[5].Data)
	if !strings.Contains(body, "high: clear [warning]") || strings.Contains(body, "raise [") {
		t.Errorf("second digest holds more than the held clear:\n%s", body)
	}
}
