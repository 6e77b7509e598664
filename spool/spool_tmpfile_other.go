//go:build !linux

package spool

import "errors"

// writeLinked needs Linux's O_TMPFILE; elsewhere the spool writes a named
// temp file and renames it (tmpfileWorks reports false).
func writeLinked(final string, data []byte) error {
	return errors.New("O_TMPFILE is Linux only")
}

func tmpfileWorks(dir string) bool { return false }
