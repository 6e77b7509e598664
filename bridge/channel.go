package bridge

import (
	"encoding/json"

	"github.com/plcmail/plcmail/protocol"
	"github.com/plcmail/plcmail/spool"
)

// ChannelDelivery tells the PLC that fallback channel via (its position
// in [[channel]], from 1) carried the alarm of the mail with this spool key
// and origin, with the channel's status code (HTTP; 0 for MQTT): one more
// DELIVERY, status 1, besides the mail's (SPEC §3.6, via). Only accepted
// deliveries are reported; a HELLO's reconciliation of several mails gets
// none (its tally counts mails).
func (b *Bridge) ChannelDelivery(key string, origin json.RawMessage, via, code int) {
	if via < 1 || via > 255 {
		return
	}
	o, ok := originOf(spool.Message{Key: key, Origin: origin})
	if !ok || o.Parts > 1 {
		return
	}
	if l := b.link(o.Link); l != nil {
		l.deliveryResult(delivery{boot: o.Boot, gen: o.Gen, seq: o.Seq, events: o.Events, ok: true, code: code, via: uint8(via)})
	}
}

// highestSev is the highest severity of a digest's events, its origin's
// sev: a digest that reports a critical alarm takes the channels whose
// severity_at_least rule a critical alarm meets, as the alarm's own mail
// would have, had flood control not held it.
func highestSev(batch []record) string {
	best := -1
	for _, r := range batch {
		if s, err := protocol.ParseSeverity(r.Sev); err == nil && int(s) > best {
			best = int(s)
		}
	}
	if best < 0 {
		return ""
	}
	return protocol.Severity(best).String()
}
