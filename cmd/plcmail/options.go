package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/message"
	"github.com/plcmail/plcmail/spool"
	"github.com/plcmail/plcmail/upstream"
)

// This file is where the configuration becomes each component's options:
// the components never see config types, so they can be built in tests
// from their options alone.

// upstreamOptions turns [upstream] into the client's options. The password
// is read at each authentication, so an edited password_file takes effect
// at the next connection. Validation has parsed the pins already.
func upstreamOptions(cfg *config.Config) upstream.Options {
	u := &cfg.Upstream
	pins := make([][32]byte, 0, len(u.Fingerprints))
	for _, s := range u.Fingerprints {
		if fp, err := upstream.ParseFingerprint(s); err == nil {
			pins = append(pins, fp)
		}
	}
	return upstream.Options{
		Host:     u.Host,
		Port:     u.Port,
		Security: upstream.Security(u.Security),
		Auth:     u.Auth,
		Username: u.Username,
		Secret:   func(context.Context) (string, error) { return u.UpstreamPassword() },
		CAFile:   u.CAFile,
		Pins:     pins,
		Hostname: cfg.Gateway.Hostname,
		Timeout:  u.Timeout.D(),
	}
}

// queueOptions turns [queue] and [upstream] into the delivery loop's
// options.
func queueOptions(cfg *config.Config) spool.QueueOptions {
	q := &cfg.Queue
	return spool.QueueOptions{
		Upstream:    upstreamOptions(cfg),
		Connections: q.Connections,
		BatchSize:   q.BatchSize,
		ScanEvery:   q.ScanEvery.D(),
		Lifetime:    q.Lifetime.D(),
		MinBackoff:  q.MinBackoff.D(),
		MaxBackoff:  q.MaxBackoff.D(),
	}
}

// testMessage returns the mail `plcmail test --to` sends: From is
// upstream.from, with Date and Message-ID, CRLF line endings.
func testMessage(cfg *config.Config, to string, now time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: plcmail <%s>\r\n", cfg.Upstream.From)
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	fmt.Fprintf(&b, "Subject: plcmail test from %s\r\n", cfg.Gateway.Hostname)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", message.MessageID(now, cfg.Gateway.Hostname))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "This is a test message from the plcmail gateway %s.\r\n", cfg.Gateway.Hostname)
	fmt.Fprintf(&b, "Upstream: %s:%d, security %s.\r\n", cfg.Upstream.Host, cfg.Upstream.Port, cfg.Upstream.Security)
	return b.Bytes()
}
