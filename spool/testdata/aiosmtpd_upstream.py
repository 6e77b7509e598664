#!/usr/bin/env python3
"""An independent upstream for plcmail's integration tests: Debian's aiosmtpd
with mandatory STARTTLS and AUTH, announcing 8BITMIME or not.

Usage: aiosmtpd_upstream.py CERT KEY USER [8BITMIME|NO8BITMIME]
(password in env UPSTREAM_PASSWORD; 8BITMIME is the default)

Prints "PORT n" once listening on 127.0.0.1, then one line per event:
  AUTH <mechanism> <user> <ok|fail>
  MSG {"from": ..., "to": [...], "mail_options": [...], "tls": bool, "user": ..., "data": base64}
"""
import asyncio
import base64
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Handler:
    def __init__(self, announce):
        self.announce = announce

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd always announces 8BITMIME when it keeps raw bytes; a
        # 7-bit-only server is simulated by dropping the line.
        session.host_name = hostname
        if not self.announce:
            responses = [r for r in responses if r[4:] != "8BITMIME"]
        return responses

    async def handle_DATA(self, server, session, envelope):
        out("MSG " + json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "tls": session.ssl is not None,
            "user": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else "",
            "data": base64.b64encode(envelope.original_content).decode(),
        }))
        return "250 OK queued by aiosmtpd"


def main():
    cert, key, user = sys.argv[1], sys.argv[2], sys.argv[3]
    mode = sys.argv[4] if len(sys.argv) > 4 else "8BITMIME"
    password = os.environ["UPSTREAM_PASSWORD"]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user
              and auth_data.password.decode() == password)
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        out("AUTH %s %s %s" % (mechanism, login, "ok" if ok else "fail"))
        return AuthResult(success=ok, auth_data=auth_data if ok else None)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    def factory():
        return SMTP(Handler(mode == "8BITMIME"), hostname="aiosmtpd.test", tls_context=ctx,
                    require_starttls=True, auth_required=True,
                    auth_require_tls=True, authenticator=authenticator)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0))
    out("PORT %d" % server.sockets[0].getsockname()[1])
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
