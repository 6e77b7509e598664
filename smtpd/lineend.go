package smtpd

import (
	"bytes"
	"io"
	"net/netip"
	"strconv"
)

// lineFixer sits on the read side of every accepted connection, under
// go-smtp, and makes four repairs for the sloppy dialogues of 8-bit boards
// that go-smtp, rightly for a public MX, refuses:
//
//  1. Bare LF inside DATA becomes CRLF. 8-bit boards often end lines with
//     "\n" only (Arduino's print("\n") or a C string literal). go-smtp
//     deliberately recognises the end of DATA only as CRLF "." CRLF, so a
//     board that ends its message with "\n.\n" would hang until the data
//     timeout and its alarm would be lost. The fixer ends the text there
//     too, and keeps this from ever splitting one DATA into two messages
//     (see data, which also says what becomes of bare CR).
//
//  2. Trailing blanks after a command are dropped: go-smtp answers
//     "501 Bad command" to "DATA " or "QUIT " (a 4-letter command followed
//     by one blank), which Postfix, splitting commands on white space,
//     accepts. Arguments are unaffected (go-smtp trims those itself).
//
//  3. MAIL (or RCPT, DATA, BDAT, AUTH) before any HELO/EHLO gets an implicit
//     "HELO [peer-address]" in front of it (see implicitHelo).
//
//  4. An address without a domain in MAIL FROM or RCPT TO ("<plc>", "plc")
//     gets the marker domain unqualifiedDomain appended, so that go-smtp
//     passes it to the session, which decides what it means (see
//     unqualifiedEnd).
//
// Why bare LF is safe here, although go-smtp refuses it on purpose: see
// data. Besides, every connection reaching this reader has already passed
// the allowed_networks check at accept (gateListener), i.e. comes from a LAN
// client we trust to relay anyway; strangers never get here. plcmail never
// forwards the bytes it receives either: the message is re-serialised with
// CRLF endings into the spool, and the upstream client dot-stuffs it anew.
//
// The fixer follows the command stream just enough to know where DATA starts
// and ends (a line "DATA" up to the line "."), to pass BDAT chunks through
// untouched (their length is counted in bytes, and BDAT is binary), and to
// step aside for good after STARTTLS (what follows is TLS records, and clients
// that speak TLS are complete SMTP clients that say EHLO and end their lines
// properly). If its view ever differed from go-smtp's (a DATA that the server
// rejected), the only effect is that some command lines get CRLF endings,
// which go-smtp reads the same way.
//
// Command lines are handed on whole: bytes are read into in, complete lines
// (and message text) are moved to out, and Read returns from out. A command
// line longer than in is passed on in pieces, untouched, for go-smtp's own
// line limit to judge.
type lineFixer struct {
	tls     bool   // STARTTLS is offered: switch to passthrough after a STARTTLS line
	helo    []byte // implicit greeting, "HELO [addr]\r\n"; nil: never inject
	qualify bool   // mark addresses without a domain (repair 4)

	// implicit is called, in the Read that hands the implicit HELO to
	// go-smtp, with the command that needed it; the caller then hides
	// go-smtp's next reply, which is the one to that HELO.
	implicit func(verb string)

	mode    uint8
	greeted bool // the client said HELO/EHLO with a name, or we did for it
	midLine bool // inside an over-long command line that is passed on in pieces

	in     []byte // read from the connection, not yet looked at: in[inOff:]
	inOff  int
	out    []byte // ready for go-smtp: out[outOff:]
	outOff int
	err    error // read error, returned once out is drained

	rawLeft int64 // bytes left in the current BDAT chunk

	// DATA state, see data.
	pendCR  int       // CRs read and not yet put out: bare unless an LF follows
	start   lineBreak // how the current line of text began
	lineLen int       // bytes put out on the current line of text
	dotLine bool      // the current line of text, as put out, is "."

	// lenient: a DATA of this connection ended with a non-standard end
	// line ("\n.\n", "\r\n.\n", "\n.\r\n"). Every later MAIL command
	// then reaches go-smtp as "MAIL FROM:<lenientSender>", which the
	// session refuses (see data).
	lenient bool
}

// fixerBuf is the size of a connection's read buffer, which is also the
// longest command line the fixer repairs. go-smtp refuses command lines over
// max_line_length anyway; longer ones are passed on untouched.
const fixerBuf = 4096

// maxOut is the most out holds: a full in of message text, each bare line
// end doubled, and an implicit HELO.
const maxOut = 2*fixerBuf + 64

const (
	modeCommand = iota
	modeData
	modeChunk
	modeTLS
)

// lineBreak is how a line of message text ended, or began (the kind of the
// line end before it).
type lineBreak uint8

const (
	breakCRLF lineBreak = iota // CR LF as sent: the standard line end; also the start of the text
	breakLF                    // LF without CR: the sloppy board's line end
	breakCR                    // CR without LF
)

// implicitHelo returns the HELO line injected for a client that starts a
// transaction without HELO/EHLO: an RFC 5321 address literal of the peer, so
// that the Received field and the logs name the peer's address where the
// HELO name would be.
//
// Why: go-smtp answers MAIL before HELO with "502 5.5.1 Please introduce
// yourself first." (conn.go, handleMail and handleAuth check c.helo), and has
// no option or hook to relax it: Backend.NewSession, our only entry point,
// is called from HELO/EHLO alone. Postfix, with its default
// smtpd_helo_required = no, accepts the transaction (RFC 5321 4.1.4 says a
// client MUST say HELO, but a server decides what it tolerates), and minimal
// Arduino sketches do skip it. An argument-less "HELO" is still refused with
// 501 by both and is not treated as a greeting here either.
//
// Why at this layer: it is the only place under go-smtp where we see the
// command stream of a connection that passed the allowed_networks check, and
// the only one that keeps go-smtp's state machine, session and reply
// handling intact (forking go-smtp for a one-line check would not). It is
// safe for the same reason as the bare-LF repair: only LAN clients allowed
// to relay reach it, and the HELO name is not used for any decision.
func implicitHelo(ip netip.Addr) []byte {
	ip = ip.WithZone("")
	if ip.Is4() {
		return []byte("HELO [" + ip.String() + "]\r\n")
	}
	return []byte("HELO [IPv6:" + ip.String() + "]\r\n")
}

// read fills b with the repaired byte stream read from r.
func (f *lineFixer) read(r io.Reader, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for f.outOff == len(f.out) {
		f.out, f.outOff = f.out[:0], 0
		if f.inOff < len(f.in) && f.process() {
			continue
		}
		if f.err != nil {
			// What is left in in is a command line without its end,
			// cut off by a timeout or a hang-up. It is not a command:
			// handed on, go-smtp would run it (see gateConn.readErr).
			err := f.err
			f.err = nil
			f.in, f.inOff = f.in[:0], 0
			return 0, err
		}
		if f.mode == modeTLS && f.inOff == len(f.in) {
			return r.Read(b)
		}
		f.fill(r)
	}
	n := copy(b, f.out[f.outOff:])
	f.outOff += n
	return n, nil
}

// fill reads once from r into the free end of in, after moving the unread
// part to the front.
func (f *lineFixer) fill(r io.Reader) {
	if f.in == nil {
		f.in = make([]byte, 0, fixerBuf)
		// Command replies are short; out grows (to maxOut, at DATA)
		// only for sessions that send a message, so idle ones stay small.
		f.out = make([]byte, 0, 256)
	}
	if f.inOff > 0 {
		f.in = f.in[:copy(f.in, f.in[f.inOff:])]
		f.inOff = 0
	}
	n, err := r.Read(f.in[len(f.in):cap(f.in)])
	f.in = f.in[:len(f.in)+n]
	if err != nil {
		f.err = err
	} else if n == 0 && len(f.in) == cap(f.in) {
		// Cannot happen: process consumes a full buffer (over-long line).
		f.err = io.ErrNoProgress
	}
}

// process moves what it can from in to out and reports whether out is not
// empty. It stops when a command line is incomplete, before a command that
// needs the implicit HELO while out still holds earlier lines, and right
// after putting the implicit HELO in out, so that go-smtp gets it alone.
func (f *lineFixer) process() bool {
	for f.inOff < len(f.in) {
		rest := f.in[f.inOff:]
		switch f.mode {
		case modeData:
			f.inOff += f.data(rest)
		case modeChunk:
			n := int(min(f.rawLeft, int64(len(rest))))
			f.out = append(f.out, rest[:n]...)
			f.inOff += n
			if f.rawLeft -= int64(n); f.rawLeft <= 0 {
				f.mode = modeCommand
			}
		case modeTLS:
			f.out = append(f.out, rest...)
			f.inOff = len(f.in)
		default:
			i := bytes.IndexByte(rest, '\n')
			switch {
			case f.midLine:
				// The tail of an over-long line: untouched.
				if i < 0 {
					f.out = append(f.out, rest...)
					f.inOff = len(f.in)
				} else {
					f.out = append(f.out, rest[:i+1]...)
					f.inOff += i + 1
					f.midLine = false
				}
			case i < 0:
				if f.inOff > 0 || len(f.in) < cap(f.in) {
					return len(f.out) > 0 // wait for the rest of the line
				}
				f.out = append(f.out, rest...)
				f.inOff = len(f.in)
				f.midLine = true
			default:
				switch f.command(rest[:i+1]) {
				case lineDone:
					f.inOff += i + 1
				case lineWait, lineHelo:
					return true
				}
			}
		}
	}
	return len(f.out) > 0
}

// What command did with a line.
const (
	lineDone = iota // appended to out
	lineWait        // not consumed: out holds earlier lines, which go first
	lineHelo        // not consumed: out holds the implicit HELO, which goes alone
)

// command handles one complete command line (ending in LF): it appends the
// line without trailing blanks to out and follows the mode changes it
// causes; or it puts the implicit HELO in front of it.
func (f *lineFixer) command(line []byte) int {
	body := line[:len(line)-1]
	cr := len(body) > 0 && body[len(body)-1] == '\r'
	if cr {
		body = body[:len(body)-1]
	}
	body = bytes.TrimRight(body, " \t")
	verb := commandVerb(body)

	if !f.greeted && f.helo != nil {
		switch verb {
		case "HELO", "EHLO":
			// go-smtp's rule (parseCmd, parseHelloArgument): a blank,
			// then a non-empty name; "HELO" alone gets 501 and greets no one.
			f.greeted = len(body) > 5 && body[4] == ' ' && len(bytes.TrimSpace(body[5:])) > 0
		case "MAIL", "RCPT", "DATA", "BDAT", "AUTH":
			// Hand the HELO to go-smtp alone, in a Read of its own after
			// everything before it has been read. go-smtp's bufio.Reader
			// calls Read only when it holds no complete line, and go-smtp
			// asks for a line only after answering the one before; so
			// when that Read comes, every earlier command has its reply,
			// and the next reply go-smtp writes is the HELO's, which
			// gateConn.Write hides.
			if len(f.out) > 0 {
				return lineWait
			}
			f.greeted = true
			f.out = append(f.out, f.helo...)
			if f.implicit != nil {
				f.implicit(verb)
			}
			return lineHelo
		}
	}

	if f.lenient && verb == "MAIL" {
		// In the stream, not as a flag the session reads: the fixer
		// reads ahead of go-smtp, and a flag would already be set when
		// go-smtp handles the MAIL that came before the lenient end.
		body = []byte("MAIL FROM:<" + lenientSender + ">")
	}
	if f.qualify && (verb == "MAIL" || verb == "RCPT") {
		if i := unqualifiedEnd(body, verb); i >= 0 {
			f.out = append(f.out, body[:i]...)
			f.out = append(f.out, '@')
			f.out = append(f.out, unqualifiedDomain...)
			body = body[i:]
		}
	}
	f.out = append(f.out, body...)
	if cr {
		f.out = append(f.out, '\r')
	}
	f.out = append(f.out, '\n')

	switch {
	case len(body) == 4 && verb == "DATA":
		f.mode, f.start, f.pendCR, f.lineLen, f.dotLine = modeData, breakCRLF, 0, 0, false
		if cap(f.out) < maxOut {
			// Message text fills out up to a whole in at a time: grow
			// it once here rather than step by step in data.
			f.out = append(make([]byte, 0, maxOut), f.out...)
		}
	case f.tls && verb == "STARTTLS":
		f.mode = modeTLS
	case verb == "BDAT":
		fields := bytes.Fields(body[4:])
		if len(fields) == 0 {
			return lineDone
		}
		if size, err := strconv.ParseUint(string(fields[0]), 10, 32); err == nil && size > 0 {
			f.mode, f.rawLeft = modeChunk, int64(size)
		}
	}
	return lineDone
}

// commandVerb returns the command of a line, upper-cased, if the fixer
// cares about it: the first four letters when the line is four letters long
// or the fifth byte is a blank, as go-smtp's parseCmd reads it, or STARTTLS
// for any line starting so. Other lines give "".
func commandVerb(line []byte) string {
	if len(line) >= 8 && bytes.EqualFold(line[:8], []byte("STARTTLS")) {
		return "STARTTLS"
	}
	if len(line) != 4 && (len(line) < 5 || line[4] != ' ') {
		return ""
	}
	for _, v := range fixerVerbs {
		if bytes.EqualFold(line[:4], []byte(v)) {
			return v
		}
	}
	return ""
}

var fixerVerbs = [...]string{"HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "AUTH"}

// data copies message text from in to out, every line end made CRLF, until
// the end of data; it returns how many input bytes it consumed.
//
// Where the text ends. RFC 5321 ends it with CRLF "." CRLF only, and go-smtp
// only sees that. Boards that end lines with a bare LF also end their text
// with "\n.\n", or "\n.\r\n" when they print the text with "\n" and the
// dot with println. Such a "." line, bounded by CRLF or LF on both sides
// with at least one LF, ends the text here too (the lenient end), and the
// fixer passes go-smtp a standard end in its place.
//
// Why the lenient end is safe. The danger of a lenient end is SMTP smuggling
// (CVE-2023-51764, Postfix's smtpd_forbid_bare_newline): a complete client,
// often an MTA relaying text it did not write, sends a text holding
// "\n.\n" followed by "MAIL FROM:<forged>..." and ends it properly with
// CRLF "." CRLF; a server that ends the text at the bare LF runs the rest
// as commands, a second message with a sender the client never chose.
// Postfix's answer (smtpd_forbid_bare_newline = normalize) is to require
// CRLF "." CRLF; that would hang the boards this listener exists for until
// data_timeout and lose their alarm. Ours keeps the lenient end and
// removes what smuggling needs, a second transaction after it: once a text
// of the connection ended leniently, every later MAIL is answered with 421
// and the session ends (lenientSender, session.Mail). One DATA thus gives at most one message: the
// text up to the lenient end, with the client's own envelope. A board
// that sends one alarm per connection, as sketches do, never notices; one
// that sends a second on the same connection is told to reconnect.
//
// Bare CR. A "." line is never an end when a bare CR bounds it ("\r.\r",
// "\r\n.\r", "\r.\r\n"): no board ends text that way, and smuggling
// research used it; its dot is doubled so go-smtp reads it as text. A bare CR is made a line end, as old Mac text means it, except that
// CRs right before a line end belong to it ("\r\r\n", a board that prints
// "\r" and then println, is one line end: go-smtp on its own would then
// miss the end of the text). A line after a bare CR has a leading dot
// doubled too: the client did not see a line start there, so it did not
// dot-stuff. session.Data applies the same rule to text that did not pass
// here (TLS, BDAT) and drops NUL bytes.
func (f *lineFixer) data(in []byte) int {
	for k := 0; k < len(in); k++ {
		c := in[k]
		switch c {
		case '\r':
			f.pendCR++
			continue
		case '\n':
			kind := breakLF
			if f.pendCR > 0 {
				kind, f.pendCR = breakCRLF, 0
			}
			if f.lineEnd(kind) {
				f.mode = modeCommand
				return k + 1
			}
			continue
		}
		for ; f.pendCR > 0; f.pendCR-- {
			f.lineEnd(breakCR)
		}
		if f.lineLen == 0 && c == '.' && f.start == breakCR {
			f.out = append(f.out, '.')
			f.lineLen++
		}
		// The rest of the line up to its next CR or LF is plain text:
		// it goes out in one append rather than byte by byte (the
		// per-byte loop was most of the fixer's cost on a 4 KiB message).
		end := k + 1 + textRun(in[k+1:])
		f.out = append(f.out, in[k:end]...)
		f.lineLen += end - k
		f.dotLine = f.lineLen == 1 && c == '.'
		k = end - 1
	}
	return len(in)
}

// textRun returns how many bytes at the start of b hold neither CR nor LF.
func textRun(b []byte) int {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	if i := bytes.IndexByte(b, '\r'); i >= 0 {
		return i
	}
	return len(b)
}

// lineEnd puts out a line end of the given kind as CRLF and reports whether
// it ended the text (see data).
func (f *lineFixer) lineEnd(kind lineBreak) bool {
	if f.dotLine {
		switch {
		case f.start == breakCRLF && kind == breakCRLF:
			f.out = append(f.out, "\r\n"...)
			return true
		case f.start != breakCR && kind != breakCR:
			f.out = append(f.out, "\r\n"...)
			f.lenient = true
			return true
		}
		f.out = append(f.out, '.') // "." as text
	}
	f.out = append(f.out, "\r\n"...)
	f.start, f.lineLen, f.dotLine = kind, 0, false
	return false
}

// lenientSender replaces the sender of every MAIL command that follows a
// lenient end of data on the same connection (see data); the session
// answers it with 421 and ends the session. It is in the .invalid
// top-level domain, like unqualifiedDomain: a client that sends it itself
// only gets the same refusal.
const lenientSender = "after-bare-lf-end@lenient.plcmail.invalid"

// unqualifiedDomain marks an envelope address that the client sent without
// a domain. It is in the .invalid top-level domain, reserved by RFC 2606 so
// that it names no real host: a marked address can never be mistaken for a
// deliverable one, and a client that sends the marker itself is treated as
// if it had sent no domain, which is what such an address amounts to.
const unqualifiedDomain = "unqualified.plcmail.invalid"

// unqualifiedEnd returns where, in a MAIL or RCPT command line without its
// line ending, the local part of an address without a domain ends, or -1
// when the line holds no such address.
//
// Why: Arduino sketches and other minimal firmware write "MAIL FROM:<plc>"
// or "MAIL FROM:plc", as one would on a Unix host. go-smtp refuses that in
// handleMail/handleRcpt with "501 5.5.2 Was expecting MAIL arg syntax"
// (parser.parseMailbox insists on an "@") before the session sees it, so
// there is no hook above this layer. Postfix accepts it
// (strict_rfc821_envelopes = no) and its cleanup(8) has trivial-rewrite(8)
// append @$myorigin to envelope addresses (append_at_myorigin = yes; since
// Postfix 3.0 append_dot_mydomain defaults to no, so nothing else is added).
//
// The fixer only marks the address; what it becomes is the session's
// decision (session.Mail qualifies a sender with gateway.hostname,
// session.Rcpt refuses a recipient), so that policy stays in one place with
// the rest of it and go-smtp's own parsing of the rest of the line, ESMTP
// parameters included, is untouched. Only what go-smtp would otherwise
// accept is marked: a dot-string local part that go-smtp's parser reads
// whole, in angle brackets or bare as go-smtp allows it. Quoted local parts,
// source routes, "<>" (the null sender) and anything malformed are left for
// go-smtp to judge as before.
func unqualifiedEnd(line []byte, verb string) int {
	prefix := "FROM:"
	if verb == "RCPT" {
		prefix = "TO:"
	}
	i := skipBlanks(line, 5) // go-smtp: TrimSpace(line[5:]), then the prefix
	if len(line)-i < len(prefix) || !bytes.EqualFold(line[i:i+len(prefix)], []byte(prefix)) {
		return -1
	}
	i = skipBlanks(line, i+len(prefix))
	bracket := i < len(line) && line[i] == '<'
	if bracket {
		i++
	}
	start := i
	for ; i < len(line); i++ {
		c := line[i]
		if c == '>' || c == ' ' || c == '\t' {
			break
		}
		// "@": qualified already, a source route, or an empty local
		// part; the others: what go-smtp's dot-string parser refuses;
		// controls: what session.bareAddress refuses.
		if c == '@' || c < ' ' || c == 0x7f || bytes.IndexByte([]byte(`()<[]:;\,"`), c) >= 0 {
			return -1
		}
	}
	if i == start || bracket != (i < len(line) && line[i] == '>') {
		return -1 // "<>", nothing at all, or the brackets do not match
	}
	return i
}

func skipBlanks(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}
