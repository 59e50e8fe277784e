"""Markdown's own constructs survive in every channel, each in the form it can carry.

One bilingual brief with links, bold, emphasis, a numbered list, a table, a footnote and an
image, published through the CLI (dry run); every output is parsed: the email editions'
HTML and text parts (from the .eml files that would be sent), the web pages, the feeds and
the social posts. A brief's text is still never markup: no raw HTML passes, and links go only
to http(s) and mailto.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

import pytest
from lxml import etree
from lxml import html as lxml_html
from test_cli import briefcast, one_line_error
from test_hostile import nothing_written

RICH = """---
id: rich
link: first
title:
  en: Paris agrees on a force
  it: Intesa a Parigi sulla forza
date: 2026-01-07 18:23
---
[en]
Leaders from **35 countries** met in [Paris](https://example.org/paris?a=1&b=2) on *Tuesday*.[^1]

## What was agreed

1. A multinational force after a ceasefire.
2. Monitoring of the truce led by [the US](https://example.org/us).

| Country | Troops |
|---------|-------:|
| France  | 2,000  |
| [Britain](https://example.org/uk) | 1,500 |

![A map of the planned deployment](https://example.org/map.png)

Write to [the desk](mailto:desk@example.org) or see [this](javascript:alert(1)) <b>raw</b>.

[^1]: According to the [Elysée](https://example.org/elysee) communiqué.

[it]
I leader di **35 paesi** si sono incontrati a [Parigi](https://example.org/parigi) martedì.[^a]

1. Una forza multinazionale dopo il cessate il fuoco.
2. Un monitoraggio della tregua.

[^a]: Secondo il comunicato dell'Eliseo.
"""

EN_LINKS = {
    "https://example.org/paris?a=1&b=2": "Paris",
    "https://example.org/us": "the US",
    "https://example.org/uk": "Britain",
    "https://example.org/elysee": "Elysée",
    "mailto:desk@example.org": "the desk",
}
IT_LINKS = {"https://example.org/parigi": "Parigi"}
EN_SENTENCES = [
    "Leaders from 35 countries met in Paris on Tuesday.",
    "A multinational force after a ceasefire.",
    "Monitoring of the truce led by the US.",
    "According to the Elysée communiqué.",
    "Write to the desk or see this <b>raw</b>.",
]
IT_SENTENCES = [
    "I leader di 35 paesi si sono incontrati a Parigi martedì.",
    "Una forza multinazionale dopo il cessate il fuoco.",
    "Un monitoraggio della tregua.",
    "Secondo il comunicato dell'Eliseo.",
]


# A byline, and tags and a disclaimer of each language's own.
BYLINE = """---
id: bylined
title: {en: Rome and Paris, it: Roma e Parigi}
date: 2026-01-08 09:00
byline: Anna Rossi
tags: {en: [defence, Ukraine], it: [difesa, Ucraina]}
footer: {en: An analytical brief., it: Un brief analitico.}
---
[en]
The two capitals agreed.

[it]
Le due capitali hanno trovato un accordo.
"""


# Untitled: its headline is its first sentence, cut from the body; the rest keeps its link.
UNTITLED = """---
id: untitled
lang: en
summary: A summary of its own.
---
Leaders met in Paris on Tuesday. They agreed on a [force](https://example.org/f) for Ukraine.

Another paragraph.
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> Path:
    folder = tmp_path_factory.mktemp("markdown")
    (folder / "rich.md").write_text(RICH, "utf-8")
    (folder / "bylined.md").write_text(BYLINE, "utf-8")
    (folder / "untitled.md").write_text(UNTITLED, "utf-8")
    briefs = ("rich.md", "bylined.md", "untitled.md")
    result = briefcast("publish", *briefs, cwd=folder, env={"PREFECT_API_URL": prefect_api})
    assert result.returncode == 0, result.stderr
    return folder / "out"


@pytest.fixture(scope="module")
def out(published: Path) -> Path:
    return published / "rich"


def message(out: Path, edition: str) -> email.message.EmailMessage:
    raw = (out / "email" / f"{edition}.eml").read_bytes()
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def html_part(out: Path, edition: str) -> lxml_html.HtmlElement:
    html = message(out, edition).get_body(("html",)).get_content()
    # The preheader: hidden, shown by the inbox beside the subject, never in the body.
    html = re.sub(r'<div style="display:none[^>]*>.*?</div>', "", html, count=1, flags=re.S)
    return lxml_html.document_fromstring(html)


def text_part(out: Path, edition: str) -> str:
    return message(out, edition).get_body(("plain",)).get_content().replace("\r\n", "\n")


def links(doc: lxml_html.HtmlElement) -> dict[str, str]:
    return {a.get("href"): a.text_content() for a in doc.iter("a") if a.get("href")}


def check_body_html(doc: lxml_html.HtmlElement, lang: str) -> None:
    """What every HTML output of the brief must hold, in ``lang``."""
    wanted = EN_LINKS if lang == "en" else IT_LINKS
    found = links(doc)
    for href, text in wanted.items():
        assert found.get(href) == text, (href, found)
    assert not [h for h in found if h.lower().startswith("javascript")]
    assert [s.text_content() for s in doc.iter("strong")][:1] == [
        "35 countries" if lang == "en" else "35 paesi"
    ]
    ol = next(doc.iter("ol"))
    assert len(ol.findall("li")) == 2 and ol.get("start") == "1"
    # The footnote: a numbered reference, a notes list, links both ways.
    ref = doc.find_class("fn-ref")[0].find("a")
    note = doc.get_element_by_id(ref.get("href")[1:])
    assert note.tag == "li" and ref.text_content() == "1"
    back = note.find_class("fn-back")[0]
    assert doc.get_element_by_id(back.get("href")[1:]) is ref
    if lang == "en":
        assert [e.text_content() for e in doc.iter("em")] == ["Tuesday"]
        (table,) = doc.find_class("data")
        assert [th.text_content() for th in table.iter("th")] == ["Country", "Troops"]
        assert [td.text_content() for td in table.iter("td")] == [
            "France",
            "2,000",
            "Britain",
            "1,500",
        ]
        (img,) = (i for i in doc.iter("img") if "map" in (i.get("src") or ""))
        assert img.get("alt") == "A map of the planned deployment"
        assert "max-width:100%" in img.get("style").replace(" ", "")
        # Raw HTML is text, never markup.
        assert not list(doc.iter("b"))
        assert "<b>raw</b>" in doc.text_content()


@pytest.mark.parametrize("edition", ["en", "it", "both"])
def test_email_html_keeps_every_construct(out: Path, edition: str) -> None:
    doc = html_part(out, edition)
    for lang in ("en", "it") if edition == "both" else (edition,):
        part = doc.get_element_by_id(f"brief-{lang}") if edition == "both" else doc
        check_body_html(part, lang)
    # Two languages in one edition: every anchor id is unique.
    ids = [e.get("id") for e in doc.iter() if e.get("id")]
    assert len(ids) == len(set(ids)), ids
    # Every sentence once.
    text = doc.text_content()
    for sentence in {"en": EN_SENTENCES, "it": IT_SENTENCES, "both": []}[edition] or (
        EN_SENTENCES + IT_SENTENCES
    ):
        assert text.count(sentence) == 1, (edition, sentence)


def test_text_part_numbers_links_and_lays_out_the_table(out: Path) -> None:
    text = text_part(out, "en")
    refs = dict(re.findall(r"^\[(\d+)\] (\S+)$", text, re.M))
    urls = list(refs.values())
    # Every link's address, in reading order, after its text as [n].
    for href, label in EN_LINKS.items():
        n = next(k for k, v in refs.items() if v == href)
        assert f"{label} [{n}]" in " ".join(text.split()), (label, n)
    assert "https://example.org/map.png" in urls  # the image, as "[Image: alt] [n]"
    assert "[Image: A map of the planned deployment]" in text
    assert not [u for u in urls if "javascript" in u]
    # Numbered items keep their numbers.
    assert re.search(r"^1\. A multinational force after a ceasefire\.$", text, re.M)
    assert re.search(r"^2\. Monitoring of the truce", text, re.M)
    # The table in columns, readable in monospace: each row's cells at the same offsets.
    rows = [line for line in text.splitlines() if line.startswith(("Country", "France", "Brit"))]
    assert len(rows) == 3
    assert (
        len(
            {
                line.index(cell)
                for line, cell in zip(rows, ["Troops", "2,000", "1,500"], strict=True)
            }
        )
        == 1
    )
    # The footnote: a superscript reference and the note after the text.
    assert "Tuesday.¹" in text and re.search(r"^¹ According to the Elysée \[\d+\]", text, re.M)
    for sentence in EN_SENTENCES:
        assert " ".join(text.split()).count(sentence.replace("Elysée", "Elysée")) <= 1
    # No Markdown syntax left.
    for syntax in ("**", "](", "[^", "|---", "!["):
        assert syntax not in text, syntax


def test_web_pages_and_feeds_carry_the_same_markup(out: Path) -> None:
    for lang in ("en", "it"):
        page = lxml_html.document_fromstring((out / "web" / f"{lang}.html").read_text("utf-8"))
        article = page.find(".//article")
        check_body_html(article, lang)
        for sentence in EN_SENTENCES if lang == "en" else IT_SENTENCES:
            assert article.text_content().count(sentence) == 1, (lang, sentence)
        feed = json.loads((out / "feed" / lang / "feed.json").read_text("utf-8"))
        item = next(i for i in feed["items"] if "/rich/" in i["url"])
        content = lxml_html.fragment_fromstring(item["content_html"], create_parent="div")
        check_body_html(content, lang)
        # The page's body is the feed's content (the page shows the lede as its standfirst).
        body = lxml_html.tostring(article.find_class("body")[0], encoding="unicode")
        for element in ("<ol", "<table", 'class="notes"', "<img"):
            assert (element in body) == (element in item["content_html"]), element
        atom = etree.parse(str(out / "feed" / lang / "atom.xml"))
        content_atom = next(
            e.find("{http://www.w3.org/2005/Atom}content").text
            for e in atom.iter("{http://www.w3.org/2005/Atom}entry")
            if "/rich/" in e.find("{http://www.w3.org/2005/Atom}id").text
        )
        assert content_atom == item["content_html"]


def test_social_posts_show_no_markdown_and_link_as_chosen(published: Path) -> None:
    """`link: first`: the posts of "rich" link to its first link in their language; a brief
    that chose nothing links to its page."""
    for brief_id, wanted in {
        "rich": {"en": "https://example.org/paris?a=1&b=2", "it": "https://example.org/parigi"},
        "bylined": {lang: f"/{lang}/bylined/" for lang in ("en", "it")},
    }.items():
        posts = json.loads((published / brief_id / "social" / "posts.json").read_text("utf-8"))
        assert {p["network"] for p in posts} == {"x", "mastodon", "bluesky"}
        for post in posts:
            text = "\n".join(part["text"] for part in post["posts"])
            assert text.rstrip().endswith(wanted[post["lang"]]), (brief_id, text)
            for syntax in ("**", "](", "[^", "!["):
                assert syntax not in text, syntax
    rich = json.loads((published / "rich" / "social" / "posts.json").read_text("utf-8"))
    assert "Leaders from 35 countries met in Paris on Tuesday." in json.dumps(rich)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("Text.\n\n![map](map.png)\n", "line 7: image 'map.png' is not an http(s) address"),
        ("Text.\n\n![x](javascript:alert(1))\n", "line 7: image"),
        ("A claim.[^2]\n", "line 5: footnote [^2] is never defined"),
        ("A claim.\n\n[^9]: A note nobody cites.\n", "line 7: footnote [^9] is never referenced"),
        # The unused one is named, wherever it stands; a second definition is named too.
        ("A.[^b]\n\n[^a]: Unused.\n[^b]: Used.\n", "line 7: footnote [^a] is never referenced"),
        ("A.[^a]\n\n[^a]: One.\n[^a]: Two.\n", "line 8: footnote [^a] is defined twice"),
        ("link: javascript:alert(1)", "front matter key 'link'"),
    ],
)
def test_what_markdown_would_lose_is_refused_naming_the_line(
    tmp_path: Path, body: str, reason: str
) -> None:
    bad = tmp_path / "bad.md"
    meta, body = (f"{body}\n", "Text.\n") if body.startswith("link:") else ("", body)
    bad.write_text(f"---\ntitle: T\nlang: en\n{meta}---\n{body}", "utf-8")
    before = set(tmp_path.rglob("*"))
    line = one_line_error(briefcast("publish", bad, cwd=tmp_path))
    assert "bad.md" in line and reason in line, line
    nothing_written(tmp_path, before)


def test_the_archive_keeps_the_markup(tmp_path: Path) -> None:
    """Feeds and archive pages are built from archived briefs: their spans, rows and numbers
    survive the database's JSON (and a brief archived before them still reads)."""
    from briefcast.brief import Brief
    from briefcast.config import Settings
    from briefcast.readers import read_brief

    (tmp_path / "rich.md").write_text(RICH, "utf-8")
    brief = read_brief(tmp_path / "rich.md", Settings())
    assert Brief.from_dict(json.loads(json.dumps(brief.to_dict()))) == brief
    old = brief.to_dict()
    for section in old["sections"]:
        section["blocks"] = [b[:2] for b in section["blocks"]]  # as archived before markup
    assert Brief.from_dict(old).section("en").blocks[0].text == EN_SENTENCES[0]  # type: ignore[union-attr]


def test_byline_tags_and_footer_per_language(published: Path) -> None:
    out = published / "bylined"
    words = {"en": ("By Anna Rossi", "An analytical brief.", ["defence", "Ukraine"])}
    words["it"] = ("di Anna Rossi", "Un brief analitico.", ["difesa", "Ucraina"])
    for lang, (byline, footer, tags) in words.items():
        other = words["it" if lang == "en" else "en"]
        for part in (html_part(out, lang).text_content(), text_part(out, lang)):
            assert part.count(byline) == 1 and part.count(footer) == 1, (lang, part)
            assert other[0] not in part and other[1] not in part
        page = lxml_html.document_fromstring((out / "web" / f"{lang}.html").read_text("utf-8"))
        assert byline in page.find_class("meta")[0].text_content()
        assert page.find(".//meta[@name='author']").get("content") == "Anna Rossi"
        assert [li.text_content() for li in page.find_class("tags")[0]] == tags
        assert footer in page.find(".//article").text_content()
        feed = json.loads((out / "feed" / lang / "feed.json").read_text("utf-8"))
        item = next(i for i in feed["items"] if "/bylined/" in i["url"])
        assert item["authors"] == [{"name": "Anna Rossi"}] and item["tags"] == tags
        assert footer in item["content_html"] and other[1] not in item["content_html"]
    both = text_part(out, "both")
    for byline, footer, _tags in words.values():
        assert both.count(byline) == 1 and both.count(footer) == 1


def test_an_untitled_briefs_lede_keeps_its_link_after_the_headline(published: Path) -> None:
    out = published / "untitled"
    page = lxml_html.document_fromstring((out / "web" / "en.html").read_text("utf-8"))
    feed = json.loads((out / "feed" / "en" / "feed.json").read_text("utf-8"))
    item = next(i for i in feed["items"] if "/untitled/" in i["url"])
    content = lxml_html.fragment_fromstring(item["content_html"], create_parent="div")
    for doc in (page.find(".//article"), content, html_part(out, "en")):
        assert page.findtext(".//h1") == "Leaders met in Paris on Tuesday."
        text = doc.text_content()
        assert text.count("They agreed on a force for Ukraine.") == 1, text
        assert links(doc).get("https://example.org/f") == "force"
    assert "Leaders met in Paris on Tuesday." not in content.text_content()
