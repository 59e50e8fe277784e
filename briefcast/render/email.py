"""Email editions of a brief: one per language the site publishes, plus one with all of them.

Pure: the only I/O is reading templates. Each edition is rendered once; what differs per recipient
(the To address, the unsubscribe token) is left as ASCII placeholders that the sender replaces
in the prepared bytes.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

from babel.lists import format_list
from jinja2 import Environment, select_autoescape

from briefcast.brief import Brief, Span
from briefcast.config import Settings, SiteSettings
from briefcast.errors import BriefError
from briefcast.i18n import language_name, long_date, t
from briefcast.render.blocks import Run, group_blocks, inline_html, notes_html, table_html
from briefcast.render.mjml import ForeignMarkupError, compile_mjml
from briefcast.render.plain import TEXT_WIDTH, References, superscript
from briefcast.render.templating import environment

# Placeholders use only [A-Z_] so that no URL, header or quoted-printable encoding alters them.
TO_PLACEHOLDER = "__BC_TO__"
TOKEN_PLACEHOLDER = "__BC_TOKEN__"
PLACEHOLDERS = (TO_PLACEHOLDER, TOKEN_PLACEHOLDER)
# The longest token the sender fills in (briefcast/delivery/tokens.py: up to 19 digits, ".",
# 22 characters of signature). Quoted-printable lines leave room for it: a body line longer
# than 76 characters once the token is in breaks RFC 2045, and spam filters notice
# (SpamAssassin's MIME_QP_LONG_LINE).
TOKEN_MAX = 42

BOTH = "both"
PREHEADER_MAX = 200
# Longer subjects are cut at a word with "…". RFC 5322 allows more, but its lines stay
# under 78 characters, mail clients show 40 (Gmail on a phone) to 130, and spam filters
# dislike long ones. The bilingual edition gives both titles ("English title / Titolo
# italiano") only when the two fit; otherwise its first language's title alone, so a reader
# sees a whole title in their first language rather than two halves.
SUBJECT_MAX = 77
SUBJECT_JOIN = " / "
GMAIL_CLIP_BYTES = 102 * 1024


@dataclass(frozen=True)
class EmailEdition:
    edition: str  # a language code, or "both"
    subject: str
    preheader: str
    html: str
    text: str
    eml: bytes  # complete RFC 5322 message, CRLF line endings, with the placeholders above


@dataclass(frozen=True)
class _Part:
    """One language's text, as an edition shows it."""

    lang: str
    anchor: str
    label: str
    title: str
    date: str
    summary: str
    standfirst: tuple[Span, ...]  # the summary with the lede's links, when it is the lede
    runs: tuple[Run, ...]
    prefix: str  # for the footnotes' anchors: two languages in one edition keep theirs
    byline: str  # "By …" in the part's language, or ""
    footer: tuple[str, ...]


@dataclass(frozen=True)
class _Chrome:
    """The edition's own words (links, notes) in one of the languages it is written for."""

    lang: str
    web_url: str
    view_in_browser: str
    read_on_web: str
    unsubscribe: str
    note: str


@dataclass(frozen=True)
class _Note:
    lang: str
    text: str


@dataclass(frozen=True)
class _Jump:
    lang: str
    label: str
    anchor: str


def edition_names(site: SiteSettings) -> list[str]:
    return [*site.languages, BOTH]


def build_emails(brief: Brief, settings: Settings) -> list[EmailEdition]:
    return [build_email(brief, settings, name) for name in edition_names(settings.site)]


def build_email(brief: Brief, settings: Settings, edition: str) -> EmailEdition:
    site = settings.site
    if edition not in edition_names(site):
        raise ValueError(f"unknown edition {edition!r}; expected one of {edition_names(site)}")
    if brief.date is None:
        raise ValueError(f"brief {brief.id} has no date; date it (Brief.dated) before building")
    if not brief.sections:
        raise ValueError(f"brief {brief.id} has no text")

    wanted = _both_order(brief, site) if edition == BOTH else [edition]
    shown = [lang for lang in wanted if brief.section(lang)] or [_fallback_language(brief, site)]
    missing = [lang for lang in wanted if not brief.section(lang)]
    parts = [
        _part(brief, lang, lang if edition == BOTH else edition, site.templates_dir)
        for lang in shown
    ]

    subject = _subject([part.title for part in parts])
    preheader = _clip(parts[0].summary, PREHEADER_MAX)
    unsubscribe_url = settings.email.unsubscribe_url.format(token=TOKEN_PLACEHOLDER)
    context = {
        "lang": wanted[0],
        "subject": subject,
        "preheader": preheader,
        "site_name": site.name,
        "chrome": [_chrome(brief, site, lang, shown[0]) for lang in wanted],
        "notices": [_missing_notice(lang, shown, site.templates_dir) for lang in missing],
        "jumps": _jumps(parts, site.templates_dir),
        "parts": parts,
        "show_labels": edition == BOTH,
        # Each part's disclaimer, once when the languages share it.
        "footers": list({part.footer: part for part in parts if part.footer}.values()),
        "unsubscribe_url": unsubscribe_url,
        "refs": References(),  # the text part's numbered links, filled as it is written
        "superscript": superscript,
    }
    try:
        html = compile_mjml(_env(site.templates_dir).get_template("edition.mjml").render(context))
    except ForeignMarkupError as exc:  # never sent: one line naming the brief
        raise BriefError(brief.source or brief.id, str(exc)) from exc
    size = len(html.encode("utf-8"))
    if size >= GMAIL_CLIP_BYTES:
        # Gmail would cut the message short, unsubscribe link included.
        raise BriefError(
            brief.source or brief.id,
            f"the {edition} email is {size:,} bytes of HTML, over Gmail's limit of "
            f"{GMAIL_CLIP_BYTES:,} (it would be clipped, unsubscribe link included); "
            "shorten the brief",
        )
    text = _tidy(_env(site.templates_dir).get_template("edition.txt").render(context))
    eml = _message(brief, settings, edition, subject, shown, html, text, unsubscribe_url)
    return EmailEdition(edition, subject, preheader, html, text, eml)


def _both_order(brief: Brief, site: SiteSettings) -> list[str]:
    """The bilingual edition's languages: the brief's own order first (an Italian-first
    brief reads Italian first), then the site's languages it is not written in."""
    written = [lang for lang in brief.languages if lang in site.languages]
    return [*written, *(lang for lang in site.languages if lang not in written)]


def _subject(titles: list[str]) -> str:
    """Every title when they fit in ``SUBJECT_MAX`` together; else the first alone, cut."""
    titles = [" ".join(title.split()) for title in dict.fromkeys(titles)]
    joined = SUBJECT_JOIN.join(titles)
    return joined if len(joined) <= SUBJECT_MAX else _clip(titles[0], SUBJECT_MAX)


def _fallback_language(brief: Brief, site: SiteSettings) -> str:
    """The text to carry when the edition's language is missing: a site language first."""
    ordered = sorted(brief.languages, key=lambda lang: lang not in site.languages)
    return ordered[0]


def _part(brief: Brief, lang: str, date_lang: str, templates_dir: Path | None) -> _Part:
    section = brief.section(lang)
    assert section is not None and brief.date is not None
    summary = brief.summary_in(lang)
    blocks = brief.body_in(lang)
    return _Part(
        lang=lang,
        anchor=f"brief-{lang}",
        label=language_name(lang, lang),
        title=brief.title_in(lang),
        date=long_date(brief.date, date_lang),
        summary=summary,
        standfirst=lede.inline if (lede := brief.standfirst_block(lang)) else (Span(summary),),
        runs=tuple(group_blocks(blocks)),
        prefix=f"{lang}-",
        byline=t(lang, "byline", templates_dir=templates_dir, name=brief.byline)
        if brief.byline
        else "",
        footer=brief.footer_in(lang),
    )


def _jumps(parts: list[_Part], templates_dir: Path | None) -> list[_Jump]:
    """Links to each language's text, each written in its own language; pointless for one."""
    if len(parts) < 2:
        return []
    return [
        _Jump(p.lang, t(p.lang, "jump_to", templates_dir=templates_dir, language=p.label), p.anchor)
        for p in parts
    ]


def _chrome(brief: Brief, site: SiteSettings, lang: str, fallback: str) -> _Chrome:
    page_lang = lang if brief.section(lang) else fallback
    return _Chrome(
        lang=lang,
        web_url=site.brief_url(brief.id, page_lang),
        view_in_browser=t(lang, "read_in_browser", templates_dir=site.templates_dir),
        read_on_web=t(lang, "read_on_web", templates_dir=site.templates_dir),
        unsubscribe=t(lang, "unsubscribe", templates_dir=site.templates_dir),
        note=t(lang, "unsubscribe_note", templates_dir=site.templates_dir, site=site.name),
    )


def _missing_notice(lang: str, shown: list[str], templates_dir: Path | None) -> _Note:
    available = format_list([language_name(s, lang) for s in shown], locale=lang)
    missing = language_name(lang, lang)
    words = t(
        lang, "missing_language", templates_dir=templates_dir, missing=missing, available=available
    )
    return _Note(lang, words)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:. ") + "…"


# --- plain text -------------------------------------------------------------------------------

# A spaced dash that starts a wrapped line reads as a list item; a no-break space before it keeps
# it on the line it belongs to (textwrap breaks only at ASCII whitespace).
_DASH_GLUE = re.compile(r" ([-–—]) ")


def _wrap(text: str, first: str = "", rest: str = "") -> str:
    return textwrap.fill(
        _DASH_GLUE.sub("\u00a0\\1 ", text),
        width=TEXT_WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,  # a URL broken in two no longer works
        break_on_hyphens=False,
    )


def _underline(text: str, char: str) -> str:
    lines = textwrap.wrap(text, width=TEXT_WIDTH, break_long_words=False) or [""]
    return "\n".join([*lines, char * max(len(line) for line in lines)])


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


# A brief's text is never markup: everything is escaped except in the plain-text part.
_AUTOESCAPE = select_autoescape(
    enabled_extensions=("mjml", "html"), disabled_extensions=("txt",), default=True
)


def _env(templates_dir: Path | None) -> Environment:
    return environment(
        "email",
        templates_dir,
        autoescape=_AUTOESCAPE,
        filters={
            "wrap": _wrap,
            "underline": _underline,
            "inline": inline_html,
            "table": table_html,
            "notes": notes_html,
        },
    )


# --- the message ------------------------------------------------------------------------------


def _message(
    brief: Brief,
    settings: Settings,
    edition: str,
    subject: str,
    shown: list[str],
    html: str,
    text: str,
    unsubscribe_url: str,
) -> bytes:
    assert brief.date is not None
    mail = settings.email
    domain = mail.from_address.rpartition("@")[2]
    local_id = re.sub(r"[^A-Za-z0-9_-]", "-", brief.id)

    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(mail.from_name, addr_spec=mail.from_address)
    msg["To"] = TO_PLACEHOLDER
    if mail.reply_to:
        msg["Reply-To"] = mail.reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(brief.date)
    # Deterministic, yet unique per recipient once the token is substituted.
    msg["Message-ID"] = f"<{local_id}.{edition}.{TOKEN_PLACEHOLDER}@{domain}>"
    msg["MIME-Version"] = "1.0"
    msg["List-Unsubscribe"] = _list_unsubscribe(unsubscribe_url, mail.unsubscribe_mailto)
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058 one-click
    msg["Precedence"] = "bulk"

    msg.make_alternative()
    msg.attach(_text_part(text, "plain"))
    msg.attach(_text_part(html, "html"))
    # After make_alternative(), which would move any Content-* header into a subpart.
    msg["Content-Language"] = ", ".join(shown)
    # A fixed boundary keeps the bytes reproducible; "=_" can never occur in quoted-printable.
    digest = hashlib.sha256(f"{html}\0{text}".encode()).hexdigest()[:24]
    msg.set_boundary(f"=_bc_{digest}")
    # The Message-ID on its own header line: the policy folds one just over 78 characters
    # (a short id) onto the next line, which is valid but not what readers of it expect.
    return _FOLDED_MESSAGE_ID.sub(b"Message-ID: <", msg.as_bytes(policy=SMTP), count=1)


_FOLDED_MESSAGE_ID = re.compile(rb"^Message-ID:\r\n <", re.M)


def _list_unsubscribe(url: str, mailto: str) -> str:
    targets = [f"<{url}>"]
    if mailto:
        address = mailto.removeprefix("mailto:")
        targets.append(f"<mailto:{address}?subject=unsubscribe%20{TOKEN_PLACEHOLDER}>")
    return ", ".join(targets)


def _text_part(body: str, subtype: str) -> EmailMessage:
    # An EmailMessage, not a bare MIMEPart: that is what attach() is typed to take.
    part = EmailMessage(policy=SMTP)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(quoted_printable(body))
    return part


_QP_ESCAPE = re.compile(rb"[^\x20-\x3c\x3e-\x7e]")  # "=", controls and non-ASCII
_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS))
_QP_LINE = 76
_TOKEN_GROWTH = TOKEN_MAX - len(TOKEN_PLACEHOLDER)


def _filled_width(data: str) -> int:
    """The length of ``data`` once the longest token replaces each token placeholder."""
    return len(data) + _TOKEN_GROWTH * data.count(TOKEN_PLACEHOLDER)


def quoted_printable(text: str) -> str:
    """RFC 2045 quoted-printable that never splits a placeholder across a soft line break.

    The standard library breaks lines at fixed columns, which can cut ``__BC_TOKEN__`` in two,
    and then substituting it in the prepared bytes silently fails for some recipients. Lines
    are measured with the token filled in (``TOKEN_MAX``), so they stay within 76 characters
    in the message each recipient gets. (The To placeholder is only ever in the header.)
    """
    out: list[str] = []
    for line in re.split(r"\r\n|\r|\n", text.removesuffix("\n")):
        data = _QP_ESCAPE.sub(lambda m: b"=%02X" % m[0][0], line.encode("utf-8")).decode("ascii")
        if data.endswith((" ", "\t")):  # trailing whitespace is dropped in transit unless encoded
            data = f"{data[:-1]}={ord(data[-1]):02X}"
        # len() first: counting tokens in the rest of a long line, chunk after chunk, is slow.
        while len(data) > _QP_LINE or _filled_width(data) > _QP_LINE:
            cut = _QP_LINE - 1  # room for the "=" of the soft break
            while _filled_width(data[:cut]) > _QP_LINE - 1:
                cut -= 1  # a token before the cut takes up to TOKEN_MAX columns
            if "=" in data[cut - 2 : cut]:  # never inside an "=XX" escape
                cut = data.rindex("=", cut - 2, cut)
            for m in _PLACEHOLDER.finditer(data, max(0, cut - 20), cut + 20):
                if m.start() < cut < m.end():
                    cut = m.start()
            out.append(data[:cut] + "=")
            data = data[cut:]
        out.append(data)
    return "\n".join(out) + "\n"
