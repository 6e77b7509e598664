"""Drives the plcmail listener with Python's smtplib using addresses
without a domain, as a board configured with a bare name does: smtplib
sends them as "mail FROM:<plc>" and "rcpt TO:<ops>". Prints one JSON object
per step so the Go test can check every reply."""
import json
import smtplib
import sys

port = int(sys.argv[1])


def out(step, **kw):
    print(json.dumps(dict(step=step, **kw)), flush=True)


with smtplib.SMTP("127.0.0.1", port, local_hostname="192.168.1.177", timeout=20) as s:
    # An unqualified sender and a message without From, Date or Message-ID.
    refused = s.sendmail("plc", ["ops@example.com"], b"Subject: Alarm\r\n\r\nPump 3 failed\r\n")
    out("sender", refused=refused)

    # An unqualified recipient beside a complete one: only it is refused.
    refused = s.sendmail("plc", ["ops", "shift@example.com"], b"Subject: two\r\n\r\nx\r\n")
    out("mixed", refused={k: [c, m.decode()] for k, (c, m) in refused.items()})

    # Only unqualified recipients: nothing to send.
    try:
        s.sendmail("plc", ["ops"], b"Subject: none\r\n\r\nx\r\n")
        out("only", code=250)
    except smtplib.SMTPRecipientsRefused as e:
        code, msg = e.recipients["ops"]
        out("only", code=code, msg=msg.decode())
