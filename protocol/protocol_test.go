package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCRC16(t *testing.T) {
	if got := CRC16([]byte("123456789")); got != 0x906E {
		t.Fatalf("check value %#04x, want 0x906E", got)
	}
	if got := CRC16(nil); got != 0x0000 {
		t.Fatalf("CRC of nothing %#04x, want 0 (init 0xFFFF ^ xorout 0xFFFF)", got)
	}
	// Running the CRC over a frame including its little-endian CRC gives the
	// constant residue 0xF0B8 before the final xor, i.e. 0x0F47 after it.
	msg := []byte("123456789")
	msg = append(msg, 0x6E, 0x90)
	if got := CRC16(msg); got != 0xF0B8^0xFFFF {
		t.Fatalf("residue %#04x, want %#04x", got, 0xF0B8^0xFFFF)
	}
	// The table agrees with avr-libc's _crc_ccitt_update, transcribed.
	ccittUpdate := func(crc uint16, data byte) uint16 {
		data ^= byte(crc)
		data ^= data << 4
		return (uint16(data)<<8 | crc>>8) ^ uint16(data>>4) ^ uint16(data)<<3
	}
	for _, s := range []string{"", "a", "123456789", "\x00\xff\x80plcmail"} {
		crc := uint16(0xFFFF)
		for i := 0; i < len(s); i++ {
			crc = ccittUpdate(crc, s[i])
		}
		if got, want := CRC16([]byte(s)), crc^0xFFFF; got != want {
			t.Errorf("CRC16(%q) = %#04x, avr-libc loop gives %#04x", s, got, want)
		}
	}
}

func TestCOBS(t *testing.T) {
	tests := []struct{ raw, enc string }{
		// Examples from Cheshire & Baker and the Wikipedia article.
		{"", "01"},
		{"00", "0101"},
		{"0000", "010101"},
		{"001100", "01021101"},
		{"11220033", "0311220233"},
		{"11223344", "0511223344"},
		{"11000000", "02110101 01"},
	}
	for _, tt := range tests {
		raw, _ := hex.DecodeString(tt.raw)
		enc, _ := hex.DecodeString(strings.ReplaceAll(tt.enc, " ", ""))
		if got := COBSEncode(nil, raw); !bytes.Equal(got, enc) {
			t.Errorf("COBSEncode(%s) = %x, want %x", tt.raw, got, enc)
		}
		got, err := COBSDecode(nil, enc)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("COBSDecode(%x) = %x, %v; want %s", enc, got, err, tt.raw)
		}
	}
	// Long runs: 254 non-zero bytes fill a group of code 0xFF.
	for _, n := range []int{253, 254, 255, 508, 600} {
		raw := bytes.Repeat([]byte{0x42}, n)
		enc := COBSEncode(nil, raw)
		if bytes.IndexByte(enc, 0) >= 0 {
			t.Fatalf("n=%d: encoding contains 0x00", n)
		}
		if want := n + 1 + (n-1)/254; len(enc) != want {
			t.Errorf("n=%d: encoded length %d, want %d", n, len(enc), want)
		}
		if got, err := COBSDecode(nil, enc); err != nil || !bytes.Equal(got, raw) {
			t.Errorf("n=%d: round trip failed: %v", n, err)
		}
	}
	for _, bad := range []string{"00", "02", "0311", "0211002", "03110022"} {
		b, _ := hex.DecodeString(bad)
		if _, err := COBSDecode(nil, b); !errors.Is(err, ErrBadCOBS) {
			t.Errorf("COBSDecode(%s) error %v, want ErrBadCOBS", bad, err)
		}
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		want error
	}{
		{"unknown type", Frame{Type: 0x04, Boot: 1, Seq: 1}, ErrUnknownType},
		{"newer version", Frame{Version: 2, Type: TypeAck}, ErrVersion},
		{"event seq 0", Frame{Type: TypeEvent, Boot: 1, Event: EventRaise}, ErrMalformed},
		{"hello boot 0", Frame{Type: TypeHello, Seq: 1}, ErrMalformed},
		{"event kind 0", Frame{Type: TypeEvent, Boot: 1, Seq: 1}, ErrMalformed},
		{"severity 4", Frame{Type: TypeEvent, Boot: 1, Seq: 1, Event: EventRaise, Severity: 4}, ErrMalformed},
		{"text 33", Frame{Type: TypeEvent, Boot: 1, Seq: 1, Event: EventRaise, TextLen: 33}, ErrMalformed},
		{"values 5", Frame{Type: TypeEvent, Boot: 1, Seq: 1, Event: EventRaise, NValues: 5}, ErrMalformed},
		{"value kind 0", Frame{Type: TypeEvent, Boot: 1, Seq: 1, Event: EventRaise, NValues: 1}, ErrMalformed},
		{"hello n 21", Frame{Type: TypeHello, Boot: 1, Seq: 1, NActive: 21, ActiveTotal: 21}, ErrMalformed},
		{"hello total < n", Frame{Type: TypeHello, Boot: 1, Seq: 1, NActive: 2, ActiveTotal: 1}, ErrMalformed},
		{"nak reason 0", Frame{Type: TypeNak}, ErrMalformed},
		{"delivery status 3", Frame{Type: TypeDelivery, Status: 3}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := AppendEncoded(nil, &tt.f); !errors.Is(err, tt.want) {
				t.Fatalf("AppendEncoded error %v, want %v", err, tt.want)
			}
			var fe *FrameError
			if err := tt.f.Validate(); !errors.As(err, &fe) || fe.Err != tt.want {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
	var f Frame
	if err := f.SetText(strings.Repeat("x", MaxText+1)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("SetText(33 bytes) = %v", err)
	}
	// Version 0 in a Frame means "this version".
	raw, err := AppendRaw(nil, &Frame{Type: TypeAck, Boot: 7, Seq: 3})
	if err != nil || raw[0] != Version {
		t.Fatalf("AppendRaw with Version 0: %x, %v", raw, err)
	}
}

func TestFrameErrorNak(t *testing.T) {
	for err, want := range map[error]NakReason{
		ErrBadCOBS: NakBadFrame, ErrBadCRC: NakBadFrame, ErrShort: NakBadFrame, ErrTooLong: NakBadFrame,
		ErrVersion: NakVersion, ErrUnknownType: NakUnknownType, ErrMalformed: NakMalformed,
	} {
		fe := &FrameError{Err: err, Offset: -1}
		if got := fe.NakReason(); got != want {
			t.Errorf("%v: NakReason %v, want %v", err, got, want)
		}
		if !errors.Is(fe, err) || ErrorName(fe) == "" {
			t.Errorf("%v: errors.Is or ErrorName broken", err)
		}
	}
}

func TestDecoderStatsAndOffsets(t *testing.T) {
	ev, _ := AppendEncoded(nil, exampleEvent())
	var in []byte
	in = append(in, 0x41, 0x42, 0x00) // offset 0: bad COBS (code 0x41 runs past the end)
	in = append(in, ev...)            // offset 3
	in = append(in, 0x00, 0x00)       // empty frames
	in = append(in, 0x01, 0x00)       // offset 3+len(ev)+2: short
	d := NewDecoder()
	var offs []int64
	var kinds []string
	d.Feed(in, func(f *Frame, err error) {
		offs = append(offs, d.Offset())
		if err != nil {
			kinds = append(kinds, ErrorName(err))
			if fe := err.(*FrameError); fe.Offset != d.Offset() {
				t.Errorf("FrameError.Offset %d, Decoder.Offset %d", fe.Offset, d.Offset())
			}
		} else {
			kinds = append(kinds, f.Type.String())
		}
	})
	wantOffs := []int64{0, 3, int64(3 + len(ev) + 2)}
	if strings.Join(kinds, ",") != "bad-cobs,event,short" || len(offs) != 3 || offs[0] != wantOffs[0] || offs[1] != wantOffs[1] || offs[2] != wantOffs[2] {
		t.Fatalf("got %v at %v, want bad-cobs,event,short at %v", kinds, offs, wantOffs)
	}
	s := d.Stats()
	if s.Frames != 1 || s.BadCOBS != 1 || s.Short != 1 || s.Errors() != 2 || s.Bytes != uint64(len(in)) {
		t.Fatalf("stats %+v", s)
	}
}

func TestDecoderReset(t *testing.T) {
	ev, _ := AppendEncoded(nil, exampleEvent())
	d := NewDecoder()
	var n int
	emit := func(f *Frame, err error) {
		if err != nil {
			t.Fatalf("unexpected %v", err)
		}
		n++
	}
	d.Feed(ev[:10], emit) // half a frame, then the link drops
	if d.Pending() != 10 {
		t.Fatalf("Pending %d", d.Pending())
	}
	d.Reset()
	d.Feed(ev, emit)
	if n != 1 {
		t.Fatalf("%d frames after Reset, want 1", n)
	}
}

func TestReader(t *testing.T) {
	ev, _ := AppendEncoded(nil, exampleEvent())
	ack, _ := AppendEncoded(nil, &Frame{Type: TypeAck, Boot: 7, Seq: 3})
	in := bytes.Join([][]byte{{0}, ev, {0x05, 0x01, 0x00}, ack, ev[:5]}, nil)
	r := NewReader(iotest.OneByteReader(bytes.NewReader(in)))
	f, err := r.ReadFrame()
	if err != nil || *f != *exampleEvent() {
		t.Fatalf("first: %v", err)
	}
	if _, err = r.ReadFrame(); !errors.Is(err, ErrBadCOBS) {
		t.Fatalf("second: %v, want bad COBS", err)
	}
	if f, err = r.ReadFrame(); err != nil || f.Type != TypeAck {
		t.Fatalf("third: %v", err)
	}
	if _, err = r.ReadFrame(); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
	if r.Pending() != 5 {
		t.Fatalf("Pending %d, want 5", r.Pending())
	}
	// Link errors are returned as is.
	boom := errors.New("unplugged")
	r = NewReader(iotest.ErrReader(boom))
	if _, err := r.ReadFrame(); err != boom {
		t.Fatalf("%v, want %v", err, boom)
	}
}

func TestStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{TypeEvent.String(), "event"}, {Type(0x04).String(), "type-0x04"},
		{EventAcknowledge.String(), "acknowledge"}, {SeverityCritical.String(), "critical"},
		{Int32Value(-5).String(), "-5"}, {Uint32Value(4000000000).String(), "4000000000"},
		{Float32Value(1.5).String(), "1.5"}, {BoolValue(true).String(), "true"},
		{Value{Kind: 9, Bits: 1}.String(), "kind-9:0x00000001"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if s, err := ParseSeverity("warning"); err != nil || s != SeverityWarning {
		t.Error("ParseSeverity")
	}
	if _, err := ParseSeverity("bad"); err == nil {
		t.Error("ParseSeverity accepted bad")
	}
	if k, err := ParseType("delivery"); err != nil || k != TypeDelivery {
		t.Error("ParseType")
	}
	for _, tt := range []struct{ got, want string }{
		{EventKind(0).String(), "event-0"}, {Severity(4).String(), "severity-4"}, {ValueKind(5).String(), "kind-5"},
		{AckDuplicate.String(), "duplicate"}, {AckResult(2).String(), "result-2"},
		{NakBusy.String(), "busy"}, {NakReason(0).String(), "reason-0"},
		{DeliveryFailed.String(), "failed"}, {DeliveryStatus(3).String(), "status-3"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if r, err := ParseAckResult("duplicate"); err != nil || r != AckDuplicate {
		t.Error("ParseAckResult")
	}
	if _, err := ParseAckResult(""); err == nil || err.Error() != `unknown ACK result "" (want queued or duplicate)` {
		t.Errorf("ParseAckResult(\"\"): %v", err)
	}
	if _, err := ParseNakReason("x"); err == nil || err.Error() != `unknown NAK reason "x" (want bad-frame, version, unknown-type, malformed or busy)` {
		t.Errorf("ParseNakReason(x): %v", err)
	}
}

// TestDecodeAllocs: decoding valid frames allocates nothing, whatever the
// chunking.
func TestDecodeAllocs(t *testing.T) {
	ev, _ := AppendEncoded(nil, exampleEvent())
	hello, _ := AppendEncoded(nil, &Frame{Type: TypeHello, Boot: 1, Seq: 1, NActive: 1, ActiveTotal: 1, Active: [MaxActive]ActiveAlarm{{17, 2}}})
	stream := bytes.Join([][]byte{ev, hello, ev, {0, 0}}, nil)
	d := NewDecoder()
	frames := 0
	emit := func(f *Frame, err error) {
		if err == nil {
			frames++
		}
	}
	if a := testing.AllocsPerRun(100, func() { d.Feed(stream, emit) }); a != 0 {
		t.Errorf("Feed, one chunk: %v allocs", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		for i := 0; i < len(stream); i += 7 {
			d.Feed(stream[i:min(i+7, len(stream))], emit)
		}
	}); a != 0 {
		t.Errorf("Feed, 7-byte chunks: %v allocs", a)
	}
	if frames == 0 || d.Stats().Errors() != 0 {
		t.Fatalf("frames %d, stats %+v", frames, d.Stats())
	}
	buf := make([]byte, 0, MaxEncoded+1)
	f := exampleEvent()
	if a := testing.AllocsPerRun(100, func() { buf, _ = AppendEncoded(buf[:0], f) }); a != 0 {
		t.Errorf("AppendEncoded: %v allocs", a)
	}
}

// BenchmarkDecode measures decoding throughput over encoded input: a mix of
// typical event frames and heartbeats, fed in 4 KiB chunks like a serial read.
func BenchmarkDecode(b *testing.B) {
	ev, _ := AppendEncoded(nil, exampleEvent())
	hb, _ := AppendEncoded(nil, &Frame{Type: TypeHeartbeat, Boot: 7, Uptime: 10})
	var stream []byte
	for len(stream) < 64<<10 {
		stream = append(stream, ev...)
		stream = append(stream, hb...)
	}
	d := NewDecoder()
	emit := func(f *Frame, err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < len(stream); i += 4096 {
			d.Feed(stream[i:min(i+4096, len(stream))], emit)
		}
	}
}

func TestParseValue(t *testing.T) {
	for _, s := range []string{"i32:42", "i32:-2147483648", "u32:4294967295", "f32:1.5", "f32:-273.15", "bool:true", "bool:false"} {
		v, err := ParseValue(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if got, _ := v.MarshalText(); string(got) != s {
			t.Errorf("%s round-trips to %s", s, got)
		}
	}
	if v, err := ParseValue("u32:0x10"); err != nil || v != Uint32Value(16) {
		t.Errorf("hex: %v %v", v, err)
	}
	for _, s := range []string{"42", "i32:2147483648", "u32:-1", "f32:x", "bool:2", "i64:1"} {
		if _, err := ParseValue(s); err == nil {
			t.Errorf("ParseValue(%q) accepted", s)
		}
	}
}

// TestCRC16Slicing compares the sliced CRC with the bitwise definition on
// every length up to 100, so each tail length and alignment is covered.
func TestCRC16Slicing(t *testing.T) {
	bitwise := func(data []byte) uint16 {
		crc := uint16(0xFFFF)
		for _, b := range data {
			crc ^= uint16(b)
			for range 8 {
				if crc&1 != 0 {
					crc = crc>>1 ^ 0x8408
				} else {
					crc >>= 1
				}
			}
		}
		return ^crc
	}
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i*151 + 7)
	}
	for n := 0; n <= len(data); n++ {
		for off := 0; off < 3 && off <= n; off++ {
			if got, want := CRC16(data[off:n]), bitwise(data[off:n]); got != want {
				t.Fatalf("CRC16(data[%d:%d]) = %#04x, bitwise %#04x", off, n, got, want)
			}
		}
	}
}

func BenchmarkCRC16(b *testing.B) {
	data := make([]byte, 64)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		CRC16(data)
	}
}

type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.writes++; return w.Buffer.Write(p) }

func TestWriteFrameOneWrite(t *testing.T) {
	var w countingWriter
	if err := WriteFrame(&w, exampleEvent()); err != nil || w.writes != 1 {
		t.Fatalf("WriteFrame: %v, %d writes", err, w.writes)
	}
	if err := WriteFrame(&w, &Frame{Type: 0x04}); !errors.Is(err, ErrUnknownType) || w.writes != 1 {
		t.Fatalf("invalid frame: %v, %d writes", err, w.writes)
	}
}

func BenchmarkEncode(b *testing.B) {
	f := exampleEvent()
	buf := make([]byte, 0, MaxEncoded+1)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendEncoded(buf[:0], f)
	}
	b.SetBytes(int64(len(buf)))
}
