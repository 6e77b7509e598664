package spool

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
