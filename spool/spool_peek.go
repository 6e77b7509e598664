package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Summary is what waits in a spool, as Peek counts it.
type Summary struct {
	Queued       int       // messages in queue/, not yet delivered
	OldestQueued time.Time // creation of the oldest of them; zero when none
	Dead         int       // dead letters in dead/
	OldestDead   time.Time // creation of the oldest dead letter; zero when none
	// Corrupt counts files moved to corrupt/ (see Spool.ListCorrupt):
	// mail, perhaps, that nobody will send until a human looks.
	Corrupt       int
	OldestCorrupt time.Time
}

// Peek counts the messages in the spool directory dir without opening
// the spool, for `plcmail status` and the like. Open tidies (it moves
// stray files to corrupt/, removes stale temporary files and rebuilds the
// key index), which is the running gateway's job and not a bystander's;
// Peek only lists queue/ and dead/ and stats their files, so it works
// beside a running gateway and on a read-only spool, and it opens no
// message: a message file is written once (and moved, not rewritten, when
// it dies), so its modification time is its creation. Files in free/ are
// recycled space and dead/ID.json are the reasons of dead letters, not
// messages: neither is counted, nor is a file whose name is no queue id.
//
// A spool that has not been created yet is an error satisfying
// errors.Is(err, fs.ErrNotExist); an area missing from an existing spool
// counts as empty.
func Peek(dir string) (Summary, error) {
	var s Summary
	if _, err := os.Stat(dir); err != nil {
		return s, fmt.Errorf("spool: %w", err)
	}
	var err error
	if s.Queued, s.OldestQueued, err = peekArea(filepath.Join(dir, dirQueue), validID); err != nil {
		return s, err
	}
	if s.Dead, s.OldestDead, err = peekArea(filepath.Join(dir, dirDead), validID); err != nil {
		return s, err
	}
	s.Corrupt, s.OldestCorrupt, err = peekArea(filepath.Join(dir, dirCorrupt), isCorruptEntry)
	return s, err
}

// peekArea counts the files in one area of the spool whose names pass
// counts and returns the modification time of the oldest.
func peekArea(path string, counts func(name string) bool) (n int, oldest time.Time, err error) {
	ents, err := os.ReadDir(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !counts(e.Name()) {
			continue // ID.json beside a dead letter, or a stray file
		}
		fi, err := e.Info()
		if err != nil {
			continue // delivered or deleted since ReadDir
		}
		n++
		if t := fi.ModTime(); oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return n, oldest, nil
}
