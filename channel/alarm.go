package channel

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// Alarm is what a channel tells about one alarm: the mail's subject and
// text, as the templates rendered them, and where it came from.
type Alarm struct {
	// Key is the mail's spool key ("link/boot/seq"; "id:QUEUEID" for mail
	// without one).
	Key      string    `json:"key"`
	Source   string    `json:"source,omitempty"` // "serial:press-1", "smtp:10.0.0.5"
	Severity string    `json:"severity,omitempty"`
	Subject  string    `json:"subject"`
	Text     string    `json:"text"`
	Queued   time.Time `json:"queued"` // when the mail was queued
	// Origin is the source's description of the mail (package bridge), for
	// the DELIVERY frame.
	Origin json.RawMessage `json:"origin,omitempty"`
}

// maxText bounds the text sent (ntfy takes 4096 bytes, Teams ~28 KB).
const maxText = 4000

// alarmOf builds the alarm of a mail.
func alarmOf(key, source string, origin json.RawMessage, data []byte, queued time.Time) Alarm {
	subj, text := mailText(data)
	return Alarm{Key: key, Source: source, Subject: subj, Text: text, Queued: queued.UTC(), Origin: origin}
}

// mailText returns the decoded subject and plain text of an RFC 5322
// message (the first text/plain part of a multipart one).
func mailText(data []byte) (subject, text string) {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return "", clip(string(data))
	}
	subject = m.Header.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	body := partText(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body, 0)
	return subject, clip(strings.TrimSpace(strings.ReplaceAll(body, "\r\n", "\n")))
}

func partText(ctype, cte string, r io.Reader, depth int) string {
	mt, params, err := mime.ParseMediaType(ctype)
	if ctype == "" || err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") && depth < 5 {
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return ""
			}
			if t := partText(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p, depth+1); t != "" {
				return t
			}
		}
	}
	if mt != "text/plain" {
		return ""
	}
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &crlfStripper{r: r})
	}
	b, _ := io.ReadAll(io.LimitReader(r, 1<<20))
	return string(b)
}

// crlfStripper drops line breaks, which base64.NewDecoder does not skip
// between reads in every case.
type crlfStripper struct{ r io.Reader }

func (c *crlfStripper) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	j := 0
	for _, b := range p[:n] {
		if b != '\r' && b != '\n' {
			p[j] = b
			j++
		}
	}
	return j, err
}

// clip cuts s to maxText bytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	s = s[:maxText]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
