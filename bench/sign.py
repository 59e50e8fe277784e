"""DKIM signing speed: briefcast's signer (RSA through ``cryptography``) against dkimpy's
``dkim.sign`` (the old way), with unsigned message building as the reference; then, when
Postfix's smtp-sink is installed, a whole signed send against an unsigned one.

Run: .venv/bin/python bench/sign.py [--messages 2000] [--rounds 3] [--key-bits 2048]
                                     [--subscribers 5000] [--send-rounds 3] [--no-send]

1. Seed 001's three email editions (a dry run in-process), --messages recipients in the
   subscribers' edition mix of bench/send.py, each with its own address and token.
2. Each way of making the messages' DATA bytes, over all of them, --rounds times, taking
   turns (this machine's speed drifts): unsigned (``Messages`` without a key: one join per
   message), signed by briefcast (``Messages`` with a ``DkimSigner``: what a signed send
   does, one thread), briefcast's ``DkimSigner.sign`` alone, dkimpy's ``dkim.sign`` with the
   old arguments, and briefcast's signed messages made by 2 threads (what a signed send
   does: the pool makes them ahead of its sending loop in ``pool.SIGNING_THREADS`` threads,
   since OpenSSL's RSA runs without the GIL).
   Every signature is checked with dkimpy's ``dkim.verify`` before anything is timed.
3. The send: bench/send.py's ``briefcast publish --send --channels email`` against smtp-sink,
   with and without BRIEFCAST_DELIVERY__DKIM_KEY_PATH / _SELECTOR, taking turns
   --send-rounds times; messages/s as the sink saw them, signed / unsigned (goal >= 0.5).
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import send as bench_send  # noqa: E402 (bench/send.py: the sink, the send, the edition mix)

SELECTOR = "bench"
SECRET = "bench-dummy-unsubscribe-secret-not-real"
SEND_GOAL = 0.5
THREADS = 2  # as briefcast.delivery.pool.SIGNING_THREADS

Job = tuple[str, str, str]  # edition, address, token


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rsa_key(bits: int) -> tuple[bytes, bytes]:
    """A fresh RSA key: its PEM (PKCS#1) and its DNS TXT record."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def seed_editions(work: Path, brief: Path) -> dict[str, bytes]:
    """The .eml of each email edition of ``brief``, from a dry run in this process."""
    os.environ["BRIEFCAST_DATABASE__URL"] = f"sqlite:///{work / 'editions.db'}"
    from briefcast.config import Settings
    from briefcast.pipeline import run_publish

    (folder,) = run_publish([brief], Settings(), names=["email"], out=work / "out")
    return {p.stem: p.read_bytes() for p in (folder / "email").glob("*.eml")}


def sign_benchmark(args: argparse.Namespace, work: Path) -> tuple[list[tuple[str, ...]], str]:
    import dkim

    from briefcast.delivery import tokens
    from briefcast.delivery.dkim import SIGNED_HEADERS, DkimSigner
    from briefcast.delivery.messages import Messages
    from briefcast.delivery.prepared import PreparedEdition, dot_stuff

    emls = seed_editions(work, args.brief)
    editions = {name: PreparedEdition(name, eml) for name, eml in emls.items()}
    cycle = bench_send.LANGUAGE_CYCLE
    jobs: list[Job] = [
        (cycle[i % len(cycle)], f"reader{i:07d}@bench.example.org", tokens.sign(SECRET, i + 1))
        for i in range(args.messages)
    ]
    raws = [editions[e].render(to, token) for e, to, token in jobs]
    pem, record = rsa_key(args.key_bits)
    domain = b"bench.example.org"
    signer = DkimSigner(SELECTOR, domain.decode(), pem)
    unsigned, signed = Messages(editions, None), Messages(editions, signer)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record

    for (edition, to, token), raw in list(zip(jobs, raws, strict=True))[: len(cycle)]:
        data = signed.data(edition, to, token)
        message = data[: -len(b".\r\n")].replace(b"\r\n..", b"\r\n.")
        if not (message.endswith(raw) and dkim.verify(message, dnsfunc=dns)):
            raise SystemExit(f"bench/sign.py: dkimpy does not verify our {edition} signature")

    def old_way(raw: bytes) -> bytes:  # the DkimSigner of before, as Messages used it
        header = dkim.sign(
            raw,
            SELECTOR.encode(),
            domain,
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
            linesep=b"\r\n",
        )
        return dot_stuff(header + raw)

    pool = ThreadPoolExecutor(THREADS)
    ways: dict[str, Callable[[], object]] = {
        "unsigned (Messages, no key)": lambda: [unsigned.data(*job) for job in jobs],
        "signed, briefcast (Messages)": lambda: [signed.data(*job) for job in jobs],
        "DkimSigner.sign alone": lambda: [signer.sign(raw) for raw in raws],
        "signed, dkimpy dkim.sign": lambda: [old_way(raw) for raw in raws],
        f"signed, briefcast, {THREADS} threads": lambda: list(
            pool.map(lambda job: signed.data(*job), jobs, chunksize=64)
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    for i in range(args.rounds):
        order = list(ways) if i % 2 == 0 else list(reversed(ways))
        for name in order:
            times[name].append(timed(ways[name]))
    pool.shutdown()

    rate = {name: args.messages / statistics.median(t) for name, t in times.items()}
    base, old = rate["unsigned (Messages, no key)"], rate["signed, dkimpy dkim.sign"]
    rows: list[tuple[str, ...]] = [("messages made", "msg/s", "ms/msg", "/ unsigned", "/ dkimpy")]
    for name, r in rate.items():
        rows.append((name, f"{r:,.0f}", f"{1000 / r:.3f}", f"{r / base:.3f}", f"{r / old:.1f}"))
    sizes = ", ".join(f"{e} {len(emls[e]):,}" for e in editions)
    intro = (
        f"{args.messages:,} messages of {args.brief.name} (edition bytes: {sizes}), "
        f"RSA {args.key_bits} bits, median of {args.rounds} rounds, {os.cpu_count()} CPUs"
    )
    return rows, intro


def send_benchmark(args: argparse.Namespace, work: Path) -> list[tuple[str, ...]]:
    """Signed against unsigned ``briefcast publish --send``, as bench/send.py runs it."""
    key_path = work / "dkim.pem"
    key_path.write_bytes(rsa_key(args.key_bits)[0])
    plain_env = bench_send.base_env

    def signing_env(folder: Path) -> dict[str, str]:
        env = plain_env(folder)
        env["BRIEFCAST_DELIVERY__DKIM_KEY_PATH"] = str(key_path)
        env["BRIEFCAST_DELIVERY__DKIM_SELECTOR"] = SELECTOR
        return env

    results: dict[str, list[bench_send.Result]] = {"unsigned": [], "signed": []}
    brief = args.brief.resolve()
    with bench_send.running_sink(args.connections) as sink:
        for i in range(args.send_rounds):
            order = ["unsigned", "signed"] if i % 2 == 0 else ["signed", "unsigned"]
            for kind in order:
                folder = work / f"send-{i + 1}-{kind}"  # a fresh database: every message due
                folder.mkdir()
                env: Callable[[Path], dict[str, str]] = (
                    signing_env if kind == "signed" else plain_env
                )
                bench_send.base_env = env  # type: ignore[assignment]
                try:
                    results[kind].append(
                        bench_send.briefcast_send(
                            sink, brief, folder, args.subscribers, args.connections, 600
                        )
                    )
                finally:
                    bench_send.base_env = plain_env

    def worker_cpu(result: bench_send.Result) -> float | None:
        for note in result.notes:
            if bench_send.SENDER_MARK in note:
                return float(note.split()[1])
        return None

    rows: list[tuple[str, ...]] = [
        ("round", "unsigned msg/s", "signed msg/s", "signed / unsigned", "sender CPU s")
    ]
    ratios = []
    for i, (plain, signed) in enumerate(
        zip(results["unsigned"], results["signed"], strict=True), start=1
    ):
        for r in (plain, signed):
            if r.window.messages != r.messages:
                print(f"WARNING: the sink received {r.window.messages:,} of {r.messages:,}")
        ratio = (signed.window.rate or 0) / (plain.window.rate or float("inf"))
        ratios.append(ratio)
        cpu = f"{worker_cpu(plain) or 0:.1f} / {worker_cpu(signed) or 0:.1f}"
        rows.append(
            (
                str(i),
                bench_send.fmt(plain.window.rate),
                bench_send.fmt(signed.window.rate),
                f"{ratio:.2f}",
                cpu,
            )
        )
    ratio = statistics.median(ratios)
    rows.append(
        (
            "median",
            bench_send.fmt(bench_send.median([r.window.rate for r in results["unsigned"]])),
            bench_send.fmt(bench_send.median([r.window.rate for r in results["signed"]])),
            f"{ratio:.2f}  goal >= {SEND_GOAL} {'OK' if ratio >= SEND_GOAL else 'MISSED'}",
            "",
        )
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--subscribers", type=int, default=5000, help="of each send")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--send-rounds", type=int, default=3)
    parser.add_argument("--no-send", action="store_true", help="signing only, no send")
    parser.add_argument("--brief", type=Path, default=next((ROOT / "seeds").glob("001_*.txt")))
    args = parser.parse_args()
    if min(args.messages, args.rounds, args.subscribers, args.send_rounds) < 1:
        parser.error("--messages, --rounds, --subscribers and --send-rounds must be positive")

    with tempfile.TemporaryDirectory(prefix="briefcast-bench-sign-") as tmp:
        work = Path(tmp)
        rows, intro = sign_benchmark(args, work)
        print(intro)
        bench_send.print_table(rows)
        if not args.no_send:
            print()
            try:
                bench_send.find_tool("smtp-sink")
                load = os.getloadavg()[0]
                send_rows = send_benchmark(args, work)
            except bench_send.BenchError as exc:
                print(f"send skipped: {exc}")
            else:
                print(
                    f"briefcast publish --send --channels email, {args.subscribers:,} "
                    f"subscribers, {args.connections} connections, smtp-sink on loopback, "
                    "msg/s as the sink saw them"
                )
                bench_send.print_table(send_rows)
                # The signed send needs a second CPU (signing threads beside the sending loop),
                # the unsigned one does not: other work on the machine costs the first more.
                print(
                    f"load average {load:.1f} before the sends, {os.getloadavg()[0]:.1f} after, "
                    f"on {os.cpu_count()} CPUs"
                )

    command = "python bench/sign.py"
    defaults = {"messages": 2000, "rounds": 3, "key_bits": 2048, "subscribers": 5000}
    defaults |= {"connections": 4, "send_rounds": 3}
    for name, default in defaults.items():
        if getattr(args, name) != default:
            command += f" --{name.replace('_', '-')} {getattr(args, name)}"
    if args.no_send:
        command += " --no-send"
    print(f"\nreproduce: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
