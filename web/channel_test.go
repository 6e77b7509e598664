package web

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/channel"
)

// Fallback channels on the page (numbered as DELIVERY's via) and in the
// metrics, read with Prometheus' parser.
func TestPageAndMetricsChannels(t *testing.T) {
	st := sampleStatus()
	now := st.Now
	st.Channels = []channel.Stats{
		{Name: "ntfy", Kind: channel.Ntfy, Delivered: 5, Retried: 2, LastSuccess: now.Add(-3 * time.Minute)},
		{Name: "teams", Kind: channel.Teams, Queued: 1, Dead: 1, LastError: "404 <b>Not Found</b>", LastErrorAt: now.Add(-time.Minute)},
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, newPageData(&st)); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{`id="channels"`, "<td>1 ntfy</td><td>ntfy</td>", "<td>2 teams</td>", "3m00s ago", "channel teams", "404 &lt;b&gt;Not Found"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	buf.Reset()
	if err := WriteMetrics(&buf, &st); err != nil {
		t.Fatal(err)
	}
	fams := parseMetrics(t, buf.String())
	checkSamples(t, fams, []sampleWant{
		{"plcmail_channel_deliveries_total", "COUNTER", "channel=ntfy,result=delivered", 5},
		{"plcmail_channel_deliveries_total", "COUNTER", "channel=ntfy,result=retried", 2},
		{"plcmail_channel_deliveries_total", "COUNTER", "channel=teams,result=dead", 1},
		{"plcmail_channel_queue_records", "GAUGE", "channel=teams", 1},
		{"plcmail_channel_queue_records", "GAUGE", "channel=ntfy", 0},
	})
	// Without channels the page has no table.
	st.Channels = nil
	buf.Reset()
	pageTmpl.Execute(&buf, newPageData(&st))
	if strings.Contains(buf.String(), `id="channels"`) {
		t.Error("channel table without channels")
	}
}
