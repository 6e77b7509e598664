package spool

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/message"
	"github.com/plcmail/plcmail/message/messagetest"
)

// TestQueueDowngradeKeepsSpool: the conversion happens on the wire only.
// The first attempt goes to a server without 8BITMIME (which takes the
// quoted-printable and answers 421, so that the retry needs a new session
// and a new EHLO: after a 451 the connection could be reused); the retry,
// to the same server now announcing 8BITMIME, gets the original bytes, so
// the spool kept them.
func TestQueueDowngradeKeepsSpool(t *testing.T) {
	repaired8bit := messagetest.Repaired8Bit()
	u, opts, s := upstreamSpool(t, mailertest.Options{Security: mailertest.Plain, NoAuth: true, No8BitMIME: true})
	var first atomic.Pointer[mailertest.Received]
	u.SetData(func(m mailertest.Received) error {
		if first.CompareAndSwap(nil, &m) {
			u.SetNo8BitMIME(false)
			return mailertest.Reply(421, "closing, try again")
		}
		return nil
	})
	sub := testSub(1, "downgrade/1")
	sub.Data = repaired8bit
	if _, err := s.Enqueue(sub); err != nil {
		t.Fatal(err)
	}
	_, results := runQueue(t, s, opts)
	m := u.Wait(t, 1, 10*time.Second)[0]
	if r := waitResults(t, results, 1, 10*time.Second)[0]; !r.Delivered {
		t.Fatalf("result %+v", r)
	}
	f := first.Load()
	if f.Body != "" || message.Has8Bit(f.Data) || !bytes.Contains(f.Data, []byte("quoted-printable")) {
		t.Errorf("first attempt (no 8BITMIME) got BODY=%q\n%s", f.Body, f.Data)
	}
	if m.Body != "8BITMIME" || !bytes.Equal(m.Data, repaired8bit) {
		t.Errorf("retry (8BITMIME) got BODY=%q, data\n%q\nwant\n%q", m.Body, m.Data, repaired8bit)
	}
}
