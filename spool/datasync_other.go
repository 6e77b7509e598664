//go:build !linux

package spool

import "os"

// datasync is fsync where fdatasync is not known to exist.
func datasync(f *os.File) error { return f.Sync() }
