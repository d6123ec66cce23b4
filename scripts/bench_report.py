"""Turns the raw numbers `scripts/bench` collected into the one markdown table (absolute
figures per column, then the ratios ours/CNTLM and ours/parent) and the notes under it."""

import hashlib

NA = "n/a"
DASH = "—"


def sha256_file(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def num(x, digits=0):
    if x is None:
        return DASH
    return f"{x:,.{digits}f}"


def ms(us):
    v = us / 1000.0
    return f"{v:.2f} ms" if v < 10 else (f"{v:.0f} ms" if v < 1000 else f"{v / 1000:.1f} s")


def brief_wrk(res):
    if "failed" in res:
        return res["failed"]
    return (f"{res['rps']:,.0f} req/s, p99 {ms(res['p99_us'])}, {res['errors']} errors, "
            f"{res.get('handshakes', 0)} handshakes, parent saw {res.get('parent_requests')}")


def brief_tunnels(res):
    if "failed" in res:
        return res["failed"]
    held = res.get("held", {})
    return (f"{res['usable']} usable, {res['open_failures']} failed to open, "
            f"{res['use_failures']} failed in use, RSS {held.get('VmRSS_kib')} KiB, "
            f"threads {held.get('threads')}, fds {held.get('fds')} {res.get('reasons') or ''}")


def median_of(runs, key):
    ok = [r for r in runs if "failed" not in r]
    if not ok:
        return runs[-1] if runs else None
    return sorted(ok, key=lambda r: r[key])[len(ok) // 2]


class Cell:
    """What one column shows for one row, and the number its ratios are computed from."""

    def __init__(self, text, value=None):
        self.text = text
        self.value = value


def ratio(a, b):
    if a is None or b is None or b == 0:
        return DASH
    r = a / b
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def wrk_cell(res):
    if res is None:
        return Cell(DASH)
    if "failed" in res:
        return Cell(res["failed"])
    text = f"{res['rps']:,.0f} (p99 {ms(res['p99_us'])}"
    kinds = [(k, "non-2xx" if k == "status" else k) for k in
             ("connect", "read", "write", "timeout", "status")]
    errors = ", ".join(f"{res[k]:,} {name}" for k, name in kinds if res[k])
    if errors:
        text += f"; errors: {errors}"
    return Cell(text + ")", res["rps"])


def per(res, field, scale):
    """`field` per `scale` completed requests of a wrk run, or None."""
    if res is None or "failed" in res or res.get(field) is None or not res["requests"]:
        return None
    return res[field] / res["requests"] * scale


def rows(results, targets):
    """Yields (label, {target key: Cell})."""
    wrk = {k: median_of(v, "rps") for k, v in results["wrk"].items()}
    conns = results["settings"]["conns"]
    for mode, title in (("keep-alive", "keep-alive"), ("close", "`Connection: close`")):
        for c in conns:
            yield (f"1 KiB, {title}, {c:,} conn{'s' if c > 1 else ''}: req/s (p99)",
                   {t.key: wrk_cell(wrk.get(f"{mode}/{c}/{t.key}")) for t in targets})
    ref = 10 if 10 in conns else conns[-1]
    yield (f"100 KiB, keep-alive, {ref:,} conns: req/s (p99)",
           {t.key: wrk_cell(wrk.get(f"keep-alive-100k/{ref}/{t.key}")) for t in targets})
    for mode in ("keep-alive", "close"):
        cells = {}
        for t in targets:
            v = per(wrk.get(f"{mode}/{ref}/{t.key}"), "handshakes", 1000)
            cells[t.key] = Cell(DASH) if t.key == "parent" else Cell(num(v, 1), v)
        yield (f"NTLM handshakes at the parent per 1,000 requests ({mode}, {ref} conns)", cells)
    for mode in ("keep-alive", "close"):
        cells = {}
        for t in targets:
            v = per(wrk.get(f"{mode}/{ref}/{t.key}"), "parent_requests", 1000)
            cells[t.key] = Cell(num(v, 0), v)
        yield (f"Requests seen by the parent per 1,000 client requests ({mode}, {ref} conns)",
               cells)
    cpu_ref = 100 if 100 in conns else conns[-1]
    for mode in ("keep-alive", "close"):
        cells = {}
        for t in targets:
            res = wrk.get(f"{mode}/{cpu_ref}/{t.key}")
            v = None
            if res and "failed" not in res and res.get("cpu_s") is not None and res["good"]:
                v = res["cpu_s"] / res["good"] * 100_000
            cells[t.key] = Cell(num(v, 2), v)
        yield (f"CPU seconds per 100,000 requests of the proxy ({mode}, {cpu_ref} conns; "
               "lower is better)", cells)
    cells = {}
    for t in targets:
        kib = results["peak_rss_kib"].get(t.key)
        cells[t.key] = Cell(num(kib / 1024, 1), kib) if kib else Cell(DASH)
    yield ("Peak RSS (VmHWM) after the wrk runs, MiB (lower is better)", cells)
    for kind, title in (("plain", "plain HTTP"), ("connect", "CONNECT + TLS")):
        cells = {}
        for t in targets:
            res = median_of(results["bulk"].get(f"{kind}/{t.key}", []), "mb_s")
            if res is None:
                cells[t.key] = Cell(DASH)
            elif res["rc"] != 0 or not res["sha_ok"]:
                cells[t.key] = Cell(f"failed (curl {res['rc']}, HTTP {res['http'] or '-'}, "
                                    f"sha256 {'ok' if res['sha_ok'] else 'wrong'})")
            else:
                cells[t.key] = Cell(f"{res['mb_s']:,.0f}", res["mb_s"])
        yield (f"100 MiB download, {title}, MB/s (SHA-256 checked)", cells)
    yield from tunnel_rows(results, targets)
    for field, title, scale, digits in (
            ("startup_s", "Start-up to first accepted connection, ms (lower is better)", 1000, 1),
            ("idle_rss_kib", "Idle RSS after start-up, MiB (lower is better)", 1 / 1024, 1)):
        cells = {}
        for t in targets:
            st = results["startup"].get(t.key)
            v = st[field] * scale if st and st.get(field) is not None else None
            cells[t.key] = Cell(num(v, digits), v)
        yield title, cells


def tunnel_rows(results, targets):
    for n in results.get("tunnel_sizes", []):
        usable, rss, threads, fds = {}, {}, {}, {}
        for t in targets:
            res = results["tunnels"].get(f"{n}/{t.key}")
            if res is None:
                for d in (usable, rss, threads, fds):
                    d[t.key] = Cell(DASH)
                continue
            if "failed" in res:
                usable[t.key] = Cell(res["failed"])
                for d in (rss, threads, fds):
                    d[t.key] = Cell(DASH)
                continue
            failed = res["n"] - res["usable"]
            text = f"{res['usable']:,} ok" + (f", {failed:,} failed" if failed else "")
            usable[t.key] = Cell(text, res["usable"])
            held = res.get("held", {})
            kib = held.get("VmRSS_kib")
            rss[t.key] = Cell(num(kib / 1024, 1), kib) if kib else Cell("exited")
            threads[t.key] = Cell(num(held.get("threads")), held.get("threads"))
            fds[t.key] = Cell(num(held.get("fds")), held.get("fds"))
        yield f"{n:,} CONNECT tunnels opened at once, then used: usable", usable
        yield f"{n:,} tunnels held: RSS of the proxy, MiB (lower is better)", rss
        yield f"{n:,} tunnels held: threads of the proxy", threads
        yield f"{n:,} tunnels held: open fds of the proxy", fds


def render(results, targets):
    by_key = {t.key: t for t in targets}
    ours_na = by_key["ours"].unavailable
    head = ["Measure"] + [t.title for t in targets] + ["ours/CNTLM", "ours/parent"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, cells in rows(results, targets):
        shown = []
        for t in targets:
            cell = cells.get(t.key, Cell(DASH))
            if t.unavailable:
                cells[t.key] = cell = Cell(NA)  # e.g. started but never served: no figures
            shown.append(cell.text)
        o = cells.get("ours", Cell(DASH)).value
        c = cells.get("cntlm", Cell(DASH)).value
        p = cells.get("parent", Cell(DASH)).value
        lines.append("| " + " | ".join([label] + shown + [ratio(o, c), ratio(o, p)]) + " |")
    m, s, v = results["machine"], results["settings"], results["versions"]
    notes = [
        "",
        f"Measured {m['date']} on {m['nproc']} × {m['cpu']}, {m['mem_gib']} GiB RAM, "
        f"Linux {m['kernel']} (load average {m['load_at_start']} at start, "
        f"{m.get('load_after_wrk', '?')} after the wrk runs); loopback only.",
        f"Versions: Squid {v['squid']}, CNTLM {v['cntlm']}, nginx {v['nginx']}, "
        f"wrk {v['wrk']}, curl {v['curl']}, ours {v['ours']}.",
        f"wrk runs of {s['duration']} s"
        + (f", median of {s['repeat']}" if s["repeat"] > 1 else ", one run each")
        + ("; QUICK mode" if s["quick"] else "") + ".",
    ]
    if ours_na:
        notes.append(f"**ours: n/a** — {ours_na}.")
    for key, why in results["unavailable"].items():
        if key != "ours":
            notes.append(f"**{by_key[key].title}: n/a** — {why}.")
    for key_n, res in sorted(results["tunnels"].items()):
        if res.get("reasons"):
            n, key = key_n.split("/")
            reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(res["reasons"].items()))
            notes.append(f"{int(n):,} tunnels, {by_key[key].title}: failures by reason: "
                         f"{reasons}.")
    notes.extend(results["notes"])
    for t in targets:
        # A proxy that answers without going through the parent would make every figure
        # meaningless; CNTLM shows ~2,000 here (each request is first sent without auth).
        for key, runs in results["wrk"].items():
            if not key.endswith("/" + t.key) or t.key == "parent" or t.unavailable:
                continue
            v = per(median_of(runs, "rps"), "parent_requests", 1000)
            if v is not None and v < 900:
                notes.append(f"**{t.title} may bypass the parent**: the parent saw {v:,.0f} "
                             f"requests per 1,000 in the {key.rsplit('/', 1)[0]} run.")
                break
    return "\n".join(lines + [f"- {n}" if n else n for n in notes]) + "\n"
