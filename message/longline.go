package message

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Lines over 998 octets, decided here once:
//
// RFC 5322 §2.1.1 and RFC 5321 §4.5.3.1.6 limit a line to 998 octets
// before its CRLF. Providers enforce it ("500 Line too long"), while the
// listener reads lines up to max_line_length (2000) and `plcmail send` has
// no limit at all. Such a message would get its 250 (or exit 0) and then
// die at the provider, so Repair mends it before it is spooled, the way
// Postfix's cleanup(8) and smtp(8) do for their clients; the walk over the
// MIME tree is the one the 8-bit downgrade uses (converter, long true):
//
//   - A header line over 998 octets is folded (RFC 5322 §3.2.2): a CRLF is
//     put before a blank, within 78 octets where the text allows, within
//     998 in any case, as often as needed. Unfolding gives back the field
//     exactly.
//   - A field that has no such blank (a Subject of 1500 letters without a
//     space) and is unstructured text (Subject, Comments,
//     Content-Description) is written as RFC 2047 encoded-words, one per
//     folded line: a decoder joins adjacent encoded-words without the
//     blanks between them (RFC 2047 §6.2), so the text a reader sees is
//     exactly the original. A structured field (an address, a Message-ID,
//     a DKIM-Signature) cannot hold encoded-words, and no fold inside a
//     token of 999 octets is lossless: it is split as Postfix's
//     smtp_line_length_limit splits, by CRLF and a space every 998 octets,
//     which keeps every octet and adds a blank. The field was invalid
//     already; the alternative is a certain rejection.
//   - A leaf part (the body of a simple message included) with a line over
//     998 octets and an identity encoding (7bit, 8bit, binary, none) is
//     re-encoded: text/* quoted-printable, line by line as the downgrade
//     does, anything else base64; Content-Transfer-Encoding is replaced
//     or added, and a message that had none gets MIME-Version and, for
//     text without Content-Type, "text/plain" with the charset it is in.
//     Decoding gives back exactly the octets that were sent.
//   - A part already declared quoted-printable or base64 only gets
//     shorter lines: soft line breaks ("=" CRLF) between, never inside,
//     "=XX" escapes, and CRLFs between base64 characters, which decoders
//     skip. Its decoded content does not change.
//   - multipart/* and message/rfc822 are converted part by part; every
//     part without long lines stays byte for byte. A delimiter line made
//     long by transport padding loses the padding.
//   - What has no encoding to change (a part declared with an unknown
//     encoding, a multipart without boundary, nesting deeper than
//     maxDowngradeDepth, a preamble or epilogue) is split as Postfix does:
//     CRLF and a space every 998 octets. A space at the start of the next
//     line cannot make it a delimiter, a header field or a lone ".".
//
// Postfix re-encodes only for 8BITMIME and splits every long line; here
// the content survives wherever an encoding can carry it.
//
// A DKIM-Signature (RFC 6376) is not re-signed and not removed: see
// Repair for what the message says about it.

// maxLineOctets is the longest line RFC 5322 §2.1.1 allows, without CRLF.
const maxLineOctets = 998

// hasLongLine reports whether b has a line of more than maxLineOctets
// octets, not counting its LF and one CR before it.
func hasLongLine(b []byte) bool {
	for len(b) > maxLineOctets {
		// A line within the limit ends in the first 1000 octets.
		i := bytes.IndexByte(b[:maxLineOctets+2], '\n')
		if i < 0 {
			return true
		}
		if i == maxLineOctets+1 && b[maxLineOctets] != '\r' {
			return true
		}
		b = b[i+1:]
	}
	return false
}

// fixLongLines returns data with no line over maxLineOctets octets, and
// a note for the log naming what was done ("" when nothing was needed, and
// then data itself is returned). split is true when a line had to be split
// without an encoding, which changes content; a fold or re-encoding does
// not.
func fixLongLines(data []byte) (out []byte, note string, split bool) {
	if !hasLongLine(data) {
		return data, "", false
	}
	d := &converter{long: true}
	out = d.entity(data, "text/plain", 0, true)
	if hasLongLine(out) {
		// The walk handles every case it knows; this keeps the promise
		// for any it does not.
		out = d.splitLines(out, "message")
	}
	var notes []string
	if d.converted > 0 {
		notes = append(notes, fmt.Sprintf("%d part(s) with lines over %d octets re-encoded", d.converted, maxLineOctets))
	}
	if d.rewrapped > 0 {
		notes = append(notes, fmt.Sprintf("%d encoded part(s) given shorter lines", d.rewrapped))
	}
	if len(d.folded) > 0 {
		notes = append(notes, "folded "+strings.Join(d.folded, ", "))
	}
	if len(d.encodedHeaders) > 0 {
		notes = append(notes, "RFC 2047-encoded "+strings.Join(d.encodedHeaders, ", "))
	}
	notes = append(notes, d.left...)
	return out, strings.Join(notes, "; "), d.split
}

// leafLong re-encodes a leaf body that has a line over maxLineOctets and
// returns it with the encoding to declare ("" to keep the field).
func (d *converter) leafLong(body []byte, mediaType, cte string) ([]byte, string) {
	switch cte {
	case "", "7bit", "8bit", "binary":
		d.converted++
		if strings.HasPrefix(mediaType, "text/") {
			// Line by line: the CRLFs stay line breaks, so a reader
			// shows the same lines. A "binary" text part has CRLF line
			// ends too, or Repair made them so.
			return qpLines(body), "quoted-printable"
		}
		return base64Lines(body), "base64"
	case "quoted-printable":
		d.rewrapped++
		return softBreakQP(body), ""
	case "base64":
		d.rewrapped++
		return wrapBase64(body), ""
	}
	return d.splitLines(body, fmt.Sprintf("a part declared %q", cte)), ""
}

// splitLines splits every line of b over maxLineOctets octets as Postfix's
// smtp_line_length_limit does: CRLF and a space after each 998 octets, so
// that no octet is lost and the continuation starts with a blank (no
// header field, no MIME delimiter, no lone "."). It changes content, and
// the note names where.
func (d *converter) splitLines(b []byte, where string) []byte {
	if !hasLongLine(b) {
		return b
	}
	d.split = true
	d.leave("lines over %d octets split in %s", maxLineOctets, where)
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/maxLineOctets*3 + 3)
	for l := range bytes.Lines(b) {
		content := trimEOL(l)
		eol := l[len(content):]
		n := maxLineOctets
		for len(content) > n {
			out.Write(content[:n])
			out.WriteString("\r\n ")
			content = content[n:]
			n = maxLineOctets - 1 // after the space
		}
		out.Write(content)
		out.Write(eol)
	}
	return out.Bytes()
}

// foldField returns header field f with no line over maxLineOctets
// octets: folded at blanks where that suffices, else RFC 2047-encoded when
// it is unstructured text, else split (see the rules above).
func (d *converter) foldField(f field, nl string) []byte {
	name := string(bytes.TrimRight(f.raw[:bytes.IndexByte(f.raw, ':')], " \t"))
	if out, ok := foldRaw(f.raw, nl, false); ok {
		d.folded = append(d.folded, name)
		return out
	}
	v := strings.TrimSpace(string(f.value()))
	if unstructuredFields[strings.ToLower(name)] && utf8.ValidString(v) && !strings.Contains(v, "=?") {
		// A value with "=?" may hold encoded-words the sender meant;
		// encoding them again would show them raw.
		d.encodedHeaders = append(d.encodedHeaders, name)
		return []byte(name + ": " + strings.Join(encodeWords(v), nl+" ") + nl)
	}
	out, _ := foldRaw(f.raw, nl, true)
	d.split = true
	d.leave("header field %s split", name)
	return out
}

// foldRaw folds each line of a header field that is over maxLineOctets
// octets before blanks (foldPoint) where the part before holds more than
// blanks and the part after holds more than blanks (a line of blanks is no
// fold: RFC 5322 §3.2.2). ok is false when
// some line has no such blank; with hard, such a line is then split as
// splitLines does, and ok is still false.
func foldRaw(raw []byte, nl string, hard bool) (out []byte, ok bool) {
	ok = true
	out = make([]byte, 0, len(raw)+len(raw)/maxLineOctets*3+3)
	first := true
	for l := range bytes.Lines(raw) {
		content := trimEOL(l)
		eol := l[len(content):]
		// The first line must not be folded before its colon.
		minFold := 0
		if first {
			minFold = bytes.IndexByte(content, ':')
			first = false
		}
		for len(content) > maxLineOctets {
			i := foldPoint(content, minFold)
			minFold = 0
			if i >= 0 {
				out = append(out, content[:i]...)
				out = append(out, nl...)
				content = content[i:]
				continue
			}
			ok = false
			if !hard {
				return nil, false
			}
			// The split adds a space, which is then the next line's
			// first octet and may be a fold point itself.
			out = append(out, content[:maxLineOctets]...)
			out = append(out, nl...)
			content = append([]byte{' '}, content[maxLineOctets:]...)
		}
		out = append(out, content...)
		out = append(out, eol...)
	}
	return out, ok
}

// foldPoint returns the index of the blank in line to fold before, with
// more than blanks before it (after minFold) and after it: the last such
// blank within 78 octets, as RFC 5322 §2.1.1 recommends, else the first
// one within maxLineOctets, so that lines stay as short as the text
// allows; -1 when there is none.
func foldPoint(line []byte, minFold int) int {
	const nice = 78
	last := len(line) - 1
	for last >= 0 && isBlank(line[last]) {
		last--
	}
	first := minFold
	for first < len(line) && isBlank(line[first]) {
		first++
	}
	for i := min(nice, last-1); i > first; i-- {
		if isBlank(line[i]) {
			return i
		}
	}
	for i := max(nice+1, first+1); i <= min(maxLineOctets, last-1); i++ {
		if isBlank(line[i]) {
			return i
		}
	}
	return -1
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// encodeWords encodes text as RFC 2047 Q encoded-words of at most 75
// characters each, every one holding whole characters (§5): 7-bit text as
// us-ascii, other text as utf-8. Unlike mime.QEncoding it encodes text
// that needs no encoding, which is what a word too long to fold needs.
func encodeWords(text string) []string {
	charset := "us-ascii"
	if Has8Bit([]byte(text)) {
		charset = "utf-8"
	}
	prefix := "=?" + charset + "?q?"
	room := 75 - len(prefix) - len("?=")
	var words []string
	var w strings.Builder
	for _, r := range text {
		var enc string
		switch {
		case r == ' ':
			enc = "_"
		case r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!*+-/", r)):
			enc = string(r)
		default:
			var buf [utf8.UTFMax]byte
			n := utf8.EncodeRune(buf[:], r)
			for _, c := range buf[:n] {
				enc += fmt.Sprintf("=%02X", c)
			}
		}
		if w.Len()+len(enc) > room {
			words = append(words, prefix+w.String()+"?=")
			w.Reset()
		}
		w.WriteString(enc)
	}
	if w.Len() > 0 || len(words) == 0 {
		words = append(words, prefix+w.String()+"?=")
	}
	return words
}

// softBreakQP gives a quoted-printable body lines of at most 76
// characters by soft line breaks, never inside an "=XX" escape. Blanks
// at the end of a line are transport padding a decoder drops (RFC 2045
// §6.7 rule 3); they are dropped first, so that a break cannot turn them
// into data. A "-" that would start a soft-broken line is written =2D, as
// appendQP does, so that no line can read as a delimiter.
func softBreakQP(body []byte) []byte {
	const room = 75 // and the "=" of the soft break
	out := make([]byte, 0, len(body)+len(body)/room*4)
	for l := range bytes.Lines(body) {
		content := trimEOL(l)
		eol := l[len(content):]
		if len(content) > room+1 {
			content = bytes.TrimRight(content, " \t")
		}
		width := 0
		for i := 0; i < len(content); {
			tok := content[i : i+1]
			if content[i] == '=' {
				tok = content[i:min(i+3, len(content))]
			}
			next := i + len(tok)
			// The line's last token may take the 76th place.
			if width+len(tok) > room && !(next == len(content) && width+len(tok) <= room+1) {
				out = append(out, "=\r\n"...)
				width = 0
				if tok[0] == '-' {
					tok = []byte("=2D")
				}
			}
			out = append(out, tok...)
			width += len(tok)
			i = next
		}
		out = append(out, eol...)
	}
	return out
}

// wrapBase64 breaks the lines of a base64 body over 76 characters into
// lines of 76: decoders skip line breaks (RFC 2045 §6.8).
func wrapBase64(body []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/76*2)
	for l := range bytes.Lines(body) {
		content := trimEOL(l)
		eol := l[len(content):]
		for len(content) > 76 {
			out.Write(content[:76])
			out.WriteString("\r\n")
			content = content[76:]
		}
		out.Write(content)
		out.Write(eol)
	}
	return out.Bytes()
}

// base64Lines encodes body base64 in lines of 76 characters, each ending
// in CRLF except the last when body had no line end at its end (a part
// before its delimiter).
func base64Lines(body []byte) []byte {
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(body)))
	base64.StdEncoding.Encode(enc, body)
	out := make([]byte, 0, len(enc)+len(enc)/76*2+2)
	for len(enc) > 76 {
		out = append(out, enc[:76]...)
		out = append(out, "\r\n"...)
		enc = enc[76:]
	}
	out = append(out, enc...)
	if bytes.HasSuffix(body, []byte("\n")) {
		out = append(out, "\r\n"...)
	}
	return out
}
