package protocol

import (
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

// TestDecoderDiscardingUntilDelimiter: a receiver NAKs a too-long frame
// (SPEC.md 1.4 step 2) only when its delimiter has arrived (4, rule 5), so
// the decoder tells when it stops skipping one. Each chunk is hex; "55*90"
// stands for 90 bytes 0x55.
func TestDecoderDiscardingUntilDelimiter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		// after each chunk: errors emitted so far and Discarding()
		errs       []int
		discarding []bool
	}{
		{"overflow then delimiter", []string{"55*82", "5555", "00"}, []int{1, 1, 1}, []bool{true, true, false}},
		{"overflow and delimiter in one chunk", []string{"55*90 00"}, []int{1}, []bool{false}},
		{"81 bytes is no overflow", []string{"55*81"}, []int{0}, []bool{false}},
		{"overflow at the delimiter of a split frame", []string{"55*60", "55*30 00"}, []int{0, 1}, []bool{false, false}},
		{"delimiter then a frame", []string{"55*82", "00 040181070101020301010103ba2000"}, []int{1, 1}, []bool{true, false}},
		{"reset ends discarding", []string{"55*82", ""}, []int{1, 1}, []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder()
			errs := 0
			for i, c := range tc.chunks {
				if c == "" {
					d.Reset()
				}
				d.Feed(hexChunk(t, c), func(f *Frame, err error) {
					if err != nil {
						if ErrorName(err) != "too-long" {
							t.Errorf("chunk %d: %v", i, err)
						}
						errs++
					}
				})
				if errs != tc.errs[i] || d.Discarding() != tc.discarding[i] {
					t.Fatalf("after chunk %d: %d errors, discarding %v; want %d, %v", i, errs, d.Discarding(), tc.errs[i], tc.discarding[i])
				}
			}
		})
	}
}

// hexChunk decodes space-separated hex tokens; BYTE*N repeats a byte.
func hexChunk(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for _, tok := range strings.Fields(s) {
		n := 1
		if b, rep, ok := strings.Cut(tok, "*"); ok {
			var err error
			if n, err = strconv.Atoi(rep); err != nil {
				t.Fatal(err)
			}
			tok = b
		}
		b, err := hex.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			out = append(out, b...)
		}
	}
	return out
}
