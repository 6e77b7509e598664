package bridge

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

// A second opener of the same device, even as root (whom TIOCEXCL does not
// stop), is refused with a clear error while the first holds the port, and
// gets it once the first closed it.
func TestSecondOpenerRefused(t *testing.T) {
	path := heldSlavePty(t)
	open := SerialOpener(Port{Device: path, Baud: 115200})
	first, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open(); !errors.Is(err, errPortBusy) {
		t.Fatalf("second open in this process: %v, want %v", err, errPortBusy)
	}
	// Another process: what a second `plcmail serve` on the same device is.
	if os.Getenv("PLCMAIL_TEST_LOCK_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSecondOpenerRefusedChild$")
		cmd.Env = append(os.Environ(), "PLCMAIL_TEST_LOCK_CHILD="+path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("child process: %v\n%s", err, out)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := open()
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	again.Close()
}

// TestSecondOpenerRefusedChild runs only as TestSecondOpenerRefused's child.
func TestSecondOpenerRefusedChild(t *testing.T) {
	path := os.Getenv("PLCMAIL_TEST_LOCK_CHILD")
	if path == "" {
		t.Skip("child of TestSecondOpenerRefused")
	}
	if _, err := SerialOpener(Port{Device: path, Baud: 115200})(); !errors.Is(err, errPortBusy) {
		t.Fatalf("open from a second process: %v, want %v", err, errPortBusy)
	}
}
