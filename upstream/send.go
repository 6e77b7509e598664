package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"time"

	"github.com/wneessen/go-mail/smtp"

	"github.com/plcmail/plcmail/message"
)

// Send runs one transaction from the envelope sender from ("" is the null
// sender) to the recipients to; addresses are bare, without angle
// brackets. A nil error means the transaction completed (some recipients
// may still be deferred or rejected, see Result); an error means nothing
// was accepted: *SMTPError for a refused MAIL or DATA or when every
// recipient was refused, *ConnError when the connection broke.
func (uc *Conn) Send(from string, to []string, data []byte) (Result, error) {
	var res Result
	data, res.Downgrade = uc.prepare(from, to, data)
	utf8OK, _ := uc.c.Extension("SMTPUTF8")
	if !utf8OK && !isASCII(from) {
		return res, uc.refuseUTF8("MAIL", "")
	}
	uc.c.UpdateDeadline(uc.timeout)
	if err := uc.c.Mail("<" + from + ">"); err != nil {
		return res, uc.classify("MAIL", "", err)
	}
	firstErr, err := uc.recipients(to, utf8OK, &res)
	if err != nil {
		return Result{}, err
	}
	if len(res.Accepted) == 0 {
		uc.reset()
		if firstErr == nil {
			return res, errors.New("upstream: no recipients")
		}
		return res, firstErr
	}
	return uc.data(data, res)
}

// prepare sets the transaction's SMTPUTF8 and 8-bit handling and returns
// the bytes to send, with a note of what was converted.
func (uc *Conn) prepare(from string, to []string, data []byte) ([]byte, string) {
	ascii := isASCII(from)
	for _, r := range to {
		ascii = ascii && isASCII(r)
	}
	// SMTPUTF8 on MAIL says the envelope or the header holds UTF-8
	// (RFC 6531 §3.4); go-mail adds it when the server announces it and
	// we do not skip it.
	uc.c.SkipSMTPUTF8(ascii && !message.HeaderIsUTF8(data))
	// go-mail's Mail adds BODY=8BITMIME whenever the upstream announces
	// 8BITMIME (RFC 6152 allows it on 7-bit messages too). When it does
	// not, 8-bit content is converted for this transaction only; the
	// spool keeps the original.
	if ok, _ := uc.c.Extension("8BITMIME"); !ok && message.Has8Bit(data) {
		out, note := message.Downgrade8Bit(data)
		uc.tracef("* upstream does not announce 8BITMIME: %s", note)
		return out, note
	}
	return data, ""
}

// refuseUTF8 is the answer for a non-ASCII address when the upstream does
// not announce SMTPUTF8 (RFC 6531 §3.2). We refuse it for good (Postfix
// bounces it with 5.6.7 too) rather than let a 7-bit server mangle or
// misroute it; the refusal takes the same path as the server's own 553.
func (uc *Conn) refuseUTF8(cmd, rcpt string) *SMTPError {
	se := &SMTPError{Code: 553, Command: cmd, Rcpt: rcpt,
		Msg: "5.6.7 non-ASCII address, and the upstream does not announce SMTPUTF8 (refused by plcmail, RFC 6531)"}
	uc.tracef("* %v", se)
	return se
}

// recipients sends RCPT for each of to and sorts them into res. It returns
// the reply to report when none is accepted (the first 4xx, else the first
// 5xx), or an error when the connection broke.
func (uc *Conn) recipients(to []string, utf8OK bool, res *Result) (*SMTPError, error) {
	var firstTemp, firstPerm *SMTPError
	for _, r := range to {
		var cerr error
		if !utf8OK && !isASCII(r) {
			cerr = uc.refuseUTF8("RCPT", r)
		} else {
			uc.c.UpdateDeadline(uc.timeout)
			err := uc.c.Rcpt("<" + r + ">")
			if err == nil {
				res.Accepted = append(res.Accepted, r)
				continue
			}
			cerr = uc.classify("RCPT", r, err)
		}
		var se *SMTPError
		if !errors.As(cerr, &se) {
			return nil, cerr
		}
		if se.Temporary() {
			res.Deferred = append(res.Deferred, r)
			if firstTemp == nil {
				firstTemp = se
			}
		} else {
			res.Rejected = append(res.Rejected, Rejection{Rcpt: r, Code: se.Code, Reason: se.Error()})
			if firstPerm == nil {
				firstPerm = se
			}
		}
	}
	if firstTemp != nil {
		return firstTemp, nil
	}
	return firstPerm, nil
}

// data sends the message after at least one recipient was accepted.
func (uc *Conn) data(data []byte, res Result) (Result, error) {
	// DATA may legitimately take a while for a big message on a slow link.
	uc.c.UpdateDeadline(uc.timeout + time.Duration(len(data)/(8<<10))*time.Second)
	// If DATA fails, the accepted recipients did not get it either.
	failed := Result{Deferred: append(append([]string(nil), res.Accepted...), res.Deferred...), Rejected: res.Rejected, Downgrade: res.Downgrade}
	w, err := uc.c.Data()
	if err != nil {
		err = uc.classify("DATA", "", err)
		uc.reset()
		return failed, err
	}
	uc.tracef("C: (message, %d bytes)", len(data))
	uc.tracef("C: .")
	rest, err := writeStuffed(uc.c.Text.W, data)
	if err == nil {
		_, err = w.Write(rest)
	}
	if err != nil {
		uc.broken = true
		return failed, &ConnError{"io", err}
	}
	if err := w.Close(); err != nil {
		return failed, uc.classify("DATA", "", err)
	}
	res.Code = 250
	if dc, ok := w.(*smtp.DataCloser); ok {
		res.Reply = dc.ServerResponse()
		uc.tracef("S: 250 %s", res.Reply)
	}
	return res, nil
}

// classify turns a go-mail error into *SMTPError (the server replied) or
// *ConnError (it did not; the connection is unusable).
func (uc *Conn) classify(cmd, rcpt string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		if te.Code == 421 { // the server is closing the connection
			uc.broken = true
		}
		return &SMTPError{Code: te.Code, Command: cmd, Rcpt: rcpt, Msg: strings.ReplaceAll(te.Msg, "\n", "; ")}
	}
	uc.broken = true
	return &ConnError{"io", fmt.Errorf("%s: %w", cmd, err)}
}

// reset aborts a transaction so that the connection can carry the next.
func (uc *Conn) reset() {
	if uc.broken {
		return
	}
	uc.c.UpdateDeadline(uc.timeout)
	if err := uc.c.Reset(); err != nil {
		uc.broken = true
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// SendNow delivers one message immediately over a fresh upstream
// connection, bypassing the spool; `plcmail test` uses it. dialogue, when
// not nil, receives the SMTP dialogue (C: and S: lines) with AUTH secrets
// masked. It returns nil only when every recipient was accepted.
func SendNow(ctx context.Context, opts Options, from string, to []string, data []byte, dialogue io.Writer) error {
	uc, err := Dial(ctx, opts, dialogue)
	if err != nil {
		return err
	}
	defer uc.Close()
	res, err := uc.Send(from, to, data)
	if err != nil {
		return err
	}
	if len(res.Deferred)+len(res.Rejected) > 0 {
		return fmt.Errorf("accepted for %d of %d recipients; deferred %v, rejected %v",
			len(res.Accepted), len(to), res.Deferred, res.Rejected)
	}
	return nil
}
