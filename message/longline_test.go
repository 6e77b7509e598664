package message

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"regexp"
	"strings"
	"testing"
)

// longLines returns the lines of b (split at LF, one CR before it not
// counted) that are over 998 octets, as a provider counts them.
func longLines(b []byte) []int {
	var long []int
	for i, l := range bytes.Split(b, []byte("\n")) {
		if n := len(bytes.TrimSuffix(l, []byte("\r"))); n > 998 {
			long = append(long, i)
		}
	}
	return long
}

// entity is one MIME entity as a recipient decodes it with the standard
// library: its header fields unfolded, RFC 2047-decoded and with blanks
// collapsed (as an unfolding reader does), and either its decoded content
// or its parts.
type entity struct {
	Header  []string // "name: value", in order of mail.Header's keys
	Content string
	Parts   []entity
}

// decodeMessage decodes msg as a recipient would, independently of the
// code under test.
func decodeMessage(msg []byte) (entity, error) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return entity{}, err
	}
	return decodeEntity(m.Header, m.Body, 0)
}

func decodeEntity(h map[string][]string, body io.Reader, depth int) (entity, error) {
	var e entity
	if _, ok := h["Content-Type"]; !ok && depth == 0 {
		// RFC 2045 §5.2: what a message without one is; the repair may
		// declare it.
		h["Content-Type"] = []string{"text/plain; charset=us-ascii"}
	}
	dec := new(mime.WordDecoder)
	for _, k := range sortedKeys(h) {
		switch k {
		case "Content-Transfer-Encoding", "Mime-Version", "X-Plcmail-Repair":
			continue // what the repair may add or change to carry the content
		case "Message-Id":
			continue // random, and each Repair adds its own
		}
		for _, v := range h[k] {
			if d, err := dec.DecodeHeader(v); err == nil {
				v = d
			}
			e.Header = append(e.Header, k+": "+strings.Join(strings.Fields(v), " "))
		}
	}
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	mt, params, _ := mime.ParseMediaType(get("Content-Type"))
	if strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" && depth < 10 {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return e, nil
			}
			if err != nil {
				return e, err
			}
			pe, err := decodeEntity(p.Header, p, depth+1)
			if err != nil {
				return e, err
			}
			e.Parts = append(e.Parts, pe)
		}
	}
	if mt == "message/rfc822" && depth < 10 {
		m, err := mail.ReadMessage(body)
		if err != nil {
			return e, err
		}
		inner, err := decodeEntity(m.Header, m.Body, depth+1)
		e.Parts = []entity{inner}
		return e, err
	}
	var r io.Reader = body
	switch strings.ToLower(strings.TrimSpace(get("Content-Transfer-Encoding"))) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &skipLineEnds{body})
	}
	b, err := io.ReadAll(r)
	e.Content = string(b)
	return e, err
}

// skipLineEnds drops CR and LF, which base64 decoders skip.
type skipLineEnds struct{ r io.Reader }

func (s *skipLineEnds) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	return copy(p, bytes.ReplaceAll(bytes.ReplaceAll(p[:n], []byte("\r"), nil), []byte("\n"), nil)), err
}

func sortedKeys(h map[string][]string) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// TestRepairLongLines: every case leaves no line over 998 octets, and a
// recipient decodes exactly what it would have decoded from the message
// with its long lines (repairFields: Repair without the fix), except
// where a split is documented.
func TestRepairLongLines(t *testing.T) {
	x := func(n int) string { return strings.Repeat("x", n) }
	// Four octets of UTF-8 per character: a long line of 8-bit text.
	utf := strings.Repeat("\xf0\x9f\x94\xa5 \xc3\xa4", 700)
	tests := []struct {
		name      string
		in        string
		unchanged bool     // the output is repairFields' byte for byte
		split     bool     // content changes by design (Postfix split)
		contain   []string // raw substrings of the output
		exclude   []string
		content   string // decoded content of the (single part) body, if set
	}{
		{
			name:    "5000-octet text line",
			in:      "Subject: s\r\n\r\n" + x(5000) + "\r\nnext\r\n",
			contain: []string{"\r\nMIME-Version: 1.0\r\n", "\r\nContent-Transfer-Encoding: quoted-printable\r\n", "\r\nContent-Type: text/plain; charset=us-ascii\r\n", "\r\n" + x(75) + "=\r\n"},
			content: x(5000) + "\r\nnext\r\n",
		},
		{
			name:    "5000-octet text line, bare LF, no header",
			in:      x(5000) + "\nnext\n",
			contain: []string{"\r\nContent-Transfer-Encoding: quoted-printable\r\n"},
			content: x(5000) + "\r\nnext\r\n",
		},
		{
			name:    "long line of UTF-8 text declared by Repair",
			in:      "Subject: s\n\n" + utf + "\n",
			contain: []string{"\r\nContent-Type: text/plain; charset=utf-8\r\n", "\r\nContent-Transfer-Encoding: quoted-printable\r\n", "\r\n\r\n=F0=9F=94=A5 =C3=A4=F0=9F"},
			exclude: []string{"Content-Transfer-Encoding: 8bit"},
			content: utf + "\r\n",
		},
		{
			name:      "line of exactly 998 octets is left alone",
			in:        "Subject: s\r\n\r\n" + x(998) + "\r\n",
			unchanged: true,
		},
		{
			name:      "998 octets ended by bare LF is left alone",
			in:        "Subject: s\n\n" + x(998) + "\n" + x(998),
			unchanged: true,
		},
		{
			name:    "line of 999 octets is re-encoded",
			in:      "Subject: s\r\n\r\n" + x(999) + "\r\n",
			contain: []string{"quoted-printable"},
			content: x(999) + "\r\n",
		},
		{
			name:    "998 octets and a bare CR are 999 octets: the CR is data",
			in:      "Subject: s\r\n\r\n" + x(998) + "\r\r\n",
			contain: []string{"=0D\r\n"},
			content: x(998) + "\r\r\n",
		},
		{
			name: "long line inside a multipart part; other parts byte for byte",
			in: "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\npre\r\n" +
				"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + utf + "\r\n" +
				"--b\r\nContent-Type: text/csv\r\n\r\nt,v\r\n1,7\r\n" +
				"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + x(1500) + "\r\n" +
				"--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\nContent-Type: text/html\r\n\r\n<p>" + x(2000) + "</p>\r\n--c--\r\n" +
				"--b--\r\n",
			contain: []string{
				"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=F0=9F",
				"--b\r\nContent-Type: text/csv\r\n\r\nt,v\r\n1,7\r\n--b\r\n",
				"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\neHh4",
				"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>xxx",
			},
		},
		{
			name:    "message/rfc822 with a long line inside",
			in:      "MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n" + x(1200) + "\r\n",
			contain: []string{"Subject: inner\r\nContent-Transfer-Encoding: quoted-printable\r\n"},
		},
		{
			name:    "long header folded at blanks",
			in:      "X-Plant: " + strings.Repeat("press line 1, ", 100) + "\r\nSubject: s\r\n\r\nbody\r\n",
			contain: []string{"X-Plant: press line 1, press line 1, press line 1, press line 1, press line 1,\r\n press line 1,"},
		},
		{
			name:    "long To folded between addresses",
			in:      "To: " + strings.Repeat("ops@example.com, ", 80) + "boss@example.com\r\n\r\nbody\r\n",
			contain: []string{"To: ops@example.com, ops@example.com, ops@example.com, ops@example.com,\r\n ops@"},
		},
		{
			name:    "long Subject without spaces: RFC 2047 words",
			in:      "Subject: " + x(1500) + "\r\n\r\nbody\r\n",
			contain: []string{"Subject: =?us-ascii?q?" + x(60) + "?=\r\n =?us-ascii?q?"},
		},
		{
			name:    "long Subject without spaces after a short word: RFC 2047 words",
			in:      "Subject: Alarm " + x(1500) + "\r\n\r\nbody\r\n",
			contain: []string{"Subject: =?us-ascii?q?Alarm_xxx"},
		},
		{
			// Repair's encoding of 8-bit subjects handles it already.
			name:      "long 8-bit Subject without spaces",
			unchanged: true,
			in:        "Subject: " + strings.Repeat("\xc3\xa4", 800) + "\r\n\r\nbody\r\n",
			contain:   []string{"Subject: =?utf-8?q?=C3=A4=C3=A4"},
		},
		{
			name:    "long Subject holding an encoded-word is split, not encoded again",
			in:      "Subject: =?utf-8?q?" + x(1500) + "?=\r\n\r\nbody\r\n",
			split:   true,
			contain: []string{"Subject:\r\n =?utf-8?q?" + x(987) + "\r\n " + x(513) + "?=\r\n"},
		},
		{
			name:    "structured field without blanks: Postfix split",
			in:      "Message-ID: <" + x(1500) + "@example.com>\r\n\r\nbody\r\n",
			split:   true,
			contain: []string{"Message-ID:\r\n <" + x(996) + "\r\n " + x(504) + "@example.com>\r\n"},
		},
		{
			name: "quoted-printable part with a long line gets soft breaks",
			in: "MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				strings.Repeat("ab=3D=C3=A4 ", 150) + "  \r\nend=\r\n",
			contain: []string{"\r\n\r\nab=3D=C3=A4 ab=3D=C3=A4 ", "=A4 ab=\r\n=3D=C3=A4 ", "=A4=\r\n ab=3D"},
			content: strings.TrimSpace(strings.Repeat("ab=\xc3\xa4 ", 150)) + "\r\nend",
		},
		{
			name: "a soft-broken line never starts with \"-\": it could be the delimiter",
			in: "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
				"--b\r\nContent-Type: text/plain\r\n\r\n" + x(1050) + "--b" + x(100) + "\r\n" +
				"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + x(1050) + "--b" + x(100) + "\r\n" +
				"--b--\r\n",
			contain: []string{
				"=\r\n=2D-b" + x(70) + "=\r\n" + x(30) + "\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
				"=\r\n=2D-b" + x(70) + "=\r\n" + x(30) + "\r\n--b--\r\n",
			},
			exclude: []string{"=\r\n--b"},
		},
		{
			name:    "base64 part with one long line is wrapped",
			in:      "MIME-Version: 1.0\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(x(3000))) + "\r\n",
			contain: []string{"\r\n\r\neHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4\r\neHh4"},
			content: x(3000),
		},
		{
			name:    "unknown encoding: Postfix split",
			in:      "MIME-Version: 1.0\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n" + x(1000) + "\r\n",
			split:   true,
			contain: []string{"\r\n\r\n" + x(998) + "\r\n xx\r\n"},
		},
		{
			name:    "delimiter made long by transport padding loses the padding",
			in:      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b" + strings.Repeat(" ", 1200) + "\r\n\r\npart\r\n--b--\r\n",
			contain: []string{"\r\n\r\n--b\r\n\r\npart\r\n--b--\r\n"},
		},
		{
			name:    "multipart without boundary: Postfix split",
			in:      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n" + x(1000) + "\r\n",
			split:   true,
			contain: []string{x(998) + "\r\n xx\r\n"},
		},
		{
			name:    "DKIM-signed: mended, and a trace field says so",
			in:      "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from:subject; bh=x; b=y\r\nSubject: s\r\n\r\n" + x(1200) + "\r\n",
			contain: []string{"(plcmail) with SMTP;\r\n\tSat, 21 Nov 2026 08:30:00 +0100\r\nX-Plcmail-Repair: lines over 998 octets", "\r\nDKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from:subject; bh=x; b=y\r\n"},
			content: x(1200) + "\r\n",
		},
		{
			name:    "unsigned: no trace field",
			in:      "Subject: s\r\n\r\n" + x(1200) + "\r\n",
			exclude: []string{"X-Plcmail-Repair"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := repairFields([]byte(tt.in), smtpInfo())
			out := Repair([]byte(tt.in), smtpInfo())
			if l := longLines(out); len(l) > 0 {
				t.Errorf("lines %v still over 998 octets:\n%s", l, head(out))
			}
			if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
				t.Errorf("bare LF in %q", out)
			}
			if tt.unchanged != bytes.Equal(maskID(out), maskID(before)) {
				t.Errorf("unchanged = %v, want %v:\n%s", !tt.unchanged, tt.unchanged, head(out))
			}
			_, _, split := fixLongLines(before)
			if split != tt.split {
				t.Errorf("split = %v, want %v", split, tt.split)
			}
			for _, s := range tt.contain {
				if !bytes.Contains(out, []byte(s)) {
					t.Errorf("output lacks %q:\n%s", s, head(out))
				}
			}
			for _, s := range tt.exclude {
				if bytes.Contains(out, []byte(s)) {
					t.Errorf("output has %q:\n%s", s, head(out))
				}
			}
			got, err := decodeMessage(out)
			if err != nil {
				t.Fatalf("a recipient cannot decode the output: %v\n%s", err, out)
			}
			if tt.content != "" && got.Content != tt.content {
				t.Errorf("decoded content %q...\nwant %q...", trunc(got.Content), trunc(tt.content))
			}
			if tt.split {
				return
			}
			want, err := decodeMessage(before)
			if err != nil {
				t.Fatalf("the input does not decode: %v", err)
			}
			if diff := compareEntities(want, got, ""); diff != "" {
				t.Errorf("decoded message changed: %s", diff)
			}
		})
	}
}

// maskID replaces the random part of the Message-ID Repair adds.
func maskID(b []byte) []byte {
	return messageIDRand.ReplaceAll(b, []byte("Message-ID: <ID@"))
}

var messageIDRand = regexp.MustCompile(`Message-ID: <20261121073000\.[0-9a-f]{16}@`)

// head returns the start of a message for an error message.
func head(b []byte) []byte {
	return b[:min(len(b), 1500)]
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

// compareEntities returns where a and b differ, "" when they do not.
func compareEntities(a, b entity, path string) string {
	if strings.Join(a.Header, "\n") != strings.Join(b.Header, "\n") {
		return fmt.Sprintf("%s header:\n%q\n%q", path, a.Header, b.Header)
	}
	if a.Content != b.Content {
		return fmt.Sprintf("%s content:\n%q\n%q", path, trunc(a.Content), trunc(b.Content))
	}
	if len(a.Parts) != len(b.Parts) {
		return fmt.Sprintf("%s: %d parts, %d parts", path, len(a.Parts), len(b.Parts))
	}
	for i := range a.Parts {
		if d := compareEntities(a.Parts[i], b.Parts[i], fmt.Sprintf("%s/%d", path, i+1)); d != "" {
			return d
		}
	}
	return ""
}

// TestHasLongLine pins the limit on byte vectors: 998 octets before CRLF
// or LF is a line within it, 999 is not, and a CR that is not before LF
// counts.
func TestHasLongLine(t *testing.T) {
	x := func(n int) string { return strings.Repeat("x", n) }
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{x(998), false},
		{x(999), true},
		{x(998) + "\r\n" + x(998), false},
		{x(998) + "\n" + x(998) + "\n", false},
		{x(999) + "\r\n", true},
		{x(999) + "\n", true},
		{x(998) + "\r", true},
		{x(998) + "\r\r\n", true},
		{x(997) + "\r\r\n", false},
		{"a\n" + x(998) + "\r\nb", false},
		{"a\n" + x(999) + "\r\nb", true},
		{"a\n" + x(5000), true},
	} {
		if got := hasLongLine([]byte(tt.in)); got != tt.want {
			t.Errorf("hasLongLine(%d octets %q...) = %v", len(tt.in), trunc(tt.in)[:min(10, len(tt.in))], got)
		}
	}
}

// TestEncodeWords: words of at most 75 characters, whole characters only,
// decoding to the text.
func TestEncodeWords(t *testing.T) {
	for _, text := range []string{"", "a", strings.Repeat("x", 500), "Alarm = 5 ? _ ok", strings.Repeat("\xc3\xa4\xf0\x9f\x94\xa5", 100)} {
		words := encodeWords(text)
		for _, w := range words {
			if len(w) > 75 || strings.ContainsAny(w, " \t\r\n") {
				t.Errorf("word %q", w)
			}
		}
		got, err := new(mime.WordDecoder).DecodeHeader(strings.Join(words, "\r\n "))
		if err != nil || got != text {
			t.Errorf("%q decodes to %q (%v)", words, got, err)
		}
	}
}

// FuzzRepairLongLines: after Repair no line is over 998 octets, and unless
// a split was needed a recipient decodes the same message as from the
// input with its long lines. "@@" in msg is replaced by n octets of fill,
// so that the fuzzer reaches long lines quickly.
func FuzzRepairLongLines(f *testing.F) {
	for _, seed := range []string{
		"Subject: s\r\n\r\n@@\r\n",
		"Subject: @@\r\n\r\nb\r\n",
		"X-A: a @@ b\r\n\r\nb\r\n",
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n@@\r\n--b\r\nContent-Type: image/png\r\n\r\nq\r\n--b--\r\n",
		"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n@@=C3=A4\r\n",
		"MIME-Version: 1.0\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n@@\r\n",
	} {
		f.Add([]byte(seed), byte('x'), uint16(1500))
		f.Add([]byte(seed), byte(' '), uint16(999))
		f.Add([]byte(seed), byte(0xe4), uint16(998))
	}
	f.Fuzz(func(t *testing.T, msg []byte, fill byte, n uint16) {
		in := bytes.Replace(msg, []byte("@@"), bytes.Repeat([]byte{fill}, int(n)%5000), 1)
		before := repairFields(in, smtpInfo())
		out := Repair(in, smtpInfo())
		if l := longLines(out); len(l) > 0 {
			t.Fatalf("lines %v over 998 octets for %q", l, in)
		}
		if !hasLongLine(before) && !bytes.Equal(maskID(out), maskID(before)) {
			t.Fatalf("changed without a long line: %q", in)
		}
		if _, _, split := fixLongLines(before); split {
			return
		}
		want, err := decodeMessage(before)
		if err != nil {
			return // a recipient cannot read it anyway
		}
		got, err := decodeMessage(out)
		if err != nil {
			t.Fatalf("the input decodes, the output does not: %v\n%q", err, out)
		}
		if diff := compareEntities(want, got, ""); diff != "" {
			t.Fatalf("decoded message changed: %s\nin  %q\nout %q", diff, before, out)
		}
	})
}

// BenchmarkRepairLongLine: a message with a 5000-octet line costs a walk
// and a quoted-printable encoding on the path to the 250.
func BenchmarkRepairLongLine(b *testing.B) {
	msg := []byte("Subject: Alarm\nTo: ops@example.com\n\n" + strings.Repeat("Druck zu hoch; ", 334) + "\n" +
		strings.Repeat("Druck zu hoch: 7 bar, bitte pruefen\n", 100))
	info := smtpInfo()
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		Repair(msg, info)
	}
}
