"""Social posts: X / Mastodon / Bluesky length counting and the posts built from a brief."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from briefcast.brief import Block, BlockKind, Brief, Section
from briefcast.config import SiteSettings
from briefcast.render.social import (
    BLUESKY_LIMIT,
    MASTODON_LIMIT,
    X_LIMIT,
    X_MAX_POSTS,
    SocialPost,
    bluesky_length,
    build_social,
    mastodon_length,
    x_is_valid,
    x_weighted_length,
)

CONFORMANCE = yaml.safe_load(
    (Path(__file__).parent / "data" / "twitter-text-validate.yml").read_text("utf-8")
)["tests"]
SITE = SiteSettings(base_url="https://briefs.example.org")
LINK_EN = "https://briefs.example.org/en/2024-05-01-energy/"
LINK_IT = "https://briefs.example.org/it/2024-05-01-energy/"


def cases(section: str) -> list[Any]:
    return [pytest.param(c, id=c["description"]) for c in CONFORMANCE[section]]


@pytest.mark.parametrize(
    "case",
    cases("WeightedTweetsWithDiscountedEmojiCounterTest")
    + cases("UnicodeDirectionalMarkerCounterTest"),
)
def test_twitter_text_conformance(case: dict[str, Any]) -> None:
    assert x_weighted_length(case["text"]) == case["expected"]["weightedLength"]
    assert x_is_valid(case["text"]) is case["expected"]["valid"]


# Expected numbers worked out by each network's rules:
# X: NFC, then U+0000-10FF, U+2000-200D, U+2010-201F, U+2032-2037 weigh 1, anything else 2,
#    an emoji sequence 2, a URL 23 (also "example.com"; "name.it" only with a path);
# Mastodon: URLs with a scheme 23, @user@domain as @user, graphemes for the rest;
# Bluesky: graphemes of the text as is.
@pytest.mark.parametrize(
    ("text", "x", "mastodon", "bluesky"),
    [
        pytest.param("Leggi https://example.com/brief/42", 6 + 23, 6 + 23, 6 + 28, id="url"),
        pytest.param("vedi example.com", 5 + 23, 16, 16, id="url-without-scheme"),
        pytest.param("repubblica.it", 13, 13, 13, id="short-cctld-domain-is-text"),
        pytest.param("www.repubblica.it", 23, 17, 17, id="cctld-with-subdomain"),
        pytest.param("ciao @editor@example.social", 27, 5 + 7, 27, id="mention"),
        pytest.param("🇮🇹", 2, 1, 1, id="flag"),
        pytest.param("👨\u200d👩\u200d👧\u200d👦", 2, 1, 1, id="zwj-family"),
        pytest.param("👍🏽", 2, 1, 1, id="skin-tone"),
        pytest.param("1\ufe0f\u20e3", 2, 1, 1, id="keycap"),
        pytest.param("€", 2, 1, 1, id="euro"),  # U+20AC: outside the light ranges
        pytest.param("…", 2, 1, 1, id="ellipsis"),  # U+2026: likewise
        pytest.param("perché è già così", 17, 17, 17, id="italian-accents"),
        pytest.param("你好世界", 8, 4, 4, id="cjk"),
        pytest.param("perche\u0301", 6, 6, 6, id="combining-accent-nfc"),  # 7 on X without NFC
        pytest.param(
            "Italia 🇮🇹: perché è già così… 5 €",
            7 + 2 + 2 + 17 + 2 + 3 + 2,
            7 + 1 + 2 + 17 + 1 + 3 + 1,
            7 + 1 + 2 + 17 + 1 + 3 + 1,
            id="mixed",
        ),
    ],
)
def test_lengths(text: str, x: int, mastodon: int, bluesky: int) -> None:
    assert x_weighted_length(text) == x
    assert mastodon_length(text) == mastodon
    assert bluesky_length(text) == bluesky


def test_whitespace_only_is_not_a_valid_post() -> None:
    assert not x_is_valid("  \n ")
    assert not x_is_valid("")
    assert mastodon_length("  \n ") == 0


def brief(
    title: str, summary: str, *, langs: tuple[str, ...] = ("en",), section_title: str = ""
) -> Brief:
    return Brief(
        id="2024-05-01-energy",
        title=title,
        date=datetime(2024, 5, 1, 9, tzinfo=UTC),
        summary=summary,
        sections=tuple(
            Section(
                lang=lang,
                title=section_title if lang == "it" and section_title else None,
                blocks=(Block(BlockKind.PARAGRAPH, f"Body in {lang}."),),
            )
            for lang in langs
        ),
    )


def by_network(posts: list[SocialPost], lang: str = "en") -> dict[str, SocialPost]:
    return {p.network: p for p in posts if p.lang == lang}


LENGTH = {"x": x_weighted_length, "mastodon": mastodon_length, "bluesky": bluesky_length}
LIMIT = {"x": X_LIMIT, "mastodon": MASTODON_LIMIT, "bluesky": BLUESKY_LIMIT}


def assert_valid(social: SocialPost) -> None:
    assert social.limit == LIMIT[social.network]
    assert social.lengths == tuple(LENGTH[social.network](p) for p in social.posts)
    assert all(0 < n <= social.limit for n in social.lengths)


SENTENCES = [
    f"Sentence {i} says that the energy market in Europe is changing, perché è già così."
    for i in range(1, 9)
]


def test_short_teaser_is_one_post_everywhere() -> None:
    social = build_social(brief("Energy 🇪🇺", "Prices fell in April."), SITE)
    assert [(s.network, s.lang) for s in social] == [
        ("x", "en"),
        ("mastodon", "en"),
        ("bluesky", "en"),
    ]
    for s in social:
        assert_valid(s)
        assert s.posts == (f"Energy 🇪🇺\n\nPrices fell in April.\n\n{LINK_EN}",)


def test_long_teaser_becomes_an_x_thread() -> None:
    summary = " ".join(SENTENCES)
    x = by_network(build_social(brief("Energy: the April brief", summary), SITE))["x"]
    assert_valid(x)
    n = len(x.posts)
    assert n > 1
    assert LINK_EN in x.posts[0]
    assert all(LINK_EN not in p for p in x.posts[1:])
    for k, post in enumerate(x.posts, 1):
        assert re.search(rf" \({k}/{n}\)($|\n)", post)
    # Split at sentence boundaries: every sentence whole, in order, in some post.
    text = " ".join(x.posts)
    positions = [text.index(s) for s in ["Energy: the April brief", *SENTENCES]]
    assert positions == sorted(positions)


def test_sentence_longer_than_a_post_is_split_at_words() -> None:
    words = " ".join(f"parola{i}" for i in range(120))  # about 1000 characters, no full stop
    x = by_network(build_social(brief("Title", words), SITE))["x"]
    assert_valid(x)
    assert len(x.posts) >= 4
    bodies = [re.sub(r" \(\d+/\d+\)(\n\n.*)?$", "", p, flags=re.S) for p in x.posts]
    assert " ".join(bodies) == f"Title\n\n{words}"


def test_thread_counter_with_ten_or_more_posts() -> None:
    summary = " ".join(SENTENCES * 4)
    x = by_network(build_social(brief("Energy", summary), SITE))["x"]
    assert_valid(x)
    n = len(x.posts)
    assert n >= 10
    assert x.posts[-1].endswith(f" ({n}/{n})")


def test_mastodon_and_bluesky_are_shortened_with_the_full_link() -> None:
    summary = " ".join(SENTENCES * 2)
    social = by_network(build_social(brief("Energy: the April brief", summary), SITE))
    for network in ("mastodon", "bluesky"):
        s = social[network]
        assert_valid(s)
        (post,) = s.posts
        teaser, link = post.rsplit("\n\n", 1)
        assert link == LINK_EN
        assert teaser.endswith("…")
        assert summary.startswith(teaser.split("\n\n", 1)[1].removesuffix("…"))
        assert s.lengths[0] > s.limit - 30  # shortened, not truncated to nothing
    assert len(social["mastodon"].posts[0]) > len(social["bluesky"].posts[0])


def test_every_language_gets_its_own_posts() -> None:
    b = brief("Energy", "Prices fell.", langs=("en", "it"), section_title="Energia")
    social = build_social(b, SITE)
    assert [(s.lang, s.network) for s in social] == [
        ("en", "x"),
        ("en", "mastodon"),
        ("en", "bluesky"),
        ("it", "x"),
        ("it", "mastodon"),
        ("it", "bluesky"),
    ]
    it = by_network(social, "it")["mastodon"].posts[0]
    assert it == f"Energia\n\nPrices fell.\n\n{LINK_IT}"


def test_markup_in_the_title_stays_literal_text() -> None:
    title = '<script>alert("x")</script> & <b>Energy</b>'
    for s in build_social(brief(title, "Prices fell."), SITE):
        assert_valid(s)
        assert s.posts[0].startswith(title + "\n\n")
        assert "&lt;" not in s.posts[0] and "&amp;" not in s.posts[0]


def test_ellipsis_is_not_glued_to_a_link() -> None:
    url = "https://example.org/" + "r" * 100
    b = brief("T", f"Report: {url} {'x' * 300}")  # the only fitting cut is right after the URL
    (post,) = by_network(build_social(b, SITE))["bluesky"].posts
    assert post == f"T\n\nReport: {url} …\n\n{LINK_EN}"


# A brief whose teaser is one long first paragraph: every cut used to be counted in full,
# quadratic (20,000 characters took seconds), and the X thread ran to dozens of posts.
URL_300 = "https://example.org/" + "r" * 280
LONG_WORDS = ("parola " * 3000)[:20_000]
LONG = {
    "words": LONG_WORDS,
    "url": f"{LONG_WORDS[:140]}{URL_300} {LONG_WORDS}",
    "no-spaces": "a" * 20_000,
    "cjk": "你好世界" * 5_000,
}


def lede_brief(title: str, paragraph: str) -> Brief:
    block = Block(BlockKind.PARAGRAPH, paragraph)
    return Brief(
        id="2024-05-01-energy",
        title=title,
        date=datetime(2024, 5, 1, 9, tzinfo=UTC),
        sections=(Section(lang="en", blocks=(block, Block(BlockKind.PARAGRAPH, "More."))),),
    )


def assert_stretches_of(teaser: str, bodies: list[str]) -> None:
    """Each body is the teaser's next stretch, past the spaces where it was split."""
    pos = 0
    for body in bodies:
        pos += len(teaser[pos:]) - len(teaser[pos:].lstrip())
        assert teaser.startswith(body, pos), body[:40]
        pos += len(body)


def shortened_text(social: SocialPost) -> str:
    assert_valid(social)
    (post,) = social.posts
    text, link = post.rsplit("\n\n", 1)
    assert link == LINK_EN
    assert text.endswith("…")
    return text.removesuffix("…").rstrip(" ")


@pytest.mark.parametrize("kind", LONG)
def test_long_paragraph_is_cut_at_a_word(kind: str) -> None:
    teaser = f"Energy brief\n\n{LONG[kind]}"
    social = by_network(build_social(lede_brief("Energy brief", LONG[kind]), SITE))
    for network in ("mastodon", "bluesky"):
        kept = shortened_text(social[network])
        assert teaser.startswith(kept)
        assert re.match(r"[ ,;:.\-–—]*\s", teaser[len(kept) :])  # cut at a word
        if " " not in LONG[kind]:  # the only word cut is after the title
            assert kept == "Energy brief"
        elif kind == "url" and network == "bluesky":  # the URL, counted in full, can't fit
            assert kept == teaser[: teaser.index(URL_300)].rstrip()
        else:
            assert social[network].lengths[0] > social[network].limit - 30
    # Mastodon counts the URL 23, whatever its length: it is kept whole.
    assert (URL_300 in social["mastodon"].posts[0]) is (kind == "url")


@pytest.mark.parametrize("kind", ["no-spaces", "cjk"])
def test_long_word_without_a_title_is_cut_at_a_grapheme(kind: str) -> None:
    social = by_network(build_social(lede_brief("", LONG[kind]), SITE))
    for network in ("mastodon", "bluesky"):
        kept = shortened_text(social[network])
        assert LONG[kind].startswith(kept)
        one_more = f"{LONG[kind][: len(kept) + 1]}…\n\n{LINK_EN}"  # the longest cut that fits
        assert LENGTH[network](one_more) > LIMIT[network]


@pytest.mark.parametrize("kind", LONG)
def test_long_paragraph_makes_a_capped_x_thread(kind: str) -> None:
    teaser = f"Energy brief\n\n{LONG[kind]}"
    x = by_network(build_social(lede_brief("Energy brief", LONG[kind]), SITE))["x"]
    assert_valid(x)
    n = len(x.posts)
    assert n == X_MAX_POSTS
    assert x.posts[0].endswith(f" (1/{n})\n\n{LINK_EN}")
    assert all(LINK_EN not in p for p in x.posts[1:-1])
    assert x.posts[-1].endswith(f"… ({n}/{n})\n\n{LINK_EN}")
    bodies = [re.sub(r" \(\d+/\d+\)(\n\n.*)?$", "", p, flags=re.S) for p in x.posts]
    bodies[-1] = bodies[-1].removesuffix("…").rstrip(" ")
    assert_stretches_of(teaser, bodies)
    assert sum(map(len, bodies)) > 0.8 * X_LIMIT * n / (2 if kind == "cjk" else 1)


def test_thread_of_as_many_posts_as_the_cap_is_whole() -> None:
    summary = " ".join(SENTENCES * 9)  # 72 sentences fill exactly X_MAX_POSTS posts
    x = by_network(build_social(brief("Energy", summary), SITE))["x"]
    assert_valid(x)
    n = len(x.posts)
    assert n == X_MAX_POSTS
    assert x.posts[-1].endswith(f"{SENTENCES[-1]} ({n}/{n})")
    assert all(LINK_EN not in p for p in x.posts[1:])


def _bodies(x: SocialPost) -> list[str]:
    return [re.sub(r" \(\d+/\d+\)(\n\n.*)?$", "", p, flags=re.S) for p in x.posts]


LONG_SENTENCE = (
    "The ministers agreed that the grid must be rebuilt before the winter comes, "
    "that every member state pays its share according to its consumption over the "
    "last five years, that the Commission checks the accounts every quarter and "
    "reports to Parliament in public, and that nobody is left without heating when "
    "prices rise again in the cold months of the next year."
)


def test_x_thread_ends_a_post_at_a_sentence_near_the_limit() -> None:
    first = "Prices fell in April across the Union. " + " ".join(
        f"Market {i} closed lower than in March." for i in range(1, 5)
    )
    x = by_network(build_social(brief("Energy", f"{first} {LONG_SENTENCE}"), SITE))["x"]
    assert_valid(x)
    bodies = _bodies(x)
    # The long sentence does not fit in the first post's last 40%: it starts the second
    # post, not in the middle of the first one's last line.
    assert bodies[0] == f"Energy\n\n{first}"
    assert x.lengths[0] >= 0.6 * X_LIMIT
    assert bodies[1].startswith("The ministers agreed")
    assert " ".join(bodies) == f"Energy\n\n{first} {LONG_SENTENCE}"


def test_x_thread_breaks_a_long_sentence_at_a_clause_then_at_a_word() -> None:
    x = by_network(build_social(brief("Energy", LONG_SENTENCE), SITE))["x"]
    assert_valid(x)
    bodies = _bodies(x)
    assert len(bodies) == 2
    # A clause ends within the first post's last 40%: the post ends there.
    assert bodies[0].endswith(",") and x.lengths[0] >= 0.6 * X_LIMIT
    assert " ".join(bodies) == f"Energy\n\n{LONG_SENTENCE}"

    words = " ".join(["grid"] * 30 + ["electricity"] * 30)  # no clause at all
    x = by_network(build_social(brief("Energy", words), SITE))["x"]
    assert_valid(x)
    bodies = _bodies(x)
    assert " ".join(bodies) == f"Energy\n\n{words}"  # broken at words: none is cut
    assert all(b.split()[-1] in ("grid", "electricity") for b in bodies)
    assert x.lengths[0] > X_LIMIT - len(" electricity")  # filled to the last word that fits
