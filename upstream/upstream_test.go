package upstream_test

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
	"github.com/plcmail/plcmail/internal/mailertest"
	"github.com/plcmail/plcmail/message"
	"github.com/plcmail/plcmail/message/messagetest"
	"github.com/plcmail/plcmail/upstream"
)

var testData = []byte("From: plc@example.com\r\nTo: ops@example.com\r\nSubject: Alarm 17\r\n\r\n.dot at line start\r\nline with bare LF\nend\r\n")

// wireData is testData as it must arrive: SMTP carries lines in CRLF.
var wireData = bytes.ReplaceAll(testData, []byte("bare LF\n"), []byte("bare LF\r\n"))

func sendOne(t *testing.T, opts upstream.Options, dialogue *bytes.Buffer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var w io.Writer // a nil *bytes.Buffer must not become a non-nil io.Writer
	if dialogue != nil {
		w = dialogue
	}
	return upstream.SendNow(ctx, opts, "plc@example.com", []string{"ops@example.com"}, testData, w)
}

// secret returns an Options.Secret that always gives s.
func secret(s string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return s, nil }
}

// pins parses fingerprints as upstream.tls_fingerprints are parsed.
func pins(t *testing.T, fingerprints ...string) [][32]byte {
	t.Helper()
	var out [][32]byte
	for _, s := range fingerprints {
		fp, err := upstream.ParseFingerprint(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fp)
	}
	return out
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
			opts := u.Options()
			opts.Auth = tc.auth
			if tc.auth == "xoauth2" { // the token comes from the password file
				pf := filepath.Join(t.TempDir(), "token")
				os.WriteFile(pf, []byte(u.Config().Password+"\n"), 0o600)
				opts.Secret = func(context.Context) (string, error) { return config.ReadSecret(pf) }
			}
			if err := sendOne(t, opts, nil); err != nil {
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
	opts := u.Options()
	opts.Security = upstream.StartTLS
	var dialogue bytes.Buffer
	err := sendOne(t, opts, &dialogue)
	if !errors.Is(err, upstream.ErrNoStartTLS) {
		t.Fatalf("err = %v, want ErrNoStartTLS", err)
	}
	var ce *upstream.ConnError
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
		opts := u.Options()
		opts.CAFile = other.CAFile
		err := sendOne(t, opts, nil)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
		assertNothingSent(t, u)
	})
	t.Run("no ca_file", func(t *testing.T) {
		u := mailertest.NewUpstream(t, mailertest.Options{Security: mailertest.TLS})
		opts := u.Options()
		opts.CAFile = ""
		if err := sendOne(t, opts, nil); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("err = %v, want a certificate error", err)
		}
		assertNothingSent(t, u)
	})
	t.Run("wrong host name", func(t *testing.T) {
		u := mailertest.NewUpstream(t, mailertest.Options{CertHosts: []string{"mail.example.net"}})
		opts := u.Options()
		err := sendOne(t, opts, nil)
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
	opts := u.Options() // pins u.Fingerprint, no ca_file
	if err := sendOne(t, opts, nil); err != nil {
		t.Fatalf("matching pin refused: %v", err)
	}
	u.Wait(t, 1, 5*time.Second)

	opts.Pins = pins(t, strings.Repeat("ab", 32))
	err := sendOne(t, opts, nil)
	if !errors.Is(err, upstream.ErrPinMismatch) {
		t.Fatalf("mismatched pin: %v, want ErrPinMismatch", err)
	}
	// Uppercase with colons, as openssl prints it, matches too.
	var colon []string
	for i := 0; i < len(u.Fingerprint); i += 2 {
		colon = append(colon, strings.ToUpper(u.Fingerprint[i:i+2]))
	}
	opts.Pins = pins(t, strings.Repeat("00", 32), "sha256:"+strings.Join(colon, ":"))
	if err := sendOne(t, opts, nil); err != nil {
		t.Fatalf("second pin refused: %v", err)
	}
	// Without the pin, the self-signed certificate is refused.
	opts.Pins = nil
	if err := sendOne(t, opts, nil); err == nil {
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
			opts := u.Options()
			opts.Auth = tc.mech
			var d bytes.Buffer
			if err := sendOne(t, opts, &d); err != nil {
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
			user, pass := u.Config().Username, u.Config().Password
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
	opts := u.Options()
	opts.Secret = secret("wrong")
	err := sendOne(t, opts, nil)
	var ce *upstream.ConnError
	if !errors.As(err, &ce) || ce.Stage != "auth" || upstream.ReplyCode(err) != 535 {
		t.Fatalf("err = %#v (%v), want auth ConnError with 535", err, err)
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
	opts := u.Options()
	opts.Port = ln.Addr().(*net.TCPAddr).Port
	opts.Timeout = 300 * time.Millisecond
	start := time.Now()
	err = sendOne(t, opts, nil)
	var ce *upstream.ConnError
	if !errors.As(err, &ce) || ce.Stage != "greeting" {
		t.Fatalf("err = %v, want a greeting ConnError", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestNullSenderAndUTF8(t *testing.T) {
	u := mailertest.NewUpstream(t, mailertest.Options{})
	opts := u.Options()
	data := []byte("Subject: =?utf-8?q?St=C3=B6rung?=\r\n\r\nK\xc3\xbchlung ausgefallen\r\n")
	if err := upstream.SendNow(context.Background(), opts, "", []string{"ops@example.com"}, data, nil); err != nil {
		t.Fatal(err)
	}
	m := u.Wait(t, 1, 5*time.Second)[0]
	if m.From != "" || !bytes.Equal(m.Data, data) {
		t.Errorf("got from %q data %q", m.From, m.Data)
	}
}

// TestDeliver8BitToUpstreamWithout8BitMIME: the upstream (go-smtp with
// 8BITMIME filtered out of its EHLO reply) gets quoted-printable without a
// single 8-bit byte and no BODY parameter; decoding gives the original text.
func TestDeliver8BitToUpstreamWithout8BitMIME(t *testing.T) {
	repaired8bit := messagetest.Repaired8Bit()
	u := mailertest.NewUpstream(t, mailertest.Options{Security: mailertest.Plain, NoAuth: true, No8BitMIME: true})
	opts := u.Options()
	data := bytes.Clone(repaired8bit)
	var dialogue bytes.Buffer
	if err := upstream.SendNow(context.Background(), opts, "plc@example.com", []string{"ops@example.com"}, data, &dialogue); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, repaired8bit) {
		t.Error("the caller's bytes (the spool copy) were modified")
	}
	m := u.Wait(t, 1, 5*time.Second)[0]
	t.Logf("received:\n%s", m.Data)
	if m.Body != "" {
		t.Errorf("MAIL carried BODY=%s to a server without 8BITMIME", m.Body)
	}
	if message.Has8Bit(m.Data) {
		t.Errorf("8-bit bytes reached a server without 8BITMIME")
	}
	hdr, body := messagetest.HeaderAndBody(t, m.Data)
	wantHdr := strings.Replace(string(repaired8bit[:bytes.Index(repaired8bit, []byte("\r\n\r\n"))+2]),
		"Content-Transfer-Encoding: 8bit", "Content-Transfer-Encoding: quoted-printable", 1)
	if hdr != wantHdr {
		t.Errorf("header\n got %q\nwant %q", hdr, wantHdr)
	}
	messagetest.CheckQPLines(t, body)
	_, origBody := messagetest.HeaderAndBody(t, repaired8bit)
	if got := messagetest.DecodeQP(t, body); !bytes.Equal(got, origBody) {
		t.Errorf("decoded body\n got %q\nwant %q", got, origBody)
	}
	if !strings.Contains(dialogue.String(), "* upstream does not announce 8BITMIME: 1 part(s) re-encoded quoted-printable") {
		t.Errorf("dialogue does not say what was converted:\n%s", dialogue.String())
	}
	// The filter is what the test relies on: the reply really lacked it.
	if strings.Contains(dialogue.String(), "8BITMIME\n") || !strings.Contains(dialogue.String(), "S: 250-PIPELINING") {
		t.Errorf("EHLO reply not as intended:\n%s", dialogue.String())
	}

	// A 7-bit message goes to the same server byte for byte.
	if err := sendOne(t, opts, nil); err != nil {
		t.Fatal(err)
	}
	if m := u.Wait(t, 2, 5*time.Second)[1]; !bytes.Equal(m.Data, wireData) || m.Body != "" {
		t.Errorf("7-bit message changed: BODY=%q\n%q", m.Body, m.Data)
	}
}

// TestDeliver8BitWith8BitMIME: an upstream that announces 8BITMIME gets
// the stored bytes unchanged, declared with BODY=8BITMIME on MAIL.
func TestDeliver8BitWith8BitMIME(t *testing.T) {
	repaired8bit := messagetest.Repaired8Bit()
	u := mailertest.NewUpstream(t, mailertest.Options{})
	opts := u.Options()
	var dialogue bytes.Buffer
	if err := upstream.SendNow(context.Background(), opts, "plc@example.com", []string{"ops@example.com"}, repaired8bit, &dialogue); err != nil {
		t.Fatal(err)
	}
	m := u.Wait(t, 1, 5*time.Second)[0]
	if m.Body != "8BITMIME" {
		t.Errorf("MAIL BODY parameter %q, want 8BITMIME", m.Body)
	}
	if !bytes.Equal(m.Data, repaired8bit) {
		t.Errorf("data\n got %q\nwant %q", m.Data, repaired8bit)
	}
	if d := dialogue.String(); !strings.Contains(d, "C: MAIL FROM:<plc@example.com> BODY=8BITMIME") || strings.Contains(d, "does not announce") {
		t.Errorf("dialogue:\n%s", d)
	}
}

// TestSMTPUTF8: non-ASCII addresses go out with SMTPUTF8 where the
// upstream announces it; where it does not, they are refused here with a
// permanent 553 5.6.7 (RFC 6531 §3.2) and never reach the server, while
// ASCII recipients of the same message are delivered.
func TestSMTPUTF8(t *testing.T) {
	const utf8Rcpt = "jürgen@example.com"
	msg := []byte("Subject: x\r\n\r\nbody\r\n")
	t.Run("announced", func(t *testing.T) {
		u := mailertest.NewUpstream(t, mailertest.Options{SMTPUTF8: true})
		opts := u.Options()
		if err := upstream.SendNow(context.Background(), opts, "plc@example.com", []string{utf8Rcpt}, msg, nil); err != nil {
			t.Fatal(err)
		}
		if m := u.Wait(t, 1, 5*time.Second)[0]; !m.UTF8 || !slices.Equal(m.To, []string{utf8Rcpt}) {
			t.Errorf("got SMTPUTF8=%v to %q", m.UTF8, m.To)
		}
		// An ASCII envelope does not ask for SMTPUTF8.
		if err := sendOne(t, opts, nil); err != nil {
			t.Fatal(err)
		}
		if m := u.Wait(t, 2, 5*time.Second)[1]; m.UTF8 {
			t.Error("SMTPUTF8 on an ASCII envelope and header")
		}
		// A UTF-8 header field asks for it too (RFC 6531 §3.4).
		hdr8 := []byte("From: Jürgen <plc@example.com>\r\nSubject: x\r\n\r\nbody\r\n")
		if err := upstream.SendNow(context.Background(), opts, "plc@example.com", []string{"ops@example.com"}, hdr8, nil); err != nil {
			t.Fatal(err)
		}
		if m := u.Wait(t, 3, 5*time.Second)[2]; !m.UTF8 || !bytes.Equal(m.Data, hdr8) {
			t.Errorf("UTF-8 header: SMTPUTF8=%v, data %q", m.UTF8, m.Data)
		}
	})
	t.Run("not announced", func(t *testing.T) {
		u := mailertest.NewUpstream(t, mailertest.Options{})
		opts := u.Options()
		var dialogue bytes.Buffer
		err := upstream.SendNow(context.Background(), opts, "plc@example.com", []string{utf8Rcpt, "ops@example.com"}, msg, &dialogue)
		if err == nil || !strings.Contains(err.Error(), "accepted for 1 of 2") || !strings.Contains(err.Error(), "5.6.7") {
			t.Errorf("err = %v", err)
		}
		if m := u.Wait(t, 1, 5*time.Second)[0]; !slices.Equal(m.To, []string{"ops@example.com"}) || m.UTF8 {
			t.Errorf("delivered to %q, SMTPUTF8=%v", m.To, m.UTF8)
		}
		if !strings.Contains(dialogue.String(), "* RCPT <"+utf8Rcpt+">: 553 5.6.7") {
			t.Errorf("dialogue does not say why:\n%s", dialogue.String())
		}

		err = upstream.SendNow(context.Background(), opts, utf8Rcpt, []string{"ops@example.com"}, msg, nil)
		var se *upstream.SMTPError
		if !errors.As(err, &se) || se.Code != 553 || se.Command != "MAIL" || se.Temporary() {
			t.Errorf("non-ASCII sender: err = %v, want a permanent MAIL 553", err)
		}
		for _, ev := range u.Events() {
			if strings.Contains(ev, "ü") {
				t.Errorf("server saw %q", ev)
			}
		}
	})
}
