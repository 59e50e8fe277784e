"""What the sections share: the base section (unknown keys are errors), value checks
(languages, time zones, URLs, addresses) and bounded durations."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from babel import localedata
from email_validator import EmailNotValidError, validate_email
from lingua import IsoCode639_1
from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def esc(text: str) -> str:
    """``text`` with control characters escaped: an error must stay one line."""
    return repr(text)[1:-1]


def _language(code: str) -> str:
    # Codes become folder and file names (out/<id>/feed/<lang>/), and babel writes each
    # edition's dates: anything else would escape the folder or fail mid-publish. Two
    # letters: the readers and the language detector speak ISO 639-1.
    if not re.fullmatch(r"[a-z]{2}", code):
        raise ValueError(
            f'"{esc(code)}" is not a lower-case ISO 639-1 language code (two letters a-z)'
        )
    if not localedata.exists(code):
        raise ValueError(f'"{code}" is not a language code babel knows (it writes the dates)')
    return code


def _languages(codes: list[str]) -> list[str]:
    if not codes:
        raise ValueError("must name at least one language")
    for i, code in enumerate(codes):
        _language(code)
        if code in codes[:i]:
            raise ValueError(f'"{code}" is listed twice')
    return codes


def _detectable(codes: list[str]) -> list[str]:
    # The detector is built from these names; an unknown one would fail on the first brief.
    for code in codes:
        if not re.fullmatch(r"[a-z]{2}", code) or not hasattr(IsoCode639_1, code.upper()):
            raise ValueError(f'"{esc(code)}" is not the two-letter code of a detectable language')
    return codes


def is_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not re.search(r"\s", url)


def fill_in(url: str, name: str, value: str) -> str:
    """``url`` with its one placeholder ``{name}`` filled in; a stray "{x}" is one line."""
    try:
        return url.format(**{name: value})
    except KeyError as exc:
        raise ValueError(f"{{{esc(str(exc.args[0]))}}}: only {{{name}}} may be in braces") from None
    except (IndexError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"only {{{name}}} may be in braces; write {{{{ or }}}} for a literal brace ({exc})"
        ) from None


def not_blank(value: Any) -> Any:
    # Before pydantic makes it a Path: Path("") is ".", the folder briefcast runs in.
    if isinstance(value, str) and not value.strip():
        raise ValueError("is empty; leave it out to use briefcast's own templates")
    return value


def _address(address: str) -> str:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f'"{esc(address)}" is not an email address: {exc}') from None
    return address


Languages = Annotated[list[str], AfterValidator(_languages)]


Detectable = Annotated[list[str], AfterValidator(_detectable)]


Address = Annotated[str, AfterValidator(_address)]


DAY = 86_400.0


class Section(BaseModel):
    # A misspelt key (in code, or in a whole section given as JSON) is an error, not ignored.
    model_config = ConfigDict(extra="forbid")


# Durations and rates must be finite: "inf" or "nan" parse as floats and would wait forever.
def seconds_field(default: float, *, gt: float | None = None, ge: float | None = None) -> Any:
    return Field(default, gt=gt, ge=ge, le=DAY, allow_inf_nan=False)
