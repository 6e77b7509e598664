package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSMTPDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte(validBase+"\n[smtp]\nlisten = [\"192.168.1.1:25\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.SMTP
	if s.MaxMessageBytes != 1<<20 || s.MaxRecipients != 50 || s.MaxConnections != 100 || s.MaxConnectionsPerIP != 10 ||
		s.CommandTimeout.D() != time.Minute || s.DataTimeout.D() != 5*time.Minute || s.MaxLineLength != 2000 ||
		s.AuthMaxFailures != 5 || s.AuthFailureWindow.D() != 10*time.Minute || s.AuthLockout.D() != 15*time.Minute {
		t.Errorf("defaults: %+v", s)
	}
	nets, err := s.Networks()
	if err != nil || len(nets) != 2 || nets[0].String() != "127.0.0.0/8" || nets[1].String() != "::1/128" {
		t.Errorf("default networks %v %v: want loopback only", nets, err)
	}
	if fmt.Sprint(s) != fmt.Sprint(DefaultSMTP("192.168.1.1:25")) {
		t.Errorf("DefaultSMTP differs from the parsed defaults:\n%+v\n%+v", s, DefaultSMTP("192.168.1.1:25"))
	}

	c, err = Parse("t.toml", []byte(validBase+"\n[smtp]\nlisten = [\":25\"]\nmax_connections = 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.MaxConnectionsPerIP != 4 {
		t.Errorf("per-IP default %d, want clamped to max_connections 4", c.SMTP.MaxConnectionsPerIP)
	}
}

func TestSMTPNetworks(t *testing.T) {
	s := &SMTP{AllowedNetworks: []string{"192.168.1.0/24", "10.1.2.3", "::ffff:172.16.0.0/108", "fd00::/8", "192.168.2.7/16"}}
	nets, err := s.Networks()
	if err != nil {
		t.Fatal(err)
	}
	want := "[192.168.1.0/24 10.1.2.3/32 172.16.0.0/12 fd00::/8 192.168.0.0/16]"
	if fmt.Sprint(nets) != want {
		t.Errorf("got %v, want %v", nets, want)
	}
}

func TestSMTPErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.secret")
	os.WriteFile(open, []byte("pw\n"), 0o644)
	good := filepath.Join(dir, "good.secret")
	os.WriteFile(good, []byte("pw\n"), 0o600)
	cert := filepath.Join(dir, "cert.pem")
	os.WriteFile(cert, []byte("not a certificate"), 0o644)

	base := validBase + "\n[smtp]\n" // [smtp] is on line 13
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"listen missing", "allowed_networks = [\"192.168.1.0/24\"]\n", ":13: smtp.listen: required"},
		{"listen without port", "listen = [\"192.168.1.1\"]\n", ":14: smtp.listen[0]: \"192.168.1.1\" is not host:port"},
		{"listen on a name", "listen = [\"gateway.lan:25\"]\n", ":14: smtp.listen[0]: \"gateway.lan:25\": listen on an IP address"},
		{"bad network", "listen = [\":25\"]\nallowed_networks = [\"192.168.1.0/33\"]\n", ":15: smtp.allowed_networks: \"192.168.1.0/33\" is not a network"},
		{"open relay", "listen = [\":25\"]\nallowed_networks = [\"192.168.1.0/24\", \"0.0.0.0/0\"]\n", ":15: smtp.allowed_networks[1]: 0.0.0.0/0 admits every address"},
		{"open relay v6", "listen = [\":25\"]\nallowed_networks = [\"::/0\"]\n", "smtp.allowed_networks[0]: ::/0 admits every address"},
		{"tiny size", "listen = [\":25\"]\nmax_message_bytes = 10\n", ":15: smtp.max_message_bytes: must be at least 1024"},
		{"per-IP over total", "listen = [\":25\"]\nmax_connections = 5\nmax_connections_per_ip = 6\n", ":16: smtp.max_connections_per_ip: must not exceed"},
		{"bad timeout", "listen = [\":25\"]\ncommand_timeout = \"10ms\"\n", ":15: smtp.command_timeout: must be at least 1s"},
		{"short lines", "listen = [\":25\"]\nmax_line_length = 80\n", ":15: smtp.max_line_length: must be at least 1000"},
		{"no AUTH failures allowed", "listen = [\":25\"]\nauth_max_failures = -1\n", ":15: smtp.auth_max_failures: must be at least 1"},
		{"short AUTH window", "listen = [\":25\"]\nauth_failure_window = \"10ms\"\n", ":15: smtp.auth_failure_window: must be at least 1s"},
		{"bad lockout", "listen = [\":25\"]\nauth_lockout = \"forever\"\n", ":15: smtp.auth_lockout"},
		{"bad recipient pattern", "listen = [\":25\"]\nallowed_recipients = [\"example.com\", \"ops@\"]\n", ":15: smtp.allowed_recipients[1]: \"ops@\" is neither"},
		{"require_auth without accounts", "listen = [\":25\"]\nrequire_auth = true\n", ":15: smtp.require_auth: needs at least one [[smtp.account]]"},
		{"readable password file", fmt.Sprintf("listen = [\":25\"]\n[[smtp.account]]\nusername = \"press1\"\npassword_file = %q\n", open),
			":17: smtp.account[0].password_file: " + open + " is readable by group or others"},
		{"account without password", "listen = [\":25\"]\n[[smtp.account]]\nusername = \"press1\"\n", ":15: smtp.account[0].password_file: required"},
		{"duplicate account", fmt.Sprintf("listen = [\":25\"]\n[[smtp.account]]\nusername = \"a\"\npassword_file = %q\n[[smtp.account]]\nusername = \"a\"\npassword_file = %q\n", good, good),
			":19: smtp.account[1].username: duplicate account \"a\""},
		{"key without cert", "listen = [\":25\"]\ntls_key_file = \"/x\"\n", "smtp.tls_cert_file: required with tls_key_file"},
		{"bad cert", fmt.Sprintf("listen = [\":25\"]\ntls_cert_file = %q\ntls_key_file = %q\n", cert, good), ":15: smtp.tls_cert_file: tls: "},
		{"unknown key", "listen = [\":25\"]\nmax_size = 5\n", ":15: smtp.max_size: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(base+tt.src))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got\n%v\nwant a line containing %q", err, tt.want)
			}
		})
	}
}
