"""``briefcast serve`` against nginx on the same public folder: requests per second with wrk.

Run: .venv/bin/python bench/serve.py [--duration 10] [--connections 64] [--rounds 3]
     (or `make bench-serve`, which installs wrk and nginx from Debian when missing)

Everything stays on 127.0.0.1, in a temp folder:

1. The public site: the five seed briefs, each archived ten times under its own id and date
   (50 briefs: a full feed, ``[feeds] max_items``), written by ``briefcast.site`` into
   ``public/`` the way a publish writes it (a symlink to the live version).
2. ``briefcast serve`` (one uvicorn worker, access log off) and nginx (one worker process,
   ``daemon off``, access log off, sendfile on, its pid, logs and temp files in the temp
   folder, keep-alive as long as wrk wants) serve that same folder on two loopback ports.
3. wrk, for ``--duration`` seconds and ``--connections`` connections, on each of them in
   turn, ``--rounds`` times (this machine's speed drifts, so each ratio pairs neighbouring
   runs, and the medians count): a full GET of ``/en/rss.xml`` (no Accept-Encoding: the
   bytes as they are), and a revalidation of it (``If-None-Match`` with that server's own
   ETag: a 304).
4. With two CPUs or more, each server is pinned to CPU 0 and wrk to CPU 1 (``taskset``), so
   the servers get one core each and wrk never competes with them.
5. A table: requests/s of both, side by side, and the ratios (goals: 304 >= 0.5x nginx,
   full GET >= 0.3x), and the command that reproduces the run. ``--profile`` also records
   the server under the 304 load with py-spy (``pip install py-spy``) into a speedscope
   file and prints its top functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
SECRET = "bench-secret-not-for-production"
PATH = "/en/rss.xml"
GOALS = {"full GET": 0.3, "304 (If-None-Match)": 0.5}


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/local/sbin") if (p := Path(d) / name).exists()),
        None,
    )
    if found is None:
        raise BenchError(f"{name} not found: `make bench-serve` as root installs it (apt-get)")
    return found


# --- the site ---------------------------------------------------------------------------


def settings_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
    return env | {
        "BRIEFCAST_DATABASE__URL": f"sqlite:///{tmp / 'bench.db'}",
        "BRIEFCAST_SITE__PUBLIC_DIR": str(tmp / "public"),
        "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET": SECRET,
    }


def build_public(tmp: Path) -> Path:
    """Fifty published briefs (the seeds, ten times each), written as a publish writes the
    site; returns public_dir."""
    for key, value in settings_env(tmp).items():
        if key.startswith("BRIEFCAST_"):
            os.environ[key] = value
    from briefcast import pipeline, site
    from briefcast.config import load_settings
    from briefcast.store import Store

    settings = load_settings()
    seeds = pipeline.read(sorted((ROOT / "seeds").glob("*.txt")), settings)
    start = datetime(2026, 1, 1, 9, 0, tzinfo=ZoneInfo("Europe/Rome"))
    briefs = [
        dataclasses.replace(
            brief, id=f"{brief.id[:60]}-{n}", date=start + timedelta(hours=n * 7 + i)
        )
        for n in range(10)
        for i, brief in enumerate(seeds)
    ]
    with Store(settings.database.url) as store:
        store.archive(briefs, published=True, tz=settings.site.tz)
        site.update_site(store, settings)
    return settings.site.public_dir


# --- the servers ------------------------------------------------------------------------

NGINX_CONF = """\
daemon off;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    include {mime};
    default_type application/octet-stream;
    types {{ application/rss+xml rss.xml; application/feed+json feed.json; }}
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 65;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    server {{
        listen {host}:{port};
        root {public};
        index index.html;
        etag on;
        location ~ \\.xml$ {{ add_header Cache-Control "public, max-age=300, must-revalidate"; }}
    }}
}}
"""


def pinned(cpu: int) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def wait_until_up(port: int, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} at start")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{what} did not listen on {HOST}:{port} within {timeout:.0f} s")


@contextmanager
def running(cmd: Sequence[str], port: int, what: str, **kw) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, **kw
    )
    try:
        wait_until_up(port, proc, what)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def nginx(tmp: Path, public: Path, port: int) -> tuple[list[str], Path]:
    mime = Path("/etc/nginx/mime.types")
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",  # the worker must read the temp dir
            tmp=tmp,
            mime=mime if mime.exists() else "/dev/null",
            host=HOST,
            port=port,
            public=public.resolve(),
        )
    )
    return [
        tool("nginx"),
        "-c",
        str(conf),
        "-p",
        str(tmp),
        "-e",
        str(tmp / "nginx-error.log"),
    ], conf


def head(port: int, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], int]:
    request = urllib.request.Request(f"http://{HOST}:{port}{PATH}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, len(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, 0


# --- wrk --------------------------------------------------------------------------------


def wrk(port: int, args: argparse.Namespace, headers: dict[str, str]) -> float:
    cmd = [
        *pinned(1),
        tool("wrk"),
        "-t1",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        *(x for k, v in headers.items() for x in ("-H", f"{k}: {v}")),
        f"http://{HOST}:{port}{PATH}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if m is None:
        raise BenchError(f"no Requests/sec in wrk's output:\n{out}")
    errors = re.search(r"Socket errors: (.*)", out)
    non = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non or errors:
        print(f"  note: wrk on :{port}: {(non or errors)[0]}")  # type: ignore[index]
    return float(m[1])


def profile(pid: int, tmp: Path, port: int, args: argparse.Namespace, etag: str) -> None:
    spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(spy).exists():
        print("--profile: py-spy not found (pip install py-spy)")
        return
    out = tmp / "serve-304.speedscope.json"
    rec = subprocess.Popen(
        [spy, "record", "-p", str(pid), "-o", str(out), "-f", "speedscope", "-r", "200",
         "-d", str(args.duration), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(1.0)
    wrk(port, args, {"If-None-Match": etag})
    rec.wait(args.duration + 30)
    if not out.exists():
        why = rec.stderr.read().decode()[:300] if rec.stderr else ""
        print(f"--profile: py-spy wrote nothing ({why})")
        return
    data = json.loads(out.read_text())
    frames = data["shared"]["frames"]
    selves: dict[str, float] = {}
    totals: dict[str, float] = {}
    samples = 0
    for prof in data["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            samples += weight
            if stack:
                leaf = frames[stack[-1]]
                name = f"{leaf['name']} ({Path(leaf.get('file', '?')).name}:{leaf.get('line', 0)})"
                selves[name] = selves.get(name, 0) + weight
            for name in {
                f"{frames[i]['name']} ({Path(frames[i].get('file', '?')).name})" for i in stack
            }:
                totals[name] = totals.get(name, 0) + weight
    print(f"\npy-spy, 304 load ({samples} samples; the speedscope file: {out}):")
    print("  self time, top 12:")
    for name, w in sorted(selves.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {100 * w / samples:5.1f}%  {name}")
    print("  inclusive time of the request's stages:")
    stages = ("StaticSite.__call__", "run_asgi", "RequestResponseCycle.send", "data_received")
    for name, w in sorted(totals.items(), key=lambda kv: -kv[1]):
        if name.startswith(stages):
            print(f"    {100 * w / samples:5.1f}%  {name}")


# --- the run ----------------------------------------------------------------------------


def reproduce(args: argparse.Namespace) -> str:
    parts = [
        ".venv/bin/python",
        "bench/serve.py",
        f"--duration {args.duration}",
        f"--connections {args.connections}",
        f"--rounds {args.rounds}",
    ]
    if args.profile:
        parts.append("--profile")
    return " ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="turns of each server")
    parser.add_argument("--profile", action="store_true", help="py-spy under the 304 load")
    args = parser.parse_args()
    try:
        for name in ("wrk", "nginx"):
            tool(name)
        with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
            return run(Path(folder), args)
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"bench/serve.py: {exc}", file=sys.stderr)
        return 1


def run(tmp: Path, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    public = build_public(tmp)
    size = (public / PATH.lstrip("/")).stat().st_size
    files = sum(1 for p in public.resolve().rglob("*") if p.is_file())
    took = time.perf_counter() - started
    print(f"site: {files} files, {PATH} {size:,} bytes (built in {took:.1f} s)")
    ports = {"briefcast": free_port(), "nginx": free_port()}
    serve_cmd = [
        *pinned(0),
        str(BIN / "briefcast"),
        "serve",
        "--host", HOST,
        "--port", str(ports["briefcast"]),
        "--workers", "1",
        "--no-access-log",
    ]  # fmt: skip
    nginx_cmd, _ = nginx(tmp, public, ports["nginx"])
    results: dict[str, dict[str, list[float]]] = {
        name: {test: [] for test in GOALS} for name in ports
    }
    with (
        running(
            serve_cmd,
            ports["briefcast"],
            "briefcast serve",
            # wrk's connections all come from one address: lift the per-client cap (nginx
            # here has no limit_conn either).
            env=settings_env(tmp)
            | {"BRIEFCAST_SERVE__MAX_CONNECTIONS_PER_CLIENT": str(max(64, args.connections))},
            cwd=tmp,
        ) as serve,
        running([*pinned(0), *nginx_cmd], ports["nginx"], "nginx"),
    ):
        etags = {}
        for name, port in ports.items():
            status, headers, length = head(port)
            if status != 200 or length != size:
                raise BenchError(f"{name}: GET {PATH} gave {status}, {length} bytes")
            etags[name] = headers["etag"]
            status, _, _ = head(port, {"If-None-Match": etags[name]})
            if status != 304:
                raise BenchError(f"{name}: If-None-Match gave {status}, not 304")
        cpus = "server on CPU 0, wrk on CPU 1" if pinned(0) else "not pinned (one CPU)"
        print(
            f"wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds; "
            f"one worker each; {cpus}"
        )
        for port in ports.values():  # warm up: the servers' caches, the page cache
            wrk(port, argparse.Namespace(connections=args.connections, duration=2), {})
        for r in range(args.rounds):
            for test in GOALS:  # the two servers back to back: each ratio pairs neighbours
                for name, port in ports.items():
                    headers = {"If-None-Match": etags[name]} if test.startswith("304") else {}
                    results[name][test].append(wrk(port, args, headers))
            print(
                f"  round {r + 1}: "
                + "; ".join(
                    f"{test}: briefcast {results['briefcast'][test][-1]:,.0f}, "
                    f"nginx {results['nginx'][test][-1]:,.0f} req/s"
                    for test in GOALS
                )
            )
        if args.profile:
            profile(serve.pid, tmp, ports["briefcast"], args, etags["briefcast"])

    print()
    rows = [("requests/s (median)", "briefcast serve", "nginx", "ratio", "goal", "per round")]
    failed = False
    for test, goal in GOALS.items():
        ours, theirs = results["briefcast"][test], results["nginx"][test]
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        ratio = statistics.median(ours) / statistics.median(theirs)
        failed |= ratio < goal
        rows.append(
            (
                f"{test} {PATH}",
                f"{statistics.median(ours):,.0f}",
                f"{statistics.median(theirs):,.0f}",
                f"{ratio:.2f}",
                f">= {goal:.1f} {'ok' if ratio >= goal else 'MISSED'}",
                " ".join(f"{x:.2f}" for x in ratios),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\nreproduce: {reproduce(args)}")
    return 0 if not failed else 2


if __name__ == "__main__":
    sys.exit(main())
