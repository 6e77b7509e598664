#!/usr/bin/env python3
"""Hold N idle SMTP sessions open against one server, for memory measurements.

Usage: idle_sessions.py HOST PORT N

Opens N connections, reads each greeting, sends EHLO and reads the reply, then
prints one line "ready ok=K failed=F" (K sessions got a 250 to EHLO) and holds
every session open, sending nothing, until it gets SIGTERM or SIGINT; then it
says QUIT on each and exits. bench/run.sh reads the memory of the server while
the sessions are held.

A session counts only once the server answered EHLO: a connection that merely
sits in the kernel's accept backlog costs the server nothing and must not be
reported as "held".
"""

import signal
import socket
import sys
import time


def read_reply(sock, buf):
    """Read one complete SMTP reply (last line has a space after the code)."""
    while True:
        while b"\n" in buf[0]:
            line, rest = buf[0].split(b"\n", 1)
            buf[0] = rest
            if len(line) >= 4 and line[3:4] == b" ":
                return line[:3]
            if len(line) < 4:
                return line[:3]
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by server")
        buf[0] += chunk


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    socks, failed = [], 0
    deadline = time.monotonic() + 60
    # Connect all first, then talk: servers that fork per connection
    # (Postfix smtpd) get to spawn their processes in parallel.
    pending = []
    for _ in range(n):
        try:
            s = socket.create_connection((host, port), timeout=30)
            pending.append(s)
        except OSError:
            failed += 1
    for s in pending:
        try:
            s.settimeout(max(1.0, deadline - time.monotonic()))
            buf = [b""]
            if read_reply(s, buf) != b"220":
                raise ConnectionError("no 220 greeting")
            s.sendall(b"EHLO idle.bench.example\r\n")
            if read_reply(s, buf) != b"250":
                raise ConnectionError("EHLO refused")
            socks.append(s)
        except (OSError, ConnectionError):
            failed += 1
            s.close()
    print("ready ok=%d failed=%d" % (len(socks), failed), flush=True)
    while not stop:
        time.sleep(0.1)
    for s in socks:
        try:
            s.sendall(b"QUIT\r\n")
        except OSError:
            pass
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
