//go:build nodemo

// The OpenWrt packages are built with -tags nodemo (the Makefile's
// OPENWRT_BUILDTAGS): the demo's in-process devices (a simulated PLC on a
// pty, an SMTP server with its own CA, a Modbus TCP server) are 0.2 MB of
// a router's flash and of no use on a router, where the real PLC and the
// real provider are the point. The command stays, with its flags, and says
// where to run it.

package main

import (
	"context"
	"errors"
	"time"
)

// errNoDemo is what `plcmail demo` answers in a build without the demo.
var errNoDemo = errors.New("demo is not in this build: the OpenWrt packages leave it out to save flash (build tag nodemo). " +
	"Run it on a PC with the full build (make build, or go run ./cmd/plcmail demo); on the router, plcmail check and plcmail test --to ADDR try the real setup")

// cmdDemo accepts demo's flags, so that --help reads as in the full build,
// and refuses to run.
func cmdDemo(_ context.Context, e *env, args []string) error {
	fs := subFlags(e, "demo")
	fs.String("out", "", "`DIR` for the received mails as .eml files (default: a new temporary folder)")
	fs.Bool("follow", false, "keep the gateway and mail server running after the script, until Ctrl-C")
	fs.Bool("v", false, "show the gateway's log")
	fs.Duration("pace", 1500*time.Millisecond, "pause between the PLC's events")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	return errNoDemo
}
