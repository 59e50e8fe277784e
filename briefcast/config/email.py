"""``[email]``: the newsletter's sender and its unsubscribe links."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from briefcast.config.fields import Address, Section, esc, fill_in, is_http


def _unsubscribe_url(url: str) -> str:
    if "{token}" not in url:
        raise ValueError("must contain {token}, where each subscriber's token goes")
    filled = fill_in(url, "token", "TOKEN")  # as the email builder will: fails now, not mid-send
    if not is_http(filled):
        raise ValueError(f'"{esc(url)}" is not an absolute http(s) URL')
    return url


class EmailSettings(Section):
    from_address: Address = "briefs@example.org"
    from_name: str = "Europolitiche Brief"
    reply_to: str | None = None  # a header as written: may be "Desk <desk@example.org>"
    # Not set: "<[site] base_url>/u/{token}", the page `briefcast serve` answers (Settings
    # fills it in; this default is only what an EmailSettings on its own carries).
    unsubscribe_url: Annotated[str, AfterValidator(_unsubscribe_url)] = (
        "https://briefs.example.org/u/{token}"
    )
    unsubscribe_mailto: Address = "unsubscribe@example.org"
