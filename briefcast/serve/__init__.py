"""``briefcast serve``: one ASGI app for the public side, over the same settings and store.

- the published site, ``[site] public_dir`` (:mod:`~briefcast.serve.static`): every path
  that is not one of the pages below;
- ``/subscribe``, ``/confirm/{token}``, ``/u/{token}`` (:mod:`~briefcast.serve.pages`,
  FastAPI) and their stylesheet ``/_serve/serve.css``;
- the editor's pages under ``/editor/`` (:mod:`~briefcast.serve.editor`): log in, approve
  the briefs waiting for it, follow their sends.

The site's files go straight to the static handler, outside FastAPI's routing and
middleware: a feed's revalidation is the request a server gets most, and it costs a stat
and a dictionary look-up. Every response carries the security headers of
:mod:`~briefcast.serve.headers`. This package is the top layer, beside the CLI: the core
never imports it.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from starlette.requests import ClientDisconnect

from briefcast.config import Settings, load_settings
from briefcast.delivery.preflight import unsubscribe_secret
from briefcast.serve import editor, limits, pages
from briefcast.serve import headers as sec
from briefcast.serve.editor import PREVIEW_HEADERS, PREVIEW_PREFIX, Approver, EditorArea, install
from briefcast.serve.mailer import Mailer
from briefcast.serve.pages import Pages, build
from briefcast.serve.static import Message, Receive, Scope, Send, StaticSite
from briefcast.store import Store

# The pages' paths; everything else is the published site (which must not use these names).
PAGES_EXACT = frozenset({pages.SUBSCRIBE, editor.AREA})
PAGES_PREFIXES = (pages.CONFIRM, pages.MANAGE, pages.OWN, editor.HOME)

__all__ = ["PAGES_EXACT", "PAGES_PREFIXES", "ServeApp", "create_app", "worker_app"]


class _FormHeaders:
    """Adds the forms' security headers to every response of the pages' app, errors too
    (an editor's preview files get their own: inline CSS, frames of the same folder)."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        https = scope.get("scheme") == "https"
        chosen = PREVIEW_HEADERS if scope["path"].startswith(PREVIEW_PREFIX) else sec.FORMS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (n, v)
                    for n, v in message.get("headers", [])
                    if n.lower() not in sec.FORMS_NAMES
                ]
                message = {
                    **message,
                    "headers": sec.with_hsts([*kept, *chosen], "https" if https else ""),
                }
            await send(message)

        await self.app(scope, receive, with_headers)  # type: ignore[operator]


class ServeApp:
    """The ASGI app: routes a request to the site or to the pages; runs the lifespan (the
    confirmation mailer's thread, the store's connections). ``approve`` approves a review
    for the editor's pages (default: ``flows.review_actions.approve``, imported when first used)."""

    def __init__(
        self, settings: Settings, store: Store | None = None, approve: Approver | None = None
    ) -> None:
        secret = unsubscribe_secret(settings).encode()
        self.settings = settings
        self._own_store = store is None
        self.store = store if store is not None else Store(settings.database.url)
        self.mailer = Mailer(settings)
        self.pages = Pages(settings, self.store, self.mailer, secret)
        self.editor = EditorArea(settings, self.store, self.pages, approve)
        forms = build(self.pages)
        install(forms, self.editor)
        self.forms = _FormHeaders(forms)
        site = settings.site
        not_found = self.pages.not_found(None, site.languages[0]).body
        self.site = StaticSite(
            site.public_dir,
            site.languages,
            page_max_age=settings.serve.page_max_age_seconds,
            asset_max_age=settings.serve.asset_max_age_seconds,
            cache_max_bytes=settings.serve.cache_max_bytes,
            cache_file_max_bytes=settings.serve.cache_file_max_bytes,
            not_found_page=bytes(not_found),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path in PAGES_EXACT or path.startswith(PAGES_PREFIXES):
                # A client gone (or cut off by a limit) while sending its form: nobody to
                # answer, and no traceback in the log for it.
                with contextlib.suppress(ClientDisconnect):
                    await self.forms(scope, receive, send)
            else:
                await self.site(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: nothing here speaks it
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.mailer.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.mailer.stop()
                if self._own_store:
                    self.store.engine.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    settings: Settings, store: Store | None = None, *, approve: Approver | None = None
) -> ServeApp:
    """The app over these settings (and this store, or one opened from the settings); the
    editor's pages approve with ``approve`` (default: ``flows.review_actions.approve``)."""
    return ServeApp(settings, store, approve)


def worker_app() -> ServeApp:
    """What each uvicorn worker runs (``briefcast.serve:worker_app``, a factory): the
    settings from the environment, as the command that started it read them."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s: %(message)s")
    settings = load_settings()
    limits.configure(settings.serve)  # before the first connection: uvicorn loads us first
    return create_app(settings)
