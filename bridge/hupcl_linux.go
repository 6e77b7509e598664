package bridge

import "golang.org/x/sys/unix"

// keepDTR clears HUPCL on the tty at path, so that closing the port (a
// gateway restart or reload) leaves DTR asserted and the next open finds
// it already up. An Arduino's auto-reset fires on DTR's edge, so only the
// very first open after the board's USB enumeration resets it; Linux
// itself raises DTR on every open, which cannot be avoided. Errors are
// ignored: the port may be a pty or a device without modem lines, and
// serial.Open reports a real problem next.
func keepDTR(path string) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil || t.Cflag&unix.HUPCL == 0 {
		return
	}
	t.Cflag &^= unix.HUPCL
	unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
