package message

import (
	"bytes"
	"unicode/utf8"
)

// field is one header field as it was received. Repair, RecipientFields,
// the downgrade and HeaderIsUTF8 all read the header through splitHeader,
// so that they never disagree on where a field or the header ends.
type field struct {
	// raw is the field as it came: first line and continuation lines,
	// each with its line end (CRLF, bare LF, or none at the end of data).
	// Both slices point into the message; nothing is copied.
	raw []byte
	// name is the name as written, blanks before the colon (obsolete
	// syntax) trimmed.
	name []byte
}

// is reports whether the field is named name, compared as RFC 5322 says,
// without regard to case.
func (f field) is(name string) bool {
	return bytes.EqualFold(f.name, []byte(name))
}

// value returns what follows the colon, unfolded: each line end and one
// CR before it removed, blanks kept. A single-line value is a slice of
// raw, not a copy.
func (f field) value() []byte {
	v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
	if i := bytes.IndexByte(v, '\n'); i < 0 || i == len(v)-1 {
		return trimEOL(v) // one line: nothing to join
	}
	out := make([]byte, 0, len(v))
	for l := range bytes.Lines(v) {
		out = append(out, trimEOL(l)...)
	}
	return out
}

// splitHeader separates the header fields of a message (or MIME entity)
// from its body. The header ends at the first empty line, which sep then
// holds with its line end, or, as Postfix reads a header, at the first
// line that is neither a field nor a continuation, which starts body (sep
// is nil). Without either the entity is all header and body is nil. A
// continuation before the first field is no continuation: it ends the
// header there.
func splitHeader(data []byte) (fields []field, sep, body []byte) {
	pos := 0
	for pos < len(data) {
		next := len(data)
		if end := bytes.IndexByte(data[pos:], '\n'); end >= 0 {
			next = pos + end + 1
		}
		line := data[pos:next]
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			return fields, line, data[next:]
		}
		switch {
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			f := &fields[len(fields)-1]
			f.raw = data[pos-len(f.raw) : next]
		case isHeaderField(line):
			name := bytes.TrimRight(line[:bytes.IndexByte(line, ':')], " \t")
			fields = append(fields, field{raw: line, name: name})
		default:
			return fields, nil, data[pos:]
		}
		pos = next
	}
	return fields, nil, nil
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

// trimEOL removes a line's LF and one CR before it. A line without LF (the
// last of the data) keeps a CR it ends in: that CR is data, not a line end.
func trimEOL(l []byte) []byte {
	if l, ok := bytes.CutSuffix(l, []byte("\n")); ok {
		return bytes.TrimSuffix(l, []byte("\r"))
	}
	return l
}

// appendCRLF appends the lines of text to out, each ending in CRLF
// whatever it ended in (a last line without line end gets one). Empty text
// has no lines and appends nothing.
func appendCRLF(out, text []byte) []byte {
	for l := range bytes.Lines(text) {
		out = append(out, trimEOL(l)...)
		out = append(out, "\r\n"...)
	}
	return out
}

// A Field is a header field as RecipientFields returns it.
type Field struct {
	Name  string // as written, without blanks before the colon
	Value string // unfolded: line breaks removed, blanks kept
}

// RecipientFields returns the To, Cc and Bcc fields of data's header, in
// their order, for `sendmail -t`. It finds the header exactly as Repair
// does, so the recipients taken and the fields that are mailed never
// disagree on where the header ends.
func RecipientFields(data []byte) []Field {
	hdr, _, _ := splitHeader(data)
	var fields []Field
	for _, f := range hdr {
		if f.is("to") || f.is("cc") || f.is("bcc") {
			fields = append(fields, Field{Name: string(f.name), Value: string(f.value())})
		}
	}
	return fields
}

// HeaderIsUTF8 reports whether the message header, where splitHeader (and
// so the downgrade) sees it end, holds non-ASCII text that is valid UTF-8:
// the case where a transaction needs SMTPUTF8 although every address is
// ASCII (RFC 6531 §3.4).
func HeaderIsUTF8(data []byte) bool {
	_, sep, body := splitHeader(data)
	hdr := data[:len(data)-len(sep)-len(body)]
	return Has8Bit(hdr) && utf8.Valid(hdr)
}
