"""Flow runs forked from a warm process instead of started cold (a "prefork" server, as
gunicorn's ``--preload`` or a zygote).

A process worker starts every flow run as a new Python process, ``python -m prefect.engine``.
Before it runs a line of the flow, that process imports Prefect and briefcast: about 2 s of a
core of the 4 s a batch of 250 emails takes in all, measured. A fleet runs hundreds of
them a day (every review, send and batch is one), so ``briefcast up`` and ``briefcast worker``
start one server per machine that imports all that once and forks a child per flow run.

The worker still starts a process per run: the deployments' command is this module's
``launch``, ~30 ms of a core. It hands its standard streams, working folder, environment and
arguments to the server over a Unix socket, which forks the run, and stays as the run's
stand-in for the worker: it passes on the signals the worker sends (cancelling a run) and
exits as the run did (a code, or killed by the same signal). A launcher killed (SIGKILL,
an OOM kill) takes its run with it (the run watches a pipe only the launcher holds). With no
server (not started, died, a machine without one) the launcher becomes
``python -m prefect.engine`` itself, as if there were no prefork at all.

The socket is in Linux's abstract namespace (no file, no path length limit) and answers only
processes of the server's own user (``SO_PEERCRED``): a run is code and settings of the
user's, and another user must not be able to start one. Importing this module imports no more
than the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from flows import WORKER_PID_ENV

ADDRESS_ENV = "BRIEFCAST_PREFORK"  # the server's address, in the workers' environment
MAX_REQUEST = 1 << 20  # bytes: a run's environment, folder and arguments
_LENGTH = struct.Struct("!I")
_PID = struct.Struct("!i")
_STATUS = struct.Struct("!i")  # an exit code, or minus the signal that killed the run
# What a flow run imports, imported once here: Prefect's engine and client, and the modules
# of briefcast's deployments (flows.review's, which import the channels and delivery).
PRELOAD = (
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.client.orchestration",
    "prefect.runner",
    "flows.review",
    "flows.units",
)


def new_address() -> str:
    """A name for the server's socket no other server on this machine has."""
    return f"briefcast-prefork-{os.getpid()}-{os.urandom(8).hex()}"


def _abstract(address: str) -> str:
    """The socket of that name in the abstract namespace (a leading NUL byte, which an
    environment variable or an argument cannot carry)."""
    return "\0" + address


def command() -> str:
    """The deployments' command: this module's launcher, run by the ``python`` the worker's
    PATH finds first (``worker_path`` puts the worker's own interpreter there), so that a
    worker on another machine, installed elsewhere, runs its own."""
    return "python -m flows.supervisor.prefork"


def server_command(address: str) -> list[str]:
    return [sys.executable, "-m", "flows.supervisor.prefork", "serve", address]


def worker_path(env: dict[str, str]) -> str:
    """PATH for a worker: the folder of this interpreter first (as activating its virtualenv
    does), so that ``python`` in ``command()`` is the one briefcast is installed in."""
    here = os.path.dirname(sys.executable)
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *rest])


# --- The launcher: what the worker starts for each flow run ---------------------------------


def launch() -> NoReturn:
    """Run this flow run forked from the server if there is one, else as Prefect would."""
    address = os.environ.get(ADDRESS_ENV)
    status = _through_server(address) if address else None
    if status is None:  # no server: the engine in this process, as without prefork
        engine = [sys.executable, "-m", "prefect.engine", *sys.argv[1:]]
        os.execv(sys.executable, engine)
    _exit_as(status)


def _through_server(address: str) -> int | None:
    """The run's exit status, or None when no server took it (then nothing has started)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(_abstract(address))
    except OSError:
        sock.close()
        return None
    # The run reads one end of this pipe; this process holds the other until it exits.
    lifeline, _held = os.pipe()
    env = {**os.environ, WORKER_PID_ENV: str(os.getppid())}  # the run's parent is not it
    request = json.dumps({"env": env, "cwd": os.getcwd(), "argv": sys.argv[1:]}).encode()
    try:
        socket.send_fds(sock, [_LENGTH.pack(len(request)), request], [0, 1, 2, lifeline])
        os.close(lifeline)
        pid = _PID.unpack(_read(sock, _PID.size))[0]
    except (OSError, ValueError):  # the server went away before it forked: nothing runs
        sock.close()
        return None
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, lambda got, _frame: _pass_on(pid, got))
    try:
        return int(_STATUS.unpack(_read(sock, _STATUS.size))[0])
    except (OSError, ValueError):
        # The server died while the run went on (it is not our child to wait for): wait
        # for it to end, then report it failed, as no exit code is left to report.
        _wait_gone(pid)
        return 1


def _pass_on(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_gone(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        while not selector.select(timeout=None):
            pass
    finally:
        os.close(fd)


def _exit_as(status: int) -> NoReturn:
    """Exit with the run's code, or be killed by the signal that killed it (the worker
    tells a crash from an exit by that)."""
    sys.stdout.flush()
    if status < 0:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    os._exit(status if status >= 0 else 1)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("the connection closed")
        data += chunk
    return data


# --- The server: imports once, forks a child per run ----------------------------------------


def serve(address: str) -> None:
    """Answer launchers until SIGTERM. Runs in the foreground: its parent (``briefcast up``,
    ``briefcast worker``) stops it with the workers."""
    import importlib

    from flows import prefect_defaults

    prefect_defaults()
    for name in PRELOAD:
        importlib.import_module(name)
    from briefcast import channel

    channel.registry()  # the channel plug-ins' modules, found through their entry points

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(_abstract(address))
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    stopping = False

    def on_term(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)  # wakes the selector (wakeup fd)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    runs: dict[int, socket.socket] = {}  # the forked runs: pid -> its launcher's connection
    while not stopping:
        for key, _ in selector.select(timeout=5):
            if key.fileobj is listener:
                _accept(listener, runs, closing=[listener.fileno(), wake_read, wake_write])
            else:
                os.read(wake_read, 4096)
        _reap(runs)
    listener.close()
    for conn in runs.values():  # the runs go on; their launchers learn their ends by pidfd
        conn.close()


def _accept(listener: socket.socket, runs: dict[int, socket.socket], closing: list[int]) -> None:
    conn, _ = listener.accept()
    fds: list[int] = []  # the launcher's streams and lifeline, once received: ours to close
    try:
        _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid != os.getuid():
            raise ValueError(f"a process of user {uid} asked for a run")
        conn.settimeout(10)
        head, fds, _flags, _addr = socket.recv_fds(conn, _LENGTH.size, 4)
        if len(fds) != 4 or len(head) != _LENGTH.size:
            raise ValueError("not a launcher's request")
        length = _LENGTH.unpack(head)[0]
        if length > MAX_REQUEST:
            raise ValueError(f"a request of {length} bytes")
        request = json.loads(_read(conn, length))
        env, cwd, argv = request["env"], request["cwd"], request["argv"]
        if not (
            isinstance(env, dict)
            and isinstance(cwd, str)
            and isinstance(argv, list)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
            and all(isinstance(a, str) for a in argv)
        ):
            raise ValueError("a malformed request")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"briefcast prefork: refused: {exc}", file=sys.stderr, flush=True)
        _drop(conn, fds)
        return
    if _interpreter_settings(env) != _interpreter_settings(os.environ):
        # PYTHONPATH and the like (a deployment's job variables may set them) shape an
        # interpreter when it starts, and this one has started: the launcher, answered
        # nothing, runs the engine cold instead.
        _drop(conn, fds)
        return
    pid = os.fork()
    if pid == 0:  # the run
        _run(conn, fds, env, cwd, argv, [*closing, *(c.fileno() for c in runs.values())])
    for fd in fds:
        os.close(fd)
    runs[pid] = conn
    with contextlib.suppress(OSError):  # the launcher is gone: its run ends by the lifeline
        conn.sendall(_PID.pack(pid))


def _drop(conn: socket.socket, fds: list[int]) -> None:
    """Answer nothing, and hold none of the launcher's streams (its reader, the worker,
    waits for their end)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    conn.close()


def _interpreter_settings(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


def _reap(runs: dict[int, socket.socket]) -> None:
    while runs:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = runs.pop(pid, None)
        if conn is None:
            continue
        with contextlib.suppress(OSError):
            conn.sendall(_STATUS.pack(os.waitstatus_to_exitcode(wait_status)))
        conn.close()


def _run(
    conn: socket.socket,
    fds: list[int],
    env: dict[str, str],
    cwd: str,
    argv: list[str],
    closing: list[int],
) -> NoReturn:
    """In the forked child: become the launcher's process (its streams, folder and
    environment), then run Prefect's engine as ``python -m prefect.engine`` would."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        conn.close()
        for fd in closing:
            with contextlib.suppress(OSError):
                os.close(fd)
        stdin, stdout, stderr, lifeline = fds
        os.set_inheritable(lifeline, False)  # not to the run's own children
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        _watch(lifeline)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = [sys.argv[0], *argv]
        import runpy
        import warnings

        from prefect.context import refresh_global_settings_context
        from prefect.logging.configuration import setup_logging

        # Prefect's settings and logging as the run's environment has them, not the server's.
        refresh_global_settings_context()
        setup_logging(incremental=False)
        # runpy warns that prefect.engine is imported already: that is the point here.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy")
        try:
            runpy.run_module("prefect.engine", run_name="__main__")
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # Prefect's log and event workers flush here
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _watch(lifeline: int) -> None:
    """The run dies when its launcher does: the pipe's other end closes with it."""
    import threading

    def wait() -> None:
        while os.read(lifeline, 1):
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait, name="prefork-lifeline", daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 3:
        serve(sys.argv[2])
    else:
        launch()
