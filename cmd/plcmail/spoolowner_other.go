//go:build !linux

package main

// actAsSpoolOwner is Linux-only (see spoolowner_linux.go); elsewhere the
// commands run as whoever started them.
func actAsSpoolOwner(dir string) error { return nil }

// mayWriteSpool: without the spool's owner to act as, try the spool directly.
func mayWriteSpool(dir string) bool { return true }
