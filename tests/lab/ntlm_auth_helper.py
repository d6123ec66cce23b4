#!/usr/bin/python3
"""Squid stateful NTLM helper for the cntlm test lab (DESIGN.md §3).

It verifies the client's Type 3 with an NTLM implementation that is not ours: pyspnego's NTLM
acceptor (``spnego.server(protocol="ntlm")``), with the credentials in the file named by
``NTLM_USER_FILE`` (lines ``DOMAIN:user:password``) and ``LM_COMPAT_LEVEL`` choosing which
dialects pass (5: NTLMv2 only; 0: LM, NTLMv1, NTLM2SR and NTLMv2).

Squid's NTLM helper protocol is stateful, one exchange per helper at a time:
    YR <b64 Type 1>  ->  TT <b64 Type 2>
    KK <b64 Type 3>  ->  AF <user>  |  NA <reason>
The acceptor is created on YR and kept for that exchange's KK.

The Type 2 is ours to shape (pyspnego's default names the host, not a domain):
  --challenge ad         like an Active Directory member proxy's: TargetName the domain,
                         NbDomainName, NbComputerName, DNS names, Timestamp (the default)
  --challenge no-target-info   no TargetInfo at all (NTLMSSP_NEGOTIATE_TARGET_INFO clear)

Known trap: pyspnego re-serialises the client's NTLMv2 blob before hashing it, while MS-NLMP
§3.3.2 hashes the bytes as received, so it refuses a correct answer whose AV list is not in its
canonical form (typical for a Type 2 without TargetInfo). When it refuses an NTLMv2 answer, we
re-check NTProofStr = HMAC_MD5(NTOWFv2, ServerChallenge || blob) over the raw blob with our own
MD4/HMAC-MD5 and log which check decided.

Every decision is one line in the --log file, which the Rust tests read to count handshakes:
    YR pid=<pid> challenge=<mode>
    KK pid=<pid> user=<DOMAIN\\user> dialect=<NTLMv2|NTLM2SR|NTLMv1|LM|none> verdict=<AF|NA> check=<...>
Secrets (passwords, hashes, messages) are never logged.
"""

import argparse
import base64
import hmac
import os
import struct
import sys
import time

DEFAULT_PYLIB = "/opt/cntlm-lab/pylib"


# --- MD4 (RFC 1320), written here because OpenSSL 3's default provider may not offer it. ---

def _rotl(x, n):
    x &= 0xFFFFFFFF
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


def md4(data: bytes) -> bytes:
    """RFC 1320 MD4 digest."""
    msg = bytearray(data)
    bit_len = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    msg.append(0x80)
    while len(msg) % 64 != 56:
        msg.append(0)
    msg += struct.pack("<Q", bit_len)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", bytes(msg[off:off + 64]))
        aa, bb, cc, dd = a, b, c, d
        # Round 1: F(x,y,z) = xy v not(x)z
        for i in range(16):
            k = i
            s = (3, 7, 11, 19)[i % 4]
            f = (b & c) | (~b & d)
            a, b, c, d = d, _rotl(a + f + x[k], s), b, c
        # Round 2: G(x,y,z) = xy v xz v yz, constant 0x5A827999
        for i in range(16):
            k = (i % 4) * 4 + i // 4
            s = (3, 5, 9, 13)[i % 4]
            g = (b & c) | (b & d) | (c & d)
            a, b, c, d = d, _rotl(a + g + x[k] + 0x5A827999, s), b, c
        # Round 3: H(x,y,z) = x xor y xor z, constant 0x6ED9EBA1
        order = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)
        for i in range(16):
            k = order[i]
            s = (3, 9, 11, 15)[i % 4]
            h = b ^ c ^ d
            a, b, c, d = d, _rotl(a + h + x[k] + 0x6ED9EBA1, s), b, c
        a = (a + aa) & 0xFFFFFFFF
        b = (b + bb) & 0xFFFFFFFF
        c = (c + cc) & 0xFFFFFFFF
        d = (d + dd) & 0xFFFFFFFF
    return struct.pack("<4I", a, b, c, d)


def hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, "md5").digest()


def ntowfv2(password: str, user: str, domain: str) -> bytes:
    """MS-NLMP §3.3.2 NTOWFv2."""
    nt = md4(password.encode("utf-16-le"))
    return hmac_md5(nt, (user.upper() + domain).encode("utf-16-le"))


# --- Credentials file (the same one pyspnego reads through NTLM_USER_FILE). ---

def lookup_password(users_file: str, domain: str, user: str):
    with open(users_file, "rb") as fd:
        for line in fd.read().decode("utf-8").splitlines():
            parts = line.split(":")
            if len(parts) != 3:
                continue
            if parts[0].upper() == domain.upper() and parts[1].upper() == user.upper():
                return parts[2]
    return None


# --- Raw Type 3 fields (MS-NLMP §2.2.1.3), read without pyspnego. ---

def _field(msg: bytes, off: int) -> bytes:
    if len(msg) < off + 8:
        raise ValueError("short Type 3")
    length, _max, start = struct.unpack("<HHI", msg[off:off + 8])
    if start + length > len(msg):
        raise ValueError("Type 3 field out of bounds")
    return msg[start:start + length]


def parse_type3(msg: bytes):
    if len(msg) < 64 or msg[:8] != b"NTLMSSP\x00" or struct.unpack("<I", msg[8:12])[0] != 3:
        raise ValueError("not a Type 3")
    flags = struct.unpack("<I", msg[60:64])[0]
    enc = "utf-16-le" if flags & 0x1 else "latin-1"
    return {
        "lm": _field(msg, 12),
        "nt": _field(msg, 20),
        "domain": _field(msg, 28).decode(enc, "replace"),
        "user": _field(msg, 36).decode(enc, "replace"),
        "flags": flags,
    }


def dialect_of(t3) -> str:
    nt, lm = t3["nt"], t3["lm"]
    if len(nt) > 24:
        return "NTLMv2"
    if len(nt) == 24:
        # NTLM2 session response: LM field = 8-byte client challenge + 16 zero bytes.
        if t3["flags"] & 0x00080000 and len(lm) == 24 and lm[8:] == b"\x00" * 16:
            return "NTLM2SR"
        return "NTLMv1"
    if len(lm) == 24:
        return "LM"
    return "none"


# --- The Type 2 we send. ---

def build_challenge(spnego_mod, negotiate_token: bytes, mode: str, domain: str):
    from spnego._ntlm_raw.messages import (  # noqa: PLC0415 (needs sys.path set first)
        AvId,
        Challenge,
        FileTime,
        Negotiate,
        NegotiateFlags,
        TargetInfo,
        Version,
    )

    negotiate = Negotiate.unpack(negotiate_token)
    flags = negotiate.flags | NegotiateFlags.ntlm | NegotiateFlags.always_sign
    if flags & NegotiateFlags.unicode:
        flags &= ~NegotiateFlags.oem
    if flags & NegotiateFlags.extended_session_security:
        flags &= ~NegotiateFlags.lm_key
    flags |= NegotiateFlags.request_target | NegotiateFlags.target_type_domain
    server_challenge = os.urandom(8)
    if mode == "no-target-info":
        flags &= ~NegotiateFlags.target_info
        target_info = None
    else:
        flags |= NegotiateFlags.target_info
        target_info = TargetInfo()
        target_info[AvId.nb_domain_name] = domain
        target_info[AvId.nb_computer_name] = "PROXY1"
        target_info[AvId.dns_domain_name] = domain.lower() + ".test"
        target_info[AvId.dns_computer_name] = "proxy1." + domain.lower() + ".test"
        target_info[AvId.dns_tree_name] = domain.lower() + ".test"
        target_info[AvId.timestamp] = FileTime.now()
    version = Version(10, 0, 17763, 15)
    challenge = Challenge(
        flags, server_challenge, target_name=domain, target_info=target_info, version=version
    )
    return negotiate, challenge


class Exchange:
    """One YR..KK exchange: the acceptor and the Type 2 it is bound to."""

    def __init__(self, args, type1: bytes):
        import spnego  # noqa: PLC0415

        self.args = args
        self.acceptor = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
        negotiate, challenge = build_challenge(spnego, type1, args.challenge, args.domain)
        # Let pyspnego process the Type 1 (state transitions), then bind it to our Type 2 so it
        # verifies the Type 3 against the ServerChallenge the client really saw.
        self.acceptor.step(type1)
        self.acceptor._temp_negotiate = negotiate
        self.acceptor._temp_challenge = challenge
        self.challenge = challenge

    def type2(self) -> bytes:
        return self.challenge.pack()

    def verify(self, type3: bytes):
        """Returns (verdict, user, dialect, check)."""
        try:
            t3 = parse_type3(type3)
        except ValueError as err:
            return "NA", "-", "none", "malformed:" + str(err).replace(" ", "_")
        user, domain, dialect = t3["user"], t3["domain"], dialect_of(t3)
        try:
            self.acceptor.step(type3)
            if self.acceptor.complete:
                return "AF", user, dialect, "pyspnego"
            return "NA", user, dialect, "pyspnego-incomplete"
        except Exception as err:  # noqa: BLE001 - every refusal is a verdict to log
            reason = type(err).__name__
            if dialect != "NTLMv2" or "Invalid NTLM response" not in str(err):
                return "NA", user, dialect, "pyspnego:" + reason
        # pyspnego refused an NTLMv2 answer: re-check over the raw blob (MS-NLMP §3.3.2).
        password = lookup_password(self.args.users, domain, user)
        if password is None:
            return "NA", user, dialect, "raw-blob:unknown-user"
        key = ntowfv2(password, user, domain)
        nt = t3["nt"]
        proof = hmac_md5(key, self.challenge.server_challenge + nt[16:])
        if hmac.compare_digest(proof, nt[:16]):
            return "AF", user, dialect, "raw-blob(pyspnego-refused-reserialised)"
        return "NA", user, dialect, "raw-blob:mismatch"


def log_line(path: str, line: str) -> None:
    # One write() per line on an O_APPEND descriptor: several helper children share the file.
    stamp = time.strftime("%H:%M:%S")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, f"{stamp} {line}\n".encode("utf-8", "replace"))
    finally:
        os.close(fd)


def safe_user(user: str) -> str:
    # The user is one word in the helper protocol; Squid logs it.
    return "".join(ch if ch.isalnum() or ch in "._-@" else "_" for ch in user) or "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", required=True, help="DOMAIN:user:password lines")
    parser.add_argument("--log", required=True, help="decision log (one line per YR/KK)")
    parser.add_argument("--lm-compat", type=int, default=5, help="LM_COMPAT_LEVEL, 0..5")
    parser.add_argument("--challenge", choices=["ad", "no-target-info"], default="ad")
    parser.add_argument("--domain", default="LAB", help="NetBIOS domain named in the Type 2")
    parser.add_argument("--pylib", default=DEFAULT_PYLIB, help="where pyspnego is installed")
    args = parser.parse_args()

    sys.path.insert(0, args.pylib)
    os.environ["NTLM_USER_FILE"] = args.users
    os.environ["LM_COMPAT_LEVEL"] = str(args.lm_compat)

    exchange = None
    pid = os.getpid()
    for raw in sys.stdin:
        line = raw.strip()
        cmd, _, arg = line.partition(" ")
        try:
            if cmd == "YR":
                exchange = Exchange(args, base64.b64decode(arg))
                log_line(args.log, f"YR pid={pid} challenge={args.challenge}")
                reply = "TT " + base64.b64encode(exchange.type2()).decode()
            elif cmd == "KK":
                if exchange is None:
                    log_line(args.log, f"KK pid={pid} user=- dialect=none verdict=NA check=no-exchange")
                    reply = "NA no_type1_seen"
                else:
                    verdict, user, dialect, check = exchange.verify(base64.b64decode(arg))
                    exchange = None
                    log_line(
                        args.log,
                        f"KK pid={pid} user={safe_user(user)} dialect={dialect} "
                        f"verdict={verdict} check={check}",
                    )
                    reply = f"AF {safe_user(user)}" if verdict == "AF" else "NA credentials_rejected"
            else:
                reply = "BH unknown_request"
        except Exception as err:  # noqa: BLE001 - a helper must answer every line
            log_line(args.log, f"ERR pid={pid} cmd={cmd} error={type(err).__name__}")
            exchange = None
            reply = "BH " + type(err).__name__
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        # RFC 1320 appendix A.5, and MS-NLMP §4.2.4.1.1 NTOWFv2("Password", "User", "Domain").
        vectors = [
            (md4(b""), "31d6cfe0d16ae931b73c59d7e0c089c0"),
            (md4(b"abc"), "a448017aaf21d8525fc10ae87aa6729d"),
            (md4(b"message digest"), "d9130a8164549fe818874806e1c7014b"),
            (md4(b"abcdefghijklmnopqrstuvwxyz"), "d79e1c308aa5bbcdeea8ed63df412da9"),
            (md4(b"1234567890" * 8), "e33b4ddc9c38f2199c3e7b164fcc0536"),
            (ntowfv2("Password", "User", "Domain"), "0c868a403bfd7a93a3001ef22ef02e3f"),
        ]
        bad = [want for got, want in vectors if got.hex() != want]
        print("ok" if not bad else f"mismatch: {bad}")
        sys.exit(1 if bad else 0)
    sys.exit(main())
