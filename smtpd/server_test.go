package smtpd_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/smtpd"
	"github.com/plcmail/plcmail/spool"
)

// TestEmbeddedDialogues replays what 8-bit boards send: every command in one
// write without waiting for replies, an address as EHLO argument, no blank
// line after the header, no Date/Message-ID/From/To, bare LF endings.
func TestEmbeddedDialogues(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		codes   string
		subject string
		body    string
		from    string // header From
		to      string // header To
	}{
		{
			name: "classic Arduino sketch",
			script: "EHLO 192.168.1.177\r\n" +
				"MAIL FROM:<plc@example.com>\r\n" +
				"RCPT TO:<ops@example.com>\r\n" +
				"DATA\r\n" +
				"Subject: Alarm\r\n" +
				"Pump 3 failed\r\n" +
				".\r\n" +
				"QUIT\r\n",
			codes:   "220 250 250 250 354 250 221",
			subject: "Alarm", body: "Pump 3 failed\r\n",
			from: "<plc@example.com>", to: "undisclosed-recipients:;",
		},
		{
			name: "same with bare LF",
			script: "EHLO 192.168.1.177\n" +
				"MAIL FROM:<plc@example.com>\n" +
				"RCPT TO:<ops@example.com>\n" +
				"DATA\n" +
				"Subject: Alarm\n" +
				"Pump 3 failed\n" +
				".\n" +
				"QUIT\n",
			codes:   "220 250 250 250 354 250 221",
			subject: "Alarm", body: "Pump 3 failed\r\n",
			from: "<plc@example.com>", to: "undisclosed-recipients:;",
		},
		{
			name: "playground sketch: helo, blanks after colons, own headers",
			script: "helo 192.168.1.177\r\n" +
				"MAIL From: <plc@example.com>\r\n" +
				"RCPT To: <ops@example.com>\r\n" +
				"DATA\r\n" +
				"To: You <ops@example.com>\r\n" +
				"From: Me <plc@example.com>\r\n" +
				"Subject: Arduino email test\r\n" +
				"\r\n" +
				"This is from my Arduino!\r\n" +
				".\r\n" +
				"QUIT\r\n",
			codes:   "220 250 250 250 354 250 221",
			subject: "Arduino email test", body: "This is from my Arduino!\r\n",
			from: "Me <plc@example.com>", to: "You <ops@example.com>",
		},
		{
			name: "bare address as EHLO, 8-bit text, mixed endings",
			script: "EHLO [192.168.1.177]\r\n" +
				"MAIL FROM:<plc@example.com>\r\n" +
				"RCPT TO:<ops@example.com>\n" +
				"DATA\r\n" +
				"Subject: St\xc3\xb6rung Pumpe 3\n" +
				"Druck 7 bar \xe2\x80\x93 bitte pr\xc3\xbcfen\n" +
				"..punkt\r\n" +
				".\r\n" +
				"QUIT\r\n",
			codes:   "220 250 250 250 354 250 221",
			subject: "Störung Pumpe 3", body: "Druck 7 bar \xe2\x80\x93 bitte pr\xc3\xbcfen\r\n.punkt\r\n",
			from: "<plc@example.com>", to: "undisclosed-recipients:;",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, nil)
			out := converse(t, g.addr, "", tt.script)
			if got := codeList(out); got != tt.codes {
				t.Fatalf("reply codes %q, want %q\n%s", got, tt.codes, out)
			}
			if !strings.Contains(out, "250 2.0.0 OK: queued as ") {
				t.Errorf("no queue id in reply:\n%s", out)
			}
			q := g.queued()
			if len(q) != 1 {
				t.Fatalf("%d messages queued, want 1", len(q))
			}
			if q[0].Envelope.From != "plc@example.com" || len(q[0].Envelope.To) != 1 || q[0].Envelope.To[0] != "ops@example.com" {
				t.Errorf("envelope %+v", q[0].Envelope)
			}
			if q[0].Source != "smtp:127.0.0.1" {
				t.Errorf("source %q", q[0].Source)
			}
			t.Logf("stored message:\n%s", q[0].Data)
			m, body := parse(t, q[0].Data)
			subj, _ := new(mimeDecoder).DecodeHeader(m.Header.Get("Subject"))
			if subj != tt.subject {
				t.Errorf("Subject %q, want %q", subj, tt.subject)
			}
			if body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if got := m.Header.Get("From"); got != tt.from {
				t.Errorf("From %q, want %q", got, tt.from)
			}
			if got := m.Header.Get("To"); got != tt.to {
				t.Errorf("To %q, want %q", got, tt.to)
			}
			if !strings.HasSuffix(m.Header.Get("Message-Id"), "@gw.test>") && !strings.Contains(tt.script, "Message-ID") {
				t.Errorf("Message-ID %q", m.Header.Get("Message-Id"))
			}
			if g.wakes.Load() != 1 {
				t.Errorf("wake called %d times", g.wakes.Load())
			}
			if !strings.Contains(g.logs.String(), "smtp: queued") {
				t.Errorf("no log line for the accepted message:\n%s", g.logs)
			}
		})
	}
}

// TestNotAllowedNetwork: a client outside allowed_networks gets 554 before
// any SMTP happens, even when it sends a whole relay attempt blind.
func TestNotAllowedNetwork(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) { o.AllowedNetworks = prefixes("127.0.0.1/32") })
	out := converse(t, g.addr, "127.0.0.2",
		"EHLO spammer\r\nMAIL FROM:<a@evil.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: spam\r\n\r\nx\r\n.\r\nQUIT\r\n")
	if got := codes(out); len(got) != 1 || got[0] != "554 5.7.1" {
		t.Fatalf("replies %q, want only 554 5.7.1", out)
	}
	if q := g.queued(); len(q) != 0 {
		t.Fatalf("%d messages queued from a stranger", len(q))
	}
	if !strings.Contains(g.logs.String(), "not in allowed_networks") || !strings.Contains(g.logs.String(), "127.0.0.2") {
		t.Errorf("refusal not logged with the peer:\n%s", g.logs)
	}
	// The same dialogue from the allowed address is relayed.
	out = converse(t, g.addr, "127.0.0.1",
		"EHLO lan\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: ok\r\n\r\nx\r\n.\r\nQUIT\r\n")
	if got := codeList(out); got != "220 250 250 250 354 250 221" {
		t.Fatalf("allowed client: %q", out)
	}
}

func TestSizeLimit(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) { o.MaxMessageBytes = 2048 })
	s := open(t, g.addr, "")
	s.cmd("EHLO board", "250")
	// Declared size over the limit: refused at MAIL.
	s.cmd("MAIL FROM:<plc@example.com> SIZE=5000", "552 5.3.4")
	// Undeclared: refused after the data, which is read and discarded.
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd("RCPT TO:<ops@example.com>", "250")
	s.cmd("DATA", "354")
	s.send("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 60) + ".\r\n")
	s.expect("552 5.3.4")
	if q := g.queued(); len(q) != 0 {
		t.Fatalf("%d messages queued after 552", len(q))
	}
	// The session goes on: a message within the limit is queued.
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd("RCPT TO:<ops@example.com>", "250")
	s.cmd("DATA", "354")
	s.send("Subject: small\r\n\r\nok\r\n.\r\n")
	s.expect("250 2.0.0")
	s.cmd("QUIT", "221")
	if q := g.queued(); len(q) != 1 {
		t.Fatalf("%d messages queued, want 1", len(q))
	}
	if !strings.Contains(g.logs.String(), "code=552") {
		t.Errorf("rejection not logged:\n%s", g.logs)
	}
}

// TestSpoolFailure breaks the spool for real (queue/ becomes a file, so the
// final rename fails even for root): the client must get a 4xx and keep its
// message, and the retry succeeds once the spool is repaired.
func TestSpoolFailure(t *testing.T) {
	g := startGateway(t, nil)
	queueDir := filepath.Join(g.spool.Dir(), "queue")
	if err := os.Remove(queueDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(queueDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, g.addr, "")
	s.cmd("EHLO board", "250")
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd("RCPT TO:<ops@example.com>", "250")
	s.cmd("DATA", "354")
	s.send("Subject: Alarm\r\nPump 3 failed\r\n.\r\n")
	s.expect("451 4.3.0")
	if g.wakes.Load() != 0 {
		t.Errorf("wake called for a message that was not queued")
	}
	os.Remove(queueDir)
	if err := os.Mkdir(queueDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd("RCPT TO:<ops@example.com>", "250")
	s.cmd("DATA", "354")
	s.send("Subject: Alarm\r\nPump 3 failed\r\n.\r\n")
	s.expect("250 2.0.0")
	if q := g.queued(); len(q) != 1 {
		t.Fatalf("%d queued after retry", len(q))
	}
}

func TestRecipientAllowList(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) {
		o.AllowedRecipients = []string{"example.com", "@plant.example", "boss@other.org"}
	})
	s := open(t, g.addr, "")
	s.cmd("EHLO board", "250")
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	for rcpt, want := range map[string]string{
		"ops@example.com":       "250",
		"OPS@Example.COM":       "250",
		"shift@plant.example":   "250",
		"boss@other.org":        "250",
		"other@other.org":       "550 5.7.1",
		"ops@sub.example.com":   "550 5.7.1",
		"victim@gmail.example":  "550 5.7.1",
		"ops@example.com.evil":  "550 5.7.1",
		`"ops"@evil.example`:    "550 5.7.1",
		"postmaster":            "553 5.1.3", // no local mailboxes, see errUnqualifiedRcpt
		"ops%evil@example.com2": "550 5.7.1",
	} {
		s.cmd("RCPT TO:<"+rcpt+">", want)
	}
	s.cmd("DATA", "354")
	s.send("Subject: x\r\n\r\ny\r\n.\r\n")
	s.expect("250")
	q := g.queued()
	if len(q) != 1 || len(q[0].Envelope.To) != 4 {
		t.Fatalf("queued %+v", q)
	}
	if !strings.Contains(g.logs.String(), "victim@gmail.example") {
		t.Errorf("relay denial not logged:\n%s", g.logs)
	}
}

func TestLimitsAndDisabledCommands(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) { o.MaxRecipients = 2 })
	s := open(t, g.addr, "")
	s.cmd("EHLO board", "250")
	s.cmd("VRFY root", "252")
	s.cmd("EXPN staff", "502")
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd("RCPT TO:<a@example.com>", "250")
	s.cmd("RCPT TO:<b@example.com>", "250")
	s.cmd("RCPT TO:<c@example.com>", "452 4.5.3")
	s.cmd("RSET", "250")
	s.cmd(`MAIL FROM:<"a b"@example.com>`, "553 5.1.3")
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd(`RCPT TO:<"a b"@example.com>`, "553 5.1.3")
	s.cmd("QUIT", "221")
	if !strings.Contains(g.logs.String(), "code=452") {
		t.Errorf("recipient limit not logged:\n%s", g.logs)
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("idle client is dropped", func(t *testing.T) {
		g := startGateway(t, func(o *smtpd.Options) { o.CommandTimeout = time.Second })
		s := open(t, g.addr, "")
		s.cmd("EHLO board", "250")
		start := time.Now()
		s.expect("421 4.4.2")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("dropped after %v", d)
		}
		eventually(t, "the session to end", func() bool { return g.srv.ActiveSessions() == 0 })
	})
	t.Run("stalled DATA", func(t *testing.T) {
		g := startGateway(t, func(o *smtpd.Options) {
			o.CommandTimeout = 10 * time.Second
			o.DataTimeout = time.Second
		})
		s := open(t, g.addr, "")
		s.cmd("EHLO board", "250")
		s.cmd("MAIL FROM:<plc@example.com>", "250")
		s.cmd("RCPT TO:<ops@example.com>", "250")
		s.cmd("DATA", "354")
		s.send("Subject: half a message\r\n")
		s.expect("451 4.4.2")
		if q := g.queued(); len(q) != 0 {
			t.Fatalf("partial message queued")
		}
	})
	t.Run("slow but steady DATA within data_timeout", func(t *testing.T) {
		g := startGateway(t, func(o *smtpd.Options) {
			o.CommandTimeout = time.Second
			o.DataTimeout = 10 * time.Second
		})
		s := open(t, g.addr, "")
		s.cmd("EHLO board", "250")
		s.cmd("MAIL FROM:<plc@example.com>", "250")
		s.cmd("RCPT TO:<ops@example.com>", "250")
		s.cmd("DATA", "354")
		for i := 0; i < 3; i++ { // 1.8 s in total: longer than command_timeout
			s.send(fmt.Sprintf("line %d\r\n", i))
			time.Sleep(600 * time.Millisecond)
		}
		s.send(".\r\n")
		s.expect("250")
	})
}

func TestLineTooLong(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) { o.MaxLineLength = 1000 })
	s := open(t, g.addr, "")
	s.cmd("EHLO board", "250")
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd("RCPT TO:<ops@example.com>", "250")
	s.cmd("DATA", "354")
	s.send("Subject: x\r\n\r\n" + strings.Repeat("y", 1500) + "\r\n.\r\n")
	s.expect("552 5.3.4")
	if q := g.queued(); len(q) != 0 {
		t.Fatalf("message with over-long line queued")
	}
}

func TestAuth(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) {
		o.RequireAuth = true
		o.Accounts = map[string]string{"press1": "b0ard-Pa55"}
	})
	b64 := func(s string) string { return base64Std(s) }

	s := open(t, g.addr, "")
	ehlo := s.cmd("EHLO board", "250")
	_ = ehlo
	s.cmd("MAIL FROM:<plc@example.com>", "530 5.7.0")
	s.cmd("AUTH PLAIN "+b64("\x00press1\x00wrong"), "535 5.7.8")
	s.cmd("AUTH LOGIN", "334 "+b64("Username:"))
	s.cmd(b64("press1"), "334 "+b64("Password:"))
	s.cmd(b64("b0ard-Pa55"), "235")
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd("RCPT TO:<ops@example.com>", "250")
	s.cmd("DATA", "354")
	s.send("Subject: authed\r\n\r\nx\r\n.\r\n")
	s.expect("250")
	s.cmd("QUIT", "221")

	// PLAIN with initial response and LOGIN with the username as initial
	// response, sent blind like a board does.
	out := converse(t, g.addr, "", "EHLO board\r\nAUTH PLAIN "+b64("\x00press1\x00b0ard-Pa55")+"\r\n"+
		"MAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: blind\r\n.\r\nQUIT\r\n")
	if got := codeList(out); got != "220 250 235 250 250 354 250 221" {
		t.Errorf("PLAIN blind: %q\n%s", got, out)
	}
	out = converse(t, g.addr, "", "EHLO board\r\nAUTH LOGIN "+b64("press1")+"\r\n"+b64("b0ard-Pa55")+"\r\n"+
		"MAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: blind\r\n.\r\nQUIT\r\n")
	if got := codeList(out); got != "220 250 334 235 250 250 354 250 221" {
		t.Errorf("LOGIN blind: %q\n%s", got, out)
	}
	q := g.queuedN(t, 3)
	m, _ := parse(t, q[0].Data)
	if r := m.Header.Get("Received"); !strings.Contains(r, "with ESMTPA") {
		t.Errorf("Received %q does not record the authentication", r)
	}
	if !strings.Contains(g.logs.String(), "wrong username or password") {
		t.Errorf("failed AUTH not logged:\n%s", g.logs)
	}
}

// TestStartTLS uses the standard library's SMTP client over STARTTLS with a
// certificate from a test CA.
func TestStartTLS(t *testing.T) {
	g, ca := startTLSGateway(t)
	c, err := smtp.Dial(g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: pool}); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("plc@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("ops@example.com"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: tls\r\n\r\nover TLS\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	q := g.queuedN(t, 1)
	m, body := parse(t, q[0].Data)
	if !strings.Contains(m.Header.Get("Received"), "with ESMTPS") || body != "over TLS\r\n" {
		t.Errorf("Received %q body %q", m.Header.Get("Received"), body)
	}
}

// TestConnectionFlood opens 500 idle connections. Per-address and total
// limits answer the excess with 421 at once; the limits protect a
// legitimate client; idle sessions time out and free their slots.
func TestConnectionFlood(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) {
		o.AllowedNetworks = prefixes("127.0.0.0/8")
		o.MaxConnections = 100
		o.MaxConnectionsPerIP = 10
		o.CommandTimeout = 3 * time.Second
	})

	flood := func(addrs int) (greeted, refused int, conns []net.Conn) {
		type result struct {
			c     net.Conn
			reply string
		}
		res := make(chan result, 500)
		for i := 0; i < 500; i++ {
			local := fmt.Sprintf("127.0.1.%d", 1+i%addrs)
			go func() {
				d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
				c, err := d.Dial("tcp", g.addr)
				if err != nil {
					res <- result{nil, err.Error()}
					return
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 128)
				n, _ := io.ReadAtLeast(c, buf, 4)
				res <- result{c, string(buf[:n])}
			}()
		}
		for i := 0; i < 500; i++ {
			r := <-res
			if r.c != nil {
				conns = append(conns, r.c)
			}
			switch {
			case strings.HasPrefix(r.reply, "220 "):
				greeted++
			case strings.HasPrefix(r.reply, "421 4.7.0"):
				refused++
			default:
				t.Errorf("unexpected reply %q", r.reply)
			}
		}
		return
	}

	// One misbehaving device: 10 sessions, 490 refusals, and a legitimate
	// board on another address still gets its alarm through.
	start := time.Now()
	greeted, refused, conns := flood(1)
	t.Logf("500 connections from one address: %d greeted, %d refused in %v", greeted, refused, time.Since(start))
	if greeted != 10 || refused != 490 {
		t.Errorf("greeted %d refused %d, want 10 and 490", greeted, refused)
	}
	start = time.Now()
	out := converse(t, g.addr, "127.0.0.1", "EHLO board\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: Alarm\r\nduring flood\r\n.\r\nQUIT\r\n")
	if got := codeList(out); got != "220 250 250 250 354 250 221" {
		t.Fatalf("legitimate client during flood: %q", out)
	}
	t.Logf("legitimate message during the flood took %v", time.Since(start))
	for _, c := range conns {
		c.Close()
	}
	eventually(t, "sessions to be released", func() bool { return g.srv.ActiveSessions() == 0 })

	// Many devices: the total limit holds.
	greeted, refused, conns = flood(50)
	t.Logf("500 connections from 50 addresses: %d greeted, %d refused", greeted, refused)
	if greeted != 100 || refused != 400 {
		t.Errorf("greeted %d refused %d, want 100 and 400", greeted, refused)
	}
	if n := g.srv.ActiveSessions(); n != 100 {
		t.Errorf("%d active sessions, want 100", n)
	}
	// Nobody says anything: command_timeout frees every slot.
	eventually(t, "idle sessions to time out", func() bool { return g.srv.ActiveSessions() == 0 })
	for _, c := range conns {
		c.Close()
	}
	out = converse(t, g.addr, "127.0.0.1", "EHLO board\r\nQUIT\r\n")
	if got := codeList(out); got != "220 250 221" {
		t.Fatalf("after the flood: %q", out)
	}
}

// TestRunAndShutdown runs the configured listeners (two loopback addresses)
// and checks that cancelling the context closes idle sessions promptly but
// lets a message being received reach the spool.
func TestRunAndShutdown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := testOptions()
	opts.Listen = []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.2:%d", port)}
	opts.AllowedNetworks = prefixes("127.0.0.0/8")
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtpd.New(opts, sp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var idle, busy *session
	eventually(t, "listeners", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.2:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	idle = open(t, fmt.Sprintf("127.0.0.1:%d", port), "")
	idle.cmd("EHLO idle", "250")
	busy = open(t, fmt.Sprintf("127.0.0.2:%d", port), "127.0.0.2")
	busy.cmd("EHLO busy", "250")
	busy.cmd("MAIL FROM:<plc@example.com>", "250")
	busy.cmd("RCPT TO:<ops@example.com>", "250")
	busy.cmd("DATA", "354")
	busy.send("Subject: in flight\r\n")
	eventually(t, "both sessions", func() bool { return srv.ActiveSessions() == 2 })
	eventually(t, "one session in DATA", func() bool { return srv.SessionsInData() == 1 })

	start := time.Now()
	cancel()
	// The idle session is closed at once...
	idle.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.r.ReadString('\n'); err == nil {
		t.Errorf("idle session still open")
	}
	// ...the message in flight completes and is queued.
	busy.send("text\r\n.\r\n")
	busy.expect("250")
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("shutdown took %v", time.Since(start))
	if time.Since(start) > 5*time.Second {
		t.Errorf("shutdown took %v", time.Since(start))
	}
	if list, _ := sp.List(); len(list) != 1 {
		t.Errorf("%d queued, want the message in flight", len(list))
	}
	if _, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		t.Errorf("still listening after Run returned")
	}
}

func TestCloseBeforeServe(t *testing.T) {
	g := startGateway(t, nil)
	g.srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.srv.Serve(l) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve after Close did not return")
	}
}

// TestHangUpWithoutReading: some sketches write the whole dialogue and close
// the socket without reading a single reply (which makes the kernel send a
// reset, since the greeting is unread). What arrived before the close is still
// a complete transaction and must be queued.
func TestHangUpWithoutReading(t *testing.T) {
	g := startGateway(t, nil)
	for i := 0; i < 5; i++ {
		c := dial(t, g.addr, "")
		io.WriteString(c, "EHLO 192.168.1.177\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: Alarm\r\nPump 3 failed\r\n.\r\nQUIT\r\n")
		c.Close()
	}
	eventually(t, "5 messages queued", func() bool { return len(g.queued()) == 5 })
}

// TestBDAT: CHUNKING (advertised by go-smtp) carries bytes unchanged past
// the bare-LF fixer; the repair still gives the stored message CRLF endings.
func TestBDAT(t *testing.T) {
	g := startGateway(t, nil)
	chunk1, chunk2 := "Subject: chunked\nfirst\n", "second\n.\n"
	out := converse(t, g.addr, "", "EHLO board\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\n"+
		fmt.Sprintf("BDAT %d\r\n%s", len(chunk1), chunk1)+
		fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk2), chunk2)+"QUIT\r\n")
	if got := codeList(out); got != "220 250 250 250 250 250 221" {
		t.Fatalf("%q\n%s", got, out)
	}
	q := g.queuedN(t, 1)
	m, body := parse(t, q[0].Data)
	if m.Header.Get("Subject") != "chunked" || body != "first\r\nsecond\r\n.\r\n" {
		t.Errorf("subject %q body %q", m.Header.Get("Subject"), body)
	}
}

// TestDualStackListener: on a dual-stack socket ("[::]:25") IPv4 clients
// appear as ::ffff:a.b.c.d; allowed_networks written in IPv4 must still
// match them, and ::1 is matched by its own prefix.
func TestDualStackListener(t *testing.T) {
	l, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	g := startGateway(t, func(o *smtpd.Options) { o.AllowedNetworks = prefixes("127.0.0.1/32", "::1/128") })
	go g.srv.Serve(l)
	port := fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct{ local, want string }{
		{"127.0.0.1", "220 250 221"},
		{"127.0.0.2", "554"},
		{"::1", "220 250 221"},
	} {
		host := "127.0.0.1"
		if strings.Contains(tc.local, ":") {
			host = "::1"
		}
		out := converse(t, net.JoinHostPort(host, port), tc.local, "EHLO x\r\nQUIT\r\n")
		if got := codeList(out); got != tc.want {
			t.Errorf("from %s: %q, want %q", tc.local, got, tc.want)
		}
	}
}

// TestNewRefusesOptions: a limit left at zero would refuse every client or
// recipient without saying why, and an empty password would let anyone in
// with an empty one; New names the field instead.
func TestNewRefusesOptions(t *testing.T) {
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		set  func(*smtpd.Options)
		want string // "" for success
	}{
		{"defaults", func(*smtpd.Options) {}, ""},
		{"no listen address", func(o *smtpd.Options) { o.Listen = nil }, ""},
		{"hostname", func(o *smtpd.Options) { o.Hostname = "" }, "Options.Hostname"},
		{"max message bytes", func(o *smtpd.Options) { o.MaxMessageBytes = 0 }, "Options.MaxMessageBytes"},
		{"max recipients", func(o *smtpd.Options) { o.MaxRecipients = 0 }, "Options.MaxRecipients"},
		{"max connections", func(o *smtpd.Options) { o.MaxConnections = 0 }, "Options.MaxConnections "},
		{"max connections per ip", func(o *smtpd.Options) { o.MaxConnectionsPerIP = -1 }, "Options.MaxConnectionsPerIP"},
		{"command timeout", func(o *smtpd.Options) { o.CommandTimeout = 0 }, "Options.CommandTimeout"},
		{"data timeout", func(o *smtpd.Options) { o.DataTimeout = 0 }, "Options.DataTimeout"},
		{"max line length", func(o *smtpd.Options) { o.MaxLineLength = 0 }, "Options.MaxLineLength"},
		{"empty password", func(o *smtpd.Options) { o.Accounts = map[string]string{"press1": ""} }, `account "press1": empty password`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			tt.set(&opts)
			_, err := smtpd.New(opts, sp, nil, nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error()+" ", tt.want)):
				t.Fatalf("New: %v, want an error with %q", err, tt.want)
			}
		})
	}
}
