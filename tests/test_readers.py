"""Every seed shape read into the right Brief; Markdown briefs; encodings."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from briefcast.brief import BlockKind, Brief
from briefcast.config import Settings
from briefcast.readers import BriefError, read_brief

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
ROME = ZoneInfo("Europe/Rome")
# Text of 001's page around the article: none of it may reach any output.
CHROME = (
    "Iscriviti ora alla",
    "SITO WEB REALIZZATO",
    "Looking for Partners Coordinators",
    "Happy New Year to all Europeans!",
    "Crossmediale in lingua italiana",
    "facebook",
    "instagram",
    "whatsapp",
    "Europolitiche.it",
    ".webp",
)
DISCLAIMER = (
    "analisti associati @europolitiche.it*",
    "*This contribution is not a journalistic article but an analytical brief - "
    "Questo contributo non è un articolo giornalistico ma un brief analitico",
)


def seed(prefix: str) -> Path:
    return next(SEEDS.glob(f"{prefix}_*.txt"))


def all_text(brief: Brief) -> str:
    parts = [brief.title, brief.summary or "", *brief.footer, *brief.tags]
    for s in brief.sections:
        parts += [s.title or "", s.summary or "", *(b.text for b in s.blocks)]
    return "\n".join(parts)


@pytest.fixture
def settings() -> Settings:
    return Settings()


EXPECTED = {
    "000": {
        "title": "Leaders from 35 countries allied with Kyiv met in Paris on Tuesday, "
        "January 6, including US…",
        "date": None,
        "tags": (),
        "languages": ("en", "it"),
    },
    "001": {
        "title": "Ukraine's Western allies agree on key security guarantees in Paris",
        "date": datetime(2026, 1, 7, 18, 23, tzinfo=ROME),
        "tags": (
            "Europolitiche",
            "Macro/Scenari",
            "ucraina",
            "ukraine",
            "gennaio-2026",
            "macron-starmer-zelensky",
            "volenterosi",
            "pace-tra-russi-e-ucraini",
            "europolitiche-articolo-sui-volenterosi-per-lucraina",
            "contro-la-russia",
        ),
        "languages": ("en", "it"),
    },
    "002": {
        "title": "The 35 countries of the “Alliance of the Willing” today ratified the "
        "“Paris declaration”, which…",
        "date": None,
        "tags": (),
        "languages": ("en",),
    },
    "003": {
        "title": "The coalition of the willing, the group of countries willing to contribute "
        "to the security…",
        "date": datetime(2025, 3, 11, tzinfo=ROME),
        "tags": (),
        "languages": ("en",),
    },
    "004": {
        "title": 'At the "coalition of the willing" summit in Paris, Presidents Emmanuel '
        "Macron and Volodymyr…",
        "date": None,
        "tags": (),
        "languages": ("en",),
    },
}


@pytest.mark.parametrize("prefix", sorted(EXPECTED))
def test_seed_title_date_tags_languages(prefix: str, settings: Settings) -> None:
    brief = read_brief(seed(prefix), settings)
    expected = EXPECTED[prefix]
    assert brief.title == expected["title"]
    assert brief.date == expected["date"]
    if brief.date:
        assert brief.date.utcoffset() is not None
    assert brief.tags == expected["tags"]
    assert brief.languages == expected["languages"]


def test_bilingual_markers_and_disclaimer(settings: Settings) -> None:
    brief = read_brief(seed("000"), settings)
    en, it = brief.sections
    assert en.blocks[0].text.startswith("Leaders from 35 countries allied with Kyiv")
    assert it.blocks[0].text.startswith("I leader di 35 paesi alleati di Kiev")
    assert not any(b.text.startswith("EU/") for s in brief.sections for b in s.blocks)
    assert it.title == (
        "I leader di 35 paesi alleati di Kiev si sono incontrati a Parigi martedì 6 gennaio, "
        "inclusi gli…"
    )
    # The disclaimer is a footer, not the last paragraph of the Italian text.
    assert brief.footer == DISCLAIMER
    assert "analisti associati" not in it.blocks[-1].text
    assert [len(s.blocks) for s in brief.sections] == [5, 5]


def test_scraped_page_keeps_the_article_and_nothing_else(settings: Settings) -> None:
    brief = read_brief(seed("001"), settings)
    assert brief.publisher == "Europolitiche"
    assert brief.footer == DISCLAIMER
    en, it = brief.sections
    assert en.title == "Ukraine's Western allies agree on key security guarantees in Paris"
    assert it.summary == (
        "Intesa su forza multinazionale. Regno Unito e la Francia stabiliranno hub militari "
        "in Ucraina. I Volenterosi: «Gli Usa monitoreranno la tregua»"
    )
    assert [len(s.blocks) for s in brief.sections] == [5, 5]
    assert en.blocks[-1].text.endswith('will establish military hubs in Ukraine."')
    text = all_text(brief)
    for chrome in CHROME:
        assert chrome not in text, chrome
    # The title line appears twice on the page, and never as body text.
    assert not any("Western allies agree" in b.text for s in brief.sections for b in s.blocks)


def test_inline_subheadings_and_lists(settings: Settings) -> None:
    b002 = read_brief(seed("002"), settings)
    subheadings = [b.text for b in b002.sections[0].blocks if b.kind is BlockKind.SUBHEADING]
    assert subheadings == [
        "“The most difficult steps are ahead of us”",
        "“Compromises will be needed to achieve peace”",
        "Italy refuses to send troops to Ukraine",
        "“We will help with civil and military missions on the ground”",
        "“To open the door to military involvement in Ukraine”",
        "“Substantial documents and not just words”",
    ]
    b004 = read_brief(seed("004"), settings)
    blocks = b004.sections[0].blocks
    items = [b.text for b in blocks if b.kind is BlockKind.LIST_ITEM]
    assert len(items) == 5
    assert items[0].startswith("The US will coordinate monitoring")
    assert not any(i.startswith("-") for i in items)
    assert [b.text for b in blocks if b.kind is BlockKind.SUBHEADING] == [
        "Press Conference Summary"
    ]


def test_leading_date_line(settings: Settings) -> None:
    brief = read_brief(seed("003"), settings)
    blocks = brief.sections[0].blocks
    assert blocks[0].text.startswith("The coalition of the willing, the group")
    assert "date 2025" not in all_text(brief)
    assert [b.text for b in blocks if b.kind is BlockKind.SUBHEADING] == [
        "The meeting without the USA",
        "First step towards security guarantees",
        "The future of the Ukrainian army",
        "The contingent of peace",
    ]


def test_third_language_section(tmp_path: Path, settings: Settings) -> None:
    text = (
        seed("000")
        .read_text("utf-8")
        .replace(
            "analisti associati",
            "EU/FRA - Les dirigeants de 35 pays alliés de Kiev se sont réunis à Paris mardi.\n"
            "analisti associati",
        )
    )
    path = tmp_path / "three.txt"
    path.write_text(text, "utf-8")
    brief = read_brief(path, settings)
    assert brief.languages == ("en", "it", "fr")
    assert brief.section("fr").blocks[0].text.startswith("Les dirigeants")
    assert brief.footer == DISCLAIMER


def test_windows_1252_and_crlf_read_like_utf8(tmp_path: Path, settings: Settings) -> None:
    original = read_brief(seed("000"), settings)
    text = seed("000").read_text("utf-8").replace("’", "'").replace("“", '"').replace("”", '"')
    path = tmp_path / "windows.txt"
    path.write_bytes(text.replace("\n", "\r\n").encode("cp1252"))
    brief = read_brief(path, settings)
    assert brief.languages == original.languages
    assert brief.title == original.title
    assert "Élysée Palace" in brief.sections[0].blocks[2].text
    assert "martedì" in brief.sections[1].blocks[0].text
    assert not any("\r" in b.text for s in brief.sections for b in s.blocks)


MARKDOWN = """\
---
title:
  en: Paris agrees on a multinational force
  it: Intesa a Parigi sulla forza multinazionale
date: 2026-01-07 18:23
tags: [ucraina, volenterosi]
summary:
  it: Regno Unito e Francia stabiliranno hub militari in Ucraina.
footer: "*An analytical brief - Un brief analitico"
---
[en]
Leaders from 35 countries met in **Paris** on Tuesday.

## What was agreed

- A multinational force after a ceasefire
- US-led monitoring of the truce

> "The hardest steps are ahead," Starmer said.

[it]
I leader di 35 paesi si sono incontrati a *Parigi* martedì.
"""


def test_markdown_front_matter(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "brief.md"
    path.write_text(MARKDOWN, "utf-8")
    brief = read_brief(path, settings)
    assert brief.title == "Paris agrees on a multinational force"
    assert brief.title_in("it") == "Intesa a Parigi sulla forza multinazionale"
    assert brief.date == datetime(2026, 1, 7, 18, 23, tzinfo=ROME)
    assert brief.tags == ("ucraina", "volenterosi")
    assert brief.languages == ("en", "it")
    assert brief.summary_in("it") == "Regno Unito e Francia stabiliranno hub militari in Ucraina."
    assert brief.footer == ("*An analytical brief - Un brief analitico",)
    kinds = [(b.kind, b.text) for b in brief.section("en").blocks]
    assert kinds == [
        (BlockKind.PARAGRAPH, "Leaders from 35 countries met in Paris on Tuesday."),
        (BlockKind.SUBHEADING, "What was agreed"),
        (BlockKind.LIST_ITEM, "A multinational force after a ceasefire"),
        (BlockKind.LIST_ITEM, "US-led monitoring of the truce"),
        (BlockKind.QUOTE, '"The hardest steps are ahead," Starmer said.'),
    ]
    assert brief.section("it").blocks[0].text == (
        "I leader di 35 paesi si sono incontrati a Parigi martedì."
    )


def test_markdown_single_language_with_lang_key(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "one.md"
    path.write_text("---\ntitle: Breve nota\nlang: it\n---\nUn testo breve.\n", "utf-8")
    brief = read_brief(path, settings)
    assert brief.languages == ("it",)
    assert brief.id == "breve-nota"
    assert brief.date is None


@pytest.mark.parametrize(("value", "expected"), [("2026", "2026"), ("2026-01-07", "2026-01-07")])
def test_markdown_id_that_yaml_reads_as_a_number_or_date_is_text(
    tmp_path: Path, settings: Settings, value: str, expected: str
) -> None:
    path = tmp_path / "id.md"
    path.write_text(f"---\nid: {value}\nlang: en\n---\nSome text.\n", "utf-8")
    assert read_brief(path, settings).id == expected


def test_markdown_id_too_long_for_the_archive_is_refused(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "id.md"
    path.write_text(f"---\nid: {'x' * 201}\nlang: en\n---\nSome text.\n", "utf-8")
    with pytest.raises(BriefError, match="is not valid: an id is lower-case letters"):
        read_brief(path, settings)


def test_script_in_a_brief_stays_text(tmp_path: Path, settings: Settings) -> None:
    path = tmp_path / "xss.txt"
    path.write_text("EU/ENG - Hello <script>alert(1)</script> world.\n", "utf-8")
    brief = read_brief(path, settings)
    assert brief.sections[0].blocks[0].text == "Hello <script>alert(1)</script> world."


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        # At most six words, never ending on a stop word ("…met-in").
        ("Leaders from 35 countries met in Paris on Tuesday", "leaders-from-35-countries-met"),
        ("The leaders of the coalition and the allies met", "the-leaders-of-the-coalition"),
        (
            "Intesa a Parigi sulla forza multinazionale per l'Ucraina",
            "intesa-a-parigi-sulla-forza-multinazionale",
        ),
        ("Il vertice di Parigi e la forza di pace", "il-vertice-di-parigi"),
        ("Breve nota", "breve-nota"),
        ("In", "in"),  # nothing but a stop word: kept, an id needs a word
        ("Supercalifragilistic" * 4, ("supercalifragilistic" * 4)[:60]),
    ],
)
def test_ids_made_from_titles_are_short_and_end_on_a_word_that_says_something(
    tmp_path: Path, settings: Settings, title: str, expected: str
) -> None:
    path = tmp_path / "brief.md"
    path.write_text(f"---\ntitle: {title!r}\nlang: en\n---\nSome text.\n", "utf-8")
    assert read_brief(path, settings).id == expected


def test_an_untitled_brief_s_id_is_made_from_its_headline(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "brief.md"
    path.write_text(
        "---\nlang: en\n---\nLeaders from 35 countries met in Paris on Tuesday. More.\n", "utf-8"
    )
    brief = read_brief(path, settings)
    assert brief.title == "Leaders from 35 countries met in Paris on Tuesday."
    assert brief.id == "leaders-from-35-countries-met"
    # A closing quote stays with the sentence it closes: the standfirst opens with none.
    path.write_text('---\nlang: en\n---\n"We met in Paris." They agreed on it.\n', "utf-8")
    brief = read_brief(path, settings)
    assert (brief.title, brief.summary_in("en")) == ('"We met in Paris."', "They agreed on it.")
