package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/plcmail/plcmail/durable"
	"github.com/plcmail/plcmail/protocol"
)

// The link journal is the write-ahead log of a link. It lives in
// SPOOL/links/NAME.journal, one JSON record per line:
//
//	ev        an EVENT the gateway accepted, with everything needed to mail
//	          it: appended and fsynced BEFORE the ACK goes out. held == ""
//	          means "to be mailed on its own" (an unmailed entry until its
//	          mailed record), otherwise it is a pending digest entry.
//	mailed    the alarm mail of ev (boot, seq) is in the spool
//	mailfail  ev (boot, seq) could not be rendered; it moves to the digest
//	flushed   the first n pending digest entries are in a queued digest mail
//	hello     a HELLO was accepted; the active-alarm set after reconciliation.
//	          new: it opened a new boot (SPEC §4 rule 4), also one whose
//	          id repeats; records before that flag existed open a new boot
//	          when their boot id differs from the current one. f: the
//	          HELLO's features byte (SPEC §3.1), absent when 0; kept (also
//	          in snap) so that a PLC that announced via still gets channel
//	          DELIVERYs after a gateway restart. Journals from before it
//	          was kept give 0: no channel DELIVERYs until the PLC's next
//	          HELLO
//	offline   the "PLC offline" notice is queued; online: "back online"
//	snap      the folded state, written by compaction, followed by pend
//	          (pending digest entry) and unmailed records
//
// A boot is (boot id, generation): the generation is 0 the first time an
// id opens a boot on this link and counts up when an id repeats (EEPROM
// erased, board swapped), so that the repeated boot's mails get spool keys
// of their own (eventKey). ev and hello records carry it (g); records
// without it are of generation 0.
//
// Why a write-ahead log: an ACK must wait only for one appended line and one
// fsync (~0.2 ms here) instead of a spool file (create, write, fsync, rename,
// fsync the directory: 3-4 times as long, and much longer under I/O load).
// The mail is queued right after the ACK. Crash safety follows from the
// order of writes and from deterministic spool keys:
//
//   - ev is durable before the ACK; after a crash, every unmailed ev is
//     queued again at start-up under its key "link/boot/seq", and the spool
//     answers spool.ErrDuplicate if it got there before the crash. So a
//     "mailed" record needs no fsync of its own.
//   - a retransmitted frame whose ev is in the journal is ACKed as a
//     duplicate; one whose ev is not was never ACKed and never queued.
//   - a digest is queued (key derived from its first entry) before its
//     flushed record, so a digest replayed after a crash is a duplicate.
//   - a torn last line (power loss during an append) is ignored: its frame
//     was never ACKed, the PLC sends it again.
//
// The journal is compacted (rewritten as snap + pend/unmailed records, temp
// file, fsync, rename) when it is opened, when a HELLO opens a new boot and
// when it grows beyond compactBytes.
type journal struct {
	path string
	// tempPattern names the temp files of a rewrite (journalTempPrefix).
	tempPattern string
	f           *os.File
	size        int64
}

const compactBytes = 4 << 20

type record struct {
	T    string `json:"t"`
	Boot uint32 `json:"b,omitempty"`
	Gen  uint32 `json:"g,omitempty"` // generation of Boot (ev, pend, unmailed, hello, snap)
	Seq  uint32 `json:"s,omitempty"`

	// ev, pend
	Code   int       `json:"c,omitempty"`
	Event  string    `json:"e,omitempty"`
	Sev    string    `json:"v,omitempty"`
	Text   string    `json:"x,omitempty"`
	Values values    `json:"vals,omitempty"`
	Uptime int64     `json:"u,omitempty"` // seconds
	At     time.Time `json:"at,omitzero"`
	Held   string    `json:"h,omitempty"` // reason the event went to the digest

	N int `json:"n,omitempty"` // flushed

	Active map[int]string `json:"a,omitempty"` // hello, snap: code -> severity

	Seen    [][2]uint32 `json:"seen,omitempty"` // snap: seq ranges of Boot
	Offline bool        `json:"off,omitempty"`  // snap

	New      bool        `json:"new,omitempty"` // hello: opened a new boot
	Features uint8       `json:"f,omitempty"`   // hello, snap: features of the boot's last HELLO
	HelloUp  *uint32     `json:"hu,omitempty"`  // hello, snap: uptime of the boot's last HELLO
	HelloSeq uint32      `json:"hs,omitempty"`  // snap: seq of the boot's last HELLO
	Top      uint32      `json:"top,omitempty"` // snap: uptime of the highest seq of Boot
	Old      []oldBoot   `json:"old,omitempty"` // snap: earlier boots, newest first
	IDs      [][2]uint32 `json:"ids,omitempty"` // snap: every boot id that opened a boot (ranges)
	LastGen  uint32      `json:"lg,omitempty"`  // snap: highest generation handed out
}

// oldBoot is what the link keeps of an earlier boot: enough to answer its
// late frames (SPEC §4 rule 4) without switching back to it.
type oldBoot struct {
	Boot     uint32      `json:"b"`
	Gen      uint32      `json:"g,omitempty"`
	Seen     [][2]uint32 `json:"seen,omitempty"`
	HelloSeq uint32      `json:"hs,omitempty"`
	HelloUp  *uint32     `json:"hu,omitempty"`
}

// maxOldBoots bounds the earlier boots a link remembers: late frames come
// from the boot just before, seldom from further back.
const maxOldBoots = 4

// values are an event's typed values, written as the protocol's text form
// ["f32:87.5","i32:-3"], which gives every float32 back bit for bit (NaN
// and infinities too, which JSON numbers cannot hold).
type values []protocol.Value

// UnmarshalJSON reads the text form, and also the form journals had before
// it (see v1Value), so that events journaled before an upgrade are still
// mailed after it.
func (vs *values) UnmarshalJSON(b []byte) error {
	var text []protocol.Value
	textErr := json.Unmarshal(b, &text)
	if textErr == nil {
		*vs = text
		return nil
	}
	var v1 []v1Value
	if err := json.Unmarshal(b, &v1); err != nil {
		return textErr
	}
	out := make(values, 0, len(v1))
	for _, v := range v1 {
		pv, err := v.value()
		if err != nil {
			return err
		}
		out = append(out, pv)
	}
	*vs = out
	return nil
}

// v1Value is a value as journals held it until the bridge stopped
// persisting the templates' type: {"Kind":"float32","Int":0,"Uint":0,
// "F":87.5,"Bool":false}. Kind was one of the four below: the decoder
// refuses frames with other kinds.
type v1Value struct {
	Kind string
	Int  int64
	Uint uint64
	F    float64
	Bool bool
}

func (v v1Value) value() (protocol.Value, error) {
	switch v.Kind {
	case "int32":
		return protocol.Int32Value(int32(v.Int)), nil
	case "uint32":
		return protocol.Uint32Value(uint32(v.Uint)), nil
	case "float32":
		return protocol.Float32Value(float32(v.F)), nil // F held a float32 exactly
	case "bool":
		return protocol.BoolValue(v.Bool), nil
	}
	return protocol.Value{}, fmt.Errorf("journal: value of unknown kind %q", v.Kind)
}

// linkState is the journal folded into what the link needs.
type linkState struct {
	Boot     uint32 // the current boot; 0: none yet
	Gen      uint32 // its generation
	Active   map[int]string
	seen     seqSet    // seqs of Boot that were accepted
	helloSeq uint32    // seq of Boot's last accepted HELLO; 0: none known
	helloUp  *uint32   // its uptime; nil: not known (journals before it was kept)
	features uint8     // its features byte (SPEC §3.1); 0: none (see the hello record)
	top      uint32    // uptime of the highest seq of Boot accepted
	old      []oldBoot // earlier boots, newest first
	ids      seqSet    // boot ids that opened a boot on this link
	lastGen  uint32    // highest generation handed out
	pending  []record  // held for the digest, oldest first
	unmailed []record  // to be mailed on their own, not yet in the spool
	Offline  bool
}

func newLinkState() *linkState {
	return &linkState{Active: map[int]string{}}
}

// openBoot makes (boot, gen) the current boot; the one before becomes an
// old boot. An old boot of the same id is forgotten: its late frames can no
// longer be told from the new boot's.
func (s *linkState) openBoot(boot, gen uint32) {
	old := s.old
	if s.Boot != 0 {
		old = append([]oldBoot{{Boot: s.Boot, Gen: s.Gen, Seen: s.seen.r, HelloSeq: s.helloSeq, HelloUp: s.helloUp}}, old...)
	}
	old = slices.DeleteFunc(old, func(o oldBoot) bool { return o.Boot == boot })
	s.old = old[:min(len(old), maxOldBoots)]
	s.Boot, s.Gen = boot, gen
	s.seen, s.helloSeq, s.helloUp, s.top, s.features = seqSet{}, 0, nil, 0, 0
	s.ids.add(boot)
	s.lastGen = max(s.lastGen, gen)
}

// genFor returns the generation a new boot of id boot gets.
func (s *linkState) genFor(boot uint32) uint32 {
	if s.ids.has(boot) {
		return s.lastGen + 1
	}
	return 0
}

// oldBoot returns the earlier boot of id boot, or nil.
func (s *linkState) oldBoot(boot uint32) *oldBoot {
	for i := range s.old {
		if s.old[i].Boot == boot {
			return &s.old[i]
		}
	}
	return nil
}

// accepted records seq of the current boot, built at uptime.
func (s *linkState) accepted(seq, uptime uint32) {
	if seq >= s.seen.max() {
		s.top = uptime
	}
	s.seen.add(seq)
}

// helloKind is what a HELLO means to the link (SPEC §4 rule 4).
type helloKind int

const (
	helloDuplicate helloKind = iota // a retransmission of an accepted HELLO
	helloResync                     // the current boot goes on
	helloNewBoot                    // a new boot, maybe with a repeated id
)

// classifyHello applies SPEC §4 rule 4. A sender retransmits the same
// bytes and builds no frame after a HELLO until that HELLO is ACKed, and
// its uptime never goes back within a boot. So a HELLO is a retransmission
// only if it has the key and uptime of the last accepted HELLO of its boot
// and nothing later of that boot was accepted; it continues the current
// boot only if it comes after everything accepted, uptime included; any
// other HELLO means the PLC restarted, whatever its boot id.
func (s *linkState) classifyHello(boot, seq, uptime uint32) helloKind {
	if boot == s.Boot {
		if isRetransmission(s.seen, s.helloSeq, s.helloUp, seq, uptime) {
			return helloDuplicate
		}
		if !s.seen.has(seq) && seq > s.seen.max() && uptime >= s.top {
			return helloResync
		}
		return helloNewBoot
	}
	if o := s.oldBoot(boot); o != nil && isRetransmission(seqSet{r: o.Seen}, o.HelloSeq, o.HelloUp, seq, uptime) {
		return helloDuplicate
	}
	return helloNewBoot
}

// isRetransmission reports whether HELLO (seq, uptime) repeats the last
// HELLO (helloSeq, helloUp) of a boot that accepted seen. Journals from
// before helloSeq was kept know only that seq was the boot's last.
func isRetransmission(seen seqSet, helloSeq uint32, helloUp *uint32, seq, uptime uint32) bool {
	if !seen.has(seq) || seen.max() != seq {
		return false
	}
	if helloSeq == 0 {
		return true
	}
	return helloSeq == seq && (helloUp == nil || *helloUp == uptime)
}

func (s *linkState) apply(r *record) {
	switch r.T {
	case "ev":
		if r.Boot != s.Boot || r.Gen != s.Gen {
			if o := s.oldBoot(r.Boot); o != nil && o.Gen == r.Gen {
				// A late event of an earlier boot: mailed, but the HELLO of
				// the current boot says what is active now.
				set := seqSet{r: o.Seen}
				set.add(r.Seq)
				o.Seen = set.r
				s.queue(r)
				return
			}
			s.openBoot(r.Boot, r.Gen) // a new boot without HELLO
		}
		s.accepted(r.Seq, uint32(r.Uptime))
		switch r.Event {
		case "raise":
			s.Active[r.Code] = r.Sev
		case "clear":
			delete(s.Active, r.Code)
		}
		s.queue(r)
	case "pend":
		s.pending = append(s.pending, *r)
	case "unmailed":
		s.unmailed = append(s.unmailed, *r)
	case "mailed", "mailfail":
		for i := range s.unmailed {
			if u := &s.unmailed[i]; u.Boot == r.Boot && u.Gen == r.Gen && u.Seq == r.Seq {
				if r.T == "mailfail" {
					u.Held = r.Held
					s.pending = append(s.pending, *u)
				}
				s.unmailed = slices.Delete(s.unmailed, i, i+1)
				break
			}
		}
	case "flushed":
		s.pending = s.pending[min(r.N, len(s.pending)):]
	case "hello":
		if r.New || r.Boot != s.Boot || r.Gen != s.Gen {
			s.openBoot(r.Boot, r.Gen)
		}
		s.accepted(r.Seq, uint32(r.Uptime))
		s.helloSeq, s.helloUp, s.features = r.Seq, r.HelloUp, r.Features
		s.Active = maps(r.Active)
	case "offline":
		s.Offline = true
	case "online":
		s.Offline = false
	case "snap":
		s.Boot, s.Gen = r.Boot, r.Gen
		s.Active = maps(r.Active)
		s.seen = seqSet{r: slices.Clone(r.Seen)}
		s.helloSeq, s.helloUp, s.top, s.features = r.HelloSeq, r.HelloUp, r.Top, r.Features
		s.old = slices.Clone(r.Old)
		s.ids = seqSet{r: slices.Clone(r.IDs)}
		s.lastGen = r.LastGen
		if r.IDs == nil && r.Boot != 0 {
			// A journal from before ids were kept: the firmware counts boot
			// ids up from 1, so take every id up to the current one as used
			// (a repeated id then gets spool keys of its own).
			s.ids.r = [][2]uint32{{1, r.Boot}}
		}
		s.pending, s.unmailed = nil, nil
		s.Offline = r.Offline
	}
}

// queue files the accepted event r as pending (held for the digest) or
// unmailed.
func (s *linkState) queue(r *record) {
	if r.Held != "" {
		s.pending = append(s.pending, *r)
	} else {
		s.unmailed = append(s.unmailed, *r)
	}
}

func maps(m map[int]string) map[int]string {
	out := make(map[int]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// snapshot returns the records that recreate s.
func (s *linkState) snapshot() []record {
	recs := []record{{T: "snap", Boot: s.Boot, Gen: s.Gen, Active: s.Active, Seen: s.seen.r, Offline: s.Offline,
		HelloSeq: s.helloSeq, HelloUp: s.helloUp, Top: s.top, Features: s.features, Old: s.old, IDs: s.ids.r, LastGen: s.lastGen}}
	for _, p := range s.pending {
		p.T = "pend"
		recs = append(recs, p)
	}
	for _, u := range s.unmailed {
		u.T = "unmailed"
		recs = append(recs, u)
	}
	return recs
}

// journalTempPrefix starts the names of a link's temp files while its
// journal is rewritten: one prefix per link, so that a link removes only
// its own leftovers.
func journalTempPrefix(name string) string { return "." + name + ".journal-" }

// removeJournalTemps removes the temp files a crash during a rewrite of
// name's journal left in dir (its rename never happened, so they hold
// nothing the journal lacks), and those of versions that named them
// ".journal-N" for every link. It runs before the link's first rewrite,
// while no other link runs: the Bridge opens every journal before it
// starts a link.
func removeJournalTemps(dir, name string) {
	own := regexp.MustCompile(`^` + regexp.QuoteMeta(journalTempPrefix(name)) + `[0-9]+$|^\.journal-[0-9]+$`)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // openJournal reports what matters: the journal itself
	}
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), ".") && own.MatchString(e.Name()) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// openJournal loads dir/name.journal (creating it) and compacts it.
func openJournal(dir, name string) (*journal, *linkState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	j := &journal{path: filepath.Join(dir, name+".journal"), tempPattern: journalTempPrefix(name) + "*"}
	removeJournalTemps(dir, name)
	st := newLinkState()
	data, err := os.ReadFile(j.path)
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // torn last line after a crash: its frame was never ACKed
		}
		st.apply(&r)
	}
	if err := j.rewrite(st); err != nil {
		return nil, nil, err
	}
	return j, st, nil
}

// append writes r and fsyncs before returning: the caller ACKs after it.
func (j *journal) append(r *record) error { return j.write(r, true) }

// appendNoSync writes r without waiting for the disk, for records whose
// loss replay repairs (see the journal comment).
func (j *journal) appendNoSync(r *record) error { return j.write(r, false) }

func (j *journal) write(r *record, sync bool) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	n, err := j.f.Write(b)
	j.size += int64(n)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if !sync {
		return nil
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// rewrite replaces the journal with st's snapshot atomically
// (durable.WriteFile).
func (j *journal) rewrite(st *linkState) error {
	var buf bytes.Buffer
	for _, r := range st.snapshot() {
		b, err := json.Marshal(&r)
		if err != nil {
			return err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	// The directory fsync is apart from WriteFile (NoDirSync) and best
	// effort: once the rename is done the old file has no name, so j.f
	// must be reopened on the new one whatever the fsync says, or later
	// appends would go to a file no name leads to.
	err := durable.WriteFile(j.path, buf.Bytes(), durable.Options{TempPattern: j.tempPattern, NoDirSync: true})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	durable.SyncDir(filepath.Dir(j.path))
	if j.f != nil {
		j.f.Close()
	}
	j.f, err = os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.size = int64(buf.Len())
	return nil
}

func (j *journal) close() error {
	if j.f == nil {
		return nil
	}
	return j.f.Close()
}

// seqSet is a set of sequence numbers kept as sorted, disjoint, non-adjacent
// ranges. A PLC numbers its frames 1, 2, 3, ... and the gateway accepts
// them nearly in order, so a boot's worth of frames is one or two ranges
// however long the PLC runs.
type seqSet struct{ r [][2]uint32 }

// find returns the index of the first range whose end is >= q.
func (s *seqSet) find(q uint32) int {
	i, _ := slices.BinarySearchFunc(s.r, q, func(rg [2]uint32, q uint32) int {
		if rg[1] < q {
			return -1
		}
		return 1
	})
	return i
}

// max returns the highest seq in s, 0 when s is empty.
func (s *seqSet) max() uint32 {
	if len(s.r) == 0 {
		return 0
	}
	return s.r[len(s.r)-1][1]
}

func (s *seqSet) has(q uint32) bool {
	i := s.find(q)
	return i < len(s.r) && s.r[i][0] <= q
}

func (s *seqSet) add(q uint32) {
	i := s.find(q)
	if i < len(s.r) && s.r[i][0] <= q {
		return
	}
	joinPrev := i > 0 && s.r[i-1][1] != ^uint32(0) && s.r[i-1][1]+1 == q
	joinNext := i < len(s.r) && q != ^uint32(0) && s.r[i][0] == q+1
	switch {
	case joinPrev && joinNext:
		s.r[i-1][1] = s.r[i][1]
		s.r = slices.Delete(s.r, i, i+1)
	case joinPrev:
		s.r[i-1][1] = q
	case joinNext:
		s.r[i][0] = q
	default:
		s.r = slices.Insert(s.r, i, [2]uint32{q, q})
	}
}
