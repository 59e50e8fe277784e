"""``python -m briefcast.cli``: the ``briefcast`` command."""

from briefcast.cli.main import run

run()
