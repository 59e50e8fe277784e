"""Flow runs forked from the prefork server (flows/supervisor/prefork.py), seen from the
worker's side: the launcher it starts must behave as ``python -m prefect.engine`` would (its
streams, its exit, its signals), and a launcher killed must take its run with it.

The runs here are Prefect's engine asked for a flow run on an API that never answers: a run
that lasts until something ends it. The workflow tests (tests/test_workflow.py) run every
review, send and batch of `briefcast up` through the same server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_workflow import _children, wait_for

from flows.supervisor import prefork


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    address = prefork.new_address()
    with (tmp_path / "prefork.log").open("wb") as log:
        process = subprocess.Popen(prefork.server_command(address), stderr=log)

    def listening() -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect("\0" + address)
            except OSError:
                return False
            return True

    try:
        wait_for("the prefork server", listening, timeout=180, every=0.2)
        yield address, process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def silent_api() -> Iterator[str]:
    """An API that takes connections and never answers: a run waits on it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api"


def launch(env: dict[str, str], cwd: Path, **extra: str) -> subprocess.Popen[str]:
    env = {**env, "PATH": prefork.worker_path(env), **extra}
    return subprocess.Popen(
        prefork.command().split(),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "BRIEFCAST_"))}
    return env | {"PREFECT_LOGGING_LEVEL": "INFO"}


def test_a_forked_run_exits_and_speaks_as_the_engine_started_cold(
    server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    address, zygote = server
    bad_id = {"PREFECT__FLOW_RUN_ID": "not-a-uuid"}
    cold = launch(base_env(), tmp_path, **bad_id)
    _, cold_err = cold.communicate(timeout=120)
    forked = launch(base_env(), tmp_path, **bad_id, **{prefork.ADDRESS_ENV: address})
    began = time.monotonic()
    _, err = forked.communicate(timeout=120)
    took = time.monotonic() - began
    assert forked.returncode == cold.returncode == 1
    assert "Invalid flow run id" in cold_err and "Invalid flow run id" in err, err
    assert _children(zygote.pid) == []  # ended, and reaped
    print(f"\nforked: the engine's answer in {took:.2f} s")


def test_the_worker_signals_reach_the_run_and_a_killed_launcher_takes_it_along(
    server: tuple[str, subprocess.Popen[bytes]], silent_api: str, tmp_path: Path
) -> None:
    address, zygote = server
    env = base_env() | {
        "PREFECT_API_URL": silent_api,
        "PREFECT__FLOW_RUN_ID": str(uuid.uuid4()),
        prefork.ADDRESS_ENV: address,
    }

    def one_run() -> tuple[subprocess.Popen[str], int]:
        launcher = launch(env, tmp_path)
        (run,) = wait_for("the forked run", lambda: _children(zygote.pid), timeout=60)
        environ = Path(f"/proc/{launcher.pid}/environ").read_bytes()
        assert f"PREFECT__FLOW_RUN_ID={env['PREFECT__FLOW_RUN_ID']}".encode() in environ
        return launcher, run

    # Cancelling: the worker's SIGTERM reaches the run, and the launcher ends as the run did.
    launcher, run = one_run()
    time.sleep(1)  # the engine waiting on the API
    launcher.send_signal(signal.SIGTERM)
    launcher.communicate(timeout=60)
    assert launcher.returncode in (-signal.SIGTERM, 1, 143), launcher.returncode
    wait_for("the run gone", lambda: not Path(f"/proc/{run}").exists(), timeout=30)

    # An OOM kill of the launcher: the run goes with it, at once.
    launcher, run = one_run()
    launcher.kill()
    launcher.wait(timeout=30)
    wait_for("the run gone", lambda: not _children(zygote.pid), timeout=10)

    # The run killed: its launcher dies of the same signal (the worker reports a crash).
    launcher, run = one_run()
    os.kill(run, signal.SIGKILL)
    launcher.communicate(timeout=30)
    assert launcher.returncode == -signal.SIGKILL
    assert zygote.poll() is None  # the server goes on through all that


def test_without_a_server_the_launcher_is_the_engine_itself(tmp_path: Path) -> None:
    env = base_env() | {
        "PREFECT__FLOW_RUN_ID": "not-a-uuid",
        prefork.ADDRESS_ENV: prefork.new_address(),  # nobody listens there
    }
    launched = launch(env, tmp_path)
    _out, err = launched.communicate(timeout=120)
    assert launched.returncode == 1 and "Invalid flow run id" in err


def test_a_run_with_another_pythonpath_runs_cold_and_is_not_held(
    server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """PYTHONPATH (and every PYTHON* setting) shapes an interpreter when it starts: a run
    asking for other ones than the server started with is not forked but run cold by its
    launcher, and the server keeps none of its streams (its reader would wait forever)."""
    address, zygote = server
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "sitecustomize.py").write_text("import sys; sys.stderr.write('cold start\\n')\n")
    env = base_env() | {
        "PREFECT__FLOW_RUN_ID": "not-a-uuid",
        prefork.ADDRESS_ENV: address,
        "PYTHONPATH": str(extra),
    }
    launched = launch(env, tmp_path)
    _out, err = launched.communicate(timeout=120)  # returns: no stream held by the server
    assert launched.returncode == 1 and "Invalid flow run id" in err
    assert "cold start" in err  # the PYTHONPATH was read: a fresh interpreter ran it
    assert _children(zygote.pid) == [] and zygote.poll() is None


REQUIRE_SYSTEM_PYTHON = "BRIEFCAST_REQUIRE_SYSTEM_PYTHON"  # CI sets it: the test runs there
ANOTHER_USER_ASKS = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("\\0" + sys.argv[1])
try:
    socket.send_fds(s, [b"\\0\\0\\0\\2{}"], [0, 1, 2, 0])
    print(repr(s.recv(4)))
except OSError:  # closed before the request was even read
    print(repr(b""))
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a process as another user")
def test_another_user_cannot_have_a_run_forked(
    server: tuple[str, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    address, zygote = server
    log = tmp_path / "prefork.log"
    python = shutil.which("python3", path="/usr/bin:/bin")  # one that user can run
    if python is None:
        why = "no system python3 (/usr/bin) to run as another user"
        if os.environ.get(REQUIRE_SYSTEM_PYTHON) == "1":
            pytest.fail(f"{why} and {REQUIRE_SYSTEM_PYTHON}=1")
        pytest.skip(f"{why}; set {REQUIRE_SYSTEM_PYTHON}=1 to fail")
    asked = subprocess.run(
        [
            python,
            "-c",
            ANOTHER_USER_ASKS,
            address,
        ],
        user=65534,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert asked.stdout.strip() == "b''", asked  # closed without a pid: nothing forked
    assert _children(zygote.pid) == []
    zygote.terminate()
    zygote.wait(timeout=30)
    assert "refused: a process of user 65534 asked for a run" in log.read_text()
