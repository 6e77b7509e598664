package spool

import (
	"encoding/binary"
	"time"
)

// BeforeEnqueue sets fn to be called by Enqueue for every new submission
// with a Key, after the key was found new and before the message is
// written; an error from fn fails the Enqueue, which the source retries.
// Fallback channels (package channel) use it to record, durably, that an
// alarm of a high severity also goes out over a channel, before the mail
// exists and so before the mail can be delivered and gone: a crash between
// the two leaves the record and no mail, and the source's retransmission
// (not a duplicate then) calls fn again, which must be idempotent per
// key. nil turns the hook off. Set it before the spool is used.
func (s *Spool) BeforeEnqueue(fn func(Submission) error) {
	s.mu.Lock()
	s.beforeEnqueue = fn
	s.mu.Unlock()
}

// runBeforeEnqueue calls the hook of BeforeEnqueue, if any.
func (s *Spool) runBeforeEnqueue(sub *Submission) error {
	s.mu.Lock()
	fn := s.beforeEnqueue
	s.mu.Unlock()
	if fn == nil || sub.Key == "" {
		return nil
	}
	return fn(*sub)
}

// QueuedIDs returns the ids of the queued messages from the directory
// alone, without reading a header: a caller that looks at the queue again
// and again (the fallback channels' time rules, during an outage of hours
// with thousands queued) reads only the messages it has not seen, and
// IDTime tells it their age.
func (s *Spool) QueuedIDs() ([]string, error) { return s.ids(dirQueue) }

// IDTime returns when the message of a queue id was queued, to the
// microsecond: newID puts the time in an id's first 38 bits. ok is false for
// a string that is not an id.
func IDTime(id string) (t time.Time, ok bool) {
	if !validID(id) {
		return time.Time{}, false
	}
	b, err := idEncoding.DecodeString(id)
	if err != nil || len(b) != 10 {
		return time.Time{}, false
	}
	us := uint64(binary.BigEndian.Uint16(b[0:]))<<38 | binary.BigEndian.Uint64(b[2:])>>26
	return time.UnixMicro(int64(us)), true
}
