package bridge

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// errPortBusy says another process holds the lock on the port: a second
// gateway, or a terminal program that locks too (picocom). Two readers on one serial line each take part of the
// frames, and the ACKs of the other one reach the PLC: alarms then land in
// a spool nobody delivers. go.bug.st/serial sets TIOCEXCL, but root (the
// usual service user on a router) passes that check; flock does not care.
var errPortBusy = errors.New("in use by another process (a second plcmail, or a program such as picocom); stop it first")

// lockPort takes an exclusive advisory lock on the device at path, held
// until the returned closer is closed. The lock lives on its own file
// descriptor, so the port's own descriptor stays as the serial library
// made it.
func lockPort(path string) (io.Closer, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("open %s: %w", path, errPortBusy)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return fdCloser(fd), nil
}

type fdCloser int

func (c fdCloser) Close() error { return unix.Close(int(c)) }
