"""Email editions: the .eml is valid and sendable, the HTML reads well, the text part is prose."""

from __future__ import annotations

import os
import quopri
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import replace
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from briefcast.brief import Block, BlockKind, Brief, Section
from briefcast.config import EmailSettings, Settings, SiteSettings
from briefcast.errors import BriefError
from briefcast.render.email import (
    PLACEHOLDERS,
    TO_PLACEHOLDER,
    TOKEN_PLACEHOLDER,
    EmailEdition,
    build_email,
    build_emails,
    edition_names,
    quoted_printable,
)

P, H, LI, Q = (
    BlockKind.PARAGRAPH,
    BlockKind.SUBHEADING,
    BlockKind.LIST_ITEM,
    BlockKind.QUOTE,
)
WHEN = datetime(2026, 1, 7, 9, 30, tzinfo=ZoneInfo("Europe/Rome"))
FOOTER = (
    "analisti associati @europolitiche.it*",
    "*This contribution is not a journalistic article but an analytical brief - "
    "Questo contributo non è un articolo giornalistico ma un brief analitico",
)
HOSTILE = 'Markup stays text: <script>alert("x")</script> and <b>bold</b> & more.'


def settings(languages: tuple[str, ...] = ("en", "it")) -> Settings:
    return Settings(
        site=SiteSettings(
            name="Europolitiche Brief",
            base_url="https://briefs.example.org",
            languages=list(languages),
        ),
        email=EmailSettings(
            from_address="briefs@example.org",
            from_name="Europolitiche Brief",
            unsubscribe_url="https://briefs.example.org/unsubscribe/{token}",
            unsubscribe_mailto="unsubscribe@example.org",
        ),
    )


def bilingual_brief() -> Brief:
    """Modelled on seeds/000: EN and IT sections, a title each, the disclaimer footer."""
    en = Section(
        "en",
        title="Paris summit: security guarantees for Ukraine",
        blocks=(
            Block(
                P,
                "Leaders from 35 countries allied with Kyiv met in Paris on Tuesday, "
                "January 6, including US envoys, to discuss security guarantees for Ukraine.",
            ),
            Block(
                P,
                "Established in February 2025 at the instigation of Macron and Starmer to "
                'support Ukraine, the "Coalition of the Willing" has grown significantly. On '
                "Tuesday, it brought together representatives from 35 countries, including US "
                "envoys Steve Witkoff and Jared Kushner.",
            ),
            Block(
                P,
                "The Paris meeting focused on five themes: the ceasefire, support for the "
                "Ukrainian armed forces, the multinational force, the United States' commitment "
                "in the event of a new Russian attack, and long-term defense cooperation.",
            ),
            Block(
                Q,
                "After the ceasefire, the United Kingdom and France will establish military "
                "hubs in Ukraine.",
            ),
            Block(P, HOSTILE),
        ),
    )
    it = Section(
        "it",
        title="Vertice di Parigi: garanzie di sicurezza per l'Ucraina",
        blocks=(
            Block(
                P,
                "I leader di 35 paesi alleati di Kiev si sono incontrati a Parigi martedì 6 "
                "gennaio, inclusi gli inviati statunitensi, per discutere le garanzie di "
                "sicurezza per l'Ucraina.",
            ),
            Block(
                P,
                "Creata nel febbraio 2025 per impulso di Macron e Starmer per sostenere "
                "l'Ucraina, la “Coalizione dei Volenterosi” è significativamente cresciuta.",
            ),
            Block(
                P,
                "Cinque i temi dell’incontro a Parigi: il cessate il fuoco, il sostegno alle "
                "forze armate ucraine, la forza multinazionale e la cooperazione difensiva.",
            ),
        ),
    )
    return Brief(
        id="000-a29ed60a40b38c27",
        title=en.title or "",
        date=WHEN,
        sections=(en, it),
        footer=FOOTER,
    )


def english_only_brief() -> Brief:
    """Modelled on seeds/004: English only, with a subheading and a list."""
    en = Section(
        "en",
        title="Coalition of the willing signs the Paris Declaration",
        blocks=(
            Block(
                P,
                'At the "coalition of the willing" summit in Paris, Presidents Emmanuel '
                "Macron and Volodymyr Zelensky, along with UK Prime Minister Keir Starmer, "
                "signed an agreement to send a peacekeeping contingent to Ukraine.",
            ),
            Block(
                P,
                'The main outcome of the summit was the adoption of the "Paris Declaration". '
                "The document consists of five main points:",
            ),
            Block(
                LI,
                "The US will coordinate monitoring compliance with the ceasefire and will "
                "create a special commission to assess violations.",
            ),
            Block(
                LI,
                "Members of the coalition will continue to support the Armed Forces of "
                "Ukraine, the first line of defense against new Russian aggression.",
            ),
            Block(
                LI,
                "Multinational forces will be sent to Ukraine only after the conflict concludes.",
            ),
            Block(H, "Press Conference Summary"),
            Block(
                P,
                "At the concluding press conference, summit participants described the "
                "event as an important step toward peace.",
            ),
        ),
    )
    return Brief(id="004-551489c8682dc443", title=en.title or "", date=WHEN, sections=(en,))


def trilingual_brief() -> Brief:
    fr = Section(
        "fr",
        title="Sommet de Paris",
        blocks=(Block(P, "Les dirigeants de 35 pays se sont réunis à Paris mardi."),),
    )
    brief = bilingual_brief()
    return replace(brief, id="005-trilingual", sections=(*brief.sections, fr))


BRIEFS = {
    "bilingual": bilingual_brief,
    "english-only": english_only_brief,
    "trilingual": trilingual_brief,
}


@pytest.fixture(scope="module")
def editions() -> dict[tuple[str, str], EmailEdition]:
    built: dict[tuple[str, str], EmailEdition] = {}
    for name, make in BRIEFS.items():
        for edition in build_emails(make(), settings()):
            built[name, edition.edition] = edition
    return built


def parse(eml: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(eml)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


ALL = [(b, e) for b in BRIEFS for e in ("en", "it", "both")]


def test_edition_names_follow_the_site_languages() -> None:
    assert edition_names(settings().site) == ["en", "it", "both"]
    assert edition_names(settings(("it", "en", "de")).site) == ["it", "en", "de", "both"]


@pytest.mark.parametrize("brief_name", BRIEFS)
def test_three_editions_always(brief_name: str) -> None:
    built = build_emails(BRIEFS[brief_name](), settings())
    assert [e.edition for e in built] == ["en", "it", "both"]


@pytest.mark.parametrize(("brief_name", "edition"), ALL)
def test_eml_is_a_complete_multipart_alternative(
    editions: dict[tuple[str, str], EmailEdition], brief_name: str, edition: str
) -> None:
    ed = editions[brief_name, edition]
    msg = parse(ed.eml)
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for part in msg.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    text, html = parts(msg)
    assert text.replace("\r\n", "\n").strip() == ed.text.strip()
    assert html.replace("\r\n", "\n").strip() == ed.html.replace("\r\n", "\n").strip()

    assert msg["Subject"] == ed.subject
    assert msg["From"].addresses[0].addr_spec == "briefs@example.org"
    assert str(msg["To"]) == TO_PLACEHOLDER
    assert msg["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(msg["Date"]) == WHEN
    assert msg["Message-ID"] == (
        f"<{BRIEFS[brief_name]().id}.{edition}.{TOKEN_PLACEHOLDER}@example.org>"
    )
    assert msg["Precedence"] == "bulk"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"] == (
        f"<https://briefs.example.org/unsubscribe/{TOKEN_PLACEHOLDER}>, "
        f"<mailto:unsubscribe@example.org?subject=unsubscribe%20{TOKEN_PLACEHOLDER}>"
    )


@pytest.mark.parametrize(("brief_name", "edition"), ALL)
def test_eml_is_smtp_safe(
    editions: dict[tuple[str, str], EmailEdition], brief_name: str, edition: str
) -> None:
    ed = editions[brief_name, edition]
    lines = ed.eml.split(b"\r\n")
    assert not any(b"\r" in line or b"\n" in line for line in lines), "bare CR or LF"
    assert max(len(line) for line in lines) <= 998
    assert ed.eml.isascii()  # nothing for an MTA without 8BITMIME to refuse
    assert len(ed.html.encode("utf-8")) < 102 * 1024  # Gmail clips above this


@pytest.mark.parametrize(("brief_name", "edition"), ALL)
def test_placeholders_survive_for_byte_substitution(
    editions: dict[tuple[str, str], EmailEdition], brief_name: str, edition: str
) -> None:
    ed = editions[brief_name, edition]
    raw = ed.eml.replace(TO_PLACEHOLDER.encode(), b"reader@example.net")
    raw = raw.replace(TOKEN_PLACEHOLDER.encode(), b"Tok-3n_xyz")
    assert not any(p.encode() in raw for p in PLACEHOLDERS)
    msg = parse(raw)
    assert msg["To"].addresses[0].addr_spec == "reader@example.net"
    assert "/unsubscribe/Tok-3n_xyz>" in msg["List-Unsubscribe"]
    text, html = parts(msg)
    assert "\nhttps://briefs.example.org/unsubscribe/Tok-3n_xyz\n" in text.replace("\r\n", "\n")
    assert 'href="https://briefs.example.org/unsubscribe/Tok-3n_xyz"' in html


def test_quoted_printable_never_splits_a_placeholder() -> None:
    for shift in range(90):
        body = "é" * (shift % 7) + "x" * shift + f"/unsubscribe/{TOKEN_PLACEHOLDER} ok \n"
        encoded = quoted_printable(body)
        assert TOKEN_PLACEHOLDER in encoded
        assert max(len(line) for line in encoded.splitlines()) <= 76
        assert quopri.decodestring(encoded.encode()).decode("utf-8") == body


def test_english_only_brief_in_the_italian_edition_says_so_in_italian(
    editions: dict[tuple[str, str], EmailEdition],
) -> None:
    ed = editions["english-only", "it"]
    notice = "Questo brief non è disponibile in italiano. Eccolo in inglese."
    assert notice in ed.html
    assert notice in ed.text
    assert "signed an agreement to send a peacekeeping contingent" in ed.html
    assert "signed an agreement to send a peacekeeping contingent" in " ".join(ed.text.split())
    assert ed.subject == "Coalition of the willing signs the Paris Declaration"
    assert "7 gennaio 2026" in ed.html  # the reader's language frames the English text
    assert 'lang="en"' in ed.html
    # The English edition has nothing to apologise for.
    assert "not available" not in editions["english-only", "en"].html
    # The "both" edition carries the English text once and the Italian notice.
    both = editions["english-only", "both"]
    assert notice in both.html
    assert " ".join(both.text.split()).count("peacekeeping contingent") == 1


def test_bilingual_editions_carry_their_own_language(
    editions: dict[tuple[str, str], EmailEdition],
) -> None:
    en, it, both = (editions["bilingual", e] for e in ("en", "it", "both"))
    assert en.subject == "Paris summit: security guarantees for Ukraine"
    assert it.subject == "Vertice di Parigi: garanzie di sicurezza per l'Ucraina"
    # Both titles are 102 characters together: the first language's title alone.
    assert both.subject == en.subject
    assert "January 7, 2026" in en.html and "January 7, 2026" in en.text
    assert "7 gennaio 2026" in it.html and "7 gennaio 2026" in it.text
    assert "Coalizione dei Volenterosi" not in en.html
    assert "Coalition of the Willing" not in it.html
    assert "Leggi nel browser" in it.html and "View in your browser" in en.html
    assert en.preheader.startswith("Leaders from 35 countries")
    assert it.preheader.startswith("I leader di 35 paesi")
    for ed in (en, it, both):
        assert ed.preheader in ed.html
        assert "https://briefs.example.org/unsubscribe/" + TOKEN_PLACEHOLDER in ed.html
        assert "This contribution is not a journalistic article" in ed.html  # the footer
        assert "fonts.googleapis.com" not in ed.html  # no remote loads


def test_both_edition_jumps_to_each_language_in_the_briefs_order(
    editions: dict[tuple[str, str], EmailEdition],
) -> None:
    html = editions["bilingual", "both"].html
    targets = re.findall(r'href="#([^"]+)"', html)
    assert len(targets) == 2
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    assert set(targets) <= ids
    assert "Read in English" in html and "Leggi in italiano" in html
    assert html.index(f'id="{targets[0]}"') < html.index(f'id="{targets[1]}"')
    assert html.index("Leaders from 35 countries") < html.index("I leader di 35 paesi")

    # The brief's first language comes first, whatever the settings' order: an
    # Italian-first brief gets Italian first (subject, parts, jump links, <html lang>).
    brief = bilingual_brief()
    italian_first = replace(brief, sections=brief.sections[::-1])
    for site_order in (("en", "it"), ("it", "en")):
        flipped = build_email(italian_first, settings(site_order), "both")
        html = flipped.html
        assert html.index("I leader di 35 paesi") < html.index("Leaders from 35 countries")
        assert re.findall(r'href="#([^"]+)"', html) == ["brief-it", "brief-en"]
        assert html.index("Leggi in italiano") < html.index("Read in English")
        assert re.search(r'<html[^>]* lang="it"', html)
        assert flipped.subject == "Vertice di Parigi: garanzie di sicurezza per l'Ucraina"
        assert parse(flipped.eml)["Subject"].lstrip() == flipped.subject
    same = build_email(brief, settings(("it", "en")), "both").html
    assert same.index("Leaders from 35 countries") < same.index("I leader di 35 paesi")
    # An English-only brief: English first, then the notice for Italian.
    english = build_email(english_only_brief(), settings(("it", "en")), "both")
    assert english.html.index("peacekeeping contingent") < english.html.index(
        "Questo brief non è disponibile"
    )


def titled(en: str, it: str) -> Brief:
    brief = bilingual_brief()
    sections = (replace(brief.sections[0], title=en), replace(brief.sections[1], title=it))
    return replace(brief, title=en, sections=sections)


@pytest.mark.parametrize(
    ("en", "it", "subject"),
    [
        # Both fit in 77: both, in the brief's order.
        ("Paris summit", "Vertice di Parigi", "Paris summit / Vertice di Parigi"),
        # Exactly 77 together: still both.
        (
            "Paris summit agrees Ukraine guarantee",
            "Intesa a Parigi sulle garanzie a Kiev",
            "Paris summit agrees Ukraine guarantee / Intesa a Parigi sulle garanzie a Kiev",
        ),
        # 78 together: the first title alone.
        (
            "Paris summit agrees Ukraine guarantee",
            "Intesa a Parigi sulle garanzie a Kiev!",
            "Paris summit agrees Ukraine guarantee",
        ),
        # The same title in both languages is given once.
        ("Brexit", "Brexit", "Brexit"),
        # A first title too long on its own: cut at a word, with "…".
        (
            "Leaders of thirty-five countries agree in Paris on the guarantees for Ukraine "
            "after a ceasefire",
            "Garanzie",
            "Leaders of thirty-five countries agree in Paris on the guarantees for…",
        ),
    ],
)
def test_both_subject_fits_a_phones_inbox(en: str, it: str, subject: str) -> None:
    both = build_email(titled(en, it), settings(), "both")
    assert both.subject == subject
    assert len(both.subject) <= 77
    # The header is folded at 78 characters (RFC 5322 2.2.3), and Python's folding leaves
    # whitespace that mail clients collapse: a leading space when the whole subject moves to
    # its own line, two spaces before an encoded word ("for…") on the next line.
    assert " ".join(parse(both.eml)["Subject"].split()) == subject


def test_every_subject_is_under_78_characters_cut_at_a_word() -> None:
    long = "Vertice di Parigi: i leader di trentacinque paesi concordano le garanzie di sicurezza"
    for edition in ("en", "it", "both"):
        ed = build_email(titled(long.replace("Vertice", "Summit"), long), settings(), edition)
        assert len(ed.subject) <= 77, ed.subject
        assert ed.subject.endswith("…") and not ed.subject.endswith(" …")
        assert (long + " ").startswith(ed.subject.replace("Summit", "Vertice")[:-1] + " ")


def test_third_language_is_not_smuggled_into_the_editions(
    editions: dict[tuple[str, str], EmailEdition],
) -> None:
    for edition in ("en", "it", "both"):
        ed = editions["trilingual", edition]
        assert "Les dirigeants" not in ed.html and "Les dirigeants" not in ed.text
    assert "Leaders from 35 countries" in editions["trilingual", "both"].html


def test_a_brief_in_no_site_language_is_carried_as_it_is() -> None:
    french = Section(
        "fr", title="Sommet de Paris", blocks=(Block(P, "Les dirigeants sont venus."),)
    )
    brief = replace(bilingual_brief(), sections=(french,))
    ed = build_email(brief, settings(), "en")
    assert "This brief is not available in English. Here it is in French." in ed.html
    assert "Les dirigeants sont venus." in ed.html
    assert ed.subject == "Sommet de Paris"


def test_blocks_render_as_structure(editions: dict[tuple[str, str], EmailEdition]) -> None:
    ed = editions["english-only", "en"]
    assert re.search(r"<h2[^>]*>Press Conference Summary</h2>", ed.html)
    lists = re.findall(r"<ul[^>]*>(.*?)</ul>", ed.html, re.S)
    assert len(lists) == 1 and lists[0].count("<li") == 3
    assert re.search(r"<h1[^>]*>Coalition of the willing", ed.html)
    bilingual = editions["bilingual", "en"].html
    assert re.search(r"<blockquote[^>]*>After the ceasefire", bilingual)
    # The standfirst is the lede here; it is not printed twice.
    assert bilingual.count("Leaders from 35 countries allied") == 2  # preheader + standfirst


def test_text_part_is_written_for_reading(editions: dict[tuple[str, str], EmailEdition]) -> None:
    text = editions["english-only", "en"].text
    lines = text.splitlines()
    title = "Coalition of the willing signs the Paris Declaration"
    assert lines[lines.index(title) + 1] == "=" * len(title)
    assert lines[lines.index("Press Conference Summary") + 1] == "-" * 24
    assert "- The US will coordinate monitoring compliance with the ceasefire and" in lines
    assert "January 7, 2026" in lines
    assert "https://briefs.example.org/en/004-551489c8682dc443/" in lines
    assert f"https://briefs.example.org/unsubscribe/{TOKEN_PLACEHOLDER}" in lines
    assert all(len(line) <= 72 or line.startswith("https://") for line in lines)
    assert "<p" not in text and "&quot;" not in text and "&#" not in text


def test_markup_in_a_brief_is_text(editions: dict[tuple[str, str], EmailEdition]) -> None:
    ed = editions["bilingual", "en"]
    assert "<script" not in ed.html.lower()
    assert "<b>bold" not in ed.html
    assert "&lt;script&gt;" in ed.html and "&lt;b&gt;bold&lt;/b&gt;" in ed.html
    assert HOSTILE in " ".join(ed.text.split())

    brief = replace(
        bilingual_brief(),
        sections=(replace(bilingual_brief().sections[0], title="<b>Bold</b> & <i>co</i>"),),
    )
    hostile = build_email(brief, settings(), "en")
    assert hostile.subject == "<b>Bold</b> & <i>co</i>"
    assert "<b>Bold" not in hostile.html and "&lt;b&gt;Bold&lt;/b&gt; &amp;" in hostile.html


def test_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ValueError, match="edition"):
        build_email(bilingual_brief(), settings(), "de")
    with pytest.raises(ValueError, match="date"):
        build_email(replace(bilingual_brief(), date=None), settings(), "en")
    en = bilingual_brief().sections[0]
    filler = tuple(
        Block(P, "A long analytical paragraph, again and again. " * 10) for _ in range(250)
    )
    huge = replace(bilingual_brief(), sections=(replace(en, blocks=en.blocks + filler),))
    with pytest.raises(BriefError, match=r"the en email is [\d,]+ bytes of HTML, over Gmail's"):
        build_email(huge, settings(), "en")


# --- what it looks like -----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = [
    ("bilingual", "en"),
    ("bilingual", "it"),
    ("bilingual", "both"),
    ("english-only", "it"),
]


def png_facts(png: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the image data), with nothing but zlib."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    pos, idat = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        if png[pos + 4 : pos + 8] == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.mark.parametrize("width", [375, 700])
@pytest.mark.parametrize(("brief_name", "edition"), SHOTS)
def test_screenshot_is_not_blank(
    editions: dict[tuple[str, str], EmailEdition],
    tmp_path: Path,
    brief_name: str,
    edition: str,
    width: int,
) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("BRIEFCAST_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"chromium not found at {CHROMIUM} and BRIEFCAST_REQUIRE_CHROMIUM=1")
        pytest.skip(f"chromium not found at {CHROMIUM}; set BRIEFCAST_REQUIRE_CHROMIUM=1 to fail")
    name = f"email-{brief_name}-{edition}-{width}"
    page = tmp_path / f"{name}.html"
    page.write_text(editions[brief_name, edition].html, "utf-8")
    shot = tmp_path / f"{name}.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            f"--window-size={width},2400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    if out := os.environ.get("BRIEFCAST_SCREENSHOTS_DIR"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / shot.name)
    png = shot.read_bytes()
    got_width, got_height, distinct = png_facts(png)
    assert (got_width, got_height) == (width, 2400)
    # A blank page is ~7 KB with 4 distinct filtered byte values; a rendered brief, far more.
    assert len(png) > 30_000
    assert distinct > 64


@pytest.mark.parametrize("spare", [-20, -5, 0, 5, 40])
def test_message_id_is_one_header_line_whatever_the_id_s_length(spare: int) -> None:
    # An id that leaves the header just over 78 characters made the policy fold the
    # Message-ID onto a line of its own ("spare": characters from that length).
    domain = settings().email.from_address.rpartition("@")[2]
    fixed = len("Message-ID: <.both.__BC_TOKEN__@>") + len(domain)
    brief_id = "a" * max(1, 79 - fixed + spare)
    ed = build_email(replace(bilingual_brief(), id=brief_id), settings(), "both")
    assert re.search(rb"\r\nMessage-ID: <" + brief_id.encode() + rb"\.both\.", ed.eml)
