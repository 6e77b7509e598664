package smtpd_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/smtpd"
)

// Real clients that nobody on this project wrote: swaks, Python's smtplib
// and curl.

func TestSwaks(t *testing.T) {
	swaks := testenv.NeedTool(t, "swaks", "swaks")
	g := startGateway(t, func(o *smtpd.Options) {
		o.AllowedNetworks = prefixes("127.0.0.1/32")
		o.AllowedRecipients = []string{"example.com"}
		o.Accounts = map[string]string{"press1": "b0ard-Pa55"}
	})
	base := []string{"--server", "127.0.0.1", "--port", g.port, "--from", "plc@example.com", "--helo", "192.168.1.177", "--timeout", "20"}
	tests := []struct {
		name string
		args []string
		ok   bool
		want []string // substrings of the transcript
	}{
		{"plain", []string{"--to", "ops@example.com", "--header", "Subject: swaks plain", "--body", "hello from swaks"},
			true, []string{"250 2.0.0 OK: queued as"}},
		{"pipelining", []string{"--to", "ops@example.com", "--pipeline", "--header", "Subject: swaks pipelined"},
			true, []string{"250 2.0.0 OK: queued as"}},
		{"auth plain", []string{"--to", "ops@example.com", "--auth", "PLAIN", "--auth-user", "press1", "--auth-password", "b0ard-Pa55"},
			true, []string{"235 2.0.0", "250 2.0.0 OK: queued as"}},
		{"auth login", []string{"--to", "ops@example.com", "--auth", "LOGIN", "--auth-user", "press1", "--auth-password", "b0ard-Pa55"},
			true, []string{"334 VXNlcm5hbWU6", "235 2.0.0"}},
		{"auth wrong password", []string{"--to", "ops@example.com", "--auth", "LOGIN", "--auth-user", "press1", "--auth-password", "guess"},
			false, []string{"535 5.7.8"}},
		{"relay denied", []string{"--to", "victim@elsewhere.example"},
			false, []string{"550 5.7.1"}},
		{"from outside allowed_networks", []string{"--to", "ops@example.com", "--local-interface", "127.0.0.2"},
			false, []string{"554 5.7.1"}},
	}
	want := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runTool(t, "", swaks, append(append([]string{}, base...), tt.args...)...)
			if (err == nil) != tt.ok {
				t.Fatalf("swaks exit %v, want success %v:\n%s", err, tt.ok, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("transcript lacks %q:\n%s", w, out)
				}
			}
		})
		if tt.ok {
			want++
		}
	}
	q := g.queuedN(t, want)
	for _, m := range q {
		parse(t, m.Data)
	}
}

func TestPythonSmtplib(t *testing.T) {
	python := testenv.NeedTool(t, "python3", "python3")
	g := startGateway(t, func(o *smtpd.Options) {
		o.AllowedRecipients = []string{"example.com"}
		o.MaxMessageBytes = 65536
	})
	out, err := runTool(t, "", python, "testdata/smtplib_client.py", g.port)
	if err != nil {
		t.Fatalf("smtplib client: %v\n%s", err, out)
	}
	steps := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%v: %q", err, sc.Text())
		}
		steps[m["step"].(string)] = m
	}
	check := func(step, key string, want any) {
		t.Helper()
		if got := fmt.Sprint(steps[step][key]); got != fmt.Sprint(want) {
			t.Errorf("%s.%s = %v, want %v (all: %v)", step, key, got, want, steps[step])
		}
	}
	check("ehlo", "code", 250)
	check("send_message", "refused", map[string]any{})
	check("sendmail_raw", "refused", map[string]any{})
	check("relay", "code", 550)
	check("big", "code", 552)
	check("vrfy", "code", 252)
	if !strings.Contains(fmt.Sprint(steps["ehlo"]["features"]), "size") {
		t.Errorf("SIZE not advertised: %v", steps["ehlo"])
	}

	q := g.queuedN(t, 2)
	m, body := parse(t, q[0].Data)
	if subj, _ := new(mimeDecoder).DecodeHeader(m.Header.Get("Subject")); subj != "Störung Presse 1" || body != "Öldruck zu niedrig.\r\n" {
		t.Errorf("send_message: subject %q body %q\n%s", subj, body, q[0].Data)
	}
	m, body = parse(t, q[1].Data)
	if subj, _ := new(mimeDecoder).DecodeHeader(m.Header.Get("Subject")); subj != "Temperatur" {
		t.Errorf("raw: subject %q\n%s", subj, q[1].Data)
	}
	if !strings.HasPrefix(body, "Kessel 2: 95°C\r\nbitte prüfen\r\n") || m.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("raw: body %q content-type %q\n%s", body, m.Header.Get("Content-Type"), q[1].Data)
	}
}

func TestCurl(t *testing.T) {
	curl := testenv.NeedTool(t, "curl", "curl")
	g := startGateway(t, nil)
	msg := filepath.Join(t.TempDir(), "msg.txt")
	// Bare LF, as a shell script on the gateway would write it.
	if err := os.WriteFile(msg, []byte("Subject: curl upload\nFrom: Press 2 <press2@example.com>\n\nline 1\nline 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, "", curl, "-sS", "-v", "--max-time", "20",
		"--url", "smtp://127.0.0.1:"+g.port+"/192.168.1.50",
		"--mail-from", "press2@example.com", "--mail-rcpt", "ops@example.com", "--mail-rcpt", "shift@example.com",
		"--upload-file", msg)
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if !strings.Contains(out, "250 2.0.0 OK: queued as") {
		t.Errorf("no queued reply in curl's transcript:\n%s", out)
	}
	q := g.queued()
	if len(q) != 1 || len(q[0].Envelope.To) != 2 {
		t.Fatalf("queued %+v", q)
	}
	m, body := parse(t, q[0].Data)
	if m.Header.Get("Subject") != "curl upload" || m.Header.Get("From") != "Press 2 <press2@example.com>" || !strings.HasPrefix(body, "line 1\r\nline 2\r\n") {
		t.Errorf("subject %q from %q body %q", m.Header.Get("Subject"), m.Header.Get("From"), body)
	}
	if !strings.Contains(m.Header.Get("Received"), "from 192.168.1.50") {
		t.Errorf("Received %q", m.Header.Get("Received"))
	}
}

// TestPythonSmtplibNoHelo: smtplib's low-level commands, which send no
// HELO and use lower case, plus a bare HELO, trailing blanks and addresses
// without angle brackets (testdata/smtplib_nohelo.py).
func TestPythonSmtplibNoHelo(t *testing.T) {
	python := testenv.NeedTool(t, "python3", "python3")
	g := startGateway(t, nil)
	out, err := runTool(t, "", python, "testdata/smtplib_nohelo.py", g.port)
	if err != nil {
		t.Fatalf("smtplib client: %v\n%s", err, out)
	}
	var got []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m struct {
			Step string
			Code int
			Msg  string
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%v: %q", err, sc.Text())
		}
		got = append(got, fmt.Sprintf("%s=%d", m.Step, m.Code))
	}
	want := "mail=250 rcpt=250 data=250 helo_bare=501 rset_blank=250 mail_blank_nobrackets=250 rcpt_nobrackets=250 data_blank=354 data_end=250 quit=221"
	if strings.Join(got, " ") != want {
		t.Fatalf("replies\n got %s\nwant %s\n%s", strings.Join(got, " "), want, out)
	}
	q := g.queuedN(t, 2)
	for _, m := range q {
		h, _ := parse(t, m.Data)
		if r := h.Header.Get("Received"); !strings.HasPrefix(r, "from [127.0.0.1] ([127.0.0.1])") {
			t.Errorf("Received %q", r)
		}
		if m.Envelope.From != "plc@example.com" || len(m.Envelope.To) != 1 || m.Envelope.To[0] != "ops@example.com" {
			t.Errorf("envelope %+v", m.Envelope)
		}
	}
}
