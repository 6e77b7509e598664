package hosttest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/smtpd"
	"github.com/plcmail/plcmail/spool"
)

// Footprint limits, checked against the size-reference sketches built with
// the same core (see extras/avr/build.sh): the cost of the library itself,
// not of the serial port every sketch already has.
// Raised in issue 16: the sender by about 520 bytes for boot ids that never
// repeat (random start, EEPROM wear limit), the SMTP client by about 1150
// for RFC 5321/6152/2047 (8BITMIME or quoted-printable, encoded subjects,
// 998-octet lines, address checks, per-recipient refusals, 32-bit timeouts).
// Lowered in issue 16's footprint work (3504/289 -> 3012/221 on the 2560:
// streaming receiver, 16-bit timers, smaller boot-id code), then to issue
// 16's goal, 2560 B of flash and 250 B of RAM on the 2560, which is met
// (2530/217 with DELIVERY's via byte and HELLO's features byte: one sendFrame for all frames, packed
// event values, members through `this` where smaller, 16-bit uptime, CRC
// jitter; firmware-sketch/README.md "Footprint"). The 328P's core costs
// the library about 60 bytes more.
const (
	senderFlashLimit2560 = 2560 // the goal; 2530 now
	senderFlashLimit328P = 2624 // 2592 now
	senderRAMLimit       = 232  // 217 now (the goal: 250)
	smtpFlashLimit       = 3584
)

var (
	fwDir   string // firmware-sketch/
	repoDir string // the Go module root
	workDir string // build products shared by the tests of this run
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	fwDir = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	repoDir = filepath.Dir(fwDir)
	var err error
	workDir, err = os.MkdirTemp("", "plcmail-firmware-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(workDir)
	testenv.RemoveBuilds()
	os.Exit(code)
}

// need skips the test when a tool is missing, or fails it under CI.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s", fmt.Sprintf("%s not found (Debian packages: g++ make gcc-avr avr-libc arduino-core-avr arduino-builder simavr libsimavr-dev python3-aiosmtpd)", tool))
		}
	}
}

// run runs a command and returns its combined output; a failure fails the
// test with that output.
func run(t *testing.T, timeout time.Duration, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// onceResult memoises one build per test binary run.
type onceResult struct {
	once sync.Once
	val  string
	err  error
}

func (o *onceResult) get(t *testing.T, build func() (string, error)) string {
	t.Helper()
	o.once.Do(func() { o.val, o.err = build() })
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.val
}

var avrBuild, simBuild onceResult

func hostMake(t *testing.T, target string) string {
	t.Helper()
	need(t, "g++", "make")
	return run(t, 3*time.Minute, filepath.Join(fwDir, "extras", "test"), "make", "--no-print-directory",
		"OUT="+filepath.Join(workDir, "host"), target)
}

func TestCodecVectors(t *testing.T) {
	out := hostMake(t, "protocol")
	t.Log(lastLines(out, 3))
	if !strings.Contains(out, "PASS (") {
		t.Fatalf("no PASS line:\n%s", out)
	}
}

func TestSenderStateMachine(t *testing.T) {
	out := hostMake(t, "sender")
	t.Log(lastLines(out, 14))
}

func python(t *testing.T) string {
	// Debian's python3-aiosmtpd is installed for /usr/bin/python3; a
	// python3 earlier on PATH (pyenv, venv) may not see it.
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	need(t, "python3")
	return "python3"
}

// TestSMTPClient runs the host build of PlcMailSmtp against servers that
// refuse each step, against aiosmtpd, and against the real plcmail listener,
// whose spool must then hold the message.
func TestSMTPClient(t *testing.T) {
	py := python(t)
	hostMake(t, "smtp-client")
	exe := filepath.Join(workDir, "host", "test_smtp")

	g := startListener(t)
	args := []string{filepath.Join(fwDir, "extras", "test", "run_smtp_tests.py"), exe, "--server", g.addr}
	if os.Getenv("CI") != "" {
		args = append(args, "--require-aiosmtpd")
	}
	out := run(t, 2*time.Minute, fwDir, py, args...)
	t.Log(out)
	if strings.Contains(out, "skip aiosmtpd") {
		t.Log("aiosmtpd not installed: that part was skipped")
	}
	data := g.message(t, "Subject: Pump 3  Bcc: evil@example.com\r\n", "\r\n.leading dot\r\n", "\r\n.\r\nline after a lone dot\r\n")
	if strings.Contains(string(data), "\nBcc:") {
		t.Errorf("the subject injected a header:\n%s", data)
	}
}

// listener is the real plcmail SMTP listener (package smtpd) with a real
// spool, on 127.0.0.1:0.
type listener struct {
	addr  string
	port  int
	spool *spool.Spool
}

func startListener(t *testing.T) *listener {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), log)
	if err != nil {
		t.Fatal(err)
	}
	// What plcmail serve makes of [smtp] with listen 127.0.0.1:0,
	// allowed_networks 127.0.0.0/8 and every other key at its default.
	srv, err := smtpd.New(smtpd.Options{
		Listen:              []string{"127.0.0.1:0"},
		AllowedNetworks:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MaxMessageBytes:     config.DefaultSMTPMaxMessageBytes,
		MaxRecipients:       config.DefaultSMTPMaxRecipients,
		MaxConnections:      config.DefaultSMTPMaxConnections,
		MaxConnectionsPerIP: config.DefaultSMTPMaxConnectionsPerIP,
		CommandTimeout:      config.DefaultSMTPCommandTimeout,
		DataTimeout:         config.DefaultSMTPDataTimeout,
		MaxLineLength:       config.DefaultSMTPMaxLineLength,
		Hostname:            "gw.test",
		Fallback:            "gateway@example.com",
	}, sp, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &listener{addr: l.Addr().String(), port: l.Addr().(*net.TCPAddr).Port, spool: sp}
}

func (g *listener) waitMessages(t *testing.T, n int, timeout time.Duration) []spool.Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs, err := g.spool.List()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) >= n || time.Now().After(deadline) {
			if len(msgs) != n {
				t.Fatalf("spool holds %d messages, want %d", len(msgs), n)
			}
			return msgs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// message waits for the spool to hold exactly one message, checks that it
// contains every want and returns it.
func (g *listener) message(t *testing.T, wants ...string) []byte {
	t.Helper()
	msgs := g.waitMessages(t, 1, 5*time.Second)
	_, data, err := g.spool.ReadMessage(msgs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range wants {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("queued message lacks %q:\n%s", want, data)
		}
	}
	return data
}

// simTimeout bounds waits for the simulated chip. plcsim holds it to real
// time, but on a loaded machine it may fall behind; only a failure waits
// this long.
const simTimeout = 20 * time.Second

var sizeLine = regexp.MustCompile(`(?m)^SIZE (\S+) (\S+) (\d+) (\d+)$`)

// buildAVR compiles the examples and reference sketches for the ATmega2560
// and ATmega328P once per run and returns the build directory.
func buildAVR(t *testing.T) string {
	t.Helper()
	need(t, "arduino-builder", "avr-g++", "avr-size", "arduino-ctags")
	if _, err := os.Stat("/usr/share/arduino/hardware/arduino/avr/platform.txt"); err != nil {
		testenv.Missing(t, "%s", "Arduino AVR core not installed (Debian: arduino-core-avr)")
	}
	return avrBuild.get(t, func() (string, error) {
		dir := filepath.Join(workDir, "avr")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "bash", filepath.Join(fwDir, "extras", "avr", "build.sh"), dir).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("AVR build: %v\n%s", err, out)
		}
		os.WriteFile(filepath.Join(dir, "sizes.txt"), out, 0o644)
		return dir, nil
	})
}

// TestAVRFootprint builds everything for AVR and reports flash and RAM use;
// the output is printed so that CI logs show a regression.
func TestAVRFootprint(t *testing.T) {
	dir := buildAVR(t)
	out, err := os.ReadFile(filepath.Join(dir, "sizes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	type size struct{ flash, ram int }
	sizes := map[string]size{}
	for _, m := range sizeLine.FindAllStringSubmatch(string(out), -1) {
		f, _ := strconv.Atoi(m[3])
		r, _ := strconv.Atoi(m[4])
		sizes[m[1]+"@"+m[2]] = size{f, r}
	}
	var report strings.Builder
	fmt.Fprintf(&report, "AVR footprint (bytes; flash = .text+.data, RAM = .data+.bss):\n")
	fmt.Fprintf(&report, "  %-34s %7s %6s\n", "sketch@mcu", "flash", "RAM")
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if m := sizeLine.FindStringSubmatch(line); m != nil {
			fmt.Fprintf(&report, "  %-34s %7s %6s\n", m[1]+"@"+m[2], m[3], m[4])
		} else if strings.HasPrefix(line, "SKIP") {
			fmt.Fprintf(&report, "  %s\n", line)
		}
	}
	check := func(what, with, without string, flashLimit, ramLimit int) {
		a, okA := sizes[with]
		b, okB := sizes[without]
		if !okA || !okB {
			t.Errorf("missing size for %s or %s", with, without)
			return
		}
		df, dr := a.flash-b.flash, a.ram-b.ram
		e := sizes["Empty@"+strings.SplitN(with, "@", 2)[1]]
		fmt.Fprintf(&report, "  %-34s %+7d %+6d  (vs %s; vs an empty sketch %+d / %+d)\n", what, df, dr, without, a.flash-e.flash, a.ram-e.ram)
		if flashLimit > 0 && df > flashLimit {
			t.Errorf("%s: %d bytes of flash, limit %d", what, df, flashLimit)
		}
		if ramLimit > 0 && dr > ramLimit {
			t.Errorf("%s: %d bytes of RAM, limit %d", what, dr, ramLimit)
		}
	}
	for _, m := range []struct {
		mcu         string
		senderFlash int
	}{{"atmega2560", senderFlashLimit2560}, {"atmega328p", senderFlashLimit328P}} {
		check("alarm sender @"+m.mcu, "UsbSerialAlarms@"+m.mcu, "SenderBaseline@"+m.mcu, m.senderFlash, senderRAMLimit)
		check("SMTP client @"+m.mcu, "SmtpOverSerial@"+m.mcu, "SmtpBaseline@"+m.mcu, smtpFlashLimit, 0)
	}
	fmt.Fprintf(&report, "  goal (issue 16, enforced): alarm sender @atmega2560 <= 2560 B flash, <= 250 B RAM\n")
	t.Log(report.String())
	announce(report.String())
}

// announce prints s on stdout (seen with go test -v) and, under CI, also on
// the go command's own stderr: in package list mode (`go test ./...`) go
// test shows nothing of a passing package, but the footprint should be in
// every CI log so that a creeping regression is noticed before it fails.
func announce(s string) {
	fmt.Print(s)
	if os.Getenv("CI") == "" {
		return
	}
	path := fmt.Sprintf("/proc/%d/fd/2", os.Getppid())
	// Only to a pipe or terminal: a regular file opened anew would have its
	// own offset and overwrite what go test writes to it.
	if fi, err := os.Stat(path); err != nil || fi.Mode()&(os.ModeNamedPipe|os.ModeCharDevice|os.ModeSocket) == 0 {
		return
	}
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		f.WriteString(s)
		f.Close()
	}
}

// buildSim builds the simavr harness once per run.
func buildSim(t *testing.T) string {
	t.Helper()
	need(t, "cc", "make")
	if _, err := os.Stat("/usr/include/simavr/sim_avr.h"); err != nil {
		testenv.Missing(t, "%s", "simavr headers not installed (Debian: libsimavr-dev)")
	}
	return simBuild.get(t, func() (string, error) {
		out := filepath.Join(workDir, "sim")
		cmd := exec.Command("make", "--no-print-directory", "-C", filepath.Join(fwDir, "extras", "simavr"), "OUT="+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building plcsim: %v\n%s", err, b)
		}
		return filepath.Join(out, "plcsim"), nil
	})
}

func buildGateway(t *testing.T) string {
	t.Helper()
	return testenv.BuildPlcmail(t)
}

// sim is one run of plcsim: a simulated ATmega2560 with UART0 on a pty.
type sim struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	pty    string
	stdout chan string // further lines of plcsim's stdout
	done   chan struct{}
}

func startSim(t *testing.T, args ...string) *sim {
	t.Helper()
	exe := buildSim(t)
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // never outlive the test (an orphan on a reused pty steals frames)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sim{t: t, cmd: cmd, stdin: stdin, stdout: make(chan string, 100), done: make(chan struct{})}
	ptyc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if p, ok := strings.CutPrefix(line, "PTY "); ok {
				ptyc <- p
				continue
			}
			select {
			case s.stdout <- line:
			default:
			}
		}
		close(s.stdout)
	}()
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("plcsim stderr:\n%s", stderr.String())
		}
	})
	if hasArg(args, "-x") {
		return s
	}
	select {
	case s.pty = <-ptyc:
	case <-s.done:
		t.Fatalf("plcsim exited: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("plcsim printed no PTY line")
	}
	return s
}

func hasArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// pin drives an input pin of the simulated chip, e.g. pin("E4", 0).
func (s *sim) pin(name string, v int) {
	s.t.Helper()
	if _, err := fmt.Fprintf(s.stdin, "pin %s %d\n", name, v); err != nil {
		s.t.Fatalf("plcsim: %v", err)
	}
}

// stop ends the simulation; plcsim saves the EEPROM on the way out.
func (s *sim) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	fmt.Fprintln(s.stdin, "quit")
	s.stdin.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// frameReader decodes what the simulated PLC sends, with the gateway's own
// Go codec.
type frameReader struct {
	f      *os.File
	frames chan protocol.Frame
	errs   chan error

	mu  sync.Mutex
	raw []byte // everything received, for `plcmail decode`
}

func (r *frameReader) capture() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.raw...)
}

func openPTY(t *testing.T, path string) *frameReader {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := &frameReader{f: f, frames: make(chan protocol.Frame, 100), errs: make(chan error, 100)}
	// PLCMAIL_TEST_READ_STALL_MS: pause the reader now and then, as a
	// starved test process would (an experiment for flaky runs under load).
	stall, _ := strconv.Atoi(os.Getenv("PLCMAIL_TEST_READ_STALL_MS"))
	go func() {
		d := protocol.NewDecoder()
		buf := make([]byte, 256)
		for i := 0; ; i++ {
			if stall > 0 && i%7 == 0 {
				time.Sleep(time.Duration(i*7919%stall) * time.Millisecond)
			}
			n, err := f.Read(buf)
			if n > 0 {
				r.mu.Lock()
				r.raw = append(r.raw, buf[:n]...)
				r.mu.Unlock()
				d.Feed(buf[:n], func(fr *protocol.Frame, err error) {
					if err != nil {
						r.errs <- err
						return
					}
					r.frames <- *fr
				})
			}
			if err != nil {
				close(r.frames)
				return
			}
		}
	}()
	t.Cleanup(func() { f.Close() })
	return r
}

// next returns the next frame that is not a heartbeat.
func (r *frameReader) next(t *testing.T, timeout time.Duration) protocol.Frame {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-r.frames:
			if !ok {
				t.Fatal("pty closed")
			}
			if f.Type != protocol.TypeHeartbeat {
				return f
			}
		case err := <-r.errs:
			t.Fatalf("the firmware sent a bad frame: %v", err)
		case <-deadline:
			t.Fatalf("no frame within %v", timeout)
		}
	}
}

func (r *frameReader) ack(t *testing.T, f protocol.Frame) {
	t.Helper()
	a := protocol.Frame{Type: protocol.TypeAck, Boot: f.Boot, Seq: f.Seq, AckResult: protocol.AckQueued}
	if err := protocol.WriteFrame(r.f, &a); err != nil {
		t.Fatal(err)
	}
}

func elf(t *testing.T, name string) string {
	t.Helper()
	return elfFor(t, name, "atmega2560")
}

func elfFor(t *testing.T, name, mcu string) string {
	t.Helper()
	dir := buildAVR(t)
	matches, _ := filepath.Glob(filepath.Join(dir, name+"@"+mcu, "*.elf"))
	if len(matches) != 1 {
		t.Fatalf("no ELF for %s", name)
	}
	return matches[0]
}

// TestSimulatedFirmwareFrames runs the AVR build of examples/UsbSerialAlarms
// in simavr and plays the gateway by hand: the HELLO is retransmitted with the
// same bytes until ACKed and then stops, pin changes become EVENT frames in
// order, and a restart of the chip (same EEPROM) brings a new boot id.
func TestSimulatedFirmwareFrames(t *testing.T) {
	fw := elf(t, "UsbSerialAlarms")
	eeprom := filepath.Join(t.TempDir(), "eeprom.bin")
	// Pins 2 and 3 of the Mega (PE4, PE5) read high: door closed, no overtemperature.
	s := startSim(t, "-e", eeprom, "-p", "E4=1", "-p", "E5=1", fw)
	r := openPTY(t, s.pty)

	hello := r.next(t, simTimeout)
	if hello.Type != protocol.TypeHello || hello.Seq != 1 || hello.Boot == 0 || hello.NActive != 0 {
		t.Fatalf("first frame %+v, want a HELLO seq 1 with an empty snapshot", hello)
	}
	start := time.Now()
	again := r.next(t, simTimeout)
	if gap := time.Since(start); again.Type != protocol.TypeHello || again.Seq != 1 || gap < 700*time.Millisecond {
		t.Fatalf("retransmission %+v after %v, want the HELLO again after about 1 s", again, gap)
	}
	r.ack(t, again)

	s.pin("E4", 0) // door opens: alarm 17
	ev := r.next(t, simTimeout)
	if ev.Type != protocol.TypeEvent || ev.Seq != 2 || ev.Code != 17 || ev.Event != protocol.EventRaise ||
		ev.NValues != 1 || ev.Values[0].Uint32() != 1 {
		t.Fatalf("got %+v, want EVENT seq 2 raise 17 with value 1 (HELLO retransmitted after its ACK?)", ev)
	}
	r.ack(t, ev)
	s.pin("E5", 0) // overtemperature: alarm 18 with a text
	ev = r.next(t, simTimeout)
	if ev.Seq != 3 || ev.Code != 18 || ev.Severity != protocol.SeverityCritical || ev.TextString() != "overtemperature" {
		t.Fatalf("got %+v, want EVENT seq 3 raise 18 critical \"overtemperature\"", ev)
	}
	// Not ACKed: the same event comes again; a duplicate ACK then ends it.
	ev2 := r.next(t, simTimeout)
	if ev2.Seq != 3 {
		t.Fatalf("got %+v, want seq 3 retransmitted", ev2)
	}
	r.ack(t, ev2)
	r.ack(t, ev2)
	s.pin("E4", 1) // door closes
	ev = r.next(t, simTimeout)
	if ev.Seq != 4 || ev.Code != 17 || ev.Event != protocol.EventClear {
		t.Fatalf("got %+v, want EVENT seq 4 clear 17", ev)
	}
	r.ack(t, ev)
	// Acknowledged: nothing but heartbeats for a while.
	select {
	case f := <-r.frames:
		if f.Type != protocol.TypeHeartbeat {
			t.Fatalf("unexpected %+v after everything was ACKed", f)
		}
	case <-time.After(2500 * time.Millisecond):
	}
	s.stop()

	// The same bytes through the gateway's own tool, as a user would check a
	// capture: every frame decodes, no framing error.
	capture := filepath.Join(t.TempDir(), "capture.bin")
	if err := os.WriteFile(capture, r.capture(), 0o644); err != nil {
		t.Fatal(err)
	}
	decoded := run(t, time.Minute, repoDir, buildGateway(t), "decode", capture)
	for _, want := range []string{`"type":"hello"`, `"type":"event"`, `"text":"overtemperature"`} {
		if !strings.Contains(decoded, want) {
			t.Errorf("plcmail decode output lacks %s:\n%s", want, decoded)
		}
	}
	for _, line := range strings.Split(decoded, "\n") {
		// "incomplete": the simulation stopped in the middle of a frame.
		if strings.Contains(line, `"error"`) && !strings.Contains(line, `"incomplete"`) {
			t.Errorf("plcmail decode found a framing error: %s", line)
		}
	}

	// Power cycle with the EEPROM kept: a new boot id, the snapshot shows
	// the overtemperature still active (pin E5 low at boot).
	s2 := startSim(t, "-e", eeprom, "-p", "E4=1", "-p", "E5=0", fw)
	r2 := openPTY(t, s2.pty)
	h2 := r2.next(t, simTimeout)
	// A power-on reserves the next block of ids (PLCMAIL_BOOT_BLOCK, 256).
	if h2.Type != protocol.TypeHello || h2.Seq != 1 || h2.Boot != hello.Boot+256 {
		t.Fatalf("after restart %+v, want HELLO seq 1 boot %d", h2, hello.Boot+256)
	}
	if h2.NActive != 1 || h2.Active[0].Code != 18 || h2.ActiveTotal != 1 {
		t.Fatalf("snapshot %+v, want alarm 18 only", h2.ActiveAlarms())
	}
}

// TestSimulatedRS485 runs the Controllino RS-485 example (Serial3, driver
// enable on PJ5, receiver enable /RE on PJ6) in simavr, both its plain
// Arduino Mega branch and its Controllino branch (built against the
// stand-in Controllino.h in extras/stubs): plcsim checks that every byte
// leaves while the driver is enabled and the receiver disabled, that the
// driver is released only after the last character has left the UART,
// i.e. after flush(), and that the receiver is on again at the end.
func TestSimulatedRS485(t *testing.T) {
	for _, build := range []string{"ControllinoRS485Alarms", "ControllinoStub"} {
		t.Run(build, func(t *testing.T) {
			fw := elf(t, build)
			// A0 of the Mega (PF0) high: the emergency-stop chain is closed.
			s := startSim(t, "-u", "3", "-r", "J5", "-R", "J6", "-p", "F0=1", fw)
			r := openPTY(t, s.pty)
			hello := r.next(t, simTimeout)
			if hello.Type != protocol.TypeHello || hello.NActive != 0 {
				t.Fatalf("got %+v, want a HELLO with an empty snapshot", hello)
			}
			r.ack(t, hello)
			s.pin("F0", 0)
			ev := r.next(t, simTimeout)
			if ev.Type != protocol.TypeEvent || ev.Code != 100 || ev.Severity != protocol.SeverityCritical ||
				ev.TextString() != "emergency stop chain open" {
				t.Fatalf("got %+v, want EVENT raise 100 critical", ev)
			}
			r.ack(t, ev)
			time.Sleep(300 * time.Millisecond)
			s.stop()
			var summary string
			for line := range s.stdout {
				if strings.HasPrefix(line, "RS485 ") {
					summary = line
				}
			}
			var sent, violations, echoed, deaf int
			if _, err := fmt.Sscanf(summary, "RS485 bytes=%d violations=%d echoed=%d deaf=%d", &sent, &violations, &echoed, &deaf); err != nil {
				t.Fatalf("no RS-485 summary from plcsim (%q): %v", summary, err)
			}
			if sent < 40 || violations != 0 || echoed != 0 || deaf != 0 {
				t.Fatalf("%s: want every byte sent with DE high and /RE high, DE released only after flush(), /RE low at the end", summary)
			}
			t.Log(summary)
		})
	}
}

// TestSimulated328P runs the ATmega328P (Uno) build of UsbSerialAlarms in
// simavr: HELLO, ACK, a pin change becomes an EVENT (pins 2/3 are PD2/PD3
// on the Uno), ACK, and nothing but heartbeats after.
func TestSimulated328P(t *testing.T) {
	fw := elfFor(t, "UsbSerialAlarms", "atmega328p")
	s := startSim(t, "-m", "atmega328p", "-p", "D2=1", "-p", "D3=1", fw)
	r := openPTY(t, s.pty)
	hello := r.next(t, simTimeout)
	if hello.Type != protocol.TypeHello || hello.Seq != 1 || hello.Boot == 0 {
		t.Fatalf("first frame %+v, want a HELLO seq 1", hello)
	}
	r.ack(t, hello)
	s.pin("D3", 0) // overtemperature
	ev := r.next(t, simTimeout)
	if ev.Type != protocol.TypeEvent || ev.Seq != 2 || ev.Code != 18 || ev.TextString() != "overtemperature" {
		t.Fatalf("got %+v, want EVENT seq 2 raise 18 \"overtemperature\"", ev)
	}
	r.ack(t, ev)
	select {
	case f := <-r.frames:
		if f.Type != protocol.TypeHeartbeat {
			t.Fatalf("unexpected %+v after everything was ACKed", f)
		}
	case <-time.After(2500 * time.Millisecond):
	}
}

// gateway is `plcmail serve` as a child process.
type gateway struct {
	t    *testing.T
	exe  string
	cfg  string
	cmd  *exec.Cmd
	logs *testenv.SyncBuffer // the child writes it while tests read it
	done chan struct{}
}

func (g *gateway) start() {
	g.t.Helper()
	g.cmd = exec.Command(g.exe, "-c", g.cfg, "serve")
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // never outlive the test (an orphan on a reused pty steals frames)
	g.cmd.Stdout = g.logs
	g.cmd.Stderr = g.logs
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	done := make(chan struct{})
	g.done = done
	go func(c *exec.Cmd) {
		c.Wait()
		close(done)
	}(g.cmd)
}

func (g *gateway) signal(sig syscall.Signal) {
	g.t.Helper()
	syscall.Kill(-g.cmd.Process.Pid, sig)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.done
		g.t.Errorf("gateway did not stop on %v", sig)
	}
}

// TestSimulatedPLCThroughGateway: the AVR-built example in simavr, the real
// `plcmail serve` on the other end of the pty, mails arriving at a real SMTP
// upstream; the gateway is killed (-9) and later stopped (SIGTERM) while the
// PLC keeps raising alarms. Every event must arrive as exactly one mail.
func TestSimulatedPLCThroughGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 30 s of real time")
	}
	fw := elf(t, "UsbSerialAlarms")
	dir := t.TempDir()
	// The gateway opens a stable link name, as it would /dev/serial/by-id/...;
	// a restart of plcsim (the PLC's power cycle) replaces it like a replug.
	tty := filepath.Join(dir, "ttyPLC")
	eeprom := filepath.Join(dir, "eeprom.bin")
	s := startSim(t, "-e", eeprom, "-l", tty, "-p", "E4=1", "-p", "E5=1", fw)
	g, up := startGatewayFor(t, dir, tty)

	// want holds "code=17 event=raise boot=B1 seq=2" style keys of the
	// alarm mails expected.
	want := map[string]bool{}
	boot, seq := 1, 1 // the HELLO is seq 1
	step := func(pin string, v int, code int, event string) {
		s.pin(pin, v)
		seq++
		want[fmt.Sprintf("code=%d event=%s boot=B%d seq=%d", code, event, boot, seq)] = true
		time.Sleep(300 * time.Millisecond)
	}

	// Phase 1: the gateway is up.
	step("E4", 0, 17, "raise")
	step("E4", 1, 17, "clear")
	step("E4", 0, 17, "raise")
	step("E4", 1, 17, "clear")
	up.waitAlarms(t, want, 20*time.Second)

	// Phase 2: the gateway crashes; three events (the PLC's queue holds
	// four) wait in the PLC and are retransmitted with backoff.
	g.signal(syscall.SIGKILL)
	step("E4", 0, 17, "raise")
	step("E5", 0, 18, "raise")
	step("E4", 1, 17, "clear")
	time.Sleep(2 * time.Second)
	g.start()
	up.waitAlarms(t, want, 40*time.Second)

	// Phase 3: an event on the wire while the gateway shuts down cleanly.
	step("E5", 1, 18, "clear")
	g.signal(syscall.SIGTERM)
	time.Sleep(1 * time.Second)
	g.start()
	up.waitAlarms(t, want, 40*time.Second)

	// Phase 4: the PLC loses power with the door open; at boot it is still
	// open, so alarm 17 travels in the HELLO snapshot: the gateway knew it
	// was active and mails nothing for it. Closing the door is a new event
	// of the new boot.
	step("E4", 0, 17, "raise")
	up.waitAlarms(t, want, 40*time.Second)
	s.stop()
	time.Sleep(500 * time.Millisecond)
	s = startSim(t, "-e", eeprom, "-l", tty, "-p", "E4=0", "-p", "E5=1", fw)
	boot, seq = 2, 1
	time.Sleep(3 * time.Second) // the gateway finds the new device and takes the HELLO
	step("E4", 1, 17, "clear")
	up.waitAlarms(t, want, 40*time.Second)

	// Nothing doubled, even after retransmissions settle.
	time.Sleep(3 * time.Second)
	up.checkExactlyOnce(t, want)
}

// TestSimulatedGatewayDownOverflow: the gateway is down long enough for the
// PLC's retransmission backoff to reach its 30 s cap and its 16-bit timers
// to wrap (70 s; the host test testGatewayDownForHours runs the same for
// three hours of simulated time). Meanwhile alarm 17 changes more often than
// the PLC's queue (4 events) holds and alarm 18 is raised: the two events
// after the fourth are lost to the full queue. When the gateway is back it
// takes the four queued events in order and then the HELLO the PLC sends to
// resynchronise, and mails what it did not hear from the snapshot: 17
// cleared, 18 raised. Nothing is lost, nothing doubled.
func TestSimulatedGatewayDownOverflow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 2 minutes of real time")
	}
	fw := elf(t, "UsbSerialAlarms")
	dir := t.TempDir()
	tty := filepath.Join(dir, "ttyPLC")
	s := startSim(t, "-e", filepath.Join(dir, "eeprom.bin"), "-l", tty, "-p", "E4=1", "-p", "E5=1", fw)
	g, up := startGatewayFor(t, dir, tty)

	want := map[string]bool{}
	seq := 1 // the HELLO is seq 1
	step := func(pin string, v int, code int, event string) {
		s.pin(pin, v)
		seq++
		want[fmt.Sprintf("code=%d event=%s boot=B1 seq=%d", code, event, seq)] = true
		time.Sleep(300 * time.Millisecond)
	}
	step("E4", 0, 17, "raise")
	up.waitAlarms(t, want, 20*time.Second)

	g.signal(syscall.SIGKILL)
	step("E4", 1, 17, "clear") // seq 3: the head from now on
	step("E4", 0, 17, "raise")
	step("E4", 1, 17, "clear")
	step("E4", 0, 17, "raise") // seq 6: the queue is full
	s.pin("E4", 1)             // lost: the queue is full
	time.Sleep(300 * time.Millisecond)
	s.pin("E5", 0) // lost too
	time.Sleep(70 * time.Second)
	// The HELLO that resynchronises is seq 7; its snapshot holds 18 only.
	want["code=18 event=raise boot=B1 seq=7"] = true
	want["code=17 event=clear boot=B1 seq=7"] = true
	g.start()
	// The head waits for its next retransmission: at most 37.5 s.
	up.waitAlarms(t, want, 60*time.Second)
	time.Sleep(3 * time.Second)
	up.checkExactlyOnce(t, want)
}

// startGatewayFor starts `plcmail serve` with its spool in dir and one
// [[serial]] link "sim" on tty, mailing to a fresh test upstream; every
// alarm mail's subject is "alarm code=.. event=.. boot=.. seq=..".
func startGatewayFor(t *testing.T, dir, tty string) (*gateway, *upstream) {
	t.Helper()
	return startGatewayWith(t, dir, tty, "")
}

// startGatewayWith is startGatewayFor with extra configuration appended
// (a [[channel]], say).
func startGatewayWith(t *testing.T, dir, tty, extra string) (*gateway, *upstream) {
	t.Helper()
	exe := buildGateway(t)
	up := startUpstream(t)
	cfg := filepath.Join(dir, "plcmail.toml")
	cfgText := fmt.Sprintf(`
[gateway]
hostname  = "gw.test"
spool_dir = %q

[upstream]
host     = "127.0.0.1"
port     = %d
security = "none"
auth     = "none"
from     = "plc-gateway@example.com"
timeout  = "5s"

[queue]
min_backoff = "200ms"
max_backoff = "1s"

[flood]
holdoff              = "0s"
max_mails_per_minute = 1000

[[serial]]
name   = "sim"
device = %q
baud   = 115200

[[alarm]]
default = true
subject = "{{.Kind}} code={{.Code}} event={{.Event}} boot={{.Boot}} seq={{.Seq}}"
body    = "alarm {{.Code}} {{.Event}} at uptime {{.Uptime}}"
to      = ["ops@example.com"]
`, filepath.Join(dir, "spool"), up.port, tty) + extra
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	g := &gateway{t: t, exe: exe, cfg: cfg, logs: logs}
	g.start()
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			g.signal(syscall.SIGTERM)
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s", logs.String())
		}
	})

	return g, up
}

// TestSimulatedEraseThroughGateway: the PLC's EEPROM is erased between two
// boots (a chip erase, or the board swapped for a new one). The second boot
// must not reuse the first one's id (the firmware used to restart at 1): its
// events reach the real gateway as new keys and are mailed, and the gateway
// mails a restart notice naming both ids.
func TestSimulatedEraseThroughGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 15 s of real time")
	}
	fw := elf(t, "UsbSerialAlarms")
	dir := t.TempDir()
	tty := filepath.Join(dir, "ttyPLC")
	eeprom := filepath.Join(dir, "eeprom.bin")
	want := map[string]bool{}
	var s *sim
	boot := 0
	bootAndEvents := func() {
		// -E: the EEPROM starts erased (the file is saved over at exit).
		s = startSim(t, "-e", eeprom, "-E", "-l", tty, "-p", "E4=1", "-p", "E5=1", fw)
		boot++
		for i, ev := range []string{"raise", "clear"} {
			time.Sleep(2 * time.Second) // the gateway finds the device and takes the HELLO
			s.pin("E4", i)
			want[fmt.Sprintf("code=17 event=%s boot=B%d seq=%d", ev, boot, i+2)] = true
		}
	}
	bootAndEvents()
	_, up := startGatewayFor(t, dir, tty)
	up.waitAlarms(t, want, 40*time.Second)
	s.stop()
	time.Sleep(500 * time.Millisecond)
	bootAndEvents()
	up.waitAlarms(t, want, 40*time.Second)
	time.Sleep(2 * time.Second)
	up.checkExactlyOnce(t, want)
	_, boots := up.alarmsAndBoots()
	for _, b := range boots {
		if b == "1" {
			t.Errorf("boot id 1 after an erased EEPROM: not a random start")
		}
	}
	notice := false
	for _, subj := range up.subjects() {
		if strings.Contains(strings.ToLower(subj), "restart") {
			notice = true
		}
	}
	if !notice {
		t.Errorf("no restart notice for the second boot (ids %v): %q", boots, up.subjects())
	}
	t.Logf("boot ids after erased EEPROMs: %v", boots)
}

// upstream is the repository's test SMTP server (mailertest: go-smtp on
// 127.0.0.1, plain, no AUTH), reached by the gateway as its provider.
type upstream struct {
	*mailertest.Upstream
	port int
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := mailertest.NewUpstream(t, mailertest.Options{Security: mailertest.Plain, NoAuth: true})
	return &upstream{Upstream: u, port: u.Port}
}

// subjects returns the Subject of every message accepted so far.
func (u *upstream) subjects() []string {
	var s []string
	for _, m := range u.Messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			s = append(s, "unparsable: "+err.Error())
			continue
		}
		s = append(s, msg.Header.Get("Subject"))
	}
	return s
}

// alarms returns how many alarm mails arrived per "code=.. event=.. boot=B1
// seq=.." key. Boot ids are random after an EEPROM erase, so each is named
// by the order it first appeared in: B1, B2, ... (a repeated id is the same
// name again, and the mails of the later boot then have none of their own).
func (u *upstream) alarms() map[string]int {
	got, _ := u.alarmsAndBoots()
	return got
}

func (u *upstream) alarmsAndBoots() (map[string]int, []string) {
	got := map[string]int{}
	var boots []string
	alias := map[string]string{}
	re := regexp.MustCompile(`^alarm (code=\d+ event=\w+) boot=(\d+) (seq=\d+)$`)
	for _, s := range u.subjects() {
		if m := re.FindStringSubmatch(s); m != nil {
			b, ok := alias[m[2]]
			if !ok {
				boots = append(boots, m[2])
				b = fmt.Sprintf("B%d", len(boots))
				alias[m[2]] = b
			}
			got[m[1]+" boot="+b+" "+m[3]]++
		}
	}
	return got, boots
}

func (u *upstream) waitAlarms(t *testing.T, want map[string]bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := u.alarms()
		all := true
		for k := range want {
			if got[k] == 0 {
				all = false
			}
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: mails %q, want alarms %v", timeout, u.subjects(), keys(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (u *upstream) checkExactlyOnce(t *testing.T, want map[string]bool) {
	t.Helper()
	got := u.alarms()
	for k, n := range got {
		if !want[k] {
			t.Errorf("unexpected alarm mail %q", k)
		} else if n != 1 {
			t.Errorf("alarm %q mailed %d times", k, n)
		}
	}
	for k := range want {
		if got[k] == 0 {
			t.Errorf("alarm %q never mailed", k)
		}
	}
	subj := u.subjects()
	t.Logf("%d mails upstream: %q", len(subj), subj)
}

func keys(m map[string]bool) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

// TestSimulatedSMTPClient runs the AVR build of PlcMailSmtp in simavr; its
// second UART is bridged to the real plcmail listener's TCP port, which must
// queue the mail.
func TestSimulatedSMTPClient(t *testing.T) {
	fw := elf(t, "SmtpOverSerial")
	g := startListener(t)
	s := startSim(t, "-x", "-t", g.addr, fw)
	select {
	case line, ok := <-s.stdout:
		if !ok {
			t.Fatal("plcsim ended without a result")
		}
		if strings.TrimSpace(line) != "SMTP step=ok code=250" {
			t.Fatalf("firmware reported %q, want SMTP step=ok code=250", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no result from the simulated SMTP client")
	}
	g.message(t, "Subject: Tank 2 level high\r\n", "\r\n.hidden dot line\r\n", "To: ops@example.com\r\n")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildOne builds one sketch with extras/avr/build.sh --one (the same
// arduino-builder invocation as every other AVR build, compiler commands
// logged) and returns the log and whether the build succeeded.
func buildOne(t *testing.T, ino, fqbn, name string, extraFlags string) (string, bool) {
	t.Helper()
	need(t, "arduino-builder", "avr-g++", "avr-size", "arduino-ctags")
	if _, err := os.Stat("/usr/share/arduino/hardware/arduino/avr/platform.txt"); err != nil {
		testenv.Missing(t, "%s", "Arduino AVR core not installed (Debian: arduino-core-avr)")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(fwDir, "extras", "avr", "build.sh"), dir, "--one", ino, fqbn, name, extraFlags)
	cmd.Env = append(os.Environ(), "PLCMAIL_BUILD_VERBOSE=1")
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(dir, name, "build.log"))
	return string(out) + string(log), err == nil
}

// TestSizeGuardWithLTO: a sketch that #defines PLCMAIL_QUEUE_LEN differently
// from the library's own compilation must fail to link, naming the config
// symbol, with the Arduino core's LTO flags. The same sketch with the value
// set for the whole build links (so the failure is the guard, not the sketch).
func TestSizeGuardWithLTO(t *testing.T) {
	ino := filepath.Join(fwDir, "extras", "sketches", "MismatchedQueueLen", "MismatchedQueueLen.ino")
	for _, m := range []struct{ fqbn, mcu string }{
		{"arduino:avr:mega:cpu=atmega2560", "atmega2560"},
		{"arduino:avr:uno", "atmega328p"},
	} {
		log, ok := buildOne(t, ino, m.fqbn, "Mismatch@"+m.mcu, "")
		if !strings.Contains(log, "-flto") {
			t.Fatalf("%s: the build did not use LTO, the test proves nothing:\n%s", m.mcu, log)
		}
		if ok || !strings.Contains(log, "undefined reference to `plcmail_config_q8_a8_v4'") {
			t.Errorf("%s: a sketch with its own PLCMAIL_QUEUE_LEN built (ok=%v) without a link error naming plcmail_config_q8_a8_v4:\n%s", m.mcu, ok, lastLines(log, 30))
		}
		if log, ok := buildOne(t, ino, m.fqbn, "Matched@"+m.mcu, "-DPLCMAIL_QUEUE_LEN=8"); !ok {
			t.Errorf("%s: with -DPLCMAIL_QUEUE_LEN=8 for the whole build it must link:\n%s", m.mcu, lastLines(log, 30))
		}
	}
}

// TestArduinoZip packs the library with `make arduino-zip`, unpacks it as
// the IDE's "Add .ZIP Library" would (one folder at the ZIP's root becomes
// libraries/PlcMail) and builds the examples from that copy with the same
// arduino-builder command as every other AVR build.
func TestArduinoZip(t *testing.T) {
	need(t, "zip", "unzip", "make")
	out := t.TempDir()
	res := run(t, time.Minute, filepath.Join(fwDir, "extras"), "make", "--no-print-directory", "arduino-zip", "OUT="+out)
	zips, _ := filepath.Glob(filepath.Join(out, "PlcMail-*.zip"))
	if len(zips) != 1 {
		t.Fatalf("make arduino-zip made %v:\n%s", zips, res)
	}
	listing := run(t, time.Minute, out, "unzip", "-Z1", zips[0])
	for _, name := range strings.Fields(listing) {
		if !strings.HasPrefix(name, "PlcMail/") {
			t.Errorf("%s outside the one root folder PlcMail/", name)
		}
		if strings.Contains(name, "/extras/") || strings.Contains(name, "/.") {
			t.Errorf("%s does not belong in the release ZIP", name)
		}
	}
	libs := t.TempDir()
	run(t, time.Minute, libs, "unzip", "-q", zips[0])
	lib := filepath.Join(libs, "PlcMail")
	for _, f := range []string{"library.properties", "keywords.txt", "src/PlcMail.h", "src/PlcMailSmtp.h",
		"examples/UsbSerialAlarms/UsbSerialAlarms.ino", "examples/ControllinoRS485Alarms/ControllinoRS485Alarms.ino"} {
		if _, err := os.Stat(filepath.Join(lib, f)); err != nil {
			t.Errorf("the ZIP lacks %s", f)
		}
	}
	props, _ := os.ReadFile(filepath.Join(lib, "library.properties"))
	for _, want := range []string{"name=PlcMail\n", "architectures=avr\n", "includes=PlcMail.h\n"} {
		if !strings.Contains(string(props), want) {
			t.Errorf("library.properties lacks %q:\n%s", strings.TrimSpace(want), props)
		}
	}
	for _, key := range []string{"version", "author", "maintainer", "sentence", "paragraph", "category", "url"} {
		if !regexp.MustCompile(`(?m)^` + key + `=\S`).Match(props) {
			t.Errorf("library.properties: %s= missing or empty (Library Manager needs it)", key)
		}
	}
	kw, _ := os.ReadFile(filepath.Join(lib, "keywords.txt"))
	for i, line := range strings.Split(string(kw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 2 || !regexp.MustCompile(`^(KEYWORD[123]|LITERAL1)$`).MatchString(f[1]) || strings.ContainsAny(f[0], " ") {
			t.Errorf("keywords.txt:%d: %q is not NAME<TAB>KEYWORD1|2|3|LITERAL1", i+1, line)
		}
	}
	if t.Failed() {
		return
	}
	need(t, "arduino-builder", "avr-g++", "avr-size", "arduino-ctags")
	if _, err := os.Stat("/usr/share/arduino/hardware/arduino/avr/platform.txt"); err != nil {
		testenv.Missing(t, "%s", "Arduino AVR core not installed (Debian: arduino-core-avr)")
	}
	for _, ex := range []struct{ ino, fqbn, name string }{
		{"UsbSerialAlarms", "arduino:avr:uno", "zip-UsbSerialAlarms@atmega328p"},
		{"ControllinoRS485Alarms", "arduino:avr:mega:cpu=atmega2560", "zip-ControllinoRS485Alarms@atmega2560"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(fwDir, "extras", "avr", "build.sh"), t.TempDir(), "--one",
			filepath.Join(lib, "examples", ex.ino, ex.ino+".ino"), ex.fqbn, ex.name)
		cmd.Env = append(os.Environ(), "PLCMAIL_LIBRARY_DIR="+lib)
		b, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(b), "SIZE ") {
			t.Errorf("building %s from the unpacked ZIP: %v\n%s", ex.ino, err, b)
		}
	}
}
