package bridge

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
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
	b, err := newBridge(optionsFor(t, testCfg(t, "/dev/null", testOpts{})), sp, nil, nil, nil)
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

// TestJournalV1Values reads testdata/journal-v1.journal, written by the
// bridge before it persisted protocol values (the templates' Value type,
// {"Kind":"float32","F":87.5,...}): every value comes back bit for bit, and
// the templates print it as they did then.
func TestJournalV1Values(t *testing.T) {
	data, err := os.ReadFile("testdata/journal-v1.journal")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "line1.journal"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	f32 := protocol.Float32Value
	want := map[uint32]struct {
		vals    []protocol.Value
		printed []string // by the templates, as before the change
	}{
		2: {[]protocol.Value{f32(87.5), protocol.Int32Value(-3)}, []string{"87.5", "-3"}},
		3: {[]protocol.Value{f32(0.1), protocol.Uint32Value(math.MaxUint32)}, []string{"0.1", "4294967295"}},
		4: {[]protocol.Value{protocol.BoolValue(true), protocol.BoolValue(false), protocol.Int32Value(math.MinInt32), f32(0)},
			[]string{"true", "false", "-2147483648", "0"}},
		5: {[]protocol.Value{f32(math.MaxFloat32), f32(math.SmallestNonzeroFloat32), f32(1234567.8), f32(-2.5e-3)},
			[]string{"3.402823e+38", "1.401298e-45", "1234568", "-0.0025"}},
	}
	// The second round reads the journal compacted in the new form.
	for round := 0; round < 2; round++ {
		j, st, err := openJournal(dir, "line1")
		if err != nil {
			t.Fatal(err)
		}
		j.close()
		recs := append(slices.Clone(st.pending), st.unmailed...)
		if len(recs) != len(want) {
			t.Fatalf("round %d: %d pending and unmailed events, want %d", round, len(recs), len(want))
		}
		for _, r := range recs {
			w := want[r.Seq]
			if !slices.Equal(r.Values, w.vals) {
				t.Errorf("round %d: seq %d: values %v, want %v", round, r.Seq, r.Values, w.vals)
			}
			var printed []string
			for _, v := range templateValues(r.Values) {
				printed = append(printed, v.String())
			}
			if !slices.Equal(printed, w.printed) {
				t.Errorf("round %d: seq %d: printed %q, want %q", round, r.Seq, printed, w.printed)
			}
		}
	}
	compacted, err := os.ReadFile(filepath.Join(dir, "line1.journal"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(compacted), `"vals":["f32:87.5","i32:-3"]`) {
		t.Errorf("compacted journal not in the text form:\n%s", compacted)
	}
}

// TestJournalValuesRoundTrip: the text form keeps what JSON numbers cannot
// (infinities, NaN), so such an event is journaled and ACKed like any other.
func TestJournalValuesRoundTrip(t *testing.T) {
	in := values{protocol.Float32Value(float32(math.Inf(1))), protocol.Float32Value(float32(math.Inf(-1))),
		protocol.Float32Value(float32(math.NaN())), protocol.Float32Value(-1.5), protocol.Uint32Value(7), protocol.BoolValue(true)}
	b, err := json.Marshal(record{T: "ev", Values: in})
	if err != nil {
		t.Fatal(err)
	}
	var out record
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if len(out.Values) != len(in) {
		t.Fatalf("%s: %d values back", b, len(out.Values))
	}
	for i := range in {
		if in[i].Kind != out.Values[i].Kind || in[i].String() != out.Values[i].String() {
			t.Errorf("value %d: %v back as %v", i, in[i], out.Values[i])
		}
	}
}

func TestDiffActive(t *testing.T) {
	type aa = activeAlarm
	tests := []struct {
		name            string
		before, now     map[int]string
		complete        bool
		raised, cleared []activeAlarm
	}{
		{"nothing", nil, nil, true, nil, nil},
		{"same", map[int]string{17: "alarm"}, map[int]string{17: "alarm"}, true, nil, nil},
		// A known alarm is not raised again, whatever its severity now.
		{"severity changed", map[int]string{17: "alarm"}, map[int]string{17: "critical"}, true, nil, nil},
		{"raised unheard", map[int]string{17: "alarm"}, map[int]string{17: "alarm", 19: "critical", 3: "info"}, true,
			[]aa{{3, "info"}, {19, "critical"}}, nil},
		{"cleared unheard", map[int]string{17: "alarm", 18: "warning", 2: "alarm"}, map[int]string{17: "alarm"}, true,
			nil, []aa{{2, "alarm"}, {18, "warning"}}},
		{"both", map[int]string{17: "alarm", 18: "alarm"}, map[int]string{17: "alarm", 19: "critical"}, true,
			[]aa{{19, "critical"}}, []aa{{18, "alarm"}}},
		// A partial snapshot raises, but never clears.
		{"partial", map[int]string{17: "alarm", 18: "alarm"}, map[int]string{19: "critical"}, false,
			[]aa{{19, "critical"}}, nil},
		{"first hello", nil, map[int]string{5: "alarm"}, true, []aa{{5, "alarm"}}, nil},
		{"all cleared", map[int]string{5: "alarm"}, map[int]string{}, true, nil, []aa{{5, "alarm"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raised, cleared := diffActive(tt.before, tt.now, tt.complete)
			if !slices.Equal(raised, tt.raised) || !slices.Equal(cleared, tt.cleared) {
				t.Errorf("raised %v cleared %v, want %v and %v", raised, cleared, tt.raised, tt.cleared)
			}
		})
	}
}

// TestInfiniteValueMailed: an event with an infinite float is journaled,
// ACKed and mailed (JSON numbers cannot hold it: the journal's first form
// refused the append, and the PLC got NAK busy for ever).
func TestInfiniteValueMailed(t *testing.T) {
	g, p := startHello(t, testOpts{}, 3)
	p.expectAck(p.event(17, protocol.EventRaise, "overflow", protocol.Float32Value(float32(math.Inf(1)))), protocol.AckQueued)
	if msgs := g.waitMails(1); !strings.Contains(msgs[0].Body, "Pressure +Inf bar.") {
		t.Errorf("body %q", msgs[0].Body)
	}
}

// TestJournalKeepsFeatures: the features of the current boot's HELLO
// (SPEC §3.1) survive a gateway restart, in appended hello records and in
// the compacted snap; a journal from before they were kept loads with 0,
// and a new boot starts without them until its HELLO.
func TestJournalKeepsFeatures(t *testing.T) {
	up := uint32(1)
	tests := []struct {
		name    string
		records []record
		want    uint8
	}{
		{"hello with features", []record{{T: "hello", Boot: 5, Seq: 1, New: true, HelloUp: &up, Features: protocol.FeatureVia}}, protocol.FeatureVia},
		{"hello without features", []record{{T: "hello", Boot: 5, Seq: 1, New: true, HelloUp: &up}}, 0},
		{"resync hello replaces them", []record{
			{T: "hello", Boot: 5, Seq: 1, New: true, HelloUp: &up, Features: protocol.FeatureVia},
			{T: "hello", Boot: 5, Seq: 2, HelloUp: &up},
		}, 0},
		{"events keep them", []record{
			{T: "hello", Boot: 5, Seq: 1, New: true, HelloUp: &up, Features: protocol.FeatureVia},
			{T: "ev", Boot: 5, Seq: 2, Code: 17, Event: "raise", Sev: "alarm"},
		}, protocol.FeatureVia},
		{"a new boot by an event has none", []record{
			{T: "hello", Boot: 5, Seq: 1, New: true, HelloUp: &up, Features: protocol.FeatureVia},
			{T: "ev", Boot: 6, Seq: 1, Code: 17, Event: "raise", Sev: "alarm"},
		}, 0},
		{"a new boot's hello has its own", []record{
			{T: "hello", Boot: 5, Seq: 1, New: true, HelloUp: &up, Features: protocol.FeatureVia},
			{T: "hello", Boot: 6, Seq: 1, New: true, HelloUp: &up},
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			j, st, err := openJournal(dir, "l")
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.records {
				if err := j.append(&tt.records[i]); err != nil {
					t.Fatal(err)
				}
				st.apply(&tt.records[i])
			}
			if st.features != tt.want {
				t.Fatalf("live state: features %#x, want %#x", st.features, tt.want)
			}
			j.close()
			// Reopening replays the appended records and compacts them
			// into a snap; opening again reads that snap.
			for _, when := range []string{"replayed", "from the snap"} {
				j, st, err = openJournal(dir, "l")
				if err != nil {
					t.Fatal(err)
				}
				j.close()
				if st.features != tt.want {
					t.Fatalf("%s: features %#x, want %#x", when, st.features, tt.want)
				}
			}
		})
	}
	// A journal written before features were kept: a hello and a snap
	// without "f".
	for _, line := range []string{
		`{"t":"hello","b":5,"s":1,"a":{"17":"alarm"},"new":true,"u":1,"hu":1}`,
		`{"t":"snap","b":5,"a":{"17":"alarm"},"seen":[[1,1]],"hs":1,"hu":1}`,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "l.journal"), []byte(line+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		j, st, err := openJournal(dir, "l")
		if err != nil {
			t.Fatal(err)
		}
		j.close()
		if st.Boot != 5 || st.Active[17] != "alarm" || st.features != 0 {
			t.Errorf("%s: boot %d active %v features %#x, want boot 5, 17 active, features 0", line, st.Boot, st.Active, st.features)
		}
	}
}

// TestJournalRemovesCrashTemps: a crash in the middle of a rewrite leaves
// its temp file beside the journal; the next open removes the link's own
// leftovers (and those of versions that used one name for every link) and
// keeps the journal and other links' files. They used to pile up.
func TestJournalRemovesCrashTemps(t *testing.T) {
	dir := t.TempDir()
	j, st, err := openJournal(dir, "l")
	if err != nil {
		t.Fatal(err)
	}
	r := record{T: "hello", Boot: 7, Seq: 1}
	if err := j.append(&r); err != nil {
		t.Fatal(err)
	}
	st.apply(&r)
	j.close()
	files := map[string]bool{ // name -> kept
		".l.journal-123456": false, // this link's rewrite, cut off
		".journal-987654":   false, // a rewrite by an older version
		".l2.journal-55":    true,  // another link's (l2 opens its own)
		"l2.journal":        true,
		".l.journal-x":      true, // not a name CreateTemp makes
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(`{"t":"hello","b":99,"s":1}`+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	j2, st2, err := openJournal(dir, "l")
	if err != nil {
		t.Fatal(err)
	}
	j2.close()
	if st2.Boot != 7 {
		t.Errorf("journal state boot %d, want 7", st2.Boot)
	}
	for name, kept := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if exists := err == nil; exists != kept {
			t.Errorf("%s: exists %v, want %v", name, exists, kept)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".l.journal-*"))
	if len(left) != 1 { // only the one CreateTemp cannot have made
		t.Errorf("temp files left: %v", left)
	}
}
