"""From a file on disk to clean text, or a one-line reason why not."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from briefcast.errors import BriefError
from briefcast.safe_io import SNIFF_BYTES, UnsafeFile, read_regular

__all__ = ["BriefError", "Source", "load_source"]


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
        data = read_regular(path, max_bytes)
    except UnsafeFile as exc:
        raise BriefError(path, str(exc).replace("not a file", "not a brief")) from None

    if not data:
        raise BriefError(path, "is empty")
    if b"\x00" in data[:SNIFF_BYTES]:
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
