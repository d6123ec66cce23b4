#!/usr/bin/python3
"""SPNEGO acceptor for the Kerberos lab: MIT krb5's own acceptor, through python3-gssapi.

Checks cntlm's Negotiate engine over a whole exchange, including the acceptor's last token,
which Squid never sends. Reads one base64 token per line on stdin and answers each with one
line: "CONTINUE <b64 token>", "COMPLETE <b64 token or -> <initiator principal>" (then exits),
or "ERROR <message>" (then exits 1). The service is HTTP@localhost from the keytab named by
KRB5_KTNAME; KRB5_CONFIG names the test realm.
"""
import base64
import sys

import gssapi

SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")


def main():
    service = gssapi.Name("HTTP@localhost", gssapi.NameType.hostbased_service)
    creds = gssapi.Credentials(name=service, usage="accept", mechs=[SPNEGO])
    ctx = gssapi.SecurityContext(creds=creds, usage="accept")
    for line in sys.stdin:
        try:
            out = ctx.step(base64.b64decode(line.strip()))
        except gssapi.exceptions.GSSError as e:
            print("ERROR", str(e).replace("\n", " "), flush=True)
            return 1
        token = base64.b64encode(out).decode() if out else "-"
        if ctx.complete:
            print("COMPLETE", token, ctx.initiator_name, flush=True)
            return 0
        print("CONTINUE", token, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
