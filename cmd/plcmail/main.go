// Command plcmail is a gateway that turns PLC alarms into e-mail: it takes
// framed alarm events from serial links (and mail from an optional SMTP
// listener), queues them durably and relays them over TLS to a mail provider.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/plcmail/plcmail/config"
)

// Exit codes from the contract.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// errUsage marks errors that are the caller's fault; main exits 2 for them.
var errUsage = errors.New("usage")

// usageError wraps a message so that errors.Is(err, errUsage) holds.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// env is what every command gets from main: the standard streams and the
// configuration path, so commands can be run in-process by tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configPath     string
	getenv         func(string) string
}

type command struct {
	run   func(ctx context.Context, e *env, args []string) error
	usage string
}

func commands() map[string]command {
	return map[string]command{
		"serve":   {cmdServe, "serve: run the gateway until SIGINT/SIGTERM"},
		"check":   {cmdCheck, "check: validate the configuration and templates"},
		"send":    {cmdSend, "send [-t] [-f FROM] [-i] [RCPT...]: queue a message read from stdin"},
		"queue":   {cmdQueue, "queue list|flush|delete ID...|delete --all: inspect and act on the spool"},
		"test":    {cmdTest, "test --to ADDR: send one test mail upstream now, showing the dialogue"},
		"frame":   {cmdFrame, "frame TYPE [flags]: encode one protocol frame to stdout"},
		"decode":  {cmdDecode, "decode [FILE]: decode raw serial bytes to JSON lines"},
		"demo":    {cmdDemo, "demo: the whole path on this machine, no hardware needed"},
		"status":  {cmdStatus, "status: what the running gateway is doing"},
		"login":   {cmdLogin, "login: one-time OAuth2 sign-in for the upstream; stores the refresh token"},
		"version": {cmdVersion, "version: print version information"},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errSilent):
		return exitFailed
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "plcmail:", strings.TrimPrefix(err.Error(), "usage: "))
		return exitUsage
	default:
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, "plcmail:", line)
		}
		return exitFailed
	}
}

// errSilent is returned by commands that already printed their problems
// (check prints one line per config error) and only need exit status 1.
var errSilent = errors.New("failed")

// run dispatches on argv[0] (sendmail, mailq) or the first argument.
func run(ctx context.Context, args []string, e *env) error {
	name := filepath.Base(args[0])
	args = args[1:]
	switch name {
	case "sendmail":
		args = append([]string{"send"}, args...)
	case "mailq":
		args = append([]string{"queue", "list"}, args...)
	}
	global := flag.NewFlagSet("plcmail", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	configPath := global.String("c", "", "configuration file")
	if err := global.Parse(args); err != nil {
		return usageError("%v\n%s", err, usageText())
	}
	args = global.Args()
	if len(args) == 0 {
		return usageError("missing command\n%s", usageText())
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			fmt.Fprint(e.stdout, usageText())
			return nil
		}
		return usageError("unknown command %q\n%s", args[0], usageText())
	}
	e.configPath = *configPath
	if e.configPath == "" && e.getenv != nil {
		e.configPath = e.getenv("PLCMAIL_CONFIG")
	}
	if e.configPath == "" {
		e.configPath = config.DefaultPath
	}
	return cmd.run(ctx, e, args[1:])
}

func usageText() string {
	var lines []string
	for _, c := range commands() {
		lines = append(lines, "  plcmail [-c FILE] "+c.usage)
	}
	sort.Strings(lines)
	return "usage:\n" + strings.Join(lines, "\n") + "\n"
}

// subFlags makes a FlagSet for a subcommand. Every command also accepts -c
// after its name ("plcmail check -c FILE"), because that is how people type it.
func subFlags(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("c", "configuration file", func(s string) error { e.configPath = s; return nil })
	return fs
}

// loadConfig loads the configuration named by -c / PLCMAIL_CONFIG.
func loadConfig(e *env) (*config.Config, error) {
	return config.Load(e.configPath)
}
