"""The public site: the files under ``[site] public_dir``, served as a CDN would serve them.

- **Confined.** A URL path is split into names; ``..``, ``.``, empty names (``//``), hidden
  names (``.staging-…``; ``.well-known`` excepted), backslashes and NUL answer 404 before
  the disk is looked at. What is left goes through :func:`briefcast.safe_io.inside`, which
  resolves symlinks: one leading out of the folder answers 404 too. Only regular files are
  served; a folder is its ``index.html`` (``/en`` redirects to ``/en/``).
- **Validators.** The ETag is strong, a hash of the bytes (BLAKE2b, 128 bits), so it is the
  same in every worker and after a restart. Last-Modified is the file's mtime when the
  server first saw its bytes at that path, and moves only when the bytes change: a publish
  that rewrites a feed (or swaps in a whole new version of the site) with the same bytes
  changes neither. It is kept in memory, so across a restart it restarts from the file's
  mtime (and each worker keeps its own); the ETag has no such limit. Both answer
  conditional requests: ``If-None-Match`` (weak comparison, as RFC 9110 asks for GET), else
  ``If-Modified-Since``; ``304 Not Modified`` then.
- **A new version of the site** swapped in by a symlink (``public -> .public.v9``, as
  :mod:`briefcast.site` publishes) is noticed within a second: the folder's own identity is
  checked once a second, and a change forgets every cached path.
- **Fast revalidation.** Each file's bytes, gzip copy, validators and response headers are
  kept in memory, keyed on (device, inode, mtime, size): a request for a known file costs a
  dictionary look-up, and a ``stat`` when the file was last checked over a second ago (so a
  file changed in place is seen within a second, as a new version of the site is). Anything
  else (the first request, a changed file) reads the file again, in a thread. Files over
  ``cache_file_max_bytes``, and whatever does not fit in ``cache_max_bytes``, are read from
  disk per request instead.
- **gzip** when ``Accept-Encoding`` allows it, for text types over 256 bytes, with its own
  strong ETag (``"<hash>-gz"``) and ``Vary: Accept-Encoding``.
- **Cache-Control**: feeds and HTML ``public, max-age=<page_max_age_seconds>,
  must-revalidate``; other files ``public, max-age=<asset_max_age_seconds>``.
- ``/`` redirects (302) to ``/<lang>/``, the site language the browser's Accept-Language
  prefers, with ``Vary: Accept-Language``.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import hashlib
import mimetypes
import os
import stat
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import anyio.to_thread

from briefcast.render import layout
from briefcast.render.layout import FEED_FILES, INDEX
from briefcast.safe_io import NOFOLLOW_READ, OutsideFolder, inside, open_regular
from briefcast.serve import headers as sec
from briefcast.serve.headers import Header
from briefcast.serve.lang import pick

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHUNK = 256 * 1024  # read from disk and sent at a time, for files not kept in memory
GZIP_MIN = 256  # smaller files go as they are: gzip's own header would eat the gain
INLINE_GZIP_MAX = 64 * 1024  # larger files are compressed in a thread, off the event loop
MAX_PATHS = 50_000  # URL paths remembered (about two per file: /en/ and /en/index.html)
ROOT_CHECK_SECONDS = 1.0  # how often the folder's own identity is checked (a symlink swap)
RECHECK_SECONDS = 1.0  # how long a file's stat stays good for
_GONE = (-1, -1, -1, -1)  # the key of an entry dropped from memory: never matches

FEED_TYPES = {
    name: f"{layout.FEED_TYPES[kind]}; charset=utf-8" for kind, name in FEED_FILES.items()
}
SUFFIX_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".xsl": "application/xslt+xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json; charset=utf-8",
    ".ico": "image/vnd.microsoft.icon",
}


def content_type(name: str) -> str:
    if name in FEED_TYPES:
        return FEED_TYPES[name]
    suffix = os.path.splitext(name)[1].lower()
    if suffix in SUFFIX_TYPES:
        return SUFFIX_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _compressible(ctype: str) -> bool:
    return ctype.startswith("text/") or any(k in ctype for k in ("xml", "json", "javascript"))


def _revalidated(ctype: str) -> bool:
    """Feeds and pages: what changes with each publish."""
    return ctype.startswith(("text/html", "application/")) and _compressible(ctype)


@dataclass(slots=True, eq=False)
class _File:
    real: str
    key: tuple[int, int, int, int]  # (st_dev, st_ino, st_mtime_ns, st_size)
    size: int
    body: bytes | None  # None: not kept in memory, read per request
    etag: bytes
    gz_etag: bytes
    last_modified: bytes  # the HTTP date
    modified: int  # the same, in seconds
    compressible: bool
    checked: float  # time.monotonic() of its last stat
    ok: list[Header]  # the 200's headers, identity
    not_modified: list[Header]  # the 304's
    gz_body: bytes | None = None
    gz_ok: list[Header] | None = None
    gz_not_modified: list[Header] | None = None


class _Redirect(NamedTuple):
    location: str


class StaticSite:
    """An ASGI app for GET and HEAD of the public folder (see the module's doc)."""

    def __init__(
        self,
        root: Path,
        languages: Sequence[str],
        *,
        page_max_age: int,
        asset_max_age: int,
        cache_max_bytes: int,
        cache_file_max_bytes: int,
        not_found_page: bytes,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.languages = list(languages)
        self.page_cache = f"public, max-age={page_max_age}, must-revalidate".encode()
        self.asset_cache = f"public, max-age={asset_max_age}".encode()
        self.cache_max = cache_max_bytes
        self.file_max = min(cache_file_max_bytes, cache_max_bytes)
        self._paths: dict[str, _File] = {}  # URL path -> file
        self._files: dict[str, _File] = {}  # real path -> file whose body is kept, oldest first
        self._history: dict[str, tuple[bytes, int]] = {}  # path inside -> (etag, modified)
        self._kept = 0  # bytes of bodies (and gzip copies) kept
        self._lock = threading.Lock()
        self._root_id = self._identity()
        self._root_checked = time.monotonic()
        not_found = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", str(len(not_found_page)).encode()),
            (b"cache-control", b"no-cache"),
            *sec.SITE,
        ]
        self._not_found = (not_found, not_found_page)

    # --- the request --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await self._plain(scope, send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
            return
        path: str = scope["path"]
        if path == "/":
            await self._to_language(scope, send)
            return
        now = time.monotonic()
        if now - self._root_checked > ROOT_CHECK_SECONDS:
            self._check_root(now)
        entry = self._paths.get(path)
        if entry is not None and now - entry.checked >= RECHECK_SECONDS:
            try:
                st = os.stat(entry.real)
            except OSError:
                entry = None
            else:
                if (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size) != entry.key:
                    entry = None
                else:
                    entry.checked = now
        if entry is None:
            found = await anyio.to_thread.run_sync(self._load, path)
            if found is None:
                status_headers, body = self._not_found
                await self._send(scope, send, 404, status_headers, body)
                return
            if isinstance(found, _Redirect):
                await self._redirect(scope, send, 301, found.location, b"no-cache", [])
                return
            entry = found

        inm = ims = accept = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                inm = value
            elif name == b"if-modified-since":
                ims = value
            elif name == b"accept-encoding":
                accept = value
        gz = entry.compressible and accept is not None and _accepts_gzip(accept)
        if gz and entry.gz_ok is None:
            if entry.size > INLINE_GZIP_MAX:
                await anyio.to_thread.run_sync(self._compress, entry)
            else:
                self._compress(entry)
        gz = gz and entry.gz_ok is not None
        if inm is not None:
            fresh = inm == entry.etag or inm == entry.gz_etag or _etag_matches(inm, entry)
        elif ims is not None:
            fresh = ims == entry.last_modified or _unmodified_since(ims, entry.modified)
        else:
            fresh = False
        if fresh:
            nm = entry.gz_not_modified if gz else entry.not_modified
            assert nm is not None
            await self._send(scope, send, 304, nm, b"")
        elif gz:
            assert entry.gz_ok is not None and entry.gz_body is not None
            await self._send(scope, send, 200, entry.gz_ok, entry.gz_body)
        elif entry.body is not None:
            await self._send(scope, send, 200, entry.ok, entry.body)
        else:
            await self._stream(scope, send, entry)

    @staticmethod
    async def _send(
        scope: Scope, send: Send, status: int, headers: list[Header], body: bytes
    ) -> None:
        if scope["scheme"] == "https":
            headers = [*headers, sec.HSTS]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _plain(
        self, scope: Scope, send: Send, status: int, body: bytes, extra: list[Header]
    ) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *extra,
            *sec.SITE,
        ]
        await self._send(scope, send, status, headers, body)

    async def _redirect(
        self,
        scope: Scope,
        send: Send,
        status: int,
        location: str,
        cache: bytes,
        extra: list[Header],
    ) -> None:
        query = scope.get("query_string") or b""
        target = quote(location, safe="/-._~!$&'()*+,;=:@") + (
            "?" + query.decode("latin-1") if query else ""
        )
        headers = [
            (b"location", target.encode("latin-1")),
            (b"content-length", b"0"),
            (b"cache-control", cache),
            *extra,
            *sec.SITE,
        ]
        await self._send(scope, send, status, headers, b"")

    async def _to_language(self, scope: Scope, send: Send) -> None:
        header = None
        for name, value in scope["headers"]:
            if name == b"accept-language":
                header = value.decode("latin-1")
                break
        lang = pick(header, self.languages)
        await self._redirect(
            scope, send, 302, f"/{lang}/", b"no-cache", [(b"vary", b"Accept-Language")]
        )

    async def _stream(self, scope: Scope, send: Send, entry: _File) -> None:
        """A file not kept in memory, in chunks read in a thread."""
        try:
            fd = os.open(entry.real, NOFOLLOW_READ)
        except OSError:
            status_headers, body = self._not_found
            await self._send(scope, send, 404, status_headers, body)
            return
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size) != entry.key:
                # Replaced since its validators were made: those would describe other bytes.
                await self._plain(
                    scope, send, 503, b"Changing, try again\n", [(b"retry-after", b"1")]
                )
                return
            headers = entry.ok
            if scope["scheme"] == "https":
                headers = [*headers, sec.HSTS]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if scope["method"] != "GET":
                await send({"type": "http.response.body", "body": b""})
                return
            offset = 0
            while offset < entry.size:
                chunk = await anyio.to_thread.run_sync(os.pread, fd, CHUNK, offset)
                if not chunk:
                    break
                offset += len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": offset < entry.size}
                )
            if offset < entry.size:  # cut short under us: the client sees a short body
                await send({"type": "http.response.body", "body": b""})
        finally:
            os.close(fd)

    # --- finding and reading files (in a thread) ---------------------------------------

    def _identity(self) -> tuple[str, int, int] | None:
        try:
            real = os.path.realpath(self.root)
            st = os.stat(real)
        except OSError:
            return None
        return real, st.st_dev, st.st_ino

    def _check_root(self, now: float) -> None:
        """The folder itself replaced (a symlink switched to a new release, or renamed over):
        forget every path, or its old files would be served for as long as they exist."""
        self._root_checked = now
        identity = self._identity()
        if identity != self._root_id:
            with self._lock:
                self._root_id = identity
                self._paths.clear()
                for entry in self._files.values():
                    self._drop(entry)
                self._files.clear()
                self._kept = 0

    def _load(self, path: str) -> _File | _Redirect | None:
        names = path[1:].split("/")
        folder = names[-1] == ""
        if folder:
            names[-1] = INDEX
        for name in names:
            if (
                not name
                or (name[0] == "." and name != ".well-known")
                or "\\" in name
                or "\x00" in name
            ):
                return None
        try:
            base = Path(os.path.realpath(self.root))
            real = inside(base, *names)
            st = os.stat(real)
        except (OutsideFolder, OSError, ValueError):
            return None
        if stat.S_ISDIR(st.st_mode):
            if folder:
                return None
            index = real / INDEX
            return _Redirect(path + "/") if index.is_file() else None
        if not stat.S_ISREG(st.st_mode):
            return None
        entry = self._read(str(real), str(real.relative_to(base)))
        if entry is not None:
            with self._lock:
                if len(self._paths) >= MAX_PATHS:
                    self._paths.clear()
                self._paths[path] = entry
        return entry

    def _read(self, real: str, relative: str) -> _File | None:
        opened = open_regular(real)
        if opened is None:
            return None
        fd, st = opened
        try:
            key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            with self._lock:
                known = self._files.get(real)
            if known is not None and known.key == key:
                return known
            size = st.st_size
            keep = size <= self.file_max
            hasher = hashlib.blake2b(digest_size=16)
            chunks: list[bytes] = []
            read = 0
            while True:
                chunk = os.read(fd, CHUNK)
                if not chunk:
                    break
                read += len(chunk)
                hasher.update(chunk)
                if keep:
                    chunks.append(chunk)
            if read != size or os.fstat(fd).st_mtime_ns != st.st_mtime_ns:
                return None  # being written right now: a later request will see it whole
        except OSError:
            return None
        finally:
            os.close(fd)
        body = b"".join(chunks) if keep else None
        tag = base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=")
        etag, gz_etag = b'"' + tag + b'"', b'"' + tag + b'-gz"'
        modified = self._modified(relative, etag, int(st.st_mtime))
        last_modified = email.utils.formatdate(modified, usegmt=True).encode()
        ctype = content_type(os.path.basename(relative))
        compressible = _compressible(ctype) and size >= GZIP_MIN
        cache = self.page_cache if _revalidated(ctype) else self.asset_cache
        validators: list[Header] = [
            (b"etag", etag),
            (b"last-modified", last_modified),
            (b"cache-control", cache),
        ]
        if compressible:
            validators.append((b"vary", b"Accept-Encoding"))
        ok = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(size).encode()),
            *validators,
            *sec.SITE,
        ]
        entry = _File(
            real=real,
            key=key,
            size=size,
            body=body,
            etag=etag,
            gz_etag=gz_etag,
            last_modified=last_modified,
            modified=modified,
            compressible=compressible and body is not None,
            checked=time.monotonic(),
            ok=ok,
            # RFC 9110 15.4.5: what a 200 would carry of ETag, Cache-Control and Vary (not
            # Last-Modified: the client has it), and the security headers.
            not_modified=[v for v in validators if v[0] != b"last-modified"] + list(sec.SITE),
        )
        if body is not None:
            self._keep(entry, size)
        return entry

    def _modified(self, relative: str, etag: bytes, mtime: int) -> int:
        """Last-Modified: the same as long as the bytes are, later whenever they change.
        By the path inside the folder: a publish that swaps in a new version of the whole
        site (briefcast.site) rewrites every file, most of them with the same bytes."""
        now = int(time.time())
        with self._lock:
            before = self._history.get(relative)
            if before is not None and before[0] == etag:
                return before[1]
            modified = min(mtime, now)
            if before is not None:  # changed: never earlier than before, never in the future
                modified = min(max(modified, before[1] + 1), now)
            if len(self._history) >= MAX_PATHS:
                del self._history[next(iter(self._history))]
            self._history[relative] = (etag, modified)
            return modified

    def _keep(self, entry: _File, size: int) -> None:
        with self._lock:
            old = self._files.pop(entry.real, None)
            if old is not None:
                self._kept -= self._weight(old)
                self._drop(old)
            while self._files and self._kept + size > self.cache_max:
                _, evicted = next(iter(self._files.items()))
                del self._files[evicted.real]
                self._kept -= self._weight(evicted)
                self._drop(evicted)
            self._files[entry.real] = entry
            self._kept += size

    @staticmethod
    def _weight(entry: _File) -> int:
        return len(entry.body or b"") + len(entry.gz_body or b"")

    @staticmethod
    def _drop(entry: _File) -> None:
        # Paths may still point at it: a key that never matches makes them read it again.
        entry.key = _GONE
        entry.checked = float("-inf")
        entry.body = entry.gz_body = None

    def _compress(self, entry: _File) -> None:
        body = entry.body
        if body is None or entry.gz_ok is not None:
            return
        packed = gzip.compress(body, compresslevel=6, mtime=0)
        if len(packed) >= len(body):
            entry.compressible = False
            return
        with self._lock:
            if entry.key == _GONE or entry.gz_body is not None:  # dropped, or done meanwhile
                return
            entry.gz_body = packed
            self._kept += len(packed)
        rest = [(n, v) for n, v in entry.ok if n not in (b"content-length", b"etag")]
        entry.gz_not_modified = [
            (b"etag", entry.gz_etag),
            *[(n, v) for n, v in entry.not_modified if n != b"etag"],
        ]
        entry.gz_ok = [
            (b"content-encoding", b"gzip"),
            (b"content-length", str(len(packed)).encode()),
            (b"etag", entry.gz_etag),
            *rest,
        ]


def _accepts_gzip(accept: bytes) -> bool:
    if b"gzip" not in accept and b"*" not in accept:
        return False
    if b";" not in accept:
        return b"gzip" in accept
    gzip_q = star_q = None
    for item in accept.split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in (b"gzip", b"x-gzip"):
            gzip_q = q
        elif coding == b"*":
            star_q = q
    chosen = gzip_q if gzip_q is not None else star_q
    return chosen is not None and chosen > 0


def _etag_matches(header: bytes, entry: _File) -> bool:
    """If-None-Match, weak comparison: ``*``, or any listed tag (``W/`` or not) of either
    representation (both say the client's copy is current)."""
    if header.strip() == b"*":
        return True
    for item in header.split(b","):
        tag = item.strip()
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag == entry.etag or tag == entry.gz_etag:
            return True
    return False


def _unmodified_since(header: bytes, modified: int) -> bool:
    try:
        since = email.utils.parsedate_to_datetime(header.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return False
    if since.tzinfo is None:  # RFC 850 and asctime dates are GMT
        return False
    return modified <= since.timestamp()
