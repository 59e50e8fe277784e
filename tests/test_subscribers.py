"""Subscribers: import/export, uniqueness, unsubscribes, the sender's walk, the CLI."""

from __future__ import annotations

import csv
import os
import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from sqlalchemy import delete, event, func, insert, select
from typer.testing import CliRunner

from briefcast import subscribers as subs
from briefcast import subscribers_csv as subs_csv
from briefcast.cli.subscribers import subscribers_app
from briefcast.config import Settings, SiteSettings
from briefcast.errors import UserError
from briefcast.store import Store, deliveries, subscribers

SETTINGS = Settings(site=SiteSettings(languages=["en", "it"]))


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    with Store(database_url) as store:
        yield store


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def by_email(store: Store) -> dict[str, subs.Subscriber]:
    return {s.email: s for s in subs.list_subscribers(store)}


MIXED = """\
email,language,name
anna@example.org,en,Anna
Bad Address,it,Nobody
luca@example.org,IT,  Luca   Rossi
marco@example.org,fr,Marco
ANNA@Example.org,it,Anna again
solo@example.org
  giulia@example.org ,  Both , Giulia
"""


def test_import_keeps_good_rows_and_reports_rejects_by_line(store: Store, tmp_path: Path) -> None:
    report = subs_csv.import_csv(store, write(tmp_path / "s.csv", MIXED), SETTINGS)

    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)
    rejected = {r.line: r.reason for r in report.rejected}
    assert sorted(rejected) == [3, 5, 6, 7]
    assert "invalid address" in rejected[3]
    assert "unknown language 'fr'" in rejected[5]
    assert "duplicate of line 2" in rejected[6]
    assert "missing column: language" in rejected[7]

    rows = by_email(store)
    assert sorted(rows) == ["anna@example.org", "giulia@example.org", "luca@example.org"]
    assert rows["luca@example.org"].language == "it"
    assert rows["luca@example.org"].name == "Luca Rossi"
    assert rows["giulia@example.org"].language == "both"
    assert all(s.status == "active" for s in rows.values())


def test_importing_twice_changes_nothing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", MIXED)
    subs_csv.import_csv(store, path, SETTINGS)
    before = subs.list_subscribers(store)

    again = subs_csv.import_csv(store, path, SETTINGS)

    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert subs.list_subscribers(store) == before


def test_import_updates_changed_rows(store: Store, tmp_path: Path) -> None:
    subs_csv.import_csv(
        store, write(tmp_path / "a.csv", "email,language\na@example.org,en\n"), SETTINGS
    )
    report = subs_csv.import_csv(
        store, write(tmp_path / "b.csv", "email,language,name\nA@example.org,it,Ada\n"), SETTINGS
    )
    assert (report.created, report.updated) == (0, 1)
    (sub,) = subs.list_subscribers(store)
    assert (sub.language, sub.name) == ("it", "Ada")


def test_bom_semicolons_and_windows_1252(store: Store, tmp_path: Path) -> None:
    subs_csv.import_csv(
        store, write(tmp_path / "bom.csv", "\ufeffEmail,Language\r\na@example.org,en\r\n"), SETTINGS
    )
    excel_it = write(
        tmp_path / "it.csv", "email;language;name\nb@example.org;it;Niccolò\n", "cp1252"
    )
    report = subs_csv.import_csv(store, excel_it, SETTINGS)
    assert report.created == 1 and not report.rejected
    assert by_email(store)["b@example.org"].name == "Niccolò"
    unicode_text = write(tmp_path / "u.txt", "email\tlanguage\nc@example.org\tboth\n", "utf-16")
    assert subs_csv.import_csv(store, unicode_text, SETTINGS).created == 1
    assert set(by_email(store)) == {"a@example.org", "b@example.org", "c@example.org"}


def test_a_control_character_in_a_name_rejects_only_its_row(store: Store, tmp_path: Path) -> None:
    text = "email\tlanguage\tname\na@example.org\ten\tNul\x00Name\nb@example.org\ten\tOk\n"
    report = subs_csv.import_csv(store, write(tmp_path / "u.txt", text, "utf-16"), SETTINGS)
    assert report.created == 1
    assert [(r.line, r.reason) for r in report.rejected] == [
        (2, "name contains control characters")
    ]
    assert list(by_email(store)) == ["b@example.org"]


def test_an_address_in_any_case_is_one_subscriber(store: Store) -> None:
    first = subs.add(store, "Mario.Rossi@Example.ORG", "it", settings=SETTINGS)
    second = subs.add(store, "mario.rossi@example.org", "en", name="Mario", settings=SETTINGS)

    assert first.created and not second.created
    assert first.id == second.id
    (sub,) = subs.list_subscribers(store)
    assert (sub.email, sub.language, sub.name) == ("mario.rossi@example.org", "en", "Mario")


def test_add_refuses_bad_address_and_language(store: Store) -> None:
    with pytest.raises(ValueError, match="invalid address"):
        subs.add(store, "not-an-address", "en", settings=SETTINGS)
    with pytest.raises(ValueError, match="unknown language"):
        subs.add(store, "a@example.org", "de", settings=SETTINGS)
    assert subs.list_subscribers(store) == []


def test_removed_subscriber_is_never_walked_nor_reactivated(store: Store, tmp_path: Path) -> None:
    kept = subs.add(store, "kept@example.org", "en", settings=SETTINGS)
    gone = subs.add(store, "gone@example.org", "en", settings=SETTINGS)

    assert subs.remove(store, "GONE@example.org")
    assert [s.id for s in subs.iter_active(store)] == [kept.id]

    again = subs.add(store, "gone@example.org", "it", settings=SETTINGS)
    assert (again.id, again.status, again.not_reactivated) == (gone.id, "unsubscribed", True)
    path = write(tmp_path / "old.csv", "email,language,status\ngone@example.org,it,active\n")
    assert subs_csv.import_csv(store, path, SETTINGS).not_reactivated == 1
    assert [s.id for s in subs.iter_active(store)] == [kept.id]
    assert not subs.remove(store, "nobody@example.org")


def test_purge_only_without_ledger_rows(store: Store) -> None:
    subs.add(store, "never@example.org", "en", settings=SETTINGS)
    mailed = subs.add(store, "mailed@example.org", "en", settings=SETTINGS)
    with store.engine.begin() as conn:
        conn.execute(
            insert(deliveries).values(
                brief_id="b1",
                subscriber_id=mailed.id,
                edition="en",
                status="sent",
                updated_at=datetime.now(UTC),
            )
        )

    assert subs.purge(store, "never@example.org")
    with pytest.raises(subs.SubscriberError, match="cannot be purged"):
        subs.purge(store, "mailed@example.org")
    assert list(by_email(store)) == ["mailed@example.org"]


def test_iter_active_walks_in_batches_each_once_in_id_order(store: Store) -> None:
    # 2,500 active subscribers, with every inactive status interleaved between them.
    inactive = ["pending", "unsubscribed", "bounced", "complained"]
    now = datetime.now(UTC)
    rows = []
    for i in range(3000):
        status = inactive[(i // 6) % 4] if i % 6 == 5 else "active"
        rows.append(
            {
                "email": f"s{i}@example.org",
                "language": "en" if i % 2 else "it",
                "status": status,
                "hard_bounces": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    with store.engine.begin() as conn:
        conn.execute(insert(subscribers), rows)
    selects: list[str] = []
    event.listen(
        store.engine,
        "before_cursor_execute",
        lambda _conn, _cur, statement, *_: (
            selects.append(statement) if statement.lstrip().upper().startswith("SELECT") else None
        ),
    )

    walked = list(subs.iter_active(store, batch=1000))

    assert len(selects) == 3  # 1,000 + 1,000 + 500: never the whole table at once
    ids = [s.id for s in walked]
    assert len(ids) == len(set(ids)) == 2500
    assert ids == sorted(ids)
    assert {s.email for s in walked} == {r["email"] for r in rows if r["status"] == "active"}
    assert {s.status for s in walked} == {"active"}

    en_only = list(subs.iter_active(store, language="en", batch=100))
    assert en_only and {s.language for s in en_only} == {"en"}
    assert len(en_only) == len([s for s in walked if s.language == "en"])


def test_hard_bounces_mark_bounced_at_threshold(store: Store) -> None:
    sub = subs.add(store, "b@example.org", "en", settings=SETTINGS)
    assert not subs.record_hard_bounce(store, sub.id, threshold=2)
    assert subs.record_hard_bounce(store, sub.id, threshold=2)
    assert not subs.record_hard_bounce(store, sub.id, threshold=2)
    (row,) = subs.list_subscribers(store)
    assert (row.status, row.hard_bounces) == ("bounced", 3)
    assert list(subs.iter_active(store)) == []
    assert subs.set_status(store, sub.id, "active")
    assert [s.id for s in subs.iter_active(store)] == [sub.id]


def test_export_then_import_round_trips(store: Store, tmp_path: Path) -> None:
    subs_csv.import_csv(store, write(tmp_path / "s.csv", MIXED), SETTINGS)
    subs.add(store, "pending@example.org", "en", name='Quote "Comma, Name"', status="pending",
             settings=SETTINGS)  # fmt: skip
    subs.remove(store, "luca@example.org")
    exported = tmp_path / "export.csv"
    assert subs_csv.export_csv(store, exported) == 4

    other = Store(f"sqlite:///{tmp_path}/other.db")
    report = subs_csv.import_csv(other, exported, SETTINGS)

    assert report.created == 4 and not report.rejected
    fields = lambda s: (s.email, s.language, s.name, s.status)  # noqa: E731
    assert [fields(s) for s in subs.list_subscribers(other)] == [
        fields(s) for s in subs.list_subscribers(store)
    ]
    assert subs_csv.import_csv(store, exported, SETTINGS).unchanged == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary"),
        (b"", "is empty"),
        (b"  \n\n", "is empty"),
        (b"anna@example.org,en\nluca@example.org,it\n", "looks like data, not a header"),
        (b"mail,lang\nanna@example.org,en\n", "no email or language column"),
    ],
)
def test_bad_file_raises_one_clear_error(
    store: Store, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(subs.ImportFileError, match=message) as info:
        subs_csv.import_csv(store, path, SETTINGS)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    assert subs.list_subscribers(store) == []


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+1 555", "-2", "@SUM(A1)", "\tx", "\rx", "'=x", "''-x", "'", "'a", "a=b", "", "Ada"],
)
def test_neutralized_cells_read_back_exactly(value: str) -> None:
    cell = subs_csv._neutralize(value)
    assert not cell.startswith(subs_csv.FORMULA_START)
    assert subs_csv._unneutralize(cell) == value
    assert (cell == value) == (not value.lstrip("'").startswith(subs_csv.FORMULA_START))


def test_import_redoes_a_batch_another_import_got_into_first(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "s.csv",
        "email,language,name\na@example.org,en,Ann\nb@example.org,it,Bea\nc@example.org,en,Cy\n",
    )
    inserts: list[str] = []

    def other_import_first(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Between this import's SELECT (b is not there) and its INSERT, another import
        # commits b: what two imports of one file at once do to each other.
        if not statement.lstrip().upper().startswith("INSERT INTO SUBSCRIBERS"):
            return
        inserts.append(statement)
        if len(inserts) == 1:
            now = datetime.now(UTC)
            with Store(database_url) as other, other.engine.begin() as conn:
                conn.execute(
                    insert(subscribers).values(
                        email="b@example.org",
                        name="Other",
                        language="en",
                        status="active",
                        hard_bounces=0,
                        created_at=now,
                        updated_at=now,
                    )
                )

    event.listen(store.engine, "before_cursor_execute", other_import_first)
    report = subs_csv.import_csv(store, path, SETTINGS)

    assert len(inserts) == 2  # the first was refused on b; the batch was done again
    assert (report.created, report.updated, report.unchanged) == (2, 1, 0)
    assert not report.rejected
    rows = subs.list_subscribers(store)
    assert sorted((s.email, s.language, s.name) for s in rows) == [
        ("a@example.org", "en", "Ann"),
        ("b@example.org", "it", "Bea"),  # the file's values, over what the other wrote
        ("c@example.org", "en", "Cy"),
    ]


# --- CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BRIEFCAST_DATABASE__URL", database_url)
    monkeypatch.setenv("BRIEFCAST_SITE__LANGUAGES", '["en", "it"]')
    app = typer.Typer()
    app.add_typer(subscribers_app, name="subscribers")
    runner = CliRunner()

    def run(*args: str | Path):
        return runner.invoke(app, ["subscribers", *map(str, args)])

    return run


def test_cli_import_prints_counts_and_rejects(cli, tmp_path: Path) -> None:
    result = cli("import", write(tmp_path / "s.csv", MIXED))
    assert result.exit_code == 0, result.output
    assert "3 created, 0 updated, 0 unchanged, 4 rejected" in result.stdout
    assert "unknown language 'fr'" in result.stdout

    again = cli("import", tmp_path / "s.csv")
    assert "0 created, 0 updated, 3 unchanged" in again.stdout


@pytest.mark.parametrize(
    "content", [b"\x00\x01\x02\xffbinary\x00junk", b"anna@example.org,en\n", b""]
)
def test_cli_bad_file_is_one_line_exit_2(cli, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = cli("import", path)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_missing_file_is_one_line_exit_2(cli, tmp_path: Path) -> None:
    result = cli("import", tmp_path / "nope.csv")
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_cli_add_remove_list_export(cli, tmp_path: Path) -> None:
    assert cli("add", "Ada@Example.org", "--language", "both", "--name", "Ada").exit_code == 0
    assert cli("add", "bo@example.org", "--language", "it", "--status", "pending").exit_code == 0

    bad = cli("add", "nope", "--language", "en")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: invalid address")
    assert cli("add", "x@example.org", "--language", "de").exit_code == 2
    assert cli("add", "x@example.org", "--language", "en", "--status", "bounced").exit_code == 2

    assert cli("remove", "ADA@example.org").exit_code == 0
    missing = cli("remove", "who@example.org")
    assert missing.exit_code == 2 and "no subscriber" in missing.stderr

    listed = cli("list", "--status", "unsubscribed")
    assert listed.exit_code == 0 and "ada@example.org" in listed.stdout
    assert "bo@example.org" not in listed.stdout
    assert cli("list", "--status", "gone").exit_code == 2

    exported = cli("export", "-")
    assert exported.exit_code == 0
    assert exported.stdout.splitlines() == [
        "email,language,name,status",
        "ada@example.org,both,Ada,unsubscribed",
        "bo@example.org,it,,pending",
    ]
    assert cli("export", tmp_path / "out.csv").exit_code == 0
    assert (tmp_path / "out.csv").read_text().splitlines() == exported.stdout.splitlines()


def test_cli_export_to_a_directory_or_a_missing_folder_is_one_line_exit_2(
    cli, tmp_path: Path
) -> None:
    assert cli("add", "a@example.org", "--language", "en").exit_code == 0
    for target in (tmp_path, tmp_path / "missing" / "out.csv"):
        result = cli("export", target)
        assert result.exit_code == 2
        assert result.stderr.startswith(f"error: {target}: cannot be written")
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output
    assert not (tmp_path / "missing").exists()


FORMULAS = {  # address -> name
    "ada@example.org": "Ada",
    "link@example.org": '=HYPERLINK("http://evil","x")',
    "phone@example.org": "+1 555",
    "minus@example.org": "-2",
    "at@example.org": "@SUM(A1)",
    "quote@example.org": "'=already quoted",
    "-dash@example.org": "Dash",
    "+plus@example.org": "Plus",
}


def test_cli_export_neutralizes_formulas_and_imports_back(
    cli, database_url: str, tmp_path: Path
) -> None:
    for address, name in FORMULAS.items():
        # "--": an address that starts with "-" is not an option.
        assert cli("add", "--language", "en", f"--name={name}", "--", address).exit_code == 0
    exported = tmp_path / "export.csv"
    assert cli("export", exported).exit_code == 0

    with exported.open(newline="", encoding="utf-8") as handle:
        cells = {row[0]: row[2] for row in csv.reader(handle)}
    assert cells == {
        "email": "name",
        "ada@example.org": "Ada",
        "link@example.org": '\'=HYPERLINK("http://evil","x")',
        "phone@example.org": "'+1 555",
        "minus@example.org": "'-2",
        "at@example.org": "'@SUM(A1)",
        "quote@example.org": "''=already quoted",
        "'-dash@example.org": "Dash",
        "'+plus@example.org": "Plus",
    }

    with Store(database_url) as store:
        before = sorted(
            (s.email, s.language, s.name, s.status) for s in subs.list_subscribers(store)
        )
        with store.engine.begin() as conn:
            conn.execute(delete(subscribers))
    result = cli("import", exported)
    assert result.exit_code == 0, result.output
    assert "8 created, 0 updated, 0 unchanged, 0 rejected" in result.stdout
    with Store(database_url) as store:
        after = sorted(
            (s.email, s.language, s.name, s.status) for s in subs.list_subscribers(store)
        )
    assert after == before
    assert {email: name for email, _, name, _ in after} == FORMULAS


def briefcast(db: Path, *args: str | Path, env: dict[str, str] | None = None, **kw: Any):
    """The real command in a child process: a hang or a memory hog cannot take the tests
    with it."""
    return subprocess.Popen(
        [sys.executable, "-m", "briefcast.cli", "subscribers", *map(str, args)],
        env={
            **os.environ,
            "BRIEFCAST_DATABASE__URL": f"sqlite:///{db}",
            "BRIEFCAST_SITE__LANGUAGES": '["en", "it"]',
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _two_gigabytes_at_most() -> None:
    # Reading /dev/zero without a bound then fails here, not by starving the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("kind", ["fifo", "device", "too big"])
def test_cli_import_refuses_special_and_oversized_files(tmp_path: Path, kind: str) -> None:
    env: dict[str, str] = {}
    if kind == "fifo":
        path = tmp_path / "pipe.csv"
        os.mkfifo(path)  # with no writer: reading it would wait forever
        reason = "is a FIFO (named pipe), not a file"
    elif kind == "device":
        path = Path("/dev/zero")
        reason = "is a character device, not a file"
    else:
        path = write(tmp_path / "big.csv", "email,language\na@example.org,en\n")
        env["BRIEFCAST_INPUT__MAX_CSV_BYTES"] = "20"
        reason = f"is {path.stat().st_size} bytes, over the 20-byte limit"
    db = tmp_path / "b.db"

    proc = briefcast(db, "import", path, env=env, preexec_fn=_two_gigabytes_at_most)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()

    assert proc.returncode == 2, (stdout, stderr)
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [f"error: {path}: {reason}"]
    with Store(f"sqlite:///{db}") as store:
        assert subs.list_subscribers(store) == []


def test_two_cli_imports_of_one_file_at_once_both_succeed(tmp_path: Path) -> None:
    lines = [f"person{i:04}@example.org,{'en' if i % 2 else 'it'},Person {i}" for i in range(2000)]
    path = write(tmp_path / "same.csv", "email,language,name\n" + "\n".join(lines) + "\n")
    db = tmp_path / "b.db"
    # The database exists already: this is about the import, not two first-ever starts.
    Store(f"sqlite:///{db}").engine.dispose()

    procs = [briefcast(db, "import", path) for _ in range(2)]
    results = []
    try:
        for proc in procs:
            results.append(proc.communicate(timeout=180))
    finally:
        for proc in procs:
            proc.kill()

    created = 0
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        counts = re.search(r"(\d+) created, (\d+) updated, (\d+) unchanged, (\d+) rejected", stdout)
        assert counts, stdout
        new, updated, unchanged, rejected = map(int, counts.groups())
        assert (new + unchanged, updated, rejected) == (2000, 0, 0)
        created += new
    assert created == 2000
    with Store(f"sqlite:///{db}") as store, store.engine.connect() as conn:
        total, distinct = conn.execute(
            select(func.count(), func.count(subscribers.c.email.distinct()))
        ).one()
    assert total == distinct == 2000
