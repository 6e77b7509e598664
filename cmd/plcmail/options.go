package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/bridge"
	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/message"
	"github.com/plcmail/plcmail/smtpd"
	"github.com/plcmail/plcmail/spool"
	"github.com/plcmail/plcmail/upstream"
)

// This file is where the configuration becomes each component's options:
// the components never see config types, so they can be built in tests
// from their options alone.

// upstreamOptions turns [upstream] (the first [[upstream]]) into the
// client's options.
func upstreamOptions(cfg *config.Config) upstream.Options {
	return upstreamOptionsFor(cfg, &cfg.Upstream)
}

// upstreamOptionsFor turns one upstream entry into the client's options.
// The password is read at each authentication, so an edited password_file
// takes effect at the next connection; with [upstream.oauth] the token
// comes from an oauth.Source instead. Validation has parsed the pins
// already.
func upstreamOptionsFor(cfg *config.Config, u *config.Upstream) upstream.Options {
	pins := make([][32]byte, 0, len(u.Fingerprints))
	for _, s := range u.Fingerprints {
		if fp, err := upstream.ParseFingerprint(s); err == nil {
			pins = append(pins, fp)
		}
	}
	o := upstream.Options{
		Host:     u.Host,
		Port:     u.Port,
		Security: upstream.Security(u.Security),
		Auth:     u.Auth,
		Username: u.Username,
		Secret:   func(context.Context) (string, error) { return u.UpstreamPassword() },
		CAFile:   u.CAFile,
		Pins:     pins,
		Hostname: cfg.Gateway.Hostname,
		Timeout:  u.Timeout.D(),
	}
	if u.OAuth != nil {
		useOAuth(cfg, u, &o) // oauthoptions.go
	}
	return o
}

// queueOptions turns [queue] and [upstream] into the delivery loop's
// options.
func queueOptions(cfg *config.Config) spool.QueueOptions {
	q := &cfg.Queue
	return spool.QueueOptions{
		Upstream:    upstreamOptions(cfg),
		Routes:      upstreamRoutes(cfg), // upstreams.go
		Connections: q.Connections,
		BatchSize:   q.BatchSize,
		ScanEvery:   q.ScanEvery.D(),
		Lifetime:    q.Lifetime.D(),
		MinBackoff:  q.MinBackoff.D(),
		MaxBackoff:  q.MaxBackoff.D(),
	}
}

// bridgeOptions turns [[serial]] and [flood] into the bridge's options, with
// tmpl compiled from the same configuration (serve compiles it once per
// start or reload, and refuses a configuration whose templates fail).
func bridgeOptions(cfg *config.Config, tmpl *alarmmail.Templates) bridge.Options {
	o := bridge.Options{
		Flood: bridge.Flood{
			MaxMailsPerMinute: cfg.Flood.MaxMailsPerMinute,
			DigestDelay:       cfg.Flood.DigestDelay.D(),
		},
		Templates: tmpl,
	}
	for i := range cfg.Serial {
		s := &cfg.Serial[i]
		o.Links = append(o.Links, bridge.LinkOptions{
			Name: s.Name,
			Port: bridge.Port{
				Device:    s.Device,
				USBVID:    s.USBVID,
				USBPID:    s.USBPID,
				USBSerial: s.USBSerial,
				Baud:      s.Baud,
				DataBits:  s.DataBits,
				Parity:    s.Parity,
				StopBits:  string(s.StopBits),
			},
			HeartbeatTimeout: s.HeartbeatTimeout.D(),
			ResetGrace:       s.ResetGrace.D(),
			Site:             s.Site,
			Label:            s.Label,
			RestartNotice:    s.WantsRestartNotice(),
		})
	}
	return o
}

// testMessage returns the mail `plcmail test --to` sends: From is
// upstream.from, with Date and Message-ID, CRLF line endings.
func testMessage(cfg *config.Config, to string, now time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: plcmail <%s>\r\n", cfg.Upstream.From)
	fmt.Fprintf(&b, "To: <%s>\r\n", to)
	fmt.Fprintf(&b, "Subject: plcmail test from %s\r\n", cfg.Gateway.Hostname)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", message.MessageID(now, cfg.Gateway.Hostname))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "This is a test message from the plcmail gateway %s.\r\n", cfg.Gateway.Hostname)
	fmt.Fprintf(&b, "Upstream: %s:%d, security %s.\r\n", cfg.Upstream.Host, cfg.Upstream.Port, cfg.Upstream.Security)
	return b.Bytes()
}

// smtpdOptions turns [smtp] into the listener's options. The account
// passwords and the STARTTLS key pair are read here, once, as the listener
// did at start before: config.ReadSecret refuses a password file others
// can read, and a file that changed since validation is reported with the
// key that names it. smtpd keeps only hashes of the passwords.
func smtpdOptions(cfg *config.Config) (smtpd.Options, error) {
	sc := cfg.SMTP
	if sc == nil {
		return smtpd.Options{}, errors.New("smtpd: no [smtp] section in the configuration")
	}
	nets, err := sc.Networks()
	if err != nil {
		return smtpd.Options{}, fmt.Errorf("smtpd: allowed_networks: %w", err)
	}
	accounts := make(map[string]string, len(sc.Accounts))
	for _, acc := range sc.Accounts {
		pw, err := config.ReadSecret(acc.PasswordFile)
		if err != nil {
			return smtpd.Options{}, fmt.Errorf("smtpd: account: %w", err)
		}
		if pw == "" {
			return smtpd.Options{}, fmt.Errorf("smtpd: account: %s: empty password", acc.PasswordFile)
		}
		accounts[acc.Username] = pw
	}
	var cert *tls.Certificate
	if sc.TLSCertFile != "" {
		c, err := tls.LoadX509KeyPair(sc.TLSCertFile, sc.TLSKeyFile)
		if err != nil {
			return smtpd.Options{}, fmt.Errorf("smtpd: tls_cert_file: %w", err)
		}
		cert = &c
	}
	return smtpd.Options{
		Listen:              sc.Listen,
		AllowedNetworks:     nets,
		MaxMessageBytes:     sc.MaxMessageBytes,
		MaxRecipients:       sc.MaxRecipients,
		MaxConnections:      sc.MaxConnections,
		MaxConnectionsPerIP: sc.MaxConnectionsPerIP,
		CommandTimeout:      sc.CommandTimeout.D(),
		DataTimeout:         sc.DataTimeout.D(),
		MaxLineLength:       sc.MaxLineLength,
		AllowedRecipients:   sc.AllowedRecipients,
		Accounts:            accounts,
		RequireAuth:         sc.RequireAuth,
		AuthMaxFailures:     sc.AuthMaxFailures,
		AuthFailureWindow:   sc.AuthFailureWindow.D(),
		AuthLockout:         sc.AuthLockout.D(),
		Certificate:         cert,
		Hostname:            cfg.Gateway.Hostname,
		Fallback:            cfg.Upstream.From,
	}, nil
}
