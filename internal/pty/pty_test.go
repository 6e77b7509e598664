package pty

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestMasterDeadlineAndRawSlave checks the two things the users rely on:
// read deadlines work on the master (the bridge tests' PLC reads with
// them), and bytes pass raw both ways once HoldSlave set the slave up (no
// CR/LF translation, no echo).
func TestMasterDeadlineAndRawSlave(t *testing.T) {
	p, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.HoldSlave(); err != nil {
		t.Fatal(err)
	}

	p.Master.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := p.Master.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a silent master: %d bytes, err %v; want a deadline error", n, err)
	}

	gw, err := os.OpenFile(p.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	frame := []byte{0x00, 'a', '\r', '\n', 0x03, 0xff, 0x00}
	if _, err := p.Master.Write(frame); err != nil {
		t.Fatal(err)
	}
	got := readN(t, gw, len(frame))
	if string(got) != string(frame) {
		t.Errorf("slave read %q, want %q", got, frame)
	}
	if _, err := gw.Write(frame); err != nil {
		t.Fatal(err)
	}
	p.Master.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got := readN(t, p.Master, len(frame)); string(got) != string(frame) {
		t.Errorf("master read %q, want %q (an echo would show up here first)", got, frame)
	}
}

// TestHoldSlaveKeepsMasterReadable: the gateway closes and reopens its port;
// meanwhile the PLC's reads must time out, not fail.
func TestHoldSlaveKeepsMasterReadable(t *testing.T) {
	for _, hold := range []bool{false, true} {
		p, err := Open()
		if err != nil {
			t.Fatal(err)
		}
		if hold {
			if err := p.HoldSlave(); err != nil {
				t.Fatal(err)
			}
		}
		gw, err := os.OpenFile(p.Path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		gw.Close()
		p.Master.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err = p.Master.Read(make([]byte, 8))
		if timedOut := errors.Is(err, os.ErrDeadlineExceeded); timedOut != hold {
			t.Errorf("HoldSlave %v: read after the gateway closed: %v", hold, err)
		}
		p.Close()
	}
}

func readN(t *testing.T, f *os.File, n int) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 64)
	for len(got) < n {
		k, err := f.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, buf[:k]...)
	}
	return got
}
