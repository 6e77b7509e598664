package modbus

import (
	"fmt"
	"math"

	"github.com/plcmail/plcmail/alarmmail"
)

// value is one decoded reading of a tag.
type value struct {
	b bool    // bool tags
	f float64 // register tags, after scale and offset
	// mail is the value as templates print it.
	mail alarmmail.Value
}

// decodeRegisters turns the registers read for t into its value. regs has
// t's number of words (1 or 2).
func decodeRegisters(t *Tag, regs []uint16) (value, error) {
	want := 1
	switch t.Type {
	case "int32", "uint32", "float32":
		want = 2
	}
	if len(regs) != want {
		return value{}, fmt.Errorf("tag %s: %d registers, want %d", t.Name, len(regs), want)
	}
	var u32 uint32
	if want == 2 {
		hi, lo := regs[0], regs[1]
		if t.LowWordFirst {
			hi, lo = lo, hi
		}
		u32 = uint32(hi)<<16 | uint32(lo)
	}
	var raw float64
	var mv alarmmail.Value
	switch t.Type {
	case "int16":
		raw = float64(int16(regs[0]))
		mv = alarmmail.Value{Kind: "int32", Int: int64(int16(regs[0]))}
	case "uint16":
		raw = float64(regs[0])
		mv = alarmmail.Value{Kind: "uint32", Uint: uint64(regs[0])}
	case "int32":
		raw = float64(int32(u32))
		mv = alarmmail.Value{Kind: "int32", Int: int64(int32(u32))}
	case "uint32":
		raw = float64(u32)
		mv = alarmmail.Value{Kind: "uint32", Uint: uint64(u32)}
	case "float32":
		raw = float64(math.Float32frombits(u32))
		mv = alarmmail.Value{Kind: "float32", F: raw}
	default:
		return value{}, fmt.Errorf("tag %s: type %q is not a register type", t.Name, t.Type)
	}
	if math.IsNaN(raw) || math.IsInf(raw, 0) {
		return value{}, fmt.Errorf("tag %s: the device sent %v", t.Name, raw)
	}
	f := raw*t.Scale + t.Offset
	if math.IsInf(f, 0) {
		return value{}, fmt.Errorf("tag %s: %v scaled by %v is out of range", t.Name, raw, t.Scale)
	}
	if t.Scale != 1 || t.Offset != 0 {
		mv = alarmmail.Value{Kind: "float32", F: f}
	}
	return value{f: f, mail: mv}, nil
}

func boolValue(b bool) value {
	v := value{b: b, mail: alarmmail.Value{Kind: "bool", Bool: b}}
	if b {
		v.f = 1
	}
	return v
}
