package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/protocol"
)

// scrape fetches path from the [http] listener with basic auth.
func scrape(t *testing.T, addr, path, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	if pass != "" {
		req.SetBasicAuth("prometheus", pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// parseSamples parses an exposition with Prometheus' parser into
// "name{k=v,...}" -> value, labels sorted by name.
func parseSamples(t *testing.T, text string) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus parser: %v\n%s", err, text)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			v := m.GetGauge().GetValue()
			if m.Counter != nil {
				v = m.GetCounter().GetValue()
			}
			out[name+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}

// TestServeMetricsAndPage scrapes a running serve after real traffic: a PLC
// on a pty pair sends HELLO, a heartbeat and three events, the upstream
// greylists the first mail once and takes the rest, and /metrics (parsed by
// Prometheus' own parser) and the status page say so.
func TestServeMetricsAndPage(t *testing.T) {
	gwPath, plcPath := newPTYPair(t)
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	var greylisted atomic.Bool
	u.SetData(func(mailertest.Received) error {
		if greylisted.CompareAndSwap(false, true) {
			return mailertest.Reply(451, "greylisted")
		}
		return nil
	})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	pwFile := filepath.Join(c.Dir, "http.secret")
	os.WriteFile(pwFile, []byte("scrape-me\n"), 0o600)
	addr := freeAddr(t)
	c.Extra = gatewayExtra(gwPath, freeAddr(t)) + fmt.Sprintf("\n[http]\nlisten = %q\nusername = \"prometheus\"\npassword_file = %q\n", addr, pwFile)
	srv := startServe(t, c.write(t))
	plc := openPLC(t, plcPath, srv.logs)
	plc.hello()
	plc.send(&protocol.Frame{Type: protocol.TypeHeartbeat, Uptime: 50})
	for i, ev := range []struct {
		code uint16
		kind protocol.EventKind
		text string
	}{{17, protocol.EventRaise, "oil < 20 %"}, {17, protocol.EventClear, ""}, {99, protocol.EventRaise, "door <open>"}} {
		f := &protocol.Frame{Type: protocol.TypeEvent, Seq: uint32(i + 2), Uptime: uint32(100 + i), Code: ev.code, Event: ev.kind, Severity: protocol.SeverityAlarm}
		f.TextLen = uint8(copy(f.Text[:], ev.text))
		plc.send(f)
		plc.expect(protocol.TypeAck, f.Seq)
	}
	// The DELIVERY frames come in the order the upstream took the mails.
	delivered := map[uint32]bool{}
	for timeout := time.After(20 * time.Second); len(delivered) < 3; {
		select {
		case r := <-plc.frames:
			if r.Frame.Type == protocol.TypeDelivery {
				delivered[r.Frame.Seq] = true
			}
		case <-timeout:
			t.Fatalf("DELIVERY frames for %v only\n%s", delivered, srv.logs())
		}
	}

	if code, _ := scrape(t, addr, "/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("scrape without credentials: %d, want 401", code)
	}
	up := u.Config()
	upstream := net.JoinHostPort(up.Host, strconv.Itoa(up.Port))
	want := map[string]float64{
		`plcmail_frames_total{link=press-1,type=hello}`:                              1,
		`plcmail_frames_total{link=press-1,type=heartbeat}`:                          1,
		`plcmail_frames_total{link=press-1,type=event}`:                              3,
		`plcmail_frames_total{link=press-1,type=ack}`:                                4,
		`plcmail_frames_total{link=press-1,type=delivery}`:                           3,
		`plcmail_link_up{link=press-1}`:                                              1,
		`plcmail_active_alarms{link=press-1}`:                                        1,
		`plcmail_queue_messages{}`:                                                   0,
		`plcmail_dead_letters{}`:                                                     0,
		`plcmail_spool_corrupt_messages{}`:                                           0,
		`plcmail_messages_delivered_total{}`:                                         3,
		`plcmail_delivery_attempts_total{result=accepted,upstream=` + upstream + `}`: 3,
		`plcmail_delivery_attempts_total{result=deferred,upstream=` + upstream + `}`: 1,
	}
	var got map[string]float64
	var diff []string
	// Counters settle a moment after the frames the PLC saw (the
	// delivery loop records its result after the DELIVERY is queued).
	ok := poll(10*time.Second, func() bool {
		code, body := scrape(t, addr, "/metrics", "scrape-me")
		if code != http.StatusOK {
			t.Fatalf("scrape: %d %s", code, body)
		}
		got, diff = parseSamples(t, body), nil
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				diff = append(diff, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
			}
		}
		return len(diff) == 0
	})
	if !ok {
		t.Errorf("metrics:\n%s\nall samples: %v", strings.Join(diff, "\n"), got)
	}
	var build bool
	for k, v := range got {
		build = build || strings.HasPrefix(k, "plcmail_build_info{commit=") && v == 1
	}
	if !build {
		t.Error("plcmail_build_info missing")
	}

	code, page := scrape(t, addr, "/", "scrape-me")
	for _, want := range []string{"press-1", "oil &lt; 20 %", "door &lt;open&gt;", ">up<", "greylisted"} {
		if code != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("status page (%d) lacks %q:\n%s", code, want, page)
		}
	}
	if logs, err := srv.stop(); err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}

// TestServeNotifiesSystemd runs the binary as systemd would with Type=notify
// and WatchdogSec=: the test listens on the NOTIFY_SOCKET datagram socket
// and sees READY, WATCHDOG pings, RELOADING/READY around a SIGHUP and
// STOPPING at SIGTERM. Its stderr is the "journal" ($JOURNAL_STREAM names
// the log file), so the lines carry syslog priorities.
func TestServeNotifiesSystemd(t *testing.T) {
	bin := plcmailBinary(t)
	c := newTestConfig(t)
	path := c.write(t)
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	logf, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	fi, _ := logf.Stat()
	st := fi.Sys().(*syscall.Stat_t)

	cmd := exec.Command(bin, "-c", path, "serve")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000",
		fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	logs := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }
	// next returns the next notification that starts with prefix,
	// skipping watchdog pings in between.
	var seen []string
	next := func(prefix string) string {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case m := <-msgs:
				seen = append(seen, m)
				if strings.HasPrefix(m, prefix) {
					return m
				}
			case <-timeout:
				t.Fatalf("no %q notification; got %q\nlog:\n%s", prefix, seen, logs())
			}
		}
	}
	if m := next("READY=1"); !strings.Contains(m, "STATUS=0/0 links up, 0 queued, 0 dead letters\n") {
		t.Errorf("ready: %q", m)
	}
	next("WATCHDOG=1\n")
	next("WATCHDOG=1\n") // and again: a ticker, not a single ping
	cmd.Process.Signal(syscall.SIGHUP)
	if m := next("RELOADING=1"); !strings.Contains(m, "\nMONOTONIC_USEC=") {
		t.Errorf("reloading: %q", m)
	}
	next("READY=1")
	cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1\n")
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("serve exited with %v\n%s", err, logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	l := logs()
	if !strings.HasPrefix(l, "<6>level=INFO msg=\"plcmail starting\"") || strings.Contains(l, "time=") {
		t.Errorf("journal lines lack priorities or carry a time stamp:\n%s", l)
	}
}
