package bridge

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/plcmail/plcmail/spool"
)

// origin is what a mail reports to the PLC, carried through the spool in
// spool.Submission.Origin so that DeliveryResult can tell the right PLC
// about its delivery (SPEC §3.6): the alarm mail of one event (Boot, Gen,
// Seq); one of Parts mails that reconcile HELLO (Boot, Gen, Seq), which
// the PLC hears of once all are final; or a digest, which answers each
// held event it reports (Events).
type origin struct {
	Link   string       `json:"link"`
	Boot   uint32       `json:"boot,omitempty"`
	Gen    uint32       `json:"gen,omitempty"`
	Seq    uint32       `json:"seq,omitempty"`
	Parts  int          `json:"parts,omitempty"`
	Events []originBoot `json:"events,omitempty"`
	// Sev is the severity of the event of an alarm mail; package channel
	// reads it for its severity_at_least rule.
	Sev string `json:"sev,omitempty"`
}

// originBoot lists the events of one boot a digest reports, as seq ranges.
type originBoot struct {
	Boot uint32      `json:"boot"`
	Gen  uint32      `json:"gen,omitempty"`
	Seqs [][2]uint32 `json:"seqs"`
}

// eventKey is the spool's idempotency key of the alarm mail of one event.
// Its form "link/boot/seq" is on disk in every spool: it must not change, or
// events replayed after an upgrade would be mailed twice. A boot whose id
// repeats (generation > 0) gets keys of its own, "link/bootgGEN/seq": the
// spool remembers keys for spool.KeyRetention, and its alarms are new ones.
func eventKey(link string, boot, gen, seq uint32) string {
	return link + "/" + bootTag(boot, gen) + "/" + strconv.FormatUint(uint64(seq), 10)
}

// bootTag names boot (boot, gen) in spool keys.
func bootTag(boot, gen uint32) string {
	s := strconv.FormatUint(uint64(boot), 10)
	if gen > 0 {
		s += "g" + strconv.FormatUint(uint64(gen), 10)
	}
	return s
}

// encode returns o as Submission.Origin.
func (o origin) encode() json.RawMessage {
	b, err := json.Marshal(o)
	if err != nil { // a string and two integers
		panic(err)
	}
	return b
}

// originOf returns the event a queued message reports, if it is the alarm
// mail of one event.
func originOf(m spool.Message) (origin, bool) {
	if len(m.Origin) == 0 {
		return legacyOrigin(m.Key)
	}
	var o origin
	if err := json.Unmarshal(m.Origin, &o); err != nil || o.Link == "" || o.Seq == 0 && len(o.Events) == 0 {
		return origin{}, false
	}
	return o, true
}

// legacyOrigin reads the event from the key of an alarm mail queued by a
// plcmail that did not set Origin yet: such mails may wait in a spool for up
// to [queue] lifetime after an upgrade, and their PLCs still want their
// DELIVERY frames. Keys of other mails ("link/digest/boot/seq",
// "link/boot/seq/restart", SMTP mail) do not have this form.
func legacyOrigin(key string) (origin, bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 3 {
		return origin{}, false
	}
	b, err1 := strconv.ParseUint(parts[1], 10, 32)
	s, err2 := strconv.ParseUint(parts[2], 10, 32)
	if err1 != nil || err2 != nil {
		return origin{}, false
	}
	return origin{Link: parts[0], Boot: uint32(b), Seq: uint32(s)}, true
}
