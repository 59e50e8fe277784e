"""The Mastodon poster against a fake Mastodon on loopback (tests/fake_mastodon.py): what
reaches the server, and how each way a call can end is reported."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import formatdate

import pytest
from fake_mastodon import DOMAIN, TOKEN, USERNAME, Answer, FakeMastodon

from briefcast.config import AccountSettings, SocialSettings
from briefcast.posting import (
    CredentialsRejected,
    MaybePosted,
    PostFailed,
    PostRef,
    RateLimited,
    Reply,
)
from briefcast.posting.mastodon import MastodonPoster, from_account

STATUSES = "/api/v1/statuses"
VERIFY = "/api/v1/accounts/verify_credentials"
INSTANCE = "/api/v2/instance"
TIMEOUT = 0.3  # seconds; the fake's slow answers wait longer


@pytest.fixture
def fake() -> Iterator[FakeMastodon]:
    with FakeMastodon().running() as server:
        yield server


def account(url: str, name: str = "desk-en", lang: str = "en") -> AccountSettings:
    return AccountSettings(name=name, network="mastodon", languages=[lang], api_url=url)


def poster(url: str, name: str = "desk-en", token: str = TOKEN) -> MastodonPoster:
    env = {account(url, name).env_name("ACCESS_TOKEN"): token}
    return from_account(account(url, name), SocialSettings(timeout_seconds=TIMEOUT), env)


def iso(when: float) -> str:
    """A time as Mastodon writes X-RateLimit-Reset."""
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="microseconds")


def test_a_thread_of_three_hangs_together(fake: FakeMastodon) -> None:
    desk = poster(fake.url)
    assert desk.network == "mastodon" and desk.account == "desk-en"
    assert desk.check() == f"@{USERNAME}@{DOMAIN}"

    refs: list[PostRef] = []
    for n in (1, 2, 3):
        reply = Reply(parent=refs[-1], root=refs[0]) if refs else None
        refs.append(desk.post(f"Part {n}/3", lang="en", reply=reply, idempotency_key=f"b1-en-{n}"))

    assert refs == [PostRef(id=n, url=f"https://{DOMAIN}/@{USERNAME}/{n}") for n in "123"]
    posts = fake.posts()
    assert [p.form.get("in_reply_to_id") for p in posts] == [None, "1", "2"]
    assert [p.form["status"] for p in posts] == ["Part 1/3", "Part 2/3", "Part 3/3"]
    assert {p.form["language"] for p in posts} == {"en"}
    assert {p.form["visibility"] for p in posts} == {"public"}
    assert [p.headers["idempotency-key"] for p in posts] == ["b1-en-1", "b1-en-2", "b1-en-3"]
    assert {s.headers["authorization"] for s in fake.seen} == {f"Bearer {TOKEN}"}
    assert {s.headers["user-agent"] for s in fake.seen} == {"briefcast"}
    assert fake.count("GET", "/api/v1/instance") == 0  # no version check round trip


def test_an_italian_post_arrives_intact(fake: FakeMastodon) -> None:
    text = (
        "Perché l'Unione è più forte: così cambierà l'energia 🇪🇺⚡️ "
        "https://briefs.example.org/it/2024-05-01-energia/?p=1&q=è#più"
    )
    desk = poster(fake.url, "desk-it")
    ref = desk.post(text, lang="it", reply=None, idempotency_key="b1-it-1")
    (seen,) = fake.posts()
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.form["status"] == text
    assert seen.form["language"] == "it"
    assert fake.statuses[0]["content"] == text and ref.id == "1"


def test_limit_is_the_instances_and_read_once(fake: FakeMastodon) -> None:
    desk = poster(fake.url)
    assert desk.limit() == 1000
    assert desk.check() == f"@{USERNAME}@{DOMAIN}"
    assert desk.limit() == 1000
    assert fake.count("GET", INSTANCE) == 1


def test_limit_is_500_without_instance_v2() -> None:
    with FakeMastodon(max_characters=None).running() as old:
        desk = poster(old.url)
        assert desk.limit() == 500
        assert desk.check() == f"@{USERNAME}@127.0.0.1"  # the API's host, as nothing better
        assert old.count("GET", INSTANCE) == 1


def test_limit_is_500_when_the_instance_cannot_be_reached() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        assert poster(f"http://127.0.0.1:{closed.getsockname()[1]}").limit() == 500


def _mastodon_reset(now: float) -> dict[str, str]:
    # Mastodon: an ISO 8601 time by the server's clock, here an hour ahead of ours
    server_now = now + 3600
    return {"Date": formatdate(server_now, usegmt=True), "X-RateLimit-Reset": iso(server_now + 300)}


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        pytest.param(_mastodon_reset, 300, id="x-ratelimit-reset-iso-server-clock"),
        pytest.param(lambda now: {"X-RateLimit-Reset": str(int(now) + 60)}, 60, id="unix-time"),
        pytest.param(lambda now: {"Retry-After": "42"}, 42, id="retry-after-seconds"),
        pytest.param(lambda now: {"RateLimit-Reset": "17"}, 17, id="ratelimit-reset-seconds"),
    ],
)
def test_rate_limited_then_posted(
    fake: FakeMastodon, headers: Callable[[float], dict[str, str]], wait: int
) -> None:
    limited = Answer(429, {"error": "Too many requests"}, headers=headers(time.time()))
    fake.script("POST", STATUSES, limited)
    desk = poster(fake.url)

    with pytest.raises(RateLimited) as raised:
        desk.post("Part 1/1", lang="en", reply=None, idempotency_key="b1-en-1")
    assert raised.value.reset_at is not None
    assert raised.value.reset_at == pytest.approx(time.time() + wait, abs=2)
    assert "429" in str(raised.value) and fake.statuses == []

    # the caller waits until reset_at, then tries again
    assert desk.post("Part 1/1", lang="en", reply=None, idempotency_key="b1-en-1").id == "1"
    assert len(fake.posts()) == 2


def test_rate_limited_without_a_reset_time(fake: FakeMastodon) -> None:
    fake.script("POST", STATUSES, Answer(429, {"error": "Too many requests"}))
    with pytest.raises(RateLimited) as raised:
        poster(fake.url).post("x", lang="en", reply=None, idempotency_key="k")
    assert raised.value.reset_at is None


def test_a_post_taken_with_a_header_mastodon_py_cannot_read(fake: FakeMastodon) -> None:
    # Mastodon.py raises "Rate limit time calculations failed" over a 200: the post exists.
    fake.script("POST", STATUSES, Answer(headers={"X-RateLimit-Reset": "soon"}))
    ref = poster(fake.url).post("x", lang="en", reply=None, idempotency_key="k")
    assert ref == PostRef(id="1", url=f"https://{DOMAIN}/@{USERNAME}/1")


def test_missing_token_names_the_variable(fake: FakeMastodon) -> None:
    it = account(fake.url, "desk-it", "it")
    for env in ({}, {"BRIEFCAST_SOCIAL_DESK_IT_ACCESS_TOKEN": " \n"}):
        with pytest.raises(CredentialsRejected, match="BRIEFCAST_SOCIAL_DESK_IT_ACCESS_TOKEN"):
            from_account(it, SocialSettings(), env)
    assert fake.seen == []


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_on_check(fake: FakeMastodon, status: int) -> None:
    fake.script("GET", VERIFY, Answer(status, {"error": "The access token was revoked"}))
    with pytest.raises(CredentialsRejected, match="access token was revoked"):
        poster(fake.url).check()


def test_wrong_token_on_check_and_post(fake: FakeMastodon) -> None:
    desk = poster(fake.url, token="not-the-token")
    with pytest.raises(CredentialsRejected, match="401"):
        desk.check()
    with pytest.raises(CredentialsRejected):
        desk.post("x", lang="en", reply=None, idempotency_key="k")
    assert fake.statuses == []


def test_check_when_the_server_fails(fake: FakeMastodon) -> None:
    fake.script("GET", VERIFY, Answer(502, None), Answer(429, None, {"Retry-After": "60"}))
    for _ in range(2):  # check() promises only CredentialsRejected or PostFailed
        with pytest.raises(PostFailed) as raised:
            poster(fake.url).check()
        assert raised.value.retry


@pytest.mark.parametrize(
    ("status", "outcome", "retry"),
    [
        (422, PostFailed, False),  # validation: would fail again
        (404, PostFailed, False),  # the parent was deleted
        (503, PostFailed, True),  # "temporary problem, please try again": nothing was made
        (500, MaybePosted, None),  # may come after the status was saved
        (502, MaybePosted, None),  # a proxy: the server may have had it
        (504, MaybePosted, None),
    ],
)
def test_post_errors(
    fake: FakeMastodon, status: int, outcome: type[Exception], retry: bool | None
) -> None:
    error = "Validation failed: Text character limit of 500 exceeded"
    fake.script("POST", STATUSES, Answer(status, {"error": error}))
    with pytest.raises(outcome) as raised:
        poster(fake.url).post("x" * 600, lang="en", reply=None, idempotency_key="k")
    assert str(status) in str(raised.value) and error in str(raised.value)
    assert "\n" not in str(raised.value)
    if retry is not None:
        assert isinstance(raised.value, PostFailed) and raised.value.retry is retry


def test_read_timeout_after_the_request_arrived_is_maybe_posted(fake: FakeMastodon) -> None:
    fake.script("POST", STATUSES, Answer(delay=10 * TIMEOUT))  # makes the status, answers late
    desk = poster(fake.url)
    started = time.monotonic()
    with pytest.raises(MaybePosted, match="may exist"):
        desk.post("Part 1/1", lang="en", reply=None, idempotency_key="b1-en-1")
    assert time.monotonic() - started < 5 * TIMEOUT
    (seen,) = fake.posts()
    assert seen.form["status"] == "Part 1/1" and len(fake.statuses) == 1

    # resent on request with the same key, within Mastodon's hour: the same status
    ref = desk.post("Part 1/1", lang="en", reply=None, idempotency_key="b1-en-1")
    assert ref.id == "1" and len(fake.statuses) == 1


def test_connection_refused_is_not_posted() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        desk = poster(f"http://127.0.0.1:{closed.getsockname()[1]}")
        with pytest.raises(PostFailed, match="cannot reach") as raised:
            desk.post("x", lang="en", reply=None, idempotency_key="k")
        assert raised.value.retry
        with pytest.raises(PostFailed, match="cannot reach") as raised:
            desk.check()
        assert raised.value.retry
