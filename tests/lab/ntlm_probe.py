#!/usr/bin/python3
"""A second, independent NTLM client for the lab's self-check: pyspnego's initiator.

curl widens each byte of a non-ASCII password instead of encoding it as UTF-16LE, so it cannot
show that the lab accepts a correct non-ASCII password; pyspnego's client does it per MS-NLMP.
Usage: ntlm_probe.py --proxy-port P --url URL --user DOMAIN\\user --password-env VAR [--pylib D]
Prints the final status code. One keep-alive connection carries Type 1, 407 + Type 2, Type 3.
"""

import argparse
import base64
import http.client
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy-port", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-env", required=True)
    parser.add_argument("--pylib", default="/opt/cntlm-lab/pylib")
    args = parser.parse_args()
    sys.path.insert(0, args.pylib)
    import spnego  # noqa: PLC0415

    client = spnego.client(
        args.user,
        os.environ[args.password_env],
        protocol="ntlm",
        options=spnego.NegotiateOptions.use_ntlm,
    )
    conn = http.client.HTTPConnection("127.0.0.1", args.proxy_port, timeout=30)
    token = client.step()
    conn.request("GET", args.url, headers={"Proxy-Authorization": "NTLM " + base64.b64encode(token).decode()})
    resp = conn.getresponse()
    resp.read()
    challenge = None
    for name, value in resp.getheaders():
        if name.lower() == "proxy-authenticate" and value.startswith("NTLM "):
            challenge = base64.b64decode(value[5:])
    if resp.status != 407 or challenge is None:
        print(resp.status)
        return 0
    token = client.step(challenge)
    conn.request("GET", args.url, headers={"Proxy-Authorization": "NTLM " + base64.b64encode(token).decode()})
    resp = conn.getresponse()
    resp.read()
    print(resp.status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
