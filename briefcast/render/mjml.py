"""The one adapter around ``mjml`` and ``premailer``.

Both libraries are lightly maintained, so nothing else in the project imports them: if one has to
be replaced, this file is the only one that changes.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
import secrets
from typing import Any, ClassVar

from lxml import html as lxml_html
from mjml import mjml_to_html
from premailer import Premailer

# cssutils (under premailer) logs a warning for every vendor property it does not know, such as
# mso-line-height-rule; in an email those properties are deliberate.
logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)


class _Premailer(Premailer):
    """Premailer that parses each distinct stylesheet once per process.

    Every edition carries the same stylesheets, and parsing them again was a third of the time
    spent here. This overrides a private method, which is acceptable only because premailer is
    pinned (3.10.0) and this adapter is its one user.
    """

    _parsed: ClassVar[dict[tuple[str, int], Any]] = {}

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> Any:
        key = (css_body, ruleset_index)
        if key not in self._parsed:
            if len(self._parsed) > 64:  # stylesheets come from templates; this never fills
                self._parsed.clear()
            self._parsed[key] = super()._parse_style_rules(css_body, ruleset_index)
        return self._parsed[key]


class MjmlError(ValueError):
    """The MJML source could not be compiled."""


class ForeignMarkupError(MjmlError):
    """The compiled email holds markup its template did not write (text became markup)."""


# mjml (the Python port, like the JavaScript original) copies <mj-title>'s text unescaped into
# the edition's outer <div aria-label="..."> and into <title>, and writes every mj-* attribute
# value it re-emits as key="value" with no escaping; its parser (BeautifulSoup) has already
# decoded whatever entities the source used, so no escaping done before mjml survives it. A
# title with a '"' therefore wrote attributes of its own (onfocus, autofocus) into every email.
# So the title never goes through mjml: it is swapped for a random slot, and the slot for the
# escaped title after. An mj-* attribute's '"' is escaped twice (&amp;quot;), so that mjml's
# decoding leaves &quot; for its raw key="value" (and style="...") to write: that is all a
# double-quoted attribute needs, and mjml quotes every attribute it writes with '"'. (Our
# template puts no brief text in an mj-* attribute; a site's own template may.) mj-text and
# mj-raw content is re-serialized by BeautifulSoup, which escapes it; whatever mjml does,
# _refuse_foreign_markup checks the result.
_TITLE = re.compile(r"(<mj-title\b[^>]*>)(.*?)(</mj-title>)", re.S | re.I)
_MJ_TAG = re.compile(r"<mj-[a-z-]+\b[^>]*>", re.I)  # Jinja escapes any '>' in a value
_QUOTE_ENTITY = re.compile(r"&(?:quot|#34|#x0*22);", re.I)


def _quote_mj_attributes(source: str) -> str:
    return _MJ_TAG.sub(lambda tag: _QUOTE_ENTITY.sub("&amp;quot;", tag[0]), source)


def compile_mjml(source: str) -> str:
    """MJML in, email-ready HTML out: compiled, then with the CSS inlined for clients that drop
    ``<style>`` (Gmail with non-Google accounts, many webmail clients)."""
    slot = f"bctitle{secrets.token_hex(12)}"  # no brief can hold it: it is made here, now
    title = ""

    def take_title(match: re.Match[str]) -> str:
        nonlocal title
        title = " ".join(html_lib.unescape(match[2]).split())
        return f"{match[1]}{slot}{match[3]}"

    source = _quote_mj_attributes(_TITLE.sub(take_title, source, count=1))
    try:
        result = mjml_to_html(source)
    except (ValueError, AssertionError) as exc:
        raise MjmlError(str(exc)) from exc
    if result.errors:
        raise MjmlError("; ".join(result.errors))
    html = inline_css(result.html.replace(slot, html_lib.escape(title, quote=True)))
    _refuse_foreign_markup(html)
    return html


# What an edition's template never writes, and a brief must not: elements that run or submit
# something, and attributes that run script or take focus. An email with any of them was
# injected into (by a path through mjml not known today): refused, never sent.
_FOREIGN_TAGS = frozenset(
    {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input"}
    | {"button", "select", "textarea", "base", "svg", "math", "template", "portal"}
)
_FOREIGN_ATTRIBUTES = frozenset(("autofocus", "formaction", "srcdoc"))


def _refuse_foreign_markup(html: str) -> None:
    for element in lxml_html.document_fromstring(html).iter():
        if not isinstance(element.tag, str):  # comments, processing instructions
            continue
        if element.tag.lower() in _FOREIGN_TAGS:
            raise ForeignMarkupError(
                f"the email has a <{element.tag}> element its template did not write"
            )
        for name in element.attrib:
            if name.lower().startswith("on") or name.lower() in _FOREIGN_ATTRIBUTES:
                raise ForeignMarkupError(
                    f"the email has an attribute {name!r} its template did not write"
                )


def inline_css(html: str) -> str:
    # premailer keeps the doctype only when lxml's spelling matches the source's exactly, and
    # without a doctype browsers fall back to quirks mode.
    html = html.lstrip()
    if html[:15].lower() == "<!doctype html>":
        html = "<!DOCTYPE html>" + html[15:]
    return _Premailer(
        html,
        allow_network=False,  # a builder does no I/O
        disable_validation=True,
        preserve_internal_links=True,  # jump links to "#..." anchors
        strip_important=False,  # the mobile media queries only win with !important
        cssutils_logging_level=logging.CRITICAL,
    ).transform(pretty_print=False)
