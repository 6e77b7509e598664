package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/spool"
	"github.com/plcmail/plcmail/submit"
)

// Local submission by users who may not write the spool.
//
// Postfix lets any user queue mail through postdrop, a setgid program that
// writes into a group-writable maildrop directory. plcmail does it with a
// Unix socket the running gateway listens on instead, for three reasons:
//   - no privileged binary: plcmail is one program with a config loader,
//     -c FILE and $PLCMAIL_CONFIG, OAuth and a demo; made setgid, each of
//     those paths would run with the group's rights for every local user,
//     and the group that may read the config may also read an inline
//     password in it. A socket needs no setuid or setgid bit at all.
//   - the kernel names the sender: SO_PEERCRED gives the uid of the process
//     that connected, which it cannot choose; there is no shared directory
//     in which files, hard links or FIFOs of other users could be planted.
//   - "exit 0 means on disk" holds as for root: the gateway validates the
//     message, writes and fsyncs it into its spool, and only then answers;
//     the client exits 0 on that answer, 75 on anything else.
//
// The price is that an ordinary user's mail needs the gateway running: when
// it is not, send exits 75 (not queued, try again) and cron logs that. Root
// and the gateway's user still write the spool directly, running or not.

// submitComponent is the part of serve that takes local users' mail on
// gateway.submit_socket. Like the status socket it never stops the gateway:
// without the socket's directory (no RuntimeDirectory=, a test's config)
// or with another gateway on it, it logs why and waits.
func submitComponent(cfg *config.Config, sp *spool.Spool, wake func(), log *slog.Logger) (component, bool) {
	path := cfg.Gateway.SubmitSocket
	if path == "" {
		return component{}, false
	}
	log = log.With("component", "submit")
	self := os.Geteuid()
	hostname, from := cfg.Gateway.Hostname, cfg.Upstream.From
	h := func(ctx context.Context, p submit.Peer, args []string, msg []byte) (string, int, error) {
		var scratch env // -c FILE in args must not change anything here
		o, err := parseSendArgs(&scratch, args)
		if err != nil {
			return "", exUsage, err
		}
		if o.mode != "" {
			return "", exUsage, errors.New("only sending goes through the gateway's socket; listing and flushing the queue need root")
		}
		if p.UID != 0 && p.UID != self {
			// An ordinary user's mail goes out with the gateway's sender:
			// -f would let alice claim bob's (or root's) address, and
			// bounces of cron mail belong to whoever runs the gateway.
			// Who sent it is in the Received field, from the kernel.
			o.from, o.fromSet = "", false
		}
		sub, err := buildSubmission(msg, o, hostname, from, p.UID, time.Now())
		if err != nil {
			return "", exDataErr, err
		}
		id, err := sp.Enqueue(*sub)
		if err != nil {
			return "", exTempFail, fmt.Errorf("not queued: %w", err)
		}
		wake()
		return id, 0, nil
	}
	return component{"submit", func(ctx context.Context) error {
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			log.Info("no local submission socket; users other than root and the gateway's cannot queue mail", "err", err)
			<-ctx.Done()
			return nil
		}
		err := submit.Serve(ctx, submit.Options{Path: path, MaxBytes: maxSendBytes}, h, log)
		if err != nil {
			log.Warn("no local submission socket; users other than root and the gateway's cannot queue mail", "path", path, "err", err)
			<-ctx.Done()
		}
		return nil
	}}, true
}

// submitSocketPath is where send finds the gateway's socket: the configured
// one when the config could be read, else the default; $PLCMAIL_SUBMIT_SOCKET
// wins, for a gateway that moved it (a user's own setting can only
// mislead that user's own mail).
func submitSocketPath(e *env, cfg *config.Config) string {
	if e.getenv != nil {
		if p := e.getenv("PLCMAIL_SUBMIT_SOCKET"); p != "" {
			return p
		}
	}
	if cfg != nil {
		return cfg.Gateway.SubmitSocket
	}
	return config.DefaultSubmitSocket
}

// sendViaGateway hands the message to the running gateway and maps its
// answer to send's exit status.
func sendViaGateway(ctx context.Context, e *env, path string, args []string, raw []byte, verbose bool) error {
	if path == "" {
		return withStatus(exTempFail, errors.New("send: this user may not write the spool and the gateway's submit_socket is off; not queued"))
	}
	r, err := submit.Send(ctx, path, args, raw)
	if err != nil {
		return withStatus(exTempFail, fmt.Errorf("send: message not queued: %w; try again when plcmail serve runs", err))
	}
	if r.Code != 0 {
		return withStatus(r.Code, fmt.Errorf("send: message not queued: %s", r.Error))
	}
	if verbose {
		fmt.Fprintf(e.stderr, "plcmail: queued as %s by the gateway\n", r.ID)
	}
	return nil
}
