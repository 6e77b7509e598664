package bridge

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
)

// Opener opens a link's port. The bridge calls it again after every link
// error, so it must find the device anew each time (a USB adapter may come
// back under another name). Close must make a pending Read return.
type Opener func() (io.ReadWriteCloser, error)

// readTimeout bounds each Read on a real serial port so that a reader
// goroutine notices a closed port promptly.
const readTimeout = 200 * time.Millisecond

// errNoDevice means the configured device is not present (unplugged).
var errNoDevice = errors.New("device not present")

// Port says which serial port a link opens and how. It is comparable: a
// reload that changes it makes the link reopen its port.
type Port struct {
	// Device is the port's path. Empty: the USB adapter matching the ids
	// below, looked up at every open (its name may change on replug).
	Device                    string
	USBVID, USBPID, USBSerial string // hex ids, and the iSerial string
	Baud                      int
	DataBits                  int    // 5..8
	Parity                    string // none | odd | even | mark | space; "" is none
	StopBits                  string // 1 | 1.5 | 2; "" is 1
}

// SerialOpener returns the Opener for s using go.bug.st/serial.
// It never touches the modem-control lines: setting DTR is what resets an
// Arduino, and the ioctls fail on ptys anyway.
func SerialOpener(s Port) Opener {
	return func() (io.ReadWriteCloser, error) {
		path, err := resolvePort(s)
		if err != nil {
			return nil, err
		}
		mode, err := serialMode(s)
		if err != nil {
			return nil, err
		}
		lock, err := lockPort(path)
		if err != nil {
			return nil, err
		}
		keepDTR(path) // a later close and reopen does not reset an Arduino
		p, err := serial.Open(path, mode)
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		if err := p.SetReadTimeout(readTimeout); err != nil {
			p.Close()
			lock.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		return lockedPort{p, lock}, nil
	}
}

// lockedPort is an open serial port with the lock that keeps a second
// process off it (lockPort); closing the port releases the lock.
type lockedPort struct {
	serial.Port
	lock io.Closer
}

func (p lockedPort) Close() error {
	err := p.Port.Close()
	p.lock.Close()
	return err
}

// portName describes where a link's port is, for logs and status.
func portName(s Port) string {
	if s.Device != "" {
		return s.Device
	}
	var parts []string
	if s.USBVID != "" {
		parts = append(parts, "vid="+s.USBVID)
	}
	if s.USBPID != "" {
		parts = append(parts, "pid="+s.USBPID)
	}
	if s.USBSerial != "" {
		parts = append(parts, "serial="+s.USBSerial)
	}
	return "usb:" + strings.Join(parts, ",")
}

func resolvePort(s Port) (string, error) {
	if s.Device != "" {
		return s.Device, nil
	}
	ports, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return "", fmt.Errorf("list USB serial ports: %w", err)
	}
	norm := func(id string) string { return strings.TrimPrefix(strings.ToLower(id), "0x") }
	for _, p := range ports {
		if !p.IsUSB {
			continue
		}
		if s.USBVID != "" && norm(p.VID) != norm(s.USBVID) {
			continue
		}
		if s.USBPID != "" && norm(p.PID) != norm(s.USBPID) {
			continue
		}
		if s.USBSerial != "" && p.SerialNumber != s.USBSerial {
			continue
		}
		return p.Name, nil
	}
	return "", fmt.Errorf("%s: %w", portName(s), errNoDevice)
}

func serialMode(s Port) (*serial.Mode, error) {
	m := &serial.Mode{BaudRate: s.Baud, DataBits: s.DataBits}
	switch s.Parity {
	case "none", "":
		m.Parity = serial.NoParity
	case "odd":
		m.Parity = serial.OddParity
	case "even":
		m.Parity = serial.EvenParity
	case "mark":
		m.Parity = serial.MarkParity
	case "space":
		m.Parity = serial.SpaceParity
	default:
		return nil, fmt.Errorf("parity %q", s.Parity)
	}
	switch s.StopBits {
	case "1", "":
		m.StopBits = serial.OneStopBit
	case "1.5":
		m.StopBits = serial.OnePointFiveStopBits
	case "2":
		m.StopBits = serial.TwoStopBits
	default:
		return nil, fmt.Errorf("stop_bits %q", s.StopBits)
	}
	return m, nil
}
