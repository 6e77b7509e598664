package smtpd

import (
	"bytes"
	"testing"
)

func TestEnvelopeAddress(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"ops@example.com", "ops@example.com"},
		{"", ""},
		{"first.last+tag@example.com", "first.last+tag@example.com"},
		{"victim@gmail.com@example.com", `"victim@gmail.com"@example.com`}, // from <"victim@gmail.com"@example.com>
		{`a"b@example.com`, `"a\"b"@example.com`},
		{`a\b@example.com`, `"a\\b"@example.com`},
		{"a..b@example.com", `"a..b"@example.com`},
		{".a@example.com", `".a"@example.com`},
		{"a(b)@example.com", `"a(b)"@example.com`},
		{"jörg@example.com", "jörg@example.com"},
	} {
		if got := envelopeAddress(tt.in); got != tt.want {
			t.Errorf("envelopeAddress(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCleanText(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		nul, cr  int
	}{
		{"a\r\nb\r\n", "a\r\nb\r\n", 0, 0},
		{"a\nb\n", "a\nb\n", 0, 0}, // bare LF is Repair's
		{"a\x00b\r\n", "ab\r\n", 1, 0},
		{"a\rb\r\n", "a\r\nb\r\n", 0, 1},
		{"a\r\r\nb", "a\r\nb", 0, 1},
		{"a\r\r\r\n", "a\r\n", 0, 2},
		{"a\r", "a\r\n", 0, 1},
		{"a\r\x00\n", "a\r\n", 1, 0},
		{"\x00\x00", "", 2, 0},
	} {
		got, nul, cr := cleanText([]byte(tt.in))
		if string(got) != tt.want || nul != tt.nul || cr != tt.cr {
			t.Errorf("cleanText(%q) = %q, %d NUL, %d CR; want %q, %d, %d", tt.in, got, nul, cr, tt.want, tt.nul, tt.cr)
		}
	}
}

// FuzzLineFixerData: whatever the text of a DATA, the fixer hands go-smtp
// only CRLF line ends, and the text ends for go-smtp (at its first line
// ".") exactly where the fixer went back to reading commands: the two never
// disagree about where a message ends, so text cannot become commands.
func FuzzLineFixerData(f *testing.F) {
	for _, s := range []string{"a\n.\nMAIL FROM:<x@y>\n", "a\r\n.\n", "a\n.\r\n", "a\r.\r\n.\r\n", "\r\r\n.\r\n",
		"..\n.x\n.\n", "a\r.b\r\n.\r\n", ".\r\n", "x\x00.\r\n.\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		fx := &lineFixer{}
		out := readThroughFixer(fx, append([]byte("DATA\r\n"), text...), 4096, 0)
		data := bytes.TrimPrefix(out, []byte("DATA\r\n"))
		// go-smtp's view: the first line "." ends the text.
		end := -1
		for i := 0; i < len(data); {
			j := bytes.Index(data[i:], []byte("\r\n"))
			if j < 0 {
				break
			}
			if j == 1 && data[i] == '.' {
				end = i + 3
				break
			}
			i += j + 2
		}
		seen := data
		if end >= 0 {
			seen = data[:end]
		}
		for i, c := range seen {
			if c == '\n' && (i == 0 || seen[i-1] != '\r') || c == '\r' && (i+1 == len(seen) || seen[i+1] != '\n') {
				t.Fatalf("bare line end at %d in %q", i, seen)
			}
		}
		if (end >= 0) != (fx.mode == modeCommand) {
			t.Fatalf("go-smtp sees the end at %d, the fixer is in mode %d:\n%q", end, fx.mode, data)
		}
	})
}

// dataByteByByte is lineFixer.data as it was before it copied runs of text
// in one append: one byte at a time. FuzzLineFixerDataRuns holds the fast
// version to it.
func (f *lineFixer) dataByteByByte(in []byte) int {
	for k, c := range in {
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
		f.out = append(f.out, c)
		f.lineLen++
		f.dotLine = f.lineLen == 1 && c == '.'
	}
	return len(in)
}

// FuzzLineFixerDataRuns: data, which copies text between line ends in
// runs, puts out the same bytes, consumes the same input and ends in the
// same state as the byte-by-byte loop it replaced, however the text is
// split into calls.
func FuzzLineFixerDataRuns(f *testing.F) {
	for _, s := range []string{"a\n.\nMAIL FROM:<x@y>\n", "a\r\n.\n", "a\n.\r\n", "a\r.\r\n.\r\n", "\r\r\n.\r\n",
		"..\n.x\n.\n", "a\r.b\r\n.\r\n", ".\r\n", "x\x00.\r\n.\r\n", "Subject: x\r\n\r\nsome text\rmore\r\n.\r\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, text []byte, chunk uint8) {
		fast := &lineFixer{mode: modeData}
		slow := &lineFixer{mode: modeData}
		size := int(chunk)%7 + 1
		for rest := text; len(rest) > 0 && fast.mode == modeData; {
			in := rest[:min(size, len(rest))]
			n, m := fast.data(in), slow.dataByteByByte(in)
			if n != m {
				t.Fatalf("consumed %d, byte by byte %d, of %q", n, m, in)
			}
			rest = rest[n:]
		}
		if !bytes.Equal(fast.out, slow.out) {
			t.Fatalf("text %q:\n got %q\nwant %q", text, fast.out, slow.out)
		}
		type state struct {
			mode, pendCR, lineLen int
			start                 lineBreak
			dotLine, lenient      bool
		}
		get := func(f *lineFixer) state {
			return state{int(f.mode), f.pendCR, f.lineLen, f.start, f.dotLine, f.lenient}
		}
		if get(fast) != get(slow) {
			t.Fatalf("text %q: state %+v, byte by byte %+v", text, get(fast), get(slow))
		}
	})
}
