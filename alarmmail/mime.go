package alarmmail

import (
	"bytes"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"net/textproto"
	"strings"
	"time"
)

// The message is built with the standard library's mime packages rather
// than a mail library's message builder: on a router the builder's code
// (attachments, S/MIME, DKIM, templates of its own) cost about 130 KB of a
// binary that must fit the flash, and an alarm mail needs none of it. The
// output is what go-mail v0.8.1 wrote before (same fields, order, folding
// and encodings); TestMessageFormat pins it.

// mailParts is what goes into one message.
type mailParts struct {
	from      string
	to, cc    []string
	subject   string // sanitized, not yet encoded
	date      time.Time
	messageID string // without angle brackets
	important bool   // Importance: high and its vendor variants
	text      string // CRLF line ends
	alt       bool   // an HTML alternative follows the text
	html      string // CRLF line ends
}

// maxHeaderLine is where header values fold (RFC 5322 recommends 78).
const maxHeaderLine = 76

// buildMessage returns the RFC 5322 bytes of p, CRLF line ends, the body
// quoted-printable UTF-8, multipart/alternative when p has an HTML alternative.
func buildMessage(p mailParts) ([]byte, error) {
	from, err := formatAddrs(p.from)
	if err != nil {
		return nil, fmt.Errorf("from %q: %w", p.from, err)
	}
	to, err := formatAddrs(p.to...)
	if err != nil {
		return nil, err
	}
	cc, err := formatAddrs(p.cc...)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	// Unstructured fields in byte order of their names, each value RFC 2047
	// encoded where it is not printable ASCII.
	gen := []string{
		"Auto-Submitted", "auto-generated", // RFC 3834: auto-responders must not answer
		"Date", p.date.Format(time.RFC1123Z),
		"Importance", "high",
		"MIME-Version", "1.0",
		"Message-ID", "<" + p.messageID + ">",
		"Priority", "1",
		"Subject", p.subject,
		"User-Agent", "plcmail",
		"X-MSMail-Priority", "1",
		"X-Mailer", "plcmail",
		"X-Priority", "1",
	}
	for i := 0; i < len(gen); i += 2 {
		switch gen[i] {
		case "Importance", "Priority", "X-MSMail-Priority", "X-Priority":
			if !p.important {
				continue
			}
		}
		writeField(&b, gen[i], mime.QEncoding.Encode("UTF-8", gen[i+1]))
	}
	writeField(&b, "From", from...)
	writeField(&b, "To", to...)
	if len(cc) > 0 {
		writeField(&b, "Cc", cc...)
	}
	if !p.alt {
		writeField(&b, "Content-Transfer-Encoding", "quoted-printable")
		writeField(&b, "Content-Type", "text/plain; charset=UTF-8")
		b.WriteString("\r\n")
		if err := writeQP(&b, p.text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	mw := multipart.NewWriter(&b)
	b.WriteString("Content-Type: multipart/alternative;\r\n boundary=" + mw.Boundary() + "\r\n\r\n")
	for _, part := range []struct{ typ, body string }{{"text/plain", p.text}, {"text/html", p.html}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Transfer-Encoding": {"quoted-printable"},
			"Content-Type":              {part.typ + "; charset=UTF-8"},
		})
		if err != nil {
			return nil, err
		}
		if err := writeQP(w, part.body); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// formatAddrs parses each address as net/mail does and formats it for a
// header ("<a@b>", or `"Name" <a@b>` with the name encoded when needed).
func formatAddrs(addrs ...string) ([]string, error) {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		pa, err := netmail.ParseAddress(a)
		if err != nil {
			return nil, fmt.Errorf("failed to parse mail address %q: %w", a, err)
		}
		out = append(out, pa.String())
	}
	return out, nil
}

// writeField writes "Name: v1, v2" folded at blanks so that lines stay
// within maxHeaderLine where the words allow it. A value whose first word
// does not fit after the name starts on a continuation line.
func writeField(b *bytes.Buffer, name string, values ...string) {
	if len(values) == 0 {
		return
	}
	var f strings.Builder
	room := maxHeaderLine - 2 - len(name) - 2
	f.WriteString(name + ": ")
	words := strings.Split(strings.Join(values, ", "), " ")
	for i, w := range words {
		if room-len(w) <= 1 {
			f.WriteString("\r\n ")
			room = maxHeaderLine - 3
		}
		f.WriteString(w)
		if i < len(words)-1 {
			f.WriteByte(' ')
			room--
		}
		room -= len(w)
	}
	b.WriteString(strings.ReplaceAll(f.String(), " \r\n", "\r\n"))
	b.WriteString("\r\n")
}

// writeQP writes s quoted-printable: CRLF stays a line break, lines wrap
// at 76 with soft breaks, trailing blanks and non-ASCII are encoded.
func writeQP(w interface{ Write([]byte) (int, error) }, s string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(s)); err != nil {
		return err
	}
	return qp.Close()
}
