package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/plcmail/plcmail/mailer"
)

// queuedMessage is a spooled message as the tests see it.
type queuedMessage struct {
	mailer.Message
	Data string
}

// spoolMessages returns the messages waiting in the spool at dir.
func spoolMessages(t *testing.T, dir string) []queuedMessage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "queue", "*"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var out []queuedMessage
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		hdr, data, _ := bytes.Cut(b, []byte("\n"))
		var m queuedMessage
		if err := json.Unmarshal(hdr, &m.Message); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m.Data = string(data)
		out = append(out, m)
	}
	return out
}
