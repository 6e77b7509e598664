//go:build !linux

package spool

import "errors"

// watchSpool is Linux only (inotify); elsewhere the scan every
// queue.scan_every finds the flush marker and lists queue/ when its
// modification time changed.
func watchSpool(dir string, flush func(), changed func(ns []note, overflow bool), beforeRead func()) (stop func(), err error) {
	return nil, errors.New("no inotify")
}
