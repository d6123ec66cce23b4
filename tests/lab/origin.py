#!/usr/bin/python3
"""Origin servers for the cntlm test lab (DESIGN.md §3), on 127.0.0.1 with OS-assigned ports.

One process serves, over HTTP and HTTPS (a self-signed certificate for 127.0.0.1/localhost
written to <dir>/cert.pem):
  /echo[...]       any method: JSON {method, path, version, headers: [[name, value], ...],
                   body_len, body_sha256, request_chunked}; request bodies by Content-Length
                   or chunked; `Expect: 100-continue` answered with an interim 100
  /bytes/<n>       n deterministic bytes with Content-Length (see `pattern_block`), streamed
  /chunked/<n>     the same bytes, Transfer-Encoding: chunked, 64 KiB chunks
  /close/<n>       the same bytes, no length: delimited by closing the connection
  /git/<repo>      git smart HTTP (git http-backend as CGI) over <dir>/git (repo "lab.git")
  /simple/...      a PEP 503 index with one handmade wheel, labpkg 1.0, files under /files/

On start it prints one JSON line to stdout: {"http": port, "https": port, "cert": path,
"wheel": name, "wheel_sha256": hex, "git_head": hex}, then serves until killed.
Deterministic data: block i (1 MiB) is 8 bytes little-endian i followed by the first
1 MiB - 8 bytes of a fixed xorshift stream, so any size has one well-known SHA-256.
"""

import argparse
import base64
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BLOCK = 1 << 20


def _base_block() -> bytes:
    # xorshift64, seed fixed: cheap to regenerate anywhere, never stored in git.
    x = 0x9E3779B97F4A7C15
    out = bytearray()
    mask = (1 << 64) - 1
    while len(out) < BLOCK - 8:
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        out += x.to_bytes(8, "little")
    return bytes(out[: BLOCK - 8])


BASE = _base_block()


def pattern_block(i: int) -> bytes:
    return i.to_bytes(8, "little") + BASE


def pattern(n: int):
    """Yields the first n bytes of the deterministic stream in 1 MiB pieces."""
    i = 0
    while n > 0:
        block = pattern_block(i)
        piece = block[: min(n, BLOCK)]
        yield piece
        n -= len(piece)
        i += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cntlm-lab-origin"

    def log_message(self, fmt, *args):  # quiet: tests read results, not logs
        pass

    # -- request bodies -------------------------------------------------------------------

    def read_body(self):
        """Returns (sha256 hex, length, was_chunked), reading the body without storing it."""
        digest = hashlib.sha256()
        total = 0
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    return digest.hexdigest(), total, True
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, 65536))
                    if not data:
                        raise ConnectionError("body ended early")
                    digest.update(data)
                    remaining -= len(data)
                total += size
                self.rfile.readline(16)  # CRLF after the chunk
        length = int(self.headers.get("Content-Length", "0") or "0")
        remaining = length
        while remaining:
            data = self.rfile.read(min(remaining, 65536))
            if not data:
                raise ConnectionError("body ended early")
            digest.update(data)
            remaining -= len(data)
        return digest.hexdigest(), length, False

    # -- dispatch ---------------------------------------------------------------------------

    def do_GET(self):
        self.route()

    def do_HEAD(self):
        self.route()

    def do_POST(self):
        self.route()

    def do_PUT(self):
        self.route()

    def do_DELETE(self):
        self.route()

    def do_OPTIONS(self):
        self.route()

    def do_PATCH(self):
        self.route()

    def route(self):
        path = self.path
        if path.startswith("http://") or path.startswith("https://"):
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        if path.startswith("/git/"):
            return self.git(path)
        sha, length, chunked = self.read_body()
        if path.startswith("/echo"):
            body = json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "version": self.request_version,
                    "headers": [[k, v] for k, v in self.headers.items()],
                    "body_len": length,
                    "body_sha256": sha,
                    "request_chunked": chunked,
                }
            ).encode()
            return self.send_bytes(200, body, "application/json")
        m = re.fullmatch(r"/(bytes|chunked|close)/(\d+)", path)
        if m:
            return self.send_pattern(m.group(1), int(m.group(2)))
        if path.startswith("/simple") or path.startswith("/files/"):
            return self.pip(path)
        return self.send_bytes(404, b"not found\n", "text/plain")

    def send_bytes(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_pattern(self, kind, n):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if kind == "bytes":
            self.send_header("Content-Length", str(n))
        elif kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        for piece in pattern(n):
            if kind == "chunked":
                for off in range(0, len(piece), 65536):
                    part = piece[off : off + 65536]
                    self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
            else:
                self.wfile.write(piece)
        if kind == "chunked":
            self.wfile.write(b"0\r\n\r\n")

    # -- pip index (PEP 503) ----------------------------------------------------------------

    def pip(self, path):
        wheel = self.server.lab["wheel"]
        if path.rstrip("/") in ("/simple", ""):
            body = b'<html><body><a href="/simple/labpkg/">labpkg</a></body></html>\n'
            return self.send_bytes(200, body, "text/html")
        if path.rstrip("/") == "/simple/labpkg":
            sha = self.server.lab["wheel_sha256"]
            body = (
                f'<html><body><a href="/files/{wheel}#sha256={sha}">{wheel}</a></body></html>\n'
            ).encode()
            return self.send_bytes(200, body, "text/html")
        if path == "/files/" + wheel:
            with open(os.path.join(self.server.lab["dir"], wheel), "rb") as fd:
                return self.send_bytes(200, fd.read(), "application/octet-stream")
        return self.send_bytes(404, b"not found\n", "text/plain")

    # -- git smart HTTP through git http-backend (CGI, RFC 3875) ----------------------------

    def git(self, path):
        path_info, _, query = path[len("/git") :].partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": os.path.join(self.server.lab["dir"], "git"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_ADDR": self.client_address[0],
            "SERVER_PROTOCOL": "HTTP/1.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
        }
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        body = io.BytesIO()
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" in te or self.headers.get("Content-Length"):
            # Buffer the (small) request: http-backend wants CONTENT_LENGTH or reads to EOF.
            data = self._read_all_body()
            body.write(data)
            env["CONTENT_LENGTH"] = str(len(data))
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        proc = subprocess.run(
            ["git", "http-backend"], input=body.getvalue(), env=env, capture_output=True, timeout=60
        )
        head, _, out = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, out = proc.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    def _read_all_body(self) -> bytes:
        te = self.headers.get("Transfer-Encoding", "").lower()
        if "chunked" not in te:
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))
        out = bytearray()
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline(16)


def make_cert(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cntlm-lab-origin")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as fd:
        fd.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fd:
        fd.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def make_wheel(directory):
    """A minimal valid wheel (PEP 427): labpkg 1.0, one module."""
    name = "labpkg-1.0-py3-none-any.whl"
    files = {
        "labpkg/__init__.py": b'"""cntlm lab package."""\nVALUE = 42\n',
        "labpkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: labpkg\nVersion: 1.0\n",
        "labpkg-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: cntlm-lab\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append("labpkg-1.0.dist-info/RECORD,,")
    files["labpkg-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = os.path.join(directory, name)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
    with open(path, "rb") as fd:
        return name, hashlib.sha256(fd.read()).hexdigest()


def make_git_repo(directory):
    root = os.path.join(directory, "git")
    work = os.path.join(directory, "git-work")
    os.makedirs(root, exist_ok=True)
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=directory)
    ident = ["-c", "user.name=lab", "-c", "user.email=lab@localhost", "-c", "init.defaultBranch=main"]

    def git(*args, cwd=None):
        return subprocess.run(
            ["git", *ident, *args], cwd=cwd, env=env, check=True, capture_output=True
        ).stdout

    git("init", "-q", work)
    with open(os.path.join(work, "README"), "w") as fd:
        fd.write("cntlm lab repository\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "lab commit", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work).decode().strip()
    git("clone", "-q", "--bare", work, os.path.join(root, "lab.git"))
    shutil.rmtree(work)
    return head


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    lab = {"dir": args.dir}
    lab["wheel"], lab["wheel_sha256"] = make_wheel(args.dir)
    lab["git_head"] = make_git_repo(args.dir)
    cert, key = make_cert(args.dir)

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    plain.lab = lab
    tls = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls.lab = lab
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)

    for server in (plain, tls):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(
        json.dumps(
            {
                "http": plain.server_address[1],
                "https": tls.server_address[1],
                "cert": cert,
                "wheel": lab["wheel"],
                "wheel_sha256": lab["wheel_sha256"],
                "git_head": lab["git_head"],
            }
        ),
        flush=True,
    )
    # Serve until the test kills us by PID (or our stdin closes: the test process is gone).
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
