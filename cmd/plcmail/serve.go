package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/flood"
	"github.com/plcmail/plcmail/modbus"
	"github.com/plcmail/plcmail/spool"

	"github.com/plcmail/plcmail/smtpd"
)

// cmdServe runs the gateway: the delivery queue, the serial links and the
// SMTP listener, until ctx ends (SIGINT/SIGTERM in main). Every component
// shares the one spool; whatever is in it when we stop is delivered by the
// next start, so stopping never loses mail. SIGHUP reloads the configuration.
func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "serve")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("serve takes no arguments (use -c FILE)")
	}
	// The same checks as plcmail check, every problem printed the same
	// way: a gateway that would fail on its first alarm must not start.
	cfg, _, problems := loadChecked(e.configPath)
	if len(problems) > 0 {
		printProblems(e.stderr, e.configPath, problems)
		fmt.Fprintf(e.stderr, "plcmail: %s: %d %s; not starting\n", e.configPath, len(problems), plural(len(problems), "problem", "problems"))
		return errSilent
	}
	level := new(slog.LevelVar)
	level.Set(parseLevel(cfg.Gateway.LogLevel))
	log := serveLogger(e, level) // systemd.go
	return serve(ctx, e.configPath, cfg, log, level)
}

// component is one long-running part of the gateway.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// serve runs the gateway of cfg, read from path (which SIGHUP reads again).
func serve(ctx context.Context, path string, cfg *config.Config, log *slog.Logger, level *slog.LevelVar) error {
	// Templates are compiled before anything starts: a daemon that would
	// fail on the first alarm must not start at all.
	tmpl, err := alarmmail.CompileTemplates(cfg)
	if err != nil {
		return err
	}
	b := readBuildInfo()
	log.Info("plcmail starting", "version", b.Version, "commit", b.Commit, "config", cfg.File,
		"spool", cfg.Gateway.SpoolDir, "upstream", strings.Join(upstreamNames(cfg), ", "),
		"security", cfg.Upstream.Security, "serial_links", len(cfg.Serial), "smtp", cfg.SMTP != nil)
	logWarnings(cfg, log)

	sp, err := spool.Open(cfg.Gateway.SpoolDir, log.With("component", "spool"))
	if err != nil {
		return err
	}
	defer sp.Close()
	queue, err := spool.NewQueue(sp, queueOptions(cfg), log.With("component", "queue"))
	if err != nil {
		return err
	}
	comps := []component{{"queue", func(ctx context.Context) error {
		err := queue.Run(ctx)
		if errors.Is(err, spool.ErrLocked) {
			return fmt.Errorf("another plcmail serve is already delivering from %s", cfg.Gateway.SpoolDir)
		}
		return err
	}}}

	// The bridge runs even without [[serial]] links, so that a SIGHUP can
	// add the first one; it opens no port until it has a link.
	// [flood] max_mails_per_minute counts serial and Modbus alarms together.
	limiter := new(flood.Limiter)
	bo := bridgeOptions(cfg, tmpl)
	bo.Limiter = limiter
	links, err := bridge.New(bo, sp, queue.Wake, log.With("component", "bridge"))
	if err != nil {
		return err
	}
	// Final delivery results go back to the PLCs as DELIVERY frames.
	queue.OnResult(links.DeliveryResult)
	comps = append(comps, component{"bridge", links.Run})
	if cfg.SMTP != nil {
		opts, err := smtpdOptions(cfg)
		if err != nil {
			return err
		}
		srv, err := smtpd.New(opts, sp, queue.Wake, log.With("component", "smtpd"))
		if err != nil {
			return err
		}
		comps = append(comps, component{"smtpd", srv.Run})
	}
	// Polled Modbus devices (cmd/plcmail/modbus.go).
	poller, c, err := modbusComponent(cfg, tmpl, sp, queue.Wake, limiter, log)
	if err != nil {
		return err
	}
	comps = append(comps, c)
	mqttc, err := mqttClient(cfg, log) // the fleet view's and the mqtt channels' broker
	if err != nil {
		return err
	}
	// Fallback channels for alarms (cmd/plcmail/channel.go).
	chans, err := channelDispatcher(cfg, sp, queue, links, mqttc, log)
	if err != nil {
		return err
	}
	if chans != nil {
		comps = append(comps, component{"channels", chans.Run})
	}
	// Answers `plcmail status` on SPOOL/status.sock (cmd/plcmail/status.go).
	collect := withChannels(withModbus(statusCollector(cfg, sp, queue, links), poller), chans)
	comps = append(comps, statusComponent(cfg, collect, log))
	// Metrics and the status page on [http] (cmd/plcmail/web.go).
	if c, ok := webComponent(cfg, collect, log); ok {
		comps = append(comps, c)
	}
	// The fleet view on an MQTT broker (cmd/plcmail/mqtt.go).
	if mqttc != nil {
		comps = append(comps, fleetComponent(cfg, mqttc, collect, log))
	}
	sd := newServiceManager(collect, log) // systemd.go
	// The date a client secret runs out, told in time (oauthoptions.go).
	if c, ok := secretExpiryComponent(cfg, log); ok {
		comps = append(comps, c)
	}
	// Mail of local users who may not write the spool (cmd/plcmail/submit.go).
	if c, ok := submitComponent(cfg, sp, queue.Wake, log); ok {
		comps = append(comps, c)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for _, c := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.run(ctx)
			if ctx.Err() == nil {
				// A component stopped by itself: the gateway is not whole
				// any more, so stop everything and say why.
				if err == nil {
					err = errors.New("stopped unexpectedly")
				}
				cancel(fmt.Errorf("%s: %w", c.name, err))
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	log.Info("plcmail running", "components", componentNames(comps))
	sd.ready()

	for {
		select {
		case <-hup:
			sd.reloading()
			reload(path, cfg, links, poller, log, level)
			sd.ready()
			continue
		case <-sd.watchdog():
			sd.ping()
			continue
		case <-ctx.Done():
		}
		break
	}
	cause := context.Cause(ctx)
	sd.stopping()
	log.Info("plcmail stopping", "reason", cause)
	// The queue finishes a transaction in progress (bounded by the upstream
	// timeout), the listener lets messages being received reach the spool.
	// If that takes far longer than it can, exit anyway: all accepted mail is
	// on disk, and the next start delivers it.
	grace := 3*cfg.Upstream.Timeout.D() + 15*time.Second
	select {
	case <-done:
	case <-time.After(grace):
		return fmt.Errorf("serve: components still running %v after the stop request; exiting (queued mail is safe in %s)", grace, cfg.Gateway.SpoolDir)
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("plcmail stopped")
	return nil
}

// reload handles SIGHUP: it loads and checks the file again and hands the
// new configuration to the serial links (templates, recipients, flood
// control) and the log level. On any error the running configuration stays,
// as it would with nginx -s reload: a typo must not take the gateway down.
//
// The other components keep the options they were built with at start, so
// the sections a reload cannot apply are those that differ from started,
// the configuration serve started with, however many reloads came between.
func reload(path string, started *config.Config, links *bridge.Bridge, poller *modbus.Poller, log *slog.Logger, level *slog.LevelVar) {
	log.Info("reloading configuration", "config", path)
	cfg, tmpl, problems := loadChecked(path)
	if len(problems) == 0 {
		if err := links.Reload(bridgeOptions(cfg, tmpl)); err != nil {
			problems = config.AsErrors(err)
		}
	}
	if len(problems) == 0 {
		if err := reloadModbus(poller, cfg, tmpl); err != nil { // modbus.go
			problems = config.AsErrors(err)
		}
	}
	if len(problems) > 0 {
		for _, p := range problems {
			log.Error("reload failed, keeping the running configuration", "problem", p.Error())
		}
		return
	}
	level.Set(parseLevel(cfg.Gateway.LogLevel))
	logWarnings(cfg, log)
	if keys := restartKeys(started, cfg); len(keys) > 0 {
		log.Warn("reloaded; these settings take effect only after a restart", "sections", strings.Join(keys, ", "))
		return
	}
	log.Info("reloaded configuration", "config", path)
}

// logWarnings logs what plcmail check prints as warnings (valid, but most
// likely not meant), at start and after each reload: a daemon started or
// reloaded by a package script, without anyone running check, must say it
// too, as Postfix logs its warnings at start.
func logWarnings(cfg *config.Config, log *slog.Logger) {
	for _, w := range listenWarnings(cfg, localAddrs()).Merge(deviceWarnings(cfg)).Merge(cfg.Warnings()) {
		log.Warn("configuration warning", "warning", w.Error())
	}
}

// restartKeys names the sections a reload cannot apply: the delivery loop
// and the listener keep the settings they started with. Serial links and
// Modbus devices are not among them: the bridge and the poller add, remove
// and restart them on reload.
func restartKeys(old, cfg *config.Config) []string {
	var keys []string
	if old.Gateway.SpoolDir != cfg.Gateway.SpoolDir || old.Gateway.Hostname != cfg.Gateway.Hostname {
		keys = append(keys, "gateway")
	}
	if !reflect.DeepEqual(old.Upstream, cfg.Upstream) || !reflect.DeepEqual(old.Upstreams, cfg.Upstreams) {
		keys = append(keys, "upstream")
	}
	if !reflect.DeepEqual(old.Queue, cfg.Queue) {
		keys = append(keys, "queue")
	}
	if !reflect.DeepEqual(old.SMTP, cfg.SMTP) {
		keys = append(keys, "smtp")
	}
	if !reflect.DeepEqual(old.HTTP, cfg.HTTP) {
		keys = append(keys, "http") // the password file is read at each request, though
	}
	if !reflect.DeepEqual(old.MQTT, cfg.MQTT) {
		keys = append(keys, "mqtt")
	}
	if !reflect.DeepEqual(old.Channel, cfg.Channel) {
		keys = append(keys, "channel")
	}
	return keys
}

func componentNames(cs []component) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.name
	}
	return strings.Join(names, ",")
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
