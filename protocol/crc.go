package protocol

// CRC-16/IBM-SDLC (SPEC.md 1.3): poly 0x1021 reflected (0x8408), init
// 0xFFFF, reflected in and out, xorout 0xFFFF. avr-libc's _crc_ccitt_update
// computes the same register update without a table, which is why the
// firmware can afford it.

const crcPolyReflected = 0x8408

// crcTables[0] is the classic byte-at-a-time table; crcTables[k] advances a
// byte's contribution by k more bytes, so that CRC16 can fold eight input
// bytes per step ("slicing by 8"). Built once at init: 4 KiB.
var crcTables = func() (t [8][256]uint16) {
	for i := range t[0] {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ crcPolyReflected
			} else {
				c >>= 1
			}
		}
		t[0][i] = c
	}
	for k := 1; k < len(t); k++ {
		for i := range t[k] {
			prev := t[k-1][i]
			t[k][i] = prev>>8 ^ t[0][byte(prev)]
		}
	}
	return t
}()

// crcTable is the byte-at-a-time table, for the tail and for the spec trace.
var crcTable = &crcTables[0]

// CRC16 returns the CRC-16/IBM-SDLC of data; CRC16([]byte("123456789")) is
// 0x906E. Frames carry it little-endian after the payload.
func CRC16(data []byte) uint16 {
	crc := uint16(0xFFFF)
	t := &crcTables
	for len(data) >= 8 {
		crc = t[7][data[0]^byte(crc)] ^ t[6][data[1]^byte(crc>>8)] ^
			t[5][data[2]] ^ t[4][data[3]] ^ t[3][data[4]] ^ t[2][data[5]] ^
			t[1][data[6]] ^ t[0][data[7]]
		data = data[8:]
	}
	for _, b := range data {
		crc = crc>>8 ^ crcTable[byte(crc)^b]
	}
	return ^crc
}
