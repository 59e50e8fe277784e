"""A brief in one language is mailed only to the subscribers who can read it, unless its
front matter says ``audience: everyone`` or the send says ``--to-everyone``.

End to end: ``briefcast publish`` (dry run, then ``--send``) into an aiosmtpd relay, with
active subscribers of every edition (en, it, both) and some who are not active; each
recipient counted, each edition checked. Then the same choice through ``deliver`` with
batches (the review flow's way), and the front-matter key refused when it is not known."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from delivery_helpers import (
    SECRET,
    add_subscribers,
    cli_env,
    ledger_rows,
    make_settings,
    subscriber_rows,
)
from smtp_servers import Recorder, smtp_server

from briefcast import pipeline
from briefcast.delivery import audience, deliver, ledger
from briefcast.errors import BriefError
from briefcast.render.email import build_emails
from briefcast.store import Store

ENGLISH = """---
id: english-only{n}
title: An English-only brief
lang: en
date: 2026-01-07 18:23
{extra}---
Leaders from 35 countries met in Paris on Tuesday.
"""

BILINGUAL = """---
id: bilingual
title:
  en: Paris agrees
  it: Intesa a Parigi
date: 2026-01-08 18:23
---
[en]
Leaders from 35 countries met in Paris on Tuesday.

[it]
I leader di 35 paesi si sono incontrati a Parigi martedì.
"""


def run(tmp_path: Path, env: dict[str, str], *args: str | Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "briefcast.cli", "publish", *map(str, args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def by_language(store: Store, recipients: Counter[str]) -> Counter[str]:
    """How many messages the relay took, per subscriber language (each address once)."""
    rows = subscriber_rows(store)
    assert set(recipients.values()) <= {1}, recipients  # nobody mailed twice
    return Counter(rows[address][1] for address in recipients)


@pytest.mark.usefixtures("use_prefect_api")  # the session's Prefect server
def test_a_one_language_brief_reaches_its_readers_only(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    add_subscribers(store, 9)  # 3 en, 3 it, 3 both
    add_subscribers(store, 3, status="unsubscribed", start=100)
    for n, extra in (("", ""), ("-everyone", "audience: everyone\n"), ("-cli", "")):
        (tmp_path / f"english{n}.md").write_text(ENGLISH.format(n=n, extra=extra), "utf-8")
    (tmp_path / "bilingual.md").write_text(BILINGUAL, "utf-8")
    recorder = Recorder()
    with smtp_server(recorder) as port:
        env = cli_env(tmp_path, port, BRIEFCAST_DELIVERY__UNSUBSCRIBE_SECRET=SECRET)
        channel = ("--channels", "email", "--out", tmp_path / "out")

        # The dry run says whom --send would mail, per edition; nothing is sent.
        out = run(tmp_path, env, "english.md", "english-everyone.md", "bilingual.md", *channel)
        assert (
            "english-only  email for 6 subscribers: en 3, both 3; "
            "not mailed: it subscribers (not in their language)"
        ) in out
        assert "english-only-everyone  email for 9 subscribers: en 3, it 3, both 3\n" in out
        assert "bilingual  email for 9 subscribers: en 3, it 3, both 3\n" in out
        assert recorder.messages() == []

        # One send of both English briefs. English only: the en and both subscribers, chosen
        # by the query: the it subscribers have no row in the ledger at all. With
        # "audience: everyone" in its front matter: all nine, each in their own edition.
        out = run(tmp_path, env, "english.md", "english-everyone.md", "--send", *channel)
        mailed = recorder.messages()
        for brief_id, expected in (
            ("english-only", Counter(en=3, both=3)),
            ("english-only-everyone", Counter(en=3, it=3, both=3)),
        ):
            of_brief = [m for m in mailed if f"<{brief_id}." in m.message["Message-ID"]]
            assert by_language(store, Counter(m.rcpt_to for m in of_brief)) == expected
            assert Counter(str(r["edition"]) for r in ledger_rows(store, brief_id).values()) == (
                expected
            )
            for m in of_brief:  # each in the edition of their language
                language = subscriber_rows(store)[m.rcpt_to][1]
                assert f"<{brief_id}.{language}." in m.message["Message-ID"]
        assert "for 6 subscribers: en 3, both 3; not mailed: it subscribers" in out
        assert "for 9 subscribers: en 3, it 3, both 3" in out

        # --to-everyone on the send does the same for a brief that does not say it.
        before = len(recorder.messages())
        run(tmp_path, env, "english-cli.md", "--send", "--to-everyone", *channel)
        mailed = recorder.messages()[before:]
        assert by_language(store, Counter(m.rcpt_to for m in mailed)) == Counter(en=3, it=3, both=3)
    store.engine.dispose()


def test_batches_hold_only_the_audience(tmp_path: Path, database_url: str) -> None:
    """The review flow's way: batches cut from the audience's subscribers, each sent alone
    (on SQLite and PostgreSQL)."""
    store = Store(database_url)
    add_subscribers(store, 30)  # 10 of each edition
    brief = ENGLISH.format(n="", extra="")
    path = tmp_path / "english.md"
    path.write_text(brief, "utf-8")
    recorder = Recorder()
    with smtp_server(recorder) as port:
        settings = make_settings(port)
        (english,) = pipeline.read([path], settings)
        readers = audience.of_brief(english, settings)
        assert readers.left_out == ("it",)
        assert audience.reach(store, readers, ["en", "it", "both"]) == {"en": 10, "both": 10}
        ranges = ledger.subscriber_batches(store, 7, readers.where())
        assert len(ranges) == 3  # 7 + 7 + 6 readers; the it subscribers are in no batch
        mails = build_emails(english, settings)
        summaries = [
            deliver(store, english.id, mails, settings, subscribers=r, audience=readers)
            for r in ranges
        ]
    assert sum(s.this_run["sent"] for s in summaries) == 20
    assert by_language(store, recorder.count()) == Counter(en=10, both=10)
    assert sum(sum(s.editions.values()) for s in summaries) == 20
    assert all(s.left_out == ["it"] for s in summaries)
    store.engine.dispose()


@pytest.mark.parametrize("value", ["all", "Everyone", "[everyone]", "1"])
def test_an_unknown_audience_is_refused_in_one_line(tmp_path: Path, value: str) -> None:
    path = tmp_path / "brief.md"
    path.write_text(ENGLISH.format(n="", extra=f"audience: {value}\n"), "utf-8")
    with pytest.raises(BriefError) as caught:
        pipeline.read([path], make_settings())
    message = str(caught.value)
    assert "audience" in message and "readers, everyone" in message, message
    assert "\n" not in message
