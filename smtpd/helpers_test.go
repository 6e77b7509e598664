package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/smtpd"
	"github.com/plcmail/plcmail/spool"
)

// gw is a listener under test: a real smtpd.Server on 127.0.0.1:0 with a
// real durable spool in a temporary directory.
type gw struct {
	t     testing.TB
	opts  smtpd.Options
	srv   *smtpd.Server
	spool *spool.Spool
	addr  string
	port  string
	wakes atomic.Int32
	logs  *testenv.SyncBuffer
}

// testOptions returns the options cmd/plcmail makes of an [smtp] section
// that sets only listen = ["127.0.0.1:0"] (config's defaults), for the
// gateway "gw.test" with upstream.from "gateway@example.com".
func testOptions() smtpd.Options {
	return smtpd.Options{
		Listen:              []string{"127.0.0.1:0"},
		AllowedNetworks:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxMessageBytes:     1 << 20,
		MaxRecipients:       50,
		MaxConnections:      100,
		MaxConnectionsPerIP: 10,
		CommandTimeout:      60 * time.Second,
		DataTimeout:         5 * time.Minute,
		MaxLineLength:       2000,
		AuthMaxFailures:     5,
		AuthFailureWindow:   10 * time.Minute,
		AuthLockout:         15 * time.Minute,
		Hostname:            "gw.test",
		Fallback:            "gateway@example.com",
	}
}

// prefixes parses CIDRs for Options.AllowedNetworks.
func prefixes(cidrs ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, c := range cidrs {
		out = append(out, netip.MustParsePrefix(c))
	}
	return out
}

// startGateway serves testOptions, changed by set if not nil, on
// 127.0.0.1:0, with a spool in a temporary directory.
func startGateway(t testing.TB, set func(*smtpd.Options)) *gw {
	t.Helper()
	opts := testOptions()
	if set != nil {
		set(&opts)
	}
	var err error
	g := &gw{t: t, opts: opts, logs: &testenv.SyncBuffer{}}
	log := slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g.spool, err = spool.Open(filepath.Join(t.TempDir(), "spool"), log)
	if err != nil {
		t.Fatal(err)
	}
	g.srv, err = smtpd.New(opts, g.spool, func() { g.wakes.Add(1) }, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = l.Addr().String()
	_, g.port, _ = net.SplitHostPort(g.addr)
	done := make(chan error, 1)
	go func() { done <- g.srv.Serve(l) }()
	t.Cleanup(func() {
		g.srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", g.logs.String())
		}
	})
	return g
}

// queuedN is queued for a test (or subtest) t that expects exactly n
// messages.
func (g *gw) queuedN(t testing.TB, n int) []queuedMsg {
	t.Helper()
	q := g.queued()
	if len(q) != n {
		t.Fatalf("%d queued, want %d", len(q), n)
	}
	return q
}

// queued returns every message in the spool with its stored bytes.
func (g *gw) queued() []queuedMsg {
	g.t.Helper()
	list, err := g.spool.List()
	if err != nil {
		g.t.Fatal(err)
	}
	var out []queuedMsg
	for _, m := range list {
		_, data, err := g.spool.ReadMessage(m.ID)
		if err != nil {
			g.t.Fatal(err)
		}
		out = append(out, queuedMsg{m, data})
	}
	return out
}

type queuedMsg struct {
	spool.Message
	Data []byte
}

// parse checks that a queued message is well-formed RFC 5322 with the
// header fields an upstream provider expects, and returns it.
func parse(t *testing.T, data []byte) (*mail.Message, string) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("stored message has bare LF: %q", data)
	}
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("net/mail: %v\n%s", err, data)
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v\n%s", err, data)
	}
	if id := m.Header.Get("Message-Id"); !regexp.MustCompile(`^<[^<>@\s]+@[^<>@\s]+>$`).MatchString(id) {
		t.Errorf("Message-ID %q", id)
	}
	if _, err := m.Header.AddressList("From"); err != nil {
		t.Errorf("From: %v\n%s", err, data)
	}
	if m.Header.Get("To") == "" && m.Header.Get("Cc") == "" {
		t.Errorf("no To or Cc\n%s", data)
	}
	if m.Header.Get("Received") == "" {
		t.Errorf("no Received\n%s", data)
	}
	body, _ := io.ReadAll(m.Body)
	return m, string(body)
}

// converse writes script in one write, as a board that does not wait for
// replies does, then reads until the server closes the connection. local, if
// not empty, is the source address.
func converse(t *testing.T, addr, local, script string) string {
	t.Helper()
	c := dial(t, addr, local)
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, script); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil && !isReset(err) {
		t.Fatalf("read: %v (got %q)", err, out)
	}
	return string(out)
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func dial(t testing.TB, addr, local string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var replyRE = regexp.MustCompile(`(?m)^(\d{3})[ ](\d\.\d+\.\d+ )?`)

// codes returns the final reply codes of a transcript ("250-" continuation
// lines are skipped), with enhanced codes when present: "250", "550 5.7.1".
func codes(transcript string) []string {
	var out []string
	for _, m := range replyRE.FindAllStringSubmatch(transcript, -1) {
		out = append(out, strings.TrimSpace(m[1]+" "+m[2]))
	}
	return out
}

func codeList(transcript string) string {
	var c []string
	for _, s := range codes(transcript) {
		c = append(c, s[:3])
	}
	return strings.Join(c, " ")
}

// session is an interactive client for tests that need to look at each
// reply before going on.
type session struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func open(t *testing.T, addr, local string) *session {
	t.Helper()
	c := dial(t, addr, local)
	t.Cleanup(func() { c.Close() })
	s := &session{t: t, c: c, r: bufio.NewReader(c)}
	s.expect("220")
	return s
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (s *session) reply() string {
	s.t.Helper()
	s.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading reply: %v (%q)", err, line)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (s *session) expect(prefix string) string {
	s.t.Helper()
	r := s.reply()
	if !strings.HasPrefix(r, prefix) {
		s.t.Fatalf("got %q, want %s", r, prefix)
	}
	return r
}

func (s *session) cmd(line, want string) string {
	s.t.Helper()
	if _, err := io.WriteString(s.c, line+"\r\n"); err != nil {
		s.t.Fatal(err)
	}
	return s.expect(want)
}

func (s *session) send(data string) {
	s.t.Helper()
	if _, err := io.WriteString(s.c, data); err != nil {
		s.t.Fatal(err)
	}
}

// runTool runs a client with a timeout and returns its combined output.
func runTool(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// eventually polls cond for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// startTLSGateway is startGateway with STARTTLS offered, its certificate
// for 127.0.0.1 issued by the returned test CA.
func startTLSGateway(t *testing.T) (*gw, *mailertest.CA) {
	t.Helper()
	return startTLSGatewayWith(t, nil)
}

// startTLSGatewayWith is startTLSGateway with the options changed by set,
// if not nil.
func startTLSGatewayWith(t *testing.T, set func(*smtpd.Options)) (*gw, *mailertest.CA) {
	t.Helper()
	ca, err := mailertest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, func(o *smtpd.Options) {
		o.Certificate = &cert
		if set != nil {
			set(o)
		}
	})
	return g, ca
}
