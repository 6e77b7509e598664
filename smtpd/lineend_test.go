package smtpd

import (
	"bytes"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
)

// readThrough reads all of in through a fresh lineFixer with Read buffers of
// bufSize bytes, from a source that returns at most srcChunk bytes per Read.
func readThrough(in []byte, tls bool, bufSize, srcChunk int) []byte {
	return readThroughFixer(&lineFixer{tls: tls}, in, bufSize, srcChunk)
}

func readThroughFixer(f *lineFixer, in []byte, bufSize, srcChunk int) []byte {
	var src io.Reader = bytes.NewReader(in)
	if srcChunk == 1 {
		src = iotest.OneByteReader(src)
	} else if srcChunk > 1 {
		src = &chunkReader{r: src, n: srcChunk}
	}
	var out []byte
	buf := make([]byte, bufSize)
	for {
		n, err := f.read(src, buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out
		}
	}
}

type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(b) > c.n {
		b = b[:c.n]
	}
	return c.r.Read(b)
}

func TestLineFixer(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
		in   string
		want string
	}{
		{"commands untouched", false,
			"EHLO 192.168.1.177\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\n",
			"EHLO 192.168.1.177\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\n"},
		{"bare LF in DATA and at its end", false,
			"DATA\nSubject: Alarm\nPump 3 failed\n.\nQUIT\n",
			"DATA\nSubject: Alarm\r\nPump 3 failed\r\n.\r\nQUIT\n"},
		{"CRLF data unchanged", false,
			"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
			"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"},
		{"lower-case data command", false,
			"data\nx\n.\nrset\n",
			"data\nx\r\n.\r\nrset\n"},
		{"mixed endings", false,
			"DATA\r\na\r\nb\n.\r\nNOOP\n",
			"DATA\r\na\r\nb\r\n.\r\nNOOP\n"},
		{"dot-stuffed lines are not the end", false,
			"DATA\n..\n.x\n. \n.\nNOOP\n",
			"DATA\n..\r\n.x\r\n. \r\n.\r\nNOOP\n"},
		{"empty message", false,
			"DATA\n.\nQUIT\n",
			"DATA\n.\r\nQUIT\n"},
		{"bare CR becomes a line end", false,
			"DATA\na\rb\n.\n",
			"DATA\na\r\nb\r\n.\r\n"},
		{"two messages", false,
			"DATA\na\r\n.\r\nMAIL FROM:<x@y>\nDATA\nb\n.\n",
			"DATA\na\r\n.\r\nMAIL FROM:<x@y>\nDATA\nb\r\n.\r\n"},
		{"every MAIL after a lenient end carries lenientSender", false,
			"DATA\na\n.\nMAIL FROM:<x@y> SIZE=1\nRSET\nmail from:<>\nDATA\nb\n.\n",
			"DATA\na\r\n.\r\nMAIL FROM:<" + lenientSender + ">\nRSET\nMAIL FROM:<" + lenientSender + ">\nDATA\nb\r\n.\r\n"},
		{"DATA with argument is not DATA", false,
			"DATA x\nhi\n",
			"DATA x\nhi\n"},
		{"long command line before DATA", false,
			"MAIL FROM:<" + strings.Repeat("a", 100) + "@example.com>\nDATA\nz\n.\n",
			"MAIL FROM:<" + strings.Repeat("a", 100) + "@example.com>\nDATA\nz\r\n.\r\n"},
		{"BDAT chunk passes raw", false,
			"BDAT 7 LAST\r\na\nb\nDATA\nNOOP\n",
			"BDAT 7 LAST\r\na\nb\nDATA\nNOOP\n"},
		{"after a BDAT chunk commands are followed again", false,
			"BDAT 2\r\n\n\nDATA\nx\n.\n",
			"BDAT 2\r\n\n\nDATA\nx\r\n.\r\n"},
		{"STARTTLS offered: passthrough after it", true,
			"STARTTLS\r\n\x16\x03\x01\nDATA\nx\n",
			"STARTTLS\r\n\x16\x03\x01\nDATA\nx\n"},
		{"STARTTLS not offered: stay", false,
			"STARTTLS\r\nDATA\nx\n.\n",
			"STARTTLS\r\nDATA\nx\r\n.\r\n"},
		{"STARTTLS inside a message is text", true,
			"DATA\nSTARTTLS\nx\n.\n",
			"DATA\nSTARTTLS\r\nx\r\n.\r\n"},
		{"8-bit text", false,
			"DATA\nSubject: St\xc3\xb6rung\n\xe4\n.\n",
			"DATA\nSubject: St\xc3\xb6rung\r\n\xe4\r\n.\r\n"},
		{"trailing blanks after commands dropped", false,
			"NOOP \r\nRSET\t\nMAIL FROM:<a@b> \t \r\nDATA \r\nx \r\n.\r\nQUIT \n",
			"NOOP\r\nRSET\nMAIL FROM:<a@b>\r\nDATA\r\nx \r\n.\r\nQUIT\n"},
		{"blanks-only line", false,
			"  \r\n \n",
			"\r\n\n"},
		{"long command line passes untouched in pieces", false,
			"MAIL FROM:<" + strings.Repeat("a", 5000) + "@example.com> \r\nNOOP \r\n",
			"MAIL FROM:<" + strings.Repeat("a", 5000) + "@example.com> \r\nNOOP\r\n"},
		{"a command without its line end is not handed on", false,
			"DATA\nx\n.\nQUI",
			"DATA\nx\r\n.\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, bufSize := range []int{1, 2, 3, 5, 64, 4096} {
				for _, src := range []int{0, 1, 3} {
					got := readThrough([]byte(tt.in), tt.tls, bufSize, src)
					if string(got) != tt.want {
						t.Fatalf("buf %d, src chunk %d:\n got %q\nwant %q", bufSize, src, got, tt.want)
					}
				}
			}
		})
	}
}

// TestLineFixerEndOfData: which "." lines end the text, which of those are
// lenient (the session then takes no further MAIL on the connection), and
// that no other "." line reaches go-smtp as CRLF "." CRLF.
func TestLineFixerEndOfData(t *testing.T) {
	tests := []struct {
		name, text string // text after "DATA\r\n"
		want       string
		lenient    bool
	}{
		{"standard", "a\r\n.\r\nNOOP\r\n", "a\r\n.\r\nNOOP\r\n", false},
		{"standard, empty text", ".\r\nNOOP\r\n", ".\r\nNOOP\r\n", false},
		{"extra CR before the standard end", "a\r\r\n.\r\nNOOP\r\n", "a\r\n.\r\nNOOP\r\n", false},
		{"LF.LF", "a\n.\nNOOP\r\n", "a\r\n.\r\nNOOP\r\n", true},
		{"CRLF.LF", "a\r\n.\nNOOP\r\n", "a\r\n.\r\nNOOP\r\n", true},
		{"LF.CRLF", "a\n.\r\nNOOP\r\n", "a\r\n.\r\nNOOP\r\n", true},
		{"empty text, .LF", ".\nNOOP\r\n", ".\r\nNOOP\r\n", true},
		{"CR.CR is text", "a\r.\rb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", false},
		{"CRLF.CR is text", "a\r\n.\rb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", false},
		{"CR.CRLF is text", "a\r.\r\n.\r\n", "a\r\n..\r\n.\r\n", false},
		{"LF.CR is text", "a\n.\rb\r\n.\r\n", "a\r\n..\r\nb\r\n.\r\n", false},
		{"dot after a bare CR keeps its dot", "a\r.b\r\n.\r\n", "a\r\n..b\r\n.\r\n", false},
		{"dot-stuffed line", "..\r\n.\r\n", "..\r\n.\r\n", false},
		{"NUL is text for the end", "a\r\n\x00.\r\n.\r\n", "a\r\n\x00.\r\n.\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, bufSize := range []int{1, 3, 4096} {
				for _, src := range []int{0, 1} {
					f := &lineFixer{}
					got := readThroughFixer(f, []byte("DATA\r\n"+tt.text), bufSize, src)
					if string(got) != "DATA\r\n"+tt.want {
						t.Fatalf("buf %d, src chunk %d:\n got %q\nwant %q", bufSize, src, got, "DATA\r\n"+tt.want)
					}
					if f.lenient != tt.lenient {
						t.Errorf("lenient %v, want %v", f.lenient, tt.lenient)
					}
				}
			}
		})
	}
}

// TestUnqualifiedEnd: which MAIL/RCPT lines carry an address without a
// domain that go-smtp would otherwise accept, and where its local part ends.
func TestUnqualifiedEnd(t *testing.T) {
	const none = -1
	tests := []struct {
		line string
		want int // index after the local part, or none
	}{
		{"MAIL FROM:<plc>", 14},
		{"mail from:<plc>", 14},
		{"MAIL FROM:plc", 13},
		{"MAIL FROM: <plc>", 15},
		{"MAIL  FROM:\t<plc>", 16},
		{"MAIL FROM:<plc> SIZE=100 BODY=8BITMIME", 14},
		{"MAIL FROM:plc SIZE=100", 13},
		{"MAIL FROM:<press-1.line_2+x>", 27},
		{"MAIL FROM:<pl\xc3\xa4c>", 16}, // UTF-8, as go-smtp takes it
		{"RCPT TO:<ops>", 12},
		{"rcpt to:ops NOTIFY=NEVER", 11},
		{"MAIL FROM:<>", none}, // the null sender stays null
		{"MAIL FROM:<> SIZE=10", none},
		{"MAIL FROM:", none},
		{"MAIL FROM:<plc@example.com>", none},
		{"MAIL FROM:plc@example.com", none},
		{"MAIL FROM:<@relay.example:plc>", none}, // source route: go-smtp's call
		{"MAIL FROM:<\"plc\">", none},            // quoted local part
		{"MAIL FROM:<plc", none},                 // unbalanced brackets
		{"MAIL FROM:plc>", none},
		{"MAIL FROM:<plc x>", none},
		{"MAIL FROM:<pl:c>", none},
		{"MAIL FROM:<pl\x01c>", none},
		{"MAIL TO:<plc>", none},
		{"RCPT FROM:<ops>", none},
		{"MAIL", none},
		{"MAIL ", none},
	}
	for _, tt := range tests {
		verb := strings.ToUpper(tt.line[:4])
		if got := unqualifiedEnd([]byte(tt.line), verb); got != tt.want {
			t.Errorf("%q: %d, want %d", tt.line, got, tt.want)
		}
	}
}

// TestLineFixerQualify: the marker goes in after the local part, the rest
// of the line (and everything else) is untouched, and nothing happens
// without qualify.
func TestLineFixerQualify(t *testing.T) {
	const m = "@" + unqualifiedDomain
	tests := []struct{ in, want string }{
		{"MAIL FROM:<plc>\r\nRCPT TO:<ops>\r\n", "MAIL FROM:<plc" + m + ">\r\nRCPT TO:<ops" + m + ">\r\n"},
		{"mail from:plc SIZE=10 \nrcpt to:ops@example.com\n", "mail from:plc" + m + " SIZE=10\nrcpt to:ops@example.com\n"},
		{"MAIL FROM:<>\r\nNOOP <plc>\r\n", "MAIL FROM:<>\r\nNOOP <plc>\r\n"},
		{"DATA\nMAIL FROM:<plc>\r\n.\r\nMAIL FROM:<plc>\n", "DATA\nMAIL FROM:<plc>\r\n.\r\nMAIL FROM:<plc" + m + ">\n"},
	}
	for _, tt := range tests {
		for _, bufSize := range []int{1, 3, 64, 4096} {
			for _, src := range []int{0, 1, 3} {
				if got := string(readThroughFixer(&lineFixer{qualify: true}, []byte(tt.in), bufSize, src)); got != tt.want {
					t.Fatalf("%q, buf %d, src chunk %d:\n got %q\nwant %q", tt.in, bufSize, src, got, tt.want)
				}
			}
		}
		if got := string(readThroughFixer(&lineFixer{}, []byte("MAIL FROM:<plc>\r\n"), 4096, 0)); got != "MAIL FROM:<plc>\r\n" {
			t.Fatalf("without qualify: %q", got)
		}
	}
	// With the implicit HELO: the marked line follows it.
	f := &lineFixer{qualify: true, helo: []byte("HELO [10.0.0.7]\r\n")}
	if got := string(readThroughFixer(f, []byte("MAIL FROM:<plc>\n"), 4096, 0)); got != "HELO [10.0.0.7]\r\nMAIL FROM:<plc"+m+">\n" {
		t.Fatalf("with implicit HELO: %q", got)
	}
}

func TestImplicitHeloLine(t *testing.T) {
	for _, tt := range []struct{ ip, want string }{
		{"192.168.1.177", "HELO [192.168.1.177]\r\n"},
		{"::1", "HELO [IPv6:::1]\r\n"},
		{"fe80::1%eth0", "HELO [IPv6:fe80::1]\r\n"},
	} {
		if got := string(implicitHelo(netip.MustParseAddr(tt.ip))); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.ip, got, tt.want)
		}
	}
}

// TestLineFixerImplicitHelo checks where the implicit HELO goes in the
// stream, independent of how reads are split.
func TestLineFixerImplicitHelo(t *testing.T) {
	const helo = "HELO [10.0.0.7]\r\n"
	tests := []struct {
		name string
		tls  bool
		in   string
		want string // "" = in unchanged
		verb string // the command reported to implicit, "" for none
	}{
		{"MAIL first", false,
			"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
			helo + "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", "MAIL"},
		{"lower case, bare LF", false,
			"mail from:<a@b>\n",
			helo + "mail from:<a@b>\n", "MAIL"},
		{"after NOOP, RSET and VRFY", false,
			"NOOP\r\nRSET\r\nVRFY x\r\nMAIL FROM:<a@b>\r\n",
			"NOOP\r\nRSET\r\nVRFY x\r\n" + helo + "MAIL FROM:<a@b>\r\n", "MAIL"},
		{"RCPT first", false, "RCPT TO:<c@d>\r\n", helo + "RCPT TO:<c@d>\r\n", "RCPT"},
		{"DATA first", false, "DATA\r\nx\n.\n", helo + "DATA\r\nx\r\n.\r\n", "DATA"},
		{"AUTH first", false, "AUTH PLAIN AGEAYg==\r\n", helo + "AUTH PLAIN AGEAYg==\r\n", "AUTH"},
		{"HELO without a name does not greet", false,
			"HELO\r\nHELO \r\nMAIL FROM:<a@b>\r\n",
			"HELO\r\nHELO\r\n" + helo + "MAIL FROM:<a@b>\r\n", "MAIL"},
		{"HELO with a tab is refused by go-smtp, does not greet", false,
			"HELO\tx\r\nMAIL FROM:<a@b>\r\n",
			"HELO\tx\r\n" + helo + "MAIL FROM:<a@b>\r\n", "MAIL"},
		{"only once", false,
			"MAIL FROM:<a@b>\r\nRSET\r\nMAIL FROM:<a@b>\r\n",
			helo + "MAIL FROM:<a@b>\r\nRSET\r\nMAIL FROM:<a@b>\r\n", "MAIL"},
		{"HELO", false, "HELO board\r\nMAIL FROM:<a@b>\r\n", "", ""},
		{"lower-case ehlo", false, "ehlo 192.168.1.177\nMAIL FROM:<a@b>\n", "", ""},
		{"QUIT", false, "QUIT\r\n", "", ""},
		{"STARTTLS first: TLS clients are on their own", true,
			"STARTTLS\r\nMAIL FROM:<a@b>\r\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "" {
				want = tt.in
			}
			for _, bufSize := range []int{1, 3, 64, 4096} {
				for _, src := range []int{0, 1, 3} {
					var verbs []string
					f := &lineFixer{tls: tt.tls, helo: []byte(helo), implicit: func(v string) { verbs = append(verbs, v) }}
					got := readThroughFixer(f, []byte(tt.in), bufSize, src)
					if string(got) != want {
						t.Fatalf("buf %d, src chunk %d:\n got %q\nwant %q", bufSize, src, got, want)
					}
					if strings.Join(verbs, ",") != tt.verb {
						t.Fatalf("buf %d, src chunk %d: implicit called for %q, want %q", bufSize, src, verbs, tt.verb)
					}
				}
			}
		})
	}
}

// TestLineFixerHeloAlone checks the property gateConn relies on to hide
// the right reply: the implicit HELO is handed out in a Read of its own,
// after every earlier line, and implicit runs in that Read.
func TestLineFixerHeloAlone(t *testing.T) {
	var reads []string
	called := -1
	f := &lineFixer{helo: []byte("HELO [10.0.0.7]\r\n"), implicit: func(string) { called = len(reads) }}
	src := strings.NewReader("NOOP\r\nRSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
	buf := make([]byte, 4096)
	for {
		n, err := f.read(src, buf)
		if n > 0 {
			reads = append(reads, string(buf[:n]))
		}
		if err != nil {
			break
		}
	}
	want := []string{"NOOP\r\nRSET\r\n", "HELO [10.0.0.7]\r\n", "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"}
	if strings.Join(reads, "|") != strings.Join(want, "|") {
		t.Fatalf("reads %q, want %q", reads, want)
	}
	if called != 1 {
		t.Fatalf("implicit called during read %d, want 1", called)
	}
}

func TestReplyHider(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		rest   string // what passes on
	}{
		{"one line", []string{"250 2.0.0 Hello [10.0.0.7]\r\n", "250 2.0.0 Roger\r\n"}, "250 2.0.0 Roger\r\n"},
		{"same write", []string{"250 2.0.0 Hello\r\n250 2.0.0 Roger\r\n"}, "250 2.0.0 Roger\r\n"},
		{"multi-line, split", []string{"250-Hello\r\n25", "0-PIPELINING\r\n", "250 SIZE 10\r", "\n221 Bye\r\n"}, "221 Bye\r\n"},
		{"bare code", []string{"250\r\n", "221 Bye\r\n"}, "221 Bye\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := replyHider{active: true}
			var rest string
			for _, w := range tt.writes {
				if !h.active {
					rest += w
					continue
				}
				n := h.consume([]byte(w))
				rest += w[n:]
			}
			if rest != tt.rest || h.active {
				t.Fatalf("passed on %q (still hiding: %v), want %q", rest, h.active, tt.rest)
			}
		})
	}
}

// FuzzLineFixer checks that the output does not depend on how reads are
// split, and that the fixer changes nothing but line endings (a CR before
// LF), blanks at the end of command lines, inserts at most one HELO, and
// with qualify adds the marker domain (and nothing else).
func FuzzLineFixer(f *testing.F) {
	f.Add([]byte("DATA\nSubject: x\nhi\n.\nQUIT\n"), uint8(1), false, false, false)
	f.Add([]byte("BDAT 3\r\n\n\n\nDATA\r\n\n.\n"), uint8(2), false, true, false)
	f.Add([]byte("STARTTLS\n\x16\n\nDATA\n\n"), uint8(7), true, false, false)
	f.Add([]byte("NOOP \r\nMAIL FROM:<a@b>\r\nDATA \nx \n.\n"), uint8(3), false, true, false)
	f.Add([]byte("MAIL FROM:<plc> SIZE=1\nRCPT TO:ops\r\nDATA\nMAIL FROM:<x>\n.\n"), uint8(4), false, true, true)
	f.Fuzz(func(t *testing.T, in []byte, size uint8, tls, greet, qualify bool) {
		fixer := func() *lineFixer {
			f := &lineFixer{tls: tls, qualify: qualify}
			if greet {
				f.helo = []byte("HELO [10.0.0.7]\r\n")
			}
			return f
		}
		inLen, lines := len(in), bytes.Count(in, []byte("\n"))
		ref := readThroughFixer(fixer(), in, 4096, 0)
		got := readThroughFixer(fixer(), in, int(size)%17+1, int(size)%5)
		if !bytes.Equal(ref, got) {
			t.Fatalf("split reads differ:\n%q\n%q", ref, got)
		}
		out := ref
		if i := bytes.Index(out, []byte("HELO [10.0.0.7]\r\n")); greet && i >= 0 {
			out = append(out[:i:i], out[i+len("HELO [10.0.0.7]\r\n"):]...)
		}
		strip := func(b []byte) []byte {
			var s []byte
			for _, c := range b {
				if c != '\r' && c != ' ' && c != '\t' {
					s = append(s, c)
				}
			}
			return s
		}
		if qualify {
			// Markers the client sent itself are removed from both.
			marker := []byte("@" + unqualifiedDomain)
			out = bytes.ReplaceAll(out, marker, nil)
			in = bytes.ReplaceAll(in, marker, nil)
		}
		if !bytes.Equal(strip(out), strip(in)) {
			t.Fatalf("fixer changed more than line endings and blanks:\nin  %q\nout %q", in, ref)
		}
		if len(ref) > inLen*2+len("HELO [10.0.0.7]\r\n")+lines*len("@"+unqualifiedDomain) {
			t.Fatalf("output %d bytes for %d in", len(ref), inLen)
		}
	})
}

// BenchmarkLineFixer measures the fixer's own cost on a typical board
// dialogue with a 4 KiB message, read through go-smtp's 4 KiB buffer size:
// "LF" as a sloppy board ends its lines, "CRLF" as smtp-source and
// complete clients do.
func BenchmarkLineFixer(b *testing.B) {
	for _, eol := range []string{"\n", "\r\n"} {
		name := map[string]string{"\n": "LF", "\r\n": "CRLF"}[eol]
		b.Run(name, func(b *testing.B) {
			var in bytes.Buffer
			in.WriteString("EHLO 192.168.1.177" + eol + "MAIL FROM:<plc@example.com>" + eol + "RCPT TO:<ops@example.com>" + eol + "DATA" + eol + "Subject: Alarm" + eol)
			for in.Len() < 4096 {
				in.WriteString("Pump 3 pressure 7.2 bar, limit 6.5 bar, since 12:04:17" + eol)
			}
			in.WriteString("." + eol + "QUIT" + eol)
			data := in.Bytes()
			buf := make([]byte, 4096)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				f := &lineFixer{qualify: true} // as gateListener sets it
				r := bytes.NewReader(data)
				for {
					if _, err := f.read(r, buf); err != nil {
						break
					}
				}
			}
		})
	}
}
