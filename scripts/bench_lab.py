"""The benchmark lab: packages, free ports, processes started and stopped by PID, and the
origin (nginx), the parent (Squid with ntlm_fake_auth) and the two proxies under test.

Used by `scripts/bench`; never imported by the test suite. Everything listens on 127.0.0.1
only. Every process started here is recorded and stopped by PID (and its own process group,
which it leads) when the benchmark exits, whatever the reason.
"""

import hashlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

LOOPBACK = "127.0.0.1"

# Debian package -> a file that proves it is installed.
PACKAGES = {
    "nginx-light": "/usr/sbin/nginx",
    "squid": "/usr/lib/squid/ntlm_fake_auth",
    "cntlm": "/usr/sbin/cntlm",
    "wrk": "/usr/bin/wrk",
    "curl": "/usr/bin/curl",
    "openssl": "/usr/bin/openssl",
    "python3": "/usr/bin/python3",
}

# What a package's maintainer script may start on install, and where its pidfile is.
SERVICES = {
    "nginx-light": ("nginx", ["/run/nginx.pid"]),
    "squid": ("squid", ["/run/squid.pid", "/var/run/squid.pid"]),
    "cntlm": ("cntlm", ["/run/cntlm/cntlm.pid", "/var/run/cntlm/cntlm.pid"]),
}


def log(msg):
    """One progress line on stderr (stdout carries the table)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_packages():
    """Installs the missing lab packages with apt-get, then stops any system service the
    install started (a Debian cntlm or squid service would sit on 3128)."""
    missing = [pkg for pkg, path in PACKAGES.items() if not os.path.exists(path)]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"bench: missing packages {missing}; run as root or install them first")
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    for pkg in missing:
        if pkg in SERVICES:
            stop_system_service(*SERVICES[pkg])


def stop_system_service(name, pidfiles):
    """Stops and disables the service instance a fresh install may have started: through
    systemctl or service when they exist, else by its pidfile. Only that instance."""
    if shutil.which("systemctl") and os.path.isdir("/run/systemd/system"):
        subprocess.run(["systemctl", "disable", "--now", name], capture_output=True)
    elif shutil.which("service"):
        subprocess.run(["service", name, "stop"], capture_output=True)
    for pidfile in pidfiles:
        try:
            with open(pidfile) as f:
                pid = int(f.read().split()[0])
            if comm_of(pid) == name:
                os.kill(pid, signal.SIGTERM)
                log(f"stopped the {name} system service (pid {pid})")
        except (OSError, ValueError, IndexError):
            pass


def comm_of(pid):
    """The process name of `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def raise_fd_limit():
    """Raises our soft RLIMIT_NOFILE to the hard limit (children inherit it) and returns the
    hard limit, which caps how many tunnels a proxy can hold (two fds each)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (1_048_576, 262_144, 65_536):
        if want > hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
                return want
            except (ValueError, OSError):
                continue
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port():
    """A port the OS says is free right now on 127.0.0.1 (bind 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout):
    """Polls a TCP connect to `port` every millisecond until it succeeds, `proc` exits or
    `timeout` passes. Returns seconds from the call to the first accepted connection, or
    raises StartError saying why not."""
    start = time.monotonic()
    while True:
        if proc is not None and proc.poll() is not None:
            raise StartError(f"exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return time.monotonic() - start
        except OSError:
            pass
        if time.monotonic() - start > timeout:
            raise StartError(f"not listening on {port} after {timeout:.0f} s")
        time.sleep(0.001)


class StartError(Exception):
    """A process did not start or did not serve; the message says why."""


class Processes:
    """Every process the benchmark started, so they can all be stopped by PID."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, logfile, **kw):
        """Starts `argv` as the leader of a new session (so a terminal ^C reaches only us
        and we stop it ourselves), stdout+stderr to `logfile`."""
        out = open(logfile, "ab")
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, **kw)
        out.close()
        proc.bench_name = name
        self.procs.append(proc)
        return proc

    def stop(self, proc, grace=3.0):
        """SIGTERM to the process and its group, SIGKILL after `grace` seconds."""
        if proc not in self.procs:
            return
        self.procs.remove(proc)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is None:
                _signal_group(proc.pid, sig)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    continue
            # Helpers (Squid's auth helpers, nginx workers) share the leader's group.
            _signal_group(proc.pid, signal.SIGKILL)
            break

    def stop_all(self):
        """Stops everything still running, newest first."""
        for proc in reversed(list(self.procs)):
            self.stop(proc)


def _signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def proc_stats(pid):
    """RSS, peak RSS (KiB), threads, open fds and CPU seconds (utime+stime) of `pid`."""
    stats = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    stats[key] = int(value.split()[0])
                elif key == "Threads":
                    stats[key] = int(value)
        stats["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        stats["cpu_s"] = cpu_seconds(pid)
    except (OSError, ValueError):
        return None
    return stats


def cpu_seconds(pid):
    """utime+stime of `pid` (all its threads) in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: fields restart after the last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def write_file(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class Origin:
    """nginx serving /1k, /100k and /100m over HTTP and HTTPS (self-signed)."""

    FILES = {"1k": 1024, "100k": 100 * 1024, "100m": 100 * 1024 * 1024}

    def __init__(self, procs, workdir):
        self.dir = os.path.join(workdir, "origin")
        os.makedirs(os.path.join(self.dir, "www"), mode=0o755)
        self.sha256 = {}
        for name, size in self.FILES.items():
            digest = hashlib.sha256()
            with open(os.path.join(self.dir, "www", name), "wb") as f:
                left = size
                while left:
                    chunk = os.urandom(min(left, 1 << 20))
                    digest.update(chunk)
                    f.write(chunk)
                    left -= len(chunk)
            os.chmod(os.path.join(self.dir, "www", name), 0o644)
            self.sha256[name] = digest.hexdigest()
        self.http_port = free_port()
        self.tls_port = free_port()
        cert, key = (os.path.join(self.dir, n) for n in ("cert.pem", "key.pem"))
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
            check=True, capture_output=True)
        conf = os.path.join(self.dir, "nginx.conf")
        write_file(conf, f"""
worker_processes 1;
daemon off;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    client_body_temp_path {self.dir}/tmp_body;
    proxy_temp_path {self.dir}/tmp_proxy;
    fastcgi_temp_path {self.dir}/tmp_fcgi;
    uwsgi_temp_path {self.dir}/tmp_uwsgi;
    scgi_temp_path {self.dir}/tmp_scgi;
    server {{
        listen {LOOPBACK}:{self.http_port} backlog=4096;
        listen {LOOPBACK}:{self.tls_port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {self.dir}/www;
    }}
}}
""")
        self.proc = procs.start("nginx", ["nginx", "-p", self.dir, "-c", conf],
                                os.path.join(self.dir, "nginx.out"))
        wait_listening(self.http_port, self.proc, 10)
        wait_listening(self.tls_port, self.proc, 10)

    def url(self, name):
        return f"http://{LOOPBACK}:{self.http_port}/{name}"

    def tls_url(self, name):
        return f"https://{LOOPBACK}:{self.tls_port}/{name}"


# Counts NTLM handshakes at the parent: Squid's stateful NTLM helper protocol starts every
# handshake with one "YR <type1>" line, so one byte is appended per YR line (O_APPEND writes
# from all helper processes are atomic) and the count is the file's size. Nothing of the
# NTLM messages themselves is written anywhere.
COUNTING_HELPER = """\
import os, subprocess, sys
count = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
helper = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
src, dst = sys.stdin.buffer, sys.stdout.buffer
while True:
    line = src.readline()
    if not line:
        break
    if line.startswith(b"YR"):
        os.write(count, b".")
    helper.stdin.write(line)
    helper.stdin.flush()
    dst.write(helper.stdout.readline())
    dst.flush()
helper.stdin.close()
helper.wait()
"""


class Parent:
    """Squid 5 as the corporate parent: port `auth_port` demands NTLM (ntlm_fake_auth, which
    accepts anything: speed only), port `open_port` is the same Squid without authentication
    (the "parent alone" column). CONNECT is allowed to the origin's TLS port and the echo
    port; loopback destinations are allowed; nothing is cached."""

    def __init__(self, procs, workdir, connect_ports):
        self.procs = procs
        self.dir = os.path.join(workdir, "squid")
        os.makedirs(self.dir, mode=0o755)
        self.auth_port = free_port()
        self.open_port = free_port()
        self.count_file = os.path.join(self.dir, "handshakes")
        write_file(self.count_file, "", 0o666)
        helper = os.path.join(self.dir, "count_helper.py")
        write_file(helper, COUNTING_HELPER, 0o755)
        ports = " ".join(str(p) for p in connect_ports)
        self.conf = os.path.join(self.dir, "squid.conf")
        write_file(self.conf, f"""
http_port {LOOPBACK}:{self.auth_port} name=auth
http_port {LOOPBACK}:{self.open_port} name=open
pid_filename {self.dir}/squid.pid
cache_log {self.dir}/cache.log
access_log none
cache_store_log none
coredump_dir {self.dir}
cache deny all
cache_mem 16 MB
max_filedescriptors 1048576
shutdown_lifetime 0 seconds
visible_hostname bench-parent
forwarded_for delete
via off
auth_param ntlm program /usr/bin/python3 {helper} {self.count_file} /usr/lib/squid/ntlm_fake_auth
auth_param ntlm children 64 startup=16 idle=8
auth_param ntlm keep_alive on
acl bench_ports port {ports}
acl open_port myportname open
acl authed proxy_auth REQUIRED
http_access allow localhost manager
http_access deny manager
http_access deny CONNECT !bench_ports
http_access allow open_port localhost
http_access allow authed localhost
http_access deny all
""")
        shutil.chown(self.dir, user="proxy", group="proxy")
        self.start()

    def start(self):
        log_file = os.path.join(self.dir, "squid.out")
        self.proc = self.procs.start("squid", ["squid", "-N", "-f", self.conf], log_file)
        wait_listening(self.auth_port, self.proc, 30)
        wait_listening(self.open_port, self.proc, 30)

    def ensure_running(self):
        if self.proc.poll() is not None:
            log(f"squid exited with {self.proc.returncode}; restarting it")
            self.procs.stop(self.proc)
            self.start()

    def handshakes(self):
        """NTLM handshakes the parent has started so far (YR lines seen by the helpers)."""
        return os.path.getsize(self.count_file)

    def requests(self):
        """client_http.requests from Squid's cache manager, or None when unavailable."""
        try:
            out = subprocess.run(
                ["curl", "-s", "--max-time", "5", "--noproxy", "*",
                 f"http://{LOOPBACK}:{self.open_port}/squid-internal-mgr/counters"],
                capture_output=True, text=True, timeout=10).stdout
        except subprocess.TimeoutExpired:
            return None
        for line in out.splitlines():
            if line.startswith("client_http.requests ="):
                return int(line.split("=")[1])
        return None


PROXY_CONF = """\
# Written by scripts/bench: the same file for CNTLM 0.92.3 and ours.
Username    bench
Domain      BENCH
Password    bench-password
Auth        NTLM
Proxy       {parent}
Listen      {listen}
"""


class Proxy:
    """One proxy under test (Debian's cntlm or ours), run in the foreground with `-f -c`."""

    def __init__(self, label, binary, procs, workdir, parent_port):
        self.label = label
        self.binary = binary
        self.procs = procs
        self.dir = os.path.join(workdir, label)
        os.makedirs(self.dir, exist_ok=True)
        self.parent_port = parent_port
        self.proc = None
        self.port = None

    def start(self):
        """Starts it on a fresh free port; returns seconds to the first accepted connection.
        Raises StartError (with the log's last line) when it exits or never listens."""
        self.port = free_port()
        conf = os.path.join(self.dir, "proxy.conf")
        write_file(conf, PROXY_CONF.format(parent=f"{LOOPBACK}:{self.parent_port}",
                                           listen=f"{LOOPBACK}:{self.port}"), 0o600)
        self.log_file = os.path.join(self.dir, "proxy.log")
        self.proc = self.procs.start(self.label, [self.binary, "-f", "-c", conf],
                                     self.log_file)
        try:
            return wait_listening(self.port, self.proc, 10)
        except StartError as e:
            self.stop()
            raise StartError(f"{e}{self.last_log_line()}") from None

    def last_log_line(self):
        try:
            with open(self.log_file, errors="replace") as f:
                lines = [line.strip() for line in f if line.strip()]
            # A warning or error says more than the last request line does.
            loud = [ln for ln in lines if " WARN " in ln or " ERROR " in ln]
            pick = (loud or lines)[-1:]
            return f" (its log: {pick[0][:200]})" if pick else ""
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None
