package spool

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/plcmail/plcmail/durable"
)

// Recycled message files.
//
// Creating a file can be the dominant cost of queueing a message: the
// filesystem allocates an inode and blocks, and ext4 without a journal (the
// benchmark machine's, and a choice some make for SD cards) also skips, one
// by one, every inode deleted in the last minute or so, which under a steady
// flow of delivered-then-removed messages grows with the message rate
// (BenchmarkRelayCycle: about 1.5k msgs/s creating and unlinking, 3.5k-6k
// recycling, on that disk). Databases meet the same cost with their logs
// and recycle the files (PostgreSQL renames finished WAL segments into
// place as future segments); the spool does it per message:
//
//   - a delivered message file is renamed from queue/ into free/ instead of
//     being unlinked, once that rename is durable;
//   - Enqueue overwrites a free file, truncates it to the new length,
//     fsyncs it and renames it to queue/ID: no inode or block allocation,
//     and the directory fsync that follows is the one Enqueue pays anyway.
//
// The pool is not filled ahead of time: creating a thousand files at start
// cost the serial links' ACKs several milliseconds of p99 latency on the
// same disk, for a gain only in the first burst after a start.
//
// Only the process holding the delivery lock recycles (it is the only one
// removing delivered messages, and no other process may write into free/,
// or two writers could fill one file). Other processes (plcmail send,
// plcmail queue) create and unlink as before.
//
// The pool must never cost a message its place on a small disk (a 1 MiB
// spool once held 992 KiB of delivered files while every send failed):
//
//   - it keeps at most a quarter of the space still available outside it
//     (statfs), checked as each file joins and at every queue scan, so
//     that it shrinks as the disk fills (trimFree);
//   - a writer in any process that meets ENOSPC unlinks every file in
//     free/ and tries once more (releaseFree). The gateway may be
//     overwriting one of them at that moment: its rename then fails, and
//     it falls back to a new file, as for any failed reuse.
//
// A reader in another process that opened queue/ID just before the file was
// recycled would see another message's bytes; read() detects that, because
// the path no longer names the file it read (see stillLinked), and reports
// the message as gone, which it is.
const (
	dirFree = "free"
	// maxFreeFiles and maxFreeBytes bound the pool: it should hold as
	// many files as a burst leaves queued at once (a few hundred when 16
	// clients send faster than the upstream takes), but never more than a
	// few MiB of a small gateway's flash.
	maxFreeFiles = 1024
	maxFreeBytes = 8 << 20
	// maxRecycleBytes keeps large messages out of the pool.
	maxRecycleBytes = 64 << 10
)

// diskBytes is what a file of size bytes occupies, in whole 4 KiB blocks.
func diskBytes(size int64) int64 { return (size + 4095) &^ 4095 }

// freePool is the set of files in free/ that this process may overwrite.
type freePool struct {
	mu    sync.Mutex
	on    bool
	files []freeFile
	bytes int64 // sum of diskBytes over files
	// undurable: files moved into free/ whose move no fsync covered yet
	// (removeLogged); they join files after the next one (syncQueue).
	undurable []string
}

type freeFile struct {
	name string
	size int64
}

// fits reports whether a file of size bytes may join the pool, given avail
// bytes available on the disk outside the pool (-1: unknown, no limit from
// it). The caller holds mu.
func (p *freePool) fits(size, avail int64) bool {
	return p.on && size <= maxRecycleBytes && len(p.files) < maxFreeFiles && p.bytes+diskBytes(size) <= maxFreeBytes &&
		(avail < 0 || p.bytes+diskBytes(size) <= avail/poolShare)
}

// poolShare: the pool holds at most 1/poolShare of the space available
// outside it.
const poolShare = 4

// availBytes returns the space available to an unprivileged writer on the
// spool's filesystem, or -1 when statfs fails (the pool then keeps only
// its fixed bounds, and ENOSPC still releases it).
func (s *Spool) availBytes() int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// enableRecycling starts recycling message files; the caller holds the
// delivery lock. It adopts the files a previous holder left in free/,
// except those still linked elsewhere: after a power loss in the middle of
// a rename on a filesystem without a journal, fsck may leave one file with
// both names, and overwriting it would destroy the queued message.
func (s *Spool) enableRecycling() {
	dir := filepath.Join(s.dir, dirFree)
	// A previous holder's last moves into free/ may not be durable yet
	// (removeLogged): this fsync makes them so before any is overwritten.
	durable.SyncDir(filepath.Join(s.dir, dirQueue))
	ents, _ := os.ReadDir(dir)
	avail := s.availBytes()
	s.free.mu.Lock()
	defer s.free.mu.Unlock()
	s.free.on, s.free.files, s.free.bytes = true, nil, 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		fi, err := os.Lstat(p)
		st, ok := fileStat(fi)
		if err != nil || !fi.Mode().IsRegular() || !ok || st.Nlink != 1 || !s.free.fits(fi.Size(), avail) {
			os.Remove(p)
			if avail >= 0 && err == nil {
				avail += diskBytes(fi.Size())
			}
			continue
		}
		s.free.files = append(s.free.files, freeFile{e.Name(), fi.Size()})
		s.free.bytes += diskBytes(fi.Size())
	}
}

// disableRecycling stops recycling when the delivery lock is released; the
// files stay in free/ for the next holder.
func (s *Spool) disableRecycling() {
	s.free.mu.Lock()
	s.free.on, s.free.files, s.free.bytes, s.free.undurable = false, nil, 0, nil
	s.free.mu.Unlock()
}

func fileStat(fi os.FileInfo) (*syscall.Stat_t, bool) {
	if fi == nil {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}

// takeFree claims a free file for an Enqueue; "" when there is none.
func (s *Spool) takeFree() string {
	s.free.mu.Lock()
	defer s.free.mu.Unlock()
	n := len(s.free.files)
	if !s.free.on || n == 0 {
		return ""
	}
	f := s.free.files[n-1]
	s.free.files = s.free.files[:n-1]
	s.free.bytes -= diskBytes(f.size)
	return f.name
}

// putFree returns a file to the pool; only after the rename that put it
// into free/ is durable, so that a file being overwritten can never still
// be a queued message after a crash.
func (s *Spool) putFree(name string) {
	var size int64 = maxRecycleBytes + 1
	if fi, err := os.Stat(filepath.Join(s.dir, dirFree, name)); err == nil {
		size = fi.Size()
	}
	avail := s.availBytes()
	s.trimFree(avail)
	s.free.mu.Lock()
	if s.free.fits(size, avail) {
		s.free.files = append(s.free.files, freeFile{name, size})
		s.free.bytes += diskBytes(size)
		name = ""
	}
	s.free.mu.Unlock()
	if name != "" {
		os.Remove(filepath.Join(s.dir, dirFree, name))
	}
}

// recycles reports whether a removed queue file with a message of this size
// should go to free/ rather than be unlinked (putFree decides again with the
// file's exact size).
func (s *Spool) recycles(size int64) bool {
	s.free.mu.Lock()
	on := s.free.on
	s.free.mu.Unlock()
	if !on {
		return false // spare the statfs: not recycling in this process
	}
	avail := s.availBytes()
	s.free.mu.Lock()
	defer s.free.mu.Unlock()
	return s.free.fits(size, avail)
}

// trimFree unlinks pooled files until the pool holds at most its share of
// avail (availBytes; -1 does nothing), so that the pool shrinks as the disk
// fills with queued mail, also mail queued by other processes.
func (s *Spool) trimFree(avail int64) {
	if avail < 0 {
		return
	}
	var drop []string
	s.free.mu.Lock()
	for len(s.free.files) > 0 && s.free.bytes > avail/poolShare {
		n := len(s.free.files)
		f := s.free.files[0] // the oldest: the newest are warmest in the cache
		copy(s.free.files, s.free.files[1:])
		s.free.files = s.free.files[:n-1]
		s.free.bytes -= diskBytes(f.size)
		avail += diskBytes(f.size)
		drop = append(drop, f.name)
	}
	s.free.mu.Unlock()
	for _, name := range drop {
		os.Remove(filepath.Join(s.dir, dirFree, name))
	}
}

// releaseFree gives the whole pool back to the filesystem after a write
// failed for want of space: it unlinks every file in free/, those this
// process pooled and those of the gateway when this is another process,
// and returns how many it removed. The gateway may be overwriting one of
// them right now; its rename into queue/ then fails and it writes a new
// file instead (writeNew).
func (s *Spool) releaseFree() int {
	s.free.mu.Lock()
	s.free.files, s.free.bytes = nil, 0
	s.free.mu.Unlock()
	dir := filepath.Join(s.dir, dirFree)
	ents, _ := os.ReadDir(dir)
	n := 0
	for _, e := range ents {
		if os.Remove(filepath.Join(dir, e.Name())) == nil {
			n++
		}
	}
	return n
}

// noSpace reports whether err says the disk (or the quota) is full.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// retryNoSpace runs write, and once more after releaseFree when it failed
// for want of space that the pool held: a message is never refused for
// room that only recycled files take.
func (s *Spool) retryNoSpace(write func() error) error {
	err := write()
	if noSpace(err) {
		if n := s.releaseFree(); n > 0 {
			s.log.Warn("spool: disk full; gave the recycled files back and tried again", "files", n, "err", err)
			err = write()
		}
	}
	return err
}

// writeRecycled writes data over the free file name and renames it to
// final, which must not exist. The caller fsyncs final's directory. On
// error the free file is removed (its state is unknown) and the caller
// falls back to creating a new file.
func (s *Spool) writeRecycled(name, final string, data []byte) error {
	p := filepath.Join(s.dir, dirFree, name)
	err := overwrite(p, data)
	if err == nil {
		err = os.Rename(p, final)
	}
	if err != nil {
		os.Remove(p)
	}
	return err
}

func overwrite(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// stillLinked reports whether path still names the file fi describes.
func stillLinked(path string, fi os.FileInfo) bool {
	now, err := os.Stat(path)
	return err == nil && os.SameFile(now, fi)
}
