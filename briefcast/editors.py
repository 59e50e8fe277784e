"""Editors' accounts and their sessions (the editor's pages of ``briefcast serve``).

- **Accounts**: a name (1-100 of ``A-Z a-z 0-9 . _ @ -``) and an argon2id hash of a
  password of 12 to 1024 characters (``argon2-cffi``'s defaults, RFC 9106's second
  recommended profile). :func:`verify` does the same work whether the name exists or not (an
  unknown name is checked against a dummy hash), so its timing does not tell who has an
  account; a hash made with older parameters is replaced on the next good password.
- **Sessions**: the cookie carries a random token (``secrets.token_urlsafe(32)``); the table
  keeps only its sha256, so a leaked table opens no session. Each session has its own CSRF
  secret and an expiry; an expired session is no session (and is deleted when met, and
  whenever a new one opens).

Plain functions over the ``editors`` and ``editor_sessions`` tables: the CLI (``briefcast
editors``) and the web app use them alike.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from briefcast.errors import UserError
from briefcast.store import Store, as_aware, editor_sessions, editors

NAME_MAX = 100
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
_NAME = re.compile(rf"[A-Za-z0-9._@-]{{1,{NAME_MAX}}}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")

_hasher = PasswordHasher()  # argon2id


class EditorError(UserError):
    """A name or password that cannot be used, or an editor that is not there."""


class Session(NamedTuple):
    editor_id: int
    name: str
    csrf: str


def _now() -> datetime:
    return datetime.now(UTC)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise EditorError(
            f"editor name {name[: NAME_MAX + 1]!r}: use 1 to {NAME_MAX} of the characters "
            "A-Z a-z 0-9 . _ @ -"
        )
    return name


def check_password(password: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise EditorError(
            f"the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long "
            f"(it is {len(password)})"
        )
    return password


@cache
def _dummy_hash() -> str:
    """A hash nobody's password matches, with the current parameters: what an unknown name
    is checked against, so that it costs what a known one does."""
    return _hasher.hash(secrets.token_urlsafe(32))


# --- accounts -------------------------------------------------------------------------------


def add(store: Store, name: str, password: str) -> int:
    """A new editor; their id. ``EditorError`` for a bad name or password, or one taken."""
    check_name(name)
    check_password(password)
    hashed = _hasher.hash(password)
    now = _now()
    try:
        with store.engine.begin() as conn:
            result = conn.execute(
                insert(editors).values(
                    name=name, password_hash=hashed, created_at=now, updated_at=now
                )
            )
    except IntegrityError:
        raise EditorError(f"an editor named {name} exists already") from None
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def remove(store: Store, name: str) -> bool:
    """Delete the editor and their sessions; False when there was none of that name."""
    with store.engine.begin() as conn:
        found = conn.execute(select(editors.c.id).where(editors.c.name == name)).scalar()
        if found is None:
            return False
        conn.execute(delete(editor_sessions).where(editor_sessions.c.editor_id == found))
        conn.execute(delete(editors).where(editors.c.id == found))
    return True


def names(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(editors.c.name).order_by(editors.c.name)).scalars())


def verify(store: Store, name: str, password: str) -> int | None:
    """The editor's id if the password is theirs, else None; the same work either way."""
    row = None
    if _NAME.fullmatch(name):
        with store.engine.connect() as conn:
            row = conn.execute(
                select(editors.c.id, editors.c.password_hash).where(editors.c.name == name)
            ).first()
    hashed = row.password_hash if row is not None else _dummy_hash()
    try:
        _hasher.verify(hashed, password[: PASSWORD_MAX + 1])
    except (VerificationError, InvalidHashError):
        return None
    if row is None or len(password) > PASSWORD_MAX:
        return None
    if _hasher.check_needs_rehash(hashed):
        with store.engine.begin() as conn:
            conn.execute(
                update(editors)
                .where(editors.c.id == row.id)
                .values(password_hash=_hasher.hash(password), updated_at=_now())
            )
    return int(row.id)


# --- sessions -------------------------------------------------------------------------------


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(store: Store, editor_id: int, ttl: timedelta) -> tuple[str, str]:
    """A new session for the editor: (the cookie's token, the session's CSRF secret). The
    expired sessions of every editor go at the same time."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = _now()
    with store.engine.begin() as conn:
        conn.execute(delete(editor_sessions).where(editor_sessions.c.expires_at <= now))
        conn.execute(
            insert(editor_sessions).values(
                id=_key(token), editor_id=editor_id, csrf=csrf, created_at=now, expires_at=now + ttl
            )
        )
    return token, csrf


def session(store: Store, token: str | None) -> Session | None:
    """The open session of this cookie token, None when none (or it expired)."""
    if not token or not _TOKEN.fullmatch(token):
        return None
    key = _key(token)
    with store.engine.connect() as conn:
        row = conn.execute(
            select(
                editor_sessions.c.editor_id,
                editor_sessions.c.csrf,
                editor_sessions.c.expires_at,
                editors.c.name,
            )
            .join(editors, editors.c.id == editor_sessions.c.editor_id)
            .where(editor_sessions.c.id == key)
        ).first()
    if row is None:
        return None
    if as_aware(row.expires_at) <= _now():
        with store.engine.begin() as conn:
            conn.execute(delete(editor_sessions).where(editor_sessions.c.id == key))
        return None
    return Session(int(row.editor_id), str(row.name), str(row.csrf))


def close_session(store: Store, token: str | None) -> None:
    if not token or not _TOKEN.fullmatch(token):
        return
    with store.engine.begin() as conn:
        conn.execute(delete(editor_sessions).where(editor_sessions.c.id == _key(token)))
