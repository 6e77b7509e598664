package smtpd

import (
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/plcmail/plcmail/mailer"
)

// repairInfo is what repair needs to know about the transaction.
type repairInfo struct {
	From     string    // envelope sender, "" for the null sender
	Hostname string    // gateway.hostname: Message-ID domain
	Fallback string    // header From for the null sender (upstream.from)
	Received string    // complete Received: field value, folded with CRLF TAB
	Now      time.Time // for Date: and Message-ID
}

// repair turns what an embedded client sent into a message an upstream
// provider accepts, the way Postfix's cleanup does for local clients:
//
//   - every line ends in CRLF (bare LF is turned into CRLF; bare CR is kept);
//   - the header ends at the first blank line, or at the first line that is
//     neither a header field nor a continuation, which then starts the body:
//     "Subject: Alarm" followed directly by "Pump 3 failed" becomes a header
//     and a body (a text line that looks like a header, "Temp: 85", stays in
//     the header, as with Postfix);
//   - missing Date, Message-ID (@gateway.hostname), From (the envelope
//     sender) and To ("undisclosed-recipients:;" when there is no To or Cc)
//     are added at the end of the header;
//   - an 8-bit body without MIME headers is declared text/plain with
//     charset utf-8 (iso-8859-1 when it is not valid UTF-8) and
//     Content-Transfer-Encoding 8bit; providers announce 8BITMIME today, and
//     the text stays readable in the spool. An 8-bit Subject is encoded as an
//     RFC 2047 encoded-word, since header fields have no MIME charset;
//   - a Received: field is prepended for traceability.
//
// Header fields the client did send are kept byte for byte (except an 8-bit
// Subject), in their order.
func repair(data []byte, info repairInfo) []byte {
	lines := splitLines(data)

	// Split header and body.
	var hdr [][]byte
	body := lines
	hadHeader := false
	for i, l := range lines {
		if len(l) == 0 {
			body = lines[i+1:]
			break
		}
		if (l[0] == ' ' || l[0] == '\t') && hadHeader {
			hdr = append(hdr, l)
			body = lines[i+1:]
			continue
		}
		if !isHeaderField(l) {
			body = lines[i:]
			break
		}
		hadHeader = true
		hdr = append(hdr, l)
		body = lines[i+1:]
	}

	have := map[string]bool{}
	for _, l := range hdr {
		if l[0] == ' ' || l[0] == '\t' {
			continue
		}
		have[strings.ToLower(string(bytes.TrimRight(l[:bytes.IndexByte(l, ':')], " \t")))] = true
	}
	body8 := false
	bodyUTF8 := true
	for _, l := range body {
		if !body8 && has8bit(l) {
			body8 = true
		}
		if body8 && !utf8.Valid(l) {
			bodyUTF8 = false
			break
		}
	}

	size := len(data) + 512
	out := make([]byte, 0, size)
	out = append(out, "Received: "...)
	out = append(out, info.Received...)
	out = append(out, "\r\n"...)
	for i := 0; i < len(hdr); i++ {
		l := hdr[i]
		if n := len("subject:"); len(l) >= n && strings.EqualFold(string(l[:n]), "subject:") {
			// Unfold, and encode if 8-bit.
			j := i + 1
			for j < len(hdr) && (hdr[j][0] == ' ' || hdr[j][0] == '\t') {
				j++
			}
			if field := bytes.Join(hdr[i:j], nil); has8bit(field) {
				val := strings.TrimSpace(string(field[n:]))
				charset := "utf-8"
				if !utf8.ValidString(val) {
					charset = "iso-8859-1"
				}
				out = append(out, "Subject: "...)
				out = append(out, mime.QEncoding.Encode(charset, val)...)
				out = append(out, "\r\n"...)
				i = j - 1
				continue
			}
		}
		out = append(out, l...)
		out = append(out, "\r\n"...)
	}
	if !have["date"] {
		out = append(out, "Date: "...)
		out = append(out, info.Now.Format(time.RFC1123Z)...)
		out = append(out, "\r\n"...)
	}
	if !have["message-id"] {
		out = append(out, "Message-ID: "...)
		out = append(out, mailer.MessageID(info.Now, info.Hostname)...)
		out = append(out, "\r\n"...)
	}
	if !have["from"] {
		from := info.From
		if from == "" {
			from = info.Fallback
		}
		out = append(out, "From: "...)
		out = append(out, (&mail.Address{Address: from}).String()...)
		out = append(out, "\r\n"...)
	}
	if !have["to"] && !have["cc"] {
		out = append(out, "To: undisclosed-recipients:;\r\n"...)
	}
	if body8 {
		charset := "utf-8"
		if !bodyUTF8 {
			charset = "iso-8859-1"
		}
		if !have["mime-version"] {
			out = append(out, "MIME-Version: 1.0\r\n"...)
		}
		if !have["content-type"] {
			out = append(out, "Content-Type: text/plain; charset="...)
			out = append(out, charset...)
			out = append(out, "\r\n"...)
		}
		if !have["content-transfer-encoding"] {
			out = append(out, "Content-Transfer-Encoding: 8bit\r\n"...)
		}
	}
	out = append(out, "\r\n"...)
	for _, l := range body {
		out = append(out, l...)
		out = append(out, "\r\n"...)
	}
	return out
}

// splitLines splits at LF and drops one CR before each LF. A last line
// without LF is kept; an empty remainder after the last LF is not a line.
func splitLines(data []byte) [][]byte {
	lines := make([][]byte, 0, bytes.Count(data, []byte{'\n'})+1)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, data)
			break
		}
		l := data[:i]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		lines = append(lines, l)
		data = data[i+1:]
	}
	return lines
}

// isHeaderField reports whether l starts a header field: a name of printable
// ASCII without colon, optional blanks (obsolete syntax), then a colon.
func isHeaderField(l []byte) bool {
	i := 0
	for i < len(l) && l[i] > ' ' && l[i] < 0x7f && l[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(l) && (l[i] == ' ' || l[i] == '\t') {
		i++
	}
	return i < len(l) && l[i] == ':'
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
