package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/mail"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/message"
	"github.com/plcmail/plcmail/spool"
	"github.com/plcmail/plcmail/submit"
)

// maxSendBytes bounds what `plcmail send` reads from stdin. Providers refuse
// far smaller messages (Gmail and Microsoft 365: 25-35 MB after encoding); the
// limit only keeps a runaway pipe from filling memory and the spool.
const maxSendBytes = 64 << 20

// sendOptions are the sendmail command-line options plcmail acts on. Every
// other option real sendmail implementations accept is parsed and ignored, so
// that cron, mdadm, smartd, logwatch and PHP's mail() work unchanged.
type sendOptions struct {
	extract    bool   // -t: recipients from To, Cc, Bcc
	ignoreDots bool   // -i, -oi: a lone "." line does not end the message
	verbose    bool   // -v: print the queue id
	from       string // -f, -r: envelope sender
	fromSet    bool
	fullName   string // -F: display name for a From header we add
	rcpts      []string

	// mode is what was asked: "" (send), "list" (-bp), "flush" (-q), "noop" (-bi).
	mode string
}

// sendHelp is the --help text of send and of the sendmail link.
const sendHelp = `usage: plcmail [-c FILE] send [-t] [-i] [-f FROM] [-F NAME] [-v] [RCPT...]
       sendmail [options] [RCPT...]
Read an RFC 5322 message on stdin and queue it durably; exit 0 only once it is on disk.

flags:
  -t         take the recipients from To, Cc and Bcc too (Bcc is removed)
  -i, -oi    a line with a lone "." does not end the message
  -f FROM    envelope sender (also -r); "<>" for none; ignored for users
             other than root and the gateway's (their uid is recorded)
  -F NAME    display name for the From field plcmail adds when there is none
  -v         print the queue id
  -c FILE    configuration file
  -bp        list the queue (as mailq);  -q  flush it;  -bi  nothing (newaliases)
  other sendmail options (-oem, -odi, -B8BITMIME, -N, -R, -V, -X, -h N, ...) are accepted and ignored

exit status (sysexits.h): 0 queued, 64 usage error, 65 message unusable (no or bad
recipients, bad sender, too large), 74 stdin could not be read, 75 temporary failure:
not queued, try again (spool full, unwritable or gateway not reachable), 78 configuration error
`

// parseSendArgs parses sendmail's getopt-style options: flags can be grouped
// (-ti), values glued or separate (-fme@x, -f me@x), recipients and options
// may be mixed, and "--" ends the options.
func parseSendArgs(e *env, args []string) (*sendOptions, error) {
	o := &sendOptions{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			o.rcpts = append(o.rcpts, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			o.rcpts = append(o.rcpts, a)
			continue
		}
		if a == "--help" || a == "-h" && i == len(args)-1 {
			// -h VALUE is sendmail's hop count; -h alone can only be a
			// request for help.
			fmt.Fprint(e.stdout, sendHelp)
			return nil, errHelpShown
		}
		if strings.HasPrefix(a, "--") {
			return nil, usageError("send: unknown option %s (see plcmail send --help)", a)
		}
		// value returns the rest of this argument or, when empty, the next one.
		value := func(j int) (string, error) {
			if v := a[j+1:]; v != "" {
				return v, nil
			}
			if i+1 >= len(args) {
				return "", usageError("send: option -%c needs a value", a[j])
			}
			i++
			return args[i], nil
		}
	letters:
		for j := 1; j < len(a); j++ {
			switch c := a[j]; c {
			case 't':
				o.extract = true
			case 'i':
				o.ignoreDots = true
			case 'v':
				o.verbose = true
			case 'm', 'n', 'U', 'G', 'I', 'x':
				// me too, no aliasing, initial submission, gateway, newaliases, debug: nothing to do.
			case 'f', 'r', 'F', 'c', 'C', 'N', 'R', 'V', 'X', 'h', 'L', 'B', 'p':
				v, err := value(j)
				if err != nil {
					return nil, err
				}
				switch c {
				case 'f', 'r':
					o.from, o.fromSet = v, true
				case 'F':
					o.fullName = v
				case 'c':
					e.configPath = v
				}
				// -C (sendmail.cf), -N (DSN), -R, -V, -X, -h, -L, -B, -p: ignored.
				break letters
			case 'o':
				// -oi ignores dots; -oem, -odb, -odi, -oQdir ... are sendmail
				// queue and error-mode settings that have no meaning here.
				if a[j+1:] == "i" {
					o.ignoreDots = true
				}
				break letters
			case 'A', 'e', 'd':
				// -Am/-Ac, -em/-ep/-eq, -d debug: ignored with their argument.
				break letters
			case 'b':
				switch a[j+1:] {
				case "m":
				case "p":
					o.mode = "list"
				case "i":
					o.mode = "noop"
				default:
					return nil, usageError("send: -b%s is not supported (only -bm, -bp, -bi)", a[j+1:])
				}
				break letters
			case 'q':
				if a[j+1:] != "" {
					return nil, usageError("send: %s: plcmail serve runs the queue; use -q alone to flush", a)
				}
				o.mode = "flush"
			default:
				return nil, usageError("send: unknown option -%c", c)
			}
		}
	}
	return o, nil
}

func cmdSend(ctx context.Context, e *env, args []string) error {
	o, err := parseSendArgs(e, args)
	if err != nil {
		if errors.Is(err, errUsage) {
			return withStatus(exUsage, err)
		}
		return err
	}
	switch o.mode {
	case "list":
		return cmdQueue(ctx, e, append([]string{"list"}, o.rcpts...))
	case "flush":
		return cmdQueue(ctx, e, []string{"flush"})
	case "noop":
		return nil
	}
	// The message is read before the config, so that a caller whose mail
	// cannot be queued now still finds stdin consumed, as with sendmail.
	raw, err := io.ReadAll(io.LimitReader(e.stdin, maxSendBytes+1))
	if err != nil {
		return withStatus(exIOErr, fmt.Errorf("send: reading the message: %w", err))
	}
	if len(raw) > maxSendBytes {
		return withStatus(exDataErr, fmt.Errorf("send: message larger than %d MiB", maxSendBytes>>20))
	}
	// A user who may not read the config (it is root:plcmail 0640) may not
	// write the spool either: the running gateway queues for them.
	if os.Geteuid() != 0 {
		if f, err := os.Open(e.configPath); errors.Is(err, fs.ErrPermission) {
			path := submitSocketPath(e, nil)
			err := sendViaGateway(ctx, e, path, args, raw, o.verbose)
			if errors.Is(err, submit.ErrNotRunning) && path == config.DefaultSubmitSocket {
				// The gateway may well run, on a submit_socket that the
				// config this user cannot read names.
				return withStatus(exTempFail, fmt.Errorf("%w (or %s, which this user may not read, moves submit_socket: then set PLCMAIL_SUBMIT_SOCKET to it)", err, e.configPath))
			}
			return err
		} else if err == nil {
			f.Close()
		}
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return withStatus(exConfig, err)
	}
	if !mayWriteSpool(cfg.Gateway.SpoolDir) {
		return sendViaGateway(ctx, e, submitSocketPath(e, cfg), args, raw, o.verbose)
	}
	// The real uid, before actAsSpoolOwner changes it: who on this machine
	// sent the mail (cron as root, PHP as www-data) is what Received tells.
	sub, err := buildSubmission(raw, o, cfg.Gateway.Hostname, cfg.Upstream.From, os.Getuid(), time.Now())
	if err != nil {
		return withStatus(exDataErr, fmt.Errorf("send: %w", err))
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Root (cron through the sendmail link) queues as the gateway's user (spoolowner_linux.go).
	if err := actAsSpoolOwner(cfg.Gateway.SpoolDir); err != nil {
		return withStatus(exTempFail, fmt.Errorf("send: message not queued: %w", err))
	}
	sp, err := spool.Open(cfg.Gateway.SpoolDir, log)
	if err != nil {
		return withStatus(exTempFail, fmt.Errorf("send: message not queued: %w", err))
	}
	defer sp.Close()
	id, err := sp.Enqueue(*sub)
	if err != nil {
		return withStatus(exTempFail, fmt.Errorf("send: message not queued: %w", err))
	}
	if o.verbose {
		fmt.Fprintf(e.stderr, "plcmail: queued as %s (%d bytes, %d recipients)\n", id, len(sub.Data), len(sub.To))
	}
	return nil
}

// buildSubmission turns what sendmail got on stdin into a spooled message.
// What only sendmail does stays here: a lone "." ends the message unless -i,
// an mbox "From " line is dropped, and the recipients come from the command
// line and, with -t, from To, Cc and Bcc. The message itself is repaired by
// message.Repair, the cleanup the SMTP listener uses too, so a cron mail and
// a PLC's SMTP mail get the same line endings, added fields, charset
// declaration and fix of lines over 998 octets (which send does not refuse:
// they are folded or re-encoded before exit 0, so that the provider takes
// them); Bcc is removed, since the other recipients must not see it.
// Like Postfix's pickup, send records the submitting user (uid, -1 where
// there is none) in a Received field.
func buildSubmission(raw []byte, o *sendOptions, hostname, defaultFrom string, uid int, now time.Time) (*spool.Submission, error) {
	if !o.ignoreDots {
		raw = cutAtDot(raw)
	}
	// An mbox "From " line from a script that pipes a stored mail: not a header.
	if bytes.HasPrefix(raw, []byte("From ")) {
		_, raw, _ = bytes.Cut(raw, []byte("\n"))
	}

	envFrom := defaultFrom
	if o.fromSet {
		switch v := strings.TrimSpace(o.from); {
		case v == "" || v == "<>":
			envFrom = "" // null sender, as for bounces
		case localName.MatchString(v):
			// cronie runs sendmail -f USER: a local login, not an address
			// a provider would take; the mail goes out as the gateway's.
		default:
			a, err := parseAddress(v)
			if err != nil {
				return nil, fmt.Errorf("sender %q: %w", o.from, err)
			}
			envFrom = a
		}
	}

	var rcpts []string
	seen := map[string]bool{}
	add := func(what, list string) error {
		addrs, err := parseAddressList(list)
		if err != nil {
			return fmt.Errorf("%s %q: %w", what, strings.TrimSpace(list), err)
		}
		for _, a := range addrs {
			if k := strings.ToLower(a); !seen[k] {
				seen[k] = true
				rcpts = append(rcpts, a)
			}
		}
		return nil
	}
	for _, r := range o.rcpts {
		if err := add("recipient", r); err != nil {
			return nil, err
		}
	}
	if o.extract {
		for _, f := range message.RecipientFields(raw) {
			if strings.TrimSpace(f.Value) != "" {
				if err := add(f.Name+" header", f.Value); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(rcpts) == 0 {
		if o.extract {
			return nil, errors.New("no recipients in To, Cc or Bcc headers")
		}
		return nil, errors.New("no recipients: give them as arguments, or use -t to read To, Cc and Bcc")
	}

	received := "by " + hostname + " (plcmail"
	if uid >= 0 {
		received += ", from userid " + strconv.Itoa(uid)
	}
	received += ");\r\n\t" + now.Format(time.RFC1123Z)
	data := message.Repair(raw, message.RepairInfo{
		Received: received,
		From:     envFrom,
		FromName: o.fullName,
		Fallback: defaultFrom,
		Hostname: hostname,
		Now:      now,
		DropBcc:  true,
	})
	return &spool.Submission{
		Envelope: spool.Envelope{From: envFrom, To: rcpts},
		Data:     data,
		Source:   "send",
	}, nil
}

// localName is a bare local user name as cron passes with -f.
var localName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*\$?$`)

// cutAtDot returns raw up to its first line that is a lone "." (LF or CRLF
// ended, or last): without -i that line ends the message, as in an SMTP
// DATA, and what follows is not sent.
func cutAtDot(raw []byte) []byte {
	for i := 0; i < len(raw); {
		end, next := len(raw), len(raw)
		if j := bytes.IndexByte(raw[i:], '\n'); j >= 0 {
			end, next = i+j, i+j+1
		}
		if line := raw[i:end]; string(line) == "." || string(line) == ".\r" {
			return raw[:i]
		}
		i = next
	}
	return raw
}

// parseAddress accepts "a@b", "<a@b>" and "Name <a@b>" and returns the bare
// address the SMTP envelope needs.
func parseAddress(s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", cleanMailError(err)
	}
	return checkEnvelopeAddress(a.Address)
}

func parseAddressList(s string) ([]string, error) {
	list, err := mail.ParseAddressList(s)
	if err != nil {
		return nil, cleanMailError(err)
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		addr, err := checkEnvelopeAddress(a.Address)
		if err != nil {
			return nil, err
		}
		out = append(out, addr)
	}
	return out, nil
}

// checkEnvelopeAddress refuses what net/mail accepts but an SMTP envelope
// cannot carry unquoted (spaces from a quoted local part, controls).
func checkEnvelopeAddress(a string) (string, error) {
	if strings.ContainsAny(a, " \t\r\n<>") {
		return "", fmt.Errorf("%q cannot be used as an envelope address", a)
	}
	return a, nil
}

func cleanMailError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "mail: "))
}
