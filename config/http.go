package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// HTTP configures the optional monitoring listener ([http]): Prometheus
// metrics on /metrics and a read-only status page on /.
//
// The section absent means no listener, like [smtp]: an upgrade never opens
// a port nobody asked for. Present without listen, it binds loopback only
// (DefaultHTTPListen), as node_exporter users behind a reverse proxy and
// postfix_exporter users scraping from the same host expect; scraping from
// another host takes an explicit listen address, ideally with basic auth.
type HTTP struct {
	Listen string `toml:"listen"` // host:port; default DefaultHTTPListen
	// Username and PasswordFile enable HTTP basic auth on every path;
	// Prometheus sends them with basic_auth in the scrape config.
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"` // first line is the password; mode 0600
}

// DefaultHTTPListen is where [http] listens when it sets no listen: loopback
// only. The Prometheus exporter port range is fully allocated; 9469 is
// unlikely to meet another exporter on a gateway box.
const DefaultHTTPListen = "127.0.0.1:9469"

func (h *HTTP) applyDefaults() {
	if h.Listen == "" {
		h.Listen = DefaultHTTPListen
	}
}

func (h *HTTP) validate(v *validator) {
	host, port, err := net.SplitHostPort(h.Listen)
	if err != nil {
		v.errf("http.listen", "%q is not host:port (e.g. %q)", h.Listen, DefaultHTTPListen)
	} else {
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			v.errf("http.listen", "%q: port must be 0..65535", h.Listen)
		}
		if host != "" && net.ParseIP(host) == nil && !strings.EqualFold(host, "localhost") {
			v.errf("http.listen", "%q: listen on an IP address (or \"localhost\"), not a name resolved at start", h.Listen)
		}
	}
	switch {
	case h.Username == "" && h.PasswordFile == "":
	case h.Username == "":
		v.errf("http.username", "required with password_file")
	case strings.ContainsAny(h.Username, ":\r\n"):
		v.errf("http.username", "must not contain ':' or line breaks")
	case h.PasswordFile == "":
		v.errf("http.password_file", "required with username: a file holding the password (mode 0600)")
	default:
		if pw, err := ReadSecret(h.PasswordFile); err != nil {
			v.errf("http.password_file", "%v", err)
		} else if pw == "" {
			v.errf("http.password_file", "%s is empty: put the password on its first line", h.PasswordFile)
		}
	}
}

// IsLoopback reports whether the listener is reachable from this host only.
func (h *HTTP) IsLoopback() bool {
	host, _, err := net.SplitHostPort(h.Listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// HTTPPassword returns the basic-auth password, read again at each call
// so that a changed file takes effect without a restart.
func (h *HTTP) HTTPPassword() (string, error) {
	if h.PasswordFile == "" {
		return "", fmt.Errorf("http.password_file not set")
	}
	return ReadSecret(h.PasswordFile)
}
