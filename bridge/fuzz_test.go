package bridge

import (
	"bytes"
	"testing"
	"time"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// FuzzLinkBytes feeds arbitrary line bytes to a link's frame handling and
// checks the promise behind every ACK: the frame it answers is in the
// journal, so it survives a restart. It also must never panic.
func FuzzLinkBytes(f *testing.F) {
	enc := func(frames ...*protocol.Frame) []byte {
		var b []byte
		for _, fr := range frames {
			fr.Version = protocol.Version
			b, _ = protocol.AppendEncoded(b, fr)
		}
		return b
	}
	hello := &protocol.Frame{Type: protocol.TypeHello, Boot: 1, Seq: 1, ActiveTotal: 1, NActive: 1,
		Active: [protocol.MaxActive]protocol.ActiveAlarm{{Code: 3, Severity: 2}}}
	ev := &protocol.Frame{Type: protocol.TypeEvent, Boot: 1, Seq: 2, Code: 17, Event: protocol.EventRaise, TextLen: 3,
		Text: [protocol.MaxText]byte{'a', '\r', '\n'}}
	f.Add(enc(hello, ev, ev))
	f.Add(append([]byte("\x00garbage\x00\x01\x02"), enc(ev)...))
	f.Add(enc(&protocol.Frame{Type: protocol.TypeHeartbeat, Boot: 9}, &protocol.Frame{Type: protocol.TypeEvent, Boot: 9, Seq: 4, Code: 1, Event: protocol.EventClear}))
	f.Add([]byte{0, 0, 0, 0xff, 0xfe})

	opts := optionsFor(f, testCfg(f, "/dev/null", testOpts{holdoff: "1m", maxPerMin: 3}))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		sp, err := spool.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := newBridge(opts, sp, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		l := b.links[0]
		var out bytes.Buffer
		l.w, l.started, l.openedAt = &out, time.Now(), time.Now().Add(-time.Hour)
		l.feed(data)
		l.tick(time.Now().Add(time.Hour)) // offline notice and digest flush
		l.j.close()

		_, st, err := openJournal(dir+"/links", "line1")
		if err != nil {
			t.Fatal(err)
		}
		protocol.NewDecoder().Feed(out.Bytes(), func(r *protocol.Frame, err error) {
			if err != nil {
				t.Fatalf("gateway sent an undecodable frame: %v", err)
			}
			if r.Type == protocol.TypeAck && (st.Boot != r.Boot || !st.seen.has(r.Seq)) {
				// An ACK of an older boot is fine only if that boot was superseded
				// (also by a new boot of the same id, SPEC §4 rule 4c).
				if r.Boot == st.Boot && st.Gen == 0 {
					t.Fatalf("ACK for boot %d seq %d, but the journal does not have it", r.Boot, r.Seq)
				}
			}
		})
	})
}
