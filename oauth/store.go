package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/plcmail/plcmail/durable"
)

// Stored is the content of a token file: what `plcmail login` obtained and
// what every refresh since has returned. It holds secrets (the refresh
// token lets anyone send mail as the account) and is only ever written
// with mode 0600.
type Stored struct {
	Provider string `json:"provider"`
	ClientID string `json:"client_id"`
	// RefreshToken is the latest one the provider returned: Microsoft
	// rotates it on every refresh, and an old one may stop working.
	RefreshToken string    `json:"refresh_token"`
	AccessToken  string    `json:"access_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	// Updated is when the file was last written after a sign-in or a
	// successful refresh.
	Updated time.Time `json:"updated"`
	// LoginNeeded, when not empty, says why the refresh token stopped
	// working (the provider's invalid_grant), so that `plcmail status`
	// can tell without asking the provider. A successful refresh or a new
	// login clears it.
	LoginNeeded      string    `json:"login_needed,omitempty"`
	LoginNeededSince time.Time `json:"login_needed_since,omitzero"`
}

// ReadStore reads the token file at path. A missing file is
// fs.ErrNotExist; a file that group or others can read is refused, as
// config.CheckSecretFile refuses a password file.
func ReadStore(path string) (*Stored, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("token file %s is readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st Stored
	if err := json.Unmarshal(b, &st); err != nil {
		// Never quote the content: it may be a token.
		return nil, fmt.Errorf("token file %s is not valid (%d bytes); run plcmail login again", path, len(b))
	}
	return &st, nil
}

// WriteStore replaces the token file at path atomically
// (durable.WriteFile): a temporary file in the same directory is written
// with mode 0600, synced, renamed over path, and the directory synced, so
// that a crash at any point leaves either the old or the new file, never a
// torn one. The directory (one level, mode 0700) is created when missing;
// its parent must exist. When run as root the file is given to the
// directory's owner, the gateway's user, who must be able to read and
// rewrite it.
func WriteStore(path string, st *Stored) error {
	dir := filepath.Dir(path)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("token file directory: %w", err)
	} else if err == nil {
		giveToParentOwner(dir)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	// Temporary files of a writer that was killed: callers hold the
	// token file's lock, so none of them is being written now.
	if old, _ := filepath.Glob(filepath.Join(dir, "."+filepath.Base(path)+".tmp-*")); len(old) > 0 {
		for _, o := range old {
			os.Remove(o)
		}
	}
	// The pattern is the one the glob above cleans. Perm: CreateTemp makes
	// 0600 already, less the umask; set exactly because it is the point.
	// The file is given to the gateway's user before it is written, so
	// that its fsync covers the owner as well.
	return durable.WriteFile(path, b, durable.Options{
		TempPattern: "." + filepath.Base(path) + ".tmp-*",
		Perm:        0o600,
		Setup:       func(f *os.File) error { return giveToDirOwner(f, dir) },
	})
}
