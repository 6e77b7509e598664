package message

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"reflect"
	"strings"
	"testing"
	"time"
)

var repairNow = time.Date(2026, 11, 21, 8, 30, 0, 0, time.FixedZone("CET", 3600))

const testReceived = "from 192.168.1.177 ([192.168.1.177])\r\n\tby gw.example.com (plcmail) with SMTP;\r\n\tSat, 21 Nov 2026 08:30:00 +0100"

// smtpInfo is what the SMTP listener passes.
func smtpInfo() RepairInfo {
	return RepairInfo{
		From:     "plc@example.com",
		Hostname: "gw.example.com",
		Fallback: "gateway@example.com",
		Received: testReceived,
		Now:      repairNow,
	}
}

// TestRepair checks each repair rule on the parsed result (net/mail, as a
// provider would read it) and, where bytes matter, on the raw output.
func TestRepair(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		info    func(*RepairInfo)
		header  map[string]string // field -> want value, decoded ("*" = present)
		absent  []string
		body    string
		contain []string // raw substrings of the output
		exclude []string // raw substrings the output must not have
	}{
		{
			name: "Arduino: subject directly followed by text",
			in:   "Subject: Alarm\r\nPump 3 failed\r\n",
			header: map[string]string{"Subject": "Alarm", "From": "<plc@example.com>", "To": "undisclosed-recipients:;",
				"Date": "Sat, 21 Nov 2026 08:30:00 +0100", "Message-Id": "*", "Received": "*"},
			absent: []string{"Content-Type", "Mime-Version"},
			body:   "Pump 3 failed\r\n",
		},
		{
			name:   "bare LF everywhere",
			in:     "Subject: Alarm\nTo: ops@example.com\n\nline 1\nline 2\n",
			header: map[string]string{"Subject": "Alarm", "To": "ops@example.com"},
			body:   "line 1\r\nline 2\r\n",
		},
		{
			name:    "bare CR is kept",
			in:      "Subject: a\r\n\r\nx\ry\r\n",
			body:    "x\ry\r\n",
			contain: []string{"\r\n\r\nx\ry\r\n"},
		},
		{
			name:   "no header at all",
			in:     "Pump 3 failed\r\nat 08:29\r\n",
			header: map[string]string{"Subject": "", "From": "<plc@example.com>"},
			body:   "Pump 3 failed\r\nat 08:29\r\n",
		},
		{
			name:   "empty message",
			in:     "",
			header: map[string]string{"Date": "*", "Message-Id": "*", "From": "*", "To": "*"},
			body:   "",
		},
		{
			name: "complete message is kept",
			in: "Date: Fri, 20 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x@y>\r\nFrom: Press <press@example.com>\r\n" +
				"Cc: ops@example.com\r\nSubject: ok\r\n\r\nbody\r\n",
			header: map[string]string{"Date": "Fri, 20 Nov 2026 10:00:00 +0000", "Message-Id": "<x@y>",
				"From": "Press <press@example.com>", "Cc": "ops@example.com"},
			absent: []string{"To"},
			body:   "body\r\n",
		},
		{
			name:    "folded header and text line that looks like a header",
			in:      "Subject: long\r\n subject\r\nTemp: 85C\r\nPump 3: failed\r\n",
			header:  map[string]string{"Subject": "long subject", "Temp": "85C"},
			body:    "Pump 3: failed\r\n",
			contain: []string{"Subject: long\r\n subject\r\n"},
		},
		{
			name:    "obsolete blank before the colon: a header field, written without the blank",
			in:      "Subject : pressure low\nDate\t: Fri, 20 Nov 2026 10:00:00 +0000\nX-Long :\n folded\n\nbody\n",
			header:  map[string]string{"Subject": "pressure low", "Date": "Fri, 20 Nov 2026 10:00:00 +0000", "X-Long": "folded"},
			body:    "body\r\n",
			contain: []string{"Subject: pressure low\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\nX-Long:\r\n folded\r\n"},
			exclude: []string{"Date: Sat"},
		},
		{
			name:   "null sender gets the gateway's From",
			in:     "Subject: x\r\n\r\ny\r\n",
			info:   func(i *RepairInfo) { i.From = "" },
			header: map[string]string{"From": "<gateway@example.com>"},
			body:   "y\r\n",
		},
		{
			name:    "added fields come in a fixed order after the client's",
			in:      "Subject: x\r\n\r\ny\r\n",
			body:    "y\r\n",
			contain: []string{"Subject: x\r\nDate: Sat, 21 Nov 2026 08:30:00 +0100\r\nMessage-ID: <20261121073000."},
			exclude: []string{"MIME-Version"},
		},
		{
			name:    "From gets the -F name",
			in:      "Subject: x\r\n\r\ny\r\n",
			info:    func(i *RepairInfo) { i.FromName = "Cron Daemon" },
			header:  map[string]string{"From": "\"Cron Daemon\" <plc@example.com>"},
			body:    "y\r\n",
			contain: []string{"From: \"Cron Daemon\" <plc@example.com>\r\nTo: undisclosed-recipients:;\r\n"},
		},
		{
			name: "8-bit UTF-8 text without MIME",
			in:   "Subject: St\xc3\xb6rung Pumpe\r\nDruck zu hoch: 7 bar \xe2\x80\x93 bitte pr\xc3\xbcfen\r\n",
			header: map[string]string{"Subject": "Störung Pumpe", "Mime-Version": "1.0",
				"Content-Type": "text/plain; charset=utf-8", "Content-Transfer-Encoding": "8bit"},
			body:    "Druck zu hoch: 7 bar \xe2\x80\x93 bitte pr\xc3\xbcfen\r\n",
			contain: []string{"Subject: =?utf-8?q?St=C3=B6rung_Pumpe?=\r\n"},
		},
		{
			name: "8-bit Latin-1 text",
			in:   "Subject: St\xf6rung\r\n\r\nTemperatur 85\xb0C\r\n",
			header: map[string]string{"Subject": "Störung",
				"Content-Type": "text/plain; charset=iso-8859-1", "Content-Transfer-Encoding": "8bit"},
			body: "Temperatur 85\xb0C\r\n",
		},
		{
			name:   "8-bit with Content-Type but no encoding",
			in:     "Content-Type: text/plain; charset=utf-8\r\n\r\n\xc3\xa4\r\n",
			header: map[string]string{"Content-Type": "text/plain; charset=utf-8", "Content-Transfer-Encoding": "8bit", "Mime-Version": "1.0"},
			body:   "\xc3\xa4\r\n",
		},
		{
			name:    "8-bit Subject only: encoded, body not declared",
			in:      "Subject: \xc3\x9cberdruck\r\n\r\nplain\r\n",
			header:  map[string]string{"Subject": "Überdruck"},
			absent:  []string{"Content-Type", "Mime-Version"},
			body:    "plain\r\n",
			contain: []string{"Subject: =?utf-8?q?=C3=9Cberdruck?=\r\n"},
		},
		{
			name:    "8-bit Subject written with a blank before the colon",
			in:      "Subject : St\xc3\xb6rung\r\n\r\nx\r\n",
			header:  map[string]string{"Subject": "Störung"},
			body:    "x\r\n",
			contain: []string{"Subject: =?utf-8?q?St=C3=B6rung?=\r\n"},
		},
		{
			name:    "folded 8-bit Subject is unfolded before encoding",
			in:      "Subject: St\xc3\xb6rung\r\n Pumpe 3\r\n\r\nx\r\n",
			header:  map[string]string{"Subject": "Störung Pumpe 3"},
			body:    "x\r\n",
			contain: []string{"Subject: =?utf-8?q?St=C3=B6rung_Pumpe_3?=\r\nDate: "},
		},
		{
			name:    "long 8-bit Subject: one encoded-word per line",
			in:      "Subject: " + strings.Repeat("St\xc3\xb6rung ", 40) + "\r\n\r\nx\r\n",
			header:  map[string]string{"Subject": strings.TrimSpace(strings.Repeat("Störung ", 40))},
			body:    "x\r\n",
			contain: []string{"?=\r\n =?utf-8?q?"},
			exclude: []string{"?= =?"},
		},
		{
			name:    "continuation line without a header is body",
			in:      " indented first line\r\nsecond\r\n",
			header:  map[string]string{"From": "*"},
			body:    " indented first line\r\nsecond\r\n",
			contain: []string{"\r\n\r\n indented first line\r\n"},
		},
		{
			name:   "last line without newline",
			in:     "Subject: x\r\n\r\nno newline",
			header: map[string]string{"Subject": "x"},
			body:   "no newline\r\n",
		},
		{
			name:    "Bcc alone: To is added, Bcc kept for SMTP clients",
			in:      "Bcc: audit@example.com\r\n\r\nx\r\n",
			header:  map[string]string{"To": "undisclosed-recipients:;", "Bcc": "audit@example.com"},
			body:    "x\r\n",
			contain: []string{"Bcc: audit@example.com\r\n"},
		},
		{
			name:    "DropBcc removes every Bcc field with its continuation lines",
			in:      "To: ops@example.com\r\nbcc: a@example.com,\r\n b@example.com\r\nSubject: s\r\nBCC : c@example.com\r\n\r\nx\r\n",
			info:    func(i *RepairInfo) { i.DropBcc = true },
			header:  map[string]string{"To": "ops@example.com", "Subject": "s"},
			absent:  []string{"Bcc"},
			body:    "x\r\n",
			exclude: []string{"a@example.com", " b@example.com", " c@example.com"},
		},
		{
			name:    "no Received unless asked",
			in:      "Subject: x\r\n\r\ny\r\n",
			info:    func(i *RepairInfo) { i.Received = "" },
			absent:  []string{"Received"},
			body:    "y\r\n",
			exclude: []string{"Received"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := smtpInfo()
			if tt.info != nil {
				tt.info(&info)
			}
			out := Repair([]byte(tt.in), info)
			if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
				t.Errorf("bare LF in output %q", out)
			}
			if info.Received != "" && !bytes.HasPrefix(out, []byte("Received: "+testReceived+"\r\n")) {
				t.Errorf("Received is not first: %q", out)
			}
			for _, s := range tt.contain {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.exclude {
				if bytes.Contains(out, []byte(s)) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
			m, err := mail.ReadMessage(bytes.NewReader(out))
			if err != nil {
				t.Fatalf("net/mail cannot parse %q: %v", out, err)
			}
			dec := new(mime.WordDecoder)
			for k, want := range tt.header {
				got, err := dec.DecodeHeader(m.Header.Get(k))
				if err != nil {
					t.Errorf("%s: %v", k, err)
				}
				if _, present := m.Header[k]; want == "*" && !present || want != "*" && got != want {
					t.Errorf("%s = %q, want %q\n%s", k, got, want, out)
				}
			}
			for _, k := range tt.absent {
				if _, ok := m.Header[k]; ok {
					t.Errorf("%s added: %q", k, m.Header.Get(k))
				}
			}
			if _, err := m.Header.AddressList("From"); err != nil {
				t.Errorf("From: %v", err)
			}
			if !strings.Contains(tt.in, "Date") {
				if _, err := m.Header.Date(); err != nil {
					t.Errorf("Date: %v", err)
				}
			}
			if id := m.Header.Get("Message-Id"); !strings.HasSuffix(id, "@gw.example.com>") && !strings.Contains(tt.in, "Message-ID") {
				t.Errorf("Message-ID %q", id)
			}
			for _, l := range strings.Split(string(out), "\r\n") {
				if len(l) > 998 {
					t.Errorf("line of %d characters: %.60q...", len(l), l)
				}
			}
			body, _ := io.ReadAll(m.Body)
			if string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
		})
	}
}

// TestRepairExact pins the whole output for the listener's most common
// input, so that moving repair between packages cannot change a byte.
func TestRepairExact(t *testing.T) {
	out := string(Repair([]byte("Subject: Alarm\r\nPump 3 failed\r\n"), smtpInfo()))
	i := strings.Index(out, "Message-ID: <")
	j := strings.Index(out[i:], "\r\n")
	out = out[:i] + "Message-ID: ID" + out[i+j:]
	want := "Received: " + testReceived + "\r\n" +
		"Subject: Alarm\r\n" +
		"Date: Sat, 21 Nov 2026 08:30:00 +0100\r\n" +
		"Message-ID: ID\r\n" +
		"From: <plc@example.com>\r\n" +
		"To: undisclosed-recipients:;\r\n" +
		"\r\n" +
		"Pump 3 failed\r\n"
	if out != want {
		t.Errorf("got\n%q\nwant\n%q", out, want)
	}
}

// TestRepairNoInjection: values that come from outside (the envelope
// sender, a -F name, the Received line built from HELO, the hostname) can
// never end their field and start another.
func TestRepairNoInjection(t *testing.T) {
	const evil = "\r\nBcc: evil@attacker.example\r\n"
	tests := []struct {
		name string
		info func(*RepairInfo)
	}{
		{"envelope sender", func(i *RepairInfo) { i.From = "plc@example.com" + evil }},
		{"envelope sender, bare LF", func(i *RepairInfo) { i.From = "plc@example.com\nBcc: evil@attacker.example" }},
		{"fallback", func(i *RepairInfo) { i.From, i.Fallback = "", "gw@example.com"+evil }},
		{"-F name", func(i *RepairInfo) { i.FromName = "Cron" + evil }},
		{"hostname", func(i *RepairInfo) { i.Hostname = "gw.example.com>" + evil }},
		{"Received", func(i *RepairInfo) { i.Received = "from x" + evil + "\tby y" }},
		{"Received, fold into a blank line", func(i *RepairInfo) { i.Received = "from x\r\n\t\r\n\r\nBcc: evil@attacker.example" }},
		{"Received, trailing fold", func(i *RepairInfo) { i.Received = "from x\r\n\t" }},
		{"Received, bare CR", func(i *RepairInfo) { i.Received = "from x\rBcc: evil@attacker.example" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := smtpInfo()
			tt.info(&info)
			out := Repair([]byte("Subject: s\r\n\r\nbody\r\n"), info)
			m, err := mail.ReadMessage(bytes.NewReader(out))
			if err != nil {
				t.Fatalf("unparsable: %v\n%q", err, out)
			}
			if _, ok := m.Header["Bcc"]; ok {
				t.Errorf("injected Bcc:\n%q", out)
			}
			head, _, _ := bytes.Cut(out, []byte("\r\n\r\n"))
			for _, l := range bytes.Split(head, []byte("\r\n")) {
				if bytes.ContainsAny(l, "\r\n") || len(bytes.TrimLeft(l, " \t")) == 0 {
					t.Errorf("bad header line %q in\n%q", l, out)
				}
				if bytes.HasPrefix(l, []byte("Bcc")) {
					t.Errorf("injected line %q", l)
				}
			}
			if body, _ := io.ReadAll(m.Body); string(body) != "body\r\n" {
				t.Errorf("body %q", body)
			}
		})
	}
	// A good fold stays a fold.
	out := Repair([]byte("x"), smtpInfo())
	if !bytes.HasPrefix(out, []byte("Received: "+testReceived+"\r\n")) {
		t.Errorf("Received changed: %q", out)
	}
}

func TestRecipientFields(t *testing.T) {
	in := "To: Ops <ops@x>,\n  boss@x\ncc: a@x\nSubject: s\nBCC : audit@x\nX-To: no@x\n\nTo: body@x\n"
	want := []Field{{"To", " Ops <ops@x>,  boss@x"}, {"cc", " a@x"}, {"BCC", " audit@x"}}
	if got := RecipientFields([]byte(in)); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// Where Repair sees no header, there are no recipient fields either.
	if got := RecipientFields([]byte("disk full\nTo: x@y\n")); got != nil {
		t.Errorf("no header: %q", got)
	}
}

func TestIsHeaderField(t *testing.T) {
	for l, want := range map[string]bool{
		"Subject: x": true, "X-A:": true, "Subject : obsolete": true, "Subject\t: obsolete": true, "Pump 3 failed": false,
		"Pump 3: failed": false, ": x": false, "": false, "St\xf6rung: x": false, "a:b": true, "From a@x Sat": false,
	} {
		if got := isHeaderField([]byte(l)); got != want {
			t.Errorf("isHeaderField(%q) = %v", l, got)
		}
	}
}

func FuzzRepair(f *testing.F) {
	f.Add([]byte("Subject: Alarm\r\nPump 3 failed\r\n"), false)
	f.Add([]byte("Subject: St\xf6rung\n \xe4\n\nx"), false)
	f.Add([]byte("To: a@x\nBcc: b@x\n c@x\n\nbody"), true)
	f.Fuzz(func(t *testing.T, in []byte, dropBcc bool) {
		info := smtpInfo()
		info.DropBcc = dropBcc
		out := Repair(in, info)
		if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
			t.Fatalf("bare LF in output %q", out)
		}
		if !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatalf("output does not end in CRLF: %q", out)
		}
		m, err := mail.ReadMessage(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("unparsable output for %q: %v\n%q", in, err, out)
		}
		for _, k := range []string{"Date", "Message-Id", "From"} {
			if m.Header.Get(k) == "" && !bytes.Contains(bytes.ToLower(in), []byte(strings.ToLower(k))) {
				t.Fatalf("%s missing in %q", k, out)
			}
		}
		if _, ok := m.Header["Bcc"]; ok && dropBcc {
			t.Fatalf("Bcc kept in %q", out)
		}
		RecipientFields(in)
	})
}

// BenchmarkRepair: the listener repairs every message before the fsync,
// so its cost is on the path to the 250.
func BenchmarkRepair(b *testing.B) {
	msg := []byte("Subject: St\xc3\xb6rung Pumpe 3\nTo: ops@example.com\n\n" + strings.Repeat("Druck zu hoch: 7 bar, bitte pr\xc3\xbcfen\n", 100))
	info := smtpInfo()
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		Repair(msg, info)
	}
}
