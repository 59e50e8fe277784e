"""The scale-out send: 100,000 subscribers through `briefcast up` with one worker, then two.

Run: .venv/bin/python bench/fleet.py [--subscribers 100000] [--batch 10000] [--connections 4]
     (Postfix's smtp-sink must be installed: `make bench-deps`)

Everything on loopback, in a temp folder, against Postfix's ``smtp-sink`` (bench/send.py's):

1. one SQLite database with --subscribers active subscribers (``briefcast subscribers
   import``), copied fresh for each configuration;
2. for workers in (1, 2): ``briefcast up`` (its own Prefect server, that many process workers,
   ``runs_per_worker`` 2: a send holds one slot, so one worker sends one batch at a time and
   two workers three), ``briefcast review`` of seed 001, ``briefcast approve``; the clock runs
   from the approval to the review's state ``sent``; the sink's own counter gives the rate
   while messages flowed;
3. CPU seconds per worker: the worker's process and every flow-run process it ran (reaped:
   their time is in the worker's ``cutime``), read from /proc before ``briefcast down``.

This machine has 2 cores, shared by the sink, the Prefect server and the workers: the second
worker can add at most what the first leaves idle. The table says what it did.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def _bench_send() -> Any:
    spec = importlib.util.spec_from_file_location("bench_send", ROOT / "bench" / "send.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_send"] = module
    spec.loader.exec_module(module)
    return module


def cpu_with_children(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime: fields 14-17 of stat (12-15 after the name)
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


def briefcast(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(BIN / "briefcast"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        sys.exit(f"briefcast {shlex.join(args)}: {done.stderr.strip()[-400:]}")
    return done.stdout


def review_state(database: Path, brief_id: str | None) -> tuple[str, str] | None:
    from briefcast import reviews
    from briefcast.store import Store

    with Store(f"sqlite:///{database}") as store:
        for r in reviews.listed(store, ("waiting", "approved", "sending", "sent", "failed")):
            if brief_id is None or r.brief_id == brief_id:
                return r.brief_id, r.state
    return None


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def one(
    workers: int, args: argparse.Namespace, template: Path, work: Path, sink: Any, bs: Any
) -> dict[str, Any]:
    folder = work / f"workers-{workers}"
    folder.mkdir()
    database = folder / "briefcast.db"
    shutil.copy(template, database)
    env = bs.base_env(folder) | {
        "BRIEFCAST_DATABASE__URL": f"sqlite:///{database}",
        "BRIEFCAST_SMTP__HOST": "127.0.0.1",
        "BRIEFCAST_SMTP__PORT": str(sink.port),
        "BRIEFCAST_SMTP__STARTTLS": "false",
        "BRIEFCAST_DELIVERY__POOL_SIZE": str(args.connections),
        "BRIEFCAST_DELIVERY__RATE_PER_SECOND": "0",
        "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET": "bench-dummy-unsubscribe-secret-not-real",
        "BRIEFCAST_SITE__PUBLIC_DIR": str(folder / "public"),
        "BRIEFCAST_WORKFLOW__STATE_DIR": str(folder / "state"),
        "BRIEFCAST_WORKFLOW__OUT": str(folder / "out"),
        "BRIEFCAST_WORKFLOW__WORKERS": str(workers),
        "BRIEFCAST_WORKFLOW__PORT": str(bs.free_port()),
        "BRIEFCAST_WORKFLOW__SEND_BATCH": str(args.batch),
        "BRIEFCAST_WORKFLOW__RELAY_CONNECTIONS": str(args.connections * 4),
        "PREFECT_HOME": str(folder / "prefect-home"),
    }
    brief = folder / "brief.txt"
    shutil.copy(sorted((ROOT / "seeds").glob("001_*"))[0], brief)
    briefcast(["up"], env, folder)
    try:
        state = json.loads((folder / "state" / "up.json").read_text())
        briefcast(["review", str(brief)], env, folder)
        brief_id, _ = wait("the review", lambda: review_state(database, None), 120)
        since, cpu0 = sink.messages, bs.cpu_seconds(sink.proc.pid)
        worker_cpu0 = {pid: cpu_with_children(pid) for pid in state["workers"]}
        started = time.perf_counter()
        briefcast(["approve", brief_id], env, folder)
        found = wait(
            "the send",
            lambda: (s := review_state(database, brief_id)) and s[1] in ("sent", "failed") and s,
            3600,
        )
        seconds = time.perf_counter() - started
        window = sink.window(since, args.subscribers, cpu0)
        worker_cpu = [cpu_with_children(pid) - worker_cpu0[pid] for pid in state["workers"]]
    finally:
        briefcast(["down"], env, folder, timeout=120)
    return {
        "workers": workers,
        "state": found[1],
        "seconds": seconds,
        "received": window.messages,
        "flow_rate": window.rate,
        "overall": window.messages / seconds,
        "worker_cpu": worker_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    bs = _bench_send()
    with tempfile.TemporaryDirectory(prefix="briefcast-fleet-") as folder:
        work = Path(folder)
        template = work / "subscribers.db"
        csv_path = work / "subscribers.csv"
        bs.write_subscribers(csv_path, args.subscribers)
        env = bs.base_env(work) | {"BRIEFCAST_DATABASE__URL": f"sqlite:///{template}"}
        briefcast(["subscribers", "import", str(csv_path)], env, work)
        results = []
        with bs.running_sink(args.connections * 3) as sink:
            for workers in (1, 2):
                results.append(one(workers, args, template, work, sink, bs))
    print(
        f"{args.subscribers:,} subscribers, batches of {args.batch:,}, {args.connections} "
        "connections per batch, into smtp-sink, 2 cores:"
    )
    print(
        "workers  state  seconds  received  msg/s (approve→sent)  msg/s (while flowing)  "
        "CPU s per worker"
    )
    for r in results:
        cpu = ", ".join(f"{c:.1f}" for c in r["worker_cpu"])
        flowing = f"{r['flow_rate']:,.0f}" if r["flow_rate"] else "-"
        print(
            f"{r['workers']:>7}  {r['state']:>5}  {r['seconds']:7.1f}  {r['received']:>8,}  "
            f"{r['overall']:>20,.0f}  {flowing:>21}  {cpu}"
        )
    one_w, two_w = results
    print(f"two workers / one: {one_w['seconds'] / two_w['seconds']:.2f}x faster (approve→sent)")
    print(f"reproduce: {shlex.join([sys.executable, *sys.argv])}")


if __name__ == "__main__":
    main()
