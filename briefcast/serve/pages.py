"""The pages with forms: subscribe (double opt-in), confirm, unsubscribe and preferences.

- ``GET /subscribe`` the form; ``POST /subscribe`` adds the address as ``pending`` (a known
  address stays exactly as it is) and mails a confirmation link, except to an address that
  left the list, bounced or complained. The page says the same in every case, so the form
  tells nobody who is on the list; the address is looked up (or added) and the email sent
  by a thread of their own, after the answer (:mod:`briefcast.serve.mailer`), so the
  timing does not tell either. An address already active gets the link too: confirming it
  changes the edition it gets.
- ``GET /confirm/{token}`` shows a button; only ``POST`` makes the subscriber active, so a
  link checker that follows links subscribes nobody. A token that is not ours, or not for
  this address, answers 404; one of ours past its expiry, 410 with a page that says so.
- ``POST /u/{token}`` with ``List-Unsubscribe=One-Click`` (RFC 8058, as Gmail and Yahoo send
  it: no cookie, no CSRF token) unsubscribes and answers 200 with an empty body. ``GET
  /u/{token}`` shows the subscriber's page in their language: unsubscribe, or change the
  edition (these forms carry a CSRF token). A token that is not ours answers 404.
- Every form has CSRF protection (:mod:`briefcast.serve.signing`); the subscribe form has
  rate limits per client address and per email address (:mod:`briefcast.serve.ratelimit`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from briefcast import subscribers
from briefcast.config import Settings
from briefcast.delivery import tokens
from briefcast.i18n import language_name, strings, t
from briefcast.render.templating import environment
from briefcast.serve import signing
from briefcast.serve.lang import pick
from briefcast.serve.mailer import Mailer
from briefcast.serve.ratelimit import Buckets, address_key, client_key
from briefcast.store import Store
from briefcast.subscribers import SUPPRESSED, Subscriber, SubscriberError, SubscriberStatus

log = logging.getLogger("briefcast.serve")
UNAVAILABLE_RETRY_SECONDS = 120

FORM_MAX_BYTES = 8 * 1024  # a form here is an address and a few words
FORM_MAX_FIELDS = 16
ONE_CLICK = ("List-Unsubscribe", "One-Click")
NO_STORE = "no-store"
# The pages' paths (briefcast.serve routes them here; the settings' URLs name the first two).
SUBSCRIBE = "/subscribe"
CONFIRM = "/confirm/"  # + a token: the confirmation link's page
MANAGE = "/u/"  # + a token: the subscriber's page, the emails' unsubscribe link
OWN = "/_serve/"  # the pages' own files (their stylesheet)
CSS_CACHE = "public, max-age=3600"  # our own stylesheets: an hour, then asked again by ETag


def etag_of(data: bytes) -> str:
    """A strong ETag for bytes served from memory."""
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


def stylesheet(request: Request, css: bytes, etag: str) -> Response:
    """A stylesheet of ours (the public pages', the editor's), 304 when the browser has it."""
    headers = {"etag": etag, "cache-control": CSS_CACHE}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(css, media_type="text/css; charset=utf-8", headers=headers)


@dataclass(frozen=True)
class Choice:
    code: str
    name: str


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


class Pages:
    """What the form pages share: settings, store, mailer, secret, buckets, templates."""

    def __init__(self, settings: Settings, store: Store, mailer: Mailer, secret: bytes) -> None:
        self.settings = settings
        self.store = store
        self.mailer = mailer
        self.secret = secret
        self.languages = list(settings.site.languages)
        self.templates_dir = settings.site.templates_dir
        self.env = environment("serve", self.templates_dir)
        serve = settings.serve
        self.by_ip = Buckets(serve.ip_burst, serve.ip_per_hour, serve.rate_limit_keys)
        self.by_address = Buckets(
            serve.address_burst, serve.address_per_hour, serve.rate_limit_keys
        )
        self.hours = f"{serve.confirm_hours:g}"
        loader = self.env.loader
        assert loader is not None
        self.css = loader.get_source(self.env, "serve.css")[0].encode()
        self.css_etag = etag_of(self.css)

    # --- words and pages --------------------------------------------------------------

    def word(self, lang: str, key: str, **values: str) -> str:
        return t(
            lang, key, templates_dir=self.templates_dir, site=self.settings.site.name, **values
        )

    def edition(self, code: str, lang: str) -> str:
        """How an edition is named in a sentence: "English", "inglese e italiano"."""
        if code == "both":
            return t(lang, "edition_both", templates_dir=self.templates_dir)
        return language_name(code, lang)

    def editions(self, lang: str) -> list[Choice]:
        return [
            Choice(code, _capital(self.edition(code, lang))) for code in [*self.languages, "both"]
        ]

    def language(self, request: Request, preferred: str | None = None) -> str:
        """The page's language: ``?lang=``, else ``preferred`` (a subscriber's edition),
        else the browser's choice among the site's languages."""
        asked = request.query_params.get("lang")
        if asked in self.languages:
            return asked
        if preferred in self.languages:
            return preferred
        return pick(request.headers.get("accept-language"), self.languages)

    def render(
        self,
        request: Request | None,
        lang: str,
        template: str,
        title: str,
        *,
        status: int = 200,
        action: str | None = None,
        switch: bool = False,
        **values: Any,
    ) -> HTMLResponse:
        """A page; with ``action`` (the form's address), a CSRF token for it, and the
        cookie it pairs with when the browser has none yet."""
        cookie, new = self.csrf_cookie(request)
        links = []
        if switch and request is not None:
            links = [
                {
                    "lang": code,
                    "name": _capital(language_name(code, code)),
                    "href": f"{request.url.path}?lang={code}",
                }
                for code in self.languages
                if code != lang
            ]
        html = self.env.get_template(template).render(
            lang=lang,
            words=strings(lang, self.templates_dir),
            title=title,
            site_name=self.settings.site.name,
            home=f"/{lang}/",
            back=self.word(lang, "serve_back"),
            switch=links,
            action=action,
            csrf=signing.csrf_token(self.secret, cookie, action) if action else "",
            **values,
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["cache-control"] = NO_STORE
        if switch:
            response.headers["vary"] = "Accept-Language"
        if action and new and request is not None:
            self.set_csrf_cookie(response, request, cookie)
        return response

    def csrf_cookie(self, request: Request | None) -> tuple[str, bool]:
        """The browser's CSRF cookie if we issued it, else a new one (and True: to set)."""
        if request is None:
            return signing.csrf_cookie_value(self.secret, None)
        name = signing.csrf_cookie_name(request.url.scheme == "https")
        return signing.csrf_cookie_value(self.secret, request.cookies.get(name))

    def set_csrf_cookie(self, response: Response, request: Request, cookie: str) -> None:
        https = request.url.scheme == "https"
        response.set_cookie(
            signing.csrf_cookie_name(https),
            cookie,
            max_age=signing.CSRF_MAX_AGE,
            path="/",  # and no Domain: what __Host- requires
            httponly=True,
            samesite="strict",
            secure=https,
        )

    def message(
        self,
        request: Request | None,
        lang: str,
        title_key: str,
        *paragraphs: str,
        status: int = 200,
        link: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        response = self.render(
            request,
            lang,
            "message.html.j2",
            self.word(lang, title_key),
            status=status,
            paragraphs=paragraphs,
            link=link,
        )
        response.headers.update(headers or {})
        return response

    def not_found(self, request: Request | None, lang: str) -> HTMLResponse:
        return self.message(
            request, lang, "serve_not_found_title", self.word(lang, "serve_not_found"), status=404
        )

    def forbidden(self, request: Request, lang: str) -> HTMLResponse:
        return self.message(
            request, lang, "serve_forbidden_title", self.word(lang, "serve_forbidden"), status=403
        )

    def too_many(self, request: Request, lang: str, wait: float) -> HTMLResponse:
        return self.message(
            request,
            lang,
            "serve_too_many_title",
            self.word(lang, "serve_too_many"),
            status=429,
            headers={"retry-after": str(max(1, int(wait + 0.999)))},
        )

    def unavailable(self, request: Request | None, lang: str) -> HTMLResponse:
        """The database cannot be written (a full disk, a lost server): 503 and a page that
        says nothing was saved, as a proxy answers when its upstream is down; the write's
        transaction rolled back, so the same click works once the disk has room."""
        return self.message(
            request,
            lang,
            "serve_unavailable_title",
            self.word(lang, "serve_unavailable"),
            status=503,
            headers={"retry-after": str(UNAVAILABLE_RETRY_SECONDS)},
        )

    def csrf_ok(self, request: Request, action: str, form: dict[str, str]) -> bool:
        return signing.csrf_valid(
            self.secret,
            request.cookies.get(signing.csrf_cookie_name(request.url.scheme == "https")),
            action,
            form.get(signing.CSRF_FIELD),
        )

    # --- subscribe ----------------------------------------------------------------------

    def subscribe_page(
        self,
        request: Request,
        lang: str,
        *,
        status: int = 200,
        email: str = "",
        chosen: str | None = None,
        email_error: str = "",
        language_error: str = "",
    ) -> HTMLResponse:
        return self.render(
            request,
            lang,
            "subscribe.html.j2",
            self.word(lang, "serve_subscribe_title"),
            status=status,
            action=SUBSCRIBE,
            switch=status == 200,
            intro=self.word(lang, "serve_subscribe_intro"),
            editions=self.editions(lang),
            chosen=chosen or lang,
            email=email,
            email_error=email_error,
            language_error=language_error,
        )

    async def subscribe(self, request: Request) -> Response:
        form = await read_form(request)
        lang = form.get("lang", "")
        if lang not in self.languages:
            lang = self.language(request)
        if not self.csrf_ok(request, SUBSCRIBE, form):
            return self.forbidden(request, lang)
        client = request.client.host if request.client else "?"
        wait = self.by_ip.take(client_key(client))
        if wait:
            return self.too_many(request, lang, wait)
        raw = form.get("email", "").strip()[:320]
        email_error = language_error = ""
        try:
            address = subscribers.normalize_address(raw)
        except SubscriberError:
            address, email_error = "", self.word(lang, "serve_bad_email")
        try:
            edition = subscribers.check_language(form.get("language", ""), self.settings)
        except SubscriberError:
            edition, language_error = "", self.word(lang, "serve_bad_language")
        if email_error or language_error:
            return self.subscribe_page(
                request,
                lang,
                status=400,
                email=raw,
                chosen=form.get("language"),
                email_error=email_error,
                language_error=language_error,
            )
        wait = self.by_address.take(address_key(address))
        if wait:
            return self.too_many(request, lang, wait)
        if self.mailer.database_failing:
            # Said to every address alike (who is on the list still does not show), and
            # only while the mailer's last write failed: "check your inbox" would be a lie.
            return self.unavailable(request, lang)
        # Looked up (and mailed) after the answer, by the mailer's thread: see mailer.py.
        self.mailer.submit(functools.partial(self._subscribe, address, edition, lang))
        return self.message(
            request,
            lang,
            "serve_check_inbox_title",
            self.word(lang, "serve_check_inbox", email=address, hours=self.hours),
        )

    def _subscribe(self, address: str, edition: str, lang: str) -> EmailMessage | None:
        """Add the address (pending) if new; the confirmation email, unless it left."""
        sub = subscribers.add_pending(self.store, address, edition, settings=self.settings)
        if sub.status in SUPPRESSED:
            return None  # they said no (or their mailbox did): nothing is sent, ever
        token = signing.confirmation(
            self.secret, sub.id, sub.email, edition, self.settings.serve.confirm_hours * 3600
        )
        link = f"{self.settings.site.base_url.rstrip('/')}{CONFIRM}{token}"
        named = self.edition(edition, lang)
        return self.mailer.message(
            sub.email,
            self.word(lang, "serve_email_subject"),
            self.word(lang, "serve_email_body", edition=named, link=link, hours=self.hours) + "\n",
            lang,
        )

    # --- confirm ------------------------------------------------------------------------

    async def _confirmation(
        self, request: Request, token: str
    ) -> tuple[signing.Confirmation, Subscriber, str] | Response:
        """The token's subscriber and the page's language, or the page that refuses it."""
        parsed = signing.parse_confirmation(token)
        sub = (
            await run_in_threadpool(subscribers.get, self.store, parsed.subscriber_id)
            if parsed
            else None
        )
        if parsed is None or sub is None or not parsed.signed_for(self.secret, sub.email):
            return self.not_found(request, self.language(request))
        if parsed.language != "both" and parsed.language not in self.languages:
            return self.not_found(request, self.language(request))  # the site has changed
        lang = self.language(request, parsed.language)
        again = {
            "href": f"{SUBSCRIBE}?lang={lang}",
            "text": self.word(lang, "serve_subscribe_title"),
        }
        if parsed.expired:
            return self.message(
                request,
                lang,
                "serve_expired_title",
                self.word(lang, "serve_expired", hours=self.hours),
                status=410,
                link=again,
            )
        if sub.status in SUPPRESSED:
            return self.message(
                request, lang, "serve_expired_title", self.word(lang, "serve_gone"), status=410
            )
        return parsed, sub, lang

    async def confirm_page(self, request: Request, token: str) -> Response:
        found = await self._confirmation(request, token)
        if isinstance(found, Response):
            return found
        parsed, sub, lang = found
        return self.render(
            request,
            lang,
            "confirm.html.j2",
            self.word(lang, "serve_confirm_title"),
            action=f"{CONFIRM}{token}",
            switch=True,
            intro=self.word(
                lang,
                "serve_confirm_intro",
                email=sub.email,
                edition=self.edition(parsed.language, lang),
            ),
        )

    async def confirm(self, request: Request, token: str) -> Response:
        form = await read_form(request)
        found = await self._confirmation(request, token)
        if isinstance(found, Response):
            return found
        parsed, sub, lang = found
        if not self.csrf_ok(request, f"{CONFIRM}{token}", form):
            return self.forbidden(request, lang)
        status = await run_in_threadpool(
            lambda: subscribers.confirm(self.store, sub.id, parsed.language, settings=self.settings)
        )
        if status != SubscriberStatus.ACTIVE:
            return self.message(
                request, lang, "serve_expired_title", self.word(lang, "serve_gone"), status=410
            )
        named = self.edition(parsed.language, lang)
        return self.message(
            request,
            lang,
            "serve_confirmed_title",
            self.word(lang, "serve_confirmed", email=sub.email, edition=named),
        )

    # --- unsubscribe and preferences ----------------------------------------------------

    async def _subscriber(self, token: str) -> Subscriber | None:
        subscriber_id = tokens.verify(self.secret, token)
        if subscriber_id is None:
            return None
        return await run_in_threadpool(subscribers.get, self.store, subscriber_id)

    def manage_page(self, request: Request, sub: Subscriber, token: str) -> HTMLResponse:
        lang = self.language(request, sub.language)
        if sub.status == SubscriberStatus.ACTIVE:
            state = self.word(
                lang,
                "serve_manage_active",
                email=sub.email,
                edition=self.edition(sub.language, lang),
            )
        elif sub.status == SubscriberStatus.PENDING:
            state = self.word(lang, "serve_manage_pending", email=sub.email)
        else:
            state = self.word(lang, "serve_manage_left", email=sub.email)
        return self.render(
            request,
            lang,
            "manage.html.j2",
            self.word(lang, "serve_manage_title"),
            action=f"{MANAGE}{token}",
            switch=True,
            state=state,
            can_change=sub.status not in SUPPRESSED,
            leave=self.word(lang, "serve_unsubscribe_intro", email=sub.email),
            editions=self.editions(lang),
            chosen=sub.language,
        )

    async def manage(self, request: Request, token: str) -> Response:
        sub = await self._subscriber(token)
        if sub is None:
            return self.not_found(request, self.language(request))
        return self.manage_page(request, sub, token)

    async def unsubscribe(self, request: Request, token: str) -> Response:
        form = await read_form(request)
        sub = await self._subscriber(token)
        if sub is None:
            return self.not_found(request, self.language(request))
        if form.get(ONE_CLICK[0]) == ONE_CLICK[1]:
            await run_in_threadpool(subscribers.unsubscribe, self.store, sub.id)
            return Response(b"", media_type="text/plain", headers={"cache-control": NO_STORE})
        action = f"{MANAGE}{token}"
        lang = self.language(request, sub.language)
        if not self.csrf_ok(request, action, form):
            return self.forbidden(request, lang)
        what = form.get("action")
        if what == "unsubscribe":
            await run_in_threadpool(subscribers.unsubscribe, self.store, sub.id)
            return self.message(
                request,
                lang,
                "serve_unsubscribed_title",
                self.word(lang, "serve_unsubscribed", email=sub.email),
            )
        if what == "edition":
            try:
                edition = subscribers.check_language(form.get("language", ""), self.settings)
            except SubscriberError:
                return self.manage_page(request, sub, token)
            await run_in_threadpool(
                lambda: subscribers.set_language(
                    self.store, sub.id, edition, settings=self.settings
                )
            )
            lang = self.language(request, edition)
            return self.message(
                request,
                lang,
                "serve_saved_title",
                self.word(
                    lang, "serve_saved", email=sub.email, edition=self.edition(edition, lang)
                ),
            )
        return self.message(
            request,
            lang,
            "serve_bad_request_title",
            self.word(lang, "serve_bad_request"),
            status=400,
        )

    # --- the rest -----------------------------------------------------------------------

    def stylesheet(self, request: Request) -> Response:
        return stylesheet(request, self.css, self.css_etag)

    def error(self, request: Request, exc: HTTPException) -> Response:
        lang = self.language(request)
        keys = {
            404: ("serve_not_found_title", "serve_not_found"),
            429: ("serve_too_many_title", "serve_too_many"),
        }
        title, text = keys.get(exc.status_code, ("serve_bad_request_title", "serve_bad_request"))
        return self.message(
            request,
            lang,
            title,
            self.word(lang, text),
            status=exc.status_code,
            headers=dict(exc.headers or {}),
        )


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (the first of each name), from a body of at most FORM_MAX_BYTES,
    form-urlencoded or multipart (RFC 8058 allows both); HTTPException otherwise."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > FORM_MAX_BYTES:
        raise HTTPException(413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            raise HTTPException(413)
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    pairs: list[tuple[str, str]]
    if media in ("application/x-www-form-urlencoded", ""):
        try:
            pairs = parse_qsl(
                body.decode("utf-8"), keep_blank_values=True, max_num_fields=FORM_MAX_FIELDS
            )
        except ValueError:  # UnicodeDecodeError too
            raise HTTPException(400) from None
    elif media == "multipart/form-data":

        async def once() -> AsyncIterator[bytes]:
            yield bytes(body)
            yield b""

        parser = MultiPartParser(
            request.headers,
            once(),  # type: ignore[arg-type]
            max_files=0,
            max_fields=FORM_MAX_FIELDS,
            max_part_size=FORM_MAX_BYTES,
        )
        try:
            form = await parser.parse()
        except MultiPartException:
            raise HTTPException(400) from None
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    else:
        raise HTTPException(415)
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


def build(pages: Pages) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route(SUBSCRIBE, methods=["GET", "HEAD"])
    async def subscribe_form(request: Request) -> Response:
        return pages.subscribe_page(request, pages.language(request))

    @app.post(SUBSCRIBE)
    async def subscribe(request: Request) -> Response:
        return await pages.subscribe(request)

    @app.api_route(CONFIRM + "{token}", methods=["GET", "HEAD"])
    async def confirm_form(request: Request, token: str) -> Response:
        return await pages.confirm_page(request, token)

    @app.post(CONFIRM + "{token}")
    async def confirm(request: Request, token: str) -> Response:
        return await pages.confirm(request, token)

    @app.api_route(MANAGE + "{token}", methods=["GET", "HEAD"])
    async def manage(request: Request, token: str) -> Response:
        return await pages.manage(request, token)

    @app.post(MANAGE + "{token}")
    async def unsubscribe(request: Request, token: str) -> Response:
        return await pages.unsubscribe(request, token)

    @app.api_route(f"{OWN}serve.css", methods=["GET", "HEAD"])
    async def stylesheet(request: Request) -> Response:
        return pages.stylesheet(request)

    @app.exception_handler(HTTPException)
    async def error(request: Request, exc: HTTPException) -> Response:
        return pages.error(request, exc)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError) -> Response:
        # SQLite's "database or disk is full", "disk I/O error", a PostgreSQL server gone:
        # the operator gets a log line, the reader a page that says nothing changed.
        log.error(
            "%s %s: the database cannot be written: %s",
            request.method,
            request.url.path.split("/")[1],
            exc.orig,
        )
        return pages.unavailable(request, pages.language(request))

    return app
