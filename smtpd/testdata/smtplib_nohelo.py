"""Drives the plcmail listener with Python's smtplib the way a minimal
client does: no HELO/EHLO at all (smtplib's low-level mail/rcpt/data do not
send one), lower-case commands (smtplib's own), a bare HELO, trailing
blanks and addresses without angle brackets. Prints one JSON object per
step so the Go test can check every reply."""
import json
import smtplib
import sys

port = int(sys.argv[1])


def out(step, reply):
    code, msg = reply
    print(json.dumps(dict(step=step, code=code, msg=msg.decode())), flush=True)


s = smtplib.SMTP("127.0.0.1", port, timeout=20)
# smtplib sends the verbs in lower case: "mail FROM:<...>", "rcpt TO:<...>", "data".
out("mail", s.mail("plc@example.com"))
out("rcpt", s.rcpt("ops@example.com"))
out("data", s.data(b"Subject: smtplib without HELO\r\n\r\nPump 3 failed\r\n"))
out("helo_bare", s.docmd("HELO"))
out("rset_blank", s.docmd("RSET "))
out("mail_blank_nobrackets", s.docmd("MAIL", "FROM: plc@example.com"))
out("rcpt_nobrackets", s.docmd("RCPT", "TO:ops@example.com"))
out("data_blank", s.docmd("DATA "))
s.send(b"Subject: second\r\n\r\nx\r\n.\r\n")
out("data_end", s.getreply())
out("quit", s.quit())
