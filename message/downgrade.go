package message

import (
	"bytes"
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"
)

// 8-bit downgrade, decided here once:
//
// The listener accepts 8-bit text from boards that never say BODY=8BITMIME
// and declares it (charset=utf-8, Content-Transfer-Encoding 8bit). RFC 6152
// §3 forbids relaying 8-bit data to a server that does not announce
// 8BITMIME; the relay must convert or bounce. Like Postfix
// (disable_mime_output_conversion = no) we convert, on the wire only: the
// spool keeps the bytes it was given.
//
//   - A leaf part (any type) whose body holds 8-bit bytes and whose encoding
//     is 7bit, 8bit or absent is re-encoded quoted-printable, line by line,
//     so that decoding gives back exactly the CRLF lines that an 8BITMIME
//     server would have received; its Content-Transfer-Encoding field is
//     replaced (or added). "binary" is encoded whole, CR and LF included.
//   - multipart/* and message/rfc822 are converted part by part; every byte
//     outside a converted part (boundaries, preamble, untouched parts, their
//     headers) stays as it was. A container declared 8bit or binary whose
//     content became 7-bit is relabelled 7bit, as Postfix does.
//   - Header fields: an 8-bit Subject, Comments or Content-Description
//     (unstructured text, valid UTF-8, no encoded-word already in it) is
//     RFC 2047-encoded. Any other 8-bit header field (an address with an
//     8-bit display name, say) has no safe mechanical encoding and is left
//     as it is, and the note says so.
//   - What cannot be converted (8-bit bytes inside a part declared base64 or
//     quoted-printable, a multipart without a boundary, nesting deeper than
//     maxDowngradeDepth, 8-bit preamble or epilogue) is sent as it is, with
//     a note. Refusing the message would lose an alarm to a formality; most
//     servers that omit 8BITMIME take 8-bit bytes anyway, and the note makes
//     the remaining breach visible.
//
// Postfix does the same except for headers, which it never touches.

// maxDowngradeDepth bounds the MIME nesting the converter descends into, so
// that a hostile message cannot exhaust the stack.
const maxDowngradeDepth = 20

// Downgrade8Bit returns data converted for an upstream that does not
// announce 8BITMIME, and a note for the log saying what was converted and
// what stayed 8-bit. A 7-bit message is returned as it is (the same slice)
// with an empty note. data itself is never modified.
func Downgrade8Bit(data []byte) ([]byte, string) {
	if !Has8Bit(data) {
		return data, ""
	}
	d := &converter{}
	out := d.entity(data, "text/plain", 0, true)
	var notes []string
	if d.converted > 0 {
		notes = append(notes, fmt.Sprintf("%d part(s) re-encoded quoted-printable", d.converted))
	}
	if len(d.encodedHeaders) > 0 {
		notes = append(notes, "RFC 2047-encoded "+strings.Join(d.encodedHeaders, ", "))
	}
	notes = append(notes, d.left...)
	if Has8Bit(out) {
		notes = append(notes, "the message still holds 8-bit bytes and is sent so")
	}
	return out, strings.Join(notes, "; ")
}

// converter is the one MIME walker of the package. It serves two
// conversions that need the same walk and differ only in what a part needs
// and what is done to it: the 8-bit downgrade on the wire (long false:
// 8-bit bytes, see above) and Repair's fix of lines over 998 octets
// (long true, see longline.go).
type converter struct {
	long bool // fix lines over maxLineOctets instead of 8-bit bytes

	converted      int      // leaf bodies re-encoded
	rewrapped      int      // quoted-printable or base64 bodies given shorter lines (long)
	encodedHeaders []string // header fields RFC 2047-encoded
	folded         []string // header fields folded at whitespace (long)
	left           []string // what stayed 8-bit, and why; what was split, for long
	split          bool     // long: a line was split without an encoding, changing content
}

// needs reports whether b holds what this conversion converts.
func (d *converter) needs(b []byte) bool {
	if d.long {
		return hasLongLine(b)
	}
	return Has8Bit(b)
}

func (d *converter) leave(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, l := range d.left {
		if l == msg {
			return
		}
	}
	d.left = append(d.left, msg)
}

// lineEnd returns the line terminator the header uses.
func lineEnd(fields []field) string {
	if len(fields) > 0 && !bytes.HasSuffix(fields[0].raw, []byte("\r\n")) && bytes.HasSuffix(fields[0].raw, []byte("\n")) {
		return "\n"
	}
	return "\r\n"
}

// entity converts one MIME entity (a message or a body part). top is true
// for the message itself, which also gets MIME-Version when it had none.
func (d *converter) entity(raw []byte, defaultType string, depth int, top bool) []byte {
	if !d.needs(raw) {
		return raw
	}
	if depth > maxDowngradeDepth {
		if d.long {
			return d.splitLines(raw, fmt.Sprintf("MIME nesting deeper than %d", maxDowngradeDepth))
		}
		d.leave("MIME nesting deeper than %d left as is", maxDowngradeDepth)
		return raw
	}
	fields, sep, body := splitHeader(raw)
	var ctValue, cte string
	ctIdx, cteIdx, mimeVersion := -1, -1, false
	for i, f := range fields {
		switch {
		case f.is("content-type"):
			if ctIdx < 0 {
				ctIdx, ctValue = i, strings.TrimSpace(string(f.value()))
			}
		case f.is("content-transfer-encoding"):
			if cteIdx < 0 {
				cteIdx, cte = i, strings.ToLower(strings.TrimSpace(string(f.value())))
			}
		case f.is("mime-version"):
			mimeVersion = true
		}
	}
	mediaType, params := defaultType, map[string]string(nil)
	if ctIdx >= 0 {
		mt, p, err := mime.ParseMediaType(ctValue)
		if mt != "" {
			mediaType, params = mt, p
		} else if err != nil {
			mediaType = "text/plain" // RFC 2045 §5.2: unreadable Content-Type
		}
	}

	nl := lineEnd(fields)
	newFields := make([][]byte, len(fields))
	for i, f := range fields {
		newFields[i] = f.raw
		switch {
		case d.long && hasLongLine(f.raw):
			newFields[i] = d.foldField(f, nl)
		case !d.long && Has8Bit(f.raw):
			newFields[i] = d.header(f, nl)
		}
	}
	var extra []string // fields to add at the end of the header
	newBody := body
	newCTE := ""
	switch {
	case body == nil || !d.needs(body):
	case strings.HasPrefix(mediaType, "multipart/"):
		boundary := params["boundary"]
		if boundary == "" {
			if d.long {
				newBody = d.splitLines(body, mediaType+" without boundary")
				break
			}
			d.leave("%s without boundary left as is", mediaType)
			break
		}
		child := "text/plain"
		if mediaType == "multipart/digest" {
			child = "message/rfc822"
		}
		newBody = d.multipart(body, boundary, child, depth)
		newCTE = d.relabel(cte, newBody)
	case mediaType == "message/rfc822":
		newBody = d.entity(body, "text/plain", depth+1, false)
		newCTE = d.relabel(cte, newBody)
	case d.long:
		newBody, newCTE = d.leafLong(body, mediaType, cte)
	default:
		switch cte {
		case "", "7bit", "8bit":
			newBody, newCTE = qpLines(body), "quoted-printable"
		case "binary":
			newBody, newCTE = qpBinary(body), "quoted-printable"
		default:
			d.leave("8-bit bytes in a part declared %q left as is", cte)
		}
		if newCTE != "" {
			d.converted++
		}
	}
	if newCTE != "" {
		line := []byte("Content-Transfer-Encoding: " + newCTE + nl)
		if cteIdx >= 0 {
			newFields[cteIdx] = line
		} else {
			extra = append(extra, string(line))
		}
		if top && !mimeVersion {
			// Without it a Content-Transfer-Encoding means nothing
			// (RFC 2045 §4).
			extra = append(extra, "MIME-Version: 1.0"+nl)
		}
		if top && ctIdx < 0 && newCTE == "quoted-printable" && utf8.Valid(body) {
			// Declared because it is as good as certain: 8-bit text
			// that is valid UTF-8 is UTF-8, and 7-bit text is ASCII
			// (the long-line fix re-encodes 7-bit text too).
			charset := "utf-8"
			if !Has8Bit(body) {
				charset = "us-ascii"
			}
			extra = append(extra, "Content-Type: text/plain; charset="+charset+nl)
		}
	}

	var out bytes.Buffer
	out.Grow(len(raw) + len(raw)/4)
	for _, f := range newFields {
		out.Write(f)
	}
	for _, f := range extra {
		out.WriteString(f)
	}
	if sep == nil && len(extra) > 0 && body != nil {
		sep = []byte(nl) // the added fields must not run into the body
	}
	out.Write(sep)
	out.Write(newBody)
	return out.Bytes()
}

// relabel returns the encoding a container gets once its content was
// converted: 7bit where it was declared 8bit or binary and its content is
// now 7-bit (with short lines, for the long-line fix), 8bit where it was
// declared binary and only its long lines are gone, "" (keep the field)
// otherwise.
func (d *converter) relabel(cte string, body []byte) string {
	if cte != "8bit" && cte != "binary" || d.long && hasLongLine(body) {
		return ""
	}
	switch {
	case !Has8Bit(body):
		return "7bit"
	case d.long && cte == "binary":
		return "8bit"
	}
	return ""
}

// unstructuredFields are the header fields whose whole value is text
// (RFC 5322 §3.6.5, RFC 2045 §8) and so can become encoded-words.
var unstructuredFields = map[string]bool{"subject": true, "comments": true, "content-description": true}

// header returns the field RFC 2047-encoded when that is mechanical and
// safe, or as it was.
func (d *converter) header(f field, nl string) []byte {
	v := strings.TrimSpace(string(f.value()))
	lower := strings.ToLower(string(f.name))
	if !unstructuredFields[lower] || !utf8.ValidString(v) || strings.Contains(v, "=?") {
		d.leave("8-bit header field %s left as is", lower)
		return f.raw
	}
	// The name as written, blanks before the colon and all: only the
	// value is re-encoded.
	name := f.raw[:bytes.IndexByte(f.raw, ':')]
	// WordEncoder separates encoded-words (at most 75 characters, no
	// spaces in them) by one space: fold there.
	words := strings.ReplaceAll(mime.QEncoding.Encode("utf-8", v), " ", nl+" ")
	d.encodedHeaders = append(d.encodedHeaders, string(name))
	return []byte(string(name) + ": " + words + nl)
}

// multipart converts the parts of a multipart body; delimiters, preamble
// and epilogue are kept byte for byte.
func (d *converter) multipart(body []byte, boundary, childType string, depth int) []byte {
	delim := []byte("--" + boundary)
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/4)
	partStart := -1 // start of the current part's content, -1 before the first delimiter
	copied := 0     // body[:copied] is in out
	closed := false
	for pos := 0; pos < len(body) && !closed; {
		end := bytes.IndexByte(body[pos:], '\n')
		next := len(body)
		if end >= 0 {
			next = pos + end + 1
		}
		line := bytes.TrimRight(body[pos:next], "\r\n")
		rest, ok := bytes.CutPrefix(line, delim)
		if ok {
			rest, closed = bytes.CutPrefix(rest, []byte("--"))
			ok = len(bytes.Trim(rest, " \t")) == 0
		}
		if ok {
			if partStart < 0 {
				if d.long {
					out.Write(d.splitLines(body[:pos], "multipart preamble"))
					copied = pos
				} else if Has8Bit(body[:pos]) {
					d.leave("8-bit multipart preamble left as is")
				}
			} else {
				// The line end before a delimiter belongs to the delimiter.
				contentEnd := pos
				if contentEnd > partStart && body[contentEnd-1] == '\n' {
					contentEnd--
					if contentEnd > partStart && body[contentEnd-1] == '\r' {
						contentEnd--
					}
				}
				out.Write(body[copied:partStart])
				out.Write(d.entity(body[partStart:contentEnd], childType, depth+1, false))
				copied = contentEnd
			}
			if d.long && len(line) > maxLineOctets {
				// Only transport padding (blanks after the delimiter)
				// makes a delimiter line this long: it is dropped.
				d.leave("transport padding dropped from a delimiter line")
				out.Write(body[copied:pos])
				out.Write(bytes.TrimRight(line, " \t"))
				out.Write(body[pos+len(line) : next])
				copied = next
			}
			partStart = next
		} else {
			closed = false
		}
		pos = next
	}
	if !closed && partStart >= 0 && partStart < len(body) {
		// No close delimiter: the last part runs to the end.
		out.Write(body[copied:partStart])
		out.Write(d.entity(body[partStart:], childType, depth+1, false))
		copied = len(body)
	} else if partStart < 0 && d.long {
		out.Write(d.splitLines(body, "a multipart without delimiter"))
		copied = len(body)
	} else if closed && d.long {
		out.Write(body[copied:partStart])
		out.Write(d.splitLines(body[partStart:], "multipart epilogue"))
		copied = len(body)
	} else if closed && Has8Bit(body[partStart:]) {
		d.leave("8-bit multipart epilogue left as is")
	}
	out.Write(body[copied:])
	return out.Bytes()
}

// qpLines encodes a line-oriented body quoted-printable: each line's
// content (a lone CR included) is encoded and ends in CRLF, so decoding
// gives the lines back exactly as they go over SMTP; a last line without
// line end stays without one.
func qpLines(body []byte) []byte {
	out := make([]byte, 0, len(body)+len(body)/3)
	for pos := 0; pos < len(body); {
		end := bytes.IndexByte(body[pos:], '\n')
		next, content := len(body), body[pos:]
		if end >= 0 {
			next = pos + end + 1
			content = bytes.TrimSuffix(body[pos:pos+end], []byte("\r"))
		}
		// A lone CR inside the line is data (=0D), not a line break;
		// the line break is ours.
		out = appendQP(out, content)
		if end >= 0 {
			out = append(out, "\r\n"...)
		}
		pos = next
	}
	return out
}

// qpBinary encodes a "binary" body quoted-printable as one byte stream,
// its CRs and LFs as =0D and =0A.
func qpBinary(body []byte) []byte {
	return appendQP(make([]byte, 0, len(body)+len(body)/3), body)
}

// appendQP appends one line of content encoded quoted-printable (RFC 2045
// §6.7), in lines of at most 76 characters joined by soft line breaks.
// Unlike mime/quotedprintable's writer it never starts a soft-broken
// line with "-": such a line could read "--boundary" and end the part
// early (RFC 2046 §5.1.1), so a "-" there is written =2D.
func appendQP(out, line []byte) []byte {
	const hex = "0123456789ABCDEF"
	n := 0 // characters on the current output line
	for i, c := range line {
		last := i == len(line)-1
		literal := c >= '!' && c <= '~' && c != '=' || (c == ' ' || c == '\t') && !last
		size := 3
		if literal {
			size = 1
		}
		// 75 and the "=" of a soft break; the line's last character
		// may take the 76th place.
		if n+size > 75 && !(last && n+size <= 76) {
			out = append(out, "=\r\n"...)
			n = 0
		}
		if n == 0 && i > 0 && c == '-' {
			literal, size = false, 3
		}
		if literal {
			out = append(out, c)
		} else {
			out = append(out, '=', hex[c>>4], hex[c&0x0f])
		}
		n += size
	}
	return out
}
