"""The public site's layout: where each file is, and the URL it is served at.

One place for every path, so that a page's links, a feed's self link and the file written
for it cannot disagree: the URL of ``<lang>/rss.xml`` is ``base_url`` + ``/<lang>/rss.xml``.

::

    index.html                          sends a visitor to a language (the first one)
    <lang>/index.html                   the archive, newest first; then <lang>/page/2/, ...
    <lang>/rss.xml atom.xml feed.json   the language's feeds
    <lang>/<brief-id>/index.html        a brief's page (SiteSettings.brief_url)
    <lang>/tags/<slug>/index.html       a tag's archive; then .../page/2/, ...
    <lang>/tags/<slug>/rss.xml ...      the tag's feeds

Brief ids and tag slugs are lower-case letters, digits and dashes (``brief.ID_PATTERN``),
never a dot: no id can name a feed file, and no id or slug can climb out of its folder.
"""

from __future__ import annotations

from functools import cache, lru_cache

from babel.core import get_global
from slugify import slugify

from briefcast.brief import ID_PATTERN
from briefcast.config import SiteSettings

FEED_FILES = {"rss": "rss.xml", "atom": "atom.xml", "json": "feed.json"}
FEED_TYPES = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "json": "application/feed+json",
}
PAGE_SIZE = 20  # briefs per archive page
TAG_SLUG_MAX = 60
INDEX = "index.html"


@lru_cache(maxsize=4096)  # slugify is slow (about 0.2 ms), and a site asks for each tag often
def tag_slug(tag: str) -> str:
    """``"Città del Vaticano"`` -> ``"citta-del-vaticano"``: the tag's folder and URL. Empty
    when nothing of the tag is left (``"🇪🇺"``, ``".."``): such a tag gets no page."""
    slug = slugify(tag, max_length=TAG_SLUG_MAX, word_boundary=True)
    return slug if ID_PATTERN.fullmatch(slug) else ""


def url(site: SiteSettings, path: str = "") -> str:
    """The URL a path of the site is served at (a folder's path ends in ``/``)."""
    return f"{site.base_url.rstrip('/')}/{path}"


def home(lang: str, folder: str = "") -> str:
    """The folder of an archive: a language's (``folder=""``) or a tag's (``tags/x/``)."""
    return f"{lang}/{folder}"


def tag_folder(slug: str) -> str:
    return f"tags/{slug}/"


def listing(lang: str, page: int = 1, folder: str = "") -> str:
    """The folder of an archive's ``page`` (1: the archive's own folder)."""
    return home(lang, folder) + ("" if page == 1 else f"page/{page}/")


def feed(lang: str, kind: str, folder: str = "") -> str:
    return home(lang, folder) + FEED_FILES[kind]


def brief(lang: str, brief_id: str) -> str:
    return f"{lang}/{brief_id}/"


def tag_url(site: SiteSettings, lang: str, tag: str) -> str:
    """The tag's archive in ``lang``; "" for a tag with no page (see ``tag_slug``)."""
    slug = tag_slug(tag)
    return url(site, home(lang, tag_folder(slug))) if slug else ""


@cache
def og_locale(lang: str) -> str:
    """Open Graph's ``language_TERRITORY``: ``en`` -> ``en_US``, ``it`` -> ``it_IT``."""
    likely = str(get_global("likely_subtags").get(lang, ""))  # "en_Latn_US"
    territory = likely.split("_")[-1] if likely.count("_") >= 1 else ""
    return f"{lang}_{territory}" if territory.isalpha() and territory.isupper() else lang
