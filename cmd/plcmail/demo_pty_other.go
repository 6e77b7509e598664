//go:build !linux

package main

import (
	"errors"
	"os"
)

// openPTY is only implemented for Linux, where plcmail runs as a gateway.
func openPTY() (master, slave *os.File, slavePath string, err error) {
	return nil, nil, "", errors.New("demo: the virtual serial link needs Linux (run the demo in a Linux VM or container)")
}
