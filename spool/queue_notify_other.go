//go:build !linux

package spool

import "errors"

// watchFlush is Linux only (inotify); elsewhere the scan every
// queue.scan_every finds the flush marker.
func watchFlush(dir string, wake func()) (stop func(), err error) {
	return nil, errors.New("no inotify")
}
