package bridge

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plcmail/plcmail/spool"
)

func TestSeqSetMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := 0; round < 200; round++ {
		var s seqSet
		ref := map[uint32]bool{}
		base := uint32(rng.IntN(10)) * (1 << 31) / 5 // also near the top of u32
		for i := 0; i < 300; i++ {
			q := base + uint32(rng.IntN(120))
			if rng.IntN(20) == 0 {
				q = ^uint32(0) - uint32(rng.IntN(3))
			}
			s.add(q)
			ref[q] = true
			for k := 0; k < 5; k++ {
				c := base + uint32(rng.IntN(130))
				if s.has(c) != ref[c] {
					t.Fatalf("has(%d) = %v, want %v; ranges %v", c, s.has(c), ref[c], s.r)
				}
			}
		}
		for i := 1; i < len(s.r); i++ {
			if s.r[i-1][1]+1 >= s.r[i][0] {
				t.Fatalf("ranges not disjoint and separated: %v", s.r)
			}
		}
	}
	var s seqSet
	for q := uint32(1); q <= 100000; q++ {
		s.add(q)
	}
	if len(s.r) != 1 {
		t.Errorf("in-order seqs make %d ranges, want 1", len(s.r))
	}
}

// TestJournalReplay folds a journal written by one instance into the same
// state in the next, including a torn last line.
func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	j, st, err := openJournal(dir, "l")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, r := range []record{
		{T: "hello", Boot: 3, Seq: 1, Active: map[int]string{5: "alarm"}},
		{T: "ev", Boot: 3, Seq: 2, Code: 17, Event: "raise", Sev: "alarm", At: now},
		{T: "ev", Boot: 3, Seq: 3, Code: 17, Event: "raise", Sev: "alarm", At: now, Held: "hold-off"},
		{T: "ev", Boot: 3, Seq: 4, Code: 5, Event: "clear", Sev: "alarm", At: now, Held: "rate limit"},
		{T: "mailed", Boot: 3, Seq: 2},
		{T: "ev", Boot: 3, Seq: 5, Code: 9, Event: "raise", Sev: "info", At: now},
		{T: "flushed", N: 1},
		{T: "offline"},
	} {
		if err := j.append(&r); err != nil {
			t.Fatal(err)
		}
		st.apply(&r)
	}
	j.close()
	f, _ := os.OpenFile(filepath.Join(dir, "l.journal"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"t":"ev","b":3,"s":6,"c":1`) // power loss mid-append
	f.Close()

	for round := 0; round < 2; round++ { // the second round reads the compacted form
		j2, st2, err := openJournal(dir, "l")
		if err != nil {
			t.Fatal(err)
		}
		j2.close()
		if st2.Boot != 3 || !st2.Offline || st2.seen.has(6) || !st2.seen.has(1) || !st2.seen.has(5) {
			t.Fatalf("round %d: state %+v", round, st2)
		}
		if len(st2.pending) != 1 || st2.pending[0].Seq != 4 || len(st2.unmailed) != 1 || st2.unmailed[0].Seq != 5 {
			t.Fatalf("round %d: pending %+v unmailed %+v", round, st2.pending, st2.unmailed)
		}
		if len(st2.Active) != 2 || st2.Active[17] != "alarm" || st2.Active[9] != "info" {
			t.Fatalf("round %d: active %v", round, st2.Active)
		}
		if !st2.pending[0].At.Equal(now) {
			t.Errorf("time lost: %v", st2.pending[0].At)
		}
	}
}

// TestJournalCompactsOnMailedRecords: alarms mailed one by one append only
// ev and mailed records, which must also compact an oversized journal.
func TestJournalCompactsOnMailedRecords(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newBridge(testCfg(t, "/dev/null", testOpts{}), sp, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := b.links[0]
	defer l.j.close()
	r := record{T: "ev", Boot: 3, Seq: 2, Code: 17, Event: "raise", Sev: "alarm", At: time.Now().UTC()}
	if err := l.j.append(&r); err != nil {
		t.Fatal(err)
	}
	l.st.apply(&r)
	l.j.size = compactBytes + 1 // as if many alarms had been mailed before
	l.mailedDone(mailDone{boot: 3, seq: 2})
	fi, err := os.Stat(l.j.path)
	if err != nil {
		t.Fatal(err)
	}
	if l.j.size > compactBytes || l.j.size != fi.Size() || len(l.st.unmailed) != 0 {
		t.Errorf("journal not compacted: size %d, file %d bytes, unmailed %d", l.j.size, fi.Size(), len(l.st.unmailed))
	}
}
