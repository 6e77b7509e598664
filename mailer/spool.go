// Package mailer owns everything between "a message exists" and "the upstream
// said 250": the durable spool, alarm templates, and delivery with retries.
package mailer

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrDuplicate is returned by Enqueue when a submission carries a Key that
// was queued before. The message is not queued again; the returned id is "".
var ErrDuplicate = errors.New("mailer: duplicate submission key")

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
}

// Message is a queued message's metadata (the body stays on disk).
type Message struct {
	ID          string    `json:"id"`
	Envelope    Envelope  `json:"envelope"`
	Source      string    `json:"source,omitempty"`
	Key         string    `json:"key,omitempty"`
	Created     time.Time `json:"created"`
	Size        int64     `json:"size"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
}

// Spool is the on-disk queue. It is safe for concurrent use by one process;
// other processes (plcmail send) may add messages to the same directory at any
// time, which the delivery loop picks up on its next scan.
type Spool struct {
	dir string
	log *slog.Logger

	mu   sync.Mutex
	keys map[string]bool
}

// OpenSpool opens (creating if needed) the spool directory.
func OpenSpool(dir string, log *slog.Logger) (*Spool, error) {
	s := &Spool{dir: dir, log: log, keys: map[string]bool{}}
	for _, d := range []string{"tmp", "queue", "dead", "keys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	return s, nil
}

// Close releases the spool.
func (s *Spool) Close() error { return nil }

// Dir returns the spool directory.
func (s *Spool) Dir() string { return s.dir }

// Enqueue stores a submission durably and returns its queue id. When it
// returns nil, the message is on disk and survives power loss.
func (s *Spool) Enqueue(sub Submission) (string, error) {
	if len(sub.To) == 0 {
		return "", errors.New("spool: no recipients")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.Key != "" && s.keys[sub.Key] {
		return "", ErrDuplicate
	}
	id := newID()
	m := Message{ID: id, Envelope: sub.Envelope, Source: sub.Source, Key: sub.Key,
		Created: time.Now().UTC(), Size: int64(len(sub.Data))}
	m.NextAttempt = m.Created
	hdr, err := json.Marshal(&m)
	if err != nil {
		return "", err
	}
	buf := append(append(hdr, '\n'), sub.Data...)
	if err := writeDurable(filepath.Join(s.dir, "tmp"), filepath.Join(s.dir, "queue", id), buf); err != nil {
		return "", fmt.Errorf("spool: %w", err)
	}
	if sub.Key != "" {
		s.keys[sub.Key] = true
	}
	return id, nil
}

// writeDurable writes data to a temp file in tmpDir, fsyncs it, renames it to
// final and fsyncs final's directory, so that after it returns nil the file
// exists with its complete contents even after a crash or power loss.
func writeDurable(tmpDir, final string, data []byte) error {
	f, err := os.CreateTemp(tmpDir, "w-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(final))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID returns a queue id that sorts by creation time, like Postfix's long
// queue ids: 10 characters of time, 6 of randomness.
func newID() string {
	var b [10]byte
	ns := uint64(time.Now().UnixMicro())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ns)
		ns >>= 8
	}
	rand.Read(b[6:])
	return strings.ToUpper(idEncoding.EncodeToString(b[:]))
}
