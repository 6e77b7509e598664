package upstream

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/textproto"
	"strings"
)

// authXOAuth2 runs AUTH XOAUTH2 (Google's and Microsoft's SASL profile of
// a bearer token) with token; when the server refuses the token and
// Options.Refresh is set, it gets a fresh one and tries once more on the
// same connection. The token is never traced.
func (uc *Conn) authXOAuth2(ctx context.Context, token string) error {
	o := uc.opts
	uc.tracef("* AUTH XOAUTH2 as %s (token masked)", o.Username)
	err := uc.xoauth2Once(token)
	var te *textproto.Error
	if err == nil || o.Refresh == nil || !errors.As(err, &te) || te.Code != 535 {
		return err
	}
	uc.tracef("* the server refused the access token; getting a fresh one and retrying AUTH once")
	fresh, rerr := o.Refresh(ctx, token)
	if rerr != nil {
		return fmt.Errorf("%w; getting a fresh token: %w", err, rerr)
	}
	return uc.xoauth2Once(fresh)
}

// xoauth2Once is one AUTH XOAUTH2 exchange. A refusal comes either as a
// 535 right away (Microsoft) or as a 334 challenge carrying a JSON error,
// to which the client answers with an empty line and gets the 535
// (Google); either way the session stays usable for another AUTH.
func (uc *Conn) xoauth2Once(token string) error {
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + uc.opts.Username + "\x01auth=Bearer " + token + "\x01\x01"))
	uc.tracef("C: AUTH XOAUTH2 ****")
	code, msg, err := uc.rawCmd("AUTH XOAUTH2 " + ir)
	if err != nil {
		return err
	}
	if code == 334 {
		detail, derr := base64.StdEncoding.DecodeString(msg)
		if derr != nil || !isPrintable(detail) {
			detail = []byte("****")
		}
		uc.tracef("S: 334 %s", detail)
		uc.tracef("C: (empty line: end of the failed exchange)")
		if code, msg, err = uc.rawCmd(""); err != nil {
			return err
		}
	}
	uc.traceReply(code, msg)
	if code == 235 {
		return nil
	}
	return &textproto.Error{Code: code, Msg: msg}
}

// rawCmd sends one line on go-mail's exported textproto.Conn (bypassing its
// logger, so that the token is never handed to it) and reads the reply.
func (uc *Conn) rawCmd(line string) (int, string, error) {
	t := uc.c.Text
	uc.c.UpdateDeadline(uc.timeout)
	id, err := t.Cmd("%s", line)
	if err != nil {
		uc.broken = true
		return 0, "", err
	}
	t.StartResponse(id)
	defer t.EndResponse(id)
	code, msg, err := t.ReadResponse(0)
	if err != nil {
		uc.broken = true
	}
	return code, msg, err
}

func (uc *Conn) traceReply(code int, msg string) {
	lines := strings.Split(msg, "\n")
	for i, ln := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		uc.tracef("S: %d%s%s", code, sep, ln)
	}
}

func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
