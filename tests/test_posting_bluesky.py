"""BlueskyPoster against a fake PDS over loopback HTTP (tests/fake_bluesky.py): the records it
writes (threads, facets at UTF-8 byte offsets, languages, cards) and how each way a call can
end reaches the ledger (posted, failed, rate limited, maybe posted, credentials rejected)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from fake_bluesky import DID, FakePds, fake_pds

from briefcast.config import AccountSettings, SocialSettings
from briefcast.posting import (
    CredentialsRejected,
    LinkCard,
    MaybePosted,
    Poster,
    PostFailed,
    PostRef,
    RateLimited,
    Reply,
)
from briefcast.posting.bluesky import BlueskyPoster, from_account, link_spans

CREATE = "com.atproto.repo.createRecord"
LOGIN = "com.atproto.server.createSession"
PASSWORD_VAR = "BRIEFCAST_SOCIAL_DESK_IT_APP_PASSWORD"


def account(url: str, handle: str | None = "desk.example.org") -> AccountSettings:
    return AccountSettings(
        name="desk-it", network="bluesky", languages=["it"], api_url=url, handle=handle
    )


def poster_for(fake: FakePds, *, timeout: float = 2.0) -> BlueskyPoster:
    settings = SocialSettings(timeout_seconds=timeout)
    return from_account(account(fake.url), settings, {PASSWORD_VAR: fake.password})


@pytest.fixture
def fake() -> Iterator[FakePds]:
    with fake_pds() as pds:
        yield pds


@pytest.fixture
def poster(fake: FakePds) -> Iterator[BlueskyPoster]:
    p = poster_for(fake)
    yield p
    p.close()


def post(poster: BlueskyPoster, text: str, reply: Reply | None = None) -> PostRef:
    return poster.post(text, lang="en", reply=reply, idempotency_key="k")


def test_check_logs_in_once_and_names_the_handle(fake: FakePds, poster: BlueskyPoster) -> None:
    as_poster: Poster = poster  # the protocol, as mypy sees it
    assert as_poster.network == "bluesky" and as_poster.account == "desk-it"
    assert poster.limit() == 300
    assert fake.calls == []  # lazily: nothing before the first call
    assert poster.check() == "desk.example.org"
    post(poster, "one")
    post(poster, "two")
    assert fake.calls == [LOGIN, CREATE, CREATE]  # the session is reused


def test_a_thread_names_root_and_parent(fake: FakePds, poster: BlueskyPoster) -> None:
    first = post(poster, "Parte 1/3")
    second = post(poster, "Parte 2/3", Reply(parent=first, root=first))
    third = post(poster, "Parte 3/3", Reply(parent=second, root=first))

    for ref in (first, second, third):
        assert ref.id.startswith(f"at://{DID}/app.bsky.feed.post/") and ref.cid
        rkey = ref.id.rsplit("/", 1)[1]
        assert ref.url == f"https://bsky.app/profile/{DID}/post/{rkey}"
    assert len({first.id, second.id, third.id}) == 3

    def strong(ref: PostRef) -> dict[str, str]:
        return {"uri": ref.id, "cid": ref.cid}

    records = [body["record"] for body in fake.records]
    assert [r["text"] for r in records] == ["Parte 1/3", "Parte 2/3", "Parte 3/3"]
    assert "reply" not in records[0] or records[0]["reply"] is None
    for record, root, parent in ((records[1], first, first), (records[2], first, second)):
        assert {k: record["reply"]["root"][k] for k in ("uri", "cid")} == strong(root)
        assert {k: record["reply"]["parent"][k] for k in ("uri", "cid")} == strong(parent)


def test_an_italian_post_with_links_facets_language_and_card(
    fake: FakePds, poster: BlueskyPoster
) -> None:
    page = "https://briefs.example.org/it/2025-03-04-bilancio/"
    source = "https://example.org/perché?x=1"
    text = f"Bilancio UE: è già tempo di scelte 👍🏽 (fonte: {source}). Città, libertà…\n\n{page}"
    card = LinkCard(page, "Bilancio UE: è già tempo", "Le scelte della Commissione, già à la carte")

    ref = poster.post(text, lang="it", reply=None, idempotency_key="k", card=card)

    assert ref.id and ref.cid
    [body] = fake.records
    record = body["record"]
    assert record["text"] == text
    assert record["langs"] == ["it"]
    raw = text.encode()
    links = [
        (raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"])
        for f in record["facets"]
    ]
    assert links == [
        (source, [{"$type": "app.bsky.richtext.facet#link", "uri": source}]),
        (page, [{"$type": "app.bsky.richtext.facet#link", "uri": page}]),
    ]
    # the offsets are bytes, not characters: è, à and the emoji come before the links
    assert record["facets"][0]["index"]["byteStart"] != text.index(source)
    external = record["embed"]["external"]
    assert record["embed"]["$type"] == "app.bsky.embed.external"
    assert (external["uri"], external["title"], external["description"]) == (
        page,
        card.title,
        card.description,
    )
    assert "thumb" not in external or external["thumb"] is None


def test_a_reply_needs_the_cid(fake: FakePds, poster: BlueskyPoster) -> None:
    first = post(poster, "one")
    bare = PostRef(first.id)  # a ledger row without its CID
    with pytest.raises(PostFailed, match="CID") as caught:
        post(poster, "two", Reply(parent=bare, root=first))
    assert not caught.value.retry and len(fake.records) == 1


def test_link_spans_leave_out_the_sentence_punctuation() -> None:
    text = "see https://a.example/x. and (https://b.example/y) or https://c.example/(z)! https://"
    assert [text[s:e] for s, e in link_spans(text)] == [
        "https://a.example/x",
        "https://b.example/y",
        "https://c.example/(z)",
    ]


def test_429_says_when_then_the_post_goes_through(fake: FakePds, poster: BlueskyPoster) -> None:
    reset = int(time.time()) + 120
    fake.fail(CREATE, 429, headers={"ratelimit-reset": str(reset)}, error="RateLimitExceeded")
    with pytest.raises(RateLimited) as caught:
        post(poster, "hello")
    assert caught.value.reset_at == reset
    assert fake.records == []
    ref = post(poster, "hello")
    assert [b["record"]["text"] for b in fake.records] == ["hello"] and ref.cid
    assert fake.calls.count(LOGIN) == 1


def test_429_with_retry_after_only(fake: FakePds, poster: BlueskyPoster) -> None:
    fake.fail(LOGIN, 429, headers={"Retry-After": "30"}, error="RateLimitExceeded")
    before = time.time()
    with pytest.raises(RateLimited) as caught:
        poster.check()
    assert caught.value.reset_at is not None
    assert before + 30 <= caught.value.reset_at <= time.time() + 30
    assert poster.check() == "desk.example.org"


def test_missing_credentials_are_named(fake: FakePds) -> None:
    settings = SocialSettings()
    with pytest.raises(CredentialsRejected, match=PASSWORD_VAR):
        from_account(account(fake.url), settings, {})
    with pytest.raises(CredentialsRejected, match=PASSWORD_VAR):
        BlueskyPoster.from_account(account(fake.url), settings, {PASSWORD_VAR: "  "})
    with pytest.raises(CredentialsRejected, match='"handle"'):
        from_account(account(fake.url, handle=None), settings, {PASSWORD_VAR: "x"})
    assert fake.calls == []


def test_a_refused_login_rejects_the_credentials(fake: FakePds) -> None:
    settings = SocialSettings(timeout_seconds=2)
    wrong = from_account(account(fake.url), settings, {PASSWORD_VAR: "wrong-pass-word-here"})
    with pytest.raises(CredentialsRejected, match="401"):
        wrong.check()
    with pytest.raises(CredentialsRejected, match="401"):
        post(wrong, "hello")
    assert fake.records == []


def test_an_expired_session_logs_in_again_once(fake: FakePds, poster: BlueskyPoster) -> None:
    post(poster, "one")
    fake.revoke_sessions()  # the PDS answers 400 ExpiredToken: nothing written
    post(poster, "two")
    assert [b["record"]["text"] for b in fake.records] == ["one", "two"]
    assert fake.calls == [LOGIN, CREATE, CREATE, LOGIN, CREATE]


def test_a_read_timeout_after_sending_may_have_posted(fake: FakePds) -> None:
    poster = poster_for(fake, timeout=0.3)
    poster.check()
    fake.stall(CREATE)
    with pytest.raises(MaybePosted, match="ReadTimeout"):
        post(poster, "hello")
    assert [b["record"]["text"] for b in fake.records] == ["hello"]  # it reached the PDS
    poster.close()


def test_a_timed_out_login_is_not_a_maybe(fake: FakePds) -> None:
    poster = poster_for(fake, timeout=0.3)
    fake.stall(LOGIN)
    with pytest.raises(PostFailed) as caught:
        post(poster, "hello")
    assert caught.value.retry and not isinstance(caught.value, MaybePosted)
    assert fake.records == []


def test_no_server_is_a_failure_to_retry() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = SocialSettings(timeout_seconds=2)
    poster = from_account(account(f"http://127.0.0.1:{port}"), settings, {PASSWORD_VAR: "pw"})
    with pytest.raises(PostFailed, match="cannot reach") as caught:
        post(poster, "hello")
    assert caught.value.retry
    with pytest.raises(PostFailed, match="cannot reach"):
        poster.check()


@pytest.mark.parametrize(
    ("status", "error", "outcome", "retry"),
    [
        (400, "InvalidRequest", PostFailed, False),
        (503, "ServiceUnavailable", PostFailed, True),  # unavailable: nothing was written
        (500, "InternalServerError", MaybePosted, None),  # may come after the write
        (502, "", MaybePosted, None),  # a proxy: the PDS may have had it
    ],
)
def test_status_answers_to_a_post(
    fake: FakePds,
    poster: BlueskyPoster,
    status: int,
    error: str,
    outcome: type[Exception],
    retry: bool | None,
) -> None:
    fake.fail(CREATE, status, error=error, message="Invalid app.bsky.feed.post record")
    with pytest.raises(outcome) as caught:
        post(poster, "hello")
    assert type(caught.value) is outcome
    if retry is not None:
        assert isinstance(caught.value, PostFailed) and caught.value.retry is retry
    assert str(status) in str(caught.value) and "\n" not in str(caught.value)


def test_a_gateway_timeout_may_have_posted(fake: FakePds, poster: BlueskyPoster) -> None:
    fake.fail(CREATE, 504, error="GatewayTimeout")
    with pytest.raises(MaybePosted, match="504"):
        post(poster, "hello")
