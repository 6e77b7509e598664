package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/plcmail/plcmail/mailer"
)

// The link journal is what a link must remember across gateway restarts
// beyond the spool itself. It lives in SPOOL/links/NAME.journal, one JSON
// record per line, appended and fsynced before the frame it describes is
// ACKed:
//
//	ev       an EVENT the gateway accepted: its key (boot, seq) for duplicate
//	         detection, its effect on the active-alarm set, and, when flood
//	         control held it back (held != ""), the whole event, which is then
//	         a pending digest entry
//	flushed  the first n pending entries are in a queued digest mail
//	hello    a HELLO was accepted; the active-alarm set after reconciliation
//	offline  the "PLC offline" notice is queued; online: the "back online" one
//	snap     the folded state, written by compaction; pend: a pending entry
//	         carried over by compaction
//
// Why a journal instead of only the spool's idempotency keys: an event held
// for a digest is ACKed before any mail exists, so the spool knows nothing of
// it. Appending one line and fsyncing it costs ~0.2 ms, far less than a spool
// file (create, fsync, rename, fsync directory). Crash safety follows from the
// order of writes: a mail is enqueued (durably, with a deterministic key)
// before the journal records it, so replaying after a crash either finds the
// record or gets mailer.ErrDuplicate from the spool; a digest is enqueued
// before its "flushed" record, with a key derived from its first entry, so a
// replayed digest is a duplicate too. A torn last line (power loss during an
// append) is ignored: its frame was never ACKed, the PLC sends it again.
//
// The journal is compacted (rewritten as snap + pend records, temp file,
// fsync, rename) when it is opened, when the PLC's boot id changes and when
// it grows beyond compactBytes.
type journal struct {
	path string
	f    *os.File
	size int64
}

const compactBytes = 4 << 20

type record struct {
	T    string `json:"t"`
	Boot uint32 `json:"b,omitempty"`
	Seq  uint32 `json:"s,omitempty"`

	// ev, pend
	Code   int            `json:"c,omitempty"`
	Event  string         `json:"e,omitempty"`
	Sev    string         `json:"v,omitempty"`
	Text   string         `json:"x,omitempty"`
	Values []mailer.Value `json:"vals,omitempty"`
	Uptime int64          `json:"u,omitempty"` // seconds
	At     time.Time      `json:"at,omitzero"`
	Held   string         `json:"h,omitempty"` // reason the event went to the digest

	N int `json:"n,omitempty"` // flushed

	Active map[int]string `json:"a,omitempty"` // hello, snap: code -> severity

	Seen    [][2]uint32 `json:"seen,omitempty"` // snap: seq ranges of Boot
	Offline bool        `json:"off,omitempty"`  // snap
}

// linkState is the journal folded into what the link needs.
type linkState struct {
	Boot    uint32
	Active  map[int]string
	seen    map[uint32]bool // seqs of Boot that were accepted
	pending []record
	Offline bool
}

func newLinkState() *linkState {
	return &linkState{Active: map[int]string{}, seen: map[uint32]bool{}}
}

func (s *linkState) setBoot(boot uint32) {
	if boot != s.Boot {
		s.Boot = boot
		s.seen = map[uint32]bool{}
	}
}

func (s *linkState) apply(r *record) {
	switch r.T {
	case "ev":
		s.setBoot(r.Boot)
		s.seen[r.Seq] = true
		switch r.Event {
		case "raise":
			s.Active[r.Code] = r.Sev
		case "clear":
			delete(s.Active, r.Code)
		}
		if r.Held != "" {
			s.pending = append(s.pending, *r)
		}
	case "pend":
		s.pending = append(s.pending, *r)
	case "flushed":
		s.pending = s.pending[min(r.N, len(s.pending)):]
	case "hello":
		s.setBoot(r.Boot)
		s.seen[r.Seq] = true
		s.Active = maps(r.Active)
	case "offline":
		s.Offline = true
	case "online":
		s.Offline = false
	case "snap":
		s.Boot = r.Boot
		s.Active = maps(r.Active)
		s.seen = map[uint32]bool{}
		for _, rg := range r.Seen {
			for q := rg[0]; ; q++ {
				s.seen[q] = true
				if q == rg[1] {
					break
				}
			}
		}
		s.pending = nil
		s.Offline = r.Offline
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
	seqs := make([]uint32, 0, len(s.seen))
	for q := range s.seen {
		seqs = append(seqs, q)
	}
	slices.Sort(seqs)
	var ranges [][2]uint32
	for _, q := range seqs {
		if n := len(ranges); n > 0 && ranges[n-1][1]+1 == q {
			ranges[n-1][1] = q
		} else {
			ranges = append(ranges, [2]uint32{q, q})
		}
	}
	recs := []record{{T: "snap", Boot: s.Boot, Active: s.Active, Seen: ranges, Offline: s.Offline}}
	for _, p := range s.pending {
		p.T = "pend"
		recs = append(recs, p)
	}
	return recs
}

// openJournal loads dir/name.journal (creating it) and compacts it.
func openJournal(dir, name string) (*journal, *linkState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	j := &journal{path: filepath.Join(dir, name+".journal")}
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
func (j *journal) append(r *record) error {
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
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// rewrite replaces the journal with st's snapshot atomically.
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
	dir := filepath.Dir(j.path)
	tmp, err := os.CreateTemp(dir, ".journal-*")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, err = tmp.Write(buf.Bytes())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), j.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("journal: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
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
