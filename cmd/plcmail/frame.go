package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/plcmail/plcmail/protocol"
)

const frameUsage = `usage: plcmail frame TYPE [flags]
Encodes one protocol frame (protocol/SPEC.md) and writes its bytes to stdout:
COBS-encoded and followed by the 0x00 delimiter, as a PLC or the gateway sends it.

TYPE and its flags (all numbers may be decimal or 0x hex):
  hello      --uptime S --reset-cause N --active CODE:SEVERITY ... [--active-total N]
             [--features N] (1: understands DELIVERY's via, as the firmware library sends it)
  event      --code N --event raise|clear|acknowledge --severity info|warning|alarm|critical
             --uptime S --value KIND:V ... (KIND i32, u32, f32, bool; at most 4) --text STRING (at most 32 bytes)
  heartbeat  --uptime S --active-total N
  ack        --result queued|duplicate
  nak        --reason bad-frame|version|unknown-type|malformed|busy
  delivery   --status accepted|failed --smtp-code N [--via K] (K >= 1: the K-th [[channel]] carried it)
Every type:
  --boot N          boot id (default 1)
  --seq N           sequence number (default 1 for hello and event, else 0)
  --hex             write lowercase hex and a newline instead of binary
  --delim-before    write a 0x00 before the frame, as a sender does after boot

Example: plcmail frame event --boot 7 --seq 3 --code 17 --event raise --severity alarm \
           --value i32:42 --value f32:1.5 --text "Motor overload" --hex
`

// frameFlags lists the type-specific flags each frame type accepts.
var frameFlags = map[protocol.Type][]string{
	protocol.TypeHello:     {"uptime", "reset-cause", "active", "active-total", "features"},
	protocol.TypeEvent:     {"code", "event", "severity", "uptime", "value", "text"},
	protocol.TypeHeartbeat: {"uptime", "active-total"},
	protocol.TypeAck:       {"result"},
	protocol.TypeNak:       {"reason"},
	protocol.TypeDelivery:  {"status", "smtp-code", "via"},
}

var commonFrameFlags = []string{"boot", "seq", "hex", "delim-before", "c"}

func cmdFrame(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(e.stdout, frameUsage)
			return nil
		}
		return usageError("frame: missing TYPE\n%s", frameUsage)
	}
	typ, err := protocol.ParseType(args[0])
	if err != nil {
		return usageError("frame: %v", err)
	}
	f := protocol.Frame{Version: protocol.Version, Type: typ}

	fs := subFlags(e, "frame")
	boot := fs.String("boot", "1", "")
	seq := fs.String("seq", "", "")
	asHex := fs.Bool("hex", false, "")
	delimBefore := fs.Bool("delim-before", false, "")
	uptime := fs.String("uptime", "0", "")
	resetCause := fs.String("reset-cause", "0", "")
	features := fs.String("features", "0", "")
	activeTotal := fs.String("active-total", "", "")
	code := fs.String("code", "0", "")
	event := fs.String("event", "raise", "")
	severity := fs.String("severity", "alarm", "")
	text := fs.String("text", "", "")
	result := fs.String("result", "queued", "")
	reason := fs.String("reason", "bad-frame", "")
	status := fs.String("status", "accepted", "")
	smtpCode := fs.String("smtp-code", "0", "")
	via := fs.String("via", "0", "")
	var values []protocol.Value
	fs.Func("value", "", func(s string) error {
		v, err := protocol.ParseValue(s)
		values = append(values, v)
		return err
	})
	var active []protocol.ActiveAlarm
	fs.Func("active", "", func(s string) error {
		a, err := parseActive(s)
		active = append(active, a)
		return err
	})
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(e.stdout, frameUsage)
			return nil
		}
		return usageError("frame %s: %v", typ, err)
	}
	if fs.NArg() > 0 {
		return usageError("frame %s: unexpected argument %q", typ, fs.Arg(0))
	}
	allowed := map[string]bool{}
	for _, n := range append(frameFlags[typ], commonFrameFlags...) {
		allowed[n] = true
	}
	set := map[string]bool{}
	var bad []string
	fs.Visit(func(fl *flag.Flag) {
		set[fl.Name] = true
		if !allowed[fl.Name] {
			bad = append(bad, "--"+fl.Name)
		}
	})
	if len(bad) > 0 {
		return usageError("frame %s: %s does not apply to %s frames (they take: --%s)", typ, strings.Join(bad, ", "), typ, strings.Join(frameFlags[typ], ", --"))
	}

	if !set["seq"] {
		*seq = "0"
		if typ == protocol.TypeHello || typ == protocol.TypeEvent {
			*seq = "1"
		}
	}
	// num parses a numeric flag; the first bad one is reported.
	var numErr error
	num := func(name, s string, bits int) uint64 {
		v, err := strconv.ParseUint(s, 0, bits)
		if err != nil && numErr == nil {
			numErr = usageError("frame %s: --%s %q: want an unsigned %d-bit number", typ, name, s, bits)
		}
		return v
	}
	f.Boot = uint32(num("boot", *boot, 32))
	f.Seq = uint32(num("seq", *seq, 32))
	f.Uptime = uint32(num("uptime", *uptime, 32))
	f.Code = uint16(num("code", *code, 16))
	f.SMTPCode = uint16(num("smtp-code", *smtpCode, 16))
	f.ResetCause = uint8(num("reset-cause", *resetCause, 8))
	f.Features = uint8(num("features", *features, 8))
	f.Via = uint8(num("via", *via, 8))
	if numErr != nil {
		return numErr
	}

	switch typ {
	case protocol.TypeHello:
		for _, a := range active {
			if err := f.AddActive(a); err != nil {
				return usageError("frame hello: --active: %v", err)
			}
		}
	case protocol.TypeEvent:
		if f.Event, err = protocol.ParseEventKind(*event); err != nil {
			return usageError("frame event: --event: %v", err)
		}
		if f.Severity, err = protocol.ParseSeverity(*severity); err != nil {
			return usageError("frame event: --severity: %v", err)
		}
		for _, v := range values {
			if err := f.AddValue(v); err != nil {
				return usageError("frame event: --value: %v", err)
			}
		}
		if err := f.SetText(*text); err != nil {
			return usageError("frame event: --text: %v", err)
		}
	case protocol.TypeAck:
		if f.AckResult, err = protocol.ParseAckResult(*result); err != nil {
			return usageError("frame ack: --result: %v", err)
		}
	case protocol.TypeNak:
		if f.NakReason, err = protocol.ParseNakReason(*reason); err != nil {
			return usageError("frame nak: --reason: %v", err)
		}
	case protocol.TypeDelivery:
		if f.Status, err = protocol.ParseDeliveryStatus(*status); err != nil {
			return usageError("frame delivery: --status: %v", err)
		}
	}
	if set["active-total"] {
		v, err := strconv.ParseUint(*activeTotal, 0, 8)
		if err != nil {
			return usageError("frame %s: --active-total %q: want a number 0..255", typ, *activeTotal)
		}
		f.ActiveTotal = uint8(v)
	}

	var out []byte
	if *delimBefore {
		out = append(out, 0)
	}
	if out, err = protocol.AppendEncoded(out, &f); err != nil {
		// The flags were well-formed but the frame is not (boot 0, seq 0, ...).
		return usageError("frame %s: %v", typ, err)
	}
	if *asHex {
		out = []byte(hex.EncodeToString(out) + "\n")
	}
	_, err = e.stdout.Write(out)
	return err
}

// parseActive parses CODE:SEVERITY, the severity by name or number.
func parseActive(s string) (protocol.ActiveAlarm, error) {
	c, sev, ok := strings.Cut(s, ":")
	if !ok {
		return protocol.ActiveAlarm{}, fmt.Errorf("%q: want CODE:SEVERITY, e.g. 17:alarm", s)
	}
	code, err := strconv.ParseUint(c, 0, 16)
	if err != nil {
		return protocol.ActiveAlarm{}, fmt.Errorf("%q: code must be 0..65535", s)
	}
	severity, err := protocol.ParseSeverity(sev)
	if err != nil {
		n, nerr := strconv.ParseUint(sev, 0, 8)
		if nerr != nil || n > uint64(protocol.SeverityCritical) {
			return protocol.ActiveAlarm{}, fmt.Errorf("%q: %v", s, err)
		}
		severity = protocol.Severity(n)
	}
	return protocol.ActiveAlarm{Code: uint16(code), Severity: severity}, nil
}
