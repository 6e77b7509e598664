package smtpd

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/plcmail/plcmail/config"
)

// accounts holds the SHA-256 of each [[smtp.account]] password, compared in
// constant time; the plaintext is not kept after start.
type accounts map[string][32]byte

func loadAccounts(list []config.SMTPAccount) (accounts, error) {
	a := accounts{}
	for _, acc := range list {
		pw, err := config.ReadSecret(acc.PasswordFile)
		if err != nil {
			return nil, err
		}
		if pw == "" {
			return nil, errors.New(acc.PasswordFile + ": empty password")
		}
		a[acc.Username] = sha256.Sum256([]byte(pw))
	}
	return a, nil
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
