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
	var st *statusError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &st):
		for _, line := range strings.Split(strings.TrimPrefix(err.Error(), "usage: "), "\n") {
			fmt.Fprintln(stderr, "plcmail:", line)
		}
		return st.code
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

// sysexits.h codes, which send (and the sendmail link) exits with as
// Postfix's sendmail and msmtp do: callers such as cron, PHP, Python's
// subprocess or a monitoring agent tell a retry-later failure (75) from a
// message that can never be sent (65) and a broken setup (78).
const (
	exUsage    = 64 // EX_USAGE: bad command line
	exDataErr  = 65 // EX_DATAERR: the message or an address in it is unusable
	exIOErr    = 74 // EX_IOERR: stdin could not be read
	exTempFail = 75 // EX_TEMPFAIL: not queued this time; the same call may work later
	exConfig   = 78 // EX_CONFIG: the configuration cannot be loaded
)

// statusError gives an error its own exit status, overriding the contract's
// 1 and 2 for commands that follow another convention (send: sysexits).
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// withStatus makes err exit with code; nil stays nil.
func withStatus(code int, err error) error {
	if err == nil {
		return nil
	}
	return &statusError{code, err}
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
	case "newaliases":
		// Postfix's newaliases with no aliases file does nothing and
		// succeeds; package scripts and admins' habits call it after
		// installing an MTA, and plcmail has no local delivery to alias.
		return nil
	}
	global := flag.NewFlagSet("plcmail", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	configPath := global.String("c", "", "configuration file")
	showVersion := global.Bool("version", false, "print version information")
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(e.stdout, usageText())
			return nil
		}
		return usageError("%v\n%s", err, usageText())
	}
	args = global.Args()
	if *showVersion {
		args = append([]string{"version"}, args...)
	}
	if len(args) == 0 {
		return usageError("missing command\n%s", usageText())
	}
	if args[0] == "help" {
		// plcmail help CMD is plcmail CMD --help.
		if len(args) == 1 {
			fmt.Fprint(e.stdout, usageText())
			return nil
		}
		args = []string{args[1], "--help"}
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		return usageError("unknown command %q\n%s", args[0], usageText())
	}
	e.configPath = *configPath
	if e.configPath == "" && e.getenv != nil {
		e.configPath = e.getenv("PLCMAIL_CONFIG")
	}
	if e.configPath == "" {
		e.configPath = config.DefaultPath
	}
	err := cmd.run(ctx, e, args[1:])
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

func usageText() string {
	var lines []string
	for _, c := range commands() {
		lines = append(lines, "  plcmail [-c FILE] "+c.usage)
	}
	sort.Strings(lines)
	return "usage:\n" + strings.Join(lines, "\n") + "\n" +
		"  plcmail --version\n\n" +
		"plcmail COMMAND --help shows the flags of a command.\n" +
		"Linked as sendmail it is plcmail send, as mailq plcmail queue list, as newaliases a no-op.\n"
}

// errHelpShown is returned by a command that printed its help because it
// was asked to (-h, --help): run turns it into success, exit 0, as GNU and
// BSD tools do, instead of the flag package's "help requested" usage error.
var errHelpShown = errors.New("help shown")

// parseFlags parses a subcommand's flags. On -h or --help it prints the
// command's synopsis and flags to stdout and returns errHelpShown; any other
// problem is a usage error that points at --help.
func parseFlags(e *env, fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(e.stdout, commandHelp(fs))
		return errHelpShown
	}
	if err != nil {
		return usageError("%s: %v (see plcmail %s --help)", fs.Name(), err, fs.Name())
	}
	return nil
}

// commandHelp is the --help text of the command whose flags fs holds: the
// synopsis and summary from commands(), then one line per flag.
func commandHelp(fs *flag.FlagSet) string {
	name := fs.Name()
	first, _, _ := strings.Cut(name, " ")
	synopsis, summary := name, ""
	if c, ok := commands()[first]; ok {
		synopsis, summary, _ = strings.Cut(c.usage, ": ")
		if name != first {
			// queue list: the action's own name, not every action's.
			synopsis = name
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage: plcmail [-c FILE] %s\n", synopsis)
	if summary != "" {
		fmt.Fprintf(&b, "%s\n", summary)
	}
	b.WriteString("\nflags:\n")
	var rows [][2]string
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		left := "-" + f.Name
		if len(f.Name) > 1 {
			left = "--" + f.Name
		}
		if arg != "" {
			left += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			usage += " (default " + f.DefValue + ")"
		}
		rows = append(rows, [2]string{left, usage})
		width = max(width, len(left))
	})
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, r[0], r[1])
	}
	return b.String()
}

// subFlags makes a FlagSet for a subcommand. Every command also accepts -c
// after its name ("plcmail check -c FILE"), because that is how people type it.
func subFlags(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("c", "configuration `FILE` (default $PLCMAIL_CONFIG, else "+config.DefaultPath+")", func(s string) error { e.configPath = s; return nil })
	return fs
}

// loadConfig loads the configuration named by -c / PLCMAIL_CONFIG.
func loadConfig(e *env) (*config.Config, error) {
	return config.Load(e.configPath)
}
