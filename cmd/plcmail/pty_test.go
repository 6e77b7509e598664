package main

import (
	"io"
	"os"
	"testing"

	"github.com/plcmail/plcmail/internal/pty"
	"github.com/plcmail/plcmail/internal/testenv"
)

func needPTY(t *testing.T) {
	t.Helper()
	p, err := pty.Open()
	if err != nil {
		testenv.Missing(t, "no pseudo-terminals here (/dev/ptmx): %v", err)
	}
	p.Close()
}

// openPTY opens a pty pair the way the demo does, holding its slave open
// raw: the test plays the PLC on master, the gateway opens slavePath.
// Closing slave closes the pair.
func openPTY() (master *os.File, slave io.Closer, slavePath string, err error) {
	p, err := pty.Open()
	if err != nil {
		return nil, nil, "", err
	}
	if err := p.HoldSlave(); err != nil {
		p.Close()
		return nil, nil, "", err
	}
	return p.Master, p, p.Path, nil
}
