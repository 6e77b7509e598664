package smtpd

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// accounts holds the SHA-256 of each account's password, compared in
// constant time; the plaintext is not kept after New.
type accounts map[string][32]byte

func newAccounts(passwords map[string]string) accounts {
	a := make(accounts, len(passwords))
	for user, pw := range passwords {
		a[user] = sha256.Sum256([]byte(pw))
	}
	return a
}

// check reports whether username and password match an account. Unknown
// users cost the same comparison as known ones.
func (a accounts) check(username, password string) bool {
	want, ok := a[username]
	got := sha256.Sum256([]byte(password))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1 && ok
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), which go-sasl only implements as a client.
// Many embedded SMTP libraries only know LOGIN. The client may send the
// username as the initial response ("AUTH LOGIN dXNlcg==").
type loginServer struct {
	step         int
	username     string
	authenticate func(username, password string) error
}

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		s.step = 1
		if response == nil { // no initial response
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		s.username = string(response)
		s.step = 2
		return []byte("Password:"), false, nil
	case 2:
		s.step = 3
		return nil, true, s.authenticate(s.username, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}

var errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
