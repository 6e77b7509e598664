package bridge

import (
	"log/slog"

	"github.com/plcmail/plcmail/spool"
)

// New builds the bridge for every link of o. Links queue into sp and call
// wake after each mail (wake may be nil: no delivery in this process, mail
// waits in the spool). Final delivery results reach the PLCs as DELIVERY
// frames when the caller routes them to DeliveryResult.
//
// New loads each link's journal from SPOOL/links/; it opens no port: Run
// does, and keeps retrying a port that is missing.
func New(o Options, sp *spool.Spool, wake func(), log *slog.Logger) (*Bridge, error) {
	return newBridge(o, sp, wake, log, nil)
}
