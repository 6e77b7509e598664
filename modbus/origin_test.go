package modbus

import (
	"encoding/json"
	"testing"

	"github.com/plcmail/plcmail/alarmmail"
)

// sevOf reads an origin as package channel does: {"sev": ...}.
func sevOf(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var o struct {
		Sev  string `json:"sev"`
		Link string `json:"link"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("origin %s: %v", raw, err)
	}
	if o.Link != "" {
		t.Errorf("origin %s has a link: the bridge would take it for its own", raw)
	}
	return o.Sev
}

// TestOriginSeverity: each alarm mail of a rule carries the rule's
// severity in its spool origin, for the fallback channels' severity rule.
func TestOriginSeverity(t *testing.T) {
	port := freePort(t)
	s := startSlave(t, "tcp", itoa(port))
	g := newGateway(t, s, tcpDevice(port, levelTag()))
	s.do("hr 0 960")
	g.sync()
	s.do("hr 0 0")
	g.sync()
	ms, err := g.sp.List()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"modbus/dev/level/H/1": "warning", "modbus/dev/level/HH/1": "critical",
		"modbus/dev/level/H/2": "warning", "modbus/dev/level/HH/2": "critical"}
	for _, m := range ms {
		w, ok := want[m.Key]
		if !ok {
			continue
		}
		delete(want, m.Key)
		if got := sevOf(t, m.Origin); got != w {
			t.Errorf("%s: origin %s, want sev %s", m.Key, m.Origin, w)
		}
	}
	for k := range want {
		t.Errorf("no mail %s", k)
	}
}

// TestDigestOriginSeverity: a digest's origin has the highest severity of
// its events.
func TestDigestOriginSeverity(t *testing.T) {
	for _, tt := range []struct {
		sevs []string
		want string
	}{
		{[]string{"warning", "critical", "info"}, "critical"},
		{[]string{"info", "alarm"}, "alarm"},
		{[]string{"info"}, "info"},
		{nil, ""},
	} {
		var es []alarmmail.Entry
		for _, s := range tt.sevs {
			es = append(es, alarmmail.Entry{Severity: s})
		}
		if got := sevOf(t, digestOrigin("dev", es)); got != tt.want {
			t.Errorf("%v: sev %q, want %q", tt.sevs, got, tt.want)
		}
	}
}
