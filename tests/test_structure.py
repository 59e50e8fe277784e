"""The layers, top to bottom: the CLI and the web app (briefcast.serve); the flows; the
channels; the core (brief, readers, render, store, delivery, …). A layer imports only layers
below it, the core reaches channels only through the registry's entry points, and no module
is part of an import cycle. grimp (import-linter's engine) reads the imports, TYPE_CHECKING
ones included."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp

from briefcast.config import SOCIAL_NETWORKS

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("briefcast", "flows", "channels")
LAYERS = ("core", "channels", "flows", "cli")


def layer(module: str) -> str:
    top, _, rest = module.partition(".")
    if top == "briefcast" and (rest == "cli" or rest.startswith("cli.")):
        return "cli"
    if top == "briefcast" and (rest == "serve" or rest.startswith("serve.")):
        return "cli"  # the web app (briefcast serve): the top layer, beside the CLI
    return {"flows": "flows", "channels": "channels"}.get(top, "core")


def test_no_layer_imports_one_above_it() -> None:
    graph = grimp.build_graph(*TOP_LEVEL)
    upward = [
        f"{importer} ({layer(importer)}) imports {imported} ({layer(imported)})"
        for importer in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(importer))
        if LAYERS.index(layer(imported)) > LAYERS.index(layer(importer))
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = grimp.build_graph(*TOP_LEVEL)
    cycles = [
        f"{a} <-> {b}: {graph.find_shortest_chain(importer=b, imported=a)}"
        for a in sorted(graph.modules)
        for b in sorted(graph.find_modules_directly_imported_by(a))
        if a != b and graph.chain_exists(importer=b, imported=a)
    ]
    assert not cycles, "\n".join(cycles)


def test_the_checks_can_fail() -> None:
    """The layer rule itself, on names: a check that cannot fail is no check."""
    assert layer("briefcast.cli.db") == "cli" and layer("briefcast.store") == "core"
    assert layer("briefcast.serve.pages") == "cli" and layer("briefcast.served") == "core"
    assert layer("channels.email") == "channels" and layer("flows.publish") == "flows"
    assert LAYERS.index(layer("flows.publish")) > LAYERS.index(layer("briefcast.pipeline"))


# The flows run every channel the same way, through the registry (flows.units): a channel's
# name in them would be a send path of its own. Prose included: "the email's batches" in a
# flow's docstring would say the flow knows one channel's units.
BUILT_IN_NAMES = ("email", "feed", "web", "social", *SOCIAL_NETWORKS)


def channel_names_in(text: str) -> list[str]:
    return sorted({m.group(0).lower() for m in re.finditer(NAMES_RE, text)})


# A name between anything but letters and digits: ``send_social`` and ``"social-x"`` count.
NAMES_RE = re.compile(
    r"(?<![a-z0-9])(?:" + "|".join(BUILT_IN_NAMES) + r")(?![a-z0-9])", re.IGNORECASE
)


def test_no_channel_is_named_in_the_flows() -> None:
    named = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / "flows").rglob("*.py"))
        if (found := channel_names_in(path.read_text(encoding="utf-8")))
    }
    assert not named, named


def test_the_flows_reach_channels_only_through_the_registry() -> None:
    graph = grimp.build_graph(*TOP_LEVEL)
    direct = [
        f"{importer} imports {imported}"
        for importer in sorted(graph.modules)
        if layer(importer) == "flows"
        for imported in sorted(graph.find_modules_directly_imported_by(importer))
        if layer(imported) == "channels"
    ]
    assert not direct, "\n".join(direct)


def test_the_name_check_can_fail() -> None:
    assert channel_names_in('if name == "email":\n    send_social(n)') == ["email", "social"]
    assert channel_names_in("from channels import social  # the X thread") == ["social", "x"]
    assert channel_names_in("webhook, send_batch, max_xs, digest, emails, feeds") == []


# Every command starts by importing the CLI; what only some commands need is imported in
# them (Prefect alone costs a second of a core). `briefcast --help` took 1.3 s with all of
# it imported up front, 0.75 s without.
NOT_AT_START = ("prefect", "alembic", "uvicorn", "briefcast.delivery", "briefcast.posting")


def test_the_cli_starts_without_what_only_some_commands_need() -> None:
    code = (
        "import sys, briefcast.cli.main, flows.supervisor.prefork\n"
        f"print(sorted(m for m in sys.modules if m.startswith({NOT_AT_START!r})))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert found.stdout.strip() == "[]", found.stdout
