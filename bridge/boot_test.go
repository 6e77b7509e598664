package bridge

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/plcmail/plcmail/protocol"
)

// HELLO frames (raw, CRC included) for TestClassifyHello: boot, seq, uptime.
const (
	hello7s1u2   = "0101070000000100000002000000010000329e" // vector hello-empty
	hello7s1u5   = "01010700000001000000050000000100002a59"
	hello7s9u500 = "01010700000009000000f40100000100002fe9"
	hello7s9u100 = "0101070000000900000064000000010000d0de"
	hello6s1u2   = "010106000000010000000200000001000018d6"
	hello8s1u2   = "0101080000000100000002000000010000873f"
	hello7s4u9   = "010107000000040000000900000001000074e3"
	hello7s5u9   = "0101070000000500000009000000010000e5b6"
)

func u32(v uint32) *uint32 { return &v }

// helloRec is the journal record of an accepted HELLO.
func helloRec(boot, seq, uptime uint32, isNew bool) record {
	return record{T: "hello", Boot: boot, Seq: seq, Uptime: int64(uptime), HelloUp: u32(uptime), New: isNew}
}

func evRec(boot, seq, uptime uint32) record {
	return record{T: "ev", Boot: boot, Seq: seq, Uptime: int64(uptime), Code: 17, Event: "raise", Sev: "alarm"}
}

// TestClassifyHello: SPEC §4 rule 4, what a HELLO means after what the
// journal holds; the same after the journal is read again (a gateway
// restart keeps every decision).
func TestClassifyHello(t *testing.T) {
	v1 := `{"t":"snap","b":7,"seen":[[1,4]]}` + "\n"
	for _, tc := range []struct {
		name  string
		recs  []record
		raw   string // a journal in an earlier format instead of recs
		hello string
		want  helloKind
	}{
		{"first hello", nil, "", hello7s1u2, helloNewBoot},
		{"retransmitted hello", []record{helloRec(7, 1, 2, true)}, "", hello7s1u2, helloDuplicate},
		{"same key, other uptime: a repeated id", []record{helloRec(7, 1, 2, true)}, "", hello7s1u5, helloNewBoot},
		{"resync later in the boot", []record{helloRec(7, 1, 2, true)}, "", hello7s9u500, helloResync},
		{"other boot id", []record{helloRec(7, 1, 2, true)}, "", hello8s1u2, helloNewBoot},
		{"first hello again after events: a repeated id",
			[]record{helloRec(7, 1, 2, true), evRec(7, 2, 100), evRec(7, 3, 300)}, "", hello7s1u2, helloNewBoot},
		{"resync after events", []record{helloRec(7, 1, 2, true), evRec(7, 2, 100), evRec(7, 3, 300)}, "", hello7s9u500, helloResync},
		{"later seq, uptime went back: a repeated id",
			[]record{helloRec(7, 1, 2, true), evRec(7, 2, 100), evRec(7, 3, 300)}, "", hello7s9u100, helloNewBoot},
		{"late hello of the earlier boot", []record{helloRec(6, 1, 2, true), helloRec(7, 1, 2, true)}, "", hello6s1u2, helloDuplicate},
		{"earlier boot's id, but that boot went past its hello",
			[]record{helloRec(6, 1, 2, true), evRec(6, 2, 50), helloRec(7, 1, 2, true)}, "", hello6s1u2, helloNewBoot},
		{"repeated id opened in the journal",
			[]record{helloRec(7, 1, 2, true), evRec(7, 2, 100), {T: "hello", Boot: 7, Gen: 1, Seq: 1, Uptime: 2, HelloUp: u32(2), New: true}},
			"", hello7s1u2, helloDuplicate},
		{"v1 journal: hello before the boot's last seq", nil, v1, hello7s1u2, helloNewBoot},
		{"v1 journal: the boot's last seq", nil, v1, hello7s4u9, helloDuplicate},
		{"v1 journal: next seq", nil, v1, hello7s5u9, helloResync},
		{"v1 hello record without uptime", nil, `{"t":"hello","b":7,"s":1}` + "\n", hello7s1u5, helloDuplicate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := hex.DecodeString(tc.hello)
			if err != nil {
				t.Fatal(err)
			}
			var f protocol.Frame
			if err := protocol.ParseRaw(raw, &f); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if tc.raw != "" {
				if err := os.WriteFile(filepath.Join(dir, "l.journal"), []byte(tc.raw), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			j, st, err := openJournal(dir, "l")
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.recs {
				if err := j.append(&r); err != nil {
					t.Fatal(err)
				}
				st.apply(&r)
			}
			j.close()
			if got := st.classifyHello(f.Boot, f.Seq, f.Uptime); got != tc.want {
				t.Errorf("live: %v, want %v", got, tc.want)
			}
			for round := range 2 { // the second reads the compacted journal
				j, st, err := openJournal(dir, "l")
				if err != nil {
					t.Fatal(err)
				}
				j.close()
				if got := st.classifyHello(f.Boot, f.Seq, f.Uptime); got != tc.want {
					t.Errorf("after reopening (%d): %v, want %v", round, got, tc.want)
				}
			}
		})
	}
}

// TestBootGenerations: a repeated boot id gets a generation of its own,
// late events of an earlier boot neither switch boots nor change the
// active alarms, and all of it survives compaction; a v1 journal takes
// the ids up to its boot as used.
func TestBootGenerations(t *testing.T) {
	dir := t.TempDir()
	j, st, err := openJournal(dir, "l")
	if err != nil {
		t.Fatal(err)
	}
	add := func(r record) {
		t.Helper()
		if err := j.append(&r); err != nil {
			t.Fatal(err)
		}
		st.apply(&r)
	}
	if g := st.genFor(5); g != 0 {
		t.Fatalf("gen of a fresh id %d", g)
	}
	add(helloRec(5, 1, 2, true))
	add(evRec(5, 2, 10))
	add(helloRec(6, 1, 2, true))
	late := evRec(5, 3, 20) // never heard before the new HELLO
	late.Code = 99
	add(late)
	if st.Boot != 6 || st.oldBoot(5) == nil || !(&seqSet{r: st.oldBoot(5).Seen}).has(3) || st.Active[99] != "" {
		t.Fatalf("late event: boot %d old %+v active %v", st.Boot, st.old, st.Active)
	}
	if g := st.genFor(5); g != 1 {
		t.Fatalf("gen of repeated id 5: %d, want 1", g)
	}
	r := helloRec(5, 1, 2, true)
	r.Gen = 1
	add(r)
	j.close()
	for round := range 2 {
		j, st2, err := openJournal(dir, "l")
		if err != nil {
			t.Fatal(err)
		}
		j.close()
		if st2.Boot != 5 || st2.Gen != 1 || st2.genFor(5) != 2 || st2.genFor(7) != 0 || st2.oldBoot(6) == nil || st2.oldBoot(5) != nil {
			b, _ := json.Marshal(st2.snapshot()[0])
			t.Fatalf("round %d: %s", round, b)
		}
		if len(st2.unmailed) != 2 || st2.unmailed[1].Seq != 3 || st2.unmailed[1].Boot != 5 {
			t.Fatalf("round %d: unmailed %+v", round, st2.unmailed)
		}
	}

	dir = t.TempDir()
	data, err := os.ReadFile("testdata/journal-v1.journal")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "l.journal"), data, 0o600)
	j, st, err = openJournal(dir, "l")
	if err != nil {
		t.Fatal(err)
	}
	j.close()
	if st.Boot != 7 || st.Gen != 0 || st.genFor(3) != 1 || st.genFor(8) != 0 {
		t.Errorf("v1 journal: boot %d gen %d ids %v", st.Boot, st.Gen, st.ids.r)
	}
}

func (k helloKind) String() string {
	return [...]string{"duplicate", "resync", "new boot"}[k]
}
