"""The one adapter around ``mjml`` and ``premailer``.

Both libraries are lightly maintained, so nothing else in the project imports them: if one has to
be replaced, this file is the only one that changes.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

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


def compile_mjml(source: str) -> str:
    """MJML in, email-ready HTML out: compiled, then with the CSS inlined for clients that drop
    ``<style>`` (Gmail with non-Google accounts, many webmail clients)."""
    try:
        result = mjml_to_html(source)
    except (ValueError, AssertionError) as exc:
        raise MjmlError(str(exc)) from exc
    if result.errors:
        raise MjmlError("; ".join(result.errors))
    return inline_css(result.html)


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
