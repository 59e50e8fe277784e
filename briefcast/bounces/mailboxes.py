"""The bounce mailbox: an IMAP folder (over TLS: IMAPS, or STARTTLS) or a local Maildir.

Both give the oldest messages first, at most ``limit`` of them, each read up to
``max_bytes`` (a report that carries a large original is read in part: its report comes
first), and move what was handled into a folder of their own: ``processed`` (reports
recorded, and duplicates) or ``unknown`` (anything else), so that the next run starts with
what it has not seen. A move that fails leaves the message where it was: the next run reads
it again and finds it recorded (a duplicate), so nothing is counted twice.

IMAP: the folders (``[bounces] processed_folder``, ``unknown_folder``, with ``/`` for the
server's hierarchy separator) are made when missing; messages move with ``UID MOVE`` where
the server offers it (RFC 6851), else ``UID COPY``, ``\\Deleted`` and an expunge of those
messages alone (``UID EXPUNGE``, RFC 4315, when offered). Messages flagged ``\\Deleted`` are
not read. Maildir: ``new/`` and ``cur/`` are read, and messages move into the Maildir++
subfolders ``.processed`` and ``.unknown`` (made when missing) by a rename.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from briefcast.config import BouncesSettings
from briefcast.errors import BriefcastError, UserError
from briefcast.safe_io import open_regular

log = logging.getLogger(__name__)

PROCESSED, UNKNOWN = "processed", "unknown"
FETCH_BATCH = 25  # messages per IMAP FETCH (and per batch of moves)
PASSWORD_ENV = "BRIEFCAST_BOUNCES__PASSWORD"


class BouncesError(BriefcastError):
    """The mailbox cannot be read (unreachable, TLS, login, a refused command): exit 1."""


class BouncesConfigError(UserError):
    """The mailbox is not configured, or configured wrong: exit 2."""


@dataclass(frozen=True)
class Item:
    ref: str  # the IMAP UID, or the Maildir file's path
    data: bytes  # at most max_bytes of the message
    size: int  # the whole message's size

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


class Mailbox(Protocol):
    name: str  # for the summary: the server and folder, or the Maildir's path
    left: int  # messages beyond the limit, left for the next run

    def batches(self, limit: int, max_bytes: int) -> Iterator[list[Item]]: ...

    def move(self, refs: Sequence[str], where: str) -> int:
        """Move these messages to the ``processed`` or ``unknown`` folder; how many moved."""
        ...

    def close(self) -> None: ...


def open_mailbox(settings: BouncesSettings, password: str | None) -> Mailbox:
    """The configured mailbox (checked by ``run.check_ready``): BouncesError if it cannot
    be opened, BouncesConfigError if a Maildir is not one."""
    if settings.maildir is not None:
        return MaildirMailbox(settings.maildir)
    assert settings.imap_host and settings.imap_user and password, "check_ready() first"
    return ImapMailbox(settings, password)


# --- IMAP -----------------------------------------------------------------------------------


def _quote(name: str) -> str:
    """An IMAP quoted string (the folder names are ASCII: the settings check them)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DELIMITER = re.compile(rb'\)\s+(?:NIL|"((?:\\.|[^"\\])*)")', re.IGNORECASE)
_UID = re.compile(rb"\bUID\s+(\d+)", re.IGNORECASE)
_SIZE = re.compile(rb"\bRFC822\.SIZE\s+(\d+)", re.IGNORECASE)
_START = re.compile(rb"^\d+\s+\(")  # "12 (" opens one message's FETCH response


class ImapMailbox:
    def __init__(self, settings: BouncesSettings, password: str) -> None:
        assert settings.imap_host and settings.imap_user
        self._settings = settings
        self.name = f"imap://{settings.imap_host}:{settings.imap_port}/{settings.folder}"
        self.left = 0
        where = f"{settings.imap_host}:{settings.imap_port}"
        context = ssl.create_default_context()
        timeout = settings.imap_timeout_seconds
        imap: imaplib.IMAP4 | None = None
        try:
            if settings.imap_starttls:
                imap = imaplib.IMAP4(settings.imap_host, settings.imap_port, timeout=timeout)
                imap.starttls(ssl_context=context)
            else:
                imap = imaplib.IMAP4_SSL(
                    settings.imap_host, settings.imap_port, ssl_context=context, timeout=timeout
                )
            imap.login(settings.imap_user, password)
        except ssl.SSLCertVerificationError as exc:
            _close(imap)
            raise BouncesError(f"IMAP {where}: TLS certificate refused: {exc}") from None
        except imaplib.IMAP4.error as exc:
            _close(imap)
            raise BouncesError(f"IMAP {where}: {_text(exc)}") from None
        except (OSError, EOFError) as exc:
            _close(imap)
            raise BouncesError(f"IMAP {where}: cannot connect: {_text(exc)}") from None
        self._imap = imap
        self._where = where
        try:
            self._delimiter = self._hierarchy_delimiter()
            self._select(settings.folder)
            # Asked again: what a server offers after login (MOVE, UIDPLUS) it may not
            # have said before.
            caps = {
                c.upper()
                for line in self._ok("CAPABILITY", imap.capability())
                if isinstance(line, bytes)
                for c in line.decode("ascii", "replace").split()
            }
        except BouncesError:
            self.close()
            raise
        except (imaplib.IMAP4.error, OSError, EOFError) as exc:
            self.close()
            raise BouncesError(f"IMAP {where}: {_text(exc)}") from None
        self._move = "MOVE" in caps
        self._uid_expunge = "UIDPLUS" in caps
        self._folders: dict[str, str] = {}  # made (or found) this run

    def _ok(self, what: str, result: tuple[str, Sequence[object]]) -> Sequence[object]:
        typ, data = result
        if typ != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise BouncesError(f"IMAP {self._where}: {what} refused: {_one_line(detail)}")
        return data

    def _hierarchy_delimiter(self) -> str:
        data = self._ok("LIST", self._imap.list('""', '""'))
        for line in data:
            if isinstance(line, bytes) and (m := _DELIMITER.search(line)) and m[1]:
                return m[1].decode("ascii", "replace").replace("\\\\", "\\")
        return "/"

    def _server_name(self, folder: str) -> str:
        return folder.replace("/", self._delimiter) if self._delimiter != "/" else folder

    def _select(self, folder: str) -> None:
        self._ok(f"SELECT {folder}", self._imap.select(_quote(self._server_name(folder))))

    def batches(self, limit: int, max_bytes: int) -> Iterator[list[Item]]:
        try:
            data = self._ok("SEARCH", self._imap.uid("SEARCH", "UNDELETED"))
            uids = [u.decode() for d in data if isinstance(d, bytes) for u in d.split()]
            uids.sort(key=int)  # oldest first
            self.left = max(0, len(uids) - limit)
            uids = uids[:limit]
            for start in range(0, len(uids), FETCH_BATCH):
                chunk = uids[start : start + FETCH_BATCH]
                yield self._fetch(chunk, max_bytes)
        except (imaplib.IMAP4.abort, OSError, EOFError) as exc:
            raise BouncesError(f"IMAP {self._where}: connection lost: {_text(exc)}") from None
        except imaplib.IMAP4.error as exc:
            raise BouncesError(f"IMAP {self._where}: {_text(exc)}") from None

    def _fetch(self, uids: list[str], max_bytes: int) -> list[Item]:
        query = f"(UID RFC822.SIZE BODY.PEEK[]<0.{max_bytes}>)"
        data = self._ok("FETCH", self._imap.uid("FETCH", ",".join(uids), query))
        # Each message: a (prefix, literal) pair, perhaps followed by the rest of its
        # response (b" UID 7)" when the server puts the UID after the literal).
        items: list[Item] = []
        text, body = b"", None
        for part in [*data, None]:
            starts = (
                part is None
                or isinstance(part, tuple)
                or (isinstance(part, bytes) and _START.match(part))
            )
            if starts and text:
                uid, size = _UID.search(text), _SIZE.search(text)
                if uid and body is not None:
                    items.append(Item(uid[1].decode(), body, int(size[1]) if size else len(body)))
                text, body = b"", None
            if isinstance(part, tuple):
                text, body = part[0], part[1]
            elif isinstance(part, bytes):
                text += part
        wanted = set(uids)
        return [item for item in items if item.ref in wanted]

    def move(self, refs: Sequence[str], where: str) -> int:
        if not refs:
            return 0
        uids = ",".join(refs)
        try:
            folder = self._folder(where)
            if self._move:
                self._ok("MOVE", self._imap.uid("MOVE", uids, folder))
            else:
                self._ok("COPY", self._imap.uid("COPY", uids, folder))
                self._ok("STORE", self._imap.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)"))
                if self._uid_expunge:
                    self._ok("EXPUNGE", self._imap.uid("EXPUNGE", uids))
                else:
                    self._ok("EXPUNGE", self._imap.expunge())
        except BouncesError as exc:
            log.warning("%s", exc)  # read again next run, and found recorded: no harm
            return 0
        except (imaplib.IMAP4.abort, OSError, EOFError) as exc:  # abort: before error, its base
            raise BouncesError(f"IMAP {self._where}: connection lost: {_text(exc)}") from None
        except imaplib.IMAP4.error as exc:
            log.warning("IMAP %s: moving to %s: %s", self._where, where, _text(exc))
            return 0
        return len(refs)

    def _folder(self, where: str) -> str:
        """The destination folder, quoted; made (and subscribed) if the server lacks it."""
        if where in self._folders:
            return self._folders[where]
        s = self._settings
        name = self._server_name(s.processed_folder if where == PROCESSED else s.unknown_folder)
        quoted = _quote(name)
        listed = self._ok("LIST", self._imap.list('""', quoted))
        if not any(isinstance(line, bytes) and line for line in listed):
            typ, data = self._imap.create(quoted)
            if typ != "OK":  # made meanwhile by another run? Then it is listed now.
                again = self._ok("LIST", self._imap.list('""', quoted))
                if not any(isinstance(line, bytes) and line for line in again):
                    self._ok(f"CREATE {name}", (typ, data))
            self._imap.subscribe(quoted)  # shown in mail clients; no matter if refused
        self._folders[where] = quoted
        return quoted

    def close(self) -> None:
        # LOGOUT, not CLOSE: CLOSE would expunge every message flagged \Deleted, ours or not.
        try:
            self._imap.logout()
        except (imaplib.IMAP4.error, OSError, EOFError):
            _close(self._imap)


def _close(imap: imaplib.IMAP4 | None) -> None:
    if imap is None:
        return
    with contextlib.suppress(OSError, EOFError, AttributeError):
        imap.shutdown()


def _text(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        text = "timed out"
    if text.startswith("b'") or text.startswith('b"'):  # imaplib quotes the server's bytes
        text = text[2:-1]
    return _one_line(text) or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- Maildir --------------------------------------------------------------------------------


class MaildirMailbox:
    """A Maildir on this machine (its ``new/`` and ``cur/``)."""

    def __init__(self, path: Path) -> None:
        path = path.expanduser()
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise BouncesConfigError(
                f"[bounces] maildir {path}: not a Maildir (no cur/, new/, tmp/)"
            )
        self._path = path
        self.name = str(path)
        self.left = 0

    def batches(self, limit: int, max_bytes: int) -> Iterator[list[Item]]:
        names: list[tuple[str, Path]] = []
        for sub in ("new", "cur"):
            try:
                entries = os.scandir(self._path / sub)
            except OSError as exc:
                raise BouncesError(f"{self._path / sub}: {exc.strerror or exc}") from None
            with entries:
                names += [(e.name, Path(e.path)) for e in entries if not e.name.startswith(".")]
        names.sort()  # Maildir names start with the time of delivery: oldest first
        self.left = max(0, len(names) - limit)
        batch: list[Item] = []
        for _, path in names[:limit]:
            item = _read_head(path, max_bytes)
            if item is None:
                continue  # gone meanwhile (another reader), or not a file
            batch.append(item)
            if len(batch) >= FETCH_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def move(self, refs: Sequence[str], where: str) -> int:
        folder = self._path / f".{where}"
        try:
            for sub in ("cur", "new", "tmp"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / "maildirfolder").touch()  # Maildir++: this folder is a subfolder
        except OSError as exc:
            log.warning("%s: cannot be made: %s", folder, exc.strerror or exc)
            return 0
        moved = 0
        for ref in refs:
            source = Path(ref)
            name = source.name if ":2," in source.name else source.name + ":2,S"
            try:
                os.rename(source, folder / "cur" / name)
                moved += 1
            except OSError as exc:
                log.warning("%s: cannot be moved to %s: %s", source, folder, exc.strerror or exc)
        return moved

    def close(self) -> None:
        return None


def _read_head(path: Path, max_bytes: int) -> Item | None:
    """The first ``max_bytes`` of a regular file (never following a link), or None."""
    opened = open_regular(path)
    if opened is None:
        return None
    fd, info = opened
    try:
        chunks: list[bytes] = []
        size = 0
        while size < max_bytes:
            chunk = os.read(fd, max_bytes - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        return Item(str(path), data, max(info.st_size, len(data)))
    except OSError:
        return None
    finally:
        os.close(fd)
