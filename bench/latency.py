"""Dry-run latency: `briefcast publish one-brief` with `briefcast up` running vs without.

Run: .venv/bin/python bench/latency.py [--rounds 5] [--brief seeds/001_*.txt]

Everything happens in a temp folder (its own database, Prefect home and state folder):

1. without a server: each `briefcast publish` starts a temporary Prefect server of its own
   (killed with the command) and runs the flow against it;
2. `briefcast up` (a long-lived server, a worker), then the same command, which finds the
   server and runs the flow against it; `briefcast down` at the end.

The two take turns --rounds times (the machine's speed drifts); the table gives the median
wall-clock time from command to previews, the ratio, and the goal (<= 3 s with `up`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
GOAL_SECONDS = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {shlex.join(args)}: {done.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--brief", type=Path, default=sorted((ROOT / "seeds").glob("001_*"))[0])
    args = parser.parse_args()
    briefcast = str(BIN / "briefcast")
    with tempfile.TemporaryDirectory(prefix="briefcast-latency-") as folder:
        work = Path(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIEFCAST_", "PREFECT_"))}
        env |= {
            "BRIEFCAST_DATABASE__URL": f"sqlite:///{work / 'b.db'}",
            "BRIEFCAST_WORKFLOW__STATE_DIR": str(work / "state"),
            "BRIEFCAST_WORKFLOW__PORT": str(free_port()),
            "PREFECT_HOME": str(work / "prefect-home"),
        }
        publish = [briefcast, "publish", str(args.brief.absolute()), "--out", str(work / "out")]
        timed(publish, env, work)  # warm the caches and the temporary server's database
        without: list[float] = []
        with_up: list[float] = []
        for _ in range(args.rounds):
            without.append(timed(publish, env, work))
            timed([briefcast, "up"], env, work)
            try:
                timed(publish, env, work)  # the first run against a fresh server: not counted
                with_up.append(timed(publish, env, work))
            finally:
                timed([briefcast, "down"], env, work)
    a, b = statistics.median(without), statistics.median(with_up)
    print(f"dry-run publish of {args.brief.name}, median of {args.rounds} rounds (wall clock):")
    print(f"  without a server (temporary server per command): {a:6.2f} s")
    print(f"  with `briefcast up` running: {b:6.2f} s  (goal <= {GOAL_SECONDS} s)")
    print(f"  ratio up / without: {b / a:.2f}; rounds up: {', '.join(f'{x:.2f}' for x in with_up)}")
    print(f"reproduce: {shlex.join([sys.executable, *sys.argv])}")
    sys.exit(0 if b <= GOAL_SECONDS else 1)


if __name__ == "__main__":
    main()
