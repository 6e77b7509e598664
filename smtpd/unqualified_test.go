package smtpd_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/smtpd"
)

// TestPythonSmtplibUnqualified: Python's smtplib with bare names as sender
// and recipient (testdata/smtplib_unqualified.py).
func TestPythonSmtplibUnqualified(t *testing.T) {
	python := testenv.NeedTool(t, "python3", "python3")
	g := startGateway(t, func(o *smtpd.Options) { o.AllowedRecipients = []string{"example.com"} })
	out, err := runTool(t, "", python, "testdata/smtplib_unqualified.py", g.port)
	if err != nil {
		t.Fatalf("smtplib client: %v\n%s", err, out)
	}
	steps := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%v: %q", err, sc.Text())
		}
		steps[m["step"].(string)] = fmt.Sprint(m)
	}
	for step, want := range map[string]string{
		"sender": "map[refused:map[] step:sender]",
		"mixed":  "map[refused:map[ops:[553 5.1.3 Recipient must be a full address user@domain]] step:mixed]",
		"only":   "map[code:553 msg:5.1.3 Recipient must be a full address user@domain step:only]",
	} {
		if steps[step] != want {
			t.Errorf("%s: %s, want %s", step, steps[step], want)
		}
	}
	q := g.queuedN(t, 2)
	for i, wantTo := range []string{"ops@example.com", "shift@example.com"} {
		if q[i].Envelope.From != "plc@gw.test" || len(q[i].Envelope.To) != 1 || q[i].Envelope.To[0] != wantTo {
			t.Errorf("message %d: envelope %+v", i, q[i].Envelope)
		}
		m, _ := parse(t, q[i].Data)
		if m.Header.Get("From") != "<plc@gw.test>" {
			t.Errorf("message %d: From %q", i, m.Header.Get("From"))
		}
	}
}

// TestUnqualifiedEndToEnd: the blind bare-LF sketch with "MAIL FROM:<plc>"
// and no From field, through the spool and the delivery queue to a real TLS
// upstream: the provider sees plc@gateway.hostname in the envelope and in
// the From field, never the bare name or the internal marker.
func TestUnqualifiedEndToEnd(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	opts := testOptions()
	opts.Hostname = "press-hall.example.com"
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	addr, _ := startRelay(t, opts, u, log)

	out := converse(t, addr, "",
		"MAIL FROM:<plc>\nRCPT TO:<ops@example.com>\nDATA\nSubject: Alarm\nPump 3 failed\n.\nQUIT\n")
	if got := codeList(out); got != "220 250 250 354 250 221" {
		t.Fatalf("dialogue: %q\n%s", got, out)
	}
	got := u.Wait(t, 1, 15*time.Second)[0]
	if got.From != "plc@press-hall.example.com" || len(got.To) != 1 || got.To[0] != "ops@example.com" {
		t.Errorf("upstream envelope %q -> %v", got.From, got.To)
	}
	m, body := parse(t, got.Data)
	if m.Header.Get("From") != "<plc@press-hall.example.com>" || m.Header.Get("Subject") != "Alarm" || body != "Pump 3 failed\r\n" {
		t.Errorf("as received upstream:\n%s", got.Data)
	}
	if strings.Contains(string(got.Data), ".invalid") {
		t.Errorf("marker domain reached the provider:\n%s", got.Data)
	}
}

// TestUnqualifiedMarkerFromClient: a client that writes the internal marker
// domain itself gains nothing: a bare name with it is qualified like one
// without, a recipient with it is refused, and a local part that already
// has an "@" is refused.
func TestUnqualifiedMarkerFromClient(t *testing.T) {
	g := startGateway(t, nil)
	s := open(t, g.addr, "")
	s.cmd("HELO board", "250")
	s.cmd("MAIL FROM:<a@b@unqualified.plcmail.invalid>", "553 5.1.3")
	s.cmd("MAIL FROM:<plc@Unqualified.PLCmail.invalid>", "250")
	s.cmd("RCPT TO:<ops@unqualified.plcmail.invalid>", "553 5.1.3 Recipient must be a full address")
	s.cmd("RCPT TO:<ops@example.com>", "250")
	s.cmd("DATA", "354")
	s.send("Subject: x\r\n.\r\n")
	s.expect("250")
	s.cmd("QUIT", "221")
	if q := g.queued(); len(q) != 1 || q[0].Envelope.From != "plc@gw.test" {
		t.Fatalf("queued %+v", q)
	}
}
