package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strings"
	"testing"
)

// dotted returns what go-mail's DATA writer (net/textproto's DotWriter)
// sends for data, with writeStuffed in front of it when fast is set.
func dotted(t testing.TB, data []byte, fast bool) []byte {
	var out bytes.Buffer
	sendDotted(t, bufio.NewWriter(&out), data, fast)
	return out.Bytes()
}

func sendDotted(t testing.TB, bw *bufio.Writer, data []byte, fast bool) {
	w := textproto.NewWriter(bw).DotWriter()
	rest := data
	if fast {
		var err error
		if rest, err = writeStuffed(bw, data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write(rest); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteStuffed: the text sent with writeStuffed is byte for byte what
// DotWriter alone sends.
func TestWriteStuffed(t *testing.T) {
	for _, data := range []string{
		"",
		"a",
		"a\r\n",
		".\r\n",
		"Subject: x\r\n\r\nbody\r\n",
		"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nlast",
		"Subject: x\r\n\r\nno line end at the end",
		"a\r\n.b",
		"bare LF\nin the text\r\n",
		"bare CR\rin the text\r\n",
		"CR CR LF\r\r\n.x\r\n",
		"a\r\n" + strings.Repeat("0123456789", 800) + "\r\n.\r\n",
	} {
		want := dotted(t, []byte(data), false)
		if got := dotted(t, []byte(data), true); !bytes.Equal(got, want) {
			t.Errorf("%q:\n got %q\nwant %q", data, got, want)
		}
	}
}

// FuzzWriteStuffed: the same for any text.
func FuzzWriteStuffed(f *testing.F) {
	f.Add([]byte("a\r\n.b\r\n\r\n.\r\nc"))
	f.Add([]byte("a\n.\r\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := dotted(t, data, true), dotted(t, data, false); !bytes.Equal(got, want) {
			t.Fatalf("%q:\n got %q\nwant %q", data, got, want)
		}
	})
}

// BenchmarkDataWriter: a 4 KiB CRLF message through DotWriter alone and
// with writeStuffed.
func BenchmarkDataWriter(b *testing.B) {
	var msg bytes.Buffer
	msg.WriteString("Subject: Alarm\r\nFrom: plc@example.com\r\n\r\n")
	for msg.Len() < 4096 {
		msg.WriteString("Pump 3 pressure 7.2 bar, limit 6.5 bar, since 12:04:17\r\n")
	}
	data := msg.Bytes()
	for _, fast := range []bool{false, true} {
		b.Run(map[bool]string{false: "DotWriter", true: "writeStuffed"}[fast], func(b *testing.B) {
			bw := bufio.NewWriter(io.Discard)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				sendDotted(b, bw, data, fast)
			}
		})
	}
}
