package protocol

// CRC-16/IBM-SDLC (SPEC.md 1.3): poly 0x1021 reflected (0x8408), init
// 0xFFFF, reflected in and out, xorout 0xFFFF. avr-libc's _crc_ccitt_update
// computes the same register update without a table, which is why the
// firmware can afford it.

const crcPolyReflected = 0x8408

// crcTable holds the register update for each byte value, built once at init.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ crcPolyReflected
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16 returns the CRC-16/IBM-SDLC of data; CRC16([]byte("123456789")) is
// 0x906E. Frames carry it little-endian after the payload.
func CRC16(data []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, b := range data {
		crc = crc>>8 ^ crcTable[byte(crc)^b]
	}
	return ^crc
}
