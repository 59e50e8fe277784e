"""The pieces of delivery that need no server: unsubscribe tokens, the prepared bytes, pacing,
and where the unsubscribe secret may come from."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from delivery_helpers import SECRET

from briefcast.config import Settings
from briefcast.delivery import tokens
from briefcast.delivery.pacing import HourlyCap, RateLimiter
from briefcast.delivery.prepared import PreparedEdition

# --- tokens, prepared bytes, limiter -------------------------------------------------------


def test_unsubscribe_tokens_are_per_subscriber_and_unforgeable() -> None:
    token = tokens.sign(SECRET, 42)
    assert tokens.verify(SECRET, token) == 42
    sub_id, signature = token.split(".")
    assert tokens.verify(SECRET, f"43.{signature}") is None  # someone else's id
    assert tokens.verify("another-secret", token) is None
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert tokens.verify(SECRET, f"{sub_id}.{flipped}") is None
    for junk in ("", "42", "42.", ".abc", "0." + signature, "42." + signature + "x", "x" * 500):
        assert tokens.verify(SECRET, junk) is None
    assert tokens.sign(SECRET, 42) == token  # stable: the same link in every newsletter
    assert all(c.isalnum() or c in "._-" for c in token)


def test_prepared_edition_fills_in_only_the_recipient(brief_and_mails) -> None:
    _, mails = brief_and_mails
    for mail in mails:
        prepared = PreparedEdition.from_edition(mail)
        one = prepared.render("anna@example.org", "7.tok")
        # The Message-ID gets an opaque id, never the token (issue 16): the rest, the token.
        message_id = prepared.message_id("7.tok")
        template = mail.eml.split(b"Message-ID: ")[1].split(b"\r\n")[0]
        expected = (
            mail.eml.replace(template, message_id.encode())
            .replace(b"__BC_TO__", b"anna@example.org")
            .replace(b"__BC_TOKEN__", b"7.tok")
        )
        assert one == expected
        wire = prepared.wire("anna@example.org", "7.tok")
        assert wire.endswith(b"\r\n.\r\n")
        lines = wire[:-3].split(b"\r\n")
        assert all(not line.startswith(b".") or line.startswith(b"..") for line in lines)
        assert message_id.startswith("<") and "tok" not in message_id
        assert message_id != prepared.message_id("8.tok")
        with pytest.raises(ValueError):
            prepared.render("evil@example.org\r\nBcc: x@example.org", "7.tok")
        test = prepared.marked_test(mail.subject)
        assert test.render("a@example.org", "t").count(b"Subject:") == 1
        assert b"[TEST]" in test.render("a@example.org", "t").partition(b"\r\n\r\n")[0]

        # Dated: only the Date line changes, wherever it is, and the signing parts follow.
        when = datetime(2026, 12, 2, 7, 0, 3, 999, tzinfo=ZoneInfo("Europe/Rome"))
        dated = prepared.dated(when)
        line = b"Date: Wed, 02 Dec 2026 07:00:03 +0100\r\n"
        old_line = re.search(rb"(?m)^Date: .*\r\n", one)
        assert old_line is not None
        assert dated.render("anna@example.org", "7.tok") == one.replace(old_line[0], line, 1)
        signed_headers = dated.signed_parts("anna@example.org", "7.tok")[0]
        assert b"date:Wed, 02 Dec 2026 07:00:03 +0100\r\n" in signed_headers
        with pytest.raises(ValueError, match="time zone"):
            prepared.dated(datetime(2026, 12, 2, 7, 0))


def test_rate_limiter_and_hourly_cap_pace_messages() -> None:
    now = [10_000.0]
    limiter = RateLimiter(100, clock=lambda: now[0])
    assert limiter.reserve() == 0  # the first goes at once
    wait = limiter.reserve()
    assert wait == pytest.approx(0.01)  # the next waits for its slot, and is not given it
    assert limiter.reserve() == wait
    now[0] += wait
    assert limiter.reserve() == 0
    now[0] += 5  # idle for a while: no credit piles up, so no burst follows
    assert limiter.reserve() == 0 and limiter.reserve() > 0

    cap = HourlyCap(3, window=60, buckets=6, clock=lambda: now[0])
    cap.seed([now[0] - 30])  # one sent by an earlier run, half a window ago
    assert [cap.reserve(), cap.reserve()] == [0, 0]
    wait = cap.reserve()  # the fourth in the window waits until the oldest has left it
    assert 30 <= wait <= 41 and cap.used() == 3
    now[0] += wait
    assert cap.reserve() == 0 and cap.used() <= 3


def test_secrets_are_refused_in_the_settings_file(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "b.toml"
    config.write_text('[delivery]\nunsubscribe_secret = "oops"\n')
    monkeypatch.setenv("BRIEFCAST_CONFIG", str(config))
    with pytest.raises(ValueError, match="BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET"):
        Settings()
    monkeypatch.setenv("BRIEFCAST_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET", "from-env")
    assert Settings().delivery.unsubscribe_secret.get_secret_value() == "from-env"
