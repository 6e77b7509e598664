package smtpd_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/smtpd"
)

// BenchmarkAccept measures accepted messages per second: 16 concurrent
// clients, 4 KiB messages, every one fsynced into a spool on the test's
// temporary directory before its 250. "reuse" sends many messages per
// session, "connect" one session per message (like smtp-source's default).
func BenchmarkAccept(b *testing.B) {
	body := "Subject: bench\r\nFrom: plc@example.com\r\nTo: ops@example.com\r\n\r\n" +
		strings.Repeat(strings.Repeat("0123456789", 7)+"\r\n", 4096/72)
	for _, mode := range []string{"reuse", "connect"} {
		b.Run(mode, func(b *testing.B) {
			g := startGateway(b, func(o *smtpd.Options) {
				o.MaxConnections = 64
				o.MaxConnectionsPerIP = 32
			})
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var c *smtp.Client
					for next.Add(1) <= int64(b.N) {
						if c == nil {
							var err error
							if c, err = smtp.Dial(g.addr); err != nil {
								errs <- err
								return
							}
							if err := c.Hello("bench"); err != nil {
								errs <- err
								return
							}
						}
						if err := sendOne(c, body); err != nil {
							errs <- err
							return
						}
						if mode == "connect" {
							c.Quit()
							c = nil
						}
					}
					if c != nil {
						c.Quit()
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			if n := len(g.queued()); n != b.N {
				b.Fatalf("%d queued, want %d", n, b.N)
			}
		})
	}
}

func sendOne(c *smtp.Client, body string) error {
	if err := c.Mail("plc@example.com"); err != nil {
		return err
	}
	if err := c.Rcpt("ops@example.com"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	io.WriteString(w, body)
	return w.Close()
}

// BenchmarkIdleSessionsRSS opens 200 sessions that said EHLO and then wait,
// and reports the process's resident memory (VmRSS, VmHWM from
// /proc/self/status; the client side is in the same process but only holds
// sockets). Not meaningful under -race.
func BenchmarkIdleSessionsRSS(b *testing.B) {
	const sessions = 200
	for i := 0; i < b.N; i++ {
		g := startGateway(b, func(o *smtpd.Options) {
			o.MaxConnections = 256
			o.MaxConnectionsPerIP = 256
		})
		runtime.GC()
		before := procStatus(b, "VmRSS")
		var conns []net.Conn
		for j := 0; j < sessions; j++ {
			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			r := bufio.NewReader(c)
			r.ReadString('\n')
			fmt.Fprintf(c, "EHLO idle%d\r\n", j)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if l[3] == ' ' {
					break
				}
			}
		}
		if n := g.srv.ActiveSessions(); n != sessions {
			b.Fatalf("%d sessions open, want %d", n, sessions)
		}
		runtime.GC()
		after := procStatus(b, "VmRSS")
		b.ReportMetric(after/1024, "RSS-MB")
		b.ReportMetric((after-before)/1024, "delta-MB")
		b.ReportMetric(procStatus(b, "VmHWM")/1024, "peakRSS-MB")
		b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
		for _, c := range conns {
			c.Close()
		}
	}
}

// procStatus returns a kB value from /proc/self/status.
func procStatus(b *testing.B, key string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb
		}
	}
	return 0
}
