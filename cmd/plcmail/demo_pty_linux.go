package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openPTY makes a pseudo-terminal pair: the demo's simulated PLC talks on
// the master, the gateway opens the slave by its path as it would open
// /dev/ttyUSB0. The returned slave file is opened too, raw, and must stay
// open while the demo runs: it keeps the line discipline from echoing or
// translating the PLC's first bytes before the gateway sets the port up, and
// keeps the master readable when the gateway closes and reopens the port.
func openPTY() (master, slave *os.File, slavePath string, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, "", fmt.Errorf("pty: %w", err)
	}
	var n uint32
	err = control(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt(3)
			return err
		}
		n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN) // ptsname(3)
		return err
	})
	if err != nil {
		master.Close()
		return nil, nil, "", fmt.Errorf("pty: %w", err)
	}
	slavePath = fmt.Sprintf("/dev/pts/%d", n)
	slave, err = os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err == nil {
		err = control(slave, func(fd int) error {
			t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
			if err != nil {
				return err
			}
			makeRaw(t)
			return unix.IoctlSetTermios(fd, unix.TCSETS, t)
		})
		if err != nil {
			slave.Close()
		}
	}
	if err != nil {
		master.Close()
		return nil, nil, "", fmt.Errorf("pty: %w", err)
	}
	return master, slave, slavePath, nil
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

// control runs f on f's descriptor without taking it out of the runtime's
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
