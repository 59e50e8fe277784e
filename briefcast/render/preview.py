"""What the editor checks before sending: one index.html per brief, and the same
previews as Prefect artifacts (markdown and a table)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from briefcast.config import Settings
from briefcast.i18n import long_datetime
from briefcast.render.templating import environment

if TYPE_CHECKING:
    from briefcast.channel import Channel, Outputs, Row


_AUTOESCAPE = select_autoescape(["html", "j2"])

# Where `briefcast serve` puts the Approve form when an editor opens a waiting review's
# preview (briefcast/serve/editor.py); on disk it stays a comment.
APPROVE_SLOT = "<!-- briefcast:approve -->"

# Email widths shown: the edition's own (mj-body width) and a common phone's.
DESKTOP_WIDTH = 640
PHONE_WIDTH = 375
# A frame's height before the script fits it (or when script is off): most editions fit.
FALLBACK_HEIGHT = 1600

# The page's only script, ours and fixed (allowed by its hash where the page is served):
# each frame made as tall as its content, so an edition is seen whole, footer included, with
# no inner scrollbar; scaled down, never cut, on a screen narrower than the width it shows.
# The frames are srcdoc (the page's own origin, from disk too) or files of the same folder.
FIT_SCRIPT = """
(function () {
  "use strict";
  var GAP = 18;  // .views' gap
  var SMALLEST = 0.75;  // side by side while readable; past that, one under the other
  function room() {
    var main = document.querySelector("main");
    var css = getComputedStyle(main);
    // The card's padding and border on both sides (see .card and its narrow-screen rule).
    var card = window.innerWidth <= 600 ? 22 : 30;
    return main.clientWidth - parseFloat(css.paddingLeft) - parseFloat(css.paddingRight) - card;
  }
  function scaleOf(frame) {
    var width = Number(frame.getAttribute("width"));
    var group = frame.closest(".views");
    if (group) {
      var widths = 0, frames = group.querySelectorAll("iframe[data-fit]");
      for (var i = 0; i < frames.length; i++) { widths += Number(frames[i].getAttribute("width")); }
      var together = (room() - GAP * (frames.length - 1)) / widths;
      if (together >= SMALLEST) { return Math.min(1, together); }
    }
    return Math.min(1, room() / width);
  }
  function fit(frame) {
    var box = frame.parentElement;
    var view = box.parentElement.tagName === "FIGURE" ? box.parentElement : null;
    var doc = null;
    try { doc = frame.contentDocument; } catch (e) { doc = null; }
    if (!doc || !doc.body) {  // another origin (a file opened from disk): as the CSS says
      frame.removeAttribute("style");
      box.removeAttribute("style");
      if (view) { view.removeAttribute("style"); }
      return;
    }
    if (frame.hasAttribute("src") && doc.URL === "about:blank") { return; }  // not loaded yet
    var width = Number(frame.getAttribute("width"));
    var scale = scaleOf(frame);
    frame.style.maxWidth = "none";
    frame.style.width = width + "px";
    frame.style.height = "0px";
    var height = Math.ceil(doc.documentElement.scrollHeight) + 2;
    frame.style.height = height + "px";
    frame.style.transform = scale < 1 ? "scale(" + scale + ")" : "";
    box.style.width = Math.floor(width * scale) + "px";
    box.style.height = Math.ceil(height * scale) + "px";
    if (view) { view.style.width = box.style.width; }
  }
  var frames = Array.prototype.slice.call(document.querySelectorAll("iframe[data-fit]"));
  frames.forEach(function (frame) {
    frame.addEventListener("load", function () { fit(frame); });
    fit(frame);
  });
  window.addEventListener("resize", function () { frames.forEach(fit); });
})();
"""
FIT_SCRIPT_CSP = (
    "'sha256-" + base64.b64encode(hashlib.sha256(FIT_SCRIPT.encode()).digest()).decode() + "'"
)

# Dark mode as the Gmail and Outlook apps show an email that declares no dark styles (as
# ours): colours inverted, hues kept, images left as they are. Litmus shows the same; the
# Apple Mail way (the email's own prefers-color-scheme rules) would show ours unchanged.
_DARK_STYLE = (
    "<style>html { background: #0b0e15; } body { filter: invert(1) hue-rotate(180deg); }"
    " img, picture, video { filter: invert(1) hue-rotate(180deg); }</style>"
)


def dark(html: str) -> str:
    """The email's HTML as a dark-mode client shows it (for the preview's dark frame)."""
    head_end = html.find("</head>")
    if head_end < 0:
        return _DARK_STYLE + html
    return html[:head_end] + _DARK_STYLE + html[head_end:]


def _env() -> Environment:
    # Always ours: the preview is the editor's page, not the site's.
    return environment("preview", autoescape=_AUTOESCAPE)


def fragment(template: str, **context: Any) -> Markup:
    """A channel's part of the preview page, from ``templates/preview/<template>``."""
    return Markup(_env().get_template(template).render(**context))


def build_index(outputs: Outputs, channels: Sequence[Channel], settings: Settings) -> str:
    """The editor's page: the brief, then each channel's part, in the channels' order."""
    brief = outputs.brief
    sections = [
        (ch.name, ch.title, Markup(ch.preview_html(outputs.of(ch.name), brief, settings)))
        for ch in channels
    ]
    return (
        _env()
        .get_template("index.html.j2")
        .render(
            brief=brief,
            date=long_datetime(brief.date, "en") if brief.date else "undated",
            sections=sections,
            approve_slot=Markup(APPROVE_SLOT),
            fit_script=Markup(FIT_SCRIPT),
        )
    )


def preview_rows(outputs: Outputs, channels: Sequence[Channel]) -> list[Row]:
    """One row per thing that would be sent, every channel: for the Prefect table artifact."""
    return [
        {"channel": ch.name, **row}
        for ch in channels
        for row in ch.preview_rows(outputs.of(ch.name))
    ]


def preview_markdown(outputs: Outputs, channels: Sequence[Channel]) -> str:
    """The same rows as Markdown, one heading per channel: for the Prefect markdown artifact."""
    brief = outputs.brief
    lines = [
        f"# {brief.title}",
        "",
        f"`{brief.id}` · languages: {', '.join(brief.languages)} · "
        f"tags: {', '.join(brief.tags) or '—'}",
    ]
    for ch in channels:
        lines += ["", f"## {ch.title}", ""]
        for row in ch.preview_rows(outputs.of(ch.name)):
            limit = f"/{row['limit']}" if row.get("limit") else ""
            quoted = "\n  > ".join(str(row.get("text", "")).splitlines())
            lines.append(f"- **{row.get('target', '')}** ({row.get('length', '')}{limit})")
            lines.append(f"  > {quoted}")
    return "\n".join(lines) + "\n"
