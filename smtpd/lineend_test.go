package smtpd

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readThrough reads all of in through a fresh lineFixer with Read buffers of
// bufSize bytes, from a source that returns at most srcChunk bytes per Read.
func readThrough(in []byte, tls bool, bufSize, srcChunk int) []byte {
	f := &lineFixer{tls: tls}
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
		{"bare CR kept", false,
			"DATA\na\rb\n.\n",
			"DATA\na\rb\r\n.\r\n"},
		{"two messages", false,
			"DATA\na\n.\nMAIL FROM:<x@y>\nDATA\nb\n.\n",
			"DATA\na\r\n.\r\nMAIL FROM:<x@y>\nDATA\nb\r\n.\r\n"},
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

// FuzzLineFixer checks that the output does not depend on how reads are
// split, and that the fixer only ever inserts CR before LF.
func FuzzLineFixer(f *testing.F) {
	f.Add([]byte("DATA\nSubject: x\nhi\n.\nQUIT\n"), uint8(1), false)
	f.Add([]byte("BDAT 3\r\n\n\n\nDATA\r\n\n.\n"), uint8(2), false)
	f.Add([]byte("STARTTLS\n\x16\n\nDATA\n\n"), uint8(7), true)
	f.Fuzz(func(t *testing.T, in []byte, size uint8, tls bool) {
		ref := readThrough(in, tls, 4096, 0)
		got := readThrough(in, tls, int(size)%17+1, int(size)%5)
		if !bytes.Equal(ref, got) {
			t.Fatalf("split reads differ:\n%q\n%q", ref, got)
		}
		strip := func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }
		if !bytes.Equal(strip(ref), strip(in)) {
			t.Fatalf("fixer changed more than line endings:\nin  %q\nout %q", in, ref)
		}
	})
}
