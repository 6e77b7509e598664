// Package spool keeps messages between "a source handed it over" and "the
// upstream said 250": the durable on-disk queue (Spool) and the delivery
// loop that empties it (Queue), with retries, backoff and dead letters.
//
// The guarantees, which the rest of the gateway builds on:
//
//   - When Enqueue returns nil, the message is on disk and survives kill -9
//     and power loss: its file and the directory entry are fsynced before
//     Enqueue returns. The SMTP listener answers 250 only then; the serial
//     links, which must ACK faster, keep a journal of their own until then
//     (package bridge) and replay it under idempotency keys (below).
//   - A message is sent until the upstream accepts it, refuses it
//     permanently, or it expires. Its removal (or its move to dead/) is
//     durable before OnResult reports it. Delivery is at least once: a
//     crash, or a disk failing the removal, between the upstream's 250 and
//     the durable removal sends it once more after a restart. The Queue
//     makes each removal durable before the next MAIL FROM on the same
//     connection, so a crash repeats at most one message per connection.
//   - A submission's idempotency key is remembered across restarts, until
//     KeyRetention after its message was delivered or deleted, so a source
//     that retransmits after a crash gets ErrDuplicate, not a second mail.
//   - Only one process delivers from a spool directory at a time
//     (LockDelivery); others (plcmail send, plcmail queue) may enqueue,
//     list, flush and delete alongside it.
//   - Retry state is rewritten without a directory fsync, and not at all
//     when a retry fails as the last one did: after a crash it may be
//     older, which only makes a retry come sooner.
package spool

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/plcmail/plcmail/durable"
)

// Spool directory layout (all below Spool.Dir()):
//
//	tmp/        files being written; renamed into place once fsynced (new
//	            queue files skip it where O_TMPFILE works: durable.CreateNewTmpfile)
//	queue/ID    one active message: a JSON header line (Message), "\n", then
//	            the raw RFC 5322 bytes exactly as submitted. Written once.
//	state/ID    retry state of queue/ID (JSON spoolState), rewritten on every
//	            attempt so that the body is never rewritten for a retry
//	dead/ID     a dead letter: the message file moved out of queue/
//	dead/ID.json  why it died (JSON spoolState with reason and code)
//	corrupt/    files that could not be parsed, moved aside for a human
//	free/       delivered message files kept for reuse by Enqueue; their
//	            contents are garbage (spool_recycle.go)
//	keys/log    append-only idempotency key log, "UNIXSECONDS QUOTEDKEY\n"
//	keys/lock   flock guarding appends to and compaction of keys/log
//	deliver.lock  flock held by the one process that delivers (serve)
//	flush       marker: another process asked for an immediate retry of all
//
// Other packages keep their own files in the spool directory, so that one
// directory holds all of the gateway's state; the spool neither reads nor
// removes them:
//
//	links/NAME.journal  a serial link's write-ahead journal (package bridge,
//	            bridge/journal.go)
//	channels/ID  a delivery over a fallback channel (package channel)
//	status.sock   Unix socket on which serve answers `plcmail status`
//	            (cmd/plcmail/status.go)
//
// Idempotency keys live in the header of the queued file, so Enqueue costs
// exactly one file write, one fsync, one link (or rename) and one directory
// fsync, and that directory fsync is shared by all Enqueues that linked
// before it started (groupSync). A key is appended to keys/log, and the
// append fsynced (shared the same way), before the last file carrying it is
// removed, so the index rebuilt at open from keys/log ∪ queue/ ∪ dead/ never
// forgets a key that was accepted. Log entries older than KeyRetention are
// pruned at open. For a queued message with a key that append is also the
// durable record of its removal: Open removes a queue file whose key the
// log holds with the file's creation time, so delivering an alarm needs no
// fsync of queue/ (remove, removeLogged).
const (
	dirTmp     = "tmp"
	dirQueue   = "queue"
	dirState   = "state"
	dirDead    = "dead"
	dirCorrupt = "corrupt"
	dirKeys    = "keys"
	flushFile  = "flush"
)

// KeyRetention is how long an idempotency key of a delivered or deleted
// message is remembered. Serial links retransmit within seconds, and a PLC
// reboot changes the boot number in its keys, so 30 days is generous.
const KeyRetention = 30 * 24 * time.Hour

// staleTmpAge is how old a file in tmp/ must be before it is treated as left
// over from a crash: another process (plcmail send) may be writing one right
// now, and a write takes milliseconds, never minutes.
const staleTmpAge = time.Minute

// maxHeaderLine bounds the JSON header line of a spool file.
const maxHeaderLine = 1 << 20

// ErrDuplicate is returned by Enqueue when a submission carries a Key that
// was queued before. The message is not queued again; the returned id is "".
var ErrDuplicate = errors.New("spool: duplicate submission key")

// ErrNotFound is returned for a queue id that is neither queued nor dead.
var ErrNotFound = errors.New("spool: no such message")

// ErrCorrupt wraps errors about spool files that cannot be parsed; such
// files are moved to corrupt/ and skipped.
var ErrCorrupt = errors.New("spool: corrupt spool file")

// Envelope is the SMTP envelope of a message. Addresses are bare
// ("a@example.com"), without angle brackets; From "" is the null sender.
type Envelope struct {
	From string   `json:"from"`
	To   []string `json:"to"`
}

// Submission is what a source hands to the spool.
type Submission struct {
	Envelope
	// Data is the complete RFC 5322 message with CRLF line endings. It is
	// stored and later sent byte for byte.
	Data []byte
	// Source names where the message came from ("serial:press-line-1",
	// "smtp:192.168.1.20", "send"), for logs, status and delivery reports.
	Source string
	// Key, when set, makes the submission idempotent: a second Enqueue with
	// the same Key returns ErrDuplicate, also after a restart and after the
	// first message was delivered. Serial links use "link/boot/seq".
	Key string
	// Origin, when set, is the source's own JSON description of what the
	// message is about (a serial link: which event of which PLC boot). It is
	// opaque to the spool, which stores it in the queue file's header and
	// hands it back in Result.Message, so that the source routes delivery
	// results without parsing Key. It must be valid JSON.
	Origin json.RawMessage
}

// Message is a queued message's metadata (the body stays on disk).
type Message struct {
	ID       string          `json:"id"`
	Envelope Envelope        `json:"envelope"` // To holds the recipients still pending
	Source   string          `json:"source,omitempty"`
	Key      string          `json:"key,omitempty"`
	Origin   json.RawMessage `json:"origin,omitempty"` // Submission.Origin, unread by the spool
	Created  time.Time       `json:"created"`
	Size     int64           `json:"size"` // bytes of the RFC 5322 message

	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`

	// Rejected lists recipients the upstream refused permanently while
	// others of the same message were accepted or are still pending.
	Rejected []Rejection `json:"rejected,omitempty"`

	// Failover state (spool/route.go), kept in the state sidecar like the
	// retry state. Upstream names the [[upstream]] entry the message is on
	// ("": the first that matches it); UpstreamSince is when the first
	// attempt over it failed for a reason of the message's own, which
	// starts that entry's failover_after; Refused names the entries that
	// refused the message for good with a reply another provider may not
	// give; Via is the entry of the last attempt, for queue list and
	// status.
	Upstream      string    `json:"upstream,omitempty"`
	UpstreamSince time.Time `json:"upstream_since,omitzero"`
	Refused       []string  `json:"refused,omitempty"`
	Via           string    `json:"via,omitempty"`

	// wait, in the delivery loop only, is when an upstream the message
	// may take is usable again (all of them held down or being probed).
	wait time.Time
	// match, in the delivery loop only and when matchSet, has a bit set
	// for each route whose rules admit the message (Route.matches), so
	// that routing needs no envelope (queue_index.go).
	match    uint64
	matchSet bool
	// stateHash, in the delivery loop only, is stateHash of the retry
	// state this process last wrote for the message (0: none).
	stateHash uint32

	// Dead letters only: when and why delivery was given up, and the
	// upstream's reply code (0 for "expired" and local errors).
	Died   time.Time `json:"died,omitzero"`
	Reason string    `json:"reason,omitempty"`
	Code   int       `json:"code,omitempty"`
}

// Rejection is a recipient the upstream refused with a 5xx reply.
type Rejection struct {
	Rcpt   string `json:"rcpt"`
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// spoolState is the mutable part of a message, kept in a sidecar file.
type spoolState struct {
	Attempts      int       `json:"attempts"`
	NextAttempt   time.Time `json:"next_attempt"`
	LastError     string    `json:"last_error,omitempty"`
	Upstream      string    `json:"upstream,omitempty"`
	UpstreamSince time.Time `json:"upstream_since,omitzero"`
	Refused       []string  `json:"refused,omitempty"`
	Via           string    `json:"via,omitempty"`
	Died          time.Time `json:"died,omitzero"`
	Reason        string    `json:"reason,omitempty"`
	Code          int       `json:"code,omitempty"`
}

// Spool is the on-disk queue. It is safe for concurrent use within one
// process, and several processes may use the same directory at once: any of
// them may Enqueue, List, Delete and Flush (plcmail send, plcmail queue), while
// only the process holding the delivery lock (the Queue in plcmail serve)
// delivers, so a message is never claimed twice. Idempotency keys are checked
// against what this process knows: keys written by other processes are
// merged in by the Queue when it reads their files (learnKey), as soon as
// inotify reports them (or at its next scan without inotify).
type Spool struct {
	dir string
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	keys map[string]time.Time // key -> when it was first queued

	// While a Queue runs on this Spool, messages this process queued are
	// handed to it in fresh (under mu), so that it need not list the queue
	// directory and re-read the new file's header, and freshWake (its
	// Wake; nil while none runs) tells it that there are some.
	freshWake func()
	fresh     []Message
	// pending holds the ids of messages this process is queueing or
	// queued and the Queue has not taken yet: the Queue's inotify watch
	// sees their files appear and leaves them to takeFresh.
	pending map[string]bool

	// beforeEnqueue is the hook of BeforeEnqueue (channelhook.go).
	beforeEnqueue func(Submission) error
	// tmpfile: new queue files are written with durable.CreateNewTmpfile.
	tmpfile bool
	// noKeys: opened by OpenNoKeys, without the key index.
	noKeys bool
	// free: delivered message files kept for reuse (spool_recycle.go).
	free freePool
	// lastIDTime is the time part of the last id this process made.
	lastIDTime atomic.Uint64
	// Group commit of the fsyncs that make a change in queue/ and dead/
	// (files linked, renamed or removed) and an append to keys/log durable.
	queueSync, deadSync, keysSync *groupSync
}

// Open opens (creating if needed) the spool directory: it removes temp
// files left by a crash, moves unreadable queue files to corrupt/, and
// rebuilds the idempotency key index.
func Open(dir string, log *slog.Logger) (*Spool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{dir: dir, log: log, now: time.Now, keys: map[string]time.Time{}}
	for _, d := range []string{"", dirTmp, dirQueue, dirState, dirDead, dirCorrupt, dirKeys, dirFree} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	// keys/log exists from the start, durably, so that appendKey only ever
	// appends and its shared fsync need not cover a new directory entry.
	logPath := filepath.Join(dir, dirKeys, "log")
	if _, err := os.Stat(logPath); errors.Is(err, fs.ErrNotExist) {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			err = f.Close()
		}
		if err == nil {
			err = durable.SyncDir(filepath.Join(dir, dirKeys))
		}
		if err != nil {
			return nil, fmt.Errorf("spool: keys: %w", err)
		}
	}
	s.queueSync = newGroupSync(func() error { return durable.SyncDir(filepath.Join(dir, dirQueue)) })
	s.deadSync = newGroupSync(func() error { return durable.SyncDir(filepath.Join(dir, dirDead)) })
	s.keysSync = newGroupSync(func() error { return durable.SyncDir(filepath.Join(dir, dirKeys, "log")) })
	s.tmpfile = durable.TmpfileWorks(filepath.Join(dir, dirTmp))
	s.cleanTmp()
	if err := s.loadKeys(); err != nil {
		return nil, err
	}
	s.cleanOrphans()
	return s, nil
}

// ErrNoKeys is returned by Enqueue on a spool opened with OpenNoKeys.
var ErrNoKeys = errors.New("spool: opened without the idempotency keys, cannot queue")

// OpenNoKeys opens an existing spool for `plcmail queue`: listing, flushing
// and deleting, beside a running gateway. Unlike Open it neither rebuilds
// the idempotency key index (which reads every queued message's header, as
// many as a listing reads again) nor cleans up after a crash (the
// gateway's Open does). Enqueue on it returns ErrNoKeys: without the index
// it could not refuse a duplicate. A spool that does not exist yet is made
// by Open.
func OpenNoKeys(dir string, log *slog.Logger) (*Spool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{dirQueue, dirState, dirDead, dirCorrupt} {
		if _, err := os.Stat(filepath.Join(dir, d)); err != nil {
			return Open(dir, log) // a new spool: Open makes it, as it would for the gateway
		}
	}
	s := &Spool{dir: dir, log: log, now: time.Now, keys: map[string]time.Time{}, noKeys: true}
	s.queueSync = newGroupSync(func() error { return durable.SyncDir(filepath.Join(dir, dirQueue)) })
	s.deadSync = newGroupSync(func() error { return durable.SyncDir(filepath.Join(dir, dirDead)) })
	s.keysSync = newGroupSync(func() error { return durable.SyncDir(filepath.Join(dir, dirKeys, "log")) })
	return s, nil
}

// Close releases the spool. Everything is on disk already.
func (s *Spool) Close() error { return nil }

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Enqueue stores a submission durably and returns its queue id. When it
// returns nil, the message is on disk and survives power loss.
func (s *Spool) Enqueue(sub Submission) (string, error) {
	if s.noKeys {
		return "", ErrNoKeys
	}
	if err := checkEnvelope(&sub.Envelope); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if strings.ContainsAny(sub.Key, "\r\n") {
		return "", errors.New("spool: key contains a line break")
	}
	if len(sub.Origin) > 0 && !json.Valid(sub.Origin) {
		return "", errors.New("spool: origin is not valid JSON")
	}
	// The key is reserved before and committed after the write, so that
	// the fsyncs of concurrent Enqueues (several serial links) overlap
	// instead of queueing behind one lock.
	if sub.Key != "" {
		s.mu.Lock()
		_, dup := s.keys[sub.Key]
		if !dup {
			s.keys[sub.Key] = time.Time{} // reserved
		}
		s.mu.Unlock()
		if dup {
			return "", ErrDuplicate
		}
	}
	if err := s.runBeforeEnqueue(&sub); err != nil {
		s.mu.Lock()
		delete(s.keys, sub.Key) // not queued: a retransmission must get in
		s.mu.Unlock()
		return "", fmt.Errorf("spool: %w", err)
	}
	id := s.newID()
	s.mu.Lock()
	if s.freshWake != nil {
		s.pending[id] = true
	}
	s.mu.Unlock()
	m := Message{ID: id, Envelope: sub.Envelope, Source: sub.Source, Key: sub.Key, Origin: sub.Origin,
		Created: s.now().UTC(), Size: int64(len(sub.Data))}
	m.Envelope.To = append([]string(nil), sub.To...)
	m.NextAttempt = m.Created
	err := s.writeNew(id, encodeSpoolFile(&m, sub.Data))
	s.mu.Lock()
	if sub.Key != "" {
		if err != nil {
			delete(s.keys, sub.Key) // not queued: a retransmission must get in
		} else {
			s.keys[sub.Key] = m.Created
		}
	}
	wake := s.freshWake
	if err == nil && wake != nil {
		s.fresh = append(s.fresh, m)
	} else {
		delete(s.pending, id)
	}
	s.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	// The Queue learns of the message here, whether or not the caller
	// also calls its Wake: inotify's report of the file is skipped as
	// this process's (ownPending), and may even come before the message
	// is in fresh, so without this it waited for the next full listing
	// (ten minutes).
	if wake != nil {
		wake()
	}
	return id, nil
}

// writeNew stores a new queue file durably: on disk with its contents and
// its name after a crash or power loss once it returns nil. A disk full
// with recycled files is emptied of them first (retryNoSpace).
func (s *Spool) writeNew(id string, data []byte) error {
	return s.retryNoSpace(func() error { return s.writeNewOnce(id, data) })
}

func (s *Spool) writeNewOnce(id string, data []byte) error {
	final := s.path(dirQueue, id)
	if name := s.takeFree(); name != "" {
		err := s.writeRecycled(name, final, data)
		if err == nil {
			return s.syncQueue()
		}
		if errors.Is(err, fs.ErrNotExist) || noSpace(err) {
			// Given back by releaseFree in another process, or too
			// small for this message on a full disk.
			s.log.Debug("spool: cannot reuse a free file, creating one", "err", err)
		} else {
			s.log.Warn("spool: cannot reuse a free file, creating one", "err", err)
		}
	}
	if s.tmpfile {
		if err := durable.CreateNewTmpfile(final, data, durable.Options{NoDirSync: true}); err != nil {
			return err
		}
	} else if err := writeRenamed(filepath.Join(s.dir, dirTmp), final, data); err != nil {
		return err
	}
	return s.syncQueue()
}

// trackNew starts handing messages queued by this process to the delivery
// loop through takeFresh, calling wake after each; nil stops it.
func (s *Spool) trackNew(wake func()) {
	s.mu.Lock()
	s.freshWake, s.fresh, s.pending = wake, nil, map[string]bool{}
	s.mu.Unlock()
}

// ownPending reports whether id is a message this process is queueing or
// queued and takeFresh has not handed out yet.
func (s *Spool) ownPending(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[id]
}

// exists reports whether area/id is there.
func (s *Spool) exists(area, id string) bool {
	_, err := os.Lstat(s.path(area, id))
	return err == nil
}

// queueModTime is the modification time of queue/: it changes when a file
// is linked in, renamed in or out, or removed.
func (s *Spool) queueModTime() (time.Time, error) {
	fi, err := os.Stat(filepath.Join(s.dir, dirQueue))
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// takeFresh returns the messages queued by this process since the last
// call (with trackNew on); they are durably queued.
func (s *Spool) takeFresh() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fresh
	s.fresh = nil
	for i := range f {
		delete(s.pending, f[i].ID)
	}
	return f
}

// checkAddr refuses what would break the SMTP command line it ends up in:
// a line break would start a command of its own, and no control character
// belongs in an address (nor, unescaped, on an operator's terminal).
func checkAddr(a string) error {
	for _, r := range a {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return fmt.Errorf("%q contains a control character", a)
		}
	}
	if strings.ContainsAny(a, "<> ") {
		return fmt.Errorf("%q is not a bare mail address", a)
	}
	return nil
}

// checkEnvelope is checkAddr for a whole envelope, as the delivery loop
// applies it to every message before its MAIL FROM: a queue file written
// by an older version or another program must not reach the upstream with
// an address that breaks the command line, nor be retried forever.
func checkEnvelope(e *Envelope) error {
	if err := checkAddr(e.From); err != nil {
		return fmt.Errorf("sender: %w", err)
	}
	if len(e.To) == 0 {
		return errors.New("no recipients")
	}
	for _, a := range e.To {
		if a == "" {
			return errors.New("empty recipient")
		}
		if err := checkAddr(a); err != nil {
			return fmt.Errorf("recipient: %w", err)
		}
	}
	return nil
}

func encodeSpoolFile(m *Message, data []byte) []byte {
	hdr, err := json.Marshal(m)
	if err != nil { // only plain strings, times and ints: cannot happen
		panic(err)
	}
	buf := make([]byte, 0, len(hdr)+1+len(data))
	return append(append(append(buf, hdr...), '\n'), data...)
}

func (s *Spool) path(area, id string) string { return filepath.Join(s.dir, area, id) }

// List returns the active queue, oldest first, with current retry state.
// Unreadable files are moved to corrupt/ and left out.
func (s *Spool) List() ([]Message, error) { return s.list(dirQueue) }

// ListDead returns the dead letters, oldest first, with Died, Reason, Code.
func (s *Spool) ListDead() ([]Message, error) { return s.list(dirDead) }

func (s *Spool) list(area string) ([]Message, error) {
	ids, err := s.ids(area)
	if err != nil {
		return nil, err
	}
	// The headers are read by as many goroutines as there are CPUs: a
	// listing is a file open and a small read per message, which a
	// second core halves.
	msgs := make([]Message, len(ids))
	ok := make([]bool, len(ids))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(ids)/256, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				m, err := s.load(area, ids[i])
				// An error: vanished (delivered, deleted) or quarantined.
				msgs[i], ok[i] = m, err == nil
			}
		}()
	}
	wg.Wait()
	n := 0
	for i := range msgs {
		if ok[i] {
			msgs[n] = msgs[i]
			n++
		}
	}
	msgs = msgs[:n]
	sort.Slice(msgs, func(i, j int) bool { return olderFirst(&msgs[i], &msgs[j]) })
	return msgs, nil
}

// olderFirst is the queue's order: by creation time, then by id.
func olderFirst(a, b *Message) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	return a.ID < b.ID
}

// ids returns the message ids in area; names that cannot be ids are moved
// to corrupt/.
func (s *Spool) ids(area string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, area))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	ids := make([]string, 0, len(ents))
	for _, e := range ents {
		name := e.Name()
		if area == dirDead && strings.HasSuffix(name, ".json") {
			continue
		}
		if !validID(name) {
			s.quarantine(area, name, fmt.Errorf("unexpected file name"))
			continue
		}
		ids = append(ids, name)
	}
	return ids, nil
}

// Get returns the metadata of a queued or dead message.
func (s *Spool) Get(id string) (Message, error) {
	if !validID(id) {
		return Message{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	m, err := s.load(dirQueue, id)
	if errors.Is(err, fs.ErrNotExist) {
		m, err = s.load(dirDead, id)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return m, err
}

// ReadMessage returns the metadata and the stored RFC 5322 bytes of a queued
// or dead message.
func (s *Spool) ReadMessage(id string) (Message, []byte, error) {
	if !validID(id) {
		return Message{}, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	for _, area := range []string{dirQueue, dirDead} {
		m, data, err := s.read(area, id, true, true)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return m, data, err
	}
	return Message{}, nil, fmt.Errorf("%w: %s", ErrNotFound, id)
}

// load reads the header of area/id and applies its state sidecar.
func (s *Spool) load(area, id string) (Message, error) {
	m, _, err := s.read(area, id, false, true)
	return m, err
}

// read reads the header of area/id, with the body when body is set, and
// applies its state sidecar when state is set (the delivery loop keeps the
// retry state in memory and skips it).
func (s *Spool) read(area, id string, body, state bool) (Message, []byte, error) {
	var m Message
	if !body {
		hm, ok, err := s.readHeader(area, id)
		if ok {
			if err != nil {
				return hm, nil, err
			}
			return s.withState(area, id, hm, nil, state)
		}
	}
	f, err := os.Open(s.path(area, id))
	if err != nil {
		return m, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return m, nil, err
	}
	br := bufio.NewReaderSize(f, 4096)
	hdr, err := readLine(br)
	if err == nil {
		err = json.Unmarshal(hdr, &m)
	}
	if err == nil && m.ID != id {
		err = fmt.Errorf("header names id %q", m.ID)
	}
	if err == nil && int64(len(hdr))+1+m.Size != fi.Size() {
		err = fmt.Errorf("size %d, header says %d", fi.Size()-int64(len(hdr))-1, m.Size)
	}
	corrupt := err != nil
	var data []byte
	if !corrupt && body {
		data = make([]byte, m.Size)
		_, err = io.ReadFull(br, data)
	}
	// A file removed or recycled (spool_recycle.go) while we read it, also
	// by the delivering process when it is not this one, is a message that
	// left the queue: whatever was read, it is neither that message nor
	// corrupt.
	if !stillLinked(s.path(area, id), fi) {
		return m, nil, fmt.Errorf("spool: %s/%s left while being read: %w", area, id, fs.ErrNotExist)
	}
	if corrupt {
		f.Close()
		s.quarantine(area, id, err)
		return m, nil, fmt.Errorf("%w %s: %v", ErrCorrupt, id, err)
	}
	if err != nil {
		return m, nil, fmt.Errorf("spool: read %s: %w", id, err)
	}
	return s.withState(area, id, m, data, state)
}

// withState applies the state sidecar of area/id to m when state is set.
func (s *Spool) withState(area, id string, m Message, data []byte, state bool) (Message, []byte, error) {
	if !state {
		return m, data, nil
	}
	statePath := s.path(dirState, id)
	if area == dirDead {
		statePath = s.path(dirDead, id+".json")
	}
	if st, err := readState(statePath); err == nil {
		m.Attempts, m.NextAttempt, m.LastError = st.Attempts, st.NextAttempt, st.LastError
		m.Died, m.Reason, m.Code = st.Died, st.Reason, st.Code
		m.Upstream, m.UpstreamSince, m.Refused, m.Via = st.Upstream, st.UpstreamSince, st.Refused, st.Via
	} else if !errors.Is(err, fs.ErrNotExist) {
		// The state is advisory: losing it only means an earlier retry.
		s.log.Warn("spool: ignoring unreadable retry state", "id", id, "err", err)
	}
	return m, data, nil
}

func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if err == nil {
			return line[:len(line)-1], nil
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = errors.New("no header line")
			}
			return nil, err
		}
		if len(line) > maxHeaderLine {
			return nil, errors.New("header line too long")
		}
	}
}

func readState(path string) (spoolState, error) {
	var st spoolState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// quarantine moves a file that cannot be parsed out of the way, so that one
// bad file never blocks the queue, and keeps it for a human to inspect.
func (s *Spool) quarantine(area, name string, why error) {
	dst := filepath.Join(s.dir, dirCorrupt, area+"-"+name)
	if err := os.Rename(s.path(area, name), dst); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Error("spool: cannot move corrupt file aside", "file", s.path(area, name), "err", err)
		}
		return
	}
	if area == dirDead {
		os.Rename(s.path(dirDead, name+".json"), dst+".json")
	} else {
		os.Remove(s.path(dirState, name))
	}
	s.log.Error("spool: corrupt file moved aside", "file", dst, "err", why)
}

// Quarantined is a file that quarantine moved to corrupt/.
type Quarantined struct {
	// Name is the file's name in corrupt/: the area it came from and its
	// name there, "queue-ID" or "dead-ID" (or a stray name).
	Name string    `json:"name"`
	Size int64     `json:"size"`
	Time time.Time `json:"time"` // its modification time: when it was written, a move keeps it
}

// isCorruptEntry reports whether a name in corrupt/ is a quarantined file,
// rather than the reason of a quarantined dead letter moved beside it.
func isCorruptEntry(name string) bool {
	return !strings.HasSuffix(name, ".json") || !strings.HasPrefix(name, dirDead+"-")
}

// ListCorrupt returns the files moved to corrupt/, oldest first: messages,
// perhaps, that will not be sent until someone looks at them, so `plcmail
// queue list` and `plcmail status` show them. The log said why each was
// moved.
func (s *Spool) ListCorrupt() ([]Quarantined, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, dirCorrupt))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []Quarantined
	for _, e := range ents {
		if !isCorruptEntry(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		out = append(out, Quarantined{Name: e.Name(), Size: fi.Size(), Time: fi.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Defer records a failed attempt: the message stays queued and is due
// again at next. Only the small state file is rewritten.
func (s *Spool) Defer(id string, attempts int, next time.Time, lastErr string) error {
	st := spoolState{Attempts: attempts, NextAttempt: next.UTC(), LastError: lastErr}
	return s.writeState(s.path(dirState, id), &st)
}

// deferState is Defer with the failover state of m (the delivery loop's
// copy) as well.
func (s *Spool) deferState(m *Message) error {
	st := retryState(m)
	return s.writeState(s.path(dirState, m.ID), &st)
}

// retryState is the mutable part of m as its sidecar keeps it.
func retryState(m *Message) spoolState {
	return spoolState{Attempts: m.Attempts, NextAttempt: m.NextAttempt.UTC(), LastError: m.LastError,
		Upstream: m.Upstream, UpstreamSince: m.UpstreamSince.UTC(), Refused: m.Refused, Via: m.Via}
}

// writeState replaces a sidecar. It is fsynced but its directory is not:
// after a crash the state may be older, which only makes a retry earlier.
func (s *Spool) writeState(path string, st *spoolState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := s.retryNoSpace(func() error { return writeRenamed(filepath.Join(s.dir, dirTmp), path, b) }); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// Delivered removes a message the upstream accepted for all its pending
// recipients. Its key is logged first so that it stays known.
func (s *Spool) Delivered(id string) error {
	m, err := s.load(dirQueue, id)
	if err != nil {
		return err
	}
	return s.remove(dirQueue, &m)
}

// delivered is Delivered for a message whose header the caller just read
// (the delivery worker): it saves reading it again.
func (s *Spool) delivered(m *Message) error { return s.remove(dirQueue, m) }

// remove deletes a message file (and its state) after logging its key.
//
// For a queued message with a key (an alarm), the key log's fsync is what
// makes the removal durable: Open removes a queue file whose key the log
// holds with the file's creation time (loadKeys), so the file is renamed
// away without the directory fsync a message without a key needs. The
// happy path of an alarm costs two writes and three fsyncs (file, queue/
// at Enqueue, key log), not four; a free file moved out so is reused only
// after a later fsync of queue/ covers the move (syncQueue).
func (s *Spool) remove(area string, m *Message) error {
	if m.Key != "" {
		if err := s.appendKey(m.Key, m.Created); err != nil {
			return err
		}
		if area == dirQueue {
			return s.removeLogged(m)
		}
	}
	recycled := ""
	if area == dirQueue && s.recycles(m.Size) {
		recycled = s.newID()
		if os.Rename(s.path(area, m.ID), s.path(dirFree, recycled)) != nil {
			recycled = "" // unlink it instead, which reports the error
		}
	}
	if recycled == "" {
		if err := os.Remove(s.path(area, m.ID)); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	if area == dirDead {
		os.Remove(s.path(dirDead, m.ID+".json"))
		return s.deadSync.Sync()
	}
	if m.Attempts > 0 {
		os.Remove(s.path(dirState, m.ID)) // only a tried message has one
	}
	// Without this a delivered message could reappear after a power loss
	// and be sent twice.
	err := s.syncQueue()
	if recycled != "" {
		if err == nil {
			s.putFree(recycled)
		} else {
			os.Remove(s.path(dirFree, recycled))
		}
	}
	return err
}

// removeLogged removes a queued message whose key is durably in the key
// log (see remove): no fsync of queue/ is needed, nor waited for.
func (s *Spool) removeLogged(m *Message) error {
	if m.Attempts > 0 {
		os.Remove(s.path(dirState, m.ID))
	}
	if s.recycles(m.Size) {
		name := s.newID()
		if os.Rename(s.path(dirQueue, m.ID), s.path(dirFree, name)) == nil {
			s.free.mu.Lock()
			s.free.undurable = append(s.free.undurable, name)
			s.free.mu.Unlock()
			return nil
		}
	}
	if err := os.Remove(s.path(dirQueue, m.ID)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// syncQueue fsyncs queue/ (shared, queueSync) and then hands the files
// that removeLogged moved into free/ before it began to the pool: the
// fsync made their moves durable, so overwriting them can no longer
// change a file that a crash would bring back into queue/.
func (s *Spool) syncQueue() error {
	s.free.mu.Lock()
	moved := s.free.undurable
	s.free.undurable = nil
	s.free.mu.Unlock()
	err := s.queueSync.Sync()
	for _, name := range moved {
		if err == nil {
			s.putFree(name)
		} else {
			os.Remove(filepath.Join(s.dir, dirFree, name))
		}
	}
	return err
}

// Narrow rewrites a queued message after a transaction that settled some
// recipients: to becomes the pending recipients and rejected is appended to
// its permanent rejections. The body is kept byte for byte.
func (s *Spool) Narrow(id string, to []string, rejected []Rejection) error {
	m, data, err := s.read(dirQueue, id, true, true)
	if err != nil {
		return err
	}
	m.Envelope.To = append([]string(nil), to...)
	m.Rejected = append(m.Rejected, rejected...)
	b := encodeSpoolFile(&m, data)
	if err := s.retryNoSpace(func() error { return writeRenamed(filepath.Join(s.dir, dirTmp), s.path(dirQueue, id), b) }); err != nil {
		return err
	}
	return s.queueSync.Sync()
}

// DeadLetter moves a queued message to dead/ with the reason and upstream
// reply code (0 when there was none, as for "expired"). The file keeps its
// key, so the key stays known.
func (s *Spool) DeadLetter(id string, code int, reason string) error {
	m, err := s.load(dirQueue, id)
	if err != nil {
		return err
	}
	return s.deadLetter(&m, code, reason)
}

// deadLetter is DeadLetter with the retry state (Attempts, NextAttempt,
// LastError) taken from m, the delivery loop's copy: it counts the attempt
// that failed for good, which the state file on disk does not.
func (s *Spool) deadLetter(m *Message, code int, reason string) error {
	id := m.ID
	st := retryState(m)
	st.Died, st.Reason, st.Code = s.now().UTC(), reason, code
	if err := s.writeState(s.path(dirDead, id+".json"), &st); err != nil {
		return err
	}
	if err := os.Rename(s.path(dirQueue, id), s.path(dirDead, id)); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	os.Remove(s.path(dirState, id))
	if err := s.deadSync.Sync(); err != nil {
		return err
	}
	return s.queueSync.Sync()
}

// Delete removes a queued or dead message (postsuper -d). Its key stays
// known.
func (s *Spool) Delete(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	for _, area := range []string{dirQueue, dirDead} {
		m, err := s.load(area, id)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		return s.remove(area, &m)
	}
	return fmt.Errorf("%w: %s", ErrNotFound, id)
}

// DeleteAll removes every queued and dead message and returns how many.
func (s *Spool) DeleteAll() (int, error) {
	n := 0
	for _, area := range []string{dirQueue, dirDead} {
		msgs, err := s.list(area)
		if err != nil {
			return n, err
		}
		for i := range msgs {
			if err := s.remove(area, &msgs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// Flush makes every queued message due now (postqueue -f) and tells a
// running delivery process, in this or another process, to try at once.
//
// Only retry states that say "later" are rewritten: a message without one
// was never deferred and is due already. After an outage that is nearly the
// whole queue (the upstream hold keeps them untried), so a flush of 10,000
// messages writes a handful of files instead of 10,000.
func (s *Spool) Flush() error {
	ids, err := s.ids(dirQueue)
	if err != nil {
		return err
	}
	now := s.now().UTC()
	for _, id := range ids {
		st, err := readState(s.path(dirState, id))
		if err != nil || !st.NextAttempt.After(now) {
			continue // never deferred, already due, or unreadable (advisory: treated as due)
		}
		st.NextAttempt = now
		if err := s.writeState(s.path(dirState, id), &st); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(filepath.Join(s.dir, flushFile), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return f.Close()
}

// takeFlush reports (and clears) a Flush request made since the last call.
func (s *Spool) takeFlush() bool {
	return os.Remove(filepath.Join(s.dir, flushFile)) == nil
}

// cleanTmp removes temp files left by a crash (write started, never renamed).
func (s *Spool) cleanTmp() {
	ents, err := os.ReadDir(filepath.Join(s.dir, dirTmp))
	if err != nil {
		return
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || s.now().Sub(fi.ModTime()) < staleTmpAge {
			continue // another process may be writing it right now
		}
		if os.Remove(filepath.Join(s.dir, dirTmp, e.Name())) == nil {
			s.log.Info("spool: removed stale temp file", "file", e.Name())
		}
	}
}

// cleanOrphans removes retry states and dead-letter reasons whose message
// is gone: left by a crash between two steps of DeadLetter or remove.
// A state written by another process just before its message file is
// harmless to remove: only the retry schedule is lost.
func (s *Spool) cleanOrphans() {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	if ents, err := os.ReadDir(filepath.Join(s.dir, dirState)); err == nil {
		for _, e := range ents {
			if !exists(s.path(dirQueue, e.Name())) {
				os.Remove(s.path(dirState, e.Name()))
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(s.dir, dirDead)); err == nil {
		for _, e := range ents {
			id, ok := strings.CutSuffix(e.Name(), ".json")
			fi, err := e.Info()
			// DeadLetter writes the reason a moment before it moves the
			// message in: leave young ones alone.
			if ok && err == nil && s.now().Sub(fi.ModTime()) > staleTmpAge && !exists(s.path(dirDead, id)) {
				os.Remove(s.path(dirDead, e.Name()))
			}
		}
	}
}

// learnKey adds a key found in a file queued by another process.
func (s *Spool) learnKey(key string, created time.Time) {
	if key == "" {
		return
	}
	s.mu.Lock()
	if _, ok := s.keys[key]; !ok {
		s.keys[key] = created
	}
	s.mu.Unlock()
}

// loadKeys rebuilds the key index from keys/log, queue/ and dead/, and
// compacts the log, dropping entries older than KeyRetention. It runs at
// open and daily in the delivery loop, so neither the log nor the index
// grows without bound in a daemon that runs for years.
func (s *Spool) loadKeys() error {
	keys := map[string]time.Time{}
	unlock, err := s.lockKeys()
	if err != nil {
		return err
	}
	defer unlock()
	logPath := filepath.Join(s.dir, dirKeys, "log")
	b, err := os.ReadFile(logPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: keys: %w", err)
	}
	cutoff := s.now().Add(-KeyRetention)
	pruned, bad := 0, 0
	for line := range bytes.Lines(b) {
		ts, q, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(" "))
		sec, err1 := strconv.ParseInt(string(ts), 10, 64)
		key, err2 := strconv.Unquote(string(q))
		if !ok || err1 != nil || err2 != nil || !bytes.HasSuffix(line, []byte("\n")) {
			bad++ // a torn last line after a crash; the key is in its file still
			continue
		}
		t := time.Unix(sec, 0)
		if t.Before(cutoff) {
			pruned++
			continue
		}
		if old, ok := keys[key]; !ok || t.Before(old) {
			keys[key] = t
		}
	}
	if pruned > 0 || bad > 0 {
		var nb bytes.Buffer
		for k, t := range keys {
			fmt.Fprintf(&nb, "%d %s\n", t.Unix(), strconv.Quote(k))
		}
		if err := durable.WriteFile(logPath, nb.Bytes(), durable.Options{TempDir: filepath.Join(s.dir, dirTmp), TempPattern: tmpPattern}); err != nil {
			return fmt.Errorf("spool: keys: %w", err)
		}
		s.log.Info("spool: pruned idempotency key log", "dropped", pruned, "torn", bad, "kept", len(keys))
	}
	logged := make(map[string]int64, len(keys))
	for k, t := range keys {
		logged[k] = t.Unix()
	}
	removed := 0
	for _, area := range []string{dirQueue, dirDead} {
		ids, err := s.ids(area)
		if err != nil {
			return err
		}
		for _, id := range ids {
			m, err := s.load(area, id)
			if err != nil || m.Key == "" {
				continue
			}
			if t, ok := logged[m.Key]; ok && area == dirQueue && t == m.Created.Unix() {
				// Delivered or deleted: its key was logged, which made
				// that durable, but its removal was not (see remove).
				if os.Remove(s.path(dirQueue, id)) == nil {
					os.Remove(s.path(dirState, id))
					removed++
				}
				continue
			}
			if _, ok := keys[m.Key]; !ok {
				keys[m.Key] = m.Created
			}
		}
	}
	if removed > 0 {
		s.log.Info("spool: removed delivered messages whose removal a crash undid", "messages", removed)
		if err := durable.SyncDir(filepath.Join(s.dir, dirQueue)); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	s.mu.Lock()
	// Keep what this process learnt meanwhile, including keys reserved by
	// an Enqueue in progress (zero time), so a daily compaction in a
	// running daemon cannot let a duplicate through.
	for k, t := range s.keys {
		if _, ok := keys[k]; !ok && (t.IsZero() || t.After(cutoff)) {
			keys[k] = t
		}
	}
	s.keys = keys
	s.mu.Unlock()
	return nil
}

// appendKey logs a key durably before the last file holding it goes away.
// The append happens under the key lock; its fsync is shared with the
// appends of other deliveries (keysSync). A compaction by another process
// between our append and our fsync read the appended line under the same
// lock and wrote it durably into the new log, which is then what we fsync.
func (s *Spool) appendKey(key string, created time.Time) error {
	unlock, err := s.lockKeys()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(s.dir, dirKeys, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		unlock()
		return fmt.Errorf("spool: keys: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d %s\n", created.Unix(), strconv.Quote(key))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	unlock()
	if err == nil {
		err = s.keysSync.Sync()
	}
	if err != nil {
		return fmt.Errorf("spool: keys: %w", err)
	}
	return nil
}

// lockKeys takes the inter-process lock of the key log.
func (s *Spool) lockKeys() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, dirKeys, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: keys: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: keys lock: %w", err)
	}
	return func() { f.Close() }, nil // closing releases the flock
}

// ErrLocked is returned by LockDelivery when another process delivers from
// the same spool.
var ErrLocked = errors.New("spool: being delivered by another process")

// LockDelivery takes the spool's delivery lock: only its holder may deliver
// and dead-letter messages, which makes claiming a message safe across
// processes. The lock is released by calling the returned function or when
// the process exits, also by kill -9.
func (s *Spool) LockDelivery() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "deliver.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", ErrLocked, s.dir)
		}
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.enableRecycling()
	return func() { s.disableRecycling(); f.Close() }, nil
}

// tmpPattern names the spool's temporary files in tmp/ (os.CreateTemp).
const tmpPattern = "w-*"

// writeRenamed replaces final with data through a temporary file in tmpDir
// (durable.WriteFile), without the directory fsync: callers share it
// (groupSync) or do without (writeState). A crash leaves the temporary
// file in tmp/, where cleanTmp removes it.
func writeRenamed(tmpDir, final string, data []byte) error {
	return durable.WriteFile(final, data, durable.Options{TempDir: tmpDir, TempPattern: tmpPattern, NoDirSync: true})
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newIDAt returns a queue id that sorts by creation time, like Postfix's
// long queue ids: its 16 characters carry 80 bits, 54 of microseconds since
// 1970 (enough until the year 2541) and 26 random ones. Earlier versions
// kept only the low 48 bits of the time, which wrap every 8.9 years; ids of
// both kinds are valid and only break ties in olderFirst.
func newIDAt(us uint64) string {
	var r [4]byte
	rand.Read(r[:])
	var b [10]byte
	binary.BigEndian.PutUint16(b[0:], uint16(us>>38))
	binary.BigEndian.PutUint64(b[2:], us<<26|uint64(binary.BigEndian.Uint32(r[:]))&(1<<26-1))
	return idEncoding.EncodeToString(b[:])
}

// IDTime returns when the message of a queue id was queued, to the
// microsecond: newID puts the time in an id's first 38 bits. ok is false for
// a string that is not an id.
func IDTime(id string) (t time.Time, ok bool) {
	if !validID(id) {
		return time.Time{}, false
	}
	b, err := idEncoding.DecodeString(id)
	if err != nil || len(b) != 10 {
		return time.Time{}, false
	}
	us := uint64(binary.BigEndian.Uint16(b[0:]))<<38 | binary.BigEndian.Uint64(b[2:])>>26
	return time.UnixMicro(int64(us)), true
}

// newID returns an id for something that is not a queued message.
func newID() string { return newIDAt(uint64(time.Now().UnixMicro())) }

// newID returns a queue id no other id of this process has: its time part
// strictly increases, so two messages queued in the same microsecond cannot
// collide, and a rename into queue/ (which would replace a file of the same
// name) never meets an id of its own process. Another process sharing the
// spool would need the same microsecond and the same 26 random bits.
func (s *Spool) newID() string {
	now := uint64(time.Now().UnixMicro())
	for {
		last := s.lastIDTime.Load()
		t := max(now, last+1)
		if s.lastIDTime.CompareAndSwap(last, t) {
			return newIDAt(t)
		}
	}
}

// validID reports whether name is a queue id as newID makes them; it keeps
// user-supplied ids (queue delete) from naming paths outside the spool.
func validID(name string) bool {
	if len(name) != 16 {
		return false
	}
	for _, c := range name {
		if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZ", c) {
			return false
		}
	}
	return true
}
