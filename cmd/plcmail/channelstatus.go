package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/plcmail/plcmail/channel"
)

// printChannels shows the fallback channels in `plcmail status`.
func printChannels(w io.Writer, now time.Time, chans []channel.Stats) {
	if len(chans) == 0 {
		return
	}
	fmt.Fprintln(w, "\nfallback channels (via = position):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, c := range chans {
		last := "none since start"
		if !c.LastSuccess.IsZero() {
			last = age(now, c.LastSuccess) + " ago"
		}
		fmt.Fprintf(tw, "  %d %s\t%s\t%d waiting\tdelivered %d, retried %d, dead %d\tlast delivery %s\n",
			i+1, c.Name, c.Kind, c.Queued, c.Delivered, c.Retried, c.Dead, last)
		if c.LastError != "" {
			fmt.Fprintf(tw, "  \t\tlast error (%s ago): %s\n", age(now, c.LastErrorAt), oneLine(c.LastError))
		}
	}
	tw.Flush()
}
