#!/usr/bin/env python3
"""SMTP client tests: runs the host build of PlcMailSmtp (test_smtp) against
 (a) a scripted server that answers an error at each step of the dialogue,
     replies in pieces, goes silent or hangs up, and records what it got, and
 (b) a real SMTP server, aiosmtpd, when it is installed (Debian python3-aiosmtpd);
     with --require-aiosmtpd its absence is a failure, not a skip.
A further real server can be given with --server HOST:PORT (the plcmail
listener, started by the Go test); the mail must then be accepted (250).

usage: run_smtp_tests.py path/to/test_smtp [--require-aiosmtpd] [--server HOST:PORT]
Exit status 0 when every scenario passed."""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

FROM = "plc@example.com"
TO = "ops@example.com, boss@example.com"
BODY = (b".leading dot\nbare LF line\r\nCRLF line\rbare CR\n..two dots\n"
        b"\n.\nline after a lone dot\nlast line without newline")
# What the body must look like on the wire after DATA (dot-stuffed, CRLF).
BODY_WIRE = (b"..leading dot\r\nbare LF line\r\nCRLF line\r\nbare CR\r\n...two dots\r\n"
             b"\r\n..\r\nline after a lone dot\r\nlast line without newline\r\n")
SUBJECT = "Pump 3\r\nBcc: evil@example.com"

failures = 0


def fail(name, msg):
    global failures
    failures += 1
    print(f"FAIL {name}: {msg}")


class Scripted:
    """One-connection SMTP server whose replies are given per command."""

    DEFAULT = {
        "greeting": b"220-smtp.test scripted\r\n220 ready\r\n",
        "EHLO": b"250-smtp.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        "HELO": b"250 smtp.test\r\n",
        "MAIL": b"250 2.1.0 ok\r\n",
        "RCPT": [b"250 2.1.5 ok\r\n"],
        "DATA": b"354 end with <CRLF>.<CRLF>\r\n",
        "END": b"250 2.0.0 queued as 1\r\n",
        "QUIT": b"221 bye\r\n",
    }

    def __init__(self, **replies):
        self.replies = dict(self.DEFAULT)
        self.replies.update(replies)
        self.commands = []
        self.data = b""
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def reply(self, conn, r):
        if r is None:          # hang up
            raise ConnectionAbortedError
        if r == b"":           # stay silent until the client gives up
            while conn.recv(4096):
                pass
            raise ConnectionAbortedError
        if isinstance(r, tuple):  # pieces with pauses between them
            for piece in r:
                conn.sendall(piece)
                time.sleep(0.05)
            return
        conn.sendall(r)

    def serve(self):
        self.sock.settimeout(10)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(10)
        buf = b""
        rcpt = 0
        try:
            self.reply(conn, self.replies["greeting"])
            while True:
                while b"\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                self.commands.append(line)
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper().decode()
                if verb == "RCPT":
                    rs = self.replies["RCPT"]
                    self.reply(conn, rs[min(rcpt, len(rs) - 1)])
                    rcpt += 1
                elif verb == "DATA":
                    r = self.replies["DATA"]
                    self.reply(conn, r)
                    if not r.startswith(b"354"):
                        continue
                    while b"\r\n.\r\n" not in buf:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        buf += chunk
                    i = buf.index(b"\r\n.\r\n") + 5
                    self.data, buf = buf[:i], buf[i:]
                    self.reply(conn, self.replies["END"])
                elif verb in self.replies:
                    self.reply(conn, self.replies[verb])
                    if verb == "QUIT":
                        return
                else:
                    conn.sendall(b"500 5.5.2 unknown command\r\n")
        except (ConnectionAbortedError, OSError):
            pass
        finally:
            conn.close()
            self.sock.close()


def run_client(exe, port, timeout_ms=2000, writer=False, host="127.0.0.1",
               subject=SUBJECT, to=TO, date=None, body=BODY, sender=FROM):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(body)
        path = f.name
    try:
        args = [exe, host, str(port), sender, to, subject, path, str(timeout_ms)]
        if writer:
            args.append("--writer")
        if date:
            args.append("--date=" + date)
        out = subprocess.run(args, capture_output=True, timeout=60, check=False)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        return {"step": "crash", "code": "-1", "stderr": out.stderr.decode(errors="replace")}
    res = dict(kv.split("=", 1) for kv in out.stdout.decode().split())
    if out.stderr:
        res["stderr"] = out.stderr.decode(errors="replace")
    return res


def check_result(name, res, step, code):
    if res.get("step") != step or res.get("code") != str(code):
        fail(name, f"got step={res.get('step')} code={res.get('code')}, want step={step} code={code} "
                   f"{res.get('stderr', '')}")
        return False
    return True


MIME = [b"MIME-Version: 1.0", b"Content-Type: text/plain; charset=UTF-8"]


def check_message(name, data, date=None, encoding=b"8bit"):
    """data: the DATA payload as received, up to and including CRLF.CRLF."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        fail(name, f"no blank line between header and body: {data!r}")
        return
    lines = head.split(b"\r\n")
    want = [b"From: " + FROM.encode(), b"To: " + TO.encode(),
            b"Subject: Pump 3  Bcc: evil@example.com"]
    if date:
        want.append(b"Date: " + date.encode())
    want += MIME + [b"Content-Transfer-Encoding: " + encoding]
    if lines != want:
        fail(name, f"header lines {lines!r}, want {want!r}")
    if body != BODY_WIRE + b".\r\n":
        fail(name, f"body on the wire {body!r}, want {BODY_WIRE + b'.' + bytes([13, 10])!r}")


def scripted_tests(exe):
    cases = [
        # name, replies, expected step, code, extra check
        ("accepted", {}, "ok", 250),
        ("accepted-date", {}, "ok", 250),
        ("accepted-pieces", {"greeting": (b"2", b"20-a\r", b"\n220 b\r\n"),
                             "EHLO": (b"250-x\r\n25", b"0 y\r\n")}, "ok", 250),
        ("rcpt-251", {"RCPT": [b"251 user not local; will forward\r\n"]}, "ok", 250),
        ("helo-fallback", {"EHLO": b"502 5.5.1 EHLO not implemented\r\n"}, "ok", 250),
        ("greeting-554", {"greeting": b"554 5.7.1 no service for you\r\n"}, "greeting", 554),
        ("greeting-garbage", {"greeting": b"hello there\r\n"}, "greeting", 0),
        ("greeting-silent", {"greeting": b""}, "greeting", 0),
        ("ehlo-421", {"EHLO": b"421 4.3.2 shutting down\r\n"}, "hello", 421),
        ("helo-501", {"EHLO": b"500 5.5.1 what\r\n", "HELO": b"501 5.5.4 bad name\r\n"}, "hello", 501),
        ("mail-550", {"MAIL": b"550 5.7.1 sender rejected\r\n"}, "mail-from", 550),
        ("mail-hangup", {"MAIL": None}, "mail-from", 0),
        # One refused recipient does not stop the mail to the other.
        ("rcpt-second-550", {"RCPT": [b"250 ok\r\n", b"550-5.1.1 no such\r\n550 5.1.1 user\r\n"]},
         "ok", 250),
        ("rcpt-first-550", {"RCPT": [b"550 5.1.1 no such user\r\n", b"250 ok\r\n"]}, "ok", 250),
        ("rcpt-all-refused", {"RCPT": [b"550 5.1.1 no such user\r\n", b"450 4.2.0 mailbox busy\r\n"]},
         "rcpt-to", 550),
        ("rcpt-421", {"RCPT": [b"421 4.3.2 shutting down\r\n", b"250 ok\r\n"]}, "rcpt-to", 421),
        ("data-451", {"DATA": b"451 4.3.0 try later\r\n"}, "data", 451),
        ("message-552", {"END": b"552 5.3.4 too big\r\n"}, "message", 552),
        # No answer to the final dot: unknown, the server may have the mail.
        ("message-silent", {"END": b""}, "unknown", 0),
        ("message-hangup", {"END": None}, "unknown", 0),
    ]
    for writer in (False, True):
        for name, replies, step, code in cases:
            tname = name + ("/writer" if writer else "")
            srv = Scripted(**replies)
            t0 = time.monotonic()
            date = "Sat, 21 Nov 2026 20:15:00 +0100" if name == "accepted-date" else None
            res = run_client(exe, srv.port, timeout_ms=700, writer=writer, date=date)
            took = time.monotonic() - t0
            srv.thread.join(5)
            ok = check_result(tname, res, step, code)
            cmds = srv.commands
            if ok and step == "ok":
                # HELO: no 8BITMIME, so the body goes quoted-printable (this
                # body has nothing to encode).
                qp = name in ("helo-fallback", "accepted-pieces")
                check_message(tname, srv.data, date, b"quoted-printable" if qp else b"8bit")
                want = [b"EHLO plc-test"] if name != "helo-fallback" else [b"EHLO plc-test", b"HELO plc-test"]
                want += [b"MAIL FROM:<plc@example.com>" + (b"" if qp else b" BODY=8BITMIME"),
                         b"RCPT TO:<ops@example.com>", b"RCPT TO:<boss@example.com>", b"DATA", b"QUIT"]
                if cmds != want:
                    fail(tname, f"commands {cmds!r}, want {want!r}")
                # Output is buffered: a handful of writes, not one per byte.
                if int(res.get("writes", 999)) > 14:
                    fail(tname, f"{res.get('writes')} socket writes for one mail")
            if ok and name.startswith("rcpt-"):
                want_rejected = {"rcpt-second-550": "1", "rcpt-first-550": "1", "rcpt-all-refused": "2"}
                if name in want_rejected and res.get("rejected") != want_rejected[name]:
                    fail(tname, f"rejected={res.get('rejected')}, want {want_rejected[name]}")
                if step != "ok" and b"DATA" in cmds:
                    fail(tname, f"DATA sent with no recipient accepted: {cmds!r}")
                if name == "rcpt-421" and len([c for c in cmds if c.startswith(b"RCPT")]) != 1:
                    fail(tname, f"went on after 421: {cmds!r}")
            if ok and step not in ("ok", "connect", "unknown") and code not in (0, 421):
                if not cmds or cmds[-1] != b"QUIT":
                    fail(tname, f"no QUIT after the refusal: {cmds!r}")
            if ok and code == 421 and b"QUIT" in cmds:
                fail(tname, "QUIT sent after 421")
            if ok and name.endswith("silent") and not (0.6 <= took < 5):
                fail(tname, f"timeout took {took:.2f}s, want about 0.7s")
            if ok:
                print(f"ok   {tname}")
    eightbit_tests(exe)
    # Nobody listening.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    res = run_client(exe, port)
    if check_result("connect-refused", res, "connect", 0):
        print("ok   connect-refused")


def eightbit_tests(exe):
    """8-bit text, long lines and addresses that would inject commands."""
    body = "Druck \u00fcber 90 bar = zu hoch\n".encode() + b"x" * 2500 + b"\n.end\n"
    subject = "K\u00fchlung ausgefallen \u2013 Halle 3"
    for ehlo, enc in ((Scripted.DEFAULT["EHLO"], b"8bit"), (b"250-smtp.test\r\n250 PIPELINING\r\n", b"quoted-printable")):
        name = "8bit-" + enc.decode()
        srv = Scripted(EHLO=ehlo)
        res = run_client(exe, srv.port, timeout_ms=2000, subject=subject, body=body)
        srv.thread.join(5)
        if not check_result(name, res, "ok", 250):
            continue
        head, _, wire = srv.data.partition(b"\r\n\r\n")
        problems = []
        mail = [c for c in srv.commands if c.startswith(b"MAIL")]
        if (b"BODY=8BITMIME" in mail[0]) != (enc == b"8bit"):
            problems.append(f"MAIL command {mail[0]!r}")
        if b"Content-Transfer-Encoding: " + enc not in head.split(b"\r\n"):
            problems.append(f"header {head!r}")
        if any(b >= 0x80 for b in head):
            problems.append("8-bit octets in the header")
        longest = max(len(l) for l in srv.data.split(b"\r\n"))
        limit = 998 if enc == b"8bit" else 76
        if longest > limit:
            problems.append(f"a line of {longest} octets (limit {limit})")
        if enc == b"quoted-printable" and any(b >= 0x80 for b in wire):
            problems.append("8-bit octets in a quoted-printable body")
        # What a mail reader makes of it: the same text back.
        import email
        import email.policy
        msg = email.message_from_bytes(srv.data[:-3].replace(b"\r\n..", b"\r\n."), policy=email.policy.default)
        if str(msg["Subject"]) != subject:
            problems.append(f"subject decodes to {str(msg['Subject'])!r}")
        text = msg.get_content().replace("\r\n", "\n")
        if enc == b"quoted-printable" and text != body.decode():
            problems.append(f"body decodes to {text[:80]!r}...")
        if enc == b"8bit" and text.replace("\n", "") != body.decode().replace("\n", ""):
            problems.append("8bit body differs beyond the added line breaks")
        if problems:
            fail(name, "; ".join(problems))
        else:
            print(f"ok   {name}")
    # CR/LF (or < >) in an address would let a sketch's text inject SMTP
    # commands: refused before anything is sent.
    for name, sender, to in (("from-crlf", "plc@example.com>\r\nRCPT TO:<evil@example.com", TO),
                             ("to-crlf", FROM, "ops@example.com\r\nRCPT TO:<evil@example.com>"),
                             ("to-empty", FROM, " , ")):
        srv = Scripted()
        res = run_client(exe, srv.port, timeout_ms=700, to=to, sender=sender)
        srv.thread.join(5)
        if check_result(name, res, "address", 0):
            if srv.commands:
                fail(name, f"commands sent: {srv.commands!r}")
            else:
                print(f"ok   {name}")


def aiosmtpd_test(exe, required):
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        msg = "python3 aiosmtpd not installed (Debian: python3-aiosmtpd)"
        if required:
            fail("aiosmtpd", msg)
        else:
            print(f"skip aiosmtpd: {msg}")
        return

    class Handler:
        def __init__(self):
            self.envelopes = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append(envelope)
            return "250 2.0.0 Message accepted for delivery"

    for writer in (False, True):
        name = "aiosmtpd" + ("/writer" if writer else "")
        h = Handler()
        # Controller cannot listen on port 0 (it connects to itself to
        # check), so take a free port first.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        ctl = Controller(h, hostname="127.0.0.1", port=port)
        ctl.start()
        try:
            res = run_client(exe, port, timeout_ms=5000, writer=writer)
        finally:
            ctl.stop()
        if not check_result(name, res, "ok", 250):
            continue
        if len(h.envelopes) != 1:
            fail(name, f"{len(h.envelopes)} messages arrived, want 1")
            continue
        env = h.envelopes[0]
        if env.mail_from != FROM or env.rcpt_tos != ["ops@example.com", "boss@example.com"]:
            fail(name, f"envelope {env.mail_from!r} {env.rcpt_tos!r}")
        content = env.original_content or env.content
        # The server removed the dot-stuffing: the body is the original text
        # with CRLF line ends.
        want_body = BODY_WIRE.replace(b"\r\n..", b"\r\n.")
        if want_body.startswith(b".."):
            want_body = want_body[1:]
        head, _, body = content.partition(b"\r\n\r\n")
        if body != want_body:
            fail(name, f"body {body!r}, want {want_body!r}")
        elif b"\r\nBcc:" in head:
            fail(name, "subject injected a header")
        else:
            print(f"ok   {name}")


def server_test(exe, addr):
    host, port = addr.rsplit(":", 1)
    res = run_client(exe, int(port), timeout_ms=10000, host=host)
    if check_result("server " + addr, res, "ok", 250):
        print(f"ok   server {addr}")


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    exe = os.path.abspath(args[0])
    required = "--require-aiosmtpd" in args
    scripted_tests(exe)
    aiosmtpd_test(exe, required)
    if "--server" in args:
        server_test(exe, args[args.index("--server") + 1])
    if failures:
        print(f"FAIL: {failures} scenario(s)")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
