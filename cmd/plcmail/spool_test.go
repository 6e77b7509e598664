package main

import (
	"log/slog"
	"testing"

	"github.com/plcmail/plcmail/spool"
)

// queuedMessage is a spooled message as the tests see it.
type queuedMessage struct {
	spool.Message
	Data string
}

// spoolMessages returns the messages waiting in the spool at dir, read
// through the spool's own API as another process would.
func spoolMessages(t *testing.T, dir string) []queuedMessage {
	t.Helper()
	s, err := spool.Open(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []queuedMessage
	for _, m := range list {
		m, data, err := s.ReadMessage(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, queuedMessage{m, string(data)})
	}
	return out
}
