package fakeupstream_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/smtp"
	"net/textproto"
	"sync"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/fakeupstream"
)

// TestRequireTLSAndDataHook drives the server with the standard library's
// client: MAIL before STARTTLS is refused with 530 under RequireTLS; after
// STARTTLS and AUTH the Data hook sees the message with its TLS version and
// chooses the reply; a message it rejects is not recorded.
func TestRequireTLSAndDataHook(t *testing.T) {
	var mu sync.Mutex
	var hooked []fakeupstream.Received
	s, err := fakeupstream.Start(fakeupstream.Options{RequireTLS: true, RequireAuth: true, Domain: "mail.plcmail.test",
		Data: func(m fakeupstream.Received) error {
			mu.Lock()
			defer mu.Unlock()
			hooked = append(hooked, m)
			if len(hooked) == 2 {
				return fakeupstream.Reply(451, "try again later")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var tpErr *textproto.Error
	if err := c.Mail("plc@example.com"); !errors.As(err, &tpErr) || tpErr.Code != 530 {
		t.Fatalf("MAIL before STARTTLS: %v, want 530", err)
	}
	c.Reset()
	if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: s.CAPool}); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", s.Username(), s.Password(), "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	send := func(body string) error {
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
		w.Write([]byte(body))
		return w.Close()
	}
	if err := send("Subject: one\r\n\r\n1\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := send("Subject: two\r\n\r\n2\r\n"); !errors.As(err, &tpErr) || tpErr.Code != 451 {
		t.Fatalf("second message: %v, want the hook's 451", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msgs, err := s.Wait(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || string(msgs[0].Data) != "Subject: one\r\n\r\n1\r\n" {
		t.Fatalf("recorded %+v, want only the first message", msgs)
	}
	m := msgs[0]
	if !m.TLS || m.TLSVersion < tls.VersionTLS12 || m.User != s.Username() || m.Mech != "PLAIN" || m.Conn != 1 {
		t.Errorf("message: TLS %v version %x user %q mech %q conn %d", m.TLS, m.TLSVersion, m.User, m.Mech, m.Conn)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooked) != 2 {
		t.Errorf("hook saw %d messages, want 2", len(hooked))
	}
}

// TestRestartSameAddress: Stop takes the server down (dials fail), Restart
// brings it back on the same address.
func TestRestartSameAddress(t *testing.T) {
	s, err := fakeupstream.Start(fakeupstream.Options{Security: fakeupstream.Plain})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addr
	s.Stop()
	if c, err := smtp.Dial(addr); err == nil {
		c.Close()
		t.Fatal("dial succeeded while stopped")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatalf("dial after Restart: %v", err)
	}
	c.Quit()
	if s.Addr != addr || s.Connections() != 1 {
		t.Errorf("addr %s (was %s), %d connections, want 1", s.Addr, addr, s.Connections())
	}
}

func TestNo8BitMIMEOnlyPlain(t *testing.T) {
	if _, err := fakeupstream.Start(fakeupstream.Options{No8BitMIME: true}); !errors.Is(err, fakeupstream.ErrNo8BitMIMEWithTLS) {
		t.Errorf("No8BitMIME with STARTTLS: %v", err)
	}
}
