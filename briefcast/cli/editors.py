"""Add, list and remove the editors who log in to the editor's pages of ``briefcast serve``."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from briefcast import editors
from briefcast.cli import startup
from briefcast.cli.output import fail, first_line
from briefcast.store import Store

PASSWORD_ENV = "BRIEFCAST_EDITOR_PASSWORD"

editors_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
# Names on stdout (so `list` can be piped); errors on stderr, one line (output.fail).
out = Console(highlight=False, soft_wrap=True, markup=False)


def _open() -> Store:
    return startup.store(startup.settings())


def _password() -> str:
    given = os.environ.get(PASSWORD_ENV)
    if given is not None:
        return given
    password: str = typer.prompt(
        "Password", hide_input=True, confirmation_prompt="Repeat the password"
    )
    return password


@editors_app.command()
def add(
    name: Annotated[str, typer.Argument(help="The name the editor logs in with.")],
) -> None:
    """Add an editor. The password comes from BRIEFCAST_EDITOR_PASSWORD when it is set,
    else it is asked for (twice, not shown)."""
    try:
        editors.check_name(name)
        password = editors.check_password(_password())
    except editors.EditorError as exc:
        fail(str(exc))
    store = _open()
    try:
        editors.add(store, name, password)
    except editors.EditorError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}")
    finally:
        store.engine.dispose()
    out.print(f"added editor {name}")


@editors_app.command("list")
def list_() -> None:
    """The editors' names, one a line."""
    store = _open()
    try:
        found = editors.names(store)
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}")
    finally:
        store.engine.dispose()
    for name in found:
        out.print(name)


@editors_app.command()
def remove(
    name: Annotated[str, typer.Argument(help="The editor's name.")],
) -> None:
    """Remove an editor; their open sessions end with them."""
    store = _open()
    try:
        found = editors.remove(store, name)
    except SQLAlchemyError as exc:
        fail(f"database: {first_line(exc)}")
    finally:
        store.engine.dispose()
    if not found:
        fail(f"no editor named {name}")
    out.print(f"removed editor {name}")
