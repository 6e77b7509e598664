package modbus

import (
	"encoding/binary"
	"math"
	"testing"
)

// FuzzDecodeRegisters: whatever words a device sends, decoding returns a
// finite value or an error, never a panic.
func FuzzDecodeRegisters(f *testing.F) {
	f.Add([]byte{0x42, 0xAA, 0, 0}, uint8(4), true)
	f.Add([]byte{0x7F, 0xC0, 0, 0}, uint8(4), false)
	f.Add([]byte{0xFF}, uint8(0), false)
	types := []string{"int16", "uint16", "int32", "uint32", "float32", "bool"}
	f.Fuzz(func(t *testing.T, b []byte, typ uint8, low bool) {
		regs := make([]uint16, len(b)/2)
		for i := range regs {
			regs[i] = binary.BigEndian.Uint16(b[2*i:])
		}
		tag := &Tag{Name: "t", Type: types[int(typ)%len(types)], LowWordFirst: low, Scale: 0.5, Offset: 1}
		v, err := decodeRegisters(tag, regs)
		if err == nil && (math.IsNaN(v.f) || math.IsInf(v.f, 0)) {
			t.Fatalf("%s %x: %v", tag.Type, regs, v.f)
		}
	})
}
