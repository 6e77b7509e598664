package message

import (
	"bytes"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// RepairInfo is what Repair needs to know about a submission besides its
// bytes. Every string here may come from outside (an SMTP envelope, a
// sendmail command line); Repair keeps each inside its header field.
type RepairInfo struct {
	From     string    // envelope sender, "" for the null sender
	FromName string    // display name for a From field Repair adds (sendmail -F)
	Fallback string    // header From address for the null sender (upstream.from)
	Hostname string    // gateway.hostname: Message-ID domain
	Received string    // value of a Received: field to prepend, folded with CRLF TAB; "" adds none
	Now      time.Time // for Date: and Message-ID

	// DropBcc removes Bcc fields. The sendmail path sets it: its caller
	// took the recipients from the envelope or the header (-t), and the
	// other recipients must never see the blind copies. The SMTP path keeps
	// the header as the client sent it, as Postfix's smtpd does.
	DropBcc bool
}

// Repair turns what a local client sent into a message an upstream provider
// accepts. It is the one cleanup both ways into the spool share, the SMTP
// listener and `plcmail send`, the way Postfix's cleanup(8) serves smtpd
// and sendmail alike, so that the same input leaves the gateway the same
// way whichever door it came through:
//
//   - every line ends in CRLF (bare LF is turned into CRLF; bare CR is kept);
//   - the header ends at the first blank line, or at the first line that is
//     neither a header field nor a continuation, which then starts the body:
//     "Subject: Alarm" followed directly by "Pump 3 failed" becomes a header
//     and a body (a text line that looks like a header, "Temp: 85", stays in
//     the header, as with Postfix). A message whose first line is no header
//     field ("disk full" piped to sendmail) is all body. The obsolete syntax
//     with blanks before the colon ("Subject : x") is a header field, and
//     is written without them ("Subject: x");
//   - missing Date, Message-ID (@Hostname), From (the envelope sender, or
//     Fallback for the null sender) and To ("undisclosed-recipients:;" when
//     there is neither To nor Cc) are added at the end of the header, in
//     that order;
//   - an 8-bit body is declared text/plain with charset utf-8 (iso-8859-1
//     when it is not valid UTF-8) and Content-Transfer-Encoding 8bit, each
//     only where the client did not declare it; providers announce 8BITMIME
//     today, and the text stays readable in the spool. An 8-bit Subject is
//     encoded as RFC 2047 encoded-words, one per folded line, since header
//     fields have no MIME charset;
//   - Bcc fields are removed when info.DropBcc is set;
//   - a Received: field is prepended when info.Received is set;
//   - no line is left over 998 octets (RFC 5322 §2.1.1), which providers
//     refuse with "500 Line too long" after the client got its 250: header
//     lines are folded, bodies re-encoded quoted-printable or base64 part
//     by part (longline.go says how, and what a message with a
//     DKIM-Signature then gets).
//
// Header fields the client did send are kept byte for byte (except an 8-bit
// Subject, Bcc, and blanks before a colon), in their order. Values from info
// are cleaned of line breaks and control characters first, so they cannot
// end their field and start another (header injection).
func Repair(data []byte, info RepairInfo) []byte {
	out := repairFields(data, info)
	fixed, note, _ := fixLongLines(out)
	if note == "" {
		return out // no long line: the common case
	}
	// A DKIM-Signature (RFC 6376) covers the body and the fields it
	// names. Folding at blanks survives "relaxed" header canonicalization
	// but not "simple"; a re-encoded body never matches its hash. The
	// message is mended all the same: the provider refuses it as it is,
	// while a signature that fails must not by itself get a message
	// refused (RFC 6376 §6.3), and a recipient's DMARC policy may still
	// pass it through SPF or the provider's own signature. It is not re-signed (we hold no key) and
	// not removed (that would hide that it was signed); a trace field
	// says what happened, so that "dkim=fail (body hash)" at the
	// recipient can be explained, and it is added after our Received,
	// outside anything the signature covers.
	hdr, _, _ := splitHeader(fixed)
	signed, at := false, 0
	for i, f := range hdr {
		if f.is("dkim-signature") {
			signed = true
		}
		if i == 0 && info.Received != "" {
			at = len(f.raw)
		}
	}
	if !signed {
		return fixed
	}
	return slices.Concat(fixed[:at], []byte(dkimRepairNote), fixed[at:])
}

// dkimRepairNote is the trace field Repair adds when it changed a line
// over 998 octets in a message with a DKIM-Signature.
const dkimRepairNote = "X-Plcmail-Repair: lines over 998 octets folded or re-encoded\r\n" +
	"\t(RFC 5322 2.1.1); a DKIM-Signature may no longer verify\r\n"

// repairFields is Repair without the fix of long lines: line ends, the
// fields, the 8-bit declaration.
func repairFields(data []byte, info RepairInfo) []byte {
	hdr, _, body := splitHeader(data)

	var has struct{ date, messageID, from, to, mimeVersion, contentType, transferEncoding bool }
	for _, f := range hdr {
		switch {
		case f.is("date"):
			has.date = true
		case f.is("message-id"):
			has.messageID = true
		case f.is("from"):
			has.from = true
		case f.is("to"), f.is("cc"):
			has.to = true
		case f.is("mime-version"):
			has.mimeVersion = true
		case f.is("content-type"):
			has.contentType = true
		case f.is("content-transfer-encoding"):
			has.transferEncoding = true
		}
	}
	// Line ends are ASCII: the body is valid UTF-8 exactly when its lines
	// are.
	body8 := Has8Bit(body)
	bodyUTF8 := !body8 || utf8.Valid(body)

	out := make([]byte, 0, len(data)+512)
	if info.Received != "" {
		out = append(out, "Received: "...)
		out = append(out, foldedValue(info.Received)...)
		out = append(out, "\r\n"...)
	}
	for _, f := range hdr {
		switch {
		case info.DropBcc && f.is("bcc"):
			continue
		case f.is("subject"):
			if subject, ok := encodeSubject(f); ok {
				out = append(out, subject...)
				continue
			}
		}
		// "Subject : x" is obsolete syntax that receivers must read but
		// nobody may write (RFC 5322 section 4), and parsers such as Go's
		// net/mail do not find that Subject: the blanks go.
		out = append(out, f.name...)
		out = appendCRLF(out, f.raw[bytes.IndexByte(f.raw, ':'):])
	}
	if !has.date {
		out = append(out, "Date: "...)
		out = append(out, info.Now.Format(time.RFC1123Z)...)
		out = append(out, "\r\n"...)
	}
	if !has.messageID {
		out = append(out, "Message-ID: "...)
		out = append(out, MessageID(info.Now, fieldValue(info.Hostname))...)
		out = append(out, "\r\n"...)
	}
	if !has.from {
		from := info.From
		if from == "" {
			from = info.Fallback
		}
		// mail.Address quotes or encodes the name, but copies the domain
		// as it is: the address is cleaned here.
		out = append(out, "From: "...)
		out = append(out, (&mail.Address{Name: info.FromName, Address: fieldValue(from)}).String()...)
		out = append(out, "\r\n"...)
	}
	if !has.to {
		out = append(out, "To: undisclosed-recipients:;\r\n"...)
	}
	if body8 {
		if !has.mimeVersion {
			out = append(out, "MIME-Version: 1.0\r\n"...)
		}
		if !has.contentType {
			out = append(out, "Content-Type: text/plain; charset="...)
			out = append(out, charsetOf(bodyUTF8)...)
			out = append(out, "\r\n"...)
		}
		if !has.transferEncoding {
			out = append(out, "Content-Transfer-Encoding: 8bit\r\n"...)
		}
	}
	out = append(out, "\r\n"...)
	return appendCRLF(out, body)
}

// encodeSubject returns the Subject field f, unfolded and encoded as
// RFC 2047 encoded-words with its CRLF, when it has 8-bit characters; ok
// is false when it is ASCII and stays as it was sent.
// Encoded-words are folded one per line: RFC 2047 limits a line holding
// them to 76 characters, and a long subject would otherwise make one line
// longer than SMTP's 1000.
func encodeSubject(f field) (subject []byte, ok bool) {
	v := f.value()
	if !Has8Bit(v) {
		return nil, false
	}
	val := strings.TrimSpace(string(v))
	words := mime.QEncoding.Encode(charsetOf(utf8.ValidString(val)), val)
	// Q-encoding writes '?' as =3F and blanks as '_', so "?= =?" only ever
	// stands between two encoded-words.
	return []byte("Subject: " + strings.ReplaceAll(words, "?= =?", "?=\r\n =?") + "\r\n"), true
}

// charsetOf names the charset of 8-bit text: UTF-8 when it is valid UTF-8,
// else Latin-1, which any byte sequence is and which most old 8-bit
// firmware strings are.
func charsetOf(validUTF8 bool) string {
	if validUTF8 {
		return "utf-8"
	}
	return "iso-8859-1"
}

// Has8Bit reports whether b holds any byte above 0x7F.
func Has8Bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// fieldValue cleans a single-line value that came from outside: control
// characters, CR and LF among them, become spaces, so the value cannot end
// its field. Other bytes are kept as they are.
func fieldValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// foldedValue cleans a value that may be folded (Received): a CRLF followed
// by blanks and then text stays as a fold; any other CR, LF or control
// character other than TAB becomes a space. A fold into a blank line is no
// fold either: a line of blanks ends the header for some parsers.
func foldedValue(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\r' && i+2 < len(b) && b[i+1] == '\n' && (b[i+2] == ' ' || b[i+2] == '\t') {
			j := i + 2
			for j < len(b) && (b[j] == ' ' || b[j] == '\t') {
				j++
			}
			if j < len(b) && b[j] != '\r' && b[j] != '\n' {
				i = j - 1
				continue
			}
		}
		if c < ' ' && c != '\t' || c == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}
