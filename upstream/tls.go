package upstream

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// tlsConfig builds the client TLS configuration: system roots plus the CA
// file, or, when pins are set, the pins alone.
func (o *Options) tlsConfig() (*tls.Config, error) {
	conf := &tls.Config{ServerName: strings.Trim(o.Host, "[]"), MinVersion: tls.VersionTLS12}
	if len(o.Pins) > 0 {
		pins := o.Pins
		// Pinning replaces chain and name verification: the pin is a
		// stronger statement than both, and it is how a self-signed
		// provider certificate is trusted without turning checks off.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrPinMismatch
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			for _, p := range pins {
				if subtle.ConstantTimeCompare(got[:], p[:]) == 1 {
					return nil
				}
			}
			return fmt.Errorf("%w (leaf is sha256:%x)", ErrPinMismatch, got)
		}
		return conf, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream.ca_file: %s holds no PEM certificate", o.CAFile)
		}
	}
	conf.RootCAs = pool
	return conf, nil
}

// IsLoopbackHost reports whether host is a loopback address or "localhost".
// No DNS lookup is made: a name that merely resolves to 127.0.0.1 today is not
// trusted with cleartext credentials.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ParseFingerprint parses a SHA-256 certificate fingerprint written as 64 hex
// digits, optionally with colons and an optional "sha256:" prefix, as printed
// by `openssl x509 -fingerprint -sha256`.
func ParseFingerprint(s string) ([32]byte, error) {
	var fp [32]byte
	h := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(s, "sha256:"), "SHA256:"))
	h = strings.ReplaceAll(h, ":", "")
	if len(h) != 64 {
		return fp, fmt.Errorf("fingerprint %q: want 64 hex digits of a SHA-256 hash", s)
	}
	for i := 0; i < 32; i++ {
		b, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return fp, fmt.Errorf("fingerprint %q: %v", s, err)
		}
		fp[i] = byte(b)
	}
	return fp, nil
}
