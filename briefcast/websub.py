"""WebSub (https://www.w3.org/TR/websub/): telling the hub that a feed changed.

The feeds name the hub (``<link rel="hub">``, JSON Feed ``hubs``); a publisher then tells
it which of them changed with ``POST hub.mode=publish&hub.url=<feed URL>`` (the
PubSubHubbub convention every public hub understands), and the hub fetches the feed and
pushes it to its subscribers. A ping is a courtesy, not part of the publish: hubs and
readers poll the feeds anyway, so a failure is reported, never raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

TIMEOUT_SECONDS = 10.0  # per POST: connect and answer
USER_AGENT = "briefcast (WebSub publisher)"


@dataclass(frozen=True)
class Pings:
    pinged: tuple[str, ...]  # feed URLs the hub accepted (2xx)
    warnings: tuple[str, ...]  # one line each: what went wrong


def ping(hub: str, feeds: Sequence[str], *, timeout: float = TIMEOUT_SECONDS) -> Pings:
    """One POST per feed URL. A hub that cannot be reached (refused, timed out) is not
    tried again for the remaining feeds of this call: one warning says how many were left."""
    pinged: list[str] = []
    warnings: list[str] = []
    for i, feed in enumerate(feeds):
        body = urlencode({"hub.mode": "publish", "hub.url": feed}).encode("ascii")
        request = Request(
            hub,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": USER_AGENT,
            },
        )
        try:
            with urlopen(request, timeout=timeout) as response:  # an http(s) URL: see config
                status = response.status
        except HTTPError as exc:
            warnings.append(f"WebSub hub {hub} answered {exc.code} {exc.reason} for {feed}")
            continue
        except (URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            left = len(feeds) - i
            warnings.append(
                f"WebSub hub {hub} could not be reached ({reason}): {left} feed(s) not pinged"
            )
            break
        if 200 <= status < 300:
            pinged.append(feed)
        else:
            warnings.append(f"WebSub hub {hub} answered {status} for {feed}")
    return Pings(tuple(pinged), tuple(warnings))
