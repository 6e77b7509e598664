package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/plcmail/plcmail/spool"
)

// cmdQueue inspects and acts on the spool, like Postfix's postqueue -p,
// postqueue -f and postsuper -d. It works whether or not `plcmail serve` is
// running: the spool is safe for several processes at once.
func cmdQueue(ctx context.Context, e *env, args []string) error {
	// -c may come before the action too: plcmail queue -c FILE list.
	pre := subFlags(e, "queue")
	if err := parseFlags(e, pre, args); err != nil {
		return err
	}
	args = pre.Args()
	if len(args) == 0 {
		return usageError("queue: missing action: list, flush, delete ID... or delete --all")
	}
	action, args := args[0], args[1:]
	fs := subFlags(e, "queue "+action)
	var asJSON, all bool
	switch action {
	case "list":
		fs.BoolVar(&asJSON, "json", false, "one JSON object per message")
	case "delete":
		fs.BoolVar(&all, "all", false, "delete every queued and dead message")
	case "flush":
	default:
		return usageError("queue: unknown action %q (want list, flush or delete)", action)
	}
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if action != "delete" && fs.NArg() > 0 {
		return usageError("queue %s takes no arguments", action)
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Root acts on the spool as the gateway's user (spoolowner_linux.go).
	if err := actAsSpoolOwner(cfg.Gateway.SpoolDir); err != nil {
		return err
	}
	// A listing opens the spool without its key index (spool.OpenNoKeys):
	// rebuilding it read every header once more than the listing does.
	open := spool.Open
	if action == "list" {
		open = spool.OpenNoKeys
	}
	sp, err := open(cfg.Gateway.SpoolDir, log)
	if err != nil {
		return err
	}
	defer sp.Close()
	switch action {
	case "list":
		return queueList(e.stdout, sp, asJSON)
	case "flush":
		if err := sp.Flush(); err != nil {
			return fmt.Errorf("queue flush: %w", err)
		}
		fmt.Fprintln(e.stdout, "every queued message is due now; a running plcmail serve delivers them at once")
		return nil
	default:
		return queueDelete(e, sp, all, fs.Args())
	}
}

// queueList prints the queue in postqueue -p's layout, then the dead letters.
func queueList(w io.Writer, sp *spool.Spool, asJSON bool) error {
	queued, err := sp.List()
	if err != nil {
		return fmt.Errorf("queue list: %w", err)
	}
	dead, err := sp.ListDead()
	if err != nil {
		return fmt.Errorf("queue list: %w", err)
	}
	// Listed last: listing queue/ and dead/ moves what cannot be read
	// there into corrupt/.
	corrupt, err := sp.ListCorrupt()
	if err != nil {
		return fmt.Errorf("queue list: %w", err)
	}
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	if asJSON {
		enc := json.NewEncoder(bw)
		for _, group := range []struct {
			state string
			msgs  []spool.Message
		}{{"queued", queued}, {"dead", dead}} {
			for _, m := range group.msgs {
				if err := enc.Encode(struct {
					State string `json:"state"`
					spool.Message
				}{group.state, m}); err != nil {
					return err
				}
			}
		}
		for _, c := range corrupt {
			if err := enc.Encode(struct {
				State string `json:"state"`
				spool.Quarantined
			}{"corrupt", c}); err != nil {
				return err
			}
		}
		return bw.Flush()
	}
	if len(queued)+len(dead)+len(corrupt) == 0 {
		fmt.Fprintln(bw, "Mail queue is empty")
		return bw.Flush()
	}
	var total int64
	if len(queued) > 0 {
		fmt.Fprintln(bw, listHeader)
		for _, m := range queued {
			total += m.Size
			writeEntry(bw, m, queuedStatus(m))
		}
	}
	if len(dead) > 0 {
		fmt.Fprintln(bw, "-- Dead letters: not retried; remove with plcmail queue delete ID --")
		fmt.Fprintln(bw, listHeader)
		for _, m := range dead {
			total += m.Size
			writeEntry(bw, m, deadStatus(m))
		}
	}
	if len(corrupt) > 0 {
		fmt.Fprintf(bw, "-- Corrupt: unreadable, moved aside and never sent; inspect them in %s --\n", filepath.Join(sp.Dir(), "corrupt"))
		fmt.Fprintln(bw, "-File in corrupt/---------------  --Size-- ---Modified Time----")
		for _, c := range corrupt {
			total += c.Size
			fmt.Fprintf(bw, "%-32s %9d %s\n(CORRUPT: see the gateway's log for why)\n\n",
				printable(c.Name), c.Size, c.Time.Local().Format("Mon Jan _2 15:04:05"))
		}
	}
	n := len(queued) + len(dead) + len(corrupt)
	fmt.Fprintf(bw, "-- %d KiB in %d %s", (total+1023)/1024, n, plural(n, "request", "requests"))
	if len(dead)+len(corrupt) > 0 {
		fmt.Fprintf(bw, " (%d queued, %d dead", len(queued), len(dead))
		if len(corrupt) > 0 {
			fmt.Fprintf(bw, ", %d corrupt", len(corrupt))
		}
		fmt.Fprint(bw, ")")
	}
	fmt.Fprintln(bw, ".")
	return bw.Flush()
}

const listHeader = "-Queue ID-------  --Size-- ----Arrival Time---- -Sender/Recipient-------"

// recipientIndent lines recipients up under the sender, as postqueue does.
var recipientIndent = strings.Repeat(" ", len("-Queue ID-------  --Size-- ----Arrival Time---- "))

func writeEntry(w io.Writer, m spool.Message, status string) {
	from := printable(m.Envelope.From)
	if from == "" {
		from = "<>"
	}
	fmt.Fprintf(w, "%-16s %9d %-20s %s\n", printable(m.ID), m.Size, m.Created.Local().Format("Mon Jan _2 15:04:05"), from)
	fmt.Fprintf(w, "(%s)\n", status)
	for _, r := range m.Envelope.To {
		fmt.Fprintf(w, "%s%s\n", recipientIndent, printable(r))
	}
	for _, r := range m.Rejected {
		fmt.Fprintf(w, "%s%s (rejected: %d %s)\n", recipientIndent, printable(r.Rcpt), r.Code, oneLine(r.Reason))
	}
	if m.Source != "" {
		fmt.Fprintf(w, "%sfrom %s\n", recipientIndent, printable(m.Source))
	}
	fmt.Fprintln(w)
}

func queuedStatus(m spool.Message) string {
	if m.Attempts == 0 {
		return "waiting for the first delivery attempt"
	}
	s := fmt.Sprintf("%d %s, ", m.Attempts, plural(m.Attempts, "attempt", "attempts"))
	if next := time.Until(m.NextAttempt); next > 0 {
		s += "next in " + next.Round(time.Second).String()
	} else {
		s += "due now"
	}
	if m.LastError != "" {
		s += ": " + oneLine(m.LastError)
	}
	return s
}

func deadStatus(m spool.Message) string {
	s := "DEAD"
	if !m.Died.IsZero() {
		s += " since " + m.Died.Local().Format("Mon Jan _2 15:04:05")
	}
	if m.Attempts == 0 {
		s += ", not attempted"
	} else {
		s += fmt.Sprintf(" after %d %s", m.Attempts, plural(m.Attempts, "attempt", "attempts"))
	}
	if m.Reason != "" {
		s += ": " + oneLine(m.Reason)
	}
	return s
}

// queueDelete removes messages like postsuper -d: every id given, "-" reads
// ids from stdin, --all (or ALL) empties the queue and the dead letters.
// Unknown ids are named on stderr and make the exit status 1, after the
// known ones were deleted.
func queueDelete(e *env, sp *spool.Spool, all bool, ids []string) error {
	if len(ids) == 1 && ids[0] == "ALL" {
		all, ids = true, nil
	}
	if all {
		if len(ids) > 0 {
			return usageError("queue delete: --all takes no ids")
		}
		n, err := sp.DeleteAll()
		fmt.Fprintf(e.stdout, "deleted %d %s\n", n, plural(n, "message", "messages"))
		if err != nil {
			return fmt.Errorf("queue delete: %w", err)
		}
		return nil
	}
	if len(ids) == 1 && ids[0] == "-" {
		ids = nil
		sc := bufio.NewScanner(e.stdin)
		for sc.Scan() {
			ids = append(ids, strings.Fields(sc.Text())...)
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("queue delete: reading ids: %w", err)
		}
	}
	if len(ids) == 0 {
		return usageError("queue delete: give queue ids, - to read them from stdin, or --all")
	}
	failed := 0
	for _, id := range ids {
		err := sp.Delete(id)
		switch {
		case err == nil:
			fmt.Fprintf(e.stdout, "%s: deleted\n", id)
		case errors.Is(err, spool.ErrNotFound):
			fmt.Fprintf(e.stderr, "plcmail: queue delete: %s: no such message in the queue or the dead letters\n", id)
			failed++
		default:
			fmt.Fprintf(e.stderr, "plcmail: queue delete: %s: %v\n", id, err)
			failed++
		}
	}
	if failed > 0 {
		return errSilent
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// oneLine keeps multi-line upstream replies on one line of the listing,
// with any other control character escaped (printable).
func oneLine(s string) string {
	return printable(strings.Join(strings.Fields(s), " "))
}

// printable returns s as it is when a terminal shows it as it is, and
// quoted with Go escapes (strconv.Quote) otherwise: an address or a reply
// from a queue file or an upstream may hold a CR, an escape sequence or
// invalid UTF-8, which must neither forge lines of the listing nor drive
// the operator's terminal.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
