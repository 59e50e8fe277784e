"""Social posts: lengths counted the way X, Mastodon and Bluesky count them, and the posts."""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from importlib.resources import files

import emoji
import regex

from briefcast.brief import HREF_MAX, Brief, after_headline
from briefcast.config import SiteSettings
from briefcast.errors import BriefError
from briefcast.readers.blocks import headline_from

X_LIMIT = 280
MASTODON_LIMIT = 500
BLUESKY_LIMIT = 300
URL_LENGTH = 23  # X's transformedURLLength; Mastodon's URL_PLACEHOLDER_CHARS

# --- URLs: twitter-text's extractor (and Mastodon's variant of it), condensed -------------

_TLDS = [
    line
    for line in files("briefcast.render").joinpath("tlds.txt").read_text("utf-8").splitlines()
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
    url_chars = len(m["protocol"] or "https://") + len(m[0]) - len(m["domain"]) + ascii_domain
    if url_chars > HREF_MAX:  # a longer one is plain text
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


def _urls(
    text: str, pattern: regex.Pattern[str], start: int = 0, end: int | None = None
) -> list[tuple[int, int]]:
    # Rejected candidates stay consumed, as in twitter-text: no shorter URL is sought inside.
    return [m.span() for m in pattern.finditer(text, start, end) if _is_url(m, text)]


# --- X ----------------------------------------------------------------------------------

# twitter-text config v3: these ranges weigh 1, everything else 2.
_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
_HEAVY = regex.compile("[^" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _LIGHT_RANGES) + "]")
_X_INVALID = regex.compile(r"[\ufffe\ufeff\uffff]")
# Every emoji the emoji package finds holds one of these characters, so without any of them
# it need not be asked: it walks the text in Python (measured: 112 of the 241 µs that
# counting a 280-character post took, and walking it char by char here another 98; with
# _x_urls below, such a post now takes 33 µs).
_EMOJI_CHARS = frozenset(c for e in emoji.EMOJI_DATA for c in e if ord(c) > 127)


_DOT_TLD = r"\.[^!-/:-@\[-`{-~\s]"  # "." and the first letter of a TLD: every URL holds one
_X_MAYBE_URL = regex.compile(_DOT_TLD)
_X_URL_TOKEN = regex.compile(rf"(?<!\S)\S*?{_DOT_TLD}\S*")  # tried from token starts only


def _x_urls(text: str) -> list[tuple[int, int]]:
    """_urls for X, run only between spaces where a URL may be (a URL holds no space).

    Over a long run of letters without spaces (CJK) the pattern alone takes quadratic time
    (measured: 14.6 ms for 280 CJK characters, 55 ms for 560).
    """
    return [
        url
        for token in _X_URL_TOKEN.finditer(text)
        for url in _urls(text, _X_URL, token.start(), token.end())
    ]


def _plain_weight(text: str) -> int:
    return len(text) + len(_HEAVY.findall(text))


def x_weighted_length(text: str) -> int:
    """The length X counts (twitter-text config v3, emoji parsing enabled)."""
    text = unicodedata.normalize("NFC", text)
    entities = {start: (end, URL_LENGTH) for start, end in _x_urls(text)}
    for found in () if _EMOJI_CHARS.isdisjoint(text) else emoji.emoji_list(text):
        # twitter-text's emoji regex leaves © and ® to the character weights
        if found["emoji"][0] not in "\u00a9\u00ae":
            entities.setdefault(found["match_start"], (found["match_end"], 2))
    weight = pos = 0
    for start in sorted(entities):
        if start >= pos:  # twitter-text walks the text: one starting inside another is skipped
            end, entity_weight = entities[start]
            weight += _plain_weight(text[pos:start]) + entity_weight
            pos = end
    return weight + _plain_weight(text[pos:])


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
# Between clauses: after a comma, semicolon or colon, or before a dash standing alone.
_CLAUSE_BREAK = regex.compile(r"(?<=[,;:])\s+|\s+(?=[–—]\s)")
# A thread breaks a sentence only when it must: a post ends at the sentence before when
# that is this near its limit (the last 40%: X counts the post, counter and link included),
# else at the last clause that is, else at a word (never inside one, unless it is longer
# than a post).
BREAK_WITHIN = 0.4
_TRAILING = " ,;:.-–—"
_GRAPHEME = regex.compile(r"\X")
_TOKEN = regex.compile(r"[^ \n]+")  # _teaser leaves no other whitespace
# An X thread stops at this many posts, the last one ending in "…" and the link: nobody
# reads further, and a 2 MB paragraph would otherwise make thousands of posts (before the
# cap a 20,000-character paragraph made a thread of 74).
X_MAX_POSTS = 25
# _last_fitting tries up to this many cuts one by one, while the kept text is at most this
# long, before it turns to a binary search: the cut that fits is that close below _cut_bound
# unless links or mentions crowd the text (measured with a 97-character link: 5 word cuts
# tried on Mastodon, 15 on Bluesky, 100 grapheme cuts on Bluesky; counting 10,000
# characters takes 1 ms on Mastodon or Bluesky, so 128 of them 0.13 s).
_SCAN_CUTS = 128
_SCAN_CHARS = 10_000


def headline(brief: Brief, lang: str) -> str:
    """The headline a post in ``lang`` opens with: never another language's. A section with
    no title of its own, in a brief whose title is another section's, is headed by its own
    first sentence (as an untitled brief's sections are), so an Italian account does not
    post the English title."""
    title, section = brief.title_in(lang), brief.section(lang)
    if section is None or section.title:
        return title
    if any(other.title == title for other in brief.sections if other.lang != lang):
        return headline_from(section.lede)
    return title


def headed(brief: Brief, lang: str) -> tuple[str, str]:
    """The headline and standfirst a post (or its link card) in ``lang`` shows: no sentence
    in both, and none in another language."""
    title = headline(brief, lang)
    section = brief.section(lang)
    if section is not None and not section.summary and not brief.summary:
        summary = after_headline(section.lede, title)  # the standfirst under this headline
    else:
        summary = brief.summary_in(lang)
    title, summary = " ".join(title.split()), " ".join(summary.split())
    # A headline cut with "…" from the standfirst's first sentence (an untitled brief's,
    # when that sentence is long) would only say it twice: the post opens with the sentence.
    if title.endswith("…") and summary.startswith(title[:-1].rstrip()):
        title = ""
    return title, summary


def _teaser(brief: Brief, lang: str) -> str:
    teaser = "\n\n".join(p for p in headed(brief, lang) if p)
    return _X_INVALID.sub("", unicodedata.normalize("NFC", teaser))


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


# --- What a post starting with a given text counts at least -------------------------------
#
# Counting a post takes time linear in its text, so trying every cut of a long teaser is
# quadratic (measured before: a 20,000-character paragraph took 6.8 s, 2 MB would take
# hours). A floor on the count of any post whose text starts with a given prefix rules out
# every cut that keeps more than that prefix at once. Every grapheme counts at least 1 on
# every network (X: each code point weighs 1 or 2, an emoji 2), except inside a token that
# may hold a URL or a mention, which counts 23 or "@user" however long: such tokens (judged
# whole, as in the full text: a URL cut short is no URL) are left out. Leaving out a token
# between spaces never adds a grapheme, and a longer text never has fewer, so the floor
# grows with the prefix.


def _mastodon_entity(token: str) -> bool:
    return "://" in token or "@" in token  # Mastodon links URLs with a scheme only


def _x_entity(token: str) -> bool:
    return bool(_X_MAYBE_URL.search(token))


def _no_entity(token: str) -> bool:
    return False  # Bluesky counts links in full


def _floor(text: str, end: int, entity: Callable[[str], bool]) -> int:
    """Graphemes of text[:end] outside tokens that may be entities (see above)."""
    cut = _TOKEN.match(text, end)  # the rest of a token that text[:end] ends inside
    rest = cut[0] if cut else ""

    def plain(m: regex.Match[str]) -> str:
        return "" if entity(m[0] + rest if m.end() == end else m[0]) else m[0]

    return _graphemes(_TOKEN.sub(plain, text[:end]))


def _exceeds(text: str, limit: int, entity: Callable[[str], bool]) -> bool:
    """Whether text surely counts more than limit, judged on as short a prefix as will do."""
    end = 2 * limit
    while end < len(text):
        if _floor(text, end, entity) > limit:
            return True
        end *= 4
    return False


# --- Posts ------------------------------------------------------------------------------


def _kept(teaser: str, cut: int) -> str:
    return teaser[:cut].rstrip(_TRAILING)


def _ellipsized(kept: str) -> str:
    # a "…" glued to a link would be read as part of it
    return kept + (" …" if regex.search(r"://\S*$", kept) else "…")


def _cut_bound(teaser: str, limit: int, entity: Callable[[str], bool]) -> int:
    """The first cut whose kept text already floors above limit (len + 1 if none does).

    No cut from there on can fit: the kept text only grows with the cut. Galloping, then
    bisection, so the cost is that of counting a few times the text that can fit.
    """

    def over(cut: int) -> bool:
        return _floor(teaser, len(_kept(teaser, cut)), entity) > limit

    lo, hi = 0, max(1, 2 * limit)
    while hi < len(teaser) and not over(hi):
        lo, hi = hi, 2 * hi
    if hi >= len(teaser):
        if not over(len(teaser)):
            return len(teaser) + 1
        hi = len(teaser)
    while hi - lo > 1:  # over(lo) is false, over(hi) true
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if over(mid) else (mid, hi)
    return hi


def _last_fitting(cuts: list[int], fitting: Callable[[int], str | None]) -> str | None:
    """fitting(cut) for the last of the ascending cuts where it is not None.

    The last cuts are tried one by one, longest first (see _SCAN_CUTS); past them a binary
    search takes over, which treats the count as growing with the cut (true but around
    links and mentions), so it finds a cut that fits, not always the longest one.
    """
    top = len(cuts)
    while top and len(cuts) - top < _SCAN_CUTS and cuts[top - 1] <= _SCAN_CHARS:
        top -= 1
        if post := fitting(cuts[top]):
            return post
    found, lo, hi = None, -1, top
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if post := fitting(cuts[mid]):
            found, lo = post, mid
        else:
            hi = mid
    return found


def _shortened(
    teaser: str,
    render: Callable[[str], str],
    length: Callable[[str], int],
    limit: int,
    entity: Callable[[str], bool],
) -> str:
    """render(teaser), else render() of the teaser cut at a word (else a grapheme) with "…".

    The longest cut that fits, as when every cut was tried from the end; _cut_bound skips
    those that keep too much to fit.
    """
    bound = _cut_bound(teaser, limit, entity)
    if bound > len(teaser) and length(post := render(teaser)) <= limit:
        return post
    head = teaser[:bound]

    def fitting(cut: int) -> str | None:
        post = render(_ellipsized(_kept(teaser, cut)))
        return post if length(post) <= limit else None

    words = [m.start() for m in regex.finditer(r"\s+", head)]
    if found := _last_fitting(words, fitting):
        return found
    if found := _last_fitting([m.start() for m in _GRAPHEME.finditer(head)], fitting):
        return found
    raise ValueError(f"even {render('…')!r} does not fit in {limit}")


def _longest(ok: Callable[[int], bool]) -> int:
    """The largest m with ok(m), for ok true up to some m and false after (ok(0) not asked)."""
    lo, hi = 0, 1
    while ok(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _grapheme_bounds(text: str) -> Callable[[int], int | None]:
    """bound(i): where grapheme i of text starts (len(text) for i = the number of graphemes,
    None past it), found only as far as asked: a 2 MB word fills only X_MAX_POSTS posts."""
    found = [0]
    ends = (m.end() for m in _GRAPHEME.finditer(text))

    def bound(i: int) -> int | None:
        while len(found) <= i:
            if (e := next(ends, None)) is None:
                return None
            found.append(e)
        return found[i]

    return bound


def _pack_graphemes(
    sep: str,
    word: str,
    fits: Callable[[str, int], bool],
    posts: list[str],
    max_posts: int,
    fresh: bool = False,
) -> None:
    """_pack's fill of posts with a word longer than a post, a run of graphemes at a time.

    The run is found by bisection, in ~2 log2(280) counts rather than one per grapheme
    (~270 per post, each counting the whole post). Without a URL in the word each
    grapheme adds to X's count, so the run is the one a grapheme by grapheme fill would
    reach. A URL counts 23 however long (up to 4,096 characters), so with one in the word a
    longer run may count less: then the run fits but may differ from that fill.
    """
    bound = _grapheme_bounds(word)

    def fill(base: str, k: int, first: int) -> int:
        """How many graphemes from grapheme first on fit in post k after base."""
        start = bound(first) or 0

        def ok(m: int) -> bool:
            stop = bound(first + m)
            return stop is not None and fits(base + word[start:stop], k)

        return _longest(ok)

    i = fill(posts[-1] + sep, len(posts), 0) if posts and not fresh else 0
    if i:
        posts[-1] += sep + word[: bound(i)]
    while (start := bound(i)) is not None and start < len(word) and len(posts) <= max_posts:
        m = fill("", len(posts) + 1, i)
        if not m:
            raise ValueError(f"cannot fit {word[start : bound(i + 1)]!r} into a post")
        posts.append(word[start : bound(i + m)])
        i += m


# The pieces _pack splits a piece into when it does not fit whole: a sentence into clauses,
# a clause into words (a word into graphemes, by _pack_graphemes).
_FINER: tuple[Callable[[str], list[str]], ...] = (
    lambda sentence: _CLAUSE_BREAK.split(sentence),
    lambda clause: clause.split(" "),
)


def _pack(
    pieces: Iterable[tuple[str, str]],
    fits: Callable[[str, int], bool],
    posts: list[str],
    max_posts: int,
    full: Callable[[str, int], bool] = lambda _body, _k: False,
    depth: int = 0,
    fresh: bool = False,
) -> list[str]:
    """Greedily fill X posts with (separator, piece) pairs; ``fits(body, k)`` checks post k,
    ``full(body, k)`` says post k is near enough its limit to end where it does.

    A sentence (depth 0) that fits a post of its own is never broken. One that does not is
    split into clauses, a clause into words, a word into graphemes; a post ends before such a
    piece when it is full enough, else takes what fits of the piece's finer parts. ``fresh``:
    the first piece starts a new post. Stops once a post past max_posts is started.
    """
    for sep, piece in pieces:
        if len(posts) > max_posts:
            break
        last = len(posts)
        if posts and not fresh and fits(posts[-1] + sep + piece, last):
            posts[-1] += sep + piece
            fresh = False
            continue
        ends_here = fresh or not posts or full(posts[-1], last)
        alone = depth in (0, len(_FINER)) or ends_here  # never cut a sentence or a word
        if alone and fits(piece, last + 1):
            posts.append(piece)
        elif depth < len(_FINER):
            parts = _FINER[depth](piece)
            finer = itertools.chain([(sep, parts[0])], ((" ", part) for part in parts[1:]))
            _pack(finer, fits, posts, max_posts, full, depth + 1, fresh=ends_here and bool(posts))
        elif _GRAPHEME.fullmatch(piece):
            raise ValueError(f"cannot fit {piece!r} into a post")
        else:
            _pack_graphemes(sep, piece, fits, posts, max_posts, fresh=ends_here and bool(posts))
        fresh = False
    return posts


def _x_post(body: str, k: int, n: int, link: str) -> str:
    post = f"{body} ({k}/{n})"
    return _join(post, link) if k == 1 else post


# No longer text fits an X post: a URL counts 23 for up to HREF_MAX characters (and
# needs a punycode label at least as long as the Unicode one), an emoji 2 for up to 10,
# anything else at least 1 per character, and NFC at most quarters the text.
_X_MAX_CHARS = 4 * (X_LIMIT // URL_LENGTH + 1) * HREF_MAX


def _x_fits_text(post: str) -> bool:
    if len(post) > _X_MAX_CHARS or _exceeds(post, X_LIMIT, _x_entity):
        return False
    return x_weighted_length(post) <= X_LIMIT


def _x_fits(body: str, k: int, n: int, link: str) -> bool:
    return _x_fits_text(_x_post(body, k, n, link))


def _x_full(body: str, k: int, n: int, link: str) -> bool:
    return x_weighted_length(_x_post(body, k, n, link)) >= (1 - BREAK_WITHIN) * X_LIMIT


def _skip_separators(text: str, pos: int) -> int:
    return len(text) - len(text[pos:].lstrip(" \n"))


def _consumed(teaser: str, bodies: list[str]) -> int:
    """Where the teaser goes on after the bodies, each the next stretch of it."""
    pos = 0
    for body in bodies:
        pos = _skip_separators(teaser, pos)
        assert teaser.startswith(body, pos), body
        pos += len(body)
    return _skip_separators(teaser, pos)


def _x_capped(teaser: str, pieces: list[tuple[str, str]], link: str) -> list[str]:
    """X_MAX_POSTS posts, the last one what fits of the rest with "…" and the link."""
    bodies = _pack(
        pieces,
        partial(_x_fits, n=X_MAX_POSTS, link=link),
        [],
        X_MAX_POSTS - 1,
        partial(_x_full, n=X_MAX_POSTS, link=link),
    )
    bodies = bodies[: X_MAX_POSTS - 1]
    n = len(bodies) + 1  # X_MAX_POSTS: _x_posts found more with counters no wider

    def last(text: str) -> str:
        return _join(f"{text} ({n}/{n})", link)

    start = _consumed(teaser, bodies)
    rest = teaser[start : start + _X_MAX_CHARS]  # no more can fit
    final = _shortened(rest, last, x_weighted_length, X_LIMIT, _x_entity)
    return [*(_x_post(body, k, n, link) for k, body in enumerate(bodies, 1)), final]


def _x_posts(teaser: str, link: str) -> list[str]:
    single = _join(teaser, link)
    if _x_fits_text(single):
        return [single]
    pieces = [
        (" " if i else "\n\n", sentence)
        for paragraph in teaser.split("\n\n")
        for i, sentence in enumerate(_SENTENCE_BREAK.split(paragraph))
    ]
    n = 1
    while True:  # the counter's width depends on the number of posts: repeat until stable
        fits, full = partial(_x_fits, n=n, link=link), partial(_x_full, n=n, link=link)
        bodies = _pack(pieces, fits, [], X_MAX_POSTS, full)
        if len(bodies) > X_MAX_POSTS:
            return _x_capped(teaser, pieces, link)
        if len(bodies) == n:
            return [_x_post(body, k, n, link) for k, body in enumerate(bodies, 1)]
        n = len(bodies)


def _linked(link: str) -> Callable[[str], str]:
    return lambda text: _join(text, link)


_NETWORKS: dict[str, tuple[Callable[[str], int], int, Callable[[str], bool]]] = {
    "x": (x_weighted_length, X_LIMIT, _x_entity),
    "mastodon": (mastodon_length, MASTODON_LIMIT, _mastodon_entity),
    "bluesky": (bluesky_length, BLUESKY_LIMIT, _no_entity),
}


def build_social(brief: Brief, site: SiteSettings) -> list[SocialPost]:
    """One post (an X thread when needed) per network for each language of the brief."""
    return [
        network_post(brief, site, network, lang)
        for lang in brief.languages
        for network in _NETWORKS
    ]


def network_post(
    brief: Brief, site: SiteSettings, network: str, lang: str, limit: int | None = None
) -> SocialPost:
    """The brief's post for one network and language (an X thread when needed). ``limit``
    replaces the network's usual one for a single post (a Mastodon instance's own limit);
    X threads are always cut at X's 280."""
    length, default, entity = _NETWORKS[network]
    limit = default if limit is None else limit
    if network == "x" and limit != X_LIMIT:
        raise ValueError(f"X posts are built for {X_LIMIT} characters, not {limit}")
    teaser, link = _teaser(brief, lang), brief.post_link(lang, site.brief_url(brief.id, lang))
    try:
        if network == "x":
            posts = _x_posts(teaser, link)
        else:
            posts = [_shortened(teaser, _linked(link), length, limit, entity)]
    except ValueError as exc:  # a "character" heavier than a whole post, say
        raise BriefError(brief.source or brief.id, f"{network} post: {exc}") from None
    return SocialPost(network, lang, tuple(posts), tuple(map(length, posts)), limit)
