package pty

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Pair is an open pseudo-terminal pair.
type Pair struct {
	// Master is the PLC's end. It is in the runtime's poller, so read
	// deadlines work on it.
	Master *os.File
	// Path is the slave's device path (/dev/pts/N), for the gateway.
	Path string

	slave *os.File
}

// Open makes a new pair. Only the master is open; see HoldSlave.
func Open() (*Pair, error) {
	// os.OpenFile, unlike os.NewFile on a raw descriptor, registers the
	// master with the poller, which is what makes deadlines work.
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("pty: %w", err)
	}
	var n uint32
	err = control(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt(3)
			return err
		}
		n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN) // ptsname(3)
		return err
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("pty: %w", err)
	}
	return &Pair{Master: m, Path: fmt.Sprintf("/dev/pts/%d", n)}, nil
}

// HoldSlave opens the slave too, in raw mode, and keeps it open until Close.
// That keeps the line discipline from echoing or translating the PLC's first
// bytes before the gateway sets the port up, and keeps the master readable
// while the gateway closes and reopens the port (with no slave open, reads
// on the master fail with EIO).
func (p *Pair) HoldSlave() error {
	if p.slave != nil {
		return nil
	}
	s, err := os.OpenFile(p.Path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("pty: %w", err)
	}
	err = control(s, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		makeRaw(t)
		return unix.IoctlSetTermios(fd, unix.TCSETS, t)
	})
	if err != nil {
		s.Close()
		return fmt.Errorf("pty: %w", err)
	}
	p.slave = s
	return nil
}

// Close closes the master and, after HoldSlave, the slave.
func (p *Pair) Close() error {
	var errs []error
	if p.slave != nil {
		errs = append(errs, p.slave.Close())
	}
	errs = append(errs, p.Master.Close())
	return errors.Join(errs...)
}

// makeRaw is cfmakeraw(3).
func makeRaw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
}

// control runs fn on f's descriptor without taking it out of the runtime's
// poller (File.Fd would make it blocking).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
