package protocol

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var specMarker = regexp.MustCompile(`<!-- (vector|crc-trace): ([a-z0-9-]+) -->`)

// specBlocks returns, for each marker in SPEC.md, its kind, argument and the
// lines of the code block that follows it.
func specBlocks(t *testing.T) [][3]string {
	spec, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	var out [][3]string
	for _, m := range specMarker.FindAllSubmatchIndex(spec, -1) {
		rest := string(spec[m[1]:])
		start := strings.Index(rest, "```\n")
		if start < 0 || strings.TrimSpace(rest[:start]) != "" {
			t.Fatalf("SPEC.md: %s is not followed by a code block", spec[m[0]:m[1]])
		}
		body := rest[start+4:]
		end := strings.Index(body, "```")
		if end < 0 {
			t.Fatalf("SPEC.md: unterminated code block after %s", spec[m[0]:m[1]])
		}
		out = append(out, [3]string{string(spec[m[2]:m[3]]), string(spec[m[4]:m[5]]), body[:end]})
	}
	return out
}

// TestSpecExamples keeps the worked examples of SPEC.md section 6 equal to
// the vectors and the CRC trace equal to the CRC.
func TestSpecExamples(t *testing.T) {
	vectors := map[string]vector{}
	for _, v := range loadVectors(t) {
		vectors[v.name] = v
	}
	checked := 0
	for _, b := range specBlocks(t) {
		kind, arg, body := b[0], b[1], b[2]
		switch kind {
		case "vector":
			v, ok := vectors[arg]
			if !ok {
				t.Errorf("SPEC.md shows vector %s, which vectors.txt does not have", arg)
				continue
			}
			fields := map[string]string{}
			var key string
			for _, line := range strings.Split(body, "\n") {
				if line == "" {
					continue
				}
				if line[0] != ' ' {
					key, line, _ = strings.Cut(line, " ")
				}
				fields[key] += strings.ReplaceAll(line, " ", "")
			}
			wire, err := hex.DecodeString(fields["wire"])
			if err != nil || !bytes.Equal(wire, v.wire) {
				t.Errorf("SPEC.md %s: wire %s, vectors.txt has %x (%v)", arg, fields["wire"], v.wire, err)
			}
			if h, ok := fields["raw"]; ok || v.raw != nil {
				raw, err := hex.DecodeString(h)
				if err != nil || !bytes.Equal(raw, v.raw) {
					t.Errorf("SPEC.md %s: raw %s, vectors.txt has %x (%v)", arg, h, v.raw, err)
				}
			}
			if c, ok := fields["crc"]; ok {
				crc, err := strconv.ParseUint(c, 0, 16)
				n := len(v.raw) - 2
				if err != nil || n < 0 || uint16(crc) != CRC16(v.raw[:n]) || uint16(crc) != uint16(v.raw[n])|uint16(v.raw[n+1])<<8 {
					t.Errorf("SPEC.md %s: crc %s does not match the raw frame", arg, c)
				}
			}
			checked++
		case "crc-trace":
			var want strings.Builder
			crc := uint16(0xFFFF)
			fmt.Fprintf(&want, "start 0x%04x\n", crc)
			for i := 0; i < len(arg); i++ {
				crc = crc>>8 ^ crcTable[byte(crc)^arg[i]]
				fmt.Fprintf(&want, "'%c'   0x%04x\n", arg[i], crc)
			}
			fmt.Fprintf(&want, "xor   0x%04x\n", ^crc)
			if body != want.String() {
				t.Errorf("SPEC.md CRC trace of %q:\n%s\nwant\n%s", arg, body, want.String())
			}
			if ^crc != CRC16([]byte(arg)) {
				t.Error("trace disagrees with CRC16")
			}
			checked++
		}
	}
	if checked < 9 {
		t.Errorf("only %d examples checked in SPEC.md; markers lost?", checked)
	}
}

// TestSpecConstants checks the limits table of SPEC.md 1.2 against the code.
func TestSpecConstants(t *testing.T) {
	spec, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]int{"MaxFrame": MaxFrame, "MaxPayload": MaxPayload, "MaxEncoded": MaxEncoded,
		"MaxText": MaxText, "MaxValues": MaxValues, "MaxActive": MaxActive} {
		row := fmt.Sprintf("| `%s` | %d |", name, v)
		if !bytes.Contains(spec, []byte(row)) {
			t.Errorf("SPEC.md lacks the row %q", row)
		}
	}
}
