"""The editor's pages, under ``/editor/``: log in, see the briefs waiting for approval, open
their previews, approve them (now or at a time), follow their sends.

- ``GET/POST /editor/login``: name and password (:mod:`briefcast.editors`, argon2id). The
  form has the subscribe form's CSRF protection (a signed double-submit cookie); attempts
  are rate limited per client address, per name and address, and per name (token buckets,
  ``[serve] login_*``): past a burst they answer 429 without looking at the password. At
  most ``login_hashes_at_once`` passwords are hashed at once (64 MiB each); the next wait
  ``login_wait_seconds``, then answer 503. A wrong name and a wrong password get the
  same answer. A good one opens a session: a random token in a cookie (``HttpOnly``,
  ``SameSite=Strict``, ``Path=/editor``, ``Secure`` over https), its sha256 in the table.
- ``GET /editor/``: the reviews, waiting first, each under its title, with its preview, its
  Approve form (the digest of the preview shown, an optional time to send at), whom each
  email edition will reach (active subscribers), once approved how its sends stand, and
  under History each past send's counts per channel and its social posts' links
  (:mod:`briefcast.serve.editor_stats`). A
  brief that could not be read is there too, failed, by its file name, with the reason.
  While sends are under way the page reloads itself every 10 seconds
  (``<meta http-equiv="refresh">``: the CSP allows no script); a link turns that off, as
  WCAG 2.2.1 asks, and it is off while nothing is under way, so a time being typed is not
  wiped out for nothing.
- ``POST /editor/approve``: approves only if the posted digest is the waiting review's and
  :func:`briefcast.reviews.check` finds the brief, templates and settings as previewed;
  then calls the approve callable (``flows.review_actions.approve`` unless the app was given
  another), which resumes the waiting flow run. ``send_at`` (``datetime-local``) is read in
  the site's time zone, and must be in the future and within 90 days.
- ``POST /editor/test-send``: every edition of a waiting preview to the editor's own
  address (the editor's name, when it is one), marked [TEST], outside the ledger: the email
  channel's ``send_test``, as ``briefcast publish --test-to``; refused if the brief,
  templates or settings changed since the preview.
- ``POST /editor/discard``: a waiting review is cancelled (its suspended run too).
- ``POST /editor/reschedule``: a scheduled send's run gets a new time (``send_at``).
- ``POST /editor/cancel``: a scheduled send is cancelled and its brief previewed again, so
  it waits for approval once more (``briefcast scheduled --cancel``, then a new review).
  These three ask Prefect through :mod:`flows.review_actions` (the server found as for an
  approval; none: refused in one line, nothing changed).
- ``POST /editor/logout`` ends the session.
- ``GET /editor/preview/{brief_id}/{digest}/{path}``: the files of the review of that brief
  bound to that digest (the list links each review so), confined to its preview folder (no
  ``..``, no hidden names, no symlink leading out): the copy kept under the review's digest
  (``briefcast.previews.reviewed_dir``), not the latest dry run of that id, which another
  file may since have replaced. Addressed by digest, the page and its frames come from one
  review even if a newer one is recorded between their requests. While that review waits,
  its index.html carries an Approve form bound to its digest, the digest shown by it.
  ``GET /editor/preview/{brief_id}/{path}``: the same for the brief's newest review.

Every POST checks the session's CSRF token (an HMAC of the session's own secret and the
form's address). After an action the list page says what happened (Post/Redirect/Get; the
line travels in a signed cookie that lives a minute). Every answer here is ``no-store``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from briefcast import editors, reviews
from briefcast.config import Settings
from briefcast.delivery import ledger
from briefcast.delivery.ledger import DeliveryStatus
from briefcast.delivery.smtp import ResultStatus
from briefcast.errors import BriefcastError, UserError
from briefcast.render.layout import INDEX
from briefcast.render.preview import APPROVE_SLOT, FIT_SCRIPT_CSP
from briefcast.reviews import Review, ReviewState
from briefcast.safe_io import OutsideFolder, UnsafeFile, inside, read_regular
from briefcast.serve import editor_stats, signing
from briefcast.serve import headers as sec
from briefcast.serve.pages import NO_STORE, Pages, etag_of, read_form, stylesheet
from briefcast.serve.ratelimit import Buckets
from briefcast.serve.static import content_type
from briefcast.store import BRIEF_ID_MAX, Store, sends

log = logging.getLogger(__name__)

AREA = "/editor"
HOME = f"{AREA}/"  # every page of the editor's is under it
LOGIN = f"{HOME}login"
LOGOUT = f"{HOME}logout"
APPROVE = f"{HOME}approve"
PREVIEW_PREFIX = f"{HOME}preview/"
SESSION_COOKIE = "bc_editor"
FLASH_COOKIE = "bc_editor_flash"
SESSION_TTL = timedelta(hours=12)
FLASH_MAX_AGE = 60
REFRESH_SECONDS = 10
SCHEDULE_MAX = timedelta(days=90)
PREVIEW_MAX_BYTES = 50_000_000
LIST_LIMIT = 100
SHOWN = (*reviews.OPEN_STATES, ReviewState.SENT, ReviewState.FAILED, ReviewState.REFUSED)
UNDER_WAY = (ReviewState.APPROVED, ReviewState.SCHEDULED, ReviewState.SENDING)
# The email's progress: these always, then the others that have rows.
EMAIL_ALWAYS = (
    DeliveryStatus.SENT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.UNKNOWN,
    DeliveryStatus.QUEUED,
)
EMAIL_STATUSES = (*EMAIL_ALWAYS, DeliveryStatus.SENDING, DeliveryStatus.BOUNCED)
WRONG = "Wrong name or password."
ACTIONS = ("discard", "cancel", "reschedule", "test-send")
_FLASH = b"briefcast-editor-flash-v1:"
_DIGEST = re.compile(r"[0-9a-f]{64}")  # a review's digest: sha256, hex

# A preview is our own HTML with inline CSS, the emails in iframes of the same folder, and
# images as the subscribers' mail clients would load them. Its one script is ours, fixed,
# allowed by its hash (it fits each frame's height to its email); its one form approves.
PREVIEW_CSP = (
    "default-src 'none'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; "
    f"font-src 'self'; frame-src 'self'; script-src {FIT_SCRIPT_CSP}; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
PREVIEW_HEADERS: tuple[sec.Header, ...] = (
    (b"content-security-policy", PREVIEW_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"referrer-policy", b"no-referrer"),
)


class Approver(Protocol):
    """What approves a waiting review: :func:`flows.review_actions.approve`, or a test's fake."""

    def __call__(
        self,
        brief_id: str,
        settings: Settings,
        *,
        send_at: datetime | None,
        by: str,
        digest: str | None = None,
    ) -> Review: ...


class Actions(Protocol):
    """What the editor's other actions ask of Prefect: :class:`flows.review_actions.
    PrefectActions`, or a test's fake."""

    def cancel_run(self, flow_run_id: str) -> None: ...

    def reschedule(self, flow_run_id: str, when: datetime) -> None: ...

    def review_again(self, path: Path) -> None: ...


def default_approve(
    brief_id: str,
    settings: Settings,
    *,
    send_at: datetime | None,
    by: str,
    digest: str | None = None,
) -> Review:
    """``flows.review_actions.approve``, imported only when an editor approves: serving the site
    never loads the flows (nor, through them, Prefect)."""
    from flows.review_actions import approve

    return approve(brief_id, settings, send_at=send_at, by=by, digest=digest)


_warming: threading.Thread | None = None


def _warm_up_prefect() -> None:
    """Import what an approval needs (Prefect: about 1.5 s of a core) while the editor who
    just logged in reads the previews, so that their first Approve answers at once. Serving
    the site alone still never loads it; an approval arriving meanwhile waits for the import
    (Python's import lock), no longer than it would have taken anyway."""
    global _warming
    if _warming is None:

        def warm() -> None:
            import prefect.flow_runs  # noqa: F401

            import flows.review_actions  # noqa: F401

        _warming = threading.Thread(target=warm, name="prefect-warm-up", daemon=True)
        _warming.start()


class ScheduleError(UserError):
    """A send time that cannot be used."""


class NotScheduled(UserError):
    """No scheduled send to cancel or move."""


class TestSendRefused(UserError):
    """A test send that could not be made, or not to every address."""


def parse_send_at(raw: str, tz: ZoneInfo, now: datetime) -> datetime | None:
    """A ``datetime-local`` value read in ``tz``, as an aware datetime in UTC: None when
    empty; ``ScheduleError`` unless it exists there, is after ``now`` and within
    ``SCHEDULE_MAX`` of it."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        naive = datetime.fromisoformat(raw[:40])
    except ValueError:
        raise ScheduleError(f"send at: {raw[:40]!r} is not a date and time") from None
    if naive.tzinfo is not None:
        naive = naive.astimezone(tz).replace(tzinfo=None)
    when = naive.replace(tzinfo=tz)
    if when.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise ScheduleError(
            f"send at: {naive:%Y-%m-%d %H:%M} does not exist in {tz.key} (the clocks skip it)"
        )
    if when <= now:
        raise ScheduleError(f"send at: {naive:%Y-%m-%d %H:%M} ({tz.key}) is not in the future")
    if when > now + SCHEDULE_MAX:
        raise ScheduleError(
            f"send at: {naive:%Y-%m-%d %H:%M} ({tz.key}) is more than {SCHEDULE_MAX.days} days away"
        )
    # In UTC: SQLite keeps a datetime's wall-clock time and drops its offset (store.py).
    return when.astimezone(UTC)


@dataclass(frozen=True)
class Flash:
    kind: str  # ok | error
    text: str


@dataclass(frozen=True)
class Row:
    """A review as the list shows it."""

    review: Review
    created: str
    send_at: str
    progress: list[tuple[str, str]]
    reach: list[tuple[str, int]] = field(default_factory=list)
    history: list[editor_stats.ChannelHistory] = field(default_factory=list)

    @property
    def past(self) -> bool:
        return self.review.state not in reviews.OPEN_STATES


def _preview_names(path: str) -> list[str] | None:
    """The path's names inside a preview folder (a folder is its index.html); None when a
    name is empty, ``.``/``..`` or hidden, or holds a backslash or NUL."""
    names = path.split("/") if path else [""]
    if names[-1] == "":
        names[-1] = INDEX
    for name in names:
        if not name or name.startswith(".") or "\\" in name or "\x00" in name:
            return None
    return names


class EditorArea:
    """The editor's pages over the app's settings, store and form machinery."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        pages: Pages,
        approve: Approver | None = None,
        *,
        session_ttl: timedelta = SESSION_TTL,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pages = pages
        self.secret = pages.secret
        self.env = pages.env
        self.approve: Approver = approve or default_approve
        self.actions: Actions | None = None  # flows.review_actions', made when first used
        self.session_ttl = session_ttl
        self.fresh_limits()
        # argon2 takes 64 MiB a hash (RFC 9106's second profile): without a bound, 20 logins
        # at once took serve to 1.4 GB. So few run at once; the rest wait their turn a while.
        self.hashing = asyncio.Semaphore(settings.serve.login_hashes_at_once)
        loader = self.env.loader
        assert loader is not None
        self.css = loader.get_source(self.env, "editor.css")[0].encode()
        self.css_etag = etag_of(self.css)

    def fresh_limits(self) -> None:
        """The login buckets, full: per client address; per name and address (a name
        locked from one address is not locked from the others); per name from everywhere
        (higher, and it fills up again: it slows a guesser with many addresses, never
        locks an editor out for ever)."""
        serve = self.settings.serve
        keys = serve.rate_limit_keys
        self.by_ip = Buckets(serve.login_ip_burst, serve.login_ip_per_hour, keys)
        self.by_name_address = Buckets(
            serve.login_name_address_burst, serve.login_name_address_per_hour, keys
        )
        self.by_name = Buckets(serve.login_name_burst, serve.login_name_per_hour, keys)

    # --- sessions, CSRF, flash -------------------------------------------------------------

    async def session(self, request: Request) -> editors.Session | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        return await run_in_threadpool(editors.session, self.store, token)

    def form_token(self, session: editors.Session, action: str) -> str:
        return signing.csrf_token(self.secret, session.csrf, action)

    def form_ok(self, session: editors.Session, action: str, form: dict[str, str]) -> bool:
        given = form.get(signing.CSRF_FIELD)
        return bool(given) and hmac.compare_digest(self.form_token(session, action), given or "")

    def _flash_mac(self, payload: str) -> str:
        mac = hmac.new(self.secret, _FLASH + payload.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def with_flash(self, response: Response, request: Request, kind: str, text: str) -> Response:
        data = json.dumps([kind, " ".join(text.split())[:1000]]).encode()
        payload = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        response.set_cookie(
            FLASH_COOKIE,
            f"{payload}.{self._flash_mac(payload)}",
            max_age=FLASH_MAX_AGE,
            path=AREA,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    def flash(self, request: Request) -> Flash | None:
        payload, _, mac = request.cookies.get(FLASH_COOKIE, "").partition(".")
        if not payload or not hmac.compare_digest(self._flash_mac(payload), mac):
            return None
        try:
            kind, text = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return Flash("error" if kind == "error" else "ok", str(text))

    def redirect(self, request: Request, to: str, flash: Flash | None = None) -> Response:
        response = RedirectResponse(to, status_code=303, headers={"cache-control": NO_STORE})
        if flash is not None:
            self.with_flash(response, request, flash.kind, flash.text)
        return response

    # --- pages ----------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        template: str,
        title: str,
        *,
        session: editors.Session | None = None,
        status: int = 200,
        flash: Flash | None = None,
        refresh: int = 0,
        **values: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            title=title,
            site_name=self.settings.site.name,
            editor=session.name if session else "",
            logout_csrf=self.form_token(session, LOGOUT) if session else "",
            flash=flash,
            refresh=refresh,
            **values,
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["cache-control"] = NO_STORE
        if request.cookies.get(FLASH_COOKIE):
            response.delete_cookie(FLASH_COOKIE, path=AREA)
        return response

    def refusal(
        self, request: Request, status: int, title: str, text: str, headers: dict[str, str]
    ) -> HTMLResponse:
        response = self.render(
            request, "editor_message.html.j2", title, status=status, paragraphs=[text]
        )
        response.headers.update(headers)
        return response

    def forbidden(self, request: Request) -> HTMLResponse:
        return self.refusal(
            request,
            403,
            "Forbidden",
            "This form has expired or did not come from this site. Go back, reload the page "
            "and try again.",
            {},
        )

    def login_page(
        self, request: Request, *, status: int = 200, name: str = "", error: str = ""
    ) -> HTMLResponse:
        action = LOGIN
        cookie, new = self.pages.csrf_cookie(request)
        response = self.render(
            request,
            "editor_login.html.j2",
            "Editor login",
            status=status,
            flash=self.flash(request),
            action=action,
            csrf=signing.csrf_token(self.secret, cookie, action),
            name=name,
            error=error,
        )
        if new:
            self.pages.set_csrf_cookie(response, request, cookie)
        return response

    async def login_form(self, request: Request) -> Response:
        if await self.session(request) is not None:
            return self.redirect(request, HOME)
        return self.login_page(request)

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        if not self.pages.csrf_ok(request, LOGIN, form):
            return self.forbidden(request)
        name = form.get("name", "").strip()[: editors.NAME_MAX + 1]
        password = form.get("password", "")
        client = request.client.host if request.client else "?"
        key = name.casefold()
        wait = (
            self.by_ip.take(client)
            or self.by_name_address.take(f"{key}\n{client}")
            or self.by_name.take(key)
        )
        if wait:
            return self.refusal(
                request,
                429,
                "Too many attempts",
                "Too many login attempts. Wait a while, then try again.",
                {"retry-after": str(max(1, math.ceil(wait)))},
            )
        waited = self.settings.serve.login_wait_seconds
        try:
            await asyncio.wait_for(self.hashing.acquire(), waited)
        except TimeoutError:
            log.warning("editor login from %s refused: no hash slot in %.1f s", client, waited)
            return self.refusal(
                request,
                503,
                "Busy",
                "Too many logins at once. Wait a few seconds, then try again.",
                {"retry-after": str(max(1, math.ceil(waited)))},
            )
        try:
            editor_id = await run_in_threadpool(editors.verify, self.store, name, password)
        finally:
            self.hashing.release()
        if editor_id is None:
            log.warning("editor login failed for %r from %s", name[:100], client)
            return self.login_page(request, status=401, name=name, error=WRONG)
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            await run_in_threadpool(editors.close_session, self.store, old)
        token, _ = await run_in_threadpool(
            editors.open_session, self.store, editor_id, self.session_ttl
        )
        _warm_up_prefect()
        response = self.redirect(request, HOME)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(self.session_ttl.total_seconds()),
            path=AREA,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await read_form(request)
        session = await self.session(request)
        if session is None:
            return self.redirect(request, LOGIN)
        if not self.form_ok(session, LOGOUT, form):
            return self.forbidden(request)
        await run_in_threadpool(
            editors.close_session, self.store, request.cookies.get(SESSION_COOKIE)
        )
        response = self.redirect(request, LOGIN, Flash("ok", "You are logged out."))
        response.delete_cookie(SESSION_COOKIE, path=AREA)
        return response

    # --- the list -------------------------------------------------------------------------

    def _progress(self, brief_id: str) -> list[tuple[str, str]]:
        email = ledger.counts(self.store, brief_id)
        lines = []
        if email:
            shown = list(EMAIL_ALWAYS)
            shown += [s for s in EMAIL_STATUSES if s not in shown and email[s]]
            lines.append(("email", " · ".join(f"{email[s]} {s}" for s in shown)))
        else:
            lines.append(("email", "nothing queued yet"))
        query = (
            select(sends.c.channel, sends.c.status, func.count())
            .where(sends.c.brief_id == brief_id)
            .group_by(sends.c.channel, sends.c.status)
            .order_by(sends.c.channel, sends.c.status)
        )
        by_channel: dict[str, Counter[str]] = {}
        with self.store.engine.connect() as conn:
            for channel, status, n in conn.execute(query):
                by_channel.setdefault(channel, Counter())[status] = int(n)
        for channel, counted in by_channel.items():
            lines.append((channel, " · ".join(f"{n} {s}" for s, n in sorted(counted.items()))))
        return lines

    def _editions(self, review: Review) -> list[str]:
        """The email editions its preview holds, the site's languages first, then "both"."""
        if not review.preview:
            return []
        try:
            names = {p.stem for p in (Path(review.preview) / "email").glob("*.html")}
        except OSError:
            return []
        order = [*self.settings.site.languages, "both"]
        return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))

    def _rows(self) -> list[Row]:
        tz = self.settings.site.tz
        listed = reviews.listed(self.store, SHOWN, LIST_LIMIT)
        listed.sort(key=lambda r: r.state != ReviewState.WAITING)  # stable: newest first within
        return [
            Row(
                review=r,
                created=_when(r.created_at, tz),
                send_at=_when(r.send_at, tz) if r.send_at else "",
                # A brief that could not be read (no digest) was never sent anywhere.
                progress=self._progress(r.brief_id) if r.state in UNDER_WAY and r.digest else [],
                reach=editor_stats.reach(self.store, self._editions(r))
                if r.state in reviews.OPEN_STATES and r.digest
                else [],
                history=editor_stats.history(self.store, r.brief_id)
                if r.state not in reviews.OPEN_STATES and r.digest
                else [],
            )
            for r in listed
        ]

    async def list_page(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.redirect(request, LOGIN)
        rows = await run_in_threadpool(self._rows)
        under_way = any(r.review.state in UNDER_WAY for r in rows)
        wanted = request.query_params.get("refresh") != "off"
        tz = self.settings.site.tz
        now = datetime.now(tz)
        return self.render(
            request,
            "editor_list.html.j2",
            "Briefs to approve",
            session=session,
            flash=self.flash(request),
            refresh=REFRESH_SECONDS if under_way and wanted else 0,
            under_way=under_way,
            refreshing=wanted,
            refresh_every=REFRESH_SECONDS,
            rows=rows,
            waiting=ReviewState.WAITING,
            approve_csrf=self.form_token(session, APPROVE),
            action_csrf={a: self.form_token(session, f"{HOME}{a}") for a in ACTIONS},
            tz=tz.key,
            min_at=f"{now:%Y-%m-%dT%H:%M}",
            max_at=f"{now + SCHEDULE_MAX:%Y-%m-%dT%H:%M}",
        )

    # --- approve --------------------------------------------------------------------------

    async def approve_post(self, request: Request) -> Response:
        form = await read_form(request)
        session = await self.session(request)
        if session is None:
            return self.redirect(
                request, LOGIN, Flash("error", "Log in again: your session ended.")
            )
        if not self.form_ok(session, APPROVE, form):
            return self.forbidden(request)
        brief_id = form.get("brief_id", "")[:BRIEF_ID_MAX]
        try:
            send_at = parse_send_at(
                form.get("send_at", ""), self.settings.site.tz, datetime.now(UTC)
            )
            review = await run_in_threadpool(self._approve, session, brief_id, form, send_at)
        except BriefcastError as exc:  # Changed, NotWaiting, ScheduleError, ResumeFailed
            log.info("editor %s: approval of %r refused: %s", session.name, brief_id, exc)
            return self.redirect(request, HOME, Flash("error", str(exc)))
        except Exception:
            log.exception("editor %s: approving %r failed", session.name, brief_id)
            text = f"{brief_id}: the approval failed (see the server's log); nothing was sent"
            return self.redirect(request, HOME, Flash("error", text))
        if review.send_at is not None:
            when = _when(review.send_at, self.settings.site.tz)
            text = f"Approved {review.brief_id}: it will be sent at {when}."
        else:
            text = f"Approved {review.brief_id}: it is being sent now."
        log.info("editor %s approved %s", session.name, review.brief_id)
        return self.redirect(request, HOME, Flash("ok", text))

    def _approve(
        self,
        session: editors.Session,
        brief_id: str,
        form: dict[str, str],
        send_at: datetime | None,
    ) -> Review:
        review = reviews.waiting_for(self.store, brief_id)
        if not hmac.compare_digest(review.digest, form.get("digest", "")):
            raise reviews.Changed(
                f"{brief_id}: the preview you approved is not the one waiting now (a newer "
                "preview replaced it): nothing was sent; open the new preview and approve it"
            )
        reviews.check(review, self.settings)
        # The digest the editor saw: a newer preview recorded meanwhile is not approved.
        return self.approve(
            brief_id, self.settings, send_at=send_at, by=session.name, digest=review.digest
        )

    # --- discard, cancel, reschedule, test send ---------------------------------------------

    def _prefect(self) -> Actions:
        if self.actions is None:
            from flows.review_actions import PrefectActions  # Prefect only when used

            self.actions = PrefectActions(self.settings)
        return self.actions

    async def action_post(self, request: Request, action: str) -> Response:
        """One of the actions below, by the form's ``brief_id``: Post/Redirect/Get, its
        outcome (or why it was refused) in one line on the list."""
        form = await read_form(request)
        session = await self.session(request)
        if session is None:
            return self.redirect(
                request, LOGIN, Flash("error", "Log in again: your session ended.")
            )
        if not self.form_ok(session, f"{HOME}{action}", form):
            return self.forbidden(request)
        brief_id = form.get("brief_id", "")[:BRIEF_ID_MAX]
        do = {
            "discard": self._discard,
            "cancel": self._cancel,
            "reschedule": self._reschedule,
            "test-send": self._test_send,
        }[action]
        try:
            text = await run_in_threadpool(do, session, brief_id, form)
        except BriefcastError as exc:
            log.info("editor %s: %s of %r refused: %s", session.name, action, brief_id, exc)
            return self.redirect(request, HOME, Flash("error", str(exc)))
        except Exception:
            log.exception("editor %s: %s of %r failed", session.name, action, brief_id)
            text = f"{brief_id}: the {action} failed (see the server's log); nothing changed"
            return self.redirect(request, HOME, Flash("error", text))
        log.info("editor %s: %s %s", session.name, action, brief_id)
        return self.redirect(request, HOME, Flash("ok", text))

    def _discard(self, session: editors.Session, brief_id: str, form: dict[str, str]) -> str:
        """A waiting review is cancelled, its suspended run with it: nothing of it is sent."""
        review = reviews.waiting_for(self.store, brief_id)
        self._prefect().cancel_run(review.flow_run_id)
        reviews.set_state(
            self.store,
            review.flow_run_id,
            ReviewState.CANCELLED,
            detail=f"discarded by {session.name}",
        )
        return f"Discarded {brief_id}: nothing of it will be sent."

    def _scheduled(self, brief_id: str) -> Review:
        review = reviews.latest(self.store, brief_id, (ReviewState.SCHEDULED,))
        if review is None or review.send_flow_run_id is None:
            raise NotScheduled(f"{brief_id}: no send of it is scheduled")
        return review

    def _cancel(self, session: editors.Session, brief_id: str, form: dict[str, str]) -> str:
        """The scheduled send is cancelled and the brief previewed again, to wait for
        approval once more (as ``briefcast scheduled --cancel``, then a new review)."""
        review = self._scheduled(brief_id)
        assert review.send_flow_run_id is not None
        self._prefect().cancel_run(review.send_flow_run_id)
        reviews.set_state(
            self.store,
            review.flow_run_id,
            ReviewState.CANCELLED,
            detail=f"send cancelled by {session.name}; previewed again for approval",
        )
        self._prefect().review_again(Path(review.path))
        return (
            f"Cancelled the send of {brief_id}: it is previewed again and will wait for approval."
        )

    def _reschedule(self, session: editors.Session, brief_id: str, form: dict[str, str]) -> str:
        when = parse_send_at(form.get("send_at", ""), self.settings.site.tz, datetime.now(UTC))
        if when is None:
            raise ScheduleError("send at: give the new date and time")
        review = self._scheduled(brief_id)
        assert review.send_flow_run_id is not None
        self._prefect().reschedule(review.send_flow_run_id, when)
        reviews.set_state(self.store, review.flow_run_id, ReviewState.SCHEDULED, send_at=when)
        return f"Rescheduled {brief_id}: it will be sent at {_when(when, self.settings.site.tz)}."

    def _test_send(self, session: editors.Session, brief_id: str, form: dict[str, str]) -> str:
        """Every edition of the waiting preview to the editor's own address, marked [TEST],
        outside the ledger: the email channel's ``send_test``, as ``publish --test-to``."""
        from briefcast import channel as registry
        from briefcast.pipeline import build, provisional, read
        from briefcast.subscribers import normalize_address

        review = reviews.waiting_for(self.store, brief_id)
        try:
            to = normalize_address(session.name)
        except ValueError:
            raise TestSendRefused(
                f"test send: your editor name {session.name!r} is not an email address"
            ) from None
        # What was previewed, or refused: the brief, templates and settings unchanged.
        reviews.check(review, self.settings)
        briefs = read([review.path], self.settings)
        dated = provisional(briefs, self.settings, self.store.first_seen(b.id for b in briefs))
        outputs = build(dated, self.settings, ["email"])
        send_test = getattr(registry.get("email"), "send_test", None)
        if send_test is None:
            raise TestSendRefused("test send: the email channel cannot send tests")
        results = send_test(outputs[0], self.settings, [to])
        failed = [r for r in results if r.status != ResultStatus.SENT]
        if failed:
            raise TestSendRefused(
                "test send: "
                + "; ".join(f"{r.edition} to {r.address}: {r.status} {r.reply}" for r in failed)
            )
        return f"Sent a test of {brief_id} to {to}: {len(results)} editions, marked [TEST]."

    # --- previews -------------------------------------------------------------------------

    def _preview_file(
        self, brief_id: str, names: Sequence[str]
    ) -> tuple[bytes, str, Review] | None:
        review = reviews.latest(self.store, brief_id, reviews.STATES)
        if len(names) > 1 and _DIGEST.fullmatch(names[0]):
            review = reviews.with_digest(self.store, brief_id, names[0])
            names = names[1:]
        if review is None or not review.preview:
            return None
        try:
            real = inside(Path(review.preview), *names)
            return read_regular(real, PREVIEW_MAX_BYTES), content_type(real.name), review
        except (OutsideFolder, UnsafeFile, OSError, ValueError):
            return None

    def _with_approve(self, data: bytes, session: editors.Session, review: Review) -> bytes:
        """The preview page with its Approve form in its slot: bound to the digest of the
        review it shows, so what is approved is what was looked at."""
        now = datetime.now(self.settings.site.tz)
        form = self.env.get_template("editor_preview_approve.html.j2").render(
            review=review,
            csrf=self.form_token(session, APPROVE),
            tz=self.settings.site.tz.key,
            min_at=f"{now:%Y-%m-%dT%H:%M}",
            max_at=f"{now + SCHEDULE_MAX:%Y-%m-%dT%H:%M}",
        )
        return data.replace(APPROVE_SLOT.encode(), form.encode(), 1)

    async def preview(self, request: Request, brief_id: str, path: str) -> Response:
        session = await self.session(request)
        if session is None:
            return self.redirect(request, LOGIN)
        names = _preview_names(path)
        found = None
        if names is not None and 0 < len(brief_id) <= 200:
            found = await run_in_threadpool(self._preview_file, brief_id, names)
        if found is None:
            return self.refusal(request, 404, "Not found", "There is no such preview file.", {})
        data, ctype, review = found
        assert names is not None
        index = names in ([INDEX], [review.digest, INDEX])
        if index and review.state == ReviewState.WAITING and review.digest:
            data = self._with_approve(data, session, review)
        return Response(data, media_type=ctype, headers={"cache-control": NO_STORE})

    def stylesheet(self, request: Request) -> Response:
        return stylesheet(request, self.css, self.css_etag)


def _when(moment: datetime, tz: ZoneInfo) -> str:
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M %Z}"


def install(app: FastAPI, area: EditorArea) -> None:
    """The editor's routes, on the pages' app."""

    @app.api_route(AREA, methods=["GET", "HEAD"])
    async def editor_root(request: Request) -> Response:
        return area.redirect(request, HOME)

    @app.api_route(HOME, methods=["GET", "HEAD"])
    async def editor_list(request: Request) -> Response:
        return await area.list_page(request)

    @app.api_route(LOGIN, methods=["GET", "HEAD"])
    async def editor_login_form(request: Request) -> Response:
        return await area.login_form(request)

    @app.post(LOGIN)
    async def editor_login(request: Request) -> Response:
        return await area.login(request)

    @app.post(LOGOUT)
    async def editor_logout(request: Request) -> Response:
        return await area.logout(request)

    @app.post(APPROVE)
    async def editor_approve(request: Request) -> Response:
        return await area.approve_post(request)

    def action_route(action: str) -> Any:
        async def editor_action(request: Request) -> Response:
            return await area.action_post(request, action)

        return editor_action

    for action in ACTIONS:
        app.add_api_route(f"{HOME}{action}", action_route(action), methods=["POST"])

    @app.api_route(f"{HOME}editor.css", methods=["GET", "HEAD"])
    async def editor_stylesheet(request: Request) -> Response:
        return area.stylesheet(request)

    @app.api_route(PREVIEW_PREFIX + "{brief_id}/{path:path}", methods=["GET", "HEAD"])
    async def editor_preview(request: Request, brief_id: str, path: str) -> Response:
        return await area.preview(request, brief_id, path)
