"""From a file on disk to clean text, or a one-line reason why not."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path


class BriefError(Exception):
    """Bad input: the CLI prints ``str(error)`` as its one-line message."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Source:
    path: Path
    text: str  # NFC, LF line endings, no BOM
    digest: str


# Text editors on Windows still save Windows-1252; Latin-1 files decode the same way for
# every printable character, so one fallback covers both.
FALLBACK_ENCODING = "cp1252"
ALLOWED_CONTROLS = set("\n\t\f")


def load_source(path: Path, max_bytes: int) -> Source:
    try:
        if path.is_dir():
            raise BriefError(path, "is a directory, not a brief")
        size = path.stat().st_size
        if size > max_bytes:
            raise BriefError(path, f"is {size:,} bytes, over the {max_bytes:,}-byte limit")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BriefError(path, "no such file") from None
    except PermissionError:
        raise BriefError(path, "permission denied") from None
    except OSError as exc:
        raise BriefError(path, f"cannot be read ({exc.strerror or exc})") from None

    if not data:
        raise BriefError(path, "is empty")
    if b"\x00" in data[:65536]:
        raise BriefError(path, "is a binary file, not text")
    text = decode(path, data)
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    controls = sum(
        1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in ALLOWED_CONTROLS
    )
    if controls > max(2, len(text) // 100):
        raise BriefError(path, "is a binary file, not text")
    if not text.strip():
        raise BriefError(path, "contains only whitespace")
    return Source(path=path, text=text, digest=hashlib.sha256(data).hexdigest())


def decode(path: Path, data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise BriefError(path, "is not valid UTF-16 text") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode(FALLBACK_ENCODING)
    except UnicodeDecodeError:
        raise BriefError(path, "is neither UTF-8 nor Windows-1252/Latin-1 text") from None
