#!/usr/bin/env python3
"""Two small load tools for `scripts/bench`, run as separate processes so their sockets do
not count against the benchmark driver's or the proxy's file descriptors:

  bench_tunnels.py echo PORT
      A TCP echo server on 127.0.0.1:PORT (the CONNECT destination). Prints "ready".

  bench_tunnels.py tunnels PROXY_PORT TARGET_PORT N PROXY_PID [OPEN_TIMEOUT] [USE_TIMEOUT]
      Opens N CONNECT tunnels through 127.0.0.1:PROXY_PORT to 127.0.0.1:TARGET_PORT all at
      once, waits until every one succeeded or failed, samples the proxy's memory, threads
      and fds from /proc/PROXY_PID while all of them are held, then sends one byte through
      each open tunnel and expects it back. Prints one JSON object.

Python 3.9+ standard library only.
"""

import asyncio
import json
import os
import resource
import sys
import time

HOST = "127.0.0.1"


def raise_fd_limit():
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def echo_server(port):
    async def echo(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, HOST, port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def open_tunnel(proxy_port, target_port):
    """One CONNECT; returns (reader, writer) or raises with the reason."""
    reader, writer = await asyncio.open_connection(HOST, proxy_port)
    target = f"{HOST}:{target_port}"
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        writer.close()
        raise ConnectionError("status " + (status[1].decode(errors="replace")
                                           if len(status) > 1 else "missing"))
    return reader, writer


async def use_tunnel(reader, writer, payload):
    writer.write(payload)
    await writer.drain()
    echoed = await reader.readexactly(len(payload))
    if echoed != payload:
        raise ConnectionError("wrong bytes echoed")


def proc_sample(pid):
    sample = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    sample[key + "_kib"] = int(value.split()[0])
                elif key == "Threads":
                    sample["threads"] = int(value)
        sample["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        sample["gone"] = True
    return sample


def reason_of(exc):
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "closed"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc)[:60] or type(exc).__name__


async def tunnels(proxy_port, target_port, n, pid, open_timeout, use_timeout):
    start = time.monotonic()

    async def one():
        return await asyncio.wait_for(open_tunnel(proxy_port, target_port), open_timeout)

    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    open_s = time.monotonic() - start
    held = [r for r in results if isinstance(r, tuple)]
    reasons = {}
    for r in results:
        if not isinstance(r, tuple):
            reasons[reason_of(r)] = reasons.get(reason_of(r), 0) + 1
    sample = proc_sample(pid)

    async def use(pair):
        await asyncio.wait_for(use_tunnel(*pair, b"x"), use_timeout)

    used = await asyncio.gather(*(use(p) for p in held), return_exceptions=True)
    use_failures = sum(1 for u in used if isinstance(u, BaseException))
    for u in used:
        if isinstance(u, BaseException):
            key = "use: " + reason_of(u)
            reasons[key] = reasons.get(key, 0) + 1
    for _reader, writer in held:
        writer.close()
    return {
        "n": n,
        "opened": len(held),
        "open_failures": n - len(held),
        "use_failures": use_failures,
        "usable": len(held) - use_failures,
        "open_seconds": round(open_s, 3),
        "reasons": reasons,
        "held": sample,
    }


def main(argv):
    raise_fd_limit()
    if len(argv) == 2 and argv[0] == "echo":
        asyncio.run(echo_server(int(argv[1])))
    elif len(argv) in (5, 6, 7) and argv[0] == "tunnels":
        proxy_port, target_port, n, pid = (int(a) for a in argv[1:5])
        open_timeout = float(argv[5]) if len(argv) > 5 else 30.0
        use_timeout = float(argv[6]) if len(argv) > 6 else 10.0
        result = asyncio.run(tunnels(proxy_port, target_port, n, pid, open_timeout,
                                     use_timeout))
        print(json.dumps(result), flush=True)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
