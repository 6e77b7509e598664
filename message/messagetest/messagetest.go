// Package messagetest holds the messages and checks that the tests of
// package message and of the packages that send its output (upstream,
// spool) share, as net/http/httptest does for HTTP: an 8-bit message as
// the listener stores it, a MIME tree to convert, and the checks a
// recipient would make of quoted-printable.
//
// It deliberately does not import package message: a check that used the
// code under test (message.Has8Bit, say) could share its bug and pass.
package messagetest

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"
)

// Repaired8Bit returns what the listener stores for a board that sent
// UTF-8 text without BODY=8BITMIME: repaired, declared 8bit, with a line
// that starts with a dot and a line of 120 bytes. Each call returns a new
// slice, so that a test may compare the caller's copy after a send.
func Repaired8Bit() []byte {
	return []byte("From: plc@example.com\r\nTo: ops@example.com\r\nSubject: Alarm 17\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Störung Kühlkreislauf: 95 °C\r\n.Punkt am Zeilenanfang\r\n" + strings.Repeat("ä", 60) + "\r\n")
}

// Mixed8Bit is a MIME tree with 8-bit parts, declared 8bit and undeclared,
// at several depths: a text part, a 7-bit CSV part after a delimiter with
// transport padding, a multipart/alternative with an 8-bit
// Content-Description, and a message/rfc822; with preamble and epilogue.
const Mixed8Bit = "From: plc@example.com\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Störung an Pumpe 3\r\n" +
	"--b1\r\n" +
	"Content-Type: text/csv\r\n" +
	"\r\n" +
	"t,value\r\n1,7\r\n" +
	"--b1  \r\n" + // transport padding
	"Content-Type: multipart/alternative; boundary=b2\r\n" +
	"\r\n" +
	"--b2\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Description: Kühlung\r\n" +
	"\r\n" +
	"Kühlung\r\n" +
	"--b2\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"<p>Kühlung</p>\r\n" +
	"\r\n" +
	"--b2--\r\n" +
	"--b1\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Subject: inner\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"innen ä\r\n" +
	"--b1--\r\n" +
	"epilogue\r\n"

// HeaderAndBody splits a message as it arrived over SMTP at its first
// empty line: the header with its last CRLF, and the body. It fails t when
// there is no empty line.
func HeaderAndBody(t testing.TB, data []byte) (string, []byte) {
	t.Helper()
	h, b, ok := bytes.Cut(data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no header/body separator in %q", data)
	}
	return string(h) + "\r\n", b
}

// DecodeQP decodes a quoted-printable body with the standard library's
// reader, the way a recipient does, and fails t when it does not decode.
func DecodeQP(t testing.TB, body []byte) []byte {
	t.Helper()
	got, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatalf("quoted-printable does not decode: %v\n%q", err, body)
	}
	return got
}

// CheckQPLines reports an error on t unless every line of body is 7-bit,
// at most 76 characters (the quoted-printable limit) and ends in CRLF
// where it ends at all. Given a whole message it holds the header lines to
// the same limit, stricter than RFC 5322's 998.
func CheckQPLines(t testing.TB, body []byte) {
	t.Helper()
	for _, c := range body {
		if c >= 0x80 {
			t.Errorf("8-bit byte left in %q", body)
			break
		}
	}
	for i, ln := range bytes.SplitAfter(body, []byte("\n")) {
		if len(ln) == 0 {
			continue
		}
		if bytes.HasSuffix(ln, []byte("\n")) && !bytes.HasSuffix(ln, []byte("\r\n")) {
			t.Errorf("line %d ends in bare LF: %q", i, ln)
		}
		if n := len(bytes.TrimRight(ln, "\r\n")); n > 76 {
			t.Errorf("line %d is %d characters: %q", i, n, ln)
		}
	}
}
