package hosttest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/protocol"
)

// viaCommit added DELIVERY's optional via byte (SPEC.md 3.6) to the
// firmware; its parent is the last library that knows nothing of it.
const viaCommit = "79b3cc3e27e670c0fe330aed1c090a5f3d5cfa55"

// preViaLibrary unpacks firmware-sketch/ as it was before viaCommit from the
// repository's history and returns its directory.
func preViaLibrary(t *testing.T) string {
	t.Helper()
	need(t, "git", "tar")
	if err := exec.Command("git", "-C", repoDir, "cat-file", "-e", viaCommit+"^:firmware-sketch/src/PlcMail.cpp").Run(); err != nil {
		testenv.Missing(t, "%s", "the firmware before the via byte is not in this checkout's git history (a shallow clone? git fetch --unshallow)")
	}
	dir := t.TempDir()
	archive := exec.Command("git", "-C", repoDir, "archive", "--format=tar", viaCommit+"^", "firmware-sketch")
	untar := exec.Command("tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive: %v\n%s", err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	lib := filepath.Join(dir, "firmware-sketch")
	// The check that this really is the old library: its DELIVERY handling
	// has no via.
	src, err := os.ReadFile(filepath.Join(lib, "src", "PlcMail.cpp"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(src), "VIA") {
		t.Fatalf("the library at %s^ already handles via", viaCommit[:7])
	}
	return lib
}

// buildDeliveryReport builds extras/sketches/DeliveryReport for the
// ATmega2560 against the library in lib and returns the ELF.
func buildDeliveryReport(t *testing.T, lib string) string {
	t.Helper()
	need(t, "arduino-builder", "avr-g++", "avr-size", "arduino-ctags")
	if _, err := os.Stat("/usr/share/arduino/hardware/arduino/avr/platform.txt"); err != nil {
		testenv.Missing(t, "%s", "Arduino AVR core not installed (Debian: arduino-core-avr)")
	}
	dir := t.TempDir()
	ino := filepath.Join(fwDir, "extras", "sketches", "DeliveryReport", "DeliveryReport.ino")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(fwDir, "extras", "avr", "build.sh"), dir, "--one", ino,
		"arduino:avr:mega:cpu=atmega2560", "DeliveryReport@atmega2560")
	cmd.Env = append(os.Environ(), "PLCMAIL_LIBRARY_DIR="+lib)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building DeliveryReport against %s: %v\n%s", lib, err, out)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "DeliveryReport@atmega2560", "*.elf"))
	if len(matches) != 1 {
		t.Fatal("no ELF for DeliveryReport")
	}
	return matches[0]
}

// TestSimulatedDeliveryVia runs a sketch that prints every status the
// library reports, built against the library before DELIVERY's via byte
// existed and against this one, in simavr, and plays the gateway: the 3-byte
// DELIVERY the gateway sends for a mail, and the 4-byte ones it sends for a
// fallback channel (via >= 1). The old firmware takes the 4-byte frame as
// the DELIVERY it knows (it reads status and code and ignores the rest, as
// SPEC.md 3.6 requires of a receiver): a mail's PLCMAIL_DELIVERED with the
// HTTP status as code, which is why the gateway sends channel DELIVERYs
// only to a boot whose HELLO announced via (features bit 0), and the old
// library's HELLO does not; the new one announces it and reports the
// channel.
func TestSimulatedDeliveryVia(t *testing.T) {
	buildSim(t)
	const (
		queued, delivered, failed, viaChannel = 1, 2, 3, 6
	)
	for _, c := range []struct {
		name string
		lib  func(t *testing.T) string
		// what the sketch prints for a DELIVERY status 1, code 200, via 2
		viaReport string
		// the features byte of its HELLO (SPEC.md 3.1), by which the
		// gateway decides whether it gets the DELIVERYs of channels
		features uint8
	}{
		{"before via", preViaLibrary, fmt.Sprintf("%d 1 200", delivered), 0},
		{"with via", func(*testing.T) string { return fwDir }, fmt.Sprintf("%d 1 2", viaChannel), protocol.FeatureVia},
	} {
		t.Run(c.name, func(t *testing.T) {
			fw := buildDeliveryReport(t, c.lib(t))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			lines := make(chan string, 20)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					lines <- strings.TrimSpace(sc.Text())
				}
			}()
			s := startSim(t, "-t", ln.Addr().String(), fw)
			r := openPTY(t, s.pty)
			report := func(want string) {
				t.Helper()
				select {
				case got := <-lines:
					if got != "STATUS "+want {
						t.Fatalf("the sketch reported %q, want %q", got, "STATUS "+want)
					}
				case <-time.After(simTimeout):
					t.Fatalf("no report within %v, want %q", simTimeout, "STATUS "+want)
				}
			}
			hello := r.next(t, simTimeout)
			if hello.Type != protocol.TypeHello || hello.Seq != 1 || hello.NActive != 1 {
				t.Fatalf("first frame %+v, want a HELLO seq 1 with alarm 17 active", hello)
			}
			// The old library's HELLO has no features byte, so a gateway
			// sends it no channel DELIVERY (bridge's TestChannelDeliveryFrame);
			// this one announces via.
			if hello.Features != c.features {
				t.Fatalf("HELLO features %#x, want %#x", hello.Features, c.features)
			}
			// ACK its retransmission (about 1 s later): by then plcsim has
			// connected UART1 (after 100 ms simulated), so no report is lost.
			if again := r.next(t, simTimeout); again.Type != protocol.TypeHello || again.Seq != 1 {
				t.Fatalf("got %+v, want the HELLO retransmitted", again)
			}
			r.ack(t, hello)
			report(fmt.Sprintf("%d 1 0", queued))
			send := func(status protocol.DeliveryStatus, code uint16, via uint8) {
				t.Helper()
				d := protocol.Frame{Type: protocol.TypeDelivery, Boot: hello.Boot, Seq: 1, Status: status, SMTPCode: code, Via: via}
				if err := protocol.WriteFrame(r.f, &d); err != nil {
					t.Fatal(err)
				}
			}
			send(protocol.DeliveryAccepted, 200, 2) // the channel's, 4 bytes
			report(c.viaReport)
			send(protocol.DeliveryFailed, 550, 0) // the mail's, 3 bytes
			report(fmt.Sprintf("%d 1 550", failed))
			// The 3-byte frame after the 4-byte one was reported: the
			// receiver lost no sync. Nothing the firmware sent was bad.
			select {
			case err := <-r.errs:
				t.Fatalf("the firmware sent a bad frame: %v", err)
			default:
			}
		})
	}
}
