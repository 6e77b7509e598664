package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/channel"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/modbus"
	"github.com/plcmail/plcmail/spool"
)

// statusSocket is the Unix socket in the spool directory on which a running
// `plcmail serve` answers `plcmail status`.
//
// A socket rather than a status file rewritten every few seconds: the answer
// is live (a link that dropped a second ago shows as down), a gateway on an
// SD card does not rewrite a file all day long, and "not running" needs no
// staleness guess: nobody accepts the connection. The spool directory is
// 0700, so only root and the gateway's user can ask, as with the mail itself.
const statusSocket = "status.sock"

// statusSnapshot is what serve answers on the status socket, as one JSON
// document, and what `plcmail status --json` prints.
type statusSnapshot struct {
	Version string    `json:"version"`
	PID     int       `json:"pid"`
	Config  string    `json:"config"`
	Started time.Time `json:"started"`
	Now     time.Time `json:"now"` // when the snapshot was taken, for ages

	Links []bridge.LinkStatus `json:"links"`
	Queue spool.Stats         `json:"queue"`
	// Spooled counts the message files in queue/: besides what the
	// delivery loop holds (Queue.Queued), mail queued by another process
	// since its last scan and mail it gave up on until a restart.
	Spooled       int       `json:"spooled"`
	SpooledOldest time.Time `json:"spooled_oldest,omitzero"` // when the oldest of them was written
	Dead          int       `json:"dead_letters"`
	Corrupt       int       `json:"corrupt"` // files moved to corrupt/, never sent
	SMTP          []string  `json:"smtp_listen,omitempty"`
	// Modbus are the polled [[modbus]] devices (modbus.go).
	Modbus []modbus.DeviceStatus `json:"modbus,omitempty"`
	// Channels are the fallback channels (cmd/plcmail/channel.go).
	Channels []channel.Stats `json:"channels,omitempty"`
}

// statusCollector returns the function that takes a statusSnapshot of the
// running gateway: for `plcmail status`, the [http] listener and the
// watchdog alike.
func statusCollector(cfg *config.Config, sp *spool.Spool, queue *spool.Queue, links *bridge.Bridge) func() statusSnapshot {
	started := time.Now()
	return func() statusSnapshot {
		s := statusSnapshot{
			Version: readBuildInfo().Version, PID: os.Getpid(), Config: cfg.File,
			Started: started, Now: time.Now(), Queue: queue.Stats(), Links: links.Status(),
		}
		// Counted from the directory: parsing every dead letter on each
		// status request would cost a file read apiece.
		if sum, err := spool.Peek(sp.Dir()); err == nil {
			s.Spooled, s.SpooledOldest, s.Dead, s.Corrupt = sum.Queued, sum.OldestQueued, sum.Dead, sum.Corrupt
		}
		if cfg.SMTP != nil {
			s.SMTP = cfg.SMTP.Listen
		}
		return s
	}
}

// statusComponent is the part of serve that answers `plcmail status`. It
// never stops the gateway: if the socket cannot be created the gateway runs
// on without it, and says so in the log.
func statusComponent(cfg *config.Config, collect func() statusSnapshot, log *slog.Logger) component {
	path := filepath.Join(cfg.Gateway.SpoolDir, statusSocket)
	return component{"status", func(ctx context.Context) error {
		return serveStatus(ctx, path, collect, log.With("component", "status"))
	}}
}

// serveStatus answers every connection on the Unix socket at path with one
// JSON statusSnapshot, until ctx is done. It returns nil only then, also when
// the socket could not be created.
func serveStatus(ctx context.Context, path string, collect func() statusSnapshot, log *slog.Logger) error {
	// A second serve on the same spool stops at the delivery lock, but this
	// runs concurrently: it must not take the socket of the one that runs.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		log.Warn("status socket is answered by a gateway that is already running; leaving it", "path", path)
		<-ctx.Done()
		return nil
	}
	// A socket left by a gateway that was killed: nobody answers on it, so
	// it can go.
	os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		if len(path) > 100 {
			err = fmt.Errorf("%w (a Unix socket path is limited to about 100 bytes; this one has %d: use a shorter spool_dir)", err, len(path))
		}
		log.Warn("no status socket; `plcmail status` will not work", "err", err)
		<-ctx.Done()
		return nil
	}
	os.Chmod(path, 0o600)
	go func() {
		<-ctx.Done()
		l.Close() // also removes the socket file
	}()
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("status socket", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		json.NewEncoder(c).Encode(collect())
		c.Close()
	}
}

// errNotRunning is returned by readStatus when no gateway answers.
var errNotRunning = errors.New("gateway not running")

// readStatus asks the gateway whose spool is dir.
func readStatus(ctx context.Context, dir string) (statusSnapshot, error) {
	var s statusSnapshot
	path := filepath.Join(dir, statusSocket)
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return s, fmt.Errorf("%w (nobody answers on %s)", errNotRunning, path)
		}
		if errors.Is(err, os.ErrPermission) {
			return s, fmt.Errorf("%s: permission denied: the spool is private to the gateway's user; run as root or that user (sudo plcmail status)", path)
		}
		return s, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewDecoder(c).Decode(&s); err != nil {
		return s, fmt.Errorf("reading status from %s: %w", path, err)
	}
	return s, nil
}

// cmdStatus prints what the running gateway is doing. Exit status 0 when it
// runs, 1 when it does not (usable from monitoring scripts).
func cmdStatus(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "status")
	asJSON := fs.Bool("json", false, "print the raw status as JSON")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("status takes no arguments (use -c FILE, --json)")
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	s, err := readStatus(ctx, cfg.Gateway.SpoolDir)
	if errors.Is(err, errNotRunning) && *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(stoppedStatusOf(cfg)); err != nil {
			return err
		}
		return errSilent
	}
	if errors.Is(err, errNotRunning) {
		fmt.Fprintf(e.stdout, "plcmail is not running (spool %s)\n", cfg.Gateway.SpoolDir)
		printSpoolOnly(e.stdout, cfg.Gateway.SpoolDir)
		printChannelsOnly(e.stdout, cfg)
		printModbusOnly(e.stdout, cfg)  // modbus.go
		printOAuthStatus(e.stdout, cfg) // status_oauth.go
		return errSilent
	}
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	printStatus(e.stdout, &s)
	printOAuthStatus(e.stdout, cfg) // status_oauth.go
	return nil
}

// stoppedStatus is `status --json` of a stopped gateway: what waits in its
// spool, so that monitoring parses JSON either way (the exit status, 1,
// says it is not running, and so does "running").
type stoppedStatus struct {
	Running         bool           `json:"running"`
	Spool           string         `json:"spool"`
	Queued          int            `json:"queued"`
	OldestQueued    time.Time      `json:"oldest_queued,omitzero"`
	DeadLetters     int            `json:"dead_letters"`
	Corrupt         int            `json:"corrupt"`
	ChannelsWaiting map[string]int `json:"channels_waiting,omitempty"`
	// ModbusDigestPending are the Modbus devices' alarm events held for a
	// digest (modbus[].digest_pending of a running gateway).
	ModbusDigestPending map[string]int `json:"modbus_digest_pending,omitempty"`
	Error               string         `json:"error,omitempty"`
}

func stoppedStatusOf(cfg *config.Config) stoppedStatus {
	dir := cfg.Gateway.SpoolDir
	st := stoppedStatus{Spool: dir}
	sum, err := spool.Peek(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		st.Error = err.Error()
	}
	st.Queued, st.OldestQueued, st.DeadLetters, st.Corrupt = sum.Queued, sum.OldestQueued, sum.Dead, sum.Corrupt
	n, err := channel.Peek(dir)
	if err != nil && st.Error == "" {
		st.Error = err.Error()
	}
	st.ChannelsWaiting = n
	held, err := modbus.PeekDigestPending(modbusStateDir(cfg), modbusNames(cfg))
	if err != nil && st.Error == "" {
		st.Error = err.Error()
	}
	if len(held) > 0 {
		st.ModbusDigestPending = held
	}
	return st
}

// printChannelsOnly shows the fallback channel deliveries that wait in
// the spool of a stopped gateway, in configuration order; nothing when none
// waits.
func printChannelsOnly(w io.Writer, cfg *config.Config) {
	n, err := channel.Peek(cfg.Gateway.SpoolDir)
	if err != nil {
		fmt.Fprintf(w, "cannot read the channel records: %v\n", err)
		return
	}
	var parts []string
	for _, c := range cfg.Channel {
		if n[c.Name] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d waiting", c.Name, n[c.Name]))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "fallback channels: %s\n", strings.Join(parts, ", "))
	}
}

// printSpoolOnly shows what waits in the spool of a stopped gateway.
// spool.Peek reads the directory without opening the spool: opening
// would tidy it, which is the running gateway's job.
func printSpoolOnly(w io.Writer, dir string) {
	sum, err := spool.Peek(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return // nothing was ever queued
	}
	if err != nil {
		fmt.Fprintf(w, "cannot read the spool: %v\n", err)
		return
	}
	now := time.Now()
	for _, area := range []struct {
		what   string
		n      int
		oldest time.Time
	}{{"queued", sum.Queued, sum.OldestQueued}, {"dead letters", sum.Dead, sum.OldestDead}, {"corrupt", sum.Corrupt, sum.OldestCorrupt}} {
		if area.what == "corrupt" && area.n == 0 {
			continue // a rare sight: not worth a line when there is none
		}
		if area.n > 0 {
			fmt.Fprintf(w, "%s: %d, oldest %s ago\n", area.what, area.n, age(now, area.oldest))
		} else {
			fmt.Fprintf(w, "%s: 0\n", area.what)
		}
	}
}

func printStatus(w io.Writer, s *statusSnapshot) {
	now := s.Now
	fmt.Fprintf(w, "plcmail %s running since %s (%s), pid %d, config %s\n",
		s.Version, s.Started.Local().Format(time.DateTime), age(now, s.Started), s.PID, s.Config)

	fmt.Fprintln(w, "\nserial links:")
	if len(s.Links) == 0 {
		fmt.Fprintln(w, "  none configured")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, l := range s.Links {
		state := "up"
		if !l.Connected {
			state = "DOWN"
		} else if l.Offline {
			state = "up, PLC silent"
		}
		since := ""
		if !l.Since.IsZero() {
			since = "for " + age(now, l.Since)
		}
		last := "no frame yet"
		if !l.LastFrame.IsZero() {
			last = "last frame " + age(now, l.LastFrame) + " ago"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\tframes %d, errors %d, mails %d, duplicates %d\n",
			l.Name, l.Port, state, since, last, l.Frames, l.FrameErrors, l.Mails, l.Duplicates)
		if l.LastError != "" {
			fmt.Fprintf(tw, "  \t\tlast error: %s\n", oneLine(l.LastError))
		}
		// A user who configured fallback channels expects the PLC to
		// learn when one carried its alarm; firmware before library 0.2.0
		// cannot be told (it did not announce via in its HELLO).
		if len(s.Channels) > 0 && l.Boot != 0 && !l.ChannelDeliveries {
			fmt.Fprintf(tw, "  \t\tPLC firmware does not report channel deliveries (its HELLO did not announce via: firmware library older than 0.2.0)\n")
		}
	}
	tw.Flush()
	printModbus(w, now, s.Modbus) // modbus.go

	q := s.Queue
	fmt.Fprintln(w, "\nqueue:")
	// The loop's count alone said "empty" while mail queued by `plcmail
	// send` waited for the next scan: the directory has the last word.
	oldest := q.Oldest
	if !s.SpooledOldest.IsZero() && (oldest.IsZero() || s.SpooledOldest.Before(oldest)) {
		oldest = s.SpooledOldest
	}
	if waiting := max(q.Queued, s.Spooled); waiting == 0 {
		fmt.Fprintf(w, "  empty")
	} else {
		fmt.Fprintf(w, "  %d waiting, oldest %s old", waiting, age(now, oldest))
	}
	fmt.Fprintf(w, "; %d dead letters", s.Dead)
	if s.Corrupt > 0 {
		fmt.Fprintf(w, "; %d CORRUPT, moved aside and never sent", s.Corrupt)
	}
	fmt.Fprintln(w, " (plcmail queue list)")
	fmt.Fprintf(w, "  delivered %d, deferred %d, dead-lettered %d since start\n", q.Delivered, q.Deferred, q.DeadLettered)
	if q.LastSuccess.IsZero() {
		fmt.Fprintln(w, "  last delivery: none since start")
	} else {
		fmt.Fprintf(w, "  last delivery: %s (%s ago)\n", q.LastSuccess.Local().Format(time.DateTime), age(now, q.LastSuccess))
	}
	if q.LastError != "" {
		fmt.Fprintf(w, "  last error: %s (%s ago): %s\n", q.LastErrorAt.Local().Format(time.DateTime), age(now, q.LastErrorAt), oneLine(q.LastError))
	}
	if q.HoldUntil.After(now) {
		fmt.Fprintf(w, "  upstream unreachable: next attempt in %s\n", age(q.HoldUntil, now))
	}
	printUpstreams(w, now, q.Upstreams) // upstreams.go
	printChannels(w, now, s.Channels)   // channelstatus.go
	if len(s.SMTP) > 0 {
		fmt.Fprintf(w, "\nsmtp listener: %s\n", strings.Join(s.SMTP, ", "))
	}
}

// age formats the time from then to now for people: "4s", "12m", "3h5m", "2d4h".
func age(now, then time.Time) string {
	d := now.Sub(then)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
