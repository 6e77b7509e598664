package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
)

func TestParseSendArgs(t *testing.T) {
	tests := []struct {
		args []string
		want sendOptions
		err  string
	}{
		{args: []string{"a@x"}, want: sendOptions{rcpts: []string{"a@x"}}},
		{args: []string{"-t", "-i"}, want: sendOptions{extract: true, ignoreDots: true}},
		{args: []string{"-ti"}, want: sendOptions{extract: true, ignoreDots: true}},
		{args: []string{"-oi", "-t"}, want: sendOptions{extract: true, ignoreDots: true}},
		{args: []string{"-fme@x", "b@x"}, want: sendOptions{from: "me@x", fromSet: true, rcpts: []string{"b@x"}}},
		{args: []string{"-f", "me@x", "-F", "Press 1", "b@x"}, want: sendOptions{from: "me@x", fromSet: true, fullName: "Press 1", rcpts: []string{"b@x"}}},
		{args: []string{"-r", "<>", "b@x"}, want: sendOptions{from: "<>", fromSet: true, rcpts: []string{"b@x"}}},
		// What cron, smartd, mdadm and PHP pass: all accepted, none changes anything.
		{args: []string{"-odi", "-oem", "-odb", "-oQ/var/spool", "-Am", "-em", "-U", "-G", "-N", "never", "-V", "env", "-B", "8BITMIME", "-C", "/etc/mail/sendmail.cf", "-bm", "b@x"},
			want: sendOptions{rcpts: []string{"b@x"}}},
		{args: []string{"-v", "--", "-odd@x"}, want: sendOptions{verbose: true, rcpts: []string{"-odd@x"}}},
		{args: []string{"-bp"}, want: sendOptions{mode: "list"}},
		{args: []string{"-q"}, want: sendOptions{mode: "flush"}},
		{args: []string{"-bi"}, want: sendOptions{mode: "noop"}},
		{args: []string{"-f"}, err: "-f needs a value"},
		{args: []string{"-bs"}, err: "-bs is not supported"},
		{args: []string{"-q30m"}, err: "use -q alone"},
		{args: []string{"-Z"}, err: "unknown option -Z"},
		{args: []string{"--to", "x"}, err: "unknown option --to"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			e := &env{}
			got, err := parseSendArgs(e, tt.args)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
	e := &env{}
	if _, err := parseSendArgs(e, []string{"-c", "/x.toml", "a@x"}); err != nil || e.configPath != "/x.toml" {
		t.Errorf("-c: %v %q", err, e.configPath)
	}
}

func TestBuildSubmission(t *testing.T) {
	now := time.Date(2026, 11, 21, 19, 40, 0, 0, time.UTC)
	const date = "Date: Sat, 21 Nov 2026 19:40:00 +0000\r\n"
	// send repairs with message.Repair, as the SMTP listener does: added
	// fields come as Date, Message-ID, From, To (send used to add From
	// first), and a message with neither To nor Cc gets
	// "To: undisclosed-recipients:;" (send used to add none), as Postfix's
	// cleanup does for both ways in.
	const added = date + "Message-ID: MSGID\r\nFrom: <plc@gw>\r\n"
	const undisclosed = "To: undisclosed-recipients:;\r\n"
	tests := []struct {
		name string
		in   string
		opts sendOptions
		from string
		to   []string
		data string // with MSGID standing for the generated Message-ID
		err  string
	}{{
		name: "complete message passes unchanged but for Received, LF to CRLF",
		in:   "From: a@x\nTo: b@x\nDate: Fri, 20 Nov 2026 10:00:00 +0100\nMessage-ID: <1@x>\nSubject: hi\n\nline 1\n.\nline 3\n",
		opts: sendOptions{rcpts: []string{"b@x"}, ignoreDots: true},
		from: "plc@gw", to: []string{"b@x"},
		data: "From: a@x\r\nTo: b@x\r\nDate: Fri, 20 Nov 2026 10:00:00 +0100\r\nMessage-ID: <1@x>\r\nSubject: hi\r\n\r\nline 1\r\n.\r\nline 3\r\n",
	}, {
		name: "without -i a lone dot ends the message",
		in:   "Subject: s\n\nline 1\n.\nnot sent\n",
		opts: sendOptions{rcpts: []string{"b@x"}},
		from: "plc@gw", to: []string{"b@x"},
		data: "Subject: s\r\n" + added + undisclosed + "\r\nline 1\r\n",
	}, {
		name: "-t reads To, Cc, Bcc (folded, grouped, named), removes Bcc, adds the rest",
		in:   "To: Ops <ops@x>,\n  boss@x\nCc: undisclosed-recipients:;\nBcc: audit@x, OPS@x\nSubject: s\n\nbody",
		opts: sendOptions{extract: true},
		from: "plc@gw", to: []string{"ops@x", "boss@x", "audit@x"},
		data: "To: Ops <ops@x>,\r\n  boss@x\r\nCc: undisclosed-recipients:;\r\nSubject: s\r\n" + added + "\r\nbody\r\n",
	}, {
		name: "-t adds command-line recipients, like Postfix",
		in:   "To: a@x\n\nb",
		opts: sendOptions{extract: true, rcpts: []string{"Extra <c@x>"}},
		from: "plc@gw", to: []string{"c@x", "a@x"},
		data: "To: a@x\r\n" + added + "\r\nb\r\n",
	}, {
		name: "-f sets the envelope and the added From, -F its name",
		in:   "Subject: s\r\n\r\nb\r\n",
		opts: sendOptions{rcpts: []string{"b@x"}, from: "Cron <cron@gw>", fromSet: true, fullName: "Cron Daemon"},
		from: "cron@gw", to: []string{"b@x"},
		data: "Subject: s\r\n" + date + "Message-ID: MSGID\r\nFrom: \"Cron Daemon\" <cron@gw>\r\n" + undisclosed + "\r\nb\r\n",
	}, {
		name: "null sender",
		in:   "From: a@x\nDate: d\nMessage-ID: <m@x>\n\nb",
		opts: sendOptions{rcpts: []string{"b@x"}, from: "<>", fromSet: true},
		from: "", to: []string{"b@x"},
		data: "From: a@x\r\nDate: d\r\nMessage-ID: <m@x>\r\n" + undisclosed + "\r\nb\r\n",
	}, {
		name: "no header at all: everything is body",
		in:   "disk /dev/sda full\nsecond line\n",
		opts: sendOptions{rcpts: []string{"root@x"}},
		from: "plc@gw", to: []string{"root@x"},
		data: added + undisclosed + "\r\ndisk /dev/sda full\r\nsecond line\r\n",
	}, {
		name: "mbox From_ line dropped",
		in:   "From a@x Sat Nov 21 10:00:00 2026\nFrom: a@x\nDate: d\nMessage-ID: <m@x>\n\nb\n",
		opts: sendOptions{rcpts: []string{"b@x"}},
		from: "plc@gw", to: []string{"b@x"},
		data: "From: a@x\r\nDate: d\r\nMessage-ID: <m@x>\r\n" + undisclosed + "\r\nb\r\n",
	}, {
		name: "header injection through -F is encoded, not obeyed",
		in:   "Subject: s\n\nb",
		opts: sendOptions{rcpts: []string{"b@x"}, fullName: "x\r\nBcc: evil@y"},
		from: "plc@gw", to: []string{"b@x"},
		data: "Subject: s\r\n" + date + "Message-ID: MSGID\r\nFrom: =?utf-8?b?eA0KQmNjOiBldmlsQHk=?= <plc@gw>\r\n" + undisclosed + "\r\nb\r\n",
	}, {
		// send used to end the header at "Subject : x" (obsolete blank
		// before the colon) and mail the header fields as body text.
		name: "obsolete Subject : x is a header field",
		in:   "Subject : pressure low\nTo : ops@x\n\nb\n",
		opts: sendOptions{extract: true},
		from: "plc@gw", to: []string{"ops@x"},
		data: "Subject: pressure low\r\nTo: ops@x\r\n" + added + "\r\nb\r\n",
	}, {
		// send used to pass 8-bit text on undeclared.
		name: "8-bit UTF-8 from cron: body declared, Subject encoded",
		in:   "Subject: Sicherung f\xc3\xbcr /var\n\nPr\xc3\xbcfsumme falsch\n",
		opts: sendOptions{rcpts: []string{"root@x"}},
		from: "plc@gw", to: []string{"root@x"},
		data: "Subject: =?utf-8?q?Sicherung_f=C3=BCr_/var?=\r\n" + added + undisclosed +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n" +
			"\r\nPr\xc3\xbcfsumme falsch\r\n",
	}, {
		name: "dot line with CRLF, and lone dot as last line",
		in:   "Subject: s\r\n\r\nline 1\r\n.\r\nnot sent\r\n",
		opts: sendOptions{rcpts: []string{"b@x"}},
		from: "plc@gw", to: []string{"b@x"},
		data: "Subject: s\r\n" + added + undisclosed + "\r\nline 1\r\n",
	}, {
		name: "lone dot without newline at the end",
		in:   "Subject: s\n\nline 1\n.",
		opts: sendOptions{rcpts: []string{"b@x"}},
		from: "plc@gw", to: []string{"b@x"},
		data: "Subject: s\r\n" + added + undisclosed + "\r\nline 1\r\n",
	}, {
		name: "-t with only Bcc: Bcc removed, To added",
		in:   "Bcc: audit@x\nSubject: s\n\nb\n",
		opts: sendOptions{extract: true},
		from: "plc@gw", to: []string{"audit@x"},
		data: "Subject: s\r\n" + added + undisclosed + "\r\nb\r\n",
	},
		{name: "no recipients", in: "Subject: s\n\nb", opts: sendOptions{}, err: "no recipients: give them as arguments"},
		{name: "-t without recipient headers", in: "Subject: s\n\nb", opts: sendOptions{extract: true}, err: "no recipients in To, Cc or Bcc"},
		{name: "bare local name", in: "b", opts: sendOptions{rcpts: []string{"root"}}, err: `recipient "root": missing '@'`},
		{name: "bad To header", in: "To: a@x, <broken\n\nb", opts: sendOptions{extract: true}, err: `To header "a@x, <broken"`},
		{name: "bad sender", in: "b", opts: sendOptions{rcpts: []string{"a@x"}, from: "not an address", fromSet: true}, err: `sender "not an address"`},
		{name: "quoted local part with space", in: "b", opts: sendOptions{rcpts: []string{`"a b"@x`}}, err: "cannot be used as an envelope address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := buildSubmission([]byte(tt.in), &tt.opts, "gw.test", "plc@gw", 33, now)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sub.From != tt.from || !reflect.DeepEqual(sub.To, tt.to) || sub.Source != "send" {
				t.Errorf("envelope %q -> %q (source %q), want %q -> %q", sub.From, sub.To, sub.Source, tt.from, tt.to)
			}
			data := string(sub.Data)
			if i := strings.Index(data, "Message-ID: <20261121194000."); i >= 0 && strings.Contains(tt.data, "MSGID") {
				end := strings.Index(data[i:], "\r\n")
				id := data[i+len("Message-ID: ") : i+end]
				if !strings.HasSuffix(id, "@gw.test>") || len(id) != len("<20261121194000.0123456789abcdef@gw.test>") {
					t.Errorf("Message-ID %q", id)
				}
				data = strings.Replace(data, id, "MSGID", 1)
			}
			// Every message gets send's Received first, as Postfix's pickup adds one.
			if want := "Received: by gw.test (plcmail, from userid 33);\r\n\t" + date[len("Date: "):] + tt.data; data != want {
				t.Errorf("data\n got %q\nwant %q", data, want)
			}
		})
	}
}

// TestSendQueuesDurably runs `plcmail send` in-process and reads the spool
// back: the message is on disk, in queue/, with the envelope and the repaired
// bytes, as soon as send returned.
func TestSendQueuesDurably(t *testing.T) {
	c := newTestConfig(t)
	path := c.write(t)
	in := "To: Ops <ops@example.com>\nBcc: audit@example.com\nSubject: pressure low\n\nline 1\n.\nline 3\n"
	r := runCLI(t, in, "plcmail", "send", "-c", path, "-t", "-i", "-v", "-f", "cron@gw.test")
	if r.code != 0 {
		t.Fatalf("send: %+v", r)
	}
	msgs := spoolMessages(t, c.Spool)
	if len(msgs) != 1 {
		t.Fatalf("%d messages in the spool, want 1", len(msgs))
	}
	m := msgs[0]
	if !strings.Contains(r.stderr, "queued as "+m.ID) {
		t.Errorf("-v: stderr %q does not name %s", r.stderr, m.ID)
	}
	if m.Envelope.From != "cron@gw.test" || !reflect.DeepEqual(m.Envelope.To, []string{"ops@example.com", "audit@example.com"}) {
		t.Errorf("envelope %+v", m.Envelope)
	}
	for _, want := range []string{"To: Ops <ops@example.com>\r\n", "Subject: pressure low\r\n", "From: <cron@gw.test>\r\n", "\r\nDate: ", "@gw.test>\r\n", "\r\n\r\nline 1\r\n.\r\nline 3\r\n"} {
		if !strings.Contains(m.Data, want) {
			t.Errorf("data lacks %q:\n%s", want, m.Data)
		}
	}
	if strings.Contains(m.Data, "audit@") {
		t.Errorf("Bcc leaked into the message:\n%s", m.Data)
	}

	// Without -v send is silent, as sendmail is: cron mails its stderr.
	r = runCLI(t, "Subject: x\n\nbody\n", "sendmail", "-c", path, "ops@example.com")
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("sendmail link: %+v", r)
	}
	if n := len(spoolMessages(t, c.Spool)); n != 2 {
		t.Errorf("%d messages after the second send, want 2", n)
	}

	// Invalid input: exit 65 (EX_DATAERR), a one-line reason, nothing queued.
	for _, args := range [][]string{{"-t"}, {"root"}, {"-f", "a b", "ops@example.com"}} {
		r = runCLI(t, "Subject: x\n\nbody\n", append([]string{"plcmail", "send", "-c", path}, args...)...)
		if r.code != exDataErr || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "plcmail: send: ") {
			t.Errorf("send %q: %+v", args, r)
		}
	}
	if r = runCLI(t, "", "plcmail", "send", "-c", path, "-Z"); r.code != exUsage {
		t.Errorf("unknown option: %+v", r)
	}
	if n := len(spoolMessages(t, c.Spool)); n != 2 {
		t.Errorf("%d messages after refused sends, want 2", n)
	}

	// A spool that cannot be written: no exit 0 but 75, try again.
	c2 := newTestConfig(t)
	c2.Spool = "/proc/plcmail-cannot-exist"
	r = runCLI(t, "Subject: x\n\nbody\n", "plcmail", "send", "-c", c2.write(t), "ops@example.com")
	if r.code != exTempFail {
		t.Errorf("unwritable spool: %+v", r)
	}
}

// TestSendDeliversRepaired pipes what cron and scripts send through the
// sendmail link and lets `plcmail serve` deliver it to a real SMTP server:
// UTF-8 text arrives declared as charset=utf-8 with an RFC 2047 Subject, and
// "Subject : x" arrives as the Subject. Before send used message.Repair, the
// first went out undeclared and the second as body text.
func TestSendDeliversRepaired(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	path := c.write(t)

	const cronMail = "From: root (Cron Daemon)\nTo: root@example.com\nSubject: Cron <root@gw> /usr/local/bin/sicherung f\xc3\xbcr /var\n\n" +
		"Pr\xc3\xbcfsumme falsch: 3 Dateien \xe2\x80\x93 bitte pr\xc3\xbcfen\n"
	if r := runCLI(t, cronMail, "sendmail", "-c", path, "-i", "-FCronDaemon", "-odi", "-oem", "-oi", "-t"); r.code != 0 {
		t.Fatalf("sendmail: %+v", r)
	}
	if r := runCLI(t, "Subject : pressure low\nX-Plant : press 1\n\nline 1\n", "sendmail", "-c", path, "ops@example.com"); r.code != 0 {
		t.Fatalf("sendmail: %+v", r)
	}
	startServe(t, path)
	msgs := u.Wait(t, 2, 20*time.Second)

	dec := new(mime.WordDecoder)
	got := map[string]*mail.Message{}
	for _, m := range msgs {
		pm, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("upstream got an unparsable message: %v\n%s", err, m.Data)
		}
		got[m.To[0]] = pm
	}
	cron, plain := got["root@example.com"], got["ops@example.com"]
	if cron == nil || plain == nil {
		t.Fatalf("delivered to %v", got)
	}

	raw := cron.Header.Get("Subject")
	subject, err := dec.DecodeHeader(raw)
	if err != nil || subject != "Cron <root@gw> /usr/local/bin/sicherung für /var" || !strings.HasPrefix(raw, "=?utf-8?q?") {
		t.Errorf("Subject %q decodes to %q (%v)", raw, subject, err)
	}
	for k, want := range map[string]string{"Mime-Version": "1.0", "Content-Type": "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "8bit", "From": "root (Cron Daemon)", "To": "root@example.com"} {
		if v := cron.Header.Get(k); v != want {
			t.Errorf("cron mail %s: %q, want %q", k, v, want)
		}
	}
	if r, want := cron.Header.Get("Received"), fmt.Sprintf("by gw.test (plcmail, from userid %d);", os.Getuid()); !strings.HasPrefix(r, want) {
		t.Errorf("Received %q, want it to start %q", r, want)
	}
	if body, _ := io.ReadAll(cron.Body); string(body) != "Pr\xc3\xbcfsumme falsch: 3 Dateien \xe2\x80\x93 bitte pr\xc3\xbcfen\r\n" {
		t.Errorf("cron mail body %q", body)
	}

	for k, want := range map[string]string{"Subject": "pressure low", "X-Plant": "press 1",
		"From": "<plc-gateway@example.com>", "To": "undisclosed-recipients:;"} {
		if v := plain.Header.Get(k); v != want {
			t.Errorf("obsolete-syntax mail %s: %q, want %q", k, v, want)
		}
	}
	if _, ok := plain.Header["Content-Type"]; ok {
		t.Errorf("ASCII mail got a Content-Type: %q", plain.Header.Get("Content-Type"))
	}
	if body, _ := io.ReadAll(plain.Body); string(body) != "line 1\r\n" {
		t.Errorf("obsolete-syntax mail body %q", body)
	}
}

// TestSendLongLineDelivered: a script pipes a 5000-character line (a log
// excerpt, a CSV row) to sendmail. Exit 0 must mean delivered: the
// upstream refuses lines over 998 octets with "500 Line too long" as
// providers do, and still receives the message, whose body decodes to the
// text as piped. Before send's repair mended long lines, the provider's
// 500 dead-lettered it after exit 0.
func TestSendLongLineDelivered(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true, Data: func(m mailertest.Received) error {
		for i, l := range bytes.Split(m.Data, []byte("\r\n")) {
			if len(l) > 998 {
				return mailertest.Reply(500, fmt.Sprintf("Line too long (line %d: %d octets)", i+1, len(l)))
			}
		}
		return nil
	}})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	path := c.write(t)

	var line strings.Builder
	for i := 0; line.Len() < 5000; i++ {
		fmt.Fprintf(&line, "%d;", i)
	}
	text := line.String()[:5000]
	if r := runCLI(t, "To: ops@example.com\nSubject: Messwerte\n\n"+text+"\nEnde\n", "sendmail", "-c", path, "-t"); r.code != 0 {
		t.Fatalf("sendmail: %+v", r)
	}
	srv := startServe(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(u.Messages()) == 0 && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	msgs := u.Messages()
	if len(msgs) == 0 {
		t.Fatalf("upstream received nothing; serve said:\n%s", srv.logs())
	}
	m, err := mail.ReadMessage(bytes.NewReader(msgs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if cte := m.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Errorf("Content-Transfer-Encoding %q", cte)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil || string(body) != text+"\r\nEnde\r\n" {
		t.Errorf("decoded body %.80q... (%v), want the line as piped", body, err)
	}
}
