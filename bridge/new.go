package bridge

import (
	"log/slog"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/mailer"
)

// New builds the bridge for every [[serial]] link of cfg. Links queue into
// spool and wake queue after each mail; queue's final delivery results go
// back to the PLCs as DELIVERY frames. queue may be nil (no delivery in
// this process: mail waits in the spool, no DELIVERY frames are sent).
//
// New compiles the templates (errors are config.Errors at their lines) and
// loads each link's journal from SPOOL/links/; it opens no port: Run does,
// and keeps retrying a port that is missing.
func New(cfg *config.Config, spool *mailer.Spool, queue *mailer.Queue, log *slog.Logger) (*Bridge, error) {
	var wake func()
	if queue != nil {
		wake = queue.Wake
	}
	b, err := newBridge(cfg, spool, wake, log, nil)
	if err != nil {
		return nil, err
	}
	if queue != nil {
		queue.OnResult(func(r mailer.Result) {
			b.DeliveryResult(r.Message.Key, r.Delivered, r.Code)
		})
	}
	return b, nil
}
