"""``briefcast serve``: the public site, the subscribe and unsubscribe pages (uvicorn)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from briefcast.cli import startup
from briefcast.cli.db import _fail_database
from briefcast.cli.output import err, fail
from briefcast.config import Settings, config_path
from briefcast.store import Store, sqlite_file


def serve(
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.", min=1, max=65535)] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes. Each keeps its own caches and rate limits "
            "(N workers let a client have up to N times the rate).",
            min=1,
            max=64,
        ),
    ] = 1,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help=r"A line per request on stderr (default: \[serve] access_log).",
        ),
    ] = None,
) -> None:
    r"""Serve the public site (\[site] public_dir) and the subscribe, confirm and
    unsubscribe pages, over the same settings and database."""
    # The web app's needs, imported for this command only.
    from briefcast import migrate
    from briefcast.delivery import DeliveryError, unsubscribe_secret

    settings = startup.settings()
    try:
        unsubscribe_secret(settings)  # signs the confirm, unsubscribe and CSRF tokens
    except DeliveryError as exc:
        fail(f"serve: {exc}")
    _check_public_dir(settings)
    public = settings.site.public_dir
    if not public.is_dir():
        err.print(
            f"note: [site] public_dir {public} is not a folder yet: the site answers 404 "
            "until a publish writes it",
            markup=False,
            soft_wrap=True,
        )
    # Upgrade the schema once, here, rather than in N workers at once.
    try:
        with Store(settings.database.url):
            pass
    except migrate.SchemaError as exc:
        fail(str(exc))
    except (SQLAlchemyError, ImportError, OSError) as exc:
        _fail_database(exc, settings.database.url)

    import uvicorn  # only now: the other commands do without it

    # Each worker reads the settings again, from the same environment and folder.
    uvicorn.run(
        "briefcast.serve:worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=settings.serve.trust_proxy,
        forwarded_allow_ips=settings.serve.forwarded_allow_ips,
        access_log=settings.serve.access_log if access_log is None else access_log,
        server_header=False,
        # The limits uvicorn has; the ones it lacks are in LimitedHttpTools (serve.limits).
        http="briefcast.serve.limits:LimitedHttpTools",
        ws="none",  # nothing here speaks WebSocket: an upgrade is a plain request
        timeout_keep_alive=settings.serve.keep_alive_seconds,
        limit_concurrency=settings.serve.max_connections,
        log_level="info",
    )


def _check_public_dir(settings: Settings) -> None:
    """Refuse a ``public_dir`` that would hand out what is not the site: ``.`` (or the root),
    as ``publish`` refuses it (:func:`briefcast.site.places`), and any folder holding the
    database, the settings file or the folder serve runs in (where they usually are)."""
    from briefcast import site

    try:
        public = site.places(settings).public
    except site.PublicDirError as exc:
        fail(str(exc))
    served = Path(os.path.realpath(public))
    private = {"the folder serve runs in": Path.cwd()}
    if (named := config_path()) is not None:
        private["the settings file"] = named
    try:
        url = make_url(settings.database.url)
    except ArgumentError:
        url = None  # the database check below says what is wrong with it
    if url is not None and (database := sqlite_file(url)) is not None:
        private["the database"] = Path(database)
    for what, path in private.items():
        real = Path(os.path.realpath(path.expanduser()))
        if real == served or served in real.parents:
            fail(
                f"[site] public_dir {settings.site.public_dir}: holds {what} ({path}); "
                "serve would hand it out: choose a folder of its own (e.g. public)"
            )
