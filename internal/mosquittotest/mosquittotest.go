// Package mosquittotest runs a real MQTT broker, Debian's mosquitto, for the
// tests of the mqtt package and of the fleet view in cmd/plcmail: the client
// is tested against the broker users run, with TLS verified against a
// throwaway CA and a password the broker checks, not against a fake that
// agrees with our reading of the specification.
//
// The broker listens on 127.0.0.1 only, on a TLS port and a plaintext port
// chosen free at start and kept across Restart; it keeps nothing on disk
// (persistence off), so a restart loses every retained message, as a broker
// without persistence does. It dies with the test process (Pdeathsig).
package mosquittotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/plcmail/plcmail/internal/testenv"
	"github.com/plcmail/plcmail/internal/throwawayca"
)

// Credentials the broker accepts.
const (
	Username = "gateway"
	Password = "mqtt-s3cret"
)

// Broker is one mosquitto process.
type Broker struct {
	t   testing.TB
	bin string
	dir string
	// TLSPort and PlainPort are the listeners' ports on 127.0.0.1.
	TLSPort, PlainPort int
	// CA signed the broker's certificate (for 127.0.0.1 and localhost);
	// CAFile is its PEM, for mqtt.ca_file.
	CA     *throwawayca.CA
	CAFile string
	// PasswordFile holds Password on one line, mode 0600, for
	// mqtt.password_file.
	PasswordFile string

	cmd  *exec.Cmd
	done chan struct{}
	log  testenv.SyncBuffer
}

// Start starts a broker, or skips t (fails it under CI) when mosquitto is
// not installed.
func Start(t testing.TB) *Broker {
	t.Helper()
	bin := findMosquitto(t)
	passwd := testenv.NeedTool(t, "mosquitto_passwd", "mosquitto")
	b := &Broker{t: t, bin: bin, dir: t.TempDir()}
	ca, err := throwawayca.New("mosquittotest CA")
	if err != nil {
		t.Fatal(err)
	}
	b.CA = ca
	b.CAFile = filepath.Join(b.dir, "ca.pem")
	if err := os.WriteFile(b.CAFile, ca.PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := throwawayca.WriteKeyPair(b.dir, cert)
	if err != nil {
		t.Fatal(err)
	}
	hashed := filepath.Join(b.dir, "broker.passwd")
	if out, err := exec.Command(passwd, "-c", "-b", hashed, Username, Password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	b.PasswordFile = filepath.Join(b.dir, "client.secret")
	if err := os.WriteFile(b.PasswordFile, []byte(Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.TLSPort, b.PlainPort = freePort(t), freePort(t)
	conf := fmt.Sprintf(`# written by mosquittotest
user root
persistence false
per_listener_settings false
allow_anonymous false
password_file %s
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_type debug
connection_messages true

listener %d 127.0.0.1
certfile %s
keyfile %s

listener %d 127.0.0.1
`, hashed, b.TLSPort, certFile, keyFile, b.PlainPort)
	if err := os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("mosquitto's log:\n%s", b.Log())
		}
	})
	return b
}

// findMosquitto returns the broker's path: Debian installs it in /usr/sbin,
// which a non-root PATH may lack.
func findMosquitto(t testing.TB) string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	testenv.Missing(t, "mosquitto not installed (apt-get install mosquitto)")
	return ""
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (b *Broker) start() {
	b.t.Helper()
	b.cmd = exec.Command(b.bin, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	b.cmd.Stdout, b.cmd.Stderr = &b.log, &b.log
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	done := make(chan struct{})
	b.done = done
	go func(c *exec.Cmd) { c.Wait(); close(done) }(b.cmd)
	for _, port := range []int{b.TLSPort, b.PlainPort} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				break
			}
			select {
			case <-done:
				b.t.Fatalf("mosquitto exited at start:\n%s", b.log.String())
			default:
			}
			if time.Now().After(deadline) {
				b.t.Fatalf("mosquitto does not listen on %s:\n%s", addr, b.log.String())
			}
		}
	}
}

// Stop stops the broker (SIGTERM, then SIGKILL after 5s); a no-op when it
// is stopped.
func (b *Broker) Stop() {
	if b.cmd == nil {
		return
	}
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGTERM)
	syscall.Kill(-b.cmd.Process.Pid, syscall.SIGCONT) // a frozen broker takes the TERM only then
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
	b.cmd = nil
}

// Restart stops the broker and starts it again on the same ports, with
// every retained message lost.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// TLSURL is the broker's TLS listener as mqtt.broker takes it.
func (b *Broker) TLSURL() string { return fmt.Sprintf("mqtts://127.0.0.1:%d", b.TLSPort) }

// PlainURL is the plaintext listener (allowed because it is loopback).
func (b *Broker) PlainURL() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.PlainPort) }

// Log is what the broker wrote so far (connections, disconnections,
// errors), for failure messages.
func (b *Broker) Log() string { return b.log.String() }

// Message is one message a Subscriber received.
type Message struct {
	Topic    string
	Payload  string
	Retained bool // handed out as the topic's retained message on subscribe
}

// Subscriber is a fresh MQTT client (paho) subscribed to a topic filter, as
// a dashboard would be: it sees the retained messages first, then what is
// published.
type Subscriber struct {
	c    paho.Client
	msgs chan Message
}

// Subscribe connects a new client over the plaintext listener and
// subscribes to filter with QoS 1.
func (b *Broker) Subscribe(t testing.TB, filter string) *Subscriber {
	t.Helper()
	s := &Subscriber{msgs: make(chan Message, 1000)}
	o := paho.NewClientOptions().AddBroker(b.PlainURL()).
		SetClientID(fmt.Sprintf("sub-%d", time.Now().UnixNano())).
		SetUsername(Username).SetPassword(Password).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	s.c = paho.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: connect: %v\nbroker log:\n%s", tok.Error(), b.Log())
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	tok := s.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		s.msgs <- Message{Topic: m.Topic(), Payload: string(m.Payload()), Retained: m.Retained()}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: subscribe %s: %v", filter, tok.Error())
	}
	return s
}

// Wait returns the first message (skipping others) on topic (any topic
// for "") for which ok holds, or fails t after timeout.
func (s *Subscriber) Wait(t testing.TB, topic string, timeout time.Duration, ok func(Message) bool) Message {
	t.Helper()
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.msgs:
			if (topic == "" || m.Topic == topic) && ok(m) {
				return m
			}
			seen = append(seen, fmt.Sprintf("%s %q retained=%v", m.Topic, m.Payload, m.Retained))
		case <-deadline:
			t.Fatalf("no matching message on %s within %v; seen:\n%s", topic, timeout, strings.Join(seen, "\n"))
			return Message{}
		}
	}
}

// None fails t when a message on topic arrives within d.
func (s *Subscriber) None(t testing.TB, topic string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-s.msgs:
			if m.Topic == topic {
				t.Errorf("unexpected message on %s: %q retained=%v", m.Topic, m.Payload, m.Retained)
			}
		case <-deadline:
			return
		}
	}
}

// Freeze stops the broker process (SIGSTOP) without closing its
// connections: clients stay connected and get no answer, as from a broker
// that hangs. Thaw (SIGCONT) lets it go on.
//
// It returns once the kernel shows the broker stopped: kill(2) only queues
// the signal, and a broker running on another CPU could still answer a
// packet the test sends right after Freeze (seen under load: the in-flight
// PUBLISH of TestPublishFailsWhenConnectionLost got its PUBACK).
func (b *Broker) Freeze() {
	pid := b.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGSTOP)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return // not Linux, or gone: nothing better to wait for
		}
		// The state follows the command name in parentheses: "pid (comm) T ...".
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'T' {
			return
		}
	}
}

// Thaw resumes a broker stopped by Freeze.
func (b *Broker) Thaw() { syscall.Kill(-b.cmd.Process.Pid, syscall.SIGCONT) }
