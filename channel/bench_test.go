package channel

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// The cost the severity rule adds to an alarm's Enqueue: one more durable
// file (write, fsync, link, directory fsync) before the mail's.
//
//	go test ./channel -run XXX -bench Enqueue -benchtime 200x
func BenchmarkEnqueue(b *testing.B) {
	for _, hook := range []bool{false, true} {
		b.Run(fmt.Sprintf("severity_hook=%v", hook), func(b *testing.B) {
			sp, err := spool.Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			if hook {
				d, err := New(sp, Options{Hostname: "gw", Channels: []Channel{
					{Name: "hook", Kind: Webhook, URL: "http://127.0.0.1:1/", HasSeverityRule: true, SeverityAtLeast: protocol.SeverityAlarm},
				}}, nil)
				if err != nil {
					b.Fatal(err)
				}
				sp.BeforeEnqueue(d.Hook)
			}
			b.ResetTimer()
			for i := range b.N {
				_, err := sp.Enqueue(spool.Submission{Envelope: spool.Envelope{From: "plc@example.com", To: []string{"ops@example.com"}},
					Data: []byte(alarmMail), Source: "serial:press-1", Key: fmt.Sprintf("press-1/7/%d", i+1),
					Origin: json.RawMessage(fmt.Sprintf(`{"link":"press-1","boot":7,"seq":%d,"sev":"critical"}`, i+1))})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
