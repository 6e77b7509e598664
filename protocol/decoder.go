package protocol

import (
	"bytes"
	"io"
)

// Stats counts what a Decoder has seen since NewDecoder. Every frame-level
// error increments exactly one counter.
type Stats struct {
	Frames      uint64 // valid frames emitted
	BadCOBS     uint64
	BadCRC      uint64
	Short       uint64
	TooLong     uint64
	Version     uint64
	UnknownType uint64
	Malformed   uint64
	Bytes       uint64 // bytes fed, delimiters and garbage included
}

// Errors is the number of frame-level errors of all kinds.
func (s Stats) Errors() uint64 {
	return s.BadCOBS + s.BadCRC + s.Short + s.TooLong + s.Version + s.UnknownType + s.Malformed
}

// Decoder turns a byte stream into frames and frame-level errors. It accepts
// arbitrary chunks, resynchronises on the next 0x00 after any error, never
// panics and does not allocate for valid frames. It is not safe for
// concurrent use.
type Decoder struct {
	enc     [MaxEncoded]byte // encoded bytes of a frame split across chunks
	nenc    int
	discard bool // after too-long: skip input up to the next 0x00
	raw     [MaxFrame]byte
	frame   Frame
	stats   Stats
	offset  int64 // stream position of the next byte fed
	start   int64 // stream position of the first byte of the current frame
}

// NewDecoder returns a Decoder at the start of a stream.
func NewDecoder() *Decoder { return &Decoder{} }

// Feed decodes p and calls emit once per complete frame (err == nil; f and
// its contents are valid only during the call: copy *f to keep it) or per
// frame-level error (f == nil, err is a *FrameError, which may be kept).
// Empty frames, i.e. consecutive delimiters, are skipped silently. Bytes after
// the last delimiter in p are kept for the next call.
func (d *Decoder) Feed(p []byte, emit func(f *Frame, err error)) {
	for len(p) > 0 {
		n, f, err := d.step(p)
		p = p[n:]
		if f != nil || err != nil {
			emit(f, err)
		}
	}
}

// Stats returns the counters.
func (d *Decoder) Stats() Stats { return d.stats }

// Reset drops a partially received frame, e.g. after the link reconnected:
// its first half must not be glued to bytes from the new connection. The
// counters and the stream offset are kept.
func (d *Decoder) Reset() {
	d.nenc = 0
	d.discard = false
}

// Discarding reports whether the decoder is skipping the rest of a frame it
// reported as too long, up to the delimiter that ends it. A receiver that
// NAKs only frames it saw the delimiter of (SPEC.md 4, rule 5) answers a
// too-long frame once this turns false again.
func (d *Decoder) Discarding() bool { return d.discard }

// Pending returns the number of bytes of an incomplete frame held by the
// decoder (0 when it is between frames).
func (d *Decoder) Pending() int { return d.nenc }

// Offset is the stream position (bytes fed since NewDecoder) of the first byte
// of the frame being emitted; meaningful during an emit callback.
func (d *Decoder) Offset() int64 { return d.start }

// step consumes bytes from the front of p until one frame or error is complete
// or p is used up, and returns the number of bytes consumed and what was
// completed, if anything.
func (d *Decoder) step(p []byte) (int, *Frame, error) {
	if d.discard {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			d.advance(len(p))
			return len(p), nil, nil
		}
		d.discard = false
		d.advance(i + 1)
		return i + 1, nil, nil
	}
	if d.nenc == 0 {
		d.start = d.offset
	}
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		// No delimiter: keep the bytes for the next chunk, up to the limit.
		if d.nenc+len(p) > MaxEncoded {
			d.nenc = 0
			d.discard = true
			d.advance(len(p))
			return len(p), nil, d.fail(ErrTooLong, "")
		}
		d.nenc += copy(d.enc[d.nenc:], p)
		d.advance(len(p))
		return len(p), nil, nil
	}
	d.advance(i + 1)
	enc := p[:i]
	if d.nenc > 0 {
		if d.nenc+i > MaxEncoded {
			d.nenc = 0
			return i + 1, nil, d.fail(ErrTooLong, "")
		}
		d.nenc += copy(d.enc[d.nenc:], enc)
		enc = d.enc[:d.nenc]
		d.nenc = 0
	}
	switch {
	case len(enc) == 0:
		return i + 1, nil, nil
	case len(enc) > MaxEncoded:
		return i + 1, nil, d.fail(ErrTooLong, "")
	}
	n, ok := cobsDecodeFrame(&d.raw, enc)
	if !ok {
		return i + 1, nil, d.fail(ErrBadCOBS, "")
	}
	if detail, err := parseRaw(d.raw[:n], &d.frame); err != nil {
		return i + 1, nil, d.fail(err, detail)
	}
	d.stats.Frames++
	return i + 1, &d.frame, nil
}

func (d *Decoder) advance(n int) {
	d.offset += int64(n)
	d.stats.Bytes += uint64(n)
}

// fail counts err and wraps it. Errors allocate; valid frames do not.
func (d *Decoder) fail(err error, detail string) error {
	switch err {
	case ErrBadCOBS:
		d.stats.BadCOBS++
	case ErrBadCRC:
		d.stats.BadCRC++
	case ErrShort:
		d.stats.Short++
	case ErrTooLong:
		d.stats.TooLong++
	case ErrVersion:
		d.stats.Version++
	case ErrUnknownType:
		d.stats.UnknownType++
	case ErrMalformed:
		d.stats.Malformed++
	}
	return newFrameError(err, detail, &d.frame, d.start)
}

// Reader reads frames from an io.Reader, for tools such as plcmail decode.
// The gateway's links use a Decoder directly.
type Reader struct {
	r   io.Reader
	d   Decoder
	buf [4096]byte
	p   []byte // unread part of buf
	err error  // sticky link-level error, returned once p is used up
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// ReadFrame returns the next frame, or a *FrameError for a frame that was lost
// or refused (call again to continue), or the link-level error of the
// underlying reader as is (io.EOF at the end; an incomplete frame at the end
// of the stream is dropped). The returned Frame is valid until the next call.
func (r *Reader) ReadFrame() (*Frame, error) {
	empty := 0
	for {
		for len(r.p) > 0 {
			n, f, err := r.d.step(r.p)
			r.p = r.p[n:]
			if err != nil {
				return nil, err
			}
			if f != nil {
				return f, nil
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		n, err := r.r.Read(r.buf[:])
		r.p, r.err = r.buf[:n], err
		if n == 0 && err == nil {
			if empty++; empty >= 100 {
				return nil, io.ErrNoProgress
			}
		}
	}
}

// Stats returns the counters of the underlying decoder.
func (r *Reader) Stats() Stats { return r.d.Stats() }

// Offset is the stream position of the first byte of the frame or error last
// returned by ReadFrame.
func (r *Reader) Offset() int64 { return r.d.Offset() }

// Pending returns the number of bytes of an incomplete frame held back.
func (r *Reader) Pending() int { return r.d.Pending() }
