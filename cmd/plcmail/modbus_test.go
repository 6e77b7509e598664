package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/flood"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
)

// TestCheckModbus: mistakes in [[modbus]] tags and rules are reported by
// plcmail check at their lines.
func TestCheckModbus(t *testing.T) {
	c := newTestConfig(t)
	c.Extra = `
[[alarm]]
default = true
to = ["ops@example.com"]

[[modbus]]
name = "tank"
mode = "tcp"
address = "127.0.0.1:1502"

[[modbus.tag]]
name = "level"
table = "holding"
address = 0
type = "float"

[[modbus.tag.alarm]]
limit = "H"
deadband = -2
`
	path := c.write(t)
	r := runCLI(t, "", "plcmail", "check", "-c", path)
	lines := strings.Split(string(must(os.ReadFile(path))), "\n")
	lineOf := func(prefix string) int {
		for i, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return i + 1
			}
		}
		t.Fatalf("no line %q", prefix)
		return 0
	}
	want := []string{
		path + ":" + strconv.Itoa(lineOf("type = ")) + `: modbus[0].tag[0].type: a holding register is int16, uint16, int32, uint32 or float32, not "float"`,
		path + ":" + strconv.Itoa(lineOf("[[modbus.tag.alarm]]")) + ": modbus[0].tag[0].alarm[0].setpoint: required with limit: the value at which the alarm is raised",
		path + ":" + strconv.Itoa(lineOf("deadband = ")) + ": modbus[0].tag[0].alarm[0].deadband: must not be negative",
	}
	if r.code != 1 || strings.TrimSuffix(r.stdout, "\n") != strings.Join(want, "\n") {
		t.Errorf("code %d\nstdout:\n%s\nwant:\n%s", r.code, r.stdout, strings.Join(want, "\n"))
	}
}

// startModbusSlave runs modbus/testdata/server.py (Debian's pymodbus) on a
// free loopback port; do sends it one command ("hr 0 975", "mute").
func startModbusSlave(t *testing.T) (port int, do func(cmd string)) {
	py := ""
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import pymodbus.server").Run() == nil {
			py = path
			break
		}
	}
	if py == "" {
		testenv.Missing(t, "python3 with pymodbus not found (apt-get install python3-pymodbus)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(py, filepath.Join("..", "..", "modbus", "testdata", "server.py"), "tcp", strconv.Itoa(port))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	expect := func(want string) {
		t.Helper()
		if !sc.Scan() || sc.Text() != want {
			t.Fatalf("modbus slave said %q, want %q", sc.Text(), want)
		}
	}
	expect("READY")
	return port, func(c string) {
		t.Helper()
		io.WriteString(in, c+"\n")
		expect("ok")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestServeModbus: `plcmail serve` polls a pymodbus TCP slave and delivers
// the limit alarm's mail with the tag's value and unit, and the device's
// offline notice to the device's recipients.
func TestServeModbus(t *testing.T) {
	port, do := startModbusSlave(t)
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	c := newTestConfig(t)
	c.Upstream = upstreamTOML(u.Config())
	addr := freeAddr(t)
	c.Extra = `
[http]
listen = "` + addr + `"

[[alarm]]
code = 500
name = "Tank 1 overfull"
subject = "{{.Name}}: {{.Event}} at {{index .Values 0}} {{.Unit}}"
to = ["ops@example.com"]

[[modbus]]
name = "tank"
mode = "tcp"
address = "127.0.0.1:` + strconv.Itoa(port) + `"
poll_interval = "50ms"
timeout = "200ms"
offline_after = 2
to = ["maintenance@example.com"]

[[modbus.tag]]
name = "level"
table = "holding"
address = 0
type = "int16"
scale = 0.1
unit = "%"

[[modbus.tag.alarm]]
limit = "HH"
setpoint = 95
deadband = 2
code = 500
`
	path := c.write(t)
	srv := startServe(t, path)
	do("hr 0 975")
	msgs := u.Wait(t, 1, 20*time.Second)
	if !strings.Contains(string(msgs[0].Data), "Subject: Tank 1 overfull: raise at 97.5 %") || msgs[0].To[0] != "ops@example.com" {
		t.Errorf("alarm mail to %v:\n%s", msgs[0].To, msgs[0].Data)
	}
	// The device in plcmail status, on the status page and in /metrics.
	r := runCLI(t, "", "plcmail", "-c", path, "status")
	for _, want := range []string{"modbus devices:", "tank  tcp://127.0.0.1:" + strconv.Itoa(port) + " slave 1  up",
		"mails 1, held 0", "active: Tank 1 overfull (level/HH, critical) for"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	if _, page := scrape(t, addr, "/", ""); !strings.Contains(page, `<td>tank</td><td>level</td><td>HH</td><td>Tank 1 overfull</td>`) {
		t.Errorf("status page without the active alarm:\n%s", page)
	}
	metric := func(want string) bool {
		_, m := scrape(t, addr, "/metrics", "")
		return strings.Contains(m, want)
	}
	for _, want := range []string{`plcmail_link_up{link="modbus/tank"} 1`, `plcmail_active_alarms{link="modbus/tank"} 1`,
		`plcmail_alarm_mails_total{link="modbus/tank"} 1`, `plcmail_modbus_polls_total{device="tank",result="ok"}`} {
		if !metric(want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	do("mute")
	msgs = u.Wait(t, 2, 20*time.Second)
	if !strings.Contains(string(msgs[1].Data), "Modbus device offline: tank") || msgs[1].To[0] != "maintenance@example.com" {
		t.Errorf("offline notice to %v:\n%s", msgs[1].To, msgs[1].Data)
	}
	if !metric(`plcmail_link_up{link="modbus/tank"} 0`) || !metric(`plcmail_modbus_offline{device="tank"} 1`) {
		t.Error("metrics do not show the device offline")
	}
	if r := runCLI(t, "", "plcmail", "-c", path, "status"); !strings.Contains(r.stdout, "OFFLINE") || !strings.Contains(r.stdout, "last error: ") {
		t.Errorf("status of the offline device:\n%s", r.stdout)
	}
	if logs, err := srv.stop(); err != nil {
		t.Errorf("serve: %v\n%s", err, logs)
	}
}

// TestReloadModbus: SIGHUP's reload hands a changed [[modbus]] to the
// poller, which adds and removes devices, instead of asking for a restart.
func TestReloadModbus(t *testing.T) {
	c := newTestConfig(t)
	device := func(name string) string { // one slave id per name, on one address
		return "\n[[modbus]]\nname = \"" + name + "\"\nmode = \"tcp\"\naddress = \"127.0.0.1:1\"\nslave_id = " + strconv.Itoa(int(name[0])) + "\nto = [\"ops@example.com\"]\n" +
			"[[modbus.tag]]\nname = \"t\"\ntable = \"coil\"\naddress = 0\n[[modbus.tag.alarm]]\nstate = true\n"
	}
	c.Extra = "[[alarm]]\ncode = 1\nto = [\"ops@example.com\"]\n" + device("a")
	path := c.write(t)
	r := startReloadTarget(t, path)
	started, links, logs, log := r.started, r.links, r.logs, r.log
	poller, comp, err := modbusComponent(started, r.tmpl, r.sp, nil, new(flood.Limiter), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- comp.run(ctx) }()
	defer func() { cancel(); <-done }()

	names := func() string {
		var n []string
		for _, d := range poller.Status() {
			n = append(n, d.Name)
		}
		return strings.Join(n, ",")
	}
	for _, step := range []struct{ extra, want string }{
		{device("a") + device("b"), "a,b"},
		{device("b"), "b"},
	} {
		c.Extra = "[[alarm]]\ncode = 1\nto = [\"ops@example.com\"]\n" + step.extra
		c.write(t)
		before := len(logs.String())
		reload(path, started, links, poller, log, new(slog.LevelVar))
		got := logs.String()[before:]
		if !strings.Contains(got, `msg="reloaded configuration"`) || strings.Contains(got, "modbus") && strings.Contains(got, "sections=") {
			t.Errorf("reload to %s: log:\n%s", step.want, got)
		}
		if n := names(); n != step.want {
			t.Errorf("devices after the reload: %s, want %s", n, step.want)
		}
	}
}
