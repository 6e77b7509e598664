package bridge

import (
	"errors"
	"testing"

	"go.bug.st/serial"
)

func TestSerialMode(t *testing.T) {
	m, err := serialMode(Port{Baud: 9600, DataBits: 7, Parity: "even", StopBits: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if m.BaudRate != 9600 || m.DataBits != 7 || m.Parity != serial.EvenParity || m.StopBits != serial.TwoStopBits {
		t.Errorf("mode %+v", m)
	}
	if m.InitialStatusBits != nil {
		t.Error("opening must not touch DTR/RTS (Arduino reset; ptys refuse the ioctl)")
	}
	if _, err := serialMode(Port{Parity: "odd-ish"}); err == nil {
		t.Error("bad parity accepted")
	}
}

// A USB id that matches nothing is "device not present", which the link
// treats like an unplugged cable: retry with backoff.
func TestResolveUSBNotPresent(t *testing.T) {
	_, err := resolvePort(Port{USBVID: "fffe", USBPID: "0001", USBSerial: "no-such-board"})
	if !errors.Is(err, errNoDevice) {
		t.Skipf("USB enumeration unavailable here: %v", err)
	}
	if got := portName(Port{USBVID: "2341", USBPID: "0043"}); got != "usb:vid=2341,pid=0043" {
		t.Errorf("portName = %q", got)
	}
}
