package message

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"

	"github.com/plcmail/plcmail/message/messagetest"
)

// wireLines is what SMTP makes of a body: every bare LF becomes CRLF.
func wireLines(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

func TestDowngradeSinglePart(t *testing.T) {
	long := strings.Repeat("Kühlwasser über 90 °C; ", 12) // one line of 290 bytes
	for _, tc := range []struct {
		name   string
		header string // with its terminating empty line
		body   string
		// the header the upstream must get; "" means header unchanged
		wantHeader string
		wantNote   string
	}{
		{
			name:       "repaired by the listener",
			header:     "From: plc@example.com\r\nSubject: Alarm\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
			body:       "Störung Pumpe 3\r\nTemperatur 95 °C\r\n",
			wantHeader: "From: plc@example.com\r\nSubject: Alarm\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
			wantNote:   "1 part(s) re-encoded quoted-printable",
		},
		{
			name:       "long line, trailing space, =, dot, tab, lone CR",
			header:     "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8BIT\r\nMIME-Version: 1.0\r\n\r\n",
			body:       long + "\r\n.ünd = gleich \r\n\tTab\rCR ü\r\n\r\nletzte Zeile ohne Ende ü",
			wantHeader: "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n\r\n",
		},
		{
			name:       "no MIME fields at all",
			header:     "Subject: x\r\n\r\n",
			body:       "Füllstand niedrig\r\n",
			wantHeader: "Subject: x\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		},
		{
			name:       "header ended by a text line, not an empty one (read as Repair does)",
			header:     "Subject: x\r\nMIME-Version: 1.0\r\n",
			body:       "Kühlung ausgefallen\r\n",
			wantHeader: "Subject: x\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		},
		{
			name:       "Latin-1 body without Content-Type gets no charset guess",
			header:     "Subject: x\r\nMIME-Version: 1.0\r\n\r\n",
			body:       "F\xfcllstand\r\n",
			wantHeader: "Subject: x\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
		},
		{
			name:       "bare LF lines",
			header:     "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
			body:       "eins ä\nzwei\n",
			wantHeader: "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
		},
		{
			name:       "folded Content-Transfer-Encoding is replaced whole",
			header:     "MIME-Version: 1.0\r\nContent-Transfer-Encoding:\r\n 8bit\r\nX-Other: kept\r\n\r\n",
			body:       "ä\r\n",
			wantHeader: "MIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\nX-Other: kept\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		},
		{
			name:       "8-bit Subject is encoded, 8-bit From is left and noted",
			header:     "From: Jürgen <plc@example.com>\r\nSubject: Störung Kühlung Halle 3 Linie 7 Pumpe 12 Temperatur über Grenzwert\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
			body:       "ö\r\n",
			wantHeader: "From: Jürgen <plc@example.com>\r\nSubject: =?utf-8?q?St=C3=B6rung_K=C3=BChlung_Halle_3_Linie_7_Pumpe_12_Temperatur_?=\r\n =?utf-8?q?=C3=BCber_Grenzwert?=\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
			wantNote:   "1 part(s) re-encoded quoted-printable; RFC 2047-encoded Subject; 8-bit header field from left as is; the message still holds 8-bit bytes and is sent so",
		},
		{
			name:       "8-bit Subject with an encoded-word in it is left",
			header:     "Subject: =?utf-8?q?x?= ü\r\n\r\n",
			body:       "plain\r\n",
			wantHeader: "Subject: =?utf-8?q?x?= ü\r\n\r\n",
			wantNote:   "8-bit header field subject left as is; the message still holds 8-bit bytes and is sent so",
		},
		{
			name:       "8-bit in a base64 part is left and noted",
			header:     "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			body:       "w\xb6\r\n",
			wantHeader: "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			wantNote:   "8-bit bytes in a part declared \"base64\" left as is; the message still holds 8-bit bytes and is sent so",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.header + tc.body)
			orig := bytes.Clone(in)
			out, note := Downgrade8Bit(in)
			if !bytes.Equal(in, orig) {
				t.Fatal("input modified (the spool copy must stay as it was)")
			}
			t.Logf("note: %s\n%s", note, out)
			if tc.wantNote != "" && note != tc.wantNote {
				t.Errorf("note\n got %q\nwant %q", note, tc.wantNote)
			}
			if !bytes.HasPrefix(out, []byte(tc.wantHeader)) {
				t.Fatalf("header\n got %q\nwant %q", out[:min(len(out), len(tc.wantHeader)+40)], tc.wantHeader)
			}
			body := out[len(tc.wantHeader):]
			if strings.Contains(tc.wantHeader, "quoted-printable") {
				messagetest.CheckQPLines(t, body)
				if got, want := messagetest.DecodeQP(t, body), wireLines([]byte(tc.body)); !bytes.Equal(got, want) {
					t.Errorf("decoded body\n got %q\nwant %q", got, want)
				}
			} else if !bytes.Equal(body, []byte(tc.body)) {
				t.Errorf("body changed: %q", body)
			}
			if m, err := mail.ReadMessage(bytes.NewReader(out)); err != nil {
				t.Errorf("net/mail cannot read the result: %v", err)
			} else if s := m.Header.Get("Subject"); strings.HasPrefix(s, "=?") && !strings.Contains(s, "=?utf-8?q?x?=") {
				if dec, err := new(mime.WordDecoder).DecodeHeader(s); err != nil || !strings.HasPrefix(tc.header[strings.Index(tc.header, "Subject: ")+9:], dec) {
					t.Errorf("Subject decodes to %q, %v", dec, err)
				}
			}
		})
	}
}

func TestDowngradeLeaves7BitAlone(t *testing.T) {
	for _, in := range [][]byte{
		nil,
		[]byte("Subject: x\r\n\r\nplain ASCII\r\n"),
		[]byte("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nK=C3=BChlung\r\n"),
		[]byte("no header at all, bare LF\nand a lone CR\r and a NUL \x00\n"),
	} {
		out, note := Downgrade8Bit(in)
		if !bytes.Equal(out, in) || note != "" {
			t.Errorf("Downgrade8Bit(%q) = %q, %q; want it untouched", in, out, note)
		}
		if len(in) > 0 && &out[0] != &in[0] {
			t.Errorf("7-bit message copied instead of passed through")
		}
	}
}

// leaves walks a MIME tree with mime/multipart (an independent parser)
// and returns each leaf's decoded content.
func leaves(t *testing.T, h mail.Header, body io.Reader) []string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mt = "text/plain"
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		var out []string
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatalf("multipart: %v", err)
			}
			out = append(out, leaves(t, mail.Header(p.Header), p)...)
		}
	case mt == "message/rfc822":
		m, err := mail.ReadMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		return leaves(t, m.Header, m.Body)
	}
	if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return []string{string(b)}
}

func TestDowngradeMultipart(t *testing.T) {
	in := []byte(messagetest.Mixed8Bit)
	out, note := Downgrade8Bit(in)
	t.Logf("note: %s\n%s", note, out)
	if Has8Bit(out) {
		t.Fatal("8-bit bytes left")
	}
	if !bytes.Equal(in, []byte(messagetest.Mixed8Bit)) {
		t.Fatal("input modified")
	}
	want := "4 part(s) re-encoded quoted-printable; RFC 2047-encoded Content-Description"
	if note != want {
		t.Errorf("note %q, want %q", note, want)
	}
	messagetest.CheckQPLines(t, out)
	// Untouched bytes stay: the header (but for the relabelled encoding),
	// preamble, the 7-bit CSV part with its padded delimiter, epilogue.
	for _, keep := range []string{
		"From: plc@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\npreamble\r\n--b1\r\n",
		"--b1\r\nContent-Type: text/csv\r\n\r\nt,value\r\n1,7\r\n--b1  \r\n",
		"Content-Description: =?utf-8?q?K=C3=BChlung?=\r\n",
		"--b2--\r\n--b1\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nSubject: inner\r\n",
		"\r\n--b1--\r\nepilogue\r\n",
	} {
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("output lacks %q", keep)
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	got := leaves(t, m.Header, m.Body)
	wantLeaves := []string{"Störung an Pumpe 3", "t,value\r\n1,7", "Kühlung", "<p>Kühlung</p>\r\n", "innen ä"}
	if strings.Join(got, "|") != strings.Join(wantLeaves, "|") {
		t.Errorf("decoded leaves\n got %q\nwant %q", got, wantLeaves)
	}
	// The original, parsed the same way, has the same leaves: the
	// conversion changed the encoding, not the content.
	m0, _ := mail.ReadMessage(strings.NewReader(messagetest.Mixed8Bit))
	if orig := leaves(t, m0.Header, m0.Body); strings.Join(orig, "|") != strings.Join(got, "|") {
		t.Errorf("original leaves %q differ from converted %q", orig, got)
	}
}

func TestDowngradeMultipartOddities(t *testing.T) {
	for _, tc := range []struct{ name, in, note, contains string }{
		{"no boundary", "Content-Type: multipart/mixed\r\n\r\nä\r\n",
			"multipart/mixed without boundary left as is; the message still holds 8-bit bytes and is sent so", "\r\n\r\nä\r\n"},
		{"8-bit preamble", "Content-Type: multipart/mixed; boundary=b\r\n\r\nä\r\n--b\r\n\r\nü\r\n--b--\r\n",
			"1 part(s) re-encoded quoted-printable; 8-bit multipart preamble left as is; the message still holds 8-bit bytes and is sent so",
			"\r\n\r\nä\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=BC\r\n--b--\r\n"},
		{"no close delimiter", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nü\r\n",
			"1 part(s) re-encoded quoted-printable", "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=BC\r\n"},
		{"part without header or empty line", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nText ü\r\n--b--\r\n",
			"1 part(s) re-encoded quoted-printable", "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nText =C3=BC\r\n--b--"},
		{"boundary prefix is not a delimiter", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--bx ü\r\n--b--\r\n",
			"1 part(s) re-encoded quoted-printable", "\r\n\r\n--bx =C3=BC\r\n--b--\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, note := Downgrade8Bit([]byte(tc.in))
			t.Logf("%s", out)
			if note != tc.note {
				t.Errorf("note %q, want %q", note, tc.note)
			}
			if !bytes.Contains(out, []byte(tc.contains)) {
				t.Errorf("output lacks %q", tc.contains)
			}
		})
	}
	// Deep nesting stops at maxDowngradeDepth instead of recursing on.
	var b strings.Builder
	for i := 0; i < 200; i++ {
		b.WriteString("Content-Type: message/rfc822\r\n\r\n")
	}
	b.WriteString("\r\nä\r\n")
	if _, note := Downgrade8Bit([]byte(b.String())); !strings.Contains(note, "nesting deeper") {
		t.Errorf("deep nesting note %q", note)
	}
}

func FuzzDowngrade(f *testing.F) {
	f.Add([]byte(messagetest.Mixed8Bit))
	f.Add([]byte("Subject: ü\r\n\r\nä\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nü\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		out, _ := Downgrade8Bit(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("input modified")
		}
		if !Has8Bit(in) && !bytes.Equal(out, in) {
			t.Fatal("7-bit input changed")
		}
	})
}

// BenchmarkDowngrade measures the conversion of a typical repaired alarm
// (4 KiB, German text) and the check that passes a 7-bit message through.
func BenchmarkDowngrade(b *testing.B) {
	body := strings.Repeat("Störung Kühlkreislauf Linie 3: Temperatur 95 °C, Grenzwert 90 °C.\r\n", 60)
	msg := []byte("From: plc@example.com\r\nSubject: Alarm\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body)
	ascii := []byte(strings.NewReplacer("ö", "oe", "ü", "ue", "°", "").Replace(string(msg)))
	b.Run("8bit", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			Downgrade8Bit(msg)
		}
	})
	b.Run("7bit", func(b *testing.B) {
		b.SetBytes(int64(len(ascii)))
		b.ReportAllocs()
		for b.Loop() {
			Downgrade8Bit(ascii)
		}
	})
	b.Run("multipart", func(b *testing.B) {
		b.SetBytes(int64(len(messagetest.Mixed8Bit)))
		b.ReportAllocs()
		for b.Loop() {
			Downgrade8Bit([]byte(messagetest.Mixed8Bit))
		}
	})
}
