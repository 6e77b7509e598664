package message

import (
	"bytes"
	"fmt"
	"mime"
	"mime/quotedprintable"
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
	d := &downgrader{}
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

type downgrader struct {
	converted      int      // leaf bodies re-encoded
	encodedHeaders []string // header fields RFC 2047-encoded
	left           []string // what stayed 8-bit, and why
}

func (d *downgrader) leave(format string, args ...any) {
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
func (d *downgrader) entity(raw []byte, defaultType string, depth int, top bool) []byte {
	if !Has8Bit(raw) {
		return raw
	}
	if depth > maxDowngradeDepth {
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
		if Has8Bit(f.raw) {
			newFields[i] = d.header(f, nl)
		}
	}
	var extra []string // fields to add at the end of the header
	newBody := body
	newCTE := ""
	switch {
	case body == nil || !Has8Bit(body):
	case strings.HasPrefix(mediaType, "multipart/"):
		boundary := params["boundary"]
		if boundary == "" {
			d.leave("%s without boundary left as is", mediaType)
			break
		}
		child := "text/plain"
		if mediaType == "multipart/digest" {
			child = "message/rfc822"
		}
		newBody = d.multipart(body, boundary, child, depth)
		newCTE = relabel7bit(cte, newBody)
	case mediaType == "message/rfc822":
		newBody = d.entity(body, "text/plain", depth+1, false)
		newCTE = relabel7bit(cte, newBody)
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
			// that is valid UTF-8 is UTF-8.
			extra = append(extra, "Content-Type: text/plain; charset=utf-8"+nl)
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

// relabel7bit returns the encoding a container gets once its content was
// converted: 7bit where it was declared 8bit or binary and its content is
// now 7-bit, "" (keep the field) otherwise.
func relabel7bit(cte string, body []byte) string {
	if (cte == "8bit" || cte == "binary") && !Has8Bit(body) {
		return "7bit"
	}
	return ""
}

// unstructuredFields are the header fields whose whole value is text
// (RFC 5322 §3.6.5, RFC 2045 §8) and so can become encoded-words.
var unstructuredFields = map[string]bool{"subject": true, "comments": true, "content-description": true}

// header returns the field RFC 2047-encoded when that is mechanical and
// safe, or as it was.
func (d *downgrader) header(f field, nl string) []byte {
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
func (d *downgrader) multipart(body []byte, boundary, childType string, depth int) []byte {
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
				if Has8Bit(body[:pos]) {
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
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/3)
	for pos := 0; pos < len(body); {
		end := bytes.IndexByte(body[pos:], '\n')
		next, content := len(body), body[pos:]
		if end >= 0 {
			next = pos + end + 1
			content = bytes.TrimSuffix(body[pos:pos+end], []byte("\r"))
		}
		// Binary mode: a lone CR inside the line is data (=0D), not a
		// line break; the line break is ours.
		w := quotedprintable.NewWriter(&out)
		w.Binary = true
		w.Write(content) // a bytes.Buffer does not fail
		w.Close()
		if end >= 0 {
			out.WriteString("\r\n")
		}
		pos = next
	}
	return out.Bytes()
}

// qpBinary encodes a "binary" body quoted-printable as one byte stream.
func qpBinary(body []byte) []byte {
	var out bytes.Buffer
	w := quotedprintable.NewWriter(&out)
	w.Binary = true
	w.Write(body)
	w.Close()
	return out.Bytes()
}
