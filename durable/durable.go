// Package durable writes files so that a crash or a power loss at any moment
// leaves either the old file or the new one, whole, and so that once a call
// returns nil the new file is on disk under its name.
//
// Every write takes the same steps, in this order (as PostgreSQL's
// durable_rename does): write the data to a temporary file on the same
// file system, fsync it, close it, give it its name (rename, or link for a
// file that must not replace another), then fsync the directory, which
// makes the name durable. Without the first fsync a crash can leave the name pointing
// at an empty or torn file; without the last one it can bring the old name
// (or none) back.
//
// Three ways to give the file its name, each for a reason:
//
//   - WriteFile renames, replacing a file of that name: state that is
//     rewritten (token files, journals, retry state).
//   - CreateNew links, and fails with an error matching fs.ErrExist when the
//     name exists: records written once whose existing copy must win
//     (package channel).
//   - CreateNewTmpfile writes an unnamed O_TMPFILE inode and links it
//     (Linux): one directory entry instead of two per file and nothing to
//     clean up after a crash (the spool's new queue files).
//
// Options.NoDirSync leaves the directory fsync to the caller, which shares
// one among many writes (the spool's group commit) or does not need it.
//
// Temporary files a crash leaves behind are the caller's to remove: only the
// caller knows whether another process may be writing one right now. Their
// names come from Options.TempPattern and never equal the final name.
package durable

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Options are how a caller's files differ; the zero value writes a file of
// mode 0600 (less the umask) through ".NAME.tmp-*" in the same directory
// and fsyncs the directory.
type Options struct {
	// TempDir is where the temporary file is made; empty means the final
	// file's directory. It must be on the same file system: the spool
	// keeps its temporary files in tmp/, so that a crash leaves them in
	// one place to clean.
	TempDir string
	// TempPattern names the temporary file as os.CreateTemp's pattern
	// does (the last "*" becomes a random string); empty means
	// ".NAME.tmp-*" for a final file NAME. Callers that remove their
	// leftovers at start recognise them by it.
	TempPattern string
	// Perm, when not zero, is set on the file with fchmod before anything
	// is written, exactly, whatever the umask: for secrets whose mode is
	// checked when they are read (oauth's token file). Zero creates the
	// file 0600 less the umask, as os.CreateTemp does, with no extra
	// system call.
	Perm fs.FileMode
	// Setup, when not nil, runs on the temporary file after Perm and
	// before the data is written, so that the file's fsync also covers
	// what it changes: oauth hands the file to the gateway's user with
	// it.
	Setup func(*os.File) error
	// NoDirSync skips the final directory fsync: the caller fsyncs the
	// directory itself, once for many files (the spool's group commit),
	// or can do without it (a state that may come back older after a
	// crash). Until that fsync the new name may be lost to a power loss.
	NoDirSync bool

	// beforeName runs when the temporary file is complete and fsynced,
	// just before it gets its final name; tests make it fail or panic to
	// stand for a crash at that point.
	beforeName func() error
}

// WriteFile replaces path with data (temporary file, fsync, rename,
// directory fsync), so that path holds either its old content or data,
// whole, after a crash at any point. Use it for state that is rewritten; a
// file that must never replace another is written with CreateNew.
func WriteFile(path string, data []byte, o Options) error {
	tmp, err := writeTemp(path, data, &o)
	if err != nil {
		return err
	}
	if err = o.name(); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return o.syncDir(path)
}

// CreateNew writes data to path, which must not exist (temporary file,
// fsync, link, removal of the temporary name, directory fsync). When path
// exists it is left as it is and the error matches fs.ErrExist: a record
// written once, whose copy already on disk (perhaps from a run that crashed
// before it could say so) must win over a new one. A rename would silently
// replace it.
func CreateNew(path string, data []byte, o Options) error {
	tmp, err := writeTemp(path, data, &o)
	if err != nil {
		return err
	}
	if err = o.name(); err == nil {
		err = os.Link(tmp, path)
	}
	if rerr := os.Remove(tmp); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	return o.syncDir(path)
}

// SyncDir fsyncs the directory dir, which makes the creations, renames and
// removals of names in it durable. It also fsyncs a file given by its path
// (the spool group-commits appends to its key log that way).
//
// A directory whose file system has no directory fsync (the error matches
// errors.ErrUnsupported: ENOTSUP, EOPNOTSUPP, ENOSYS) counts as synced, for
// every caller: that answer is permanent, a property of the file system and
// not a failed write, so refusing would make the spool refuse every alarm
// on it for good while no retry could help, and the files' own data was
// fsynced already (an error there is never let pass). PostgreSQL, too, lets
// a directory pass whose fsync the system refuses (fsync_fname_ext, for
// EBADF and EINVAL). A file given to SyncDir is never let off so, nor is any
// other error (EIO is a write that failed).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = unsupportedDir(d, d.Sync())
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// unsupportedDir is SyncDir's tolerance: err from fsyncing d, or nil when d
// is a directory whose file system does not support that.
func unsupportedDir(d interface{ Stat() (fs.FileInfo, error) }, err error) error {
	if err == nil || !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	if fi, serr := d.Stat(); serr == nil && fi.IsDir() {
		return nil
	}
	return err
}

// writeTemp writes data to a new temporary file for path, fsyncs and
// closes it, and returns its name; on error nothing is left.
func writeTemp(path string, data []byte, o *Options) (string, error) {
	dir := o.TempDir
	if dir == "" {
		dir = filepath.Dir(path)
	}
	pattern := o.TempPattern
	if pattern == "" {
		pattern = "." + filepath.Base(path) + ".tmp-*"
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	err = o.prepare(f)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// prepare sets Perm and runs Setup on a new, empty file.
func (o *Options) prepare(f *os.File) error {
	if o.Perm != 0 {
		if err := f.Chmod(o.Perm); err != nil {
			return err
		}
	}
	if o.Setup != nil {
		return o.Setup(f)
	}
	return nil
}

// name runs the test hook before a file gets its name.
func (o *Options) name() error {
	if o.beforeName != nil {
		return o.beforeName()
	}
	return nil
}

// syncDir fsyncs path's directory unless the caller does (NoDirSync).
func (o *Options) syncDir(path string) error {
	if o.NoDirSync {
		return nil
	}
	return SyncDir(filepath.Dir(path))
}
