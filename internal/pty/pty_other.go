//go:build !linux

package pty

import (
	"errors"
	"os"
)

// ErrUnsupported is returned by Open outside Linux.
var ErrUnsupported = errors.New("pty: the virtual serial link needs Linux (run it in a Linux VM or container)")

// Pair is an open pseudo-terminal pair.
type Pair struct {
	// Master is the PLC's end.
	Master *os.File
	// Path is the slave's device path.
	Path string
}

// Open fails outside Linux.
func Open() (*Pair, error) { return nil, ErrUnsupported }

// HoldSlave fails outside Linux.
func (p *Pair) HoldSlave() error { return ErrUnsupported }

// Close does nothing outside Linux.
func (p *Pair) Close() error { return nil }
