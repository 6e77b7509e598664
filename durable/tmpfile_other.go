//go:build !linux

package durable

import (
	"errors"
	"fmt"
)

// CreateNewTmpfile needs Linux's O_TMPFILE; elsewhere it fails (with an
// error matching errors.ErrUnsupported) and TmpfileWorks reports false, so
// callers use CreateNew or WriteFile.
func CreateNewTmpfile(path string, data []byte, o Options) error {
	return fmt.Errorf("O_TMPFILE is Linux only: %w", errors.ErrUnsupported)
}

// TmpfileWorks reports whether CreateNewTmpfile works in dir: never outside
// Linux.
func TmpfileWorks(dir string) bool { return false }
