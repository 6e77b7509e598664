package message

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// MessageID returns a new Message-ID field value, angle brackets included,
// in the gateway's domain, for mail that arrives without one (the SMTP
// listener's repair, plcmail send). The UTC time makes it readable in logs;
// 64 random bits make it unique.
func MessageID(now time.Time, hostname string) string {
	var r [8]byte
	rand.Read(r[:])
	return "<" + now.UTC().Format("20060102150405") + "." + hex.EncodeToString(r[:]) + "@" + hostname + ">"
}
