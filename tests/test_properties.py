"""Property-based tests: whatever a brief file holds, briefcast gives a Brief and its outputs
inside the folder, or one ``BriefError`` line; never another exception, never a path outside.

Bounded example counts keep ``make test`` fast (each example reads, builds every output and
writes the previews: about 0.1 s).
"""

from __future__ import annotations

import email
import email.policy
import functools
import json
import os
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from lxml import html as lxml_html

from briefcast.brief import ID_PATTERN, Brief
from briefcast.config import Settings
from briefcast.errors import BriefError
from briefcast.pipeline import build, provisional
from briefcast.previews import write_previews
from briefcast.readers import read_brief
from briefcast.readers.front_matter import FrontMatter
from briefcast.render.preview import FIT_SCRIPT

BOUNDED = settings(
    # More for a deeper search: BRIEFCAST_PROPERTY_EXAMPLES=500 pytest tests/test_properties.py
    max_examples=int(os.environ.get("BRIEFCAST_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SETTINGS = Settings()

# Text as briefs come: any character (surrogates cannot be written as UTF-8), with the
# shapes the readers look for mixed in so that every reader gets exercised.
ANY_CHAR = st.characters(blacklist_categories=("Cs",))
FRAGMENTS = st.sampled_from(
    [
        "EU/ENG - ",
        "EU/ITA - ",
        "[en]\n",
        "[it]\n",
        "---\n",
        "\n",
        "\r\n",
        "\u2028",
        "\u202e",
        "- ",
        "> ",
        "## ",
        " date 2026-01-07 ",
        "07-01-2026 18:23\n",
        "*disclaimer*\n",
        "The leaders met in Paris on Tuesday. ",
        "I leader si sono incontrati a Parigi martedì. ",
        "https://example.org/a?b=c ",
        "\x00",
        "\x0b",
    ]
)
TEXT = st.lists(st.one_of(st.text(ANY_CHAR, max_size=60), FRAGMENTS), max_size=25).map("".join)

YAML_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True),
    st.text(ANY_CHAR, max_size=40),
    st.sampled_from(["2026-01-07", "2026-13-01", "0001-01-01", "2026-01-07 18:23+01:00", "en"]),
)
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(ANY_CHAR, max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
KEYS = st.one_of(st.sampled_from(list(FrontMatter.model_fields)), st.text(ANY_CHAR, max_size=10))
FRONT_MATTER = st.dictionaries(KEYS, YAML_VALUES, max_size=6)


def outcome(data: bytes, suffix: str) -> Brief | None:
    """Read, build and preview ``data`` as a brief file: the Brief, or None for a BriefError.
    Any other exception fails the test; so does a file written outside the folder."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / f"brief{suffix}"
        path.write_bytes(data)
        try:
            brief = read_brief(path, SETTINGS)
            editions = build(provisional([brief], SETTINGS), SETTINGS, CHANNELS)
        except BriefError as exc:
            assert "\n" not in str(exc) and "\r" not in str(exc), str(exc)
            event(f"refused: {exc.reason.split(chr(39))[0][:30]}")
            return None
        event("published")
        assert ID_PATTERN.fullmatch(brief.id) and len(brief.id) <= 80
        for one_line in (brief.title, *brief.tags, brief.summary or "", brief.publisher or ""):
            assert not set(one_line) & set("\r\n\u2028\u2029\u202e"), one_line
        out = root / "out"
        (folder,) = write_previews(editions, CHANNELS, out, SETTINGS)
        assert folder.resolve().parent == out.resolve()
        for written in out.rglob("*"):
            assert written.resolve().is_relative_to(out.resolve()), written
        assert not any(p.name.startswith(".") for p in out.iterdir()), "staging left behind"
        return brief


CHANNELS = ["email", "feed", "social", "web"]


@BOUNDED
@given(TEXT, st.sampled_from([".txt", ".md"]))
def test_any_text_is_a_brief_or_one_line(text: str, suffix: str) -> None:
    outcome(text.encode("utf-8"), suffix)


@BOUNDED
@given(FRONT_MATTER, TEXT)
def test_any_front_matter_is_a_brief_or_one_line(meta: dict, body: str) -> None:
    dumped = yaml.safe_dump(meta, allow_unicode=True)
    outcome(f"---\n{dumped}---\n{body or 'Some text.'}\n".encode(), ".md")


@BOUNDED
@given(
    st.one_of(
        st.text(ANY_CHAR, max_size=120),
        st.text("az09-_./ A\\", max_size=100),  # near-slugs: path tricks, capitals, length
        st.from_regex(r"[a-z0-9-]{1,90}", fullmatch=True),
    )
)
def test_any_id_is_a_slug_or_refused(brief_id: str) -> None:
    data = f"---\nid: {json.dumps(brief_id)}\nlang: en\n---\nSome text here.\n".encode()
    brief = outcome(data, ".md")
    if brief is not None and brief_id.strip():  # an empty id: made from the title
        assert brief.id == brief_id.strip()


# Untitled briefs: each language's headline is its first sentence, cut with "…" when long.
SENTENCES = {
    "en": [
        "Leaders from 35 countries met in Paris on Tuesday.",
        "They agreed on a multinational force for Ukraine.",
        "The United States will lead the monitoring of a ceasefire along the front line, with "
        "drones and satellites shared by every ally that signed the declaration.",
        '"The hardest steps are ahead," Starmer said.',
        "Macron called it a turning point.",
        "Critics in Moscow dismissed the plan within hours, saying that no foreign soldier "
        "would be accepted on the territory it claims.",
    ],
    "it": [
        "I leader di 35 paesi si sono incontrati a Parigi martedì.",
        "Hanno concordato una forza multinazionale.",
        "Gli Stati Uniti guideranno il monitoraggio del cessate il fuoco lungo la linea del "
        "fronte, con droni e satelliti condivisi da ogni alleato firmatario.",
        "Macron ha parlato di una svolta.",
    ],
}


def _paragraphs(lang: str) -> st.SearchStrategy[list[list[str]]]:
    """Two or more distinct sentences of ``lang``, a paragraph break after any of them."""

    def split(sentences: list[str], breaks: list[bool]) -> list[list[str]]:
        paragraphs = [[sentences[0]]]
        for sentence, new in zip(sentences[1:], breaks, strict=False):
            paragraphs.append([sentence]) if new else paragraphs[-1].append(sentence)
        return paragraphs

    return st.builds(
        split,
        st.permutations(SENTENCES[lang]).flatmap(
            lambda s: st.integers(2, len(s)).map(lambda n: list(s[:n]))
        ),
        st.lists(st.booleans(), min_size=6, max_size=6),
    )


def _visible(markup: str) -> str:
    import html
    import re

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


@BOUNDED
@given(_paragraphs("en"), st.one_of(st.none(), _paragraphs("it")))
def test_an_untitled_brief_says_each_sentence_once_in_every_output(
    en: list[list[str]], it: list[list[str]] | None
) -> None:
    import re

    texts = {"en": en} | ({"it": it} if it else {})
    body = "".join(
        f"[{lang}]\n" + "\n\n".join(map(" ".join, ps)) + "\n" for lang, ps in texts.items()
    )
    data = f"---\ndate: 2026-01-07 18:23\n---\n{body}".encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "untitled.md"
        path.write_bytes(data)
        brief = read_brief(path, SETTINGS)
        editions = build(provisional([brief], SETTINGS), SETTINGS, CHANNELS)
        (folder,) = write_previews(editions, CHANNELS, Path(tmp) / "out", SETTINGS)
        posts = json.loads((folder / "social" / "posts.json").read_text("utf-8"))
        for lang, paragraphs in texts.items():
            sentences = [s for p in paragraphs for s in p]
            web = (folder / "web" / f"{lang}.html").read_text("utf-8")
            main = _visible(web[web.index("<main") : web.index("</main>")])
            email = " ".join((folder / "email" / f"{lang}.txt").read_text("utf-8").split())
            both = " ".join((folder / "email" / "both.txt").read_text("utf-8").split())
            feed = json.loads((folder / "feed" / lang / "feed.json").read_text("utf-8"))
            item = feed["items"][0]
            entry = _visible(item["title"] + " " + item["content_html"])
            for sentence in sentences:
                outputs = (("web", main), ("email", email), ("both", both), ("feed", entry))
                for name, text in outputs:
                    assert text.count(sentence) == 1, (name, sentence, text)
            # A post is cut to fit, but never says a sentence (or its start) twice.
            for post in (p for p in posts if p["lang"] == lang):
                said = " ".join(
                    re.sub(r" \(\d+/\d+\)$|\s*https://\S+", "", part["text"])
                    for part in post["posts"]
                )
                said = " ".join(said.split())
                for sentence in sentences:
                    assert said.count(sentence[:40]) <= 1, (post["network"], sentence, said)
                assert said.startswith(sentences[0][:40]), (post["network"], said)


# --- markup injection ----------------------------------------------------------------------
# Brief text is text in every output: a title, summary, tag, byline, footer line or link made of
# quotes, brackets and handler strings adds no element or attribute to any output's markup.
# Each example compiles three emails through mjml and premailer (0.1-0.8 s), so few.
INJECTION = settings(
    BOUNDED,
    max_examples=int(os.environ.get("BRIEFCAST_INJECTION_EXAMPLES", "20")),
    # Shrinking a failure would compile emails for minutes; the failing example is plain enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
ATTACKS = [
    '"',
    "'",
    "<",
    ">",
    "&",
    "&quot;",
    '" onfocus="alert(1)" autofocus x="',
    "' onmouseover='alert(1)' y='",
    "<img src=x onerror=alert(1)>",
    "</title><script>alert(1)</script>",
    "]]><script>alert(2)</script>",
    "Word ",
]
HOSTILE = st.lists(st.sampled_from(ATTACKS), min_size=1, max_size=5).map(lambda p: "W" + "".join(p))


def _brief_text(title: str, summary: str, tag: str, byline: str, footer: str, link: str) -> str:
    meta = {
        "id": "inject",
        "lang": "en",
        "date": "2026-01-07 18:23",
        "title": title,
        "summary": summary,
        "tags": [tag, "plain"],
        "byline": byline,
        "footer": [footer],
    }
    url = "https://example.org/?q=" + "".join(link.split()).replace(")", "%29")
    body = f"First paragraph of the text, with [{link}]({url}) in it.\n\n- An item {tag}\n"
    return f"---\n{yaml.safe_dump(meta, allow_unicode=True)}---\n{body}"


def _markup(node: lxml_html.HtmlElement) -> set[tuple[str, str]]:
    """Each element's tag, and each (tag, attribute) pair, under ``node``; a frame's srcdoc
    is a document of its own and counted too."""
    found: set[tuple[str, str]] = set()
    for element in node.iter():
        if not isinstance(element.tag, str):
            continue
        found.add((element.tag, ""))
        found.update((element.tag, name) for name in element.attrib)
        if element.get("srcdoc"):
            found |= _markup(lxml_html.document_fromstring(element.get("srcdoc")))
    return found


def _outputs_markup(folder: Path) -> dict[str, set[tuple[str, str]]]:
    """The markup of every output the dry run wrote, each parsed as what it is."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.suffix == ".html":
            found[name] = _markup(lxml_html.document_fromstring(path.read_text("utf-8")))
        elif path.suffix == ".eml":
            sent = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            html = sent.get_body(("html",)).get_content()
            found[name] = _markup(lxml_html.document_fromstring(html))
        elif path.suffix == ".xml":
            root = ElementTree.fromstring(path.read_bytes())  # well-formed, or this raises
            found[name] = {(e.tag, a) for e in root.iter() for a in ("", *e.attrib)}
            # The entries' HTML, as a feed reader renders it.
            html_parts = ("description", "encoded", "content", "summary")
            for e in root.iter():
                local = e.tag.rsplit("}", 1)[-1]
                markup = e.get("type", "html") == "html" and "<" in (e.text or "")
                if local in html_parts and markup:
                    found[name] |= _markup(lxml_html.fragment_fromstring(e.text, "div"))
        elif path.suffix == ".json":
            data = json.loads(path.read_text("utf-8"))
            items = data.get("items", []) if isinstance(data, dict) else []
            found[name] = set().union(
                *(_markup(lxml_html.fragment_fromstring(i["content_html"], "div")) for i in items)
            )
    return found


def _dry_run(
    text: str,
) -> tuple[dict[str, set[tuple[str, str]]], Path, tempfile.TemporaryDirectory]:
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "inject.md"
    path.write_text(text, "utf-8")
    brief = read_brief(path, SETTINGS)
    editions = build(provisional([brief], SETTINGS), SETTINGS, CHANNELS)
    (folder,) = write_previews(editions, CHANNELS, Path(tmp.name) / "out", SETTINGS)
    return _outputs_markup(folder), folder, tmp


@functools.cache
def _benign() -> dict[str, set[tuple[str, str]]]:
    plain = "Plain words"
    found, _, tmp = _dry_run(_brief_text(plain, plain, "tagword", plain, plain, plain))
    tmp.cleanup()
    return found


@INJECTION
@given(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE)
def test_brief_text_never_becomes_markup_in_any_output(
    title: str, summary: str, tag: str, byline: str, footer: str, link: str
) -> None:
    found, folder, tmp = _dry_run(_brief_text(title, summary, tag[:50], byline, footer, link))
    try:
        benign = _benign()
        assert found.keys() == benign.keys()
        for name, markup in found.items():
            # Nothing the template did not write for the same brief in plain words.
            assert markup <= benign[name], (name, markup - benign[name])
            assert not {(t, a) for t, a in markup if a.startswith("on") or a == "autofocus"}
        # The one script anywhere is the preview's own, fixed (its hash is in the CSP).
        index = (folder / "index.html").read_text("utf-8")
        assert index.count("<script") == 1 and FIT_SCRIPT in index
        # The email keeps the title as its label, exactly (mjml copies it there).
        page = lxml_html.document_fromstring((folder / "email" / "en.html").read_text("utf-8"))
        label = page.xpath("//div[@role='article']")[0].get("aria-label")
        assert label == _email_subject(folder), (label, title)
        # Social posts and text parts are text: the characters themselves, never entities.
        posts = json.loads((folder / "social" / "posts.json").read_text("utf-8"))
        for post in posts:
            for part in post["posts"]:
                assert "&#" not in part["text"] and "&lt;" not in part["text"], part
        text = (folder / "email" / "en.txt").read_text("utf-8")
        assert "&#34;" not in text and "&lt;" not in text
    finally:
        tmp.cleanup()


def _email_subject(folder: Path) -> str:
    sent = email.message_from_bytes(
        (folder / "email" / "en.eml").read_bytes(), policy=email.policy.default
    )
    # Unfolded, an encoded header can gain a space at a fold: compare words.
    return " ".join(str(sent["Subject"]).split())
