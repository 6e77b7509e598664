package throwawayca_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"testing"

	"github.com/plcmail/plcmail/internal/throwawayca"
)

// handshake serves cert on 127.0.0.1 and returns the error of a client
// that verifies the server as serverName against roots.
func handshake(t *testing.T, cert tls.Certificate, roots *x509.CertPool, serverName string) error {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.(*tls.Conn).Handshake() // the client's verdict is what the test checks
		io.Copy(io.Discard, c)
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: roots, ServerName: serverName})
	if err != nil {
		return err
	}
	return c.Close()
}

func TestIssuedCertificateVerifiesOverLoopback(t *testing.T) {
	ca, err := throwawayca.New("plcmail test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, serverName string
		roots            *x509.CertPool
		want             any // nil, or a pointer to the error type expected
	}{
		{"ip", "127.0.0.1", ca.Pool(), nil},
		{"dns", "localhost", ca.Pool(), nil},
		{"other name", "mail.example.com", ca.Pool(), new(x509.HostnameError)},
		{"without the CA", "127.0.0.1", x509.NewCertPool(), new(x509.UnknownAuthorityError)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := handshake(t, leaf, tc.roots, tc.serverName)
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("handshake: %v", err)
			case tc.want != nil && (err == nil || !errors.As(err, tc.want)):
				t.Errorf("handshake error = %v, want %T", err, tc.want)
			}
		})
	}
}

func TestSelfSignedIsNotSignedByACA(t *testing.T) {
	ca, err := throwawayca.New("plcmail test CA")
	if err != nil {
		t.Fatal(err)
	}
	self, err := throwawayca.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	if err := handshake(t, self, ca.Pool(), "127.0.0.1"); !errors.As(err, &unknown) {
		t.Errorf("self-signed against the CA: %v, want an unknown authority", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(self.Leaf)
	if err := handshake(t, self, pool, "127.0.0.1"); err != nil {
		t.Errorf("self-signed against itself: %v", err)
	}
}

func TestWriteKeyPairLoadsAndKeepsKeyPrivate(t *testing.T) {
	ca, err := throwawayca.New("plcmail test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := throwawayca.WriteKeyPair(t.TempDir(), leaf)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(loaded.Certificate[0]) != sha256.Sum256(leaf.Certificate[0]) {
		t.Error("cert.pem holds another certificate")
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if err := handshake(t, loaded, ca.Pool(), "127.0.0.1"); err != nil {
		t.Errorf("handshake with the written pair: %v", err)
	}
}

// TestIssueSplitsIPsFromNames: clients match an IP only against IP SANs,
// so "::1" and "127.0.0.1" must not land among the DNS names.
func TestIssueSplitsIPsFromNames(t *testing.T) {
	ca, err := throwawayca.New("x")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("::1", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.Leaf.IPAddresses) != 2 || !leaf.Leaf.IPAddresses[0].Equal(net.IPv6loopback) || len(leaf.Leaf.DNSNames) != 1 || leaf.Leaf.DNSNames[0] != "localhost" {
		t.Errorf("IPs %v, names %v", leaf.Leaf.IPAddresses, leaf.Leaf.DNSNames)
	}
}
