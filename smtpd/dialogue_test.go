package smtpd_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/plcmail/plcmail/smtpd"
)

// Sloppy command dialogues from embedded clients, sent blind over a raw
// socket: what go-smtp on its own refuses, and what the listener accepts
// from allowed networks as Postfix does with its defaults
// (smtpd_helo_required = no, strict_rfc821_envelopes = no, commands split
// on white space).

// startPlainGoSMTP serves a bare go-smtp server, configured like the
// listener but without plcmail's connection wrapper, that accepts every
// transaction. It is the reference for what go-smtp itself refuses.
func startPlainGoSMTP(t *testing.T) (addr string, delivered func() int) {
	t.Helper()
	var n int
	done := make(chan struct{}, 100)
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return acceptAll{done}, nil
	}))
	srv.Domain = "plain.test"
	srv.AllowInsecureAuth = true
	srv.ErrorLog = nopLogger{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), func() int {
		for {
			select {
			case <-done:
				n++
			default:
				return n
			}
		}
	}
}

type acceptAll struct{ done chan struct{} }

func (acceptAll) Mail(string, *smtp.MailOptions) error { return nil }
func (acceptAll) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (a acceptAll) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	a.done <- struct{}{}
	return err
}
func (acceptAll) Reset()        {}
func (acceptAll) Logout() error { return nil }

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// TestSloppyCommands runs each dialogue against plain go-smtp and against
// the listener: the listener repairs exactly what go-smtp refuses and
// Postfix accepts, and leaves alone what go-smtp already takes.
func TestSloppyCommands(t *testing.T) {
	const msg = "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"
	tests := []struct {
		name   string
		script string
		plain  string // a reply plain go-smtp gives ("" = it accepts the message too)
		codes  string // the listener's replies
	}{
		{"MAIL without HELO",
			"MAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\n" + msg,
			"502 5.5.1 Please introduce yourself first.",
			"220 250 250 354 250 221"},
		{"trailing blanks after commands",
			"HELO board \r\nNOOP\t\r\nMAIL FROM:<plc@example.com> \r\nRCPT TO:<ops@example.com>\t\r\nDATA \r\nSubject: x\r\n\r\nhi\r\n.\r\nRSET \r\nQUIT \r\n",
			"501 5.5.2 Bad command",
			"220 250 250 250 250 354 250 250 221"},
		{"lower case commands",
			"helo board\r\nmail from:<plc@example.com>\r\nrcpt to:<ops@example.com>\r\ndata\r\nSubject: x\r\n\r\nhi\r\n.\r\nquit\r\n",
			"", "220 250 250 250 354 250 221"},
		{"blank after the colon",
			"HELO board\r\nMAIL FROM: <plc@example.com>\r\nRCPT TO: <ops@example.com>\r\n" + msg,
			"", "220 250 250 250 354 250 221"},
		{"no angle brackets",
			"HELO board\r\nMAIL FROM:plc@example.com\r\nRCPT TO: ops@example.com\r\n" + msg,
			"", "220 250 250 250 354 250 221"},
		{"HELO without a name is refused, as by Postfix; MAIL then works",
			"HELO\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\n" + msg,
			"501 5.5.2 Domain/address argument required for HELO",
			"220 501 250 250 354 250 221"},
	}
	pg, delivered := startPlainGoSMTP(t)
	g := startGateway(t, nil)
	want := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := delivered()
			out := converse(t, pg, "", tt.script)
			if tt.plain != "" {
				if !strings.Contains(out, "\r\n"+tt.plain+"\r\n") {
					t.Errorf("plain go-smtp no longer answers %q, the repair may be obsolete:\n%s", tt.plain, out)
				}
			} else if delivered() != before+1 {
				t.Errorf("plain go-smtp refused the message:\n%s", out)
			}

			out = converse(t, g.addr, "", tt.script)
			if got := codeList(out); got != tt.codes {
				t.Fatalf("listener replies %q, want %q\n%s", got, tt.codes, out)
			}
		})
		want++
	}
	q := g.queuedN(t, want)
	for _, m := range q {
		if m.Envelope.From != "plc@example.com" || len(m.Envelope.To) != 1 || m.Envelope.To[0] != "ops@example.com" {
			t.Errorf("envelope %+v", m.Envelope)
		}
	}
}

// TestUnqualifiedSender replays boards that name themselves without a
// domain, commands sent blind. Plain go-smtp refuses the address with 501;
// the listener qualifies it with gateway.hostname ("gw.test" here), as
// Postfix appends $myorigin, and the From field Repair adds carries the
// same address. The null sender stays null.
func TestUnqualifiedSender(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		codes      string
		from       string // envelope sender queued
		headerFrom string // address in the From field of the queued message
	}{
		{"angle brackets, bare LF, no HELO (the classic sketch)",
			"MAIL FROM:<plc>\nRCPT TO:<ops@example.com>\nDATA\nSubject: Alarm\nPump 3 failed\n.\nQUIT\n",
			"220 250 250 354 250 221", "plc@gw.test", "plc@gw.test"},
		{"no brackets, lower case, EHLO with an address",
			"ehlo 192.168.1.177\r\nmail from:press-1\r\nrcpt to:ops@example.com\r\ndata\r\nSubject: x\r\n\r\ny\r\n.\r\nquit\r\n",
			"220 250 250 250 354 250 221", "press-1@gw.test", "press-1@gw.test"},
		{"blank after the colon, ESMTP parameters",
			"EHLO board\r\nMAIL FROM: <plc> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<ops@example.com>\r\n" +
				"DATA\r\nSubject: x\r\n\r\ny\r\n.\r\nQUIT\r\n",
			"220 250 250 250 354 250 221", "plc@gw.test", "plc@gw.test"},
		{"a From field the board wrote is kept",
			"HELO board\r\nMAIL FROM:<plc>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nFrom: Press 1 <press1@example.com>\r\nSubject: x\r\n\r\ny\r\n.\r\nQUIT\r\n",
			"220 250 250 250 354 250 221", "plc@gw.test", "press1@example.com"},
		{"null sender stays null",
			"HELO board\r\nMAIL FROM:<>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: x\r\n\r\ny\r\n.\r\nQUIT\r\n",
			"220 250 250 250 354 250 221", "", "gateway@example.com"},
	}
	pg, _ := startPlainGoSMTP(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The reference needs a greeting: the classic sketch's first
			// refusal from go-smtp is the missing HELO.
			if hasHelo := strings.Contains(strings.ToUpper(tt.script), "HELO"); tt.from != "" && hasHelo {
				out := converse(t, pg, "", tt.script)
				if !strings.Contains(out, "\r\n501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>\r\n") {
					t.Errorf("plain go-smtp no longer refuses the address, the repair may be obsolete:\n%s", out)
				}
			}
			g := startGateway(t, nil)
			out := converse(t, g.addr, "", tt.script)
			if got := codeList(out); got != tt.codes {
				t.Fatalf("replies %q, want %q\n%s", got, tt.codes, out)
			}
			q := g.queuedN(t, 1)
			if q[0].Envelope.From != tt.from {
				t.Errorf("envelope sender %q, want %q", q[0].Envelope.From, tt.from)
			}
			m, _ := parse(t, q[0].Data)
			if a, err := m.Header.AddressList("From"); err != nil || len(a) != 1 || a[0].Address != tt.headerFrom {
				t.Errorf("From %q, want %s\n%s", m.Header.Get("From"), tt.headerFrom, q[0].Data)
			}
			if strings.Contains(string(q[0].Data), "invalid") || strings.Contains(g.logs.String(), "invalid") {
				t.Errorf("the marker domain leaked:\n%s\n%s", q[0].Data, g.logs)
			}
			logged := strings.Count(g.logs.String(), "sender without domain")
			if want := map[bool]int{true: 0, false: 1}[tt.from == ""]; logged != want {
				t.Errorf("qualification logged %d times, want %d:\n%s", logged, want, g.logs)
			}
		})
	}
}

// TestUnqualifiedOncePerSession: two messages with unqualified senders in
// one session give one log line, naming what was sent and what it became.
func TestUnqualifiedOncePerSession(t *testing.T) {
	g := startGateway(t, nil)
	msg := "RCPT TO:<ops@example.com>\r\nDATA\r\nSubject: x\r\n.\r\n"
	out := converse(t, g.addr, "", "HELO b\r\nMAIL FROM:<plc>\r\n"+msg+"MAIL FROM:<press2>\r\n"+msg+"QUIT\r\n")
	if got := codeList(out); got != "220 250 250 250 354 250 250 250 354 250 221" {
		t.Fatalf("replies %q\n%s", got, out)
	}
	q := g.queued()
	if len(q) != 2 || q[0].Envelope.From != "plc@gw.test" || q[1].Envelope.From != "press2@gw.test" {
		t.Fatalf("queued %+v", q)
	}
	logs := g.logs.String()
	if strings.Count(logs, "sender without domain") != 1 ||
		!strings.Contains(logs, `level=INFO msg="smtp: sender without domain, appended gateway.hostname" peer=127.0.0.1 sent=plc from=plc@gw.test`) {
		t.Errorf("want one Info line for the session:\n%s", logs)
	}
}

// TestUnqualifiedRecipient: "RCPT TO:<ops>" gets 553 5.1.3, with or without
// allowed_recipients, and never becomes ops@gateway.hostname, even when
// allowed_recipients lists the gateway's own name; the transaction goes on
// with the recipients that are complete.
func TestUnqualifiedRecipient(t *testing.T) {
	for _, allowed := range [][]string{nil, {"example.com", "gw.test"}} {
		t.Run(fmt.Sprint(allowed), func(t *testing.T) {
			g := startGateway(t, func(o *smtpd.Options) { o.AllowedRecipients = allowed })
			out := converse(t, g.addr, "", "MAIL FROM:<plc>\nRCPT TO:<ops>\nRCPT TO:shift\nRCPT TO:<ops@example.com>\n"+
				"DATA\nSubject: x\n.\nQUIT\n")
			if got := strings.Join(codes(out), " "); got != "220 250 2.0.0 553 5.1.3 553 5.1.3 250 2.0.0 354 250 2.0.0 221 2.0.0" {
				t.Fatalf("replies %q\n%s", got, out)
			}
			if !strings.Contains(out, "553 5.1.3 Recipient must be a full address user@domain\r\n") {
				t.Errorf("reply text:\n%s", out)
			}
			q := g.queued()
			if len(q) != 1 || len(q[0].Envelope.To) != 1 || q[0].Envelope.To[0] != "ops@example.com" {
				t.Fatalf("queued %+v", q)
			}
			if !strings.Contains(g.logs.String(), `stage=RCPT code=553 reason="Recipient must be a full address user@domain" from=plc@gw.test to=ops`) {
				t.Errorf("refusal not logged:\n%s", g.logs)
			}
		})
	}
}

// TestUnqualifiedStranger: outside allowed_networks nothing changes: the
// 554 at connect is the only reply and nothing is qualified or queued.
func TestUnqualifiedStranger(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) { o.AllowedNetworks = prefixes("127.0.0.1/32") })
	out := converse(t, g.addr, "127.0.0.2", "HELO x\r\nMAIL FROM:<plc>\r\nRCPT TO:<ops>\r\nDATA\r\nSubject: x\r\n.\r\nQUIT\r\n")
	if got := codes(out); len(got) != 1 || got[0] != "554 5.7.1" {
		t.Fatalf("replies %q, want only 554 5.7.1", out)
	}
	if len(g.queued()) != 0 || strings.Contains(g.logs.String(), "without domain") {
		t.Fatalf("stranger's message handled:\n%s", g.logs)
	}
}

// TestNoHelo replays boards that never say HELO or EHLO, with the commands
// sent blind: every reply must belong to a command the client sent, in
// order, and the Received field names the peer address as HELO name.
func TestNoHelo(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		codes    string
		received []string // "from ..." of each queued message, in order
		implicit bool     // an implicit HELO is logged
	}{
		{"MAIL first, bare LF, no blank line",
			"MAIL FROM:<plc@example.com>\nRCPT TO:<ops@example.com>\nDATA\nSubject: Alarm\nPump 3 failed\n.\nQUIT\n",
			"220 250 250 354 250 221", []string{"from [127.0.0.1] ([127.0.0.1])"}, true},
		{"NOOP, RSET and VRFY first",
			"NOOP\r\nRSET\r\nVRFY root\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: x\r\n.\r\nQUIT\r\n",
			"220 250 250 252 250 250 354 250 221", []string{"from [127.0.0.1] "}, true},
		{"HELO later in the session takes over",
			"MAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: 1\r\n.\r\n" +
				"HELO press-1\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: 2\r\n.\r\nQUIT\r\n",
			"220 250 250 354 250 250 250 250 354 250 221", []string{"from [127.0.0.1] ", "from press-1 "}, true},
		{"EHLO later: its multi-line reply stays in order",
			"MAIL FROM:<plc@example.com>\r\nEHLO press-1\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: x\r\n.\r\nQUIT\r\n",
			"220 250 250 250 250 354 250 221", []string{"from press-1 "}, true},
		{"RCPT first",
			"RCPT TO:<ops@example.com>\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: x\r\n.\r\nQUIT\r\n",
			"220 502 250 250 354 250 221", []string{"from [127.0.0.1] "}, true},
		{"no transaction, no implicit HELO",
			"NOOP\r\nRSET\r\nQUIT\r\n",
			"220 250 250 221", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, nil)
			out := converse(t, g.addr, "", tt.script)
			if got := codeList(out); got != tt.codes {
				t.Fatalf("replies %q, want %q\n%s", got, tt.codes, out)
			}
			if strings.Contains(out, "Hello [") {
				t.Errorf("reply to the implicit HELO reached the client:\n%s", out)
			}
			if strings.Contains(tt.script, "EHLO") && !strings.Contains(out, "250-Hello press-1\r\n250-PIPELINING\r\n") {
				t.Errorf("EHLO reply missing:\n%s", out)
			}
			q := g.queuedN(t, len(tt.received))
			for i, m := range q {
				h, _ := parse(t, m.Data)
				if r := h.Header.Get("Received"); !strings.HasPrefix(r, tt.received[i]) {
					t.Errorf("message %d: Received %q, want prefix %q", i, r, tt.received[i])
				}
			}
			if len(q) > 0 && strings.HasPrefix(tt.received[0], "from [127.0.0.1]") &&
				!strings.Contains(g.logs.String(), `msg="smtp: queued" peer=127.0.0.1 helo=[127.0.0.1] `) {
				t.Errorf("queued log line lacks the implicit HELO name:\n%s", g.logs)
			}
			logged := strings.Contains(g.logs.String(), `no HELO/EHLO before MAIL, assuming the peer address as HELO name" peer=127.0.0.1 helo=[127.0.0.1]`) ||
				strings.Contains(g.logs.String(), `no HELO/EHLO before RCPT`)
			if logged != tt.implicit {
				t.Errorf("implicit HELO logged %v, want %v:\n%s", logged, tt.implicit, g.logs)
			}
		})
	}
}

// TestNoHeloLockstep: a client that waits for each reply sees exactly one
// reply per command and nothing after QUIT's.
func TestNoHeloLockstep(t *testing.T) {
	g := startGateway(t, nil)
	s := open(t, g.addr, "")
	s.cmd("NOOP", "250 2.0.0 I have successfully done nothing")
	s.cmd("MAIL FROM:<plc@example.com>", "250 2.0.0 Roger")
	s.cmd("RCPT TO:<ops@example.com>", "250 2.0.0 I'll make sure")
	s.cmd("DATA", "354")
	s.send("Subject: lockstep\r\n\r\nx\r\n.\r\n")
	s.expect("250 2.0.0 OK: queued as")
	s.cmd("QUIT", "221")
	s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(s.r); len(rest) > 0 || err != nil && !isReset(err) {
		t.Fatalf("after QUIT: %q, %v", rest, err)
	}
	if len(g.queued()) != 1 {
		t.Fatal("not queued")
	}
}

// TestNoHeloAuth: AUTH before HELO works as in Postfix (which checks HELO
// only under smtpd_helo_required), and require_auth still holds.
func TestNoHeloAuth(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) {
		o.RequireAuth = true
		o.Accounts = map[string]string{"press1": "b0ard-Pa55"}
	})
	out := converse(t, g.addr, "", "MAIL FROM:<plc@example.com>\r\nAUTH PLAIN "+base64Std("\x00press1\x00b0ard-Pa55")+"\r\n"+
		"MAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: x\r\n.\r\nQUIT\r\n")
	if got := codeList(out); got != "220 530 235 250 250 354 250 221" {
		t.Fatalf("replies %q\n%s", got, out)
	}
	out = converse(t, g.addr, "", "AUTH LOGIN "+base64Std("press1")+"\r\n"+base64Std("b0ard-Pa55")+"\r\n"+
		"MAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: x\r\n.\r\nQUIT\r\n")
	if got := codeList(out); got != "220 334 235 250 250 354 250 221" {
		t.Fatalf("LOGIN: replies %q\n%s", got, out)
	}
	if len(g.queued()) != 2 {
		t.Fatal("not queued")
	}
}

// TestNoHeloStranger: a client outside allowed_networks that skips HELO
// gets the 554 at connect and nothing else, however sloppy its dialogue.
func TestNoHeloStranger(t *testing.T) {
	g := startGateway(t, func(o *smtpd.Options) { o.AllowedNetworks = prefixes("127.0.0.1/32") })
	out := converse(t, g.addr, "127.0.0.2",
		"MAIL FROM:<a@evil.example>\r\nRCPT TO:<victim@example.org>\r\nDATA \r\nSubject: spam\r\n\r\nx\r\n.\r\nQUIT\r\n")
	if got := codes(out); len(got) != 1 || got[0] != "554 5.7.1" {
		t.Fatalf("replies %q, want only 554 5.7.1", out)
	}
	if len(g.queued()) != 0 {
		t.Fatal("stranger's message queued")
	}
	if strings.Contains(g.logs.String(), "assuming the peer address") {
		t.Errorf("implicit HELO for a stranger:\n%s", g.logs)
	}
}

// TestNoHeloAfterStartTLS: after STARTTLS the wrapper steps aside (it sits
// under TLS and cannot see commands), so a client that skips EHLO over TLS
// gets go-smtp's strict 502, and an unqualified sender its 501; TLS clients
// are full SMTP clients that say EHLO, as RFC 3207 requires after STARTTLS
// anyway.
func TestNoHeloAfterStartTLS(t *testing.T) {
	g, ca := startTLSGateway(t)
	s := open(t, g.addr, "")
	s.cmd("STARTTLS", "220")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tc := tls.Client(s.c, &tls.Config{ServerName: "127.0.0.1", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	s.c = tc
	s.r.Reset(tc)
	s.cmd("MAIL FROM:<plc@example.com>", "502 5.5.1")
	s.cmd("EHLO board", "250")
	s.cmd("MAIL FROM:<plc>", "501 5.5.2") // nor is a sender qualified
	s.cmd("MAIL FROM:<plc@example.com>", "250")
	s.cmd("QUIT", "221")
	if strings.Contains(g.logs.String(), "assuming the peer address") {
		t.Errorf("implicit HELO inside TLS:\n%s", g.logs)
	}
}

// TestNoHeloIPv6: the implicit HELO of an IPv6 peer is an RFC 5321 IPv6
// address literal.
func TestNoHeloIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	g := startGateway(t, func(o *smtpd.Options) { o.AllowedNetworks = prefixes("::1/128") })
	go g.srv.Serve(l)
	out := converse(t, l.Addr().String(), "", "MAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\nSubject: v6\r\n.\r\nQUIT\r\n")
	if got := codeList(out); got != "220 250 250 354 250 221" {
		t.Fatalf("replies %q\n%s", got, out)
	}
	q := g.queuedN(t, 1)
	h, _ := parse(t, q[0].Data)
	if r := h.Header.Get("Received"); !strings.HasPrefix(r, "from [IPv6:::1] ([::1])") {
		t.Errorf("Received %q", r)
	}
}
