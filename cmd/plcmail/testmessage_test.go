package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/upstream"
)

func TestTestMessageIsValid(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{})
	cfg := u.GatewayConfig(t)
	msg := testMessage(cfg, "ops@example.com", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	for _, h := range []string{"From: ", "To: <ops@example.com>", "Date: Sun, 01 Mar 2026 12:00:00 +0000", "Message-ID: <", "Subject: "} {
		if !bytes.Contains(msg, []byte(h)) {
			t.Errorf("test message lacks %q", h)
		}
	}
	if bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("bare LF in test message")
	}
	if err := upstream.SendNow(context.Background(), upstreamOptions(cfg), cfg.Upstream.From, []string{"ops@example.com"}, msg, nil); err != nil {
		t.Fatal(err)
	}
}
