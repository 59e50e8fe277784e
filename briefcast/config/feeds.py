"""``[feeds]``: the RSS, Atom and JSON feeds."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from briefcast.config.fields import Section, esc, is_http


def _hub_url(url: str) -> str:
    # Feeds carry it in <link rel="hub">, and each publish POSTs to it.
    if not is_http(url) or urlsplit(url).fragment:
        raise ValueError(f'"{esc(url)}" is not an absolute http(s) URL without a fragment')
    return url


class FeedSettings(Section):
    max_items: int = Field(50, gt=0, le=10_000)
    # A WebSub hub (https://www.w3.org/TR/websub/): the published feeds name it, and every
    # publish that changes a feed tells it so. None: no hub.
    websub_hub: Annotated[str, AfterValidator(_hub_url)] | None = None
