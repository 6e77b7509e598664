package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/smtp"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/smtpd"
	"github.com/plcmail/plcmail/spool"
)

// smtpdConfig parses a configuration for gateway "gw.test" whose [smtp]
// section is smtpSection.
func smtpdConfig(t *testing.T, smtpSection string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "plcmail.toml"), fmt.Appendf(nil, `
[gateway]
hostname  = "gw.test"
spool_dir = %q

[upstream]
host     = "127.0.0.1"
port     = 2525
security = "none"
auth     = "none"
from     = "gateway@example.com"

[smtp]
%s
`, filepath.Join(dir, "spool"), smtpSection))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// TestSmtpdOptionsDefaults: an [smtp] section with listen alone becomes the
// options smtpd's own tests take as "the defaults" (smtpd testOptions).
func TestSmtpdOptionsDefaults(t *testing.T) {
	cfg := smtpdConfig(t, `listen = ["127.0.0.1:0"]`)
	got, err := smtpdOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := smtpd.Options{
		Listen:              []string{"127.0.0.1:0"},
		AllowedNetworks:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		MaxMessageBytes:     1 << 20,
		MaxRecipients:       50,
		MaxConnections:      100,
		MaxConnectionsPerIP: 10,
		CommandTimeout:      60 * time.Second,
		DataTimeout:         5 * time.Minute,
		MaxLineLength:       2000,
		AuthMaxFailures:     5,
		AuthFailureWindow:   10 * time.Minute,
		AuthLockout:         15 * time.Minute,
		Accounts:            map[string]string{},
		Hostname:            "gw.test",
		Fallback:            "gateway@example.com",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("options\n got %+v\nwant %+v", got, want)
	}
}

// TestSmtpdOptionsEveryKey: each [smtp] key reaches its option; addresses
// in allowed_networks become prefixes as config.SMTP.Networks parses them.
func TestSmtpdOptionsEveryKey(t *testing.T) {
	cfg := smtpdConfig(t, `listen = ["127.0.0.1:2525", "[::1]:2525"]
allowed_networks = ["192.168.1.0/24", "10.0.0.7", "::ffff:172.16.0.0/108"]
max_message_bytes = 4096
max_recipients = 3
max_connections = 20
max_connections_per_ip = 4
command_timeout = "7s"
data_timeout = "70s"
max_line_length = 1200
auth_max_failures = 3
auth_failure_window = "2m"
auth_lockout = "1h"
allowed_recipients = ["example.com", "boss@other.org"]`)
	got, err := smtpdOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := smtpd.Options{
		Listen: []string{"127.0.0.1:2525", "[::1]:2525"},
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("10.0.0.7/32"),
			netip.MustParsePrefix("172.16.0.0/12")},
		MaxMessageBytes:     4096,
		MaxRecipients:       3,
		MaxConnections:      20,
		MaxConnectionsPerIP: 4,
		CommandTimeout:      7 * time.Second,
		DataTimeout:         70 * time.Second,
		MaxLineLength:       1200,
		AuthMaxFailures:     3,
		AuthFailureWindow:   2 * time.Minute,
		AuthLockout:         time.Hour,
		AllowedRecipients:   []string{"example.com", "boss@other.org"},
		Accounts:            map[string]string{},
		Hostname:            "gw.test",
		Fallback:            "gateway@example.com",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("options\n got %+v\nwant %+v", got, want)
	}
}

// smtpdFiles is an [smtp] section with an account whose password is in a
// file and STARTTLS with a certificate for 127.0.0.1 from a test CA.
type smtpdFiles struct {
	password, certFile, keyFile string
	ca                          *mailertest.CA
}

func writeSmtpdFiles(t *testing.T) *smtpdFiles {
	t.Helper()
	dir := t.TempDir()
	f := &smtpdFiles{password: filepath.Join(dir, "press1.secret")}
	if err := os.WriteFile(f.password, []byte("b0ard-Pa55\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.ca, err = mailertest.NewCA(); err != nil {
		t.Fatal(err)
	}
	cert, err := f.ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if f.certFile, f.keyFile, err = mailertest.WriteKeyPair(dir, cert); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *smtpdFiles) section() string {
	return fmt.Sprintf(`listen = ["127.0.0.1:0"]
require_auth = true
tls_cert_file = %q
tls_key_file = %q
[[smtp.account]]
username = "press1"
password_file = %q
`, f.certFile, f.keyFile, f.password)
}

// TestSmtpdOptionsServe: the password file and the key pair named in the
// configuration reach a running listener: a client that trusts the test CA
// gets STARTTLS, authenticates with the password from the file and its
// message is queued; a wrong password is refused.
func TestSmtpdOptionsServe(t *testing.T) {
	f := writeSmtpdFiles(t)
	cfg := smtpdConfig(t, f.section())
	opts, err := smtpdOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(cfg.Gateway.SpoolDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtpd.New(opts, sp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	send := func(password string) error {
		c, err := smtp.Dial(l.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: f.ca.Pool()}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
		if err := c.Auth(smtp.PlainAuth("", "press1", password, "127.0.0.1")); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
		if err := c.Mail("plc@example.com"); err != nil {
			return err
		}
		if err := c.Rcpt("ops@example.com"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte("Subject: x\r\n\r\ny\r\n")); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	if err := send("b0ard-Pa55"); err != nil {
		t.Fatalf("with the password from password_file: %v", err)
	}
	if err := send("guess"); err == nil || !strings.Contains(err.Error(), "535") {
		t.Errorf("wrong password: %v, want 535", err)
	}
	if list, err := sp.List(); err != nil || len(list) != 1 {
		t.Errorf("spool: %d messages, %v; want 1", len(list), err)
	}
}

// TestSmtpdOptionsErrors: what can go wrong between validation and start
// (a file changed, a configuration built in code) is reported with the
// configuration key, as the listener reported it before it took options.
func TestSmtpdOptionsErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, cfg *config.Config, f *smtpdFiles)
		want   string
		is     error
	}{
		{"no smtp section", func(t *testing.T, cfg *config.Config, f *smtpdFiles) { cfg.SMTP = nil },
			"smtpd: no [smtp] section in the configuration", nil},
		{"allowed_networks", func(t *testing.T, cfg *config.Config, f *smtpdFiles) {
			cfg.SMTP.AllowedNetworks = []string{"192.168.1.0/33"}
		}, "smtpd: allowed_networks: ", nil},
		{"password file readable by others", func(t *testing.T, cfg *config.Config, f *smtpdFiles) {
			if err := os.Chmod(f.password, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "smtpd: account: " + "%PASSWORD% is readable by group or others", nil},
		{"password file gone", func(t *testing.T, cfg *config.Config, f *smtpdFiles) {
			if err := os.Remove(f.password); err != nil {
				t.Fatal(err)
			}
		}, "smtpd: account: ", fs.ErrNotExist},
		{"empty password", func(t *testing.T, cfg *config.Config, f *smtpdFiles) {
			if err := os.WriteFile(f.password, []byte("\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "smtpd: account: %PASSWORD%: empty password", nil},
		{"tls_cert_file", func(t *testing.T, cfg *config.Config, f *smtpdFiles) {
			if err := os.WriteFile(f.certFile, []byte("not PEM\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "smtpd: tls_cert_file: ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeSmtpdFiles(t)
			cfg := smtpdConfig(t, f.section())
			tt.change(t, cfg, f)
			_, err := smtpdOptions(cfg)
			want := strings.ReplaceAll(tt.want, "%PASSWORD%", f.password)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("smtpdOptions: %v, want %q...", err, want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}
