"""``[site]``: the publication: name, address, languages, time zone, templates, public folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator

from briefcast.config.fields import Languages, Section, esc, fill_in, is_http, not_blank


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, like "Europe"
        raise ValueError(f'"{esc(name)}" is not an IANA time zone (like "Europe/Rome")') from None
    return name


def _base_url(url: str) -> str:
    # Page and feed URLs are built by appending "/<lang>/...": a query or fragment breaks them.
    parts = urlsplit(url)
    if not is_http(url) or parts.query or parts.fragment:
        raise ValueError(f'"{esc(url)}" is not an absolute http(s) URL without query or fragment')
    return url


def _subscribe_url(url: str) -> str:
    # "" is allowed: the site's subscriptions are handled nowhere we can link to.
    if not url:
        return url
    filled = fill_in(url, "lang", "en")  # as the pages will: fails now, not mid-publish
    if not is_http(filled):
        raise ValueError(f'"{esc(url)}" is not an absolute http(s) URL (or "" for no link)')
    return url


def _public_dir(value: Any) -> Any:
    # Before pydantic makes it a Path: Path("") is ".", the folder briefcast runs in, which
    # `briefcast serve` would then publish whole (settings, database and all).
    if isinstance(value, str) and not value.strip():
        raise ValueError('is empty; leave it out to use the folder "public"')
    return value


def _templates_dir(path: Path) -> Path:
    # A typo here would publish with our templates, unnoticed: the folder must be there and
    # hold at least one of ours (the rest still come from ours, file by file).
    shown = esc(str(path))
    path = path.expanduser()
    if not path.exists():
        relative = "" if path.is_absolute() else f" (relative to {esc(str(Path.cwd()))})"
        raise ValueError(f'"{shown}" does not exist{relative}')
    if not path.is_dir():
        raise ValueError(f'"{shown}" is not a folder')
    if not any((path / sub).is_dir() for sub in TEMPLATE_FOLDERS):
        raise ValueError(
            f'"{shown}" has none of the folders {", ".join(f"{s}/" for s in TEMPLATE_FOLDERS)}'
        )
    return path.resolve()


# What a site's templates_dir may hold; the preview (templates/preview) is always ours.
TEMPLATE_FOLDERS = ("email", "web", "i18n")


class SiteSettings(Section):
    name: str = "Europolitiche Brief"
    base_url: Annotated[str, AfterValidator(_base_url)] = "https://briefs.example.org"
    languages: Languages = ["en", "it"]  # noqa: RUF012 (pydantic copies it)
    timezone: Annotated[str, AfterValidator(_timezone)] = "Europe/Rome"
    publisher: str = "Europolitiche"
    author: str = "Europolitiche"
    # The site's own templates, tried before ours file by file (email/edition.mjml,
    # web/page.html.j2, ...), and its i18n/<lang>.toml words key by key over ours. A relative
    # path is from the folder briefcast runs in; it is made absolute when read.
    templates_dir: (
        Annotated[Path, BeforeValidator(not_blank), AfterValidator(_templates_dir)] | None
    ) = None
    # The public site (feeds, pages, archive indexes) that `briefcast serve` serves. A
    # relative path is from the folder briefcast runs in.
    public_dir: Annotated[Path, BeforeValidator(_public_dir)] = Path("public")
    # Where every public page's "Subscribe" link leads. Not set: `briefcast serve` handles
    # subscriptions, at <base_url>/subscribe?lang=<the page's language>. A site hosted
    # elsewhere gives its list's page (``{lang}`` is filled with the page's language), or ""
    # for no link at all.
    subscribe_url: Annotated[str, AfterValidator(_subscribe_url)] | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def brief_url(self, brief_id: str, lang: str) -> str:
        """The brief's web page: the "view in browser" link and every feed item's link."""
        return f"{self.base_url.rstrip('/')}/{lang}/{brief_id}/"

    def subscribe_link(self, lang: str) -> str:
        """The public pages' subscribe link in ``lang``; "" when there is none."""
        if self.subscribe_url is None:
            return f"{self.base_url.rstrip('/')}/subscribe?lang={lang}"
        return self.subscribe_url.format(lang=lang)

    def feed_url(self, lang: str, kind: str) -> str:
        name = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}[kind]
        return f"{self.base_url.rstrip('/')}/{lang}/{name}"
