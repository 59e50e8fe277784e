"""Social posts: lengths counted the way X, Mastodon and Bluesky count them, and the posts."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib.resources import files

import emoji
import regex

from briefcast.brief import Brief
from briefcast.config import SiteSettings

X_LIMIT = 280
MASTODON_LIMIT = 500
BLUESKY_LIMIT = 300
URL_LENGTH = 23  # X's transformedURLLength; Mastodon's URL_PLACEHOLDER_CHARS

# --- URLs: twitter-text's extractor (and Mastodon's variant of it), condensed -------------

_TLDS = [
    line
    for line in files("briefcast.build").joinpath("tlds.txt").read_text("utf-8").splitlines()
    if line and not line.startswith("#")
]
_TLD = "|".join(regex.escape(t) for t in sorted(_TLDS, key=len, reverse=True))
# A domain character is anything but ASCII punctuation, spaces, invalid and bidi characters.
_DC = r"[^!-/:-@\[-`{-~\s\u180e\ufffe\ufeff\uffff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
_DOMAIN = (
    rf"(?:(?:{_DC}(?:[_-]|{_DC})*)?{_DC}\.)*"  # subdomains may hold "_"
    rf"(?:{_DC}(?:-|{_DC})*)?{_DC}\."
    rf"(?:{_TLD}|xn--[-0-9a-z]+)(?=[^0-9a-z@]|$)"
)
_LATIN = (
    r"\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0100-\u024f\u0253\u0254\u0256\u0257\u0259"
    r"\u025b\u0263\u0268\u026f\u0272\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff"
)
_CYRILLIC = r"\u0400-\u04ff"
_NOT_AFTER = r"(?<![a-z0-9@＠$#＃\ufffe\ufeff\uffff])"  # a URL never follows these


def _url_regex(
    protocol: str, path_char: str, path_end: str, query_char: str, query_end: str
) -> regex.Pattern[str]:
    parens = rf"\((?:{path_char}+|{path_char}*\({path_char}+\){path_char}*)\)"
    path = rf"/(?:(?:{path_char}|{parens})*(?:{path_end}|{parens}))?"
    return regex.compile(
        rf"{_NOT_AFTER}(?P<protocol>{protocol})(?P<domain>{_DOMAIN})(?::[0-9]+)?"
        rf"(?P<path>{path})?(?:\?{query_char}*{query_end})?",
        regex.IGNORECASE,
    )


_X_URL = _url_regex(
    r"(?:https?://)?",
    rf"[a-z0-9{_CYRILLIC}{_LATIN}!*';:=+,.$/%#\[\]\-\u2013_~@|&]",
    rf"[a-z0-9{_CYRILLIC}{_LATIN}+\-=_#/]",
    r"[a-z0-9!?*'@();:&=+$/%#\[\]\-_.,~|]",
    r"[a-z0-9\-_&=#/]",
)
# Mastodon (config/initializers/twitter_regex.rb) takes more schemes and any non-space path.
_MASTODON_URL = _url_regex(
    r"(?:https?|dat|dweb|ipfs|ipns|ssb|gopher|gemini)://",
    r"[^\s<>()?]",
    r"[^\s()?!*\"'「」<>;:=,.$%\[\]~&|@]",
    r"[a-z0-9!?*'();:&=+$/%#\[\]\-_.,~|@^\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef\U00010000-\U0010fffd]",
    r"[a-z0-9_&=#/\-\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef\U00010000-\U0010fffd]",
)
_ASCII_DOMAIN = regex.compile(rf"(?:[-a-z0-9{_LATIN}]+\.)+[^.]+", regex.IGNORECASE)


def _ascii_length(label: str) -> int:
    return len(label) if label.isascii() else len("xn--") + len(label.encode("punycode"))


def _is_url(m: regex.Match[str], text: str) -> bool:
    """twitter-text's checks on what the URL pattern matched."""
    labels = m["domain"].split(".")
    sizes = [_ascii_length(label) for label in labels]
    # idna.toAscii: each label 1 to 63 characters once punycode-encoded; the URL at most 4096
    if not all(0 < size <= 63 for size in sizes):
        return False
    ascii_domain = sum(sizes) + len(sizes) - 1
    if len(m["protocol"] or "https://") + len(m[0]) - len(m["domain"]) + ascii_domain > 4096:
        return False
    if m["protocol"]:
        return True
    # Without a scheme: not after "-_./", Latin-script domains only (simplified: twitter-text
    # would link an ASCII tail of a mixed-script domain), "name.cc" only with a path unless
    # .co or .tv.
    if (m.start() and text[m.start() - 1] in "-_./") or not _ASCII_DOMAIN.fullmatch(m["domain"]):
        return False
    tld = labels[-1].lower()
    short_cctld = len(labels) == 2 and len(tld) == 2 and tld.isascii() and tld not in ("co", "tv")
    return bool(m["path"]) or not short_cctld


def _urls(text: str, pattern: regex.Pattern[str]) -> list[tuple[int, int]]:
    # Rejected candidates stay consumed, as in twitter-text: no shorter URL is sought inside.
    return [m.span() for m in pattern.finditer(text) if _is_url(m, text)]


# --- X ----------------------------------------------------------------------------------

# twitter-text config v3: these ranges weigh 100, everything else 200 (scale 100).
_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
_X_INVALID = regex.compile(r"[\ufffe\ufeff\uffff]")


def _char_weight(char: str) -> int:
    return 100 if any(lo <= ord(char) <= hi for lo, hi in _LIGHT_RANGES) else 200


def x_weighted_length(text: str) -> int:
    """The length X counts (twitter-text config v3, emoji parsing enabled)."""
    text = unicodedata.normalize("NFC", text)
    entities = {start: (end, URL_LENGTH * 100) for start, end in _urls(text, _X_URL)}
    for found in emoji.emoji_list(text):
        # twitter-text's emoji regex leaves © and ® to the character weights
        if found["emoji"][0] not in "\u00a9\u00ae":
            entities.setdefault(found["match_start"], (found["match_end"], 200))
    weight = i = 0
    while i < len(text):
        end, entity_weight = entities.get(i, (i + 1, _char_weight(text[i])))
        weight += entity_weight
        i = end
    return weight // 100


def x_is_valid(text: str) -> bool:
    return bool(text.strip()) and not _X_INVALID.search(text) and x_weighted_length(text) <= X_LIMIT


# --- Mastodon and Bluesky -----------------------------------------------------------------

# Account::MENTION_RE; the validator counts @user@domain as @user.
_MENTION = regex.compile(
    r"(?<![=/\w])@(?P<user>[a-z0-9_]+(?:[a-z0-9_.-]+[a-z0-9_]+)?)(?:@[\w.-]+\w+)?",
    regex.IGNORECASE,
)
# Checked after the match, not as a lookahead, so a mention is dropped rather than shortened.
_NOT_MENTION_END = regex.compile(rf"[@＠{_LATIN}]|://")


def _graphemes(text: str) -> int:
    return len(regex.findall(r"\X", text))


def mastodon_length(text: str) -> int:
    """The length Mastodon's StatusLengthValidator counts."""
    if not text.strip():
        return 0
    entities = sorted(
        [(start, end, "x" * URL_LENGTH) for start, end in _urls(text, _MASTODON_URL)]
        + [
            (m.start(), m.end(), f"@{m['user']}")
            for m in _MENTION.finditer(text)
            if not _NOT_MENTION_END.match(text, m.end())
        ]
    )
    countable: list[str] = []
    pos = 0
    for start, end, replacement in entities:
        if start >= pos:  # overlapping entities: the first one wins
            countable += [text[pos:start], replacement]
            pos = end
    countable.append(text[pos:])
    return _graphemes("".join(countable))


def bluesky_length(text: str) -> int:
    """Bluesky counts graphemes of the text as posted, links in full."""
    return _graphemes(text)


# --- Posts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SocialPost:
    network: str
    lang: str
    posts: tuple[str, ...]
    lengths: tuple[int, ...]
    limit: int


_SENTENCE_BREAK = regex.compile(r"(?<=[.!?…][\"'”’»)\]]*)\s+")
_TRAILING = " ,;:.-–—"


def _teaser(brief: Brief, lang: str) -> str:
    paragraphs = (" ".join(p.split()) for p in (brief.title_in(lang), brief.summary_in(lang)))
    teaser = "\n\n".join(p for p in paragraphs if p)
    return _X_INVALID.sub("", unicodedata.normalize("NFC", teaser))


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


def _pack(
    pieces: list[tuple[str, str]], fits: Callable[[str, int], bool], posts: list[str]
) -> list[str]:
    """Greedily fill posts with (separator, piece) pairs; ``fits(body, k)`` checks post k.

    A piece too long for a post of its own is split into words, a word into graphemes.
    """
    for sep, piece in pieces:
        if posts and fits(posts[-1] + sep + piece, len(posts)):
            posts[-1] += sep + piece
        elif fits(piece, len(posts) + 1):
            posts.append(piece)
        else:
            words = piece.split(" ")
            finer = words if len(words) > 1 else regex.findall(r"\X", piece)
            if len(finer) == 1:
                raise ValueError(f"cannot fit {piece!r} into a post")
            glue = " " if len(words) > 1 else ""
            _pack([(sep, finer[0]), *((glue, f) for f in finer[1:])], fits, posts)
    return posts


def _x_post(body: str, k: int, n: int, link: str) -> str:
    post = f"{body} ({k}/{n})"
    return _join(post, link) if k == 1 else post


def _x_fits(body: str, k: int, n: int, link: str) -> bool:
    return x_weighted_length(_x_post(body, k, n, link)) <= X_LIMIT


def _x_posts(teaser: str, link: str) -> list[str]:
    single = _join(teaser, link)
    if x_weighted_length(single) <= X_LIMIT:
        return [single]
    pieces = [
        (" " if i else "\n\n", sentence)
        for paragraph in teaser.split("\n\n")
        for i, sentence in enumerate(_SENTENCE_BREAK.split(paragraph))
    ]
    n = 1
    while True:  # the counter's width depends on the number of posts: repeat until stable
        bodies = _pack(pieces, partial(_x_fits, n=n, link=link), [])
        if len(bodies) == n:
            return [_x_post(body, k, n, link) for k, body in enumerate(bodies, 1)]
        n = len(bodies)


def _shortened(teaser: str, link: str, length: Callable[[str], int], limit: int) -> str:
    """Teaser and link in one post, the teaser cut at a word (else grapheme) with "…"."""
    post = _join(teaser, link)
    if length(post) <= limit:
        return post
    words = [m.start() for m in regex.finditer(r"\s+", teaser)]
    graphemes = [m.start() for m in regex.finditer(r"\X", teaser)]
    for cut in [*reversed(words), *reversed(graphemes)]:
        kept = teaser[:cut].rstrip(_TRAILING)
        # a "…" glued to a link would be read as part of it
        post = _join(kept + (" …" if regex.search(r"://\S*$", kept) else "…"), link)
        if length(post) <= limit:
            return post
    raise ValueError(f"the link alone does not fit in {limit}: {link}")


_NETWORKS: dict[str, tuple[Callable[[str], int], int]] = {
    "x": (x_weighted_length, X_LIMIT),
    "mastodon": (mastodon_length, MASTODON_LIMIT),
    "bluesky": (bluesky_length, BLUESKY_LIMIT),
}


def build_social(brief: Brief, site: SiteSettings) -> list[SocialPost]:
    """One post (an X thread when needed) per network for each language of the brief."""
    social: list[SocialPost] = []
    for lang in brief.languages:
        teaser, link = _teaser(brief, lang), site.brief_url(brief.id, lang)
        for network, (length, limit) in _NETWORKS.items():
            if network == "x":
                posts = _x_posts(teaser, link)
            else:
                posts = [_shortened(teaser, link, length, limit)]
            social.append(SocialPost(network, lang, tuple(posts), tuple(map(length, posts)), limit))
    return social
