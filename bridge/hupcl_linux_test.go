package bridge

import (
	"testing"

	"golang.org/x/sys/unix"
)

// The port the gateway opened keeps HUPCL off afterwards, so closing it (a
// restart) does not drop DTR, whose next rise would reset an Arduino.
func TestOpenClearsHUPCL(t *testing.T) {
	path := heldSlavePty(t)
	hupcl := func() bool {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tio.Cflag&unix.HUPCL != 0
	}
	// Set it first, as a fresh USB tty has it.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	tio, _ := unix.IoctlGetTermios(fd, unix.TCGETS)
	tio.Cflag |= unix.HUPCL
	unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	unix.Close(fd)
	if !hupcl() {
		t.Fatal("could not set HUPCL on the pty")
	}
	port, err := SerialOpener(Port{Device: path, Baud: 115200, DataBits: 8})()
	if err != nil {
		t.Fatal(err)
	}
	port.Close()
	if hupcl() {
		t.Error("HUPCL still set after the gateway opened the port: a restart would reset the board")
	}
}
