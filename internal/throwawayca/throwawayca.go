// Package throwawayca makes a certificate authority that lives for one run
// of a program, for TLS on the loopback interface: the servers of
// mailer/mailertest and the local upstream of `plcmail demo`.
//
// It exists so that those servers are reached the way a real provider is,
// with the gateway verifying a chain to the CA named in upstream.ca_file,
// rather than with verification switched off; and so that tests and the
// demo share one generator (mailertest imports testing, which non-test code
// must not). It is never for production: its certificates expire after a
// day, its keys live in memory unless WriteKeyPair is asked to store them,
// and a real gateway talks to a provider whose chain ends at the system
// roots.
package throwawayca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// lifetime is how long certificates are valid; they start an hour in the
// past so that a clock a little behind does not reject them.
const lifetime = 24 * time.Hour

// CA is a certificate authority whose key exists only in this process.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// New generates an ECDSA P-256 CA named commonName, valid for one day.
func New(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// PEM returns the CA certificate in PEM form, for upstream.ca_file.
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool returns a certificate pool holding only this CA, for a client's
// tls.Config.RootCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue returns a server certificate for hosts (DNS names or IP addresses),
// signed by the CA.
func (ca *CA) Issue(hosts ...string) (tls.Certificate, error) {
	return issue(hosts, ca.Cert, ca.Key)
}

// SelfSigned returns a server certificate for hosts that no CA signed, as
// a server has whose clients pin its fingerprint.
func SelfSigned(hosts ...string) (tls.Certificate, error) { return issue(hosts, nil, nil) }

// WriteKeyPair writes cert's chain and key as PEM files cert.pem and
// key.pem (mode 0600) into dir and returns their paths, for servers outside
// the process (aiosmtpd, swaks).
func WriteKeyPair(dir string, cert tls.Certificate) (certFile, keyFile string, err error) {
	var cb bytes.Buffer
	for _, der := range cert.Certificate {
		pem.Encode(&cb, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	kb, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, cb.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	err = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile, err
}

// issue makes a leaf for hosts signed by parent, or self-signed when parent
// is nil. Its common name is the first host (clients check the SANs only).
func issue(hosts []string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "throwawayca leaf"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = hosts[0]
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// serial returns a random 62-bit serial number, so that certificates of two
// runs, whose issuers share a name, do not share issuer and serial too
// (clients may reject a second certificate with the same pair).
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic("throwawayca: no randomness: " + err.Error())
	}
	return n
}
