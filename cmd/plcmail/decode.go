package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/plcmail/plcmail/protocol"
)

const decodeUsage = `usage: plcmail decode [--hex] [--strict] [FILE]
Reads raw serial bytes from FILE or stdin (e.g. a capture made with
"socat -u /dev/ttyUSB0,raw,b115200 - > capture.bin") and prints one JSON object
per line for every decoded frame or framing error, in stream order:
  {"type":"event","boot":7,"seq":3,"code":17,"event":"raise",...,"offset":0}
  {"error":"bad-crc","offset":123}
"offset" is the position of the frame's first byte in the input. Error names
are those of protocol/SPEC.md 1.4, plus "incomplete" for bytes after the last
0x00 delimiter at the end of the input.

Framing errors are data, not failures: the exit status is 0 when the input
could be read, whatever it contained, and 1 when it could not.
  --hex      the input is hex text (whitespace ignored), as "plcmail frame --hex" writes
  --strict   exit 1 if any framing error or incomplete frame was seen
`

func cmdDecode(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "decode")
	asHex := fs.Bool("hex", false, "")
	strict := fs.Bool("strict", false, "")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(e.stdout, decodeUsage)
			return nil
		}
		return usageError("decode: %v\n%s", err, decodeUsage)
	}
	if fs.NArg() > 1 {
		return usageError("decode: at most one FILE\n%s", decodeUsage)
	}
	in := e.stdin
	name := "stdin"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		name = fs.Arg(0)
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		defer f.Close()
		in = f
	}
	if *asHex {
		text, err := io.ReadAll(in)
		if err != nil {
			return fmt.Errorf("decode: reading %s: %w", name, err)
		}
		raw, err := hex.DecodeString(string(bytes.Join(bytes.Fields(text), nil)))
		if err != nil {
			return fmt.Errorf("decode: %s is not hex: %w", name, err)
		}
		in = bytes.NewReader(raw)
	}

	out := bufio.NewWriter(e.stdout)
	d := protocol.NewDecoder()
	var line []byte
	emit := func(f *protocol.Frame, err error) {
		if err != nil {
			line = appendErrorJSON(line[:0], err)
		} else {
			line = appendFrameJSON(line[:0], f, d.Offset())
		}
		out.Write(line)
	}
	buf := make([]byte, 32<<10)
	var readErr error
	for readErr == nil {
		if err := ctx.Err(); err != nil {
			out.Flush()
			return err
		}
		var n int
		n, readErr = in.Read(buf)
		d.Feed(buf[:n], emit)
		if n > 0 {
			// A live serial line piped in shows frames as they arrive.
			out.Flush()
		}
	}
	incomplete := d.Pending()
	if incomplete > 0 {
		fmt.Fprintf(out, `{"error":"incomplete","offset":%d,"bytes":%d}`+"\n", d.Stats().Bytes-uint64(incomplete), incomplete)
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if !errors.Is(readErr, io.EOF) {
		return fmt.Errorf("decode: reading %s: %w", name, readErr)
	}
	if *strict && (d.Stats().Errors() > 0 || incomplete > 0) {
		return errSilent
	}
	return nil
}

// appendFrameJSON writes one frame as a JSON line with a fixed key order
// (type first, offset last), so that the output diffs well.
func appendFrameJSON(b []byte, f *protocol.Frame, offset int64) []byte {
	b = append(b, `{"type":`...)
	b = strconv.AppendQuote(b, f.Type.String())
	b = appendNum(b, "boot", uint64(f.Boot))
	b = appendNum(b, "seq", uint64(f.Seq))
	switch f.Type {
	case protocol.TypeHello:
		b = appendNum(b, "uptime", uint64(f.Uptime))
		b = appendNum(b, "reset_cause", uint64(f.ResetCause))
		b = appendNum(b, "active_total", uint64(f.ActiveTotal))
		b = append(b, `,"active":[`...)
		for i, a := range f.ActiveAlarms() {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"code":`...)
			b = strconv.AppendUint(b, uint64(a.Code), 10)
			b = appendStr(b, "severity", a.Severity.String())
			b = append(b, '}')
		}
		b = append(b, ']')
		if f.Features != 0 { // absent in HELLOs of firmware from before it
			b = appendNum(b, "features", uint64(f.Features))
		}
	case protocol.TypeEvent:
		b = appendNum(b, "code", uint64(f.Code))
		b = appendStr(b, "event", f.Event.String())
		b = appendStr(b, "severity", f.Severity.String())
		b = appendNum(b, "uptime", uint64(f.Uptime))
		b = append(b, `,"values":[`...)
		for i, v := range f.ValueList() {
			if i > 0 {
				b = append(b, ',')
			}
			t, _ := v.MarshalText()
			b = strconv.AppendQuote(b, string(t))
		}
		b = append(b, ']')
		text, _ := json.Marshal(f.TextString()) // JSON's escaping of untrusted bytes
		b = append(b, `,"text":`...)
		b = append(b, text...)
	case protocol.TypeHeartbeat:
		b = appendNum(b, "uptime", uint64(f.Uptime))
		b = appendNum(b, "active_total", uint64(f.ActiveTotal))
	case protocol.TypeAck:
		b = appendStr(b, "result", f.AckResult.String())
	case protocol.TypeNak:
		b = appendStr(b, "reason", f.NakReason.String())
	case protocol.TypeDelivery:
		b = appendStr(b, "status", f.Status.String())
		b = appendNum(b, "smtp_code", uint64(f.SMTPCode))
		if f.Via != 0 { // 0 or absent: the mail server (SPEC 3.6)
			b = appendNum(b, "via", uint64(f.Via))
		}
	}
	b = appendNum(b, "offset", uint64(offset))
	return append(b, "}\n"...)
}

func appendErrorJSON(b []byte, err error) []byte {
	b = append(b, `{"error":`...)
	name := protocol.ErrorName(err)
	b = strconv.AppendQuote(b, name)
	var fe *protocol.FrameError
	if errors.As(err, &fe) {
		if fe.HeaderTrusted() {
			b = appendStr(b, "type", fe.Type.String())
			b = appendNum(b, "boot", uint64(fe.Boot))
			b = appendNum(b, "seq", uint64(fe.Seq))
		}
		if fe.Detail != "" {
			detail, _ := json.Marshal(fe.Detail)
			b = append(b, `,"detail":`...)
			b = append(b, detail...)
		}
		b = appendNum(b, "offset", uint64(fe.Offset))
	}
	return append(b, "}\n"...)
}

func appendNum(b []byte, key string, v uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

func appendStr(b []byte, key, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendQuote(b, v)
}
