"""What a client may cost a real ``briefcast serve`` (a child process on loopback): slow and
huge requests (briefcast.serve.limits) and editor logins (argon2's 64 MiB each).

Clients come from different loopback addresses (127.0.0.2, 127.0.0.3 ...: all of 127/8 is
the loopback on Linux), as different machines would; serve trusts no proxy here.
"""

from __future__ import annotations

import http.client
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from smtp_servers import HOST, free_port

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.x and /proc: Linux"),
    pytest.mark.serial,  # latencies and timeouts within a second or two: alone, not beside others
]

BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "briefcast"
NAME, PASSWORD = "ada@example.org", "correct horse battery staple"
HEADER_TIMEOUT = 2.0
PER_CLIENT = 40
# Settings lowered from their defaults so that the test takes seconds (not the limits'
# defaults under test: those are nginx's, in config.py).
SERVE = {
    "access_log": "false",
    "header_timeout_seconds": str(HEADER_TIMEOUT),
    "body_timeout_seconds": str(HEADER_TIMEOUT),
    "max_connections_per_client": str(PER_CLIENT),
    "login_wait_seconds": "1",  # then 503: a few hashes run, the test stays short
    "login_name_burst": "6",
    "login_name_per_hour": "1800",  # one attempt back every 2 s
}


@dataclass
class Serving:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path  # its stderr

    def client(self, source: str = HOST) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://{HOST}:{self.port}",
            # Plain http on loopback: no certificates to load (25 ms a client otherwise).
            transport=httpx.HTTPTransport(local_address=source, verify=False),
            timeout=60,
        )

    def memory(self, field: str) -> int:
        """VmHWM (the peak resident set so far) or VmRSS of serve, in bytes."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
        assert m, status
        return int(m[1]) * 1024


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    tmp = tmp_path_factory.mktemp("limits")
    (tmp / "public").mkdir()
    (tmp / "public" / "index.html").write_text("<!doctype html><title>hi</title>hi\n")
    settings = "\n".join(f"{k} = {v}" for k, v in SERVE.items())
    (tmp / "briefcast.toml").write_text(
        f'[site]\nbase_url = "https://briefs.example.org"\npublic_dir = "{tmp / "public"}"\n'
        f'[database]\nurl = "sqlite:///{tmp / "b.db"}"\n'
        '[email]\nfrom_address = "briefs@example.org"\n'
        'unsubscribe_mailto = "unsubscribe@example.org"\n'
        f"[serve]\n{settings}\n"
    )
    env = {
        "PATH": str(BIN.parent),
        "BRIEFCAST_CONFIG": str(tmp / "briefcast.toml"),
        "BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET": "s" * 40,
    }
    added = subprocess.run(
        [BIN, "editors", "add", NAME],
        env=env | {"BRIEFCAST_EDITOR_PASSWORD": PASSWORD},
        cwd=tmp,
        capture_output=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    port = free_port()
    proc = subprocess.Popen(
        [BIN, "serve", "--port", str(port)],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "serve.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "briefcast serve exited"
            assert time.monotonic() < deadline, "briefcast serve did not answer"
            try:
                if httpx.get(f"http://{HOST}:{port}/index.html", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield Serving(port, proc, tmp / "serve.log")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def connect(serving: Serving, source: str = HOST) -> socket.socket:
    return socket.create_connection((HOST, serving.port), timeout=10, source_address=(source, 0))


def answer(sock: socket.socket) -> bytes:
    """The server's answer: its head and Content-Length bytes, or what came until it closed
    (b"" when it closed without a word)."""
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
        head, end, body = got.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        if end and length and len(body) >= int(length[1]):
            break
    return got


def latency(serving: Serving) -> float:
    """The median time of a GET on a new connection."""
    times = []
    for _ in range(5):
        t = time.monotonic()
        conn = http.client.HTTPConnection(HOST, serving.port, timeout=10)
        conn.request("GET", "/index.html")
        assert conn.getresponse().status == 200
        conn.close()
        times.append(time.monotonic() - t)
    return statistics.median(times)


def test_slow_heads_are_timed_out_and_cannot_starve_a_normal_request(serving: Serving) -> None:
    alone = latency(serving)
    with ExitStack() as stack:
        slow = []
        # 200 clients whose head never ends, from five addresses (under the per-client cap)...
        for i in range(200):
            sock = stack.enter_context(connect(serving, f"127.0.0.{10 + i % 5}"))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        # ...and one address opening more than the cap: the ones past it are answered 503.
        greedy = [
            stack.enter_context(connect(serving, "127.0.0.20")) for _ in range(PER_CLIENT + 5)
        ]
        time.sleep(0.3)
        held = latency(serving)
        print(f"\nGET latency: {alone * 1000:.1f} ms alone, {held * 1000:.1f} ms with 200 slow")
        assert held < 1.0
        refused = 0
        for sock in greedy:
            sock.settimeout(0.05)
            with suppress(TimeoutError):
                refused += sock.recv(100).startswith(b"HTTP/1.1 503 ")
        assert refused == 5
        # The header timeout closes every unfinished head, with a 408.
        started = time.monotonic()
        for sock in slow:
            sock.settimeout(HEADER_TIMEOUT + 5)
            assert answer(sock).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < HEADER_TIMEOUT + 3


def test_a_head_arriving_too_slowly_over_many_reads_is_timed_out(serving: Serving) -> None:
    with connect(serving) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n")
        for _ in range(int(HEADER_TIMEOUT * 4) + 8):  # a byte every 0.25 s, never the end
            try:
                sock.sendall(b"X-A: b\r\n")
            except OSError:
                break
            time.sleep(0.25)
        sock.settimeout(5)
        assert answer(sock).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_a_body_that_stops_coming_is_timed_out(serving: Serving) -> None:
    with connect(serving) as sock:
        sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\n\r\n")  # its CSRF cookie...
        page = answer(sock).decode()
        cookie = re.search(r"set-cookie: ([^;]+);", page, re.I)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert cookie and csrf, page
    with connect(serving) as sock:  # ...and a form whose body stops after its first bytes
        started = time.monotonic()
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\n"
            b"csrf=%s&email=" % (cookie[1].encode(), csrf[1].encode())
        )
        sock.settimeout(HEADER_TIMEOUT + 5)
        assert answer(sock).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < HEADER_TIMEOUT + 2
    time.sleep(0.2)
    assert "Traceback" not in serving.log.read_text(), serving.log.read_text()


def test_huge_heads_and_bodies_are_refused(serving: Serving) -> None:
    with connect(serving) as sock:
        sock.sendall(
            b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
        )
        assert answer(sock).startswith(b"HTTP/1.1 431 ")
    with connect(serving) as sock:  # many headers, each small
        many = b"".join(b"X-%d: %s\r\n" % (i, b"b" * 90) for i in range(400))
        sock.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert answer(sock).startswith(b"HTTP/1.1 431 ")
    # A body larger than 1 MiB, to any path (the site's too), is refused before anything
    # reads it; the client, still sending, gets to read the answer.
    with connect(serving) as sock:
        body = b"a" * 2_000_000
        sock.sendall(
            b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(body)
        assert answer(sock).startswith(b"HTTP/1.1 413 ")
    # Within the bounds, all is as before.
    with serving.client() as c:
        assert c.get("/index.html", headers={"x-fine": "a" * 8000}).status_code == 200


def login(client: httpx.Client, name: str, password: str) -> httpx.Response:
    page = client.get("/editor/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf, page
    return client.post("/editor/login", data={"csrf": csrf[1], "name": name, "password": password})


def test_parallel_logins_keep_memory_bounded(serving: Serving) -> None:
    before = serving.memory("VmHWM")
    clients = [serving.client(f"127.0.1.{1 + i % 4}") for i in range(40)]
    for c in clients:  # the CSRF cookie first, so that the posts all start together
        c.get("/editor/login")
    with ThreadPoolExecutor(40) as pool:
        answers = list(
            pool.map(
                lambda ic: login(ic[1], f"guess{ic[0]}", "not the password!"), enumerate(clients)
            )
        )
    for c in clients:
        c.close()
    peak = serving.memory("VmHWM")
    print(
        f"\nserve's peak RSS: {before / 2**20:.0f} MiB before, {peak / 2**20:.0f} MiB after "
        "40 logins at once"
    )
    assert {r.status_code for r in answers} == {401, 503}  # the ones past a 1 s wait: 503
    assert all("retry-after" in r.headers for r in answers if r.status_code == 503)
    # Two argon2 hashes (64 MiB each) at once, not 40 (2.5 GiB).
    assert peak - before < 300 * 2**20


def test_a_name_locked_from_one_address_logs_in_from_another_and_the_lock_decays(
    serving: Serving,
) -> None:
    with serving.client("127.0.2.1") as attacker:
        for _ in range(5):
            assert login(attacker, NAME, "wrong password, again").status_code == 401
        r = login(attacker, NAME, PASSWORD)  # even the right one, from there, for a while
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 60
    with serving.client("127.0.2.2") as editor:
        assert login(editor, NAME, PASSWORD).status_code == 303
    # Wrong passwords from ever new addresses use up the name's own bound (6, then one
    # every 2 s here): a 429 to an address that never tried, so the name's own...
    for i in range(1, 30):
        with serving.client(f"127.0.3.{i}") as other:
            r = login(other, NAME, "wrong password, again")
        if r.status_code == 429:
            break
        assert r.status_code == 401
    else:
        raise AssertionError("the name's attempts from everywhere are not bounded")
    wait = int(r.headers["retry-after"])
    assert 1 <= wait <= 2
    # ...which fills up again: the editor gets in.
    time.sleep(wait + 0.1)
    with serving.client("127.0.2.5") as editor:
        assert login(editor, NAME, PASSWORD).status_code == 303


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_header_bytes", "10"), ("login_hashes_at_once", "0")],
)
def test_limits_out_of_range_are_one_line_and_exit_2(tmp_path: Path, key: str, value: str) -> None:
    env = {
        "PATH": str(BIN.parent),
        "BRIEFCAST_CONFIG": str(tmp_path / "none.toml"),
        f"BRIEFCAST_SERVE__{key.upper()}": value,
    }
    (tmp_path / "none.toml").write_text("")
    done = subprocess.run(
        [BIN, "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and key in done.stderr, done.stderr
