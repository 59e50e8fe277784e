"""The layers, top to bottom: the CLI and the web app (briefcast.web_app); the flows; the
channels; the core (brief, readers, render, store, delivery, …). A layer imports only layers
below it, the core reaches channels only through the registry's entry points, and no module
is part of an import cycle. grimp (import-linter's engine) reads the imports, TYPE_CHECKING
ones included."""

from __future__ import annotations

import grimp

TOP_LEVEL = ("briefcast", "flows", "channels")
LAYERS = ("core", "channels", "flows", "cli")


def layer(module: str) -> str:
    top, _, rest = module.partition(".")
    if top == "briefcast" and (rest == "cli" or rest.startswith(("cli_", "cli."))):
        return "cli"
    if top == "briefcast" and (rest == "web_app" or rest.startswith("web_app.")):
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
    assert layer("briefcast.cli_db") == "cli" and layer("briefcast.store") == "core"
    assert layer("briefcast.web_app.pages") == "cli" and layer("briefcast.web_apps") == "core"
    assert layer("channels.email") == "channels" and layer("flows.publish") == "flows"
    assert LAYERS.index(layer("flows.publish")) > LAYERS.index(layer("briefcast.pipeline"))
