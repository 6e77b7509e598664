package hosttest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
			// sends it no channel DELIVERY (bridge's TestChannelDeliveryFrame,
			// TestSimulatedChannelsThroughGateway); this one announces via.
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

// TestSimulatedChannelsThroughGateway runs the DeliveryReport sketch, built
// against the library before DELIVERY's via byte and against this one, in
// simavr on a link of the real `plcmail serve`, whose [[channel]] webhook
// (a loopback HTTP server answering 200) carries critical alarms. The
// sketch raises critical alarm 18 (seq 2) after its HELLO. Both get the
// mail's DELIVERY (PLCMAIL_DELIVERED 250); only this library, whose HELLO
// announces via (SPEC.md 3.1), gets the channel's (PLCMAIL_VIA_CHANNEL 1).
// The old one gets none: had the gateway sent it, the old library would
// report a PLCMAIL_DELIVERED 200 the mail server never gave.
func TestSimulatedChannelsThroughGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 20 s of real time")
	}
	buildSim(t)
	const queued, delivered, viaChannel = 1, 2, 6
	for _, c := range []struct {
		name        string
		lib         func(t *testing.T) string
		wantChannel bool
	}{
		{"before via", preViaLibrary, false},
		{"with via", func(*testing.T) string { return fwDir }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fw := buildDeliveryReport(t, c.lib(t))
			var posts atomic.Int32
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				posts.Add(1)
				w.WriteHeader(http.StatusOK)
			}))
			t.Cleanup(hook.Close)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			var mu sync.Mutex
			var reports []string
			var connected atomic.Bool // plcsim connected UART1 (after 100 ms simulated)
			got := func(want string) bool {
				mu.Lock()
				defer mu.Unlock()
				return slices.Contains(reports, "STATUS "+want)
			}
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				connected.Store(true)
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					mu.Lock()
					reports = append(reports, strings.TrimSpace(sc.Text()))
					mu.Unlock()
				}
			}()
			dir := t.TempDir()
			tty := filepath.Join(dir, "ttyPLC")
			s := startSim(t, "-l", tty, "-t", ln.Addr().String(), fw)
			g, up := startGatewayWith(t, dir, tty, fmt.Sprintf(`
[[channel]]
name = "hook"
kind = "webhook"
url  = %q
severity_at_least = "critical"
`, hook.URL))
			waitFor := func(what string, cond func() bool) {
				t.Helper()
				deadline := time.Now().Add(60 * time.Second)
				for !cond() {
					if time.Now().After(deadline) {
						mu.Lock()
						defer mu.Unlock()
						t.Fatalf("no %s within 60 s; the sketch reported %q; webhook posted %d times", what, reports, posts.Load())
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			// The HELLO's reconciliation mail (alarm 17) arrived and UART1
			// is connected: every report from now on reaches the test. (The
			// HELLO's own may have come before UART1 was there.)
			waitFor("the HELLO's mail and UART1", func() bool { return connected.Load() && len(up.subjects()) > 0 })
			s.pin("E4", 1)
			waitFor("ACK of alarm 18", func() bool { return got(fmt.Sprintf("%d 2 0", queued)) })
			waitFor("webhook post", func() bool { return posts.Load() > 0 })
			waitFor("DELIVERY of alarm 18's mail", func() bool { return got(fmt.Sprintf("%d 2 250", delivered)) })
			if c.wantChannel {
				waitFor("channel DELIVERY of alarm 18", func() bool { return got(fmt.Sprintf("%d 2 1", viaChannel)) })
				return
			}
			// The gateway logs that it keeps the channel's DELIVERY back;
			// had it sent the frame instead, the old library reports it as
			// the mail's: PLCMAIL_DELIVERED with the HTTP status, 200.
			misled := func() bool {
				return got(fmt.Sprintf("%d 2 200", delivered)) || got(fmt.Sprintf("%d 2 1", viaChannel))
			}
			waitFor("the gateway to keep the channel DELIVERY back", func() bool {
				return misled() || strings.Contains(g.logs.String(), "channel delivery not sent")
			})
			time.Sleep(500 * time.Millisecond) // a report on its way through UART1 and TCP
			if misled() {
				mu.Lock()
				defer mu.Unlock()
				t.Errorf("the old library got a channel's DELIVERY; it reported %q", reports)
			}
		})
	}
}
