"""YAML front matter, read as data: a fixed set of keys, each with its type and bounds.

Hostile YAML is refused before it can cost anything: aliases (the "billion laughs" expands
a 1 KB file into gigabytes), deep nesting (PyYAML recurses), and implicit timestamps (PyYAML
builds ``date(2026, 13, 1)`` itself and fails with a traceback; here dates stay text until
the schema checks them and can name the key).
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from briefcast.brief import ID_RULE, IMAGE_SCHEMES, safe_href

TITLE_MAX = 1000
SUMMARY_MAX = 5000
TAG_MAX = 60
TAGS_MAX = 30
FOOTER_LINES_MAX = 20
LINE_MAX = 2000
# Dates a brief can sensibly carry; outside them date arithmetic and feeds break.
YEAR_MIN, YEAR_MAX = 1900, 2100
DATE_HELP = "YYYY-MM-DD [HH:MM] with an optional offset (+01:00)"

PerLanguage = dict[str, str | None]
# Tags and footer lines: one list (or comma-separated words, or lines) for every language, or
# one per language (en: [...], it: [...]).
Lines = list[str] | str
PerLanguageLines = dict[str, Lines | None]
BYLINE_MAX = 200
# Who the email goes to: "readers" (the default), the subscribers whose edition is in a
# language the brief is written in, or "both"; "everyone", every active subscriber.
AUDIENCES = ("readers", "everyone")


class FrontMatter(BaseModel):
    """The keys a brief may set (README, "Writing a brief")."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)

    id: str | None = None  # the slug rule (brief.check_id) says what a valid one is
    title: str | PerLanguage | None = None
    summary: str | PerLanguage | None = None
    date: datetime | None = None
    tags: Lines | PerLanguageLines | None = Field(None)
    footer: Lines | PerLanguageLines | None = None
    publisher: str | None = Field(None, max_length=200)
    byline: str | None = Field(None, max_length=BYLINE_MAX)  # the author(s), every channel
    lang: str | None = Field(None, max_length=3)
    audience: str | None = None
    # What social posts link to (their card): the brief's page by default; "first", the
    # brief's first link in the post's language; or an http(s) address.
    link: str | None = Field(None, max_length=2000)

    @field_validator("link")
    @classmethod
    def _link(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "first":
            return value and value.strip()
        if not safe_href(value, IMAGE_SCHEMES):
            raise ValueError(f"{value[:40]!r} is neither first nor an http(s) address")
        return value.strip()

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str | None) -> str | None:
        if value is not None and value.strip() not in AUDIENCES:
            raise ValueError(f"{value[:40]!r} is not one of {', '.join(AUDIENCES)}")
        return value.strip() if value is not None else None

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            when = value
        elif isinstance(value, date):
            when = datetime.combine(value, time())
        elif isinstance(value, str):
            try:
                when = datetime.fromisoformat(value.strip())
            except ValueError as exc:
                if str(exc).startswith("Invalid isoformat"):
                    raise ValueError(f"{value[:40]!r} is not {DATE_HELP}") from None
                raise ValueError(f"{value[:40]!r} does not exist ({exc})") from None
        else:
            raise ValueError(f"must be {DATE_HELP}")
        if not YEAR_MIN <= when.year <= YEAR_MAX:
            raise ValueError(f"year {when.year} is outside {YEAR_MIN}-{YEAR_MAX}")
        return when

    @field_validator("title", "summary")
    @classmethod
    def _per_language(cls, value: str | PerLanguage | None, info: Any) -> Any:
        limit = TITLE_MAX if info.field_name == "title" else SUMMARY_MAX
        texts = value.values() if isinstance(value, dict) else [value]
        if any(t is not None and len(t) > limit for t in texts):
            raise ValueError(f"longer than {limit:,} characters")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: Lines | PerLanguageLines | None) -> Lines | PerLanguageLines | None:
        for tags in _per_language_values(value):
            tags = tag_list(tags)
            if len(tags) > TAGS_MAX:
                raise ValueError(f"more than {TAGS_MAX} tags")
            if any(len(t) > TAG_MAX for t in tags):
                raise ValueError(f"a tag is longer than {TAG_MAX} characters")
        return value

    @field_validator("footer")
    @classmethod
    def _footer(cls, value: Lines | PerLanguageLines | None) -> Lines | PerLanguageLines | None:
        for lines in _per_language_values(value):
            lines = footer_lines(lines)
            if len(lines) > FOOTER_LINES_MAX or any(len(line) > LINE_MAX for line in lines):
                raise ValueError(f"at most {FOOTER_LINES_MAX} lines of {LINE_MAX:,} characters")
        return value


def _per_language_values(value: Lines | PerLanguageLines | None) -> list[Lines | None]:
    return list(value.values()) if isinstance(value, dict) else [value]


def tag_list(value: Lines | None) -> list[str]:
    """Tags as written: a list, or words separated by commas; blanks dropped."""
    tags = value.split(",") if isinstance(value, str) else value or []
    return [t.strip() for t in tags if t.strip()]


def footer_lines(value: Lines | None) -> list[str]:
    lines = value.splitlines() if isinstance(value, str) else value or []
    return [line.strip() for line in lines if line.strip()]


# What each key takes, for the one-line error when its value has the wrong type.
EXPECTED = {
    "id": ID_RULE,
    "title": "text, or one text per language (en: …, it: …)",
    "summary": "text, or one text per language (en: …, it: …)",
    "date": DATE_HELP,
    "tags": "a list of words, or words separated by commas (or one of those per language)",
    "footer": "text, or a list of lines (or one of those per language)",
    "byline": f"text, at most {BYLINE_MAX} characters",
    "link": "first, or an http(s) address",
    "publisher": "text, at most 200 characters",
    "lang": "a language code such as en or it",
    "audience": f"one of {', '.join(AUDIENCES)}",
}


class FrontMatterError(ValueError):
    """One line naming the key (or the YAML problem); the reader adds the file's name."""


def parse_front_matter(text: str) -> FrontMatter:
    data = _load_yaml(text)
    if data is None:
        return FrontMatter()
    if not isinstance(data, dict):
        raise FrontMatterError("front matter must be key: value pairs")
    try:
        return FrontMatter.model_validate(data)
    except ValidationError as exc:
        raise FrontMatterError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else "?"
    if first["type"] == "extra_forbidden":
        known = ", ".join(FrontMatter.model_fields)
        return f"front matter: unknown key {key[:40]!r} (known keys: {known})"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("value_error", "string_too_long", "too_long"):
        return f"front matter key {key!r}: {message}"
    return f"front matter key {key!r}: expected {EXPECTED.get(key, message)}"


# --- YAML ------------------------------------------------------------------------------------

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
MAX_DEPTH = 20


class _Refused(yaml.composer.ComposerError):
    """YAML we will not build, whatever its size."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases, timestamps or deep nesting."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            raise _Refused(None, None, "aliases (*name) are not allowed", event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                event = self.peek_event()
                raise _Refused(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


# An explicit "!!timestamp" stays text too: the schema parses it.
def _timestamp_as_text(loader: _Loader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(cast(yaml.ScalarNode, node)))


_Loader.add_constructor(_TIMESTAMP, _timestamp_as_text)


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark else ""
        detail = f": {exc.problem}" if isinstance(exc, _Refused) else ""
        raise FrontMatterError(f"front matter is not valid YAML{where}{detail}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # A scalar PyYAML cannot build (a huge exponent, an odd !!tag); one line, not frames.
        raise FrontMatterError(
            f"front matter has a value that cannot be read ({first_line(exc)})"
        ) from None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
