package upstream

import (
	"bufio"
	"bytes"
)

// writeStuffed writes the complete lines of a message whose every line ends
// in CRLF (and that holds no other CR or LF) straight into bw, the buffer
// under go-mail's DATA writer, with a leading "." of a line doubled (RFC
// 5321 4.5.2), and returns the rest: the last line, which the caller writes
// through the DATA writer so that it ends the text as it would have.
//
// Why: net/textproto's DotWriter, which go-mail's Data returns, looks at
// every byte on its own; for a 4 KiB message that was 6% of the gateway's
// CPU while relaying (bench/smtprelay.sh with BENCH_PPROF), CPU that the
// SMTP listener shares on a small box. For such a message DotWriter puts
// out exactly these bytes; anything else (a bare LF or CR, which DotWriter
// rewrites) goes through DotWriter whole, as before.
func writeStuffed(bw *bufio.Writer, data []byte) (rest []byte, err error) {
	last := bytes.LastIndexByte(data[:max(len(data)-1, 0)], '\n') + 1 // start of the last line
	if last == 0 || !onlyCRLF(data) {
		return data, nil
	}
	for line := data[:last]; len(line) > 0; {
		n := bytes.IndexByte(line, '\n') + 1
		if line[0] == '.' {
			bw.WriteByte('.')
		}
		if _, err := bw.Write(line[:n]); err != nil {
			return nil, err
		}
		line = line[n:]
	}
	return data[last:], nil
}

// onlyCRLF reports whether every CR and every LF in b is part of a CRLF.
func onlyCRLF(b []byte) bool {
	crlf := bytes.Count(b, []byte("\r\n"))
	return bytes.Count(b, []byte("\n")) == crlf && bytes.Count(b, []byte("\r")) == crlf
}
