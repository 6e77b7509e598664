package upstream

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"

	golog "github.com/wneessen/go-mail/log"
)

func (uc *Conn) tracef(format string, args ...any) {
	if uc.trace == nil {
		return
	}
	uc.mu.Lock()
	fmt.Fprintf(uc.trace, format+"\n", args...)
	uc.mu.Unlock()
}

func (uc *Conn) traceTLS(cs tls.ConnectionState) {
	how := "certificate verified"
	if len(uc.opts.Pins) > 0 {
		how = "certificate matches pinned fingerprint"
	}
	uc.tracef("* TLS established: %s, %s, %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), how)
}

// traceLogger renders go-mail's debug log as a dialogue. go-mail already
// replaces AUTH payloads and 334 challenges with a redaction marker.
type traceLogger struct{ uc *Conn }

func (l traceLogger) Debugf(m golog.Log) {
	prefix := "S: "
	if m.Direction == golog.DirClientToServer {
		prefix = "C: "
	}
	text := fmt.Sprintf(m.Format, m.Messages...)
	l.uc.mu.Lock()
	mech, first := l.uc.authMech, !l.uc.authSent
	if mech != "" && strings.Contains(text, "redacted>") {
		l.uc.authSent = true
		switch {
		case prefix == "S: ":
			text = text[:3] + " ****"
		case first:
			text = "AUTH " + mech + " ****"
		default:
			text = "****"
		}
	}
	l.uc.mu.Unlock()
	if prefix == "S: " {
		// go-mail logs replies as "CODE line1\nline2": show them as sent.
		code, rest, _ := strings.Cut(text, " ")
		lines := strings.Split(rest, "\n")
		for i, ln := range lines {
			sep := "-"
			if i == len(lines)-1 {
				sep = " "
			}
			l.uc.tracef("S: %s%s%s", code, sep, ln)
		}
		return
	}
	l.uc.tracef("%s%s", prefix, text)
}
func (l traceLogger) Infof(m golog.Log)  { l.Debugf(m) }
func (l traceLogger) Warnf(m golog.Log)  { l.Debugf(m) }
func (l traceLogger) Errorf(m golog.Log) { l.Debugf(m) }

// greetingTap records what the server sends before go-mail's client takes
// over (NewClient reads the 220 greeting itself and does not log it).
type greetingTap struct {
	net.Conn
	mu   sync.Mutex
	done bool
	buf  bytes.Buffer
}

func (g *greetingTap) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	g.mu.Lock()
	if !g.done && g.buf.Len() < 4096 {
		g.buf.Write(p[:n])
	}
	g.mu.Unlock()
	return n, err
}

func (g *greetingTap) stop(uc *Conn) {
	g.mu.Lock()
	g.done = true
	s := g.buf.String()
	g.mu.Unlock()
	for _, ln := range strings.Split(strings.TrimRight(s, "\r\n"), "\r\n") {
		if ln != "" {
			uc.tracef("S: %s", ln)
		}
	}
}
