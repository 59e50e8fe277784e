"""The launcher of a forked `briefcast` command (tests/cli_fork.py): ``python cli_launch.py
ADDRESS ARGS...`` is ``python -m briefcast.cli ARGS...`` forked from the server at ADDRESS,
or run cold when that server is gone. Imports no more than the standard library."""

from __future__ import annotations

import os
import sys

from flows.supervisor import prefork

if __name__ == "__main__":
    address, sys.argv[1:] = sys.argv[1], sys.argv[2:]
    status = prefork._through_server(address)
    if status is None:  # no server: the command itself, cold
        os.execv(sys.executable, [sys.executable, "-m", "briefcast.cli", *sys.argv[1:]])
    prefork._exit_as(status)
