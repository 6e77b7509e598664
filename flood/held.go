package flood

import "github.com/plcmail/plcmail/alarmmail"

// Held is the durable list of one source's held events, for a source whose
// state is a JSON document written atomically (the Modbus poller's device
// state). The event is added in the same write as the state change that
// caused it, so an event is either mailed, held, or not happened yet.
type Held struct {
	Entries []alarmmail.Entry `json:"entries,omitempty"`
	// Digests counts the digests queued. The next digest's spool key ends
	// in Digests+1, so a digest queued just before a crash (state not yet
	// written) is queued again with the same key after the restart, which
	// the spool refuses as a duplicate: exactly one digest.
	Digests uint64 `json:"digests,omitempty"`
}

// Add holds e and returns the number of held events.
func (h *Held) Add(e alarmmail.Entry) int {
	h.Entries = append(h.Entries, e)
	return len(h.Entries)
}

// Next returns the entries of the next digest and its number (for the spool
// key); Done(n) removes them once the digest is queued.
func (h *Held) Next() ([]alarmmail.Entry, uint64) {
	return h.Entries[:Batch(len(h.Entries))], h.Digests + 1
}

// Done records that a digest of the first n held entries was queued.
func (h *Held) Done(n int) {
	h.Entries = append([]alarmmail.Entry(nil), h.Entries[n:]...)
	h.Digests++
}
