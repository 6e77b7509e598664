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
