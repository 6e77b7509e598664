// Package protocol is the wire format between a PLC and the plcmail gateway:
// frames of a 10-byte header, a typed payload and a CRC-16, COBS-encoded and
// delimited by 0x00 on a serial line. SPEC.md in this directory is the
// normative description; this file follows its section numbers.
//
// The package works on bytes, io.Reader and io.Writer only; it never opens a
// port. Decoding a valid frame does not allocate: Frame is a flat, fixed-size
// struct that a Decoder reuses.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Limits (SPEC.md 1.2). They are small because an ATmega328P has 2 KB of RAM.
const (
	Version    = 1  // the protocol version this package speaks
	HeaderLen  = 10 // version, type, boot u32, seq u32
	CRCLen     = 2
	MaxFrame   = 80 // unencoded: header + payload + CRC
	MaxPayload = MaxFrame - HeaderLen - CRCLen
	MaxEncoded = MaxFrame + 1 // COBS of MaxFrame, delimiter not counted
	MaxText    = 32
	MaxValues  = 4
	MaxActive  = 20
	minFrame   = HeaderLen + CRCLen
)

// Type is the frame type (SPEC.md 3). Types with the high bit set flow from
// the gateway to the PLC.
type Type uint8

// Frame types.
const (
	TypeHello     Type = 0x01
	TypeEvent     Type = 0x02
	TypeHeartbeat Type = 0x03
	TypeAck       Type = 0x81
	TypeNak       Type = 0x82
	TypeDelivery  Type = 0x83
)

var typeNames = [...]struct {
	t    Type
	name string
}{
	{TypeHello, "hello"}, {TypeEvent, "event"}, {TypeHeartbeat, "heartbeat"},
	{TypeAck, "ack"}, {TypeNak, "nak"}, {TypeDelivery, "delivery"},
}

// String returns the lower-case name used by the CLI and in JSON, or
// "type-0xNN" for an unknown type.
func (t Type) String() string {
	for _, n := range typeNames {
		if n.t == t {
			return n.name
		}
	}
	return fmt.Sprintf("type-0x%02x", uint8(t))
}

// Known reports whether t is a type of this protocol version.
func (t Type) Known() bool {
	for _, n := range typeNames {
		if n.t == t {
			return true
		}
	}
	return false
}

// FromGateway reports whether frames of type t are sent by the gateway.
func (t Type) FromGateway() bool { return t&0x80 != 0 }

// ParseType is the inverse of Type.String for known types.
func ParseType(s string) (Type, error) {
	for _, n := range typeNames {
		if n.name == s {
			return n.t, nil
		}
	}
	return 0, fmt.Errorf("unknown frame type %q (want hello, event, heartbeat, ack, nak or delivery)", s)
}

// EventKind says what happened to an alarm (SPEC.md 3.2).
type EventKind uint8

// Event kinds.
const (
	EventRaise       EventKind = 1
	EventClear       EventKind = 2
	EventAcknowledge EventKind = 3
)

var eventNames = []string{EventRaise: "raise", EventClear: "clear", EventAcknowledge: "acknowledge"}

func (k EventKind) String() string { return enumString(eventNames, k, "event-") }

// ParseEventKind is the inverse of EventKind.String for known kinds.
func ParseEventKind(s string) (EventKind, error) { return parseEnum[EventKind](eventNames, s, "event") }

// Severity of an alarm (SPEC.md 3.2).
type Severity uint8

// Severities, in increasing order of urgency.
const (
	SeverityInfo     Severity = 0
	SeverityWarning  Severity = 1
	SeverityAlarm    Severity = 2
	SeverityCritical Severity = 3
)

var severityNames = []string{SeverityInfo: "info", SeverityWarning: "warning", SeverityAlarm: "alarm", SeverityCritical: "critical"}

func (s Severity) String() string { return enumString(severityNames, s, "severity-") }

// ParseSeverity is the inverse of Severity.String for known severities.
func ParseSeverity(s string) (Severity, error) {
	return parseEnum[Severity](severityNames, s, "severity")
}

// ValueKind is the type of a typed value in an event (SPEC.md 3.2).
type ValueKind uint8

// Value kinds.
const (
	ValueInt32   ValueKind = 1
	ValueUint32  ValueKind = 2
	ValueFloat32 ValueKind = 3
	ValueBool    ValueKind = 4
)

var valueKindNames = []string{ValueInt32: "i32", ValueUint32: "u32", ValueFloat32: "f32", ValueBool: "bool"}

// String returns the short name used by the CLI: i32, u32, f32 or bool.
func (k ValueKind) String() string { return enumString(valueKindNames, k, "kind-") }

// Value is one typed value of an event: the kind and the 32-bit image that
// goes on the wire, so a Frame stays flat and comparable.
type Value struct {
	Kind ValueKind
	Bits uint32
}

// Int32Value makes an int32 value.
func Int32Value(v int32) Value { return Value{ValueInt32, uint32(v)} }

// Uint32Value makes a uint32 value.
func Uint32Value(v uint32) Value { return Value{ValueUint32, v} }

// Float32Value makes a float32 value.
func Float32Value(v float32) Value { return Value{ValueFloat32, math.Float32bits(v)} }

// BoolValue makes a bool value.
func BoolValue(v bool) Value {
	if v {
		return Value{ValueBool, 1}
	}
	return Value{ValueBool, 0}
}

// Int32 interprets the bits as int32, whatever the kind.
func (v Value) Int32() int32 { return int32(v.Bits) }

// Uint32 returns the bits as uint32, whatever the kind.
func (v Value) Uint32() uint32 { return v.Bits }

// Float32 interprets the bits as IEEE 754 binary32, whatever the kind.
func (v Value) Float32() float32 { return math.Float32frombits(v.Bits) }

// Bool reports whether the bits are non-zero.
func (v Value) Bool() bool { return v.Bits != 0 }

// String formats the value by its kind the way a template prints it:
// "42", "1.5", "true". Unknown kinds print as "kind-N:0xBITS".
func (v Value) String() string {
	switch v.Kind {
	case ValueInt32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	case ValueUint32:
		return strconv.FormatUint(uint64(v.Bits), 10)
	case ValueFloat32:
		return strconv.FormatFloat(float64(v.Float32()), 'g', -1, 32)
	case ValueBool:
		return strconv.FormatBool(v.Bool())
	}
	return fmt.Sprintf("%v:0x%08x", v.Kind, v.Bits)
}

// ActiveAlarm is one entry of the active-alarm snapshot in a HELLO.
type ActiveAlarm struct {
	Code     uint16
	Severity Severity
}

// AckResult tells the PLC whether an ACKed frame was new (SPEC.md 3.4).
type AckResult uint8

// ACK results.
const (
	AckQueued    AckResult = 0
	AckDuplicate AckResult = 1
)

var ackNames = []string{AckQueued: "queued", AckDuplicate: "duplicate"}

func (r AckResult) String() string { return enumString(ackNames, r, "result-") }

// ParseAckResult is the inverse of AckResult.String for known results.
func ParseAckResult(s string) (AckResult, error) {
	return parseEnum[AckResult](ackNames, s, "ACK result")
}

// NakReason tells the PLC why a frame was refused and what to do (SPEC.md 3.5).
type NakReason uint8

// NAK reasons.
const (
	NakBadFrame    NakReason = 1
	NakVersion     NakReason = 2
	NakUnknownType NakReason = 3
	NakMalformed   NakReason = 4
	NakBusy        NakReason = 5
)

var nakNames = []string{NakBadFrame: "bad-frame", NakVersion: "version", NakUnknownType: "unknown-type", NakMalformed: "malformed", NakBusy: "busy"}

func (r NakReason) String() string { return enumString(nakNames, r, "reason-") }

// ParseNakReason is the inverse of NakReason.String for known reasons.
func ParseNakReason(s string) (NakReason, error) {
	return parseEnum[NakReason](nakNames, s, "NAK reason")
}

// Feature bits of a HELLO's features byte (SPEC.md 3.1). A sender sets only
// the bits it knows (the others are reserved and sent as 0); a receiver
// ignores bits it does not know.
const (
	// FeatureVia says the firmware understands DELIVERY's via byte (SPEC.md
	// 3.6): only then does the gateway send it the DELIVERYs of fallback
	// channels, which older firmware would take for the mail's.
	FeatureVia uint8 = 1 << 0
)

// DeliveryStatus is the final outcome of the mail for an event (SPEC.md 3.6).
type DeliveryStatus uint8

// Delivery outcomes.
const (
	DeliveryAccepted DeliveryStatus = 1
	DeliveryFailed   DeliveryStatus = 2
)

var deliveryNames = []string{DeliveryAccepted: "accepted", DeliveryFailed: "failed"}

func (s DeliveryStatus) String() string { return enumString(deliveryNames, s, "status-") }

// ParseDeliveryStatus is the inverse of DeliveryStatus.String for known values.
func ParseDeliveryStatus(s string) (DeliveryStatus, error) {
	return parseEnum[DeliveryStatus](deliveryNames, s, "delivery status")
}

// enumString returns the name of v in names (indexed by value, "" where a
// value has none), or prefix and the number for a value without a name.
func enumString[T ~uint8](names []string, v T, prefix string) string {
	if int(v) < len(names) && names[v] != "" {
		return names[v]
	}
	return prefix + strconv.Itoa(int(v))
}

// parseEnum is the inverse of enumString for the named values; what names
// the enumeration in the error, which lists the names: "(want a, b or c)".
func parseEnum[T ~uint8](names []string, s, what string) (T, error) {
	var known []string
	for i, n := range names {
		if n == "" {
			continue
		}
		if n == s {
			return T(i), nil
		}
		known = append(known, n)
	}
	last := len(known) - 1
	return 0, fmt.Errorf("unknown %s %q (want %s or %s)", what, s, strings.Join(known[:last], ", "), known[last])
}

// Frame is one decoded or to-be-encoded frame. It is flat and fixed-size so
// that decoding does not allocate and frames compare with ==. Only the
// fields of its Type are meaningful; the others are zero after decoding.
type Frame struct {
	Version uint8 // 0 means Version when encoding
	Type    Type
	Boot    uint32
	Seq     uint32

	Uptime      uint32 // HELLO, EVENT, HEARTBEAT
	ResetCause  uint8  // HELLO
	ActiveTotal uint8  // HELLO, HEARTBEAT
	NActive     uint8  // HELLO
	Active      [MaxActive]ActiveAlarm
	// Features is the HELLO's optional trailing byte (SPEC.md 3.1): what the
	// PLC's firmware understands of the gateway's frames, bit FeatureVia and
	// bits reserved for later revisions. It is kept as received, reserved
	// bits included (receivers test only the bits they know), and encoded
	// only when it is not 0, so a HELLO without features is the frame older
	// firmware sends.
	Features uint8

	Code     uint16 // EVENT
	Event    EventKind
	Severity Severity
	NValues  uint8
	Values   [MaxValues]Value
	TextLen  uint8
	Text     [MaxText]byte

	AckResult AckResult // ACK
	NakReason NakReason // NAK

	Status   DeliveryStatus // DELIVERY
	SMTPCode uint16
	// Via says which path carried the alarm (SPEC.md 3.6): 0 the upstream
	// mail server, k >= 1 the k-th fallback channel ([[channel]]) of the
	// gateway. 0 is encoded by leaving the byte out, as before there were
	// channels.
	Via uint8
}

// TextString returns the event text. It allocates; templates call it once.
func (f *Frame) TextString() string { return string(f.Text[:min(int(f.TextLen), MaxText)]) }

// ActiveAlarms returns the HELLO snapshot, aliasing f.
func (f *Frame) ActiveAlarms() []ActiveAlarm { return f.Active[:min(int(f.NActive), MaxActive)] }

// ValueList returns the event values, aliasing f.
func (f *Frame) ValueList() []Value { return f.Values[:min(int(f.NValues), MaxValues)] }

// SetText sets the event text; it fails if s is longer than MaxText bytes
// rather than truncating an alarm message silently.
func (f *Frame) SetText(s string) error {
	if len(s) > MaxText {
		return fmt.Errorf("%w: text is %d bytes, at most %d allowed", ErrMalformed, len(s), MaxText)
	}
	f.TextLen = uint8(copy(f.Text[:], s))
	return nil
}

// AddValue appends a typed value to an event.
func (f *Frame) AddValue(v Value) error {
	if int(f.NValues) >= MaxValues {
		return fmt.Errorf("%w: more than %d values", ErrMalformed, MaxValues)
	}
	f.Values[f.NValues] = v
	f.NValues++
	return nil
}

// AddActive appends an alarm to a HELLO snapshot and keeps ActiveTotal at
// least NActive.
func (f *Frame) AddActive(a ActiveAlarm) error {
	if int(f.NActive) >= MaxActive {
		return fmt.Errorf("%w: more than %d active alarms in one hello", ErrMalformed, MaxActive)
	}
	f.Active[f.NActive] = a
	f.NActive++
	if f.ActiveTotal < f.NActive {
		f.ActiveTotal = f.NActive
	}
	return nil
}

// Frame-level errors. Decoders wrap them in *FrameError; test with errors.Is.
var (
	ErrBadCOBS     = errors.New("bad COBS encoding")
	ErrBadCRC      = errors.New("bad CRC")
	ErrShort       = errors.New("frame too short")
	ErrTooLong     = errors.New("frame too long")
	ErrVersion     = errors.New("unsupported protocol version")
	ErrUnknownType = errors.New("unknown frame type")
	ErrMalformed   = errors.New("malformed payload")
)

// errorNames are the short names used in vectors.txt and by plcmail decode.
var errorNames = [...]struct {
	err  error
	name string
}{
	{ErrBadCOBS, "bad-cobs"}, {ErrBadCRC, "bad-crc"}, {ErrShort, "short"}, {ErrTooLong, "too-long"},
	{ErrVersion, "version"}, {ErrUnknownType, "unknown-type"}, {ErrMalformed, "malformed"},
}

// ErrorName returns the short name of a frame-level error ("bad-crc",
// "too-long", ...) as used in vectors.txt and by plcmail decode, or "" if err
// is not one.
func ErrorName(err error) string {
	for _, n := range errorNames {
		if errors.Is(err, n.err) {
			return n.name
		}
	}
	return ""
}

// FrameError is a frame-level error: one frame was lost or refused, the link
// is fine and decoding continues with the next frame.
type FrameError struct {
	Err error // one of the Err* sentinels
	// Boot, Seq and Type are copied from the header when it is trustworthy
	// (the CRC matched: errors ErrVersion, ErrUnknownType, ErrMalformed), so
	// that the gateway can NAK that frame; otherwise they are zero.
	Boot uint32
	Seq  uint32
	Type Type
	// Offset is the position in the stream of the frame's first byte,
	// counted from NewDecoder (or NewReader); -1 when not decoding a stream.
	Offset int64
	// Detail says what exactly was wrong, for logs; may be empty.
	Detail string
}

func (e *FrameError) Error() string {
	s := "protocol: " + e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Type != 0 || e.Boot != 0 || e.Seq != 0 {
		s += fmt.Sprintf(" (type 0x%02x boot %d seq %d)", uint8(e.Type), e.Boot, e.Seq)
	}
	if e.Offset >= 0 {
		s += " at offset " + strconv.FormatInt(e.Offset, 10)
	}
	return s
}

func (e *FrameError) Unwrap() error { return e.Err }

// newFrameError wraps the sentinel err, with the header of f when it is
// trusted (see FrameError).
func newFrameError(err error, detail string, f *Frame, offset int64) *FrameError {
	fe := &FrameError{Err: err, Offset: offset, Detail: detail}
	if fe.HeaderTrusted() {
		fe.Boot, fe.Seq, fe.Type = f.Boot, f.Seq, f.Type
	}
	return fe
}

// NakReason is the reason the gateway puts in its NAK for this error.
func (e *FrameError) NakReason() NakReason {
	switch e.Err {
	case ErrVersion:
		return NakVersion
	case ErrUnknownType:
		return NakUnknownType
	case ErrMalformed:
		return NakMalformed
	}
	return NakBadFrame
}

// HeaderTrusted reports whether Boot, Seq and Type were read from a frame
// whose CRC matched.
func (e *FrameError) HeaderTrusted() bool {
	return e.Err == ErrVersion || e.Err == ErrUnknownType || e.Err == ErrMalformed
}

// payloadError carries a malformed-payload detail from the parser without
// allocating on the success path.
type payloadError string

// Validate checks f against the limits and the known types and kinds, as
// ParseRaw does for a received frame. Encoders call it so that nothing the
// gateway or the CLI sends can be refused as malformed by the other side.
func (f *Frame) Validate() error {
	if detail, err := f.validate(); err != nil {
		return newFrameError(err, detail, f, -1)
	}
	return nil
}

func (f *Frame) validate() (detail string, err error) {
	if f.Version != 0 && f.Version != Version {
		return fmt.Sprintf("version %d", f.Version), ErrVersion
	}
	switch f.Type {
	case TypeHello, TypeEvent, TypeHeartbeat:
		if f.Boot == 0 {
			return "boot 0 is reserved", ErrMalformed
		}
	}
	switch f.Type {
	case TypeHello:
		if f.Seq == 0 {
			return "seq 0 in a frame that is ACKed", ErrMalformed
		}
		if f.NActive > MaxActive {
			return fmt.Sprintf("%d active alarms, at most %d", f.NActive, MaxActive), ErrMalformed
		}
		if f.ActiveTotal < f.NActive {
			return fmt.Sprintf("active_total %d < n %d", f.ActiveTotal, f.NActive), ErrMalformed
		}
		for _, a := range f.ActiveAlarms() {
			if a.Severity > SeverityCritical {
				return fmt.Sprintf("active alarm %d: unknown severity %d", a.Code, a.Severity), ErrMalformed
			}
		}
	case TypeEvent:
		if f.Seq == 0 {
			return "seq 0 in a frame that is ACKed", ErrMalformed
		}
		if f.Event < EventRaise || f.Event > EventAcknowledge {
			return fmt.Sprintf("unknown event kind %d", f.Event), ErrMalformed
		}
		if f.Severity > SeverityCritical {
			return fmt.Sprintf("unknown severity %d", f.Severity), ErrMalformed
		}
		if f.NValues > MaxValues {
			return fmt.Sprintf("%d values, at most %d", f.NValues, MaxValues), ErrMalformed
		}
		for i, v := range f.ValueList() {
			switch v.Kind {
			case ValueInt32, ValueUint32, ValueFloat32:
			case ValueBool:
				if v.Bits > 1 {
					return fmt.Sprintf("value %d: bool is %d, want 0 or 1", i, v.Bits), ErrMalformed
				}
			default:
				return fmt.Sprintf("value %d: unknown kind %d", i, v.Kind), ErrMalformed
			}
		}
		if f.TextLen > MaxText {
			return fmt.Sprintf("text_len %d, at most %d", f.TextLen, MaxText), ErrMalformed
		}
	case TypeHeartbeat:
	case TypeAck:
		if f.AckResult > AckDuplicate {
			return fmt.Sprintf("unknown ACK result %d", f.AckResult), ErrMalformed
		}
	case TypeNak:
		if f.NakReason < NakBadFrame || f.NakReason > NakBusy {
			return fmt.Sprintf("unknown NAK reason %d", f.NakReason), ErrMalformed
		}
	case TypeDelivery:
		if f.Status < DeliveryAccepted || f.Status > DeliveryFailed {
			return fmt.Sprintf("unknown delivery status %d", f.Status), ErrMalformed
		}
	default:
		return fmt.Sprintf("type 0x%02x", uint8(f.Type)), ErrUnknownType
	}
	return "", nil
}

// AppendRaw appends the unencoded frame (header, payload, CRC) to dst.
func AppendRaw(dst []byte, f *Frame) ([]byte, error) {
	if err := f.Validate(); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, Version, byte(f.Type))
	dst = binary.LittleEndian.AppendUint32(dst, f.Boot)
	dst = binary.LittleEndian.AppendUint32(dst, f.Seq)
	switch f.Type {
	case TypeHello:
		dst = binary.LittleEndian.AppendUint32(dst, f.Uptime)
		dst = append(dst, f.ResetCause, f.ActiveTotal, f.NActive)
		for _, a := range f.ActiveAlarms() {
			dst = binary.LittleEndian.AppendUint16(dst, a.Code)
			dst = append(dst, byte(a.Severity))
		}
		if f.Features != 0 {
			dst = append(dst, f.Features)
		}
	case TypeEvent:
		dst = binary.LittleEndian.AppendUint16(dst, f.Code)
		dst = append(dst, byte(f.Event), byte(f.Severity))
		dst = binary.LittleEndian.AppendUint32(dst, f.Uptime)
		dst = append(dst, f.NValues)
		for _, v := range f.ValueList() {
			dst = append(dst, byte(v.Kind))
			dst = binary.LittleEndian.AppendUint32(dst, v.Bits)
		}
		dst = append(dst, f.TextLen)
		dst = append(dst, f.Text[:f.TextLen]...)
	case TypeHeartbeat:
		dst = binary.LittleEndian.AppendUint32(dst, f.Uptime)
		dst = append(dst, f.ActiveTotal)
	case TypeAck:
		dst = append(dst, byte(f.AckResult))
	case TypeNak:
		dst = append(dst, byte(f.NakReason))
	case TypeDelivery:
		dst = append(dst, byte(f.Status))
		dst = binary.LittleEndian.AppendUint16(dst, f.SMTPCode)
		if f.Via != 0 {
			dst = append(dst, f.Via)
		}
	}
	return binary.LittleEndian.AppendUint16(dst, CRC16(dst[start:])), nil
}

// AppendEncoded appends the line form of f: COBS of the raw frame followed by
// one 0x00 delimiter. Senders add a leading 0x00 themselves when they want one
// (at boot, after a reconnect).
func AppendEncoded(dst []byte, f *Frame) ([]byte, error) {
	var buf [MaxFrame]byte
	raw, err := AppendRaw(buf[:0], f)
	if err != nil {
		return dst, err
	}
	dst = COBSEncode(dst, raw)
	return append(dst, 0), nil
}

// WriteFrame writes the line form of f in a single Write call, so that
// concurrent writers serialised by w never interleave parts of frames.
func WriteFrame(w io.Writer, f *Frame) error {
	var buf [MaxEncoded + 1]byte
	b, err := AppendEncoded(buf[:0], f)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// ParseRaw checks the length and the CRC of an unencoded frame, then parses
// it into f. Errors are *FrameError.
func ParseRaw(raw []byte, f *Frame) error {
	if detail, err := parseRaw(raw, f); err != nil {
		return newFrameError(err, detail, f, -1)
	}
	return nil
}

// parseRaw returns a sentinel and a detail, so that the Decoder can build
// its own *FrameError and the success path never allocates.
func parseRaw(raw []byte, f *Frame) (detail string, err error) {
	*f = Frame{}
	switch {
	case len(raw) > MaxFrame:
		return "", ErrTooLong
	case len(raw) < minFrame:
		return "", ErrShort
	}
	n := len(raw) - CRCLen
	if CRC16(raw[:n]) != binary.LittleEndian.Uint16(raw[n:]) {
		return "", ErrBadCRC
	}
	// Every version keeps this header layout (SPEC.md 5), so a frame of a
	// newer version can still be NAKed by its boot and seq.
	f.Version = raw[0]
	f.Type = Type(raw[1])
	f.Boot = binary.LittleEndian.Uint32(raw[2:])
	f.Seq = binary.LittleEndian.Uint32(raw[6:])
	if f.Version != Version {
		return fmt.Sprintf("version %d, this receiver knows %d", f.Version, Version), ErrVersion
	}
	if err := f.parsePayload(raw[HeaderLen:n]); err != "" {
		return string(err), ErrMalformed
	}
	if detail, err := f.validate(); err != nil {
		return detail, err
	}
	return "", nil
}

// parsePayload reads the payload of f.Type into f. Bytes after the known
// fields are ignored (SPEC.md 5: payloads may grow at the end). Range checks
// of enumerations are left to validate.
func (f *Frame) parsePayload(p []byte) payloadError {
	le := binary.LittleEndian
	switch f.Type {
	case TypeHello:
		if len(p) < 7 {
			return "hello payload shorter than 7 bytes"
		}
		f.Uptime = le.Uint32(p)
		f.ResetCause, f.ActiveTotal, f.NActive = p[4], p[5], p[6]
		if f.NActive > MaxActive {
			return payloadError(fmt.Sprintf("%d active alarms, at most %d", f.NActive, MaxActive))
		}
		p = p[7:]
		if len(p) < 3*int(f.NActive) {
			return "hello payload ends inside the active alarm list"
		}
		for i := range f.ActiveAlarms() {
			f.Active[i] = ActiveAlarm{Code: le.Uint16(p), Severity: Severity(p[2])}
			p = p[3:]
		}
		if len(p) >= 1 {
			f.Features = p[0] // optional; absent in HELLOs of older firmware
		}
	case TypeEvent:
		if len(p) < 10 {
			return "event payload shorter than 10 bytes"
		}
		f.Code = le.Uint16(p)
		f.Event, f.Severity = EventKind(p[2]), Severity(p[3])
		f.Uptime = le.Uint32(p[4:])
		f.NValues = p[8]
		if f.NValues > MaxValues {
			return payloadError(fmt.Sprintf("%d values, at most %d", f.NValues, MaxValues))
		}
		p = p[9:]
		if len(p) < 5*int(f.NValues)+1 {
			return "event payload ends inside the values"
		}
		for i := range f.ValueList() {
			f.Values[i] = Value{Kind: ValueKind(p[0]), Bits: le.Uint32(p[1:])}
			p = p[5:]
		}
		f.TextLen = p[0]
		if f.TextLen > MaxText {
			return payloadError(fmt.Sprintf("text_len %d, at most %d", f.TextLen, MaxText))
		}
		p = p[1:]
		if len(p) < int(f.TextLen) {
			return "event payload ends inside the text"
		}
		copy(f.Text[:], p[:f.TextLen])
	case TypeHeartbeat:
		if len(p) < 5 {
			return "heartbeat payload shorter than 5 bytes"
		}
		f.Uptime = le.Uint32(p)
		f.ActiveTotal = p[4]
	case TypeAck:
		if len(p) < 1 {
			return "ack payload is empty"
		}
		f.AckResult = AckResult(p[0])
	case TypeNak:
		if len(p) < 1 {
			return "nak payload is empty"
		}
		f.NakReason = NakReason(p[0])
	case TypeDelivery:
		if len(p) < 3 {
			return "delivery payload shorter than 3 bytes"
		}
		f.Status = DeliveryStatus(p[0])
		f.SMTPCode = le.Uint16(p[1:])
		if len(p) >= 4 {
			f.Via = p[3]
		}
	}
	return ""
}

// MarshalText formats v as KIND:VALUE ("i32:42", "f32:1.5", "bool:true"), the
// form the CLI and plcmail decode use.
func (v Value) MarshalText() ([]byte, error) {
	return []byte(v.Kind.String() + ":" + v.String()), nil
}

// UnmarshalText parses the KIND:VALUE form of MarshalText.
func (v *Value) UnmarshalText(text []byte) error {
	p, err := ParseValue(string(text))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// ParseValue parses KIND:VALUE with KIND one of i32, u32, f32, bool.
func ParseValue(s string) (Value, error) {
	kind, val, ok := strings.Cut(s, ":")
	if !ok {
		return Value{}, fmt.Errorf("value %q: want KIND:VALUE with KIND i32, u32, f32 or bool", s)
	}
	switch kind {
	case "i32":
		n, err := strconv.ParseInt(val, 0, 32)
		if err != nil {
			return Value{}, fmt.Errorf("value %q: %w", s, err)
		}
		return Int32Value(int32(n)), nil
	case "u32":
		n, err := strconv.ParseUint(val, 0, 32)
		if err != nil {
			return Value{}, fmt.Errorf("value %q: %w", s, err)
		}
		return Uint32Value(uint32(n)), nil
	case "f32":
		x, err := strconv.ParseFloat(val, 32)
		if err != nil {
			return Value{}, fmt.Errorf("value %q: %w", s, err)
		}
		return Float32Value(float32(x)), nil
	case "bool":
		b, err := strconv.ParseBool(val)
		if err != nil {
			return Value{}, fmt.Errorf("value %q: %w", s, err)
		}
		return BoolValue(b), nil
	}
	return Value{}, fmt.Errorf("value %q: unknown kind %q (want i32, u32, f32 or bool)", s, kind)
}
