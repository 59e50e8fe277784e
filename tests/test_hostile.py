"""Hostile briefs and operator mistakes, through the CLI where a user meets them: one line,
the right exit code, nothing written or archived, nothing outside --out, never a hang."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import html as lxml_html
from test_cli import ROOT, SEEDS, briefcast, one_line_error

from briefcast.brief import ID_MAX
from briefcast.config import Settings
from briefcast.pipeline import run_publish

ID_REFUSED = "is not valid: an id is lower-case letters a-z, digits and single dashes"


def front_matter(meta: str, body: str = "Some text for the brief.\n") -> str:
    return f"---\n{meta}\nlang: en\n---\n{body}"


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        name, previous = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    return front_matter("\n".join([*lines, "title: *i"]))


def too_long_for_gmail() -> str:
    paragraph = "A long analytical paragraph, again and again. " * 10
    return front_matter("title: Long one", f"{paragraph}\n\n" * 250)


# name -> (file name, content, what the one line must say)
REFUSED = {
    "id-parent": ("a.md", front_matter("id: ../x"), ID_REFUSED),
    "id-root": ("a.md", front_matter("id: /"), ID_REFUSED),
    "id-absolute": ("a.md", front_matter("id: /tmp/briefcast-elsewhere"), ID_REFUSED),
    "id-capitals-underscore": ("a.md", front_matter("id: Paris_Summit"), ID_REFUSED),
    "id-dot": ("a.md", front_matter("id: paris.summit"), ID_REFUSED),
    "id-too-long": ("a.md", front_matter(f"id: {'a' * (ID_MAX + 1)}"), ID_REFUSED),
    "alias-bomb": ("a.md", billion_laughs(), "aliases (*name) are not allowed"),
    "title-a-list": ("a.md", front_matter("title: [a, b]"), "front matter key 'title': expected"),
    # Tags may be given per language; a key that is no language is named.
    "tags-a-mapping": ("a.md", front_matter("tags: {a: 1}"), "unknown language code 'a'"),
    "tags-nested": ("a.md", front_matter("tags: {en: {a: 1}}"), "front matter key 'tags'"),
    "month-13": ("a.md", front_matter("date: 2026-13-01"), "key 'date': '2026-13-01' does not"),
    "year-0": ("a.md", front_matter("date: 0000-01-01"), "front matter key 'date'"),
    "year-1": ("a.md", front_matter("date: 0001-01-01"), "year 1 is outside 1900-2100"),
    "year-9999": ("a.md", front_matter("date: 9999-12-31 23:59"), "year 9999 is outside"),
    "unknown-key": ("a.md", front_matter("autor: Rossi"), "unknown key 'autor'"),
    "title-invisible": (
        "a.md",
        front_matter('title: "\\u202e\\u2028"'),
        "the title is empty once line breaks and invisible characters go",
    ),
    "text-date-month-13": (
        "a.txt",
        " date 2026-13-45 The coalition met in Paris on Tuesday to agree.\n",
        "date 2026-13-45 00:00 does not exist",
    ),
    "scraped-date-impossible": (
        "a.txt",
        "Menu\nA headline for the page\n31-02-2026 10:00\nEuropolitiche\n"
        "EU/ENG - The leaders met in Paris on Tuesday to agree on it.\n",
        "date 2026-02-31 10:00 does not exist",
    ),
    "too-long-for-gmail": ("a.md", too_long_for_gmail(), "the en email is"),
}


def nothing_written(tmp_path: Path, before: set[Path]) -> None:
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "b.db").exists(), "something was archived"
    assert set(tmp_path.rglob("*")) == before
    assert not (tmp_path.parent / "x").exists()
    assert not Path("/tmp/briefcast-elsewhere").exists()


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_in_one_line_with_nothing_written(tmp_path: Path, case: str) -> None:
    name, content, reason = REFUSED[case]
    bad = tmp_path / name
    bad.write_text(content, "utf-8")
    before = set(tmp_path.rglob("*"))
    # A good brief first: one bad file stops everything, the good one is not published either.
    line = one_line_error(briefcast("publish", SEEDS[0], bad, cwd=tmp_path))
    assert name in line and reason in line, line
    nothing_written(tmp_path, before)


def test_gmail_line_names_the_size_and_the_limit(tmp_path: Path) -> None:
    bad = tmp_path / "long.md"
    bad.write_text(too_long_for_gmail(), "utf-8")
    line = one_line_error(briefcast("publish", bad, cwd=tmp_path))
    assert re.search(r"the en email is [\d,]+ bytes of HTML, over Gmail's limit of 104,448", line)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_special_files_are_refused_without_hanging(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        target: Path = tmp_path / "brief.txt"
        os.mkfifo(target)
        reason = "is a FIFO (named pipe), not a brief"
    else:
        target, reason = Path("/dev/zero"), "is a character device, not a brief"
    before = set(tmp_path.rglob("*"))
    # briefcast() times out (and the test fails) if the read blocks or never ends.
    line = one_line_error(briefcast("publish", SEEDS[0], target, cwd=tmp_path))
    assert str(target) in line and reason in line
    nothing_written(tmp_path, before)


def test_out_naming_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("keep me", "utf-8")
    line = one_line_error(briefcast("publish", SEEDS[0], "--out", "afile", cwd=tmp_path))
    assert line.endswith("--out afile: is a file, not a folder")
    assert (tmp_path / "afile").read_text("utf-8") == "keep me"
    assert not (tmp_path / "b.db").exists()


def test_swap_removes_only_the_briefs_own_old_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BRIEFCAST_DATABASE__URL", f"sqlite:///{tmp_path / 'b.db'}")
    out = tmp_path / "out"
    (folder,) = run_publish(SEEDS[:1], Settings(), names=["web"], out=out)
    # What the swap once named its temporary folder, and a neighbour: neither is ours.
    planted = [out / f".old-{folder.name}-{os.getpid()}", out / f"{folder.name}-2", out / ".old-"]
    for p in planted:
        p.mkdir()
        (p / "keep.txt").write_text("not briefcast's", "utf-8")
    run_publish(SEEDS[:1], Settings(), names=["web"], out=out)
    for p in planted:
        assert (p / "keep.txt").read_text("utf-8") == "not briefcast's"
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "web"]
    left = {p.name for p in out.iterdir()} - {p.name for p in planted} - {folder.name}
    assert not left, f"left behind: {left}"


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_a_preview_folder_leading_outside_fails_whole(tmp_path: Path) -> None:
    """out/<id> a symlink to a folder elsewhere: refused in one line when the previews are
    swapped in (inside Prefect), the folder elsewhere untouched, nothing archived, no staging
    folder left behind."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine", "utf-8")
    out = tmp_path / "out"
    out.mkdir()
    brief = tmp_path / "b.md"
    brief.write_text("---\nid: trap\ntitle: Trap\nlang: en\n---\nSome text here.\n", "utf-8")
    (out / "trap").symlink_to(elsewhere, target_is_directory=True)
    result = briefcast("publish", brief, cwd=tmp_path)
    line = one_line_error(result)
    assert "would be written outside" in line
    assert [p.name for p in elsewhere.iterdir()] == ["precious.txt"]
    assert sorted(p.name for p in out.iterdir()) == ["trap"], "staging left behind"
    archived = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1])"
            ".execute('select count(*) from briefs').fetchone()[0])",
            str(tmp_path / "b.db"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert archived == "0", "archived although its previews failed"


# --- what is published: one-line fields, subjects, each sentence once ----------------------

BREAKS = front_matter(
    'id: breaks\ntitle: "Line\\rbreak\\nand\\u2028more \\u202eevil\\u202c here"\n'
    'summary: "A summary\\r\\nover two lines."\ntags: ["a\\nb", "c\\u2029d"]',
    "The first paragraph is here. It has two sentences.\n\nSecond paragraph.\n",
)
LONG_TITLE_WORDS = ["word"] * 150 + ["tail"]
LONG_TITLE = front_matter(f"id: long-title\ntitle: {' '.join(LONG_TITLE_WORDS)}")
# No title, no summary: the first sentence becomes the headline, the rest of the first
# paragraph the standfirst.
UNTITLED = (
    "Short one. Then a longer sentence follows in the same paragraph.\n\n"
    "Another paragraph is here, with more to say.\n"
)
LEDE = "The lede is the only thing this brief says at first."
NO_SUMMARY = front_matter(
    "id: no-summary\ntitle: Titled brief", f"{LEDE}\n\nA second paragraph follows.\n"
)


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_hostile_but_valid_briefs_publish_clean(tmp_path: Path) -> None:
    files = {"breaks.md": BREAKS, "long.md": LONG_TITLE, "untitled.txt": UNTITLED}
    files["lede.md"] = NO_SUMMARY
    for name, text in files.items():
        (tmp_path / name).write_text(text, "utf-8")
    result = briefcast("publish", *files, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"

    def message(brief_id: str) -> email.message.EmailMessage:
        raw = (out / brief_id / "email" / "en.eml").read_bytes()
        return email.message_from_bytes(raw, policy=email.policy.default)

    # Line breaks and bidi overrides never reach a header, a page title or a tag.
    subject = message("breaks")["Subject"]
    assert subject == "Line break and more evil here"
    page = lxml_html.document_fromstring((out / "breaks" / "web" / "en.html").read_text())
    assert page.findtext(".//h1") == "Line break and more evil here"
    assert [li.text_content() for li in page.find_class("tags")[0]] == ["a b", "c d"]
    assert page.find_class("standfirst")[0].text == "A summary over two lines."
    everything = b"".join(p.read_bytes() for p in (out / "breaks").rglob("*") if p.is_file())
    for invisible in ("\u2028", "\u2029", "\u202e", "\u202c"):
        assert invisible.encode() not in everything

    # A 750-character title: the subject is cut at a word, with an ellipsis.
    long_subject = message("long-title")["Subject"]
    assert len(long_subject) <= 200 and long_subject.endswith("…")
    kept = long_subject.removesuffix("…").split(" ")
    assert kept == LONG_TITLE_WORDS[: len(kept)]

    # Each sentence once in each output, the headline excepted.
    for brief_id, sentences in {
        "short-one": ["Then a longer sentence follows in the same paragraph.", "Another"],
        "no-summary": [LEDE, "A second paragraph follows."],
    }.items():
        page = lxml_html.document_fromstring(
            (out / brief_id / "web" / "en.html").read_text("utf-8")
        )
        article = page.find(".//article")
        body = message(brief_id).get_body(("plain",)).get_content()
        html = message(brief_id).get_body(("html",)).get_content()
        # The preheader: hidden, shown by the inbox beside the subject, never in the body.
        html = re.sub(r'<div style="display:none[^>]*>.*?</div>', "", html, count=1, flags=re.S)
        for sentence in sentences:
            assert article.text_content().count(sentence) == 1, (brief_id, sentence)
            assert body.count(sentence) == 1, (brief_id, sentence, body)
            assert html.count(sentence) == 1, (brief_id, sentence)
    short = lxml_html.document_fromstring((out / "short-one" / "web" / "en.html").read_text())
    assert short.findtext(".//h1") == "Short one."
    assert short.find(".//article").text_content().count("Short one.") == 1


def test_an_unexpected_error_is_one_line_and_says_how_to_see_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (here: a builder failing in a way nobody planned for) is one line that says so,
    exit 1; -v shows the traceback."""
    from briefcast.cli import main as cli

    def broken(*_args: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setenv("BRIEFCAST_DATABASE__URL", f"sqlite:///{tmp_path / 'b.db'}")
    monkeypatch.setattr(cli, "check", broken)
    monkeypatch.setattr(sys, "argv", ["briefcast", "publish", str(SEEDS[0])])
    with pytest.raises(SystemExit) as stopped:
        cli.run()
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "unexpected error: RuntimeError: disk on fire (this is a bug" in lines[0]
    assert "-v" in lines[0] and "Traceback" not in lines[0]

    monkeypatch.setattr(sys, "argv", ["briefcast", "publish", str(SEEDS[0]), "-v"])
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.run()


BREAKOUT = '" onfocus="alert(1)" autofocus x="'


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_a_quote_in_the_title_stays_text_in_every_email_and_preview(tmp_path: Path) -> None:
    """mjml writes the title raw into the edition's outer ``<div aria-label="...">``: a '"'
    in a title once gave every subscriber's email (and the preview) an onfocus handler."""
    title = f"Summit{BREAKOUT}end"
    (tmp_path / "quote.md").write_text(
        front_matter(f"id: quote\nlang: en\ntitle: {json.dumps(title)}"), "utf-8"
    )
    result = briefcast("publish", "quote.md", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / "quote"
    for edition in ("en", "it", "both"):
        raw = (folder / "email" / f"{edition}.eml").read_bytes()
        sent = email.message_from_bytes(raw, policy=email.policy.default)
        for markup in (
            sent.get_body(("html",)).get_content(),
            (folder / "email" / f"{edition}.html").read_text("utf-8"),
        ):
            page = lxml_html.document_fromstring(markup)
            (outer,) = page.xpath("//div[@role='article']")
            assert outer.get("aria-label") == title, outer.attrib
            assert page.findtext(".//title").strip() == title
            for element in page.iter():
                names = set(getattr(element, "attrib", {}))
                assert not {n for n in names if n.startswith("on")}, (edition, element.attrib)
                assert "autofocus" not in names and "x" not in names, (edition, element.attrib)
    # The preview shows each email in an iframe's srcdoc: the same HTML, the same check.
    index = lxml_html.document_fromstring((folder / "index.html").read_text("utf-8"))
    frames = index.xpath("//iframe[@srcdoc]")
    assert frames
    for frame in frames:
        inner = lxml_html.document_fromstring(frame.get("srcdoc"))
        assert inner.xpath("//div[@role='article']")[0].get("aria-label") == title
        assert not inner.xpath("//*[@onfocus or @autofocus or @x]")


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_a_sites_template_with_brief_text_in_mjml_attributes_stays_escaped(
    tmp_path: Path,
) -> None:
    """mjml writes every mj-* attribute raw (key="value"): a site's own edition.mjml that puts
    the title in an mj-image's alt or an mj-button's link got the same breakout."""
    ours = (ROOT / "templates" / "email" / "edition.mjml").read_text("utf-8")
    image = (
        '<mj-section><mj-column><mj-image src="https://example.org/logo.png" '
        'alt="{{ subject }}" title="{{ preheader }}" />'
        '<mj-button href="https://example.org/?q={{ subject }}">{{ subject }}</mj-button>'
        "</mj-column></mj-section>\n  </mj-body>"
    )
    site = tmp_path / "site" / "email"
    site.mkdir(parents=True)
    (site / "edition.mjml").write_text(ours.replace("</mj-body>", image, 1), "utf-8")
    title = f"Summit{BREAKOUT}end"
    summary = f"Standfirst{BREAKOUT}<b>"
    meta = f"id: quote\nlang: en\ntitle: {json.dumps(title)}\nsummary: {json.dumps(summary)}"
    (tmp_path / "quote.md").write_text(front_matter(meta), "utf-8")
    env = {"BRIEFCAST_SITE__TEMPLATES_DIR": str(tmp_path / "site")}
    result = briefcast("publish", "quote.md", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    page = lxml_html.document_fromstring(
        (tmp_path / "out" / "quote" / "email" / "en.html").read_text("utf-8")
    )
    (img,) = page.xpath("//img[@src='https://example.org/logo.png']")
    assert img.get("alt") == title and img.get("title") == summary, img.attrib
    (button,) = page.xpath("//a[starts-with(@href, 'https://example.org/?q=')]")
    # lxml (under premailer) writes a link's spaces as %20, as browsers send them.
    assert button.get("href") == "https://example.org/?q=" + title.replace(" ", "%20")
    assert not page.xpath("//*[@onfocus or @autofocus or @x]")
