package bridge

import (
	"fmt"
	"testing"

	"github.com/plcmail/plcmail/protocol"
)

// TestObserved checks what the status page and /metrics read from a link:
// frames by type, the active alarms (after a raise, a clear and a
// duplicate), and the recent events, bounded and oldest first.
func TestObserved(t *testing.T) {
	g, p := startHello(t, testOpts{}, 7)
	raise := p.event(17, protocol.EventRaise, "P1 < 90")
	p.expectAck(raise, protocol.AckQueued)
	p.sendFrame(raise) // retransmission: neither counted as an event nor recent
	p.expectAck(raise, protocol.AckDuplicate)
	p.expectAck(p.event(18, protocol.EventRaise, "door open"), protocol.AckQueued)
	p.expectAck(p.event(18, protocol.EventClear, "door closed"), protocol.AckQueued)
	st := g.b.Status()[0]
	if st.Hellos != 1 || st.Events != 4 || st.Heartbeats != 0 {
		t.Errorf("frames by type: hellos %d events %d heartbeats %d, want 1 4 0", st.Hellos, st.Events, st.Heartbeats)
	}
	if fmt.Sprint(st.Active) != "map[17:alarm]" {
		t.Errorf("active %v, want only 17", st.Active)
	}
	if len(st.Recent) != 3 || st.Recent[0].Code != 17 || st.Recent[0].Text != "P1 < 90" || st.Recent[2].Event != "clear" || st.Recent[2].At.IsZero() {
		t.Errorf("recent %+v", st.Recent)
	}
	p.sendFrame(&protocol.Frame{Type: protocol.TypeHeartbeat, Boot: 7, Uptime: 200})
	for i := range recentAlarms + 5 {
		p.expectAck(p.event(uint16(100+i), protocol.EventRaise, ""), protocol.AckQueued)
	}
	g.waitFor("heartbeat counted", func() bool { return g.b.Status()[0].Heartbeats == 1 })
	st2 := g.b.Status()[0]
	if n := len(st2.Recent); n != recentAlarms || st2.Recent[n-1].Code != 100+recentAlarms+4 {
		t.Errorf("recent: %d events, last %+v; want %d, the newest last", n, st2.Recent[n-1], recentAlarms)
	}
	if len(st2.Active) != 1+recentAlarms+5 {
		t.Errorf("%d active, want %d", len(st2.Active), 1+recentAlarms+5)
	}
	// Snapshots share nothing a later frame changes.
	if len(st.Recent) != 3 || len(st.Active) != 1 {
		t.Errorf("an earlier snapshot changed: %d recent, %d active", len(st.Recent), len(st.Active))
	}
}
