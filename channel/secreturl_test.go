package channel

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestErrorHidesTheURL: a Slack or Teams incoming-webhook URL is the
// secret itself, so a failed attempt's error (logged, in `plcmail status`,
// on the status page and in the record) must not carry it, as Go's
// *url.Error does ("Post \"https://hooks.slack.com/services/T/B/SECRET\": ...").
func TestErrorHidesTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	const secret = "SECRETpart0123"
	for _, kind := range []Kind{Slack, Teams, Webhook, Ntfy} {
		t.Run(string(kind), func(t *testing.T) {
			f := newFixture(t, Options{Channels: []Channel{
				{Name: "chat", Kind: kind, URL: "http://" + addr + "/services/T0/B0/" + secret, HasSeverityRule: true},
			}})
			f.d.minBackoff = time.Hour // one attempt
			f.alarm(t, "press-1", 1, "alarm")
			f.run(t)
			waitFor(t, "the failed attempt", func() bool { return f.d.Stats()[0].Retried == 1 })
			st := f.d.Stats()[0]
			if strings.Contains(st.LastError, secret) || !strings.Contains(st.LastError, "refused") {
				t.Errorf("status error %q", st.LastError)
			}
			for _, r := range f.d.store.all() {
				if strings.Contains(r.LastError, secret) {
					t.Errorf("record error %q", r.LastError)
				}
			}
		})
	}
}
