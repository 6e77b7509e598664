package mailer

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plcmail/plcmail/config"
	"github.com/plcmail/plcmail/mailer/mailertest"
)

var testData = []byte("From: plc@example.com\r\nTo: ops@example.com\r\nSubject: Alarm 17\r\n\r\n.dot at line start\r\nline with bare LF\nend\r\n")

// wireData is testData as it must arrive: SMTP carries lines in CRLF.
var wireData = bytes.ReplaceAll(testData, []byte("bare LF\n"), []byte("bare LF\r\n"))

func sendOne(t *testing.T, cfg *config.Config, dialogue *bytes.Buffer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var w io.Writer // a nil *bytes.Buffer must not become a non-nil io.Writer
	if dialogue != nil {
		w = dialogue
	}
	return SendNow(ctx, cfg, Envelope{From: "plc@example.com", To: []string{"ops@example.com"}}, testData, w)
}

func TestDeliverSecurityAndAuth(t *testing.T) {
	for _, tc := range []struct {
		name     string
		security string
		mechs    []string
		auth     string
		wantMech string
	}{
		{"starttls auto picks PLAIN", mailertest.StartTLS, []string{"CRAM-MD5", "LOGIN", "PLAIN"}, "auto", "PLAIN"},
		{"starttls auto picks LOGIN", mailertest.StartTLS, []string{"CRAM-MD5", "LOGIN"}, "auto", "LOGIN"},
		{"starttls auto CRAM-MD5 only", mailertest.StartTLS, []string{"CRAM-MD5"}, "auto", "CRAM-MD5"},
		{"starttls plain", mailertest.StartTLS, nil, "plain", "PLAIN"},
		{"starttls login", mailertest.StartTLS, nil, "login", "LOGIN"},
		{"starttls cram-md5", mailertest.StartTLS, []string{"CRAM-MD5"}, "cram-md5", "CRAM-MD5"},
		{"starttls xoauth2", mailertest.StartTLS, []string{"XOAUTH2"}, "xoauth2", "XOAUTH2"},
		{"implicit tls", mailertest.TLS, nil, "auto", "PLAIN"},
		{"implicit tls login", mailertest.TLS, nil, "login", "LOGIN"},
		{"none on loopback", mailertest.Plain, nil, "plain", "PLAIN"},
		{"no auth", mailertest.StartTLS, nil, "none", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := mailertest.NewUpstream(t, mailertest.Options{Security: tc.security, AuthMechs: tc.mechs,
				RequireAuth: tc.wantMech != "", AllowInsecureAuth: tc.security == mailertest.Plain})
			cfg := u.GatewayConfig(t)
			cfg.Upstream.Auth = tc.auth
			if tc.auth == "xoauth2" { // the token comes from the password file
				pf := filepath.Join(t.TempDir(), "token")
				os.WriteFile(pf, []byte(cfg.Upstream.Password+"\n"), 0o600)
				cfg.Upstream.Password, cfg.Upstream.PasswordFile = "", pf
			}
			if err := sendOne(t, cfg, nil); err != nil {
				t.Fatal(err)
			}
			m := u.Wait(t, 1, 5*time.Second)[0]
			if !bytes.Equal(m.Data, wireData) {
				t.Errorf("data\n got %q\nwant %q", m.Data, wireData)
			}
			if m.From != "plc@example.com" || !slices.Equal(m.To, []string{"ops@example.com"}) {
				t.Errorf("envelope %q %q", m.From, m.To)
			}
			if m.Mech != tc.wantMech {
				t.Errorf("mechanism %q, want %q", m.Mech, tc.wantMech)
			}
			if m.TLS != (tc.security != mailertest.Plain) {
				t.Errorf("TLS = %v", m.TLS)
			}
		})
	}
}

// TestStartTLSMandatory: an upstream that does not offer STARTTLS (and
// would even take AUTH in clear) gets neither credentials nor mail.
func TestStartTLSMandatory(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{Security: mailertest.Plain, AllowInsecureAuth: true})
	cfg := u.GatewayConfig(t)
	cfg.Upstream.Security = config.SecurityStartTLS
	var dialogue bytes.Buffer
	err := sendOne(t, cfg, &dialogue)
	if !errors.Is(err, ErrNoStartTLS) {
		t.Fatalf("err = %v, want ErrNoStartTLS", err)
	}
	var ce *ConnError
	if !errors.As(err, &ce) {
		t.Errorf("not a ConnError (temporary): %T", err)
	}
	for _, ev := range u.Events() {
		if strings.HasPrefix(ev, "auth") || strings.HasPrefix(ev, "mail") || strings.HasPrefix(ev, "rcpt") {
			t.Errorf("server saw %q", ev)
		}
	}
	tr := u.Transcript()
	for _, ln := range strings.Split(tr, "\n") {
		if strings.HasPrefix(strings.ToUpper(ln), "AUTH") || strings.HasPrefix(strings.ToUpper(ln), "MAIL") {
			t.Errorf("client sent %q in clear", ln)
		}
	}
	if !strings.Contains(tr, "250-AUTH PLAIN") {
		t.Errorf("test is void: server did not offer AUTH in clear:\n%s", tr)
	}
	for _, secret := range secretForms(u.Config().Username, u.Config().Password) {
		if strings.Contains(tr, secret) {
			t.Errorf("credential form %q on the wire:\n%s", secret, tr)
		}
	}
	if len(u.Messages()) != 0 {
		t.Error("message delivered")
	}
	if !strings.Contains(dialogue.String(), "does not offer STARTTLS") {
		t.Errorf("dialogue does not say why:\n%s", dialogue.String())
	}
}

func secretForms(user, pass string) []string {
	return []string{pass,
		base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass)),
		base64.StdEncoding.EncodeToString([]byte(pass)),
	}
}

func TestCertificateVerification(t *testing.T) {
	t.Run("other CA", func(t *testing.T) {
		u := mailertest.NewUpstream(t, mailertest.Options{})
		other := mailertest.NewUpstream(t, mailertest.Options{}) // a different test CA
		cfg := u.GatewayConfig(t)
		cfg.Upstream.CAFile = other.CAFile
		err := sendOne(t, cfg, nil)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
		assertNothingSent(t, u)
	})
	t.Run("no ca_file", func(t *testing.T) {
		u := mailertest.NewUpstream(t, mailertest.Options{Security: mailertest.TLS})
		cfg := u.GatewayConfig(t)
		cfg.Upstream.CAFile = ""
		if err := sendOne(t, cfg, nil); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
		assertNothingSent(t, u)
	})
	t.Run("wrong host name", func(t *testing.T) {
		u := mailertest.NewUpstream(t, mailertest.Options{CertHosts: []string{"mail.example.net"}})
		cfg := u.GatewayConfig(t)
		err := sendOne(t, cfg, nil)
		if err == nil || !strings.Contains(err.Error(), "127.0.0.1") {
			t.Fatalf("err = %v, want a name mismatch", err)
		}
		assertNothingSent(t, u)
	})
}

func assertNothingSent(t *testing.T, u *mailertest.Upstream) {
	t.Helper()
	for _, ev := range u.Events() {
		if ev != "connect" {
			t.Errorf("server saw %q", ev)
		}
	}
	if tr := u.Transcript(); strings.Contains(tr, u.Config().Password) {
		t.Error("password on the wire")
	}
}

func TestFingerprintPinning(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{SelfSigned: true, CertHosts: []string{"self-signed.example"}})
	cfg := u.GatewayConfig(t) // pins u.Fingerprint, no ca_file
	if err := sendOne(t, cfg, nil); err != nil {
		t.Fatalf("matching pin refused: %v", err)
	}
	u.Wait(t, 1, 5*time.Second)

	cfg.Upstream.Fingerprints = []string{strings.Repeat("ab", 32)}
	err := sendOne(t, cfg, nil)
	if !errors.Is(err, ErrPinMismatch) {
		t.Fatalf("mismatched pin: %v, want ErrPinMismatch", err)
	}
	// Uppercase with colons, as openssl prints it, matches too.
	var colon []string
	for i := 0; i < len(u.Fingerprint); i += 2 {
		colon = append(colon, strings.ToUpper(u.Fingerprint[i:i+2]))
	}
	cfg.Upstream.Fingerprints = []string{strings.Repeat("00", 32), "sha256:" + strings.Join(colon, ":")}
	if err := sendOne(t, cfg, nil); err != nil {
		t.Fatalf("second pin refused: %v", err)
	}
	// Without the pin, the self-signed certificate is refused.
	cfg.Upstream.Fingerprints = nil
	if err := sendOne(t, cfg, nil); err == nil {
		t.Fatal("self-signed certificate accepted without a pin")
	}
	if n := len(u.Messages()); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

func TestDialogueMasksSecrets(t *testing.T) {
	for _, tc := range []struct{ mech, security string }{
		{"plain", mailertest.StartTLS}, {"login", mailertest.StartTLS}, {"cram-md5", mailertest.StartTLS},
		{"xoauth2", mailertest.StartTLS}, {"plain", mailertest.TLS},
	} {
		t.Run(tc.mech+"/"+tc.security, func(t *testing.T) {
			u := mailertest.NewUpstream(t, mailertest.Options{Security: tc.security,
				AuthMechs: []string{"PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"}, RequireAuth: true})
			cfg := u.GatewayConfig(t)
			cfg.Upstream.Auth = tc.mech
			var d bytes.Buffer
			if err := sendOne(t, cfg, &d); err != nil {
				t.Fatal(err)
			}
			out := d.String()
			t.Logf("dialogue:\n%s", out)
			want := []string{"S: 220 ", "C: EHLO gw.test", "* TLS established: TLS 1.3", "C: MAIL FROM:<plc@example.com>",
				"C: RCPT TO:<ops@example.com>", "C: DATA", "S: 235", "C: QUIT", "* AUTH " + strings.ToUpper(tc.mech),
				"C: AUTH " + strings.ToUpper(tc.mech) + " ****"}
			if tc.security == mailertest.StartTLS {
				want = append(want, "C: STARTTLS")
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("dialogue lacks %q", w)
				}
			}
			user, pass := cfg.Upstream.Username, cfg.Upstream.Password
			secrets := append(secretForms(user, pass),
				base64.StdEncoding.EncodeToString([]byte("user="+user+"\x01auth=Bearer "+pass+"\x01\x01")))
			if tc.mech == "login" {
				secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(user)))
			}
			for _, secret := range secrets {
				if strings.Contains(out, secret) {
					t.Errorf("dialogue shows secret %q", secret)
				}
			}
		})
	}
}

func TestAuthFailureIsTemporary(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{RequireAuth: true})
	cfg := u.GatewayConfig(t)
	cfg.Upstream.Password = "wrong"
	err := sendOne(t, cfg, nil)
	var ce *ConnError
	if !errors.As(err, &ce) || ce.Stage != "auth" || ReplyCode(err) != 535 {
		t.Fatalf("err = %#v (%v), want auth ConnError with 535", err, err)
	}
}

func TestTestMessageIsValid(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{})
	cfg := u.GatewayConfig(t)
	msg := TestMessage(cfg, "ops@example.com", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	for _, h := range []string{"From: ", "To: <ops@example.com>", "Date: Sun, 01 Mar 2026 12:00:00 +0000", "Message-ID: <", "Subject: "} {
		if !bytes.Contains(msg, []byte(h)) {
			t.Errorf("test message lacks %q", h)
		}
	}
	if bytes.Contains(bytes.ReplaceAll(msg, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("bare LF in test message")
	}
	if err := SendNow(context.Background(), cfg, Envelope{From: cfg.Upstream.From, To: []string{"ops@example.com"}}, msg, nil); err != nil {
		t.Fatal(err)
	}
}

// TestSilentUpstreamTimesOut: a server that accepts TCP and never greets
// costs one upstream.timeout and is a temporary failure.
func TestSilentUpstreamTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	u := mailertest.NewUpstream(t, mailertest.Options{})
	cfg := u.GatewayConfig(t)
	cfg.Upstream.Port = ln.Addr().(*net.TCPAddr).Port
	cfg.Upstream.Timeout = config.Duration(300 * time.Millisecond)
	start := time.Now()
	err = sendOne(t, cfg, nil)
	var ce *ConnError
	if !errors.As(err, &ce) || ce.Stage != "greeting" {
		t.Fatalf("err = %v, want a greeting ConnError", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestNullSenderAndUTF8(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{})
	cfg := u.GatewayConfig(t)
	data := []byte("Subject: =?utf-8?q?St=C3=B6rung?=\r\n\r\nK\xc3\xbchlung ausgefallen\r\n")
	if err := SendNow(context.Background(), cfg, Envelope{From: "", To: []string{"ops@example.com"}}, data, nil); err != nil {
		t.Fatal(err)
	}
	m := u.Wait(t, 1, 5*time.Second)[0]
	if m.From != "" || !bytes.Equal(m.Data, data) {
		t.Errorf("got from %q data %q", m.From, m.Data)
	}
}
