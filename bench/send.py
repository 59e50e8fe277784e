"""Live SMTP delivery throughput and memory, against Postfix's smtp-source on the same sink.

Run: .venv/bin/python bench/send.py [--subscribers 10000] [--connections 4] [--rounds 3]
                                   [--database sqlite|postgresql|both]
     (or `make bench-send`; `make bench-deps` installs Postfix's test tools when missing)

Everything stays on 127.0.0.1 and nothing is written to disk by the sink:

1. Postfix's ``smtp-sink`` listens on a free loopback port and throws every message away
   (``-c`` running counters on a pipe let us count and time what arrives).
2. Reference: ``smtp-source`` sends the briefcast editions of seed 001 (the ``.eml``
   previews of a dry run, in the subscribers' edition mix) over --connections persistent
   connections (``-d``) to that sink.
3. briefcast: a fresh database (SQLite in a temp dir; PostgreSQL: a database of its own on
   a throwaway server started as the tests start theirs, tests/pg_server.py),
   --subscribers generated subscribers (en/it/both) imported with
   ``briefcast subscribers import``, then
   ``briefcast publish seeds/001_*.txt --send --channels email`` with SMTP pointed at the sink,
   STARTTLS off, rate limit and hourly cap out of the way, a pool of --connections.
   briefcast sends from a process of its own, started by the flow: its peak RSS is the one
   that grows with the list, if anything does.
4. Steps 2 and 3 (on each --database: both, by default, when PostgreSQL's initdb and pg_ctl
   are found) take turns --rounds times (a fresh database each round), since this
   machine's speed drifts from one second to the next; each round's ratio pairs
   neighbouring runs, and the medians are what counts.
5. A table: messages/s of each as seen by the sink (first to last message received), the
   ratios to smtp-source (goal >= 0.90) and of PostgreSQL to SQLite (goal >= 0.80), peak
   RSS of the sending process (goal < 150 MB at 100,000 subscribers) and of the CLI that
   runs the Prefect flow, and the command that reproduces the run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin/, where the `briefcast` script lives
TOOL_DIRS = ("/usr/sbin", "/usr/lib/postfix/sbin", "/usr/libexec/postfix", "/usr/local/sbin")
HOST = "127.0.0.1"
# Subscribers' editions, per 5 subscribers: 2 en, 2 it, 1 both.
LANGUAGE_CYCLE = ("en", "it", "en", "it", "both")
SENDER = "briefs@bench.example.org"
RATE_GOAL = 0.90
POSTGRES_GOAL = 0.80  # briefcast on PostgreSQL / briefcast on SQLite
DATABASES = ("sqlite", "postgresql")
RSS_GOAL_MB = 150.0
RSS_GOAL_SUBSCRIBERS = 100_000
PROC_SAMPLE_SECONDS = 0.2
SENDER_MARK = "briefcast.delivery.worker"  # the sending process's command line


class BenchError(RuntimeError):
    """A step failed; the message says which and why."""


# --- Postfix test tools -----------------------------------------------------------------


def find_tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in TOOL_DIRS:
        path = Path(folder) / name
        if os.access(path, os.X_OK):
            return str(path)
    raise BenchError(
        f"{name} not found: install Debian's postfix package (`make bench-deps` as root, "
        "or sudo apt-get install postfix)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (0.0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Window:
    """What the sink saw after a mark: messages, and the arrival times of the first and
    last counter updates (``between`` messages arrived after the first update)."""

    messages: int
    between: int
    first: float | None
    last: float | None
    sink_cpu: float

    @property
    def rate(self) -> float | None:
        if self.between < 1 or self.first is None or self.last is None:
            return None
        span = self.last - self.first
        return self.between / span if span > 0 else None


class Sink:
    """smtp-sink on a loopback port; counts and timestamps every message it receives."""

    COUNTER = re.compile(rb"mesg=(\d+)")

    def __init__(self, connections: int) -> None:
        self.port = free_port()
        self.address = f"{HOST}:{self.port}"
        command = [find_tool("smtp-sink")]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]  # required as root: drop privileges after bind
        # -c: running counters on stdout (no capture files: nothing hits the disk);
        # -m: allow every connection at once; backlog 1000.
        command += ["-c", "-m", str(max(256, 2 * connections)), self.address, "1000"]
        self.command = command
        self._arrivals: list[tuple[float, int]] = []  # (monotonic time, total messages)
        self._stderr: list[str] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        threading.Thread(target=self._read_counters, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._wait_ready()

    def _read_counters(self) -> None:
        assert self.proc.stdout is not None
        pending = b""
        # Counters look like "sess=4 quit=4 mesg=2100\r", one per SMTP event.
        while chunk := self.proc.stdout.read1(65536):
            now = time.monotonic()
            pending += chunk
            *done, pending = pending.split(b"\r")
            counts = [int(m.group(1)) for line in done if (m := self.COUNTER.search(line))]
            if counts:
                with self._lock:
                    if not self._arrivals or counts[-1] != self._arrivals[-1][1]:
                        self._arrivals.append((now, counts[-1]))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                # A probe session counts as a session, never as a message.
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"smtp-sink did not start: {' '.join(self._stderr[-3:]) or 'timeout'}")

    @property
    def messages(self) -> int:
        with self._lock:
            return self._arrivals[-1][1] if self._arrivals else 0

    def window(self, since: int, expected: int, cpu_before: float, settle: float = 5.0) -> Window:
        """Messages received after the counter stood at ``since``; waits up to ``settle``
        seconds for the last counters of ``expected`` messages to come through the pipe."""
        deadline = time.monotonic() + settle
        while self.messages - since < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            after = [(t, n) for t, n in self._arrivals if n > since]
        cpu = cpu_seconds(self.proc.pid) - cpu_before
        if not after:
            return Window(0, 0, None, None, cpu)
        (first_time, first_count), (last_time, last_count) = after[0], after[-1]
        return Window(last_count - since, last_count - first_count, first_time, last_time, cpu)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@contextlib.contextmanager
def running_sink(connections: int) -> Iterator[Sink]:
    sink = Sink(connections)
    try:
        yield sink
    finally:
        sink.stop()


# --- subprocesses: bounded in time, RSS sampled per process -----------------------------


@dataclass
class ProcPeaks:
    """Peak RSS (VmHWM) of every process in a tree, sampled from /proc."""

    root: int
    peaks_kb: dict[int, int] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)  # last seen, per process

    def cpu_by_process(self) -> list[tuple[float, str]]:
        return sorted(
            ((sec, self.cmdlines.get(pid, "?")) for pid, sec in self.cpu.items()), reverse=True
        )

    def cpu_seconds(self) -> float:
        """CPU of the whole tree (each process as last sampled: up to a sample short)."""
        return sum(self.cpu.values())

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(stat.parent.name))
        todo = [self.root]
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                if pid not in self.cmdlines:
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                    self.cmdlines[pid] = raw.replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if m := re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE):
                self.peaks_kb[pid] = max(self.peaks_kb.get(pid, 0), int(m.group(1)))
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), cpu_seconds(pid))

    def peak_mb(self, marker: str) -> float | None:
        """The largest peak among processes whose command line contains ``marker``."""
        peaks = [kb for pid, kb in self.peaks_kb.items() if marker in self.cmdlines.get(pid, "")]
        return max(peaks) / 1024 if peaks else None

    def others(self, marker: str) -> list[tuple[float, str]]:
        return sorted(
            (
                (kb / 1024, self.cmdlines.get(pid, "?"))
                for pid, kb in self.peaks_kb.items()
                if marker not in self.cmdlines.get(pid, "") and kb > 0
            ),
            reverse=True,
        )


@dataclass
class Run:
    command: list[str]
    returncode: int
    seconds: float
    stdout: str
    stderr: str
    peaks: ProcPeaks | None = None


def run(
    command: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    watch: bool = False,
) -> Run:
    """Run a command in its own process group; on timeout the whole group is stopped."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        peaks = ProcPeaks(proc.pid) if watch else None
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                _stop_group(proc)
                raise BenchError(f"timed out after {timeout:.0f} s: {shlex.join(command)}")
            if peaks:
                peaks.sample()
            time.sleep(PROC_SAMPLE_SECONDS if peaks else 0.02)
        seconds = time.perf_counter() - t0
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # leftovers of ours (e.g. a local server)
        out.seek(0)
        err.seek(0)
        return Run(
            list(command),
            proc.returncode,
            seconds,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            peaks,
        )


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def check(result: Run, what: str) -> Run:
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-5:]
        raise BenchError(f"{what} failed (exit {result.returncode}): " + " | ".join(tail))
    return result


# --- the two senders ---------------------------------------------------------------------


def edition_mix(count: int) -> dict[str, int]:
    mix = dict.fromkeys(LANGUAGE_CYCLE, 0)
    for i in range(count):
        mix[LANGUAGE_CYCLE[i % len(LANGUAGE_CYCLE)]] += 1
    return mix


def write_subscribers(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "language", "name"])
        for i in range(count):
            lang = LANGUAGE_CYCLE[i % len(LANGUAGE_CYCLE)]
            writer.writerow([f"reader{i:07d}@bench.example.org", lang, f"Reader {i}"])


def base_env(work: Path) -> dict[str, str]:
    """The caller's environment minus anything that would point briefcast elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BRIEFCAST_") and k != "PREFECT_API_URL"
    }
    env["BRIEFCAST_DATABASE__URL"] = f"sqlite:///{work / 'briefcast.db'}"
    return env


def edition_messages(brief: Path, work: Path, timeout: float) -> dict[str, bytes]:
    """The .eml of each email edition, from a dry run (the same builder --send uses)."""
    env = base_env(work)
    env["BRIEFCAST_DATABASE__URL"] = f"sqlite:///{work / 'preview.db'}"
    out = work / "preview"
    check(
        run(
            [
                str(BIN / "briefcast"),
                "publish",
                str(brief),
                "--channels",
                "email",
                "--out",
                str(out),
            ],
            timeout=timeout,
            env=env,
            cwd=ROOT,
        ),
        "briefcast dry run (to size the messages)",
    )
    found = {p.stem: p.read_bytes() for p in out.glob("*/email/*.eml")}
    missing = [e for e in dict.fromkeys(LANGUAGE_CYCLE) if e not in found]
    if missing:
        raise BenchError(f"dry run wrote no .eml for edition(s) {', '.join(missing)}")
    return found


@dataclass(frozen=True)
class Result:
    messages: int
    wall: float
    window: Window
    reported_rate: float | None = None
    reported_sent: int | None = None
    rss_mb: float | None = None  # the CLI process (runs the Prefect flow)
    sender_rss_mb: float | None = None  # the sending process it starts
    server_rss_mb: float | None = None  # Prefect's local server
    cpu_seconds: float | None = None
    notes: tuple[str, ...] = ()


def reference(
    sink: Sink, emls: dict[str, bytes], mix: dict[str, int], connections: int, timeout: float
) -> Result:
    """smtp-source: each edition's share of the messages, as that edition's exact bytes."""
    tool = find_tool("smtp-source")
    since, cpu0 = sink.messages, cpu_seconds(sink.proc.pid)
    total, wall = 0, 0.0
    with tempfile.TemporaryDirectory(prefix="briefcast-bench-source-") as tmp:
        for edition, count in mix.items():
            if count == 0:
                continue
            # -F appends CRLF to every line of the file: give it LF lines.
            msg = Path(tmp) / f"{edition}.eml"
            msg.write_bytes(emls[edition].replace(b"\r\n", b"\n"))
            sessions = min(connections, count)
            command = [tool, "-d", "-s", str(sessions), "-m", str(count), "-F", str(msg)]
            command += ["-M", "bench.example.org", "-f", SENDER]
            command += ["-t", "reader@bench.example.org", sink.address]
            result = check(run(command, timeout=timeout), "smtp-source")
            total += count
            wall += result.seconds
    return Result(total, wall, sink.window(since, total, cpu0))


RATE_RE = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(?:msgs?|messages|mails|emails)\s*/\s*s", re.I)
SENT_RE = re.compile(r"(\d[\d,]*)\s+(?:messages?\s+)?sent\b|\bsent[:=\s]+(\d[\d,]*)", re.I)
IMPORT_RE = re.compile(r"(\d+) created")


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def briefcast_send(
    sink: Sink,
    brief: Path,
    work: Path,
    subscribers: int,
    connections: int,
    timeout: float,
    database_url: str | None = None,
) -> Result:
    csv_path = work / "subscribers.csv"
    write_subscribers(csv_path, subscribers)
    env = base_env(work)
    if database_url is not None:
        env["BRIEFCAST_DATABASE__URL"] = database_url
    imported = check(
        run(
            [str(BIN / "briefcast"), "subscribers", "import", str(csv_path)],
            timeout=timeout,
            env=env,
            cwd=ROOT,
        ),
        "briefcast subscribers import",
    )
    m = IMPORT_RE.search(imported.stdout)
    if not m or int(m.group(1)) != subscribers:
        raise BenchError(f"import did not create {subscribers} subscribers: {imported.stdout!r}")

    env |= {
        "BRIEFCAST_SMTP__HOST": HOST,
        "BRIEFCAST_SMTP__PORT": str(sink.port),
        "BRIEFCAST_SMTP__STARTTLS": "false",
        "BRIEFCAST_SMTP__TLS": "false",
        "BRIEFCAST_DELIVERY__POOL_SIZE": str(connections),
        "BRIEFCAST_DELIVERY__RATE_PER_SECOND": "0",  # 0: no pacing
        # A cap far above the run, so its bookkeeping is measured but never bites.
        "BRIEFCAST_DELIVERY__HOURLY_CAP": str(max(10 * subscribers, 10_000_000)),
        "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET": "bench-dummy-unsubscribe-secret-not-real",
    }
    command = [str(BIN / "briefcast"), "publish", str(brief), "--send", "--channels", "email"]
    command += ["--out", str(work / "out")]
    since, cpu0 = sink.messages, cpu_seconds(sink.proc.pid)
    result = check(
        run(command, timeout=timeout, env=env, cwd=ROOT, watch=True), "briefcast publish --send"
    )
    window = sink.window(since, subscribers, cpu0)
    summary = result.stdout + "\n" + result.stderr
    rate = RATE_RE.search(summary)
    sent = SENT_RE.search(summary)
    peaks = result.peaks
    assert peaks is not None
    last_lines = [line for line in summary.strip().splitlines() if line.strip()][-2:]
    return Result(
        messages=subscribers,
        wall=result.seconds,
        window=window,
        reported_rate=_number(rate.group(1)) if rate else None,
        reported_sent=int(_number(next(g for g in sent.groups() if g))) if sent else None,
        rss_mb=peaks.peak_mb("bin/briefcast"),
        sender_rss_mb=peaks.peak_mb(SENDER_MARK),
        server_rss_mb=peaks.peak_mb("uvicorn"),
        cpu_seconds=peaks.cpu_seconds(),
        notes=(
            *(f"CPU {sec:5.1f} s  {cmd[:100]}" for sec, cmd in peaks.cpu_by_process()),
            *(f"briefcast said: {line.strip()}" for line in last_lines),
        ),
    )


# --- PostgreSQL: a throwaway server, as the tests start theirs ----------------------------


def _pg_server_module() -> Any:
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import pg_server  # tests/pg_server.py

    return pg_server


def postgres_available() -> bool:
    try:
        module = _pg_server_module()
    except ImportError:
        return False
    if module.find_bindir() is None:
        return False
    if os.geteuid() == 0:  # initdb refuses root: the tests run it as the postgres user
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
    return True


@contextlib.contextmanager
def running_postgres() -> Iterator[Callable[[str], str]]:
    """A server on a free loopback port, with the tests' settings (fsync off: like SQLite's
    WAL with synchronous=NORMAL, no commit waits for the disk); yields a function that
    makes a fresh database and returns its URL."""
    import psycopg

    module = _pg_server_module()
    bindir = module.find_bindir()
    if bindir is None:
        raise BenchError("PostgreSQL (initdb, pg_ctl) not found: apt-get install postgresql")
    with module.postgres_server(bindir) as server:
        admin = f"host={HOST} port={server.port} user={module.SUPERUSER} dbname=postgres"

        def database(name: str) -> str:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return str(server.url(name))

        yield database


# --- report ------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def reproduce(args: argparse.Namespace) -> str:
    command = "python bench/send.py"
    command += f" --subscribers {args.subscribers} --connections {args.connections}"
    command += f" --rounds {args.rounds} --database {args.database}"
    if args.messages is not None:
        command += f" --messages {args.messages}"
    return command


def median(values: Sequence[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return statistics.median(known) if known else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="smtp-source and briefcast take turns this many times (medians reported)",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgresql", "both"),
        default=None,
        help="briefcast's database (default: both when PostgreSQL can be started, else sqlite)",
    )
    parser.add_argument(
        "--messages", type=int, default=None, help="smtp-source messages (default: subscribers)"
    )
    parser.add_argument(
        "--brief", type=Path, default=next((ROOT / "seeds").glob("001_*.txt"), None)
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds allowed to each subprocess"
    )
    parser.add_argument(
        "--reference-only", action="store_true", help="only the smtp-source half (no --send)"
    )
    args = parser.parse_args()
    if min(args.subscribers, args.connections, args.rounds, args.messages or 1) < 1:
        parser.error("--subscribers, --connections, --rounds and --messages must be positive")
    if args.brief is None or not args.brief.is_file():
        parser.error("no brief: pass --brief (seeds/001_*.txt was not found)")
    if args.database is None:
        args.database = "both" if postgres_available() else "sqlite"
    databases = DATABASES if args.database == "both" else (args.database,)
    if args.reference_only:
        databases = ()
    messages = args.messages if args.messages is not None else args.subscribers

    refs: list[Result] = []
    ours: dict[str, list[Result]] = {db: [] for db in databases}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="briefcast-bench-send-") as tmp,
            running_sink(args.connections) as sink,
            contextlib.ExitStack() as servers,
        ):
            new_database = (
                servers.enter_context(running_postgres()) if "postgresql" in databases else None
            )
            work = Path(tmp)
            emls = edition_messages(args.brief.resolve(), work, args.timeout)
            mix = edition_mix(args.subscribers)
            avg_size = sum(len(emls[e]) * n for e, n in mix.items()) / args.subscribers
            # Taking turns, so that whatever else the machine does weighs on all alike.
            for i in range(args.rounds):
                refs.append(
                    reference(sink, emls, edition_mix(messages), args.connections, args.timeout)
                )
                for db in databases:
                    folder = work / f"round-{i + 1}-{db}"  # a fresh database: all is due
                    folder.mkdir()
                    url = None
                    if db == "postgresql":
                        assert new_database is not None
                        url = new_database(f"bench_round_{i + 1}")
                    ours[db].append(
                        briefcast_send(
                            sink,
                            args.brief.resolve(),
                            folder,
                            args.subscribers,
                            args.connections,
                            args.timeout,
                            url,
                        )
                    )
            sink_command = shlex.join(sink.command)
    except BenchError as exc:
        print(f"bench/send.py: {exc}", file=sys.stderr)
        return 1

    sizes = ", ".join(f"{e} {len(emls[e]):,}" for e in mix)
    mix_text = ", ".join(f"{e} {n:,}" for e, n in mix.items())
    print(f"brief: {args.brief.name}; editions (bytes): {sizes}; subscribers: {mix_text}")
    print(f"sink: {sink_command}  ({os.cpu_count()} CPUs, sink and senders share them)")
    print(f"{args.connections} connections each; mean message {avg_size:,.0f} bytes (.eml)")
    if "postgresql" in databases:
        print("PostgreSQL: a local throwaway server (tests/pg_server.py: loopback TCP, fsync off)")
    print()
    header = ["round", "smtp-source msg/s"]
    for db in databases:
        header += [f"{db} msg/s", "ratio"]
    both = len(databases) == 2
    if both:
        header.append("postgresql/sqlite")
    rows = [tuple(header)]
    for i, ref in enumerate(refs):
        row = [str(i + 1), fmt(ref.window.rate)]
        for db in databases:
            mine = ours[db][i] if i < len(ours[db]) else None
            row += [fmt(mine.window.rate) if mine else "-", fmt(_ratio(mine, ref), ".2f")]
        if both:
            row.append(fmt(_ratio(ours["postgresql"][i], ours["sqlite"][i]), ".2f"))
        rows.append(tuple(row))
    last = ["median", fmt(median([r.window.rate for r in refs]))]
    for db in databases:
        ratio = median([_ratio(mine, ref) for mine, ref in zip(ours[db], refs, strict=False)])
        verdict = "" if ratio is None else ("OK" if ratio >= RATE_GOAL else "MISSED")
        last += [
            fmt(median([r.window.rate for r in ours[db]])),
            f"{fmt(ratio, '.2f')}  goal >= {RATE_GOAL:.2f} {verdict}".strip(),
        ]
    if both:
        ratio = median(
            [_ratio(pg, lite) for pg, lite in zip(ours["postgresql"], ours["sqlite"], strict=True)]
        )
        verdict = "" if ratio is None else ("OK" if ratio >= POSTGRES_GOAL else "MISSED")
        last.append(f"{fmt(ratio, '.2f')}  goal >= {POSTGRES_GOAL:.2f} {verdict}".strip())
    rows.append(tuple(last))
    print_table(rows)
    for db in databases:
        print_facts(db, ours[db], args.subscribers)
    print(f"\nreproduce: {reproduce(args)}{' --reference-only' if args.reference_only else ''}")
    return 0


def print_facts(db: str, ours: list[Result], subscribers: int) -> None:
    print()
    rss_goal = f"goal < {RSS_GOAL_MB:.0f} MB at {RSS_GOAL_SUBSCRIBERS:,} subscribers"
    sender = max((r.sender_rss_mb for r in ours if r.sender_rss_mb is not None), default=None)
    if sender is not None and subscribers >= RSS_GOAL_SUBSCRIBERS:
        rss_goal += " OK" if sender < RSS_GOAL_MB else " MISSED"
    facts = [
        ("", f"briefcast on {db} (worst round)"),
        ("peak RSS, sending process (MB)", f"{fmt(sender)}  {rss_goal}"),
        (
            "peak RSS, CLI + Prefect flow (MB)",
            fmt(max((r.rss_mb or 0) for r in ours)) + "  (Prefect's imports; flat)",
        ),
        ("peak RSS, Prefect local server (MB)", fmt(max((r.server_rss_mb or 0) for r in ours))),
        ("msg/s reported by briefcast", fmt(min((r.reported_rate or 0) for r in ours))),
        ("sent, reported by briefcast", fmt(min((r.reported_sent or 0) for r in ours))),
        ("wall time, whole CLI (s)", fmt(max(r.wall for r in ours), ".1f")),
        ("CPU, briefcast processes (s)", fmt(max((r.cpu_seconds or 0) for r in ours), ".1f")),
    ]
    width = max(len(label) for label, _ in facts)
    for label, value in facts:
        print(f"{label.ljust(width)}  {value}")
    short = [r for r in ours if r.window.messages != r.messages]
    for r in short:
        print(f"WARNING: the sink received {r.window.messages:,} of {r.messages:,}")
    for note in ours[-1].notes:
        print(f"note: {note}")


def _ratio(mine: Result | None, ref: Result | None) -> float | None:
    if mine is None or ref is None or not mine.window.rate or not ref.window.rate:
        return None
    return mine.window.rate / ref.window.rate


if __name__ == "__main__":
    sys.exit(main())
