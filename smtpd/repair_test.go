package smtpd

import (
	"bytes"
	"io"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 21, 8, 30, 0, 0, time.FixedZone("CET", 3600))

func testInfo() repairInfo {
	return repairInfo{
		From:     "plc@example.com",
		Hostname: "gw.example.com",
		Fallback: "gateway@example.com",
		Received: "from 192.168.1.177 ([192.168.1.177])\r\n\tby gw.example.com (plcmail) with SMTP;\r\n\tSat, 21 Nov 2026 08:30:00 +0100",
		Now:      testNow,
	}
}

func TestRepair(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		info    func(*repairInfo)
		header  map[string]string // field -> want value ("*" = present)
		absent  []string
		body    string
		contain []string // raw substrings of the output
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
			name:   "null sender gets the gateway's From",
			in:     "Subject: x\r\n\r\ny\r\n",
			info:   func(i *repairInfo) { i.From = "" },
			header: map[string]string{"From": "<gateway@example.com>"},
			body:   "y\r\n",
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := testInfo()
			if tt.info != nil {
				tt.info(&info)
			}
			out := repair([]byte(tt.in), info)
			if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
				t.Errorf("bare LF in output %q", out)
			}
			if !bytes.HasPrefix(out, []byte("Received: from 192.168.1.177")) {
				t.Errorf("Received is not first: %q", out)
			}
			for _, s := range tt.contain {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("output lacks %q:\n%s", s, out)
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
			if _, err := m.Header.Date(); err != nil {
				t.Errorf("Date: %v", err)
			}
			if _, err := m.Header.AddressList("From"); err != nil {
				t.Errorf("From: %v", err)
			}
			if id := m.Header.Get("Message-Id"); !strings.HasSuffix(id, "@gw.example.com>") && !strings.Contains(tt.in, "Message-ID") {
				t.Errorf("Message-ID %q", id)
			}
			body, _ := io.ReadAll(m.Body)
			if string(body) != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
		})
	}
}

func TestIsHeaderField(t *testing.T) {
	for l, want := range map[string]bool{
		"Subject: x": true, "X-A:": true, "Subject : obsolete": true, "Pump 3 failed": false,
		"Pump 3: failed": false, ": x": false, "": false, "St\xf6rung: x": false, "a:b": true,
	} {
		if got := isHeaderField([]byte(l)); got != want {
			t.Errorf("isHeaderField(%q) = %v", l, got)
		}
	}
}

func FuzzRepair(f *testing.F) {
	f.Add([]byte("Subject: Alarm\r\nPump 3 failed\r\n"))
	f.Add([]byte("Subject: St\xf6rung\n \xe4\n\nx"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := repair(in, testInfo())
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
			if m.Header.Get(k) == "" && !bytes.Contains(bytes.ToLower(in), []byte(strings.ToLower(k)+":")) {
				t.Fatalf("%s missing in %q", k, out)
			}
		}
	})
}
