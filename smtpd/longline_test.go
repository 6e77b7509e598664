package smtpd_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/internal/testenv"
)

// rejectLongLines is what a provider does with a line over 998 octets
// (RFC 5321 §4.5.3.1.6): "500 Line too long", after the whole DATA. The
// fake upstream's go-smtp only refuses lines over 2000, so the test
// configures the provider's limit.
func rejectLongLines(m mailertest.Received) error {
	for i, l := range bytes.Split(m.Data, []byte("\r\n")) {
		if len(l) > 998 {
			return mailertest.Reply(500, fmt.Sprintf("Line too long (line %d: %d octets)", i+1, len(l)))
		}
	}
	return nil
}

// TestLongLineRelayed: a board sends a 1500-octet line, which the listener
// accepts (max_line_length 2000). The 250 must mean delivered: the
// upstream, which refuses lines over 998 octets as providers do, gets the
// message, and the recipient decodes the line exactly as it was sent.
// Before Repair mended long lines, the provider's 500 dead-lettered it.
func TestLongLineRelayed(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true, Data: rejectLongLines})
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	})
	addr, _ := startRelay(t, testOptions(), u, log)

	line := strings.Repeat("Druck zu hoch; ", 100) // 1500 octets
	out := converse(t, addr, "",
		"EHLO 192.168.1.177\r\nMAIL FROM:<plc@example.com>\r\nRCPT TO:<ops@example.com>\r\nDATA\r\n"+
			"Subject: Alarm\r\n\r\n"+line+"\r\nPumpe 3\r\n.\r\nQUIT\r\n")
	if got := codeList(out); got != "220 250 250 250 354 250 221" {
		t.Fatalf("dialogue: %q\n%s", got, out)
	}
	got := u.Wait(t, 1, 15*time.Second)[0]
	m, raw := parse(t, got.Data)
	if cte := m.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding %q", cte)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(strings.NewReader(raw)))
	if err != nil || string(body) != line+"\r\nPumpe 3\r\n" {
		t.Errorf("decoded body %q (%v), want the line as sent", body, err)
	}
}
