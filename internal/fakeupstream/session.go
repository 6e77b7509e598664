package fakeupstream

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

type backend struct{ s *Server }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.mu.Lock()
	n := b.s.conns
	b.s.mu.Unlock()
	return &session{s: b.s, c: c, conn: n}, nil
}

type session struct {
	s    *Server
	c    *smtp.Conn
	conn int
	user string
	mech string
	from string
	body string
	utf8 bool
	to   []string
}

var _ smtp.AuthSession = (*session)(nil)

func (s *session) AuthMechanisms() []string {
	if s.s.opts.NoAuth {
		return nil
	}
	return s.s.opts.AuthMechs
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	s.s.event("auth %s", mech)
	o := s.s.opts
	ok := func(user, pass string) error {
		if user != o.Username || pass != o.Password {
			s.s.event("auth-fail %s", user)
			return smtp.ErrAuthFailed
		}
		s.user, s.mech = user, mech
		s.s.event("auth-ok %s", user)
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return ok(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{check: ok}, nil
	case "CRAM-MD5":
		return &cramServer{user: o.Username, secret: o.Password, domain: o.Domain, ok: ok}, nil
	case "XOAUTH2":
		check := ok
		if o.TokenValid != nil {
			check = func(user, token string) error {
				if user != o.Username || !o.TokenValid(user, token) {
					s.s.event("auth-fail %s", user)
					return smtp.ErrAuthFailed
				}
				s.user, s.mech = user, mech
				s.s.event("auth-ok %s", user)
				return nil
			}
		}
		return &xoauth2Server{check: check, challenge: o.XOAuth2ErrorChallenge}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.s.event("mail %s", from)
	if _, isTLS := s.c.TLSConnectionState(); s.s.opts.RequireTLS && !isTLS {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	if s.s.opts.RequireAuth && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.from = from
	if opts != nil {
		s.body, s.utf8 = string(opts.Body), opts.UTF8
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.s.event("rcpt %s", to)
	s.s.mu.Lock()
	fn := s.s.rcptFn
	s.s.mu.Unlock()
	if fn != nil {
		if err := fn(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.s.event("data")
	// The state is asked for here, not at the session's start: STARTTLS
	// comes after the session began.
	state, isTLS := s.c.TLSConnectionState()
	m := Received{From: s.from, To: append([]string(nil), s.to...), Body: s.body, UTF8: s.utf8, Data: b,
		User: s.user, Mech: s.mech, TLS: isTLS, Conn: s.conn}
	if isTLS {
		m.TLSVersion = state.Version
	}
	s.s.mu.Lock()
	fn := s.s.dataFn
	s.s.mu.Unlock()
	if fn != nil {
		if err := fn(m); err != nil {
			return err
		}
	}
	s.s.mu.Lock()
	s.s.msgs = append(s.s.msgs, m)
	close(s.s.changed)
	s.s.changed = make(chan struct{})
	s.s.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.from, s.body, s.utf8, s.to = "", "", false, nil
	s.s.event("reset")
}

func (s *session) Logout() error { return nil }

// loginServer is the server side of the LOGIN mechanism, which go-sasl only
// has as a client.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if resp != nil { // initial response carries the user name
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

type cramServer struct {
	user, secret, domain string
	ok                   func(user, pass string) error
	challenge            []byte
}

func (c *cramServer) Next(resp []byte) ([]byte, bool, error) {
	if c.challenge == nil {
		var r [8]byte
		rand.Read(r[:])
		c.challenge = []byte(fmt.Sprintf("<%x@%s>", r, c.domain))
		return c.challenge, false, nil
	}
	user, digest, _ := strings.Cut(string(resp), " ")
	mac := hmac.New(md5.New, []byte(c.secret))
	mac.Write(c.challenge)
	if user != c.user || !hmac.Equal([]byte(digest), []byte(hex.EncodeToString(mac.Sum(nil)))) {
		return nil, true, smtp.ErrAuthFailed
	}
	return nil, true, c.ok(c.user, c.secret)
}

type xoauth2Server struct {
	check     func(user, pass string) error
	challenge bool  // refuse with a 334 error challenge first (Gmail)
	failed    error // the refusal, sent after the client's empty answer
}

// Next parses "user=U\x01auth=Bearer T\x01\x01".
func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed != nil {
		return nil, true, x.failed
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	var user, token string
	for _, f := range strings.Split(string(resp), "\x01") {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(f, "auth=Bearer "); ok {
			token = v
		}
	}
	err := x.check(user, token)
	if err != nil && x.challenge {
		x.failed = err
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
	}
	return nil, true, err
}
