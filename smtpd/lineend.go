package smtpd

import (
	"io"
	"strconv"
	"strings"
)

// lineFixer rewrites bare LF to CRLF inside DATA, on the read side of a
// connection, before go-smtp sees the bytes.
//
// Why: 8-bit boards often end lines with "\n" only (Arduino's print("\n") or
// a C string literal). go-smtp deliberately recognises the end of DATA only as
// CRLF "." CRLF, so a board that ends its message with "\n.\n" would hang
// until the data timeout and its alarm would be lost.
//
// Why this is safe here, although go-smtp refuses bare LF on purpose: SMTP
// smuggling needs two MTAs that disagree about where a message ends, so that
// bytes one of them treats as message text become commands for the next.
// plcmail never forwards the bytes it receives: the listener parses the
// message, re-serialises it with CRLF endings into the spool, and the mailer
// writes it upstream with its own dot-stuffing. There is no second party to
// disagree with. And every connection reaching this reader has already passed
// the allowed_networks check at accept (gateListener), i.e. comes from a LAN
// client we trust to relay anyway; strangers never get here. Normalising is
// what Postfix does for such clients too (smtpd_forbid_bare_newline_exclusions
// defaults to $mynetworks).
//
// The fixer follows the command stream just enough to know where DATA starts
// and ends (a line "DATA" up to the line "."), to pass BDAT chunks through
// untouched (their length is counted in bytes, and BDAT is binary), and to
// step aside for good after STARTTLS (what follows is TLS records, and clients
// that speak TLS end their lines properly). If its view ever differed from
// go-smtp's (a DATA that the server rejected), the only effect is that some
// command lines get CRLF endings, which go-smtp reads the same way.
type lineFixer struct {
	tls  bool // STARTTLS is offered: switch to passthrough after a STARTTLS line
	mode uint8

	line    [24]byte // start of the current command line
	lineLen int      // its full length, may exceed len(line)

	rawLeft int64 // bytes left in the current BDAT chunk

	prevCR bool  // data: the previous input byte was CR
	dstate uint8 // data: end-of-data detector state over the output

	pending    byte // one output byte that did not fit a 1-byte Read
	hasPending bool
}

const (
	modeCommand = iota
	modeData
	modeChunk
	modeTLS
)

const (
	dLineStart = iota
	dDot
	dDotCR
	dMiddle
	dCR
)

// read fills b from r. Inside DATA, one input byte may become two output
// bytes, so it reads at most len(b)/2 bytes into the tail of b and expands
// them towards the front: before input byte k (at tail+k) is handled at most
// 2k bytes were written, and 2k+1 < tail+k+1 because k < len(b)/2 <= tail,
// so output never overtakes unread input.
func (f *lineFixer) read(r io.Reader, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if f.hasPending {
		b[0] = f.pending
		f.hasPending = false
		return 1, nil
	}
	if f.mode == modeTLS {
		return r.Read(b)
	}
	m := len(b) / 2
	if m == 0 {
		m = 1
	}
	tail := len(b) - m
	n, err := r.Read(b[tail : tail+m])
	o := 0
	for k := 0; k < n; k++ {
		c := b[tail+k]
		switch f.mode {
		case modeData:
			if c == '\n' && !f.prevCR {
				f.emit(b, &o, '\r')
			}
			f.prevCR = c == '\r'
			f.emit(b, &o, c)
		case modeChunk:
			b[o] = c
			o++
			if f.rawLeft--; f.rawLeft <= 0 {
				f.mode = modeCommand
				f.lineLen = 0
			}
		case modeCommand:
			b[o] = c
			o++
			f.commandByte(c)
		default: // modeTLS, entered in the middle of this buffer
			b[o] = c
			o++
		}
	}
	return o, err
}

// emit writes one byte of DATA output and tracks the end-of-data line.
func (f *lineFixer) emit(b []byte, o *int, c byte) {
	if *o < len(b) {
		b[*o] = c
		*o++
	} else {
		f.pending, f.hasPending = c, true
	}
	switch f.dstate {
	case dLineStart:
		switch c {
		case '.':
			f.dstate = dDot
		case '\r':
			f.dstate = dCR
		default:
			f.dstate = dMiddle
		}
	case dDot:
		if c == '\r' {
			f.dstate = dDotCR
		} else {
			f.dstate = dMiddle
		}
	case dDotCR:
		if c == '\n' { // CRLF . CRLF: back to commands
			f.mode = modeCommand
			f.lineLen = 0
			return
		}
		f.dstate = dMiddle
		if c == '\r' {
			f.dstate = dCR
		}
	case dMiddle, dCR:
		switch {
		case c == '\r':
			f.dstate = dCR
		case c == '\n' && f.dstate == dCR:
			f.dstate = dLineStart
		default:
			f.dstate = dMiddle
		}
	}
}

func (f *lineFixer) commandByte(c byte) {
	if c != '\n' {
		if f.lineLen < len(f.line) {
			f.line[f.lineLen] = c
		}
		f.lineLen++
		return
	}
	n := f.lineLen
	f.lineLen = 0
	if n <= len(f.line) && n > 0 && f.line[n-1] == '\r' {
		n--
	}
	line := strings.ToUpper(string(f.line[:min(n, len(f.line))]))
	switch {
	case n == 4 && line == "DATA":
		f.mode, f.dstate, f.prevCR = modeData, dLineStart, false
	case f.tls && strings.HasPrefix(line, "STARTTLS"):
		f.mode = modeTLS
	case n <= len(f.line) && strings.HasPrefix(line, "BDAT "):
		fields := strings.Fields(line[5:])
		if len(fields) == 0 {
			return
		}
		if size, err := strconv.ParseUint(fields[0], 10, 32); err == nil && size > 0 {
			f.mode, f.rawLeft = modeChunk, int64(size)
		}
	}
}
