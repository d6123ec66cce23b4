#!/usr/bin/python3
"""Squid Basic auth helper for the cntlm test lab (DESIGN.md §3).

Squid sends one line per check, "<user> <password>" with both parts URL-escaped (RFC 1738), and
expects "OK" or "ERR". The accepted pairs are the "user:password" lines of --users (domain-less);
a DOMAIN\\user form matches its user part too. Each decision is one line in --log (never the
password), so tests can count Basic checks as they count NTLM handshakes.
"""

import argparse
import os
import sys
import time
import urllib.parse


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.users, "rb") as fd:
        pairs = {}
        for line in fd.read().decode("utf-8").splitlines():
            parts = line.split(":")
            if len(parts) == 3:
                pairs[parts[1].lower()] = parts[2]
    for raw in sys.stdin:
        user_enc, _, pass_enc = raw.rstrip("\n").partition(" ")
        user = urllib.parse.unquote(user_enc)
        password = urllib.parse.unquote(pass_enc)
        short = user.rsplit("\\", 1)[-1].lower()
        ok = short in pairs and pairs[short] == password
        fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            safe = "".join(c if c.isalnum() or c in "._-@" else "_" for c in user)
            verdict = "OK" if ok else "ERR"
            os.write(fd, f"{time.strftime('%H:%M:%S')} BASIC user={safe} verdict={verdict}\n".encode())
        finally:
            os.close(fd)
        sys.stdout.write("OK\n" if ok else "ERR\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
