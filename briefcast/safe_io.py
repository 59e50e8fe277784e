"""Reading files that may be hostile: regular files only, never more than a bound.

``st_size`` is a claim, not a limit: ``/dev/zero`` claims 0 bytes and never ends, and a FIFO
blocks the reader until someone writes to it. So the file is opened without blocking, its
type is checked on the open descriptor (no race with a rename), and at most ``max_bytes + 1``
bytes are read whatever it claims.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from briefcast.errors import UserError

CHUNK = 1 << 20
# How much of a file is looked at to tell text from binary (a NUL there: binary).
SNIFF_BYTES = 65536


class UnsafeFile(Exception):
    """Why the file was not read, as a phrase to follow its name ("is a FIFO, not a file")."""


_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a FIFO (named pipe)"),
    (stat.S_ISCHR, "is a character device"),
    (stat.S_ISBLK, "is a block device"),
    (stat.S_ISSOCK, "is a socket"),
)


def read_regular(path: Path | str, max_bytes: int) -> bytes:
    """The file's bytes; raises ``UnsafeFile`` when it is missing, unreadable, not a regular
    file, or longer than ``max_bytes`` (then the message gives the limit)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnsafeFile("no such file") from None
    except IsADirectoryError:
        raise UnsafeFile("is a directory, not a file") from None
    except PermissionError:
        raise UnsafeFile("permission denied") from None
    except OSError as exc:
        raise UnsafeFile(f"cannot be read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((what for test, what in _KINDS if test(mode)), "is not a regular file")
            raise UnsafeFile(f"{kind}, not a file")
        claimed = os.fstat(fd).st_size
        if claimed > max_bytes:
            raise UnsafeFile(f"is {claimed:,} bytes, over the {max_bytes:,}-byte limit")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, min(CHUNK, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UnsafeFile(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise UnsafeFile(f"is over the {max_bytes:,}-byte limit")
    return b"".join(chunks)


# Without following a link: a link planted in a served folder or a mailbox must not open
# what it points at.
NOFOLLOW_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_regular(path: Path | str) -> tuple[int, os.stat_result] | None:
    """An open descriptor of the regular file at ``path`` (not through a link) and its
    stat, for the caller to read and close; None for anything else or any error."""
    try:
        fd = os.open(path, NOFOLLOW_READ)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            return fd, info
    except OSError:
        pass
    os.close(fd)
    return None


# --- writing --------------------------------------------------------------------------------


class OutsideFolder(UserError):
    """A path that would land outside the folder it must stay in."""


def inside(root: Path, *parts: str) -> Path:
    """``root/parts…``, resolved, or ``OutsideFolder`` if it is not strictly inside ``root``
    (``..``, an absolute part, a symlink leading out). Independent of any rule on names."""
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        raise OutsideFolder(f"{'/'.join(parts)!r} would be written outside {root}")
    return target


def write_inside(root: Path, relative: str, data: bytes | str) -> Path:
    """Write ``data`` to ``root/relative`` (folders made as needed), never outside ``root``."""
    path = inside(root, *relative.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path
