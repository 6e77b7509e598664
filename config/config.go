// Package config loads and validates plcmail's TOML configuration.
//
// Loading is four steps, always in this order: defaults, toml.Decode into
// raw values (only a syntax error stops here), decoding key by key into the
// structs (decode.go: wrong types, bad durations, unknown keys), Validate.
// Every problem is reported as an *Error that names the file, the line and the
// key, and Load returns all of them at once (as Errors) so that `plcmail check`
// can print the whole list instead of making the user fix one line per run.
//
// A new section adds its checks as a method validate(v *validator) (with a
// path argument for an element of an array of tables) that calls v.errf once
// per problem, called from Validate or from its parent section's validate.
package config

import (
	"github.com/plcmail/plcmail/upstream"

	"bytes"
	"cmp"
	"errors"
	"fmt"

	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the daemon and the CLI look for the configuration when
// neither -c nor PLCMAIL_CONFIG names one.
const DefaultPath = "/etc/plcmail/plcmail.toml"

// Config is the whole configuration file. Section names are part of the
// user-facing contract (shared/contract.md) and must not change.
type Config struct {
	Gateway  Gateway  `toml:"gateway"`
	Upstream Upstream `toml:"upstream"` // the single [upstream], or the first [[upstream]]
	Queue    Queue    `toml:"queue"`
	SMTP     *SMTP    `toml:"smtp"` // nil: no listener
	HTTP     *HTTP    `toml:"http"` // nil: no metrics/status listener (config/http.go)
	Serial   []Serial `toml:"serial"`
	Alarm    []Alarm  `toml:"alarm"`
	Flood    Flood    `toml:"flood"`
	Modbus   []Modbus `toml:"modbus"` // polled Modbus devices (config/modbus.go)
	MQTT     *MQTT    `toml:"mqtt"`   // nil: no broker connection (config/mqtt.go)
	// Channel lists the fallback channels for alarms (config/channel.go).
	Channel []Channel `toml:"channel"`

	// Upstreams is the [[upstream]] list in order (config/upstreams.go);
	// nil for a single [upstream] table.
	Upstreams []Upstream `toml:"-"`

	// File is the path the configuration was read from, for messages.
	File string `toml:"-"`

	pos *positions
	bad map[string]bool // keys whose value did not decode (see decoder)
}

// Gateway holds the settings of the gateway host itself.
type Gateway struct {
	Hostname string `toml:"hostname"`  // EHLO name and Message-ID domain
	SpoolDir string `toml:"spool_dir"` // queue, dead letters, idempotency keys
	Site     string `toml:"site"`      // free label for templates ("Plant 2, hall B")
	LogLevel string `toml:"log_level"` // debug | info | warn | error
	// SubmitSocket is where serve takes mail from local users who cannot
	// write the spool (config/submit.go); "" turns it off.
	SubmitSocket string `toml:"submit_socket"`
}

// Upstream describes the provider all mail is relayed to.
type Upstream struct {
	Host         string   `toml:"host"`
	Port         int      `toml:"port"`
	Security     string   `toml:"security"` // starttls | tls | none
	Auth         string   `toml:"auth"`     // auto | plain | login | cram-md5 | xoauth2 | none
	Username     string   `toml:"username"`
	Password     string   `toml:"password"`
	PasswordFile string   `toml:"password_file"`
	CAFile       string   `toml:"ca_file"`
	Fingerprints []string `toml:"tls_fingerprints"` // SHA-256 of the leaf certificate, hex; pins replace CA verification
	From         string   `toml:"from"`
	Timeout      Duration `toml:"timeout"` // per SMTP command and for dialing
	OAuth        *OAuth   `toml:"oauth"`   // nil: password authentication (config/oauth.go)
	Failover              // name, routing rules, failover timing (config/upstreams.go)
}

// Queue holds the retry policy, named after Postfix's equivalents.
type Queue struct {
	Lifetime   Duration `toml:"lifetime"`    // maximal_queue_lifetime
	MinBackoff Duration `toml:"min_backoff"` // minimal_backoff_time
	MaxBackoff Duration `toml:"max_backoff"` // maximal_backoff_time
	BatchSize  int      `toml:"batch_size"`  // messages sent over one upstream connection
	ScanEvery  Duration `toml:"scan_every"`  // how often the spool directory is re-read for mail queued by other processes
	// Connections is how many upstream connections deliver at once
	// (default_destination_concurrency_limit); 1 sends over one at a time.
	Connections int `toml:"connections"`
}

// Security values for Upstream.Security.
const (
	SecurityStartTLS = "starttls"
	SecurityTLS      = "tls"
	SecurityNone     = "none"
)

// Default returns the configuration that applies before the file is read.
func Default() *Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return &Config{
		Gateway: Gateway{Hostname: host, SpoolDir: "/var/spool/plcmail", LogLevel: "info", SubmitSocket: DefaultSubmitSocket},
		Upstream: Upstream{
			Port:     587,
			Security: SecurityStartTLS,
			Auth:     "auto",
			Timeout:  Duration(30 * time.Second),
		},
		Queue: Queue{
			Lifetime:   Duration(5 * 24 * time.Hour),
			MinBackoff: Duration(30 * time.Second),
			MaxBackoff: Duration(1 * time.Hour),
			BatchSize:  100,
			ScanEvery:  Duration(1 * time.Second),
			// Below Postfix's initial_destination_concurrency (5): providers
			// cap concurrent sessions per account, and 4 already keeps a
			// small gateway's disk and CPU busy while draining a backlog.
			Connections: 4,
		},
		Flood: defaultFlood(),
	}
}

// Load reads, decodes and validates the file at path. On failure the error is
// an Errors value listing every problem found.
func Load(path string) (*Config, error) {
	c, errs := LoadAll(path)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// LoadAll is Load for checkers: it returns every problem and, unless the
// file could not be read or parsed as TOML at all, also the configuration as
// far as it decoded (keys with problems keep their defaults), so that later
// checks such as template rendering can still run and report theirs in the
// same list. The configuration must not be used to run anything when errs is
// not empty.
func LoadAll(path string) (c *Config, errs Errors) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	return ParseAll(path, data)
}

// Parse is Load for an already-read file; path is used in messages and to
// resolve nothing else.
func Parse(path string, data []byte) (*Config, error) {
	c, errs := ParseAll(path, data)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// ParseAll is LoadAll for an already-read file.
//
// Only an unreadable encoding or a TOML syntax error stops the checks (the
// parser cannot resynchronise); wrong types, bad durations, unknown keys and
// every validation problem are all collected, in line order.
func ParseAll(path string, data []byte) (*Config, Errors) {
	if e := checkEncoding(path, data); e != nil {
		return nil, Errors{e}
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	c := Default()
	c.File = path
	c.pos = indexPositions(data)
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return nil, Errors{decodeError(path, data, c.pos, err)}
	}
	d := &decoder{md: md, file: path, pos: c.pos, bad: map[string]bool{}}
	c.decodeUpstreamList(d, top)
	d.table(top, reflect.ValueOf(c).Elem(), "")
	c.bad = d.bad
	c.applyDerivedDefaults()
	errs := append(d.errs, c.Validate()...)
	errs.sort()
	return c, errs
}

// applyDerivedDefaults fills values that default to other values.
func (c *Config) applyDerivedDefaults() {
	c.applyUpstreamDefaults()
	for i := range c.Serial {
		c.Serial[i].applyDefaults()
	}
	if c.SMTP != nil {
		c.SMTP.applyDefaults()
	}
	if c.HTTP != nil {
		c.HTTP.applyDefaults()
	}
	for i := range c.Modbus {
		c.Modbus[i].applyDefaults()
	}
	if c.MQTT != nil {
		c.MQTT.applyDefaults(&c.Gateway)
	}
	c.applyChannelDefaults()
}

// Validate checks every section and returns all problems found.
func (c *Config) Validate() Errors {
	v := &validator{file: c.File, pos: c.pos, bad: c.bad}
	c.Gateway.validate(v)
	c.validateUpstreams(v)
	c.Queue.validate(v)
	if c.SMTP != nil {
		c.SMTP.validate(v)
	}
	if c.HTTP != nil {
		c.HTTP.validate(v)
	}
	names := map[string]bool{}
	for i := range c.Serial {
		s := &c.Serial[i]
		s.validate(v, fmt.Sprintf("serial[%d]", i))
		if s.Name != "" && names[s.Name] {
			v.errf(fmt.Sprintf("serial[%d].name", i), "duplicate link name %q", s.Name)
		}
		names[s.Name] = true
	}
	codes := map[int]bool{}
	for i := range c.Alarm {
		a := &c.Alarm[i]
		a.validate(v, fmt.Sprintf("alarm[%d]", i))
		if a.Code != nil {
			if codes[*a.Code] {
				v.errf(fmt.Sprintf("alarm[%d].code", i), "duplicate alarm code %d", *a.Code)
			}
			codes[*a.Code] = true
		}
	}
	c.Flood.validate(v)
	c.validateModbus(v)
	if c.MQTT != nil {
		c.MQTT.validate(v)
	}
	c.validateChannels(v)
	return v.errs
}

// Line returns the line of the key at path ("upstream.port", "serial[1].device",
// "alarm[3]" for the table itself), or 0 when the file does not set it. Other
// packages use it to report problems they find later (a template that does not
// render) at the right place.
func (c *Config) Line(path string) int { return c.pos.line2(path) }

// DecodeFailed reports whether the value at path, or the table holding it,
// had the wrong type and so holds its default: its problem is reported
// already, and a check that depends on it should stay quiet.
func (c *Config) DecodeFailed(path string) bool { return badKey(c.bad, path) }

// Warnings are what is valid but most likely not meant, each at its key
// and line like an error, for plcmail check to print without failing:
// Modbus rules whose code has no [[alarm]] template.
func (c *Config) Warnings() Errors {
	out := c.modbusWarnings()
	out.sort()
	return out
}

// Errorf builds an *Error for the key at path, located in this configuration.
func (c *Config) Errorf(path, format string, args ...any) *Error {
	return &Error{File: c.File, Line: c.Line(path), Key: path, Msg: fmt.Sprintf(format, args...)}
}

func (g *Gateway) validate(v *validator) {
	if g.Hostname == "" {
		v.errf("gateway.hostname", "must not be empty")
	} else if strings.ContainsAny(g.Hostname, " \t\r\n<>@") {
		v.errf("gateway.hostname", "%q is not a host name", g.Hostname)
	}
	if g.SpoolDir == "" {
		v.errf("gateway.spool_dir", "must not be empty")
	}
	g.validateSubmitSocket(v)
	switch g.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.errf("gateway.log_level", "must be debug, info, warn or error, not %q", g.LogLevel)
	}
}

// validateAt checks one upstream entry at key path p ("upstream" or
// "upstream[N]"); only the first entry needs from, the sender of alarm
// mails.
func (u *Upstream) validateAt(v *validator, p string, first bool) {
	if u.Host == "" {
		v.errf(p+".host", "required: the mail server to relay to")
	}
	if u.Port < 1 || u.Port > 65535 {
		v.errf(p+".port", "must be 1..65535, not %d", u.Port)
	}
	switch u.Security {
	case SecurityStartTLS, SecurityTLS:
	case SecurityNone:
		if u.Host != "" && !upstream.IsLoopbackHost(u.Host) {
			v.errf(p+".security", `"none" sends mail and credentials in clear; it is only allowed towards a loopback host, not %q`, u.Host)
		}
	default:
		v.errf(p+".security", `must be "starttls", "tls" or "none", not %q`, u.Security)
	}
	switch u.Auth {
	case "auto", "plain", "login", "cram-md5", "xoauth2":
		if u.Auth != "auto" && u.Username == "" {
			v.errf(p+".username", "required with auth = %q", u.Auth)
		}
	case "none":
	default:
		v.errf(p+".auth", "must be auto, plain, login, cram-md5, xoauth2 or none, not %q", u.Auth)
	}
	if u.Password != "" && u.PasswordFile != "" {
		v.errf(p+".password_file", "set either password or password_file, not both")
	}
	if u.PasswordFile != "" {
		if pw, err := ReadSecret(u.PasswordFile); err != nil {
			v.errf(p+".password_file", "%v", err)
		} else if pw == "" && u.Auth != "none" {
			// install.sh creates the file empty; a forgotten password
			// would otherwise show up only as AUTH failures in the log.
			v.errf(p+".password_file", "%s is empty: put the password (or the OAuth2 token) on its first line", u.PasswordFile)
		}
	}
	if u.Username != "" && u.Password == "" && u.PasswordFile == "" && u.Auth != "none" && u.OAuth == nil {
		v.errf(p+".username", "a username needs password or password_file")
	}
	if u.CAFile != "" {
		if _, err := os.ReadFile(u.CAFile); err != nil {
			v.errf(p+".ca_file", "%v", err)
		}
	}
	for i, fp := range u.Fingerprints {
		if _, err := upstream.ParseFingerprint(fp); err != nil {
			v.errf(fmt.Sprintf("%s.tls_fingerprints[%d]", p, i), "%v", err)
		}
	}
	if u.From == "" {
		if first {
			v.errf(p+".from", "required: the sender address of alarm mails")
		}
	} else if !looksLikeAddress(u.From) {
		v.errf(p+".from", "%q is not a mail address", u.From)
	}
	if u.Timeout <= 0 {
		v.errf(p+".timeout", "must be positive")
	}
}

func (q *Queue) validate(v *validator) {
	if q.Lifetime <= 0 {
		v.errf("queue.lifetime", "must be positive")
	}
	if q.MinBackoff <= 0 {
		v.errf("queue.min_backoff", "must be positive")
	}
	if q.MaxBackoff < q.MinBackoff {
		v.errf("queue.max_backoff", "must not be shorter than min_backoff")
	}
	if q.BatchSize < 1 {
		v.errf("queue.batch_size", "must be at least 1")
	}
	if q.ScanEvery <= 0 {
		v.errf("queue.scan_every", "must be positive")
	}
	if q.Connections < 1 || q.Connections > 50 {
		v.errf("queue.connections", "must be between 1 and 50")
	}
}

// CheckSecretFile reports whether path is a readable file that only its owner
// can read: a password readable by group or others is refused, like ssh does
// with private keys, because the gateway's provider account can send mail to
// anyone.
func CheckSecretFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s is readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// ReadSecret returns the first line of a secret file, without its newline.
func ReadSecret(path string) (string, error) {
	if err := CheckSecretFile(path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(s, "\r"), nil
}

// UpstreamPassword returns the password from password or password_file.
func (u *Upstream) UpstreamPassword() (string, error) {
	if u.PasswordFile != "" {
		return ReadSecret(u.PasswordFile)
	}
	return u.Password, nil
}

func looksLikeAddress(a string) bool {
	local, domain, ok := strings.Cut(a, "@")
	return ok && local != "" && domain != "" && !strings.ContainsAny(a, " \t\r\n<>,;")
}

// Duration is a time.Duration written as a string ("30s", "5m", "120h").
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler for toml.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if n, ok := strings.CutSuffix(s, "d"); ok { // days, as Postfix writes queue lifetimes
		days, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return fmt.Errorf("invalid duration %q", s)
		}
		*d = Duration(time.Duration(days * float64(24*time.Hour)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"30s\", \"5m\", \"2h\", \"5d\")", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Error is one configuration problem, printed as FILE:LINE: key: message.
type Error struct {
	File string
	Line int // 0 when the key is absent from the file (a missing required key)
	Key  string
	Msg  string
}

// Error formats the problem as FILE:LINE: key: message, the form editors
// and CI logs turn into a link to the line.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// sort orders es by line; stable, so that keys absent from the file (line 0)
// stay in validation order at the top.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
}

// Merge returns es with the problems of more that concern a key es has no
// problem with yet (a later check, such as template rendering, often trips
// over the value validation already reported), in line order.
func (es Errors) Merge(more Errors) Errors {
	have := map[string]bool{}
	for _, e := range es {
		if e.Key != "" {
			have[e.Key] = true
		}
	}
	out := slices.Clone(es)
	for _, e := range more {
		if e.Key == "" || !badKey(have, e.Key) {
			out = append(out, e)
		}
	}
	out.sort()
	return out
}

// AsErrors returns the list inside err, or a one-element list for any other
// error, so callers can print "one line per problem" uniformly.
func AsErrors(err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return Errors{{Msg: err.Error()}}
}

func decodeError(path string, data []byte, pos *positions, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		// Locate by byte offset: toml counts an error found at a line's
		// newline as being on the next line.
		line := pe.Position.Line
		if s := pe.Position.Start; s > 0 && s <= len(data) {
			line = 1 + bytes.Count(data[:s], []byte("\n"))
		}
		// For a syntax error pe.LastKey is the last key parsed before it,
		// not the one at fault; it is named only when that key is on the
		// error's line (a value the key's type rejected, e.g. a duration).
		e := &Error{File: path, Line: line, Msg: pe.Message}
		for _, l := range pos.loose[pe.LastKey] {
			if l == line {
				e.Key = pe.LastKey
			}
		}
		return e
	}
	return &Error{File: path, Msg: err.Error()}
}

// validator collects the problems of Validate, each located by its key path.
//
// A section's checks are a method validate(v *validator) (or with a path
// argument for an element of an array of tables) that calls v.errf once per
// problem and never stops early: Validate must report them all at once.
type validator struct {
	file string
	pos  *positions
	bad  map[string]bool // keys that failed to decode; their problem is reported already
	errs Errors
}

// errf adds a problem at the key path ("upstream.port", "serial[1].device",
// "upstream.tls_fingerprints[0]"); the line is that of the key, or of its
// table when the file does not set the key. A key whose value had the wrong
// type (or one inside it) is skipped: it holds its default, and "required"
// or "must be positive" about a value the user did not write would mislead.
func (v *validator) errf(path, format string, args ...any) {
	if badKey(v.bad, path) {
		return
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: v.pos.line2(path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

// badKey reports whether path or a table or array containing it is in bad.
func badKey(bad map[string]bool, path string) bool {
	for p := path; p != ""; {
		if bad[p] {
			return true
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			return false
		}
		p = p[:i]
	}
	return false
}
