package mailertest_test

import (
	"crypto/tls"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
)

// TestStartTLSAuth drives the upstream with the standard library's client,
// an implementation independent of plcmail's.
func TestStartTLSAuth(t *testing.T) {
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run(mech, func(t *testing.T) {
			u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true, AuthMechs: []string{mech}})
			c, err := smtp.Dial(u.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: u.CAPool}); err != nil {
				t.Fatal(err)
			}
			var a smtp.Auth = smtp.PlainAuth("", "plc@example.com", "s3cret-Pa55", "127.0.0.1")
			if mech == "LOGIN" {
				a = loginAuth{}
			}
			if err := c.Auth(a); err != nil {
				t.Fatal(err)
			}
			if err := c.Mail("a@example.com"); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("b@example.com"); err != nil {
				t.Fatal(err)
			}
			w, _ := c.Data()
			w.Write([]byte("Subject: x\r\n\r\nhi\r\n"))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			c.Quit()
			m := u.Wait(t, 1, 5*time.Second)[0]
			if m.From != "a@example.com" || m.To[0] != "b@example.com" || !m.TLS || m.User != "plc@example.com" || m.Mech != mech {
				t.Errorf("got %+v", m)
			}
			if string(m.Data) != "Subject: x\r\n\r\nhi\r\n" {
				t.Errorf("data %q", m.Data)
			}
			if u.Connections() != 1 {
				t.Errorf("connections %d", u.Connections())
			}
		})
	}
}

type loginAuth struct{}

func (loginAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }
func (loginAuth) Next(from []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	if strings.HasPrefix(string(from), "User") {
		return []byte("plc@example.com"), nil
	}
	return []byte("s3cret-Pa55"), nil
}

func TestRequireAuthAndRestart(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{Security: mailertest.Plain, RequireAuth: true})
	c, err := smtp.Dial(u.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.com"); err == nil || !strings.Contains(err.Error(), "530") {
		t.Fatalf("MAIL without AUTH: %v", err)
	}
	c.Close()
	u.Stop()
	if _, err := smtp.Dial(u.Addr); err == nil {
		t.Fatal("dial after Stop succeeded")
	}
	u.Start()
	c, err = smtp.Dial(u.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if u.Connections() != 2 {
		t.Errorf("connections %d, want 2", u.Connections())
	}
}
