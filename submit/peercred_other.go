//go:build !linux

package submit

import (
	"errors"
	"net"
	"syscall"
)

var errConnRefused = syscall.ECONNREFUSED

// peerCred is implemented for Linux only, where the gateway runs; elsewhere
// every submission is refused rather than taken from an unknown user.
func peerCred(c *net.UnixConn) (Peer, error) {
	return Peer{}, errors.New("peer credentials are supported on Linux only")
}
