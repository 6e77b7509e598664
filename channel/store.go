package channel

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/plcmail/plcmail/durable"
)

// Record states.
const (
	StateQueued    = "queued"
	StateDelivered = "delivered"
	StateDead      = "dead"
)

// Record is one delivery of one alarm over one channel, the JSON file
// SPOOL/channels/ID.
type Record struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	// Rule is the rule that sent the alarm: severity, not_accepted or
	// upstream_failing.
	Rule string `json:"rule"`
	// IdempotencyKey goes with every attempt (Idempotency-Key, "id").
	IdempotencyKey string    `json:"idempotency_key"`
	Alarm          Alarm     `json:"alarm"`
	Created        time.Time `json:"created"`
	State          string    `json:"state"`
	Attempts       int       `json:"attempts"`
	NextAttempt    time.Time `json:"next_attempt"`
	LastError      string    `json:"last_error,omitempty"`
	Done           time.Time `json:"done,omitzero"`
	Code           int       `json:"code,omitempty"` // HTTP status of the final answer
}

// dirChannels is the records' directory below the spool directory.
const dirChannels = "channels"

// tmpPrefix marks files being written; left over from a crash, they are
// removed at open.
const tmpPrefix = ".tmp-"

// recordID names the record of the alarm with spool key key on a channel:
// the same alarm and channel always give the same file.
func recordID(channel, key string) string {
	h := sha256.Sum256([]byte(channel + "\x00" + key))
	return hex.EncodeToString(h[:16])
}

// idempotencyKey is what the receiver sees of the same pair, with the
// gateway's name so that two gateways never share a key, and the spool's
// instance so that a spool made anew (a new SD card, a removed spool
// directory), whose sources count their keys from 1 again, never gives a
// new alarm the key of an old one, which a receiver that drops repeats
// would drop.
func idempotencyKey(instance, host, channel, key string) string {
	h := sha256.Sum256([]byte(instance + "\x00" + host + "\x00" + channel + "\x00" + key))
	return "plcmail-" + hex.EncodeToString(h[:16])
}

// instanceFile holds the spool's random instance, made once.
const instanceFile = ".instance"

// loadInstance returns the instance of the store's spool, making it
// durably on first use: a record's key must not change across restarts.
func (s *store) loadInstance() (string, error) {
	p := filepath.Join(s.dir, instanceFile)
	if b, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(b)) == 32 {
		return string(bytes.TrimSpace(b)), nil
	}
	var r [16]byte
	rand.Read(r[:])
	// A torn or empty file from an older crash is replaced; CreateNew
	// would keep it.
	if err := durable.WriteFile(p, []byte(hex.EncodeToString(r[:])+"\n"), durable.Options{TempPattern: tmpPrefix}); err != nil {
		return "", err
	}
	return hex.EncodeToString(r[:]), nil
}

// store keeps the records on disk and in memory. Only the process that
// delivers from the spool (serve, which holds its delivery lock) writes it.
type store struct {
	dir      string
	log      *slog.Logger
	instance string // loadInstance

	mu   sync.Mutex
	recs map[string]Record
	cmu  sync.Mutex // serialises create's check and link
}

func openStore(spoolDir string, log *slog.Logger) (*store, error) {
	dir := filepath.Join(spoolDir, dirChannels)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	s := &store{dir: dir, log: log, recs: map[string]Record{}}
	var err error
	if s.instance, err = s.loadInstance(); err != nil {
		return nil, fmt.Errorf("channel: instance: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			os.Remove(p) // a write cut short; its record was never linked
			continue
		case strings.HasSuffix(name, ".corrupt"), name == instanceFile:
			continue
		}
		b, err := os.ReadFile(p)
		var r Record
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err == nil && r.ID != name {
			err = fmt.Errorf("id %q in file %s", r.ID, name)
		}
		if err != nil {
			log.Error("unreadable channel record moved aside", "file", p, "err", err)
			os.Rename(p, p+".corrupt")
			continue
		}
		s.recs[r.ID] = r
	}
	return s, nil
}

func (s *store) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.recs[id]
	return ok
}

// create writes r durably unless a record of its id exists; it reports
// whether it wrote it. The file is complete and fsynced before its name
// appears, and the directory is fsynced before create returns
// (durable.CreateNew: it links, so it never replaces a record on disk).
func (s *store) create(r *Record) (bool, error) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.has(r.ID) {
		return false, nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	err = durable.CreateNew(filepath.Join(s.dir, r.ID), b, durable.Options{TempPattern: tmpPrefix})
	if errors.Is(err, fs.ErrExist) {
		// Written by a run that crashed before its directory fsync showed
		// in our scan: it is there, so it counts.
		return false, s.reload(r.ID)
	}
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.recs[r.ID] = *r
	s.mu.Unlock()
	return true, nil
}

func (s *store) reload(id string) error {
	b, err := os.ReadFile(filepath.Join(s.dir, id))
	if err != nil {
		return err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return err
	}
	s.mu.Lock()
	s.recs[id] = r
	s.mu.Unlock()
	return nil
}

// update replaces r's file (temp file, fsync, rename: durable.WriteFile);
// final also fsyncs the directory, for a final state.
func (s *store) update(r *Record, final bool) error {
	s.mu.Lock()
	s.recs[r.ID] = *r
	s.mu.Unlock()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(s.dir, r.ID), b, durable.Options{TempPattern: tmpPrefix, NoDirSync: !final})
}

// pending returns copies of the channel's queued records, oldest first.
func (s *store) pending(channel string) []*Record {
	s.mu.Lock()
	var out []*Record
	for _, r := range s.recs {
		if r.Channel == channel && r.State == StateQueued {
			out = append(out, &r)
		}
	}
	s.mu.Unlock()
	sortRecords(out)
	return out
}

// queued counts the records not yet final, per channel.
func (s *store) queued() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, r := range s.recs {
		if r.State == StateQueued {
			out[r.Channel]++
		}
	}
	return out
}

// all returns copies of every record, oldest first (status, tests).
func (s *store) all() []*Record {
	s.mu.Lock()
	out := make([]*Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, &r)
	}
	s.mu.Unlock()
	sortRecords(out)
	return out
}

// prune removes final records done before cut.
func (s *store) prune(cut time.Time) {
	s.mu.Lock()
	var old []string
	for id, r := range s.recs {
		if r.State != StateQueued && r.Done.Before(cut) {
			old = append(old, id)
		}
	}
	s.mu.Unlock()
	for _, id := range old {
		if err := os.Remove(filepath.Join(s.dir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("cannot remove old channel record", "id", id, "err", err)
			continue
		}
		s.mu.Lock()
		delete(s.recs, id)
		s.mu.Unlock()
	}
}

// Peek counts the records still to deliver, per channel, by reading
// SPOOL/channels without opening the store (which would tidy it: the
// running gateway's job), so that `plcmail status` of a stopped gateway
// shows the channel deliveries that wait too. A missing directory is no
// record; unreadable and temporary files are skipped.
func Peek(spoolDir string) (map[string]int, error) {
	dir := filepath.Join(spoolDir, dirChannels)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("channel: %w", err)
	}
	out := map[string]int{}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) || strings.HasSuffix(name, ".corrupt") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		var r Record
		if err != nil || json.Unmarshal(b, &r) != nil || r.ID != name {
			continue
		}
		if r.State == StateQueued {
			out[r.Channel]++
		}
	}
	return out, nil
}
