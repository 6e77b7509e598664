package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// openPTY makes a pseudo-terminal pair: the demo's simulated PLC talks on
// the master, the gateway opens the slave by its path as it would open
// /dev/ttyUSB0. The returned slave file is opened too, raw, and must stay
// open while the demo runs: it keeps the line discipline from echoing or
// translating the PLC's first bytes before the gateway sets the port up, and
// keeps the master readable when the gateway closes and reopens the port.
func openPTY() (master, slave *os.File, slavePath string, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, "", fmt.Errorf("pty: %w", err)
	}
	fail := func(e error) (*os.File, *os.File, string, error) {
		master.Close()
		return nil, nil, "", fmt.Errorf("pty: %w", e)
	}
	var n uint32
	var unlock int32
	if err := ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil { // unlockpt
		return fail(err)
	}
	if err := ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil { // ptsname
		return fail(err)
	}
	slavePath = fmt.Sprintf("/dev/pts/%d", n)
	slave, err = os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return fail(err)
	}
	var t syscall.Termios
	if err := ioctl(slave, syscall.TCGETS, unsafe.Pointer(&t)); err != nil {
		slave.Close()
		return fail(err)
	}
	makeRaw(&t)
	if err := ioctl(slave, syscall.TCSETS, unsafe.Pointer(&t)); err != nil {
		slave.Close()
		return fail(err)
	}
	return master, slave, slavePath, nil
}

// makeRaw is cfmakeraw(3).
func makeRaw(t *syscall.Termios) {
	t.Iflag &^= syscall.IGNBRK | syscall.BRKINT | syscall.PARMRK | syscall.ISTRIP | syscall.INLCR | syscall.IGNCR | syscall.ICRNL | syscall.IXON
	t.Oflag &^= syscall.OPOST
	t.Lflag &^= syscall.ECHO | syscall.ECHONL | syscall.ICANON | syscall.ISIG | syscall.IEXTEN
	t.Cflag &^= syscall.CSIZE | syscall.PARENB
	t.Cflag |= syscall.CS8
	t.Cc[syscall.VMIN], t.Cc[syscall.VTIME] = 1, 0
}

func ioctl(f *os.File, req uint, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}
