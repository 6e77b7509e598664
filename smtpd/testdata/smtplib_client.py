"""Drives the plcmail listener with Python's smtplib; prints one JSON object
per step so the Go test can check every reply."""
import json
import smtplib
import sys
from email.message import EmailMessage

port = int(sys.argv[1])


def out(step, **kw):
    print(json.dumps(dict(step=step, **kw)), flush=True)


with smtplib.SMTP("127.0.0.1", port, local_hostname="192.168.1.177", timeout=20) as s:
    code, msg = s.ehlo()
    out("ehlo", code=code, features=sorted(s.esmtp_features))

    # A proper message built by the email package.
    m = EmailMessage()
    m["From"] = "PLC <plc@example.com>"
    m["To"] = "ops@example.com"
    m["Subject"] = "Störung Presse 1"
    m.set_content("Öldruck zu niedrig.\n")
    refused = s.send_message(m)
    out("send_message", refused=refused)

    # Raw 8-bit bytes with bare LF line endings and no blank line.
    raw = "Subject: Temperatur\nKessel 2: 95°C\nbitte prüfen\n".encode("utf-8")
    refused = s.sendmail("plc@example.com", ["ops@example.com"], raw)
    out("sendmail_raw", refused=refused)

    # A recipient outside allowed_recipients.
    try:
        s.sendmail("plc@example.com", ["victim@elsewhere.example"], "Subject: x\r\n\r\ny\r\n")
        out("relay", code=250)
    except smtplib.SMTPRecipientsRefused as e:
        code, msg = e.recipients["victim@elsewhere.example"]
        out("relay", code=code, msg=msg.decode())

    # Too big.
    try:
        s.sendmail("plc@example.com", ["ops@example.com"], "Subject: big\r\n\r\n" + "x" * 70000 + "\r\n")
        out("big", code=250)
    except smtplib.SMTPSenderRefused as e:
        out("big", code=e.smtp_code, msg=e.smtp_error.decode())
    except smtplib.SMTPDataError as e:
        out("big", code=e.smtp_code, msg=e.smtp_error.decode())

    code, msg = s.verify("root")
    out("vrfy", code=code)
