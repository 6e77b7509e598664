package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// SMTP configures the optional listener for Ethernet boards ([smtp]).
//
// The listener is safe by default: it only talks to peers inside
// AllowedNetworks (loopback unless configured), relays only to
// AllowedRecipients when that list is set, and bounds every resource a client
// can hold (connections, time, bytes, recipients).
type SMTP struct {
	Listen          []string `toml:"listen"`           // host:port, e.g. "192.168.1.1:25"
	AllowedNetworks []string `toml:"allowed_networks"` // CIDRs or single addresses; others are refused before the greeting
	MaxMessageBytes int64    `toml:"max_message_bytes"`

	MaxRecipients       int      `toml:"max_recipients"`         // per message; more get 452 4.5.3
	MaxConnections      int      `toml:"max_connections"`        // concurrent sessions in total; more get 421
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"` // concurrent sessions per client address
	CommandTimeout      Duration `toml:"command_timeout"`        // for each whole command line, however slowly it arrives
	DataTimeout         Duration `toml:"data_timeout"`           // whole DATA transfer, from the 354 to the final dot
	MaxLineLength       int      `toml:"max_line_length"`        // bytes per line, commands and message

	// AllowedRecipients limits where LAN devices may send mail: "example.com"
	// or "@example.com" allow a whole domain, "ops@example.com" one address.
	// Empty allows any recipient.
	AllowedRecipients []string `toml:"allowed_recipients"`

	// Accounts enable AUTH PLAIN and LOGIN for boards that authenticate.
	Accounts []SMTPAccount `toml:"account"`
	// RequireAuth refuses MAIL FROM until the client authenticated.
	RequireAuth bool `toml:"require_auth"`
	// AuthMaxFailures failed AUTH attempts from one client address within
	// AuthFailureWindow lock that address out of AUTH for AuthLockout.
	AuthMaxFailures   int      `toml:"auth_max_failures"`
	AuthFailureWindow Duration `toml:"auth_failure_window"`
	AuthLockout       Duration `toml:"auth_lockout"`

	// TLSCertFile and TLSKeyFile (PEM) enable STARTTLS on the listener.
	TLSCertFile string `toml:"tls_cert_file"`
	TLSKeyFile  string `toml:"tls_key_file"`
}

// SMTPAccount is one [[smtp.account]]: credentials a board uses with AUTH.
type SMTPAccount struct {
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"` // first line is the password; mode 0600
}

// Defaults of the [smtp] section.
const (
	DefaultSMTPMaxMessageBytes     = 1 << 20
	DefaultSMTPMaxRecipients       = 50
	DefaultSMTPMaxConnections      = 100
	DefaultSMTPMaxConnectionsPerIP = 10
	DefaultSMTPCommandTimeout      = 60 * time.Second
	DefaultSMTPDataTimeout         = 5 * time.Minute
	DefaultSMTPMaxLineLength       = 2000 // twice RFC 5321's 1000, as go-smtp and Postfix (2048) tolerate

	// A board with the right password never fails; five failures in ten
	// minutes is someone guessing, and a quarter of an hour's lockout
	// makes guessing useless (a few hundred tries a day) while a board
	// whose password was changed in the wrong order recovers by itself.
	// fail2ban's defaults are the same order of magnitude (5 failures
	// within 10 minutes, banned for 10 minutes).
	DefaultSMTPAuthMaxFailures   = 5
	DefaultSMTPAuthFailureWindow = 10 * time.Minute
	DefaultSMTPAuthLockout       = 15 * time.Minute
)

func (s *SMTP) applyDefaults() {
	if s.MaxMessageBytes == 0 {
		s.MaxMessageBytes = DefaultSMTPMaxMessageBytes
	}
	if s.AllowedNetworks == nil {
		s.AllowedNetworks = []string{"127.0.0.0/8", "::1/128"}
	}
	if s.MaxRecipients == 0 {
		s.MaxRecipients = DefaultSMTPMaxRecipients
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = DefaultSMTPMaxConnections
	}
	if s.MaxConnectionsPerIP == 0 {
		s.MaxConnectionsPerIP = DefaultSMTPMaxConnectionsPerIP
		if s.MaxConnections > 0 && s.MaxConnections < s.MaxConnectionsPerIP {
			s.MaxConnectionsPerIP = s.MaxConnections
		}
	}
	if s.CommandTimeout == 0 {
		s.CommandTimeout = Duration(DefaultSMTPCommandTimeout)
	}
	if s.DataTimeout == 0 {
		s.DataTimeout = Duration(DefaultSMTPDataTimeout)
	}
	if s.MaxLineLength == 0 {
		s.MaxLineLength = DefaultSMTPMaxLineLength
	}
	if s.AuthMaxFailures == 0 {
		s.AuthMaxFailures = DefaultSMTPAuthMaxFailures
	}
	if s.AuthFailureWindow == 0 {
		s.AuthFailureWindow = Duration(DefaultSMTPAuthFailureWindow)
	}
	if s.AuthLockout == 0 {
		s.AuthLockout = Duration(DefaultSMTPAuthLockout)
	}
}

func (s *SMTP) validate(v *validator) {
	if len(s.Listen) == 0 {
		v.errf("smtp.listen", "required: at least one address to listen on")
	}
	for i, a := range s.Listen {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			v.errf(fmt.Sprintf("smtp.listen[%d]", i), "%q is not host:port (e.g. \"192.168.1.1:25\")", a)
			continue
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			v.errf(fmt.Sprintf("smtp.listen[%d]", i), "%q: port must be 0..65535", a)
		}
		if host != "" && net.ParseIP(host) == nil && !strings.EqualFold(host, "localhost") {
			v.errf(fmt.Sprintf("smtp.listen[%d]", i), "%q: listen on an IP address (or \"localhost\"), not a name resolved at start", a)
		}
	}
	nets, err := s.Networks()
	if err != nil {
		v.errf("smtp.allowed_networks", "%v", err)
	}
	for i, p := range nets {
		if p.Bits() == 0 && !s.RequireAuth {
			v.errf(fmt.Sprintf("smtp.allowed_networks[%d]", i),
				"%s admits every address on the internet and makes the gateway an open relay; list your LAN (e.g. \"192.168.1.0/24\") or set require_auth = true", p)
		}
	}
	if s.MaxMessageBytes < 1024 {
		v.errf("smtp.max_message_bytes", "must be at least 1024, not %d", s.MaxMessageBytes)
	}
	if s.MaxRecipients < 1 {
		v.errf("smtp.max_recipients", "must be at least 1")
	}
	if s.MaxConnections < 1 {
		v.errf("smtp.max_connections", "must be at least 1")
	}
	if s.MaxConnectionsPerIP < 1 {
		v.errf("smtp.max_connections_per_ip", "must be at least 1")
	} else if s.MaxConnectionsPerIP > s.MaxConnections {
		v.errf("smtp.max_connections_per_ip", "must not exceed max_connections (%d)", s.MaxConnections)
	}
	if s.CommandTimeout.D() < time.Second {
		v.errf("smtp.command_timeout", "must be at least 1s")
	}
	if s.DataTimeout.D() < time.Second {
		v.errf("smtp.data_timeout", "must be at least 1s")
	}
	if s.MaxLineLength < 1000 {
		v.errf("smtp.max_line_length", "must be at least 1000 (RFC 5321), not %d", s.MaxLineLength)
	}
	if s.AuthMaxFailures < 1 {
		v.errf("smtp.auth_max_failures", "must be at least 1, not %d", s.AuthMaxFailures)
	}
	if s.AuthFailureWindow.D() < time.Second {
		v.errf("smtp.auth_failure_window", "must be at least 1s")
	}
	if s.AuthLockout.D() < time.Second {
		v.errf("smtp.auth_lockout", "must be at least 1s")
	}
	for i, r := range s.AllowedRecipients {
		if !validRecipientPattern(r) {
			v.errf(fmt.Sprintf("smtp.allowed_recipients[%d]", i), "%q is neither a domain (\"example.com\", \"@example.com\") nor an address (\"ops@example.com\")", r)
		}
	}
	users := map[string]bool{}
	for i, a := range s.Accounts {
		path := fmt.Sprintf("smtp.account[%d]", i)
		if a.Username == "" {
			v.errf(path+".username", "required")
		} else if users[a.Username] {
			v.errf(path+".username", "duplicate account %q", a.Username)
		}
		users[a.Username] = true
		if a.PasswordFile == "" {
			v.errf(path+".password_file", "required: a file holding the password (mode 0600)")
		} else if err := CheckSecretFile(a.PasswordFile); err != nil {
			v.errf(path+".password_file", "%v", err)
		}
	}
	if s.RequireAuth && len(s.Accounts) == 0 {
		v.errf("smtp.require_auth", "needs at least one [[smtp.account]]")
	}
	switch {
	case s.TLSCertFile == "" && s.TLSKeyFile == "":
	case s.TLSCertFile == "":
		v.errf("smtp.tls_cert_file", "required with tls_key_file")
	case s.TLSKeyFile == "":
		v.errf("smtp.tls_key_file", "required with tls_cert_file")
	default:
		if err := CheckSecretFile(s.TLSKeyFile); err != nil {
			v.errf("smtp.tls_key_file", "%v", err)
		} else if _, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile); err != nil {
			v.errf("smtp.tls_cert_file", "%v", err)
		}
	}
}

// Networks parses AllowedNetworks. A bare address stands for itself (/32 or
// /128). IPv4-mapped IPv6 prefixes are unmapped so they match IPv4 peers.
func (s *SMTP) Networks() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, n := range s.AllowedNetworks {
		n = strings.TrimSpace(n)
		if !strings.Contains(n, "/") {
			a, err := netip.ParseAddr(n)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a network (\"192.168.1.0/24\") nor an address", n)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network like \"192.168.1.0/24\": %v", n, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func validRecipientPattern(r string) bool {
	if r == "" || strings.ContainsAny(r, " \t\r\n<>,;") {
		return false
	}
	local, domain, hasAt := strings.Cut(r, "@")
	if !hasAt {
		domain = local
	} else if strings.Contains(domain, "@") {
		return false
	}
	return domain != "" && !strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".")
}

// DefaultSMTP returns an [smtp] section listening on listen with every
// default applied, for programs and tests that build a configuration in code.
func DefaultSMTP(listen ...string) *SMTP {
	s := &SMTP{Listen: listen}
	s.applyDefaults()
	return s
}
