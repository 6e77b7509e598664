package protocol

// COBS, Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999), as
// described in SPEC.md 1.1. A code byte c (1..255) is followed by c-1 data
// bytes; unless c is 0xFF or the group is the last one, a 0x00 follows the
// data in the decoded output. Frames are at most 80 bytes, so in practice
// every code byte is at most 81 and there is exactly one code byte per zero
// in the frame plus one.

// COBSEncode appends the COBS encoding of src to dst, without a delimiter.
// The output is len(src)+1 bytes for len(src) < 255, never contains 0x00,
// and is the minimal encoding: no group is added after a final 254-byte run.
func COBSEncode(dst, src []byte) []byte {
	codeAt := len(dst)
	dst = append(dst, 0)
	code := byte(1)
	for i, b := range src {
		if b == 0 {
			dst[codeAt] = code
			codeAt = len(dst)
			dst = append(dst, 0)
			code = 1
			continue
		}
		dst = append(dst, b)
		code++
		if code == 0xFF && i+1 < len(src) {
			dst[codeAt] = code
			codeAt = len(dst)
			dst = append(dst, 0)
			code = 1
		}
	}
	dst[codeAt] = code
	return dst
}

// COBSDecode appends the decoding of src (one encoded frame without its
// delimiter) to dst. It returns ErrBadCOBS if src contains 0x00 or a code
// byte points past the end of src. An empty src decodes to nothing.
func COBSDecode(dst, src []byte) ([]byte, error) {
	for i := 0; i < len(src); {
		code := int(src[i])
		if code == 0 {
			return dst, ErrBadCOBS
		}
		i++
		end := i + code - 1
		if end > len(src) {
			return dst, ErrBadCOBS
		}
		for _, b := range src[i:end] {
			if b == 0 {
				return dst, ErrBadCOBS
			}
		}
		dst = append(dst, src[i:end]...)
		i = end
		if code != 0xFF && i < len(src) {
			dst = append(dst, 0)
		}
	}
	return dst, nil
}

// cobsDecodeFrame decodes src into out for the Decoder. src comes from
// between two delimiters, so it holds no 0x00 and at most MaxEncoded bytes.
//
// Without 0xFF code bytes (always the case for frames of at most 254 bytes)
// the decoded frame is src[1:] with each later code byte replaced by 0x00,
// so one copy and a walk over the code bytes do the job. A 0xFF code, which
// only garbage can contain here, takes the general path.
func cobsDecodeFrame(out *[MaxFrame]byte, src []byte) (int, bool) {
	if len(src) == 0 || len(src) > MaxEncoded {
		return 0, false
	}
	n := copy(out[:], src[1:])
	for i := 0; ; {
		code := int(src[i])
		if code == 0xFF {
			b, err := COBSDecode(out[:0], src)
			return len(b), err == nil && len(b) <= MaxFrame
		}
		i += code
		switch {
		case i == len(src):
			return n, true
		case i > len(src):
			return 0, false
		}
		out[i-1] = 0
	}
}
