"""Settings: every problem with the file, a variable or a value is one line naming it.

Through the CLI where users meet them (exit 2, one line, nothing written), and the full
range of values through ``load_settings()`` in-process, which is faster.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_cli import SEEDS, briefcast, one_line_error

from briefcast import config
from briefcast.config import Settings, load_settings
from briefcast.errors import ConfigError

CONFIG = "config/x.toml"  # relative to the command's working directory, as a user writes it


def write_config(folder: Path, text: str | bytes) -> Path:
    path = folder / CONFIG
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def refused(tmp_path: Path, env: dict[str, str], *args: str | Path) -> str:
    """The one error line of a publish (or ``args``) that must write nothing."""
    line = one_line_error(briefcast(*(args or ("publish", SEEDS[0])), cwd=tmp_path, env=env))
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "b.db").exists()
    assert line.startswith("error: configuration: ")
    assert line.count("configuration:") == 1
    assert "validation error" not in line
    return line.removeprefix("error: configuration: ")


# --- through the CLI ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '[DELIVERY]\nunsubscribe_secret = "from-the-file"\n',
        '[Delivery]\nUNSUBSCRIBE_SECRET = "from-the-file"\n',
        '[SMTP]\nPassword = "from-the-file"\n',
    ],
)
def test_a_secret_in_the_file_is_refused_whatever_its_case(tmp_path: Path, text: str) -> None:
    write_config(tmp_path, text)
    line = refused(tmp_path, {"BRIEFCAST_CONFIG": CONFIG})
    assert line.startswith(f"{CONFIG}: [")
    assert "must not be in a file" in line
    assert "__UNSUBSCRIBE_SECRET in the environment" in line or "__PASSWORD in the env" in line


BAD_FILES: dict[str, tuple[str | bytes | None, str]] = {
    "missing": (None, "no such file (named by BRIEFCAST_CONFIG)"),
    "directory": ("dir", "is a directory, not a file"),
    "fifo": ("fifo", "is a FIFO (named pipe), not a file"),
    "too big": (b"#" * 1_000_001, "over the 1,000,000-byte limit"),
    "not toml": ("[smtp\nhost = 1\n", "is not valid TOML: Expected ']'"),
    "not utf-8": (b'[site]\nname = "Caf\xe9"\n', "is not UTF-8 text (byte 0xe9 on line 2)"),
    # tomllib recurses per level: this was "RecursionError (this is a bug)", exit 1.
    "nested 500 deep": ("x = " + "[" * 500 + "]" * 500 + "\n", "is not valid TOML: nested too"),
    "inline tables 500 deep": ("x = " + "{a = " * 500 + "1" + "}" * 500 + "\n", "nested too"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_named_file_that_cannot_be_read_is_one_line(tmp_path: Path, case: str) -> None:
    content, reason = BAD_FILES[case]
    path = tmp_path / CONFIG
    path.parent.mkdir()
    if content == "dir":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)  # nobody writes to it: reading it would block forever
    elif content is not None:
        write_config(tmp_path, content)
    line = refused(tmp_path, {"BRIEFCAST_CONFIG": CONFIG}, "subscribers", "list")
    assert line.startswith(f"{CONFIG}: ") and reason in line, line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[smtpp]\nhost = "relay"\n', "unknown section [smtpp] (did you mean [smtp]?)"),
        ('[smtp]\nhots = "relay"\n', 'unknown key "hots" in [smtp] (did you mean "host"?)'),
        (
            "[site]\nport = 25\n",
            'unknown key "port" in [site] (it belongs in [smtp] or [workflow])',
        ),
        ('[smtp]\nport = "abc"\n', "[smtp] port: Input should be a valid integer"),
        ('[site]\ntimezone = "Europe/Roma"\n', '[site] timezone: "Europe/Roma" is not an IANA'),
        ('[site]\nlanguages = ["en", "../x"]\n', '[site] languages: "../x" is not a lower-case'),
    ],
)
def test_a_wrong_name_or_value_in_the_file_names_it(
    tmp_path: Path, text: str, message: str
) -> None:
    write_config(tmp_path, text)
    line = refused(tmp_path, {"BRIEFCAST_CONFIG": CONFIG})
    assert line.startswith(f"{CONFIG}: {message}"), line


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BRIEFCAST_SMTP__HOTS": "relay"},
            'BRIEFCAST_SMTP__HOTS: unknown key "hots" in [smtp] '
            "(did you mean BRIEFCAST_SMTP__HOST?)",
        ),
        (
            {"BRIEFCAST_FEED__MAX_ITEMS": "5"},
            "BRIEFCAST_FEED__MAX_ITEMS: unknown section [feed] "
            "(did you mean BRIEFCAST_FEEDS__MAX_ITEMS?)",
        ),
        (
            {"BRIEFCAST_SMTP__PORT": "abc"},
            "BRIEFCAST_SMTP__PORT: [smtp] port: Input should be a valid integer",
        ),
        (
            {"BRIEFCAST_SITE__LANGUAGES": "en,it"},
            'BRIEFCAST_SITE__LANGUAGES: is not a JSON list (write it like ["a", "b"])',
        ),
        ({"BRIEFCAST_CONFIG": ""}, "BRIEFCAST_CONFIG is set but empty"),
    ],
)
def test_a_wrong_variable_names_itself(tmp_path: Path, env: dict[str, str], message: str) -> None:
    assert refused(tmp_path, env).startswith(message)


def test_other_briefcast_variables_are_not_settings_and_still_work(tmp_path: Path) -> None:
    env = {
        "BRIEFCAST_REQUIRE_CHROMIUM": "1",
        "BRIEFCAST_REQUIRE_POSTGRES": "1",
        "BRIEFCAST_DEBUG": "1",
        "BRIEFCAST_OTHERTOOL__THING": "x",  # nothing like a section of ours: not ours
    }
    result = briefcast("subscribers", "list", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "0 subscriber(s)" in result.stdout


# --- in-process: the range of values --------------------------------------------------------


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No BRIEFCAST_* variable from the shell running the tests; cwd a scratch folder."""
    for name in list(os.environ):
        if name.upper().startswith("BRIEFCAST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def load(environ: pytest.MonkeyPatch, text: str | bytes) -> Settings:
    environ.setenv("BRIEFCAST_CONFIG", str(write_config(Path.cwd(), text)))
    return load_settings()


def problem(environ: pytest.MonkeyPatch, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(environ, text)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert not message.startswith("configuration"), "the CLI adds that prefix"
    return message.removeprefix(f"{Path.cwd() / CONFIG}: ")


BAD_VALUES = {
    '[site]\nlanguages = ["EN"]': '[site] languages: "EN" is not a lower-case ISO 639',
    '[site]\nlanguages = ["en", "it/.."]': '[site] languages: "it/.." is not a lower-case',
    "[site]\nlanguages = []": "[site] languages: must name at least one language",
    '[site]\nlanguages = ["en", "it", "en"]': '[site] languages: "en" is listed twice',
    '[site]\nlanguages = ["xx"]': '[site] languages: "xx" is not a language code babel knows',
    '[site]\nlanguages = ["en", 3]': "[site] languages[1]: Input should be a valid string",
    '[site]\ntimezone = "Europe"': '[site] timezone: "Europe" is not an IANA time zone',
    '[site]\ntimezone = "../../etc/passwd"': "[site] timezone: ",
    '[site]\nbase_url = "briefs.example.org"': '[site] base_url: "briefs.example.org" is not',
    '[site]\nbase_url = "ftp://example.org"': "[site] base_url: ",
    '[site]\nbase_url = "https://example.org/?a=1"': "without query or fragment",
    '[email]\nunsubscribe_url = "https://x.org/u"': "[email] unsubscribe_url: must contain {token}",
    '[email]\nunsubscribe_url = "https://x.org/{token}/{x}"': "{x}: only {token} may be in braces",
    '[email]\nunsubscribe_url = "https://x.org/{token}/{}"': "only {token} may be in braces",
    '[email]\nunsubscribe_url = "https://x.org/{token}}"': "write {{ or }} for a literal brace",
    '[email]\nunsubscribe_url = "mailto:x@x.org?t={token}"': "not an absolute http(s) URL",
    '[email]\nfrom_address = "briefs"': '[email] from_address: "briefs" is not an email address',
    '[email]\nunsubscribe_mailto = "a@b@c.org"': "[email] unsubscribe_mailto: ",
    "[smtp]\nport = 0": "[smtp] port: Input should be greater than or equal to 1",
    "[smtp]\nport = 65536": "[smtp] port: Input should be less than or equal to 65535",
    "[feeds]\nmax_items = 10001": "[feeds] max_items: Input should be less than or equal to",
    "[input]\nmax_bytes = 100000001": "[input] max_bytes: Input should be less than or equal",
    '[input]\ndetect_languages = ["en", "zz"]': '[input] detect_languages: "zz" is not the',
    "[delivery]\nrate_per_second = inf": "[delivery] rate_per_second: Input should be a finite",
    "[delivery]\nbackoff_seconds = [60, nan]": "[delivery] backoff_seconds[1]: Input should be",
    "[delivery]\ntimeout_seconds = 0": "[delivery] timeout_seconds: Input should be greater",
    "smtp = 25": "[smtp]: Input should be a valid dictionary",
    'host = "relay"': '"host" is outside any section (it belongs in [smtp])',
    '[smtp]\nhost = "a"\n[SMTP]\nport = 25': "[smtp] and [SMTP] are one section; merge them",
    '[smtp]\nHOST = "relay"': 'unknown key "HOST" in [smtp] (did you mean "host"?)',
    '[smtp]\n"ho\\nst" = 1': r'unknown key "ho\nst" in [smtp]',
    '[site]\npassword = "x"': 'unknown key "password" in [site] (known: ',
    "[workflow]\nsends_at_once = 2": "[workflow]: sends_at_once (2) must be less than workers x "
    "runs_per_worker (2): sends wait for batches, which need a slot",
    "[workflow]\nworkers = 2\nruns_per_worker = 2\nsends_at_once = 4": "(4) must be less",
}


@pytest.mark.parametrize("text", sorted(BAD_VALUES))
def test_each_bad_value_is_one_line_naming_the_key(environ: pytest.MonkeyPatch, text: str) -> None:
    message = problem(environ, text + "\n")
    assert message.startswith(BAD_VALUES[text]) or BAD_VALUES[text] in message, message


def test_good_files_load(environ: pytest.MonkeyPatch) -> None:
    settings = load(
        environ,
        "\ufeff[SMTP]\n"  # a byte-order mark, a section in capitals: as before
        'host = "relay.example.org"\n'
        "[site]\n"
        'languages = ["en", "fr"]\n'
        'timezone = "America/Argentina/Buenos_Aires"\n'
        "[email]\n"
        'unsubscribe_url = "https://x.org/u?t={token}&l=1"\n'
        'reply_to = "Desk <desk@example.org>"\n',
    )
    assert settings.smtp.host == "relay.example.org"
    assert settings.site.languages == ["en", "fr"]
    assert settings.email.unsubscribe_url.format(token="t") == "https://x.org/u?t=t&l=1"
    environ.setenv("BRIEFCAST_CONFIG", str(config.DEFAULT_CONFIG))
    assert load_settings().site.languages == ["en", "it"]  # the repository's own file


def test_sends_at_once_leaves_a_slot_for_the_batches_of_the_workers_started_here(
    environ: pytest.MonkeyPatch,
) -> None:
    w = load(environ, "[workflow]\nworkers = 2\nruns_per_worker = 2\nsends_at_once = 3\n")
    assert w.workflow.sends_at_once == 3
    # No worker here (`briefcast worker` elsewhere): the fleet's slots are not known here.
    w = load(environ, "[workflow]\nworkers = 0\nsends_at_once = 5\n")
    assert w.workflow.sends_at_once == 5


def test_the_environment_beats_the_file_and_is_named_when_wrong(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("BRIEFCAST_smtp__port", "2525")  # any case, as pydantic-settings reads it
    assert load(environ, "[smtp]\nport = 25\n").smtp.port == 2525
    environ.setenv("BRIEFCAST_SITE__LANGUAGES", '["en", "EN"]')
    with pytest.raises(ConfigError, match=r'^BRIEFCAST_SITE__LANGUAGES: \[site\] languages: "EN"'):
        load_settings()
    environ.delenv("BRIEFCAST_SITE__LANGUAGES")
    environ.setenv("BRIEFCAST_SMTP", '{"hots": 1}')  # a whole section as JSON
    with pytest.raises(ConfigError, match=r"^BRIEFCAST_SMTP: \[smtp\] hots: Extra inputs"):
        load_settings()


def test_only_a_named_file_must_exist(environ: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An installed package without its config/briefcast.toml runs on the defaults.
    environ.setattr(config.settings, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    assert load_settings().email.from_address == "briefs@example.org"
    # Settings() itself still takes a missing file for the defaults (tests build it so).
    environ.setenv("BRIEFCAST_CONFIG", str(tmp_path / "absent.toml"))
    assert Settings().email.from_address == "briefs@example.org"
    with pytest.raises(ConfigError, match=r"absent\.toml: no such file"):
        load_settings()


def test_settings_itself_raises_value_errors(environ: pytest.MonkeyPatch) -> None:
    # Code that builds Settings() directly catches ValueError, as for pydantic's own errors.
    environ.setenv("BRIEFCAST_CONFIG", str(write_config(Path.cwd(), "[smtpp]\n")))
    with pytest.raises(ValueError, match="unknown section"):
        Settings()
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        config.SmtpSettings(hots="relay")  # type: ignore[call-arg]


def test_the_shipped_file_shows_every_setting_under_its_section() -> None:
    """config/briefcast.toml is where an editor learns the settings: each key of each section
    is there, set or commented with its default, under its own [section]; secrets are not
    (they come from the environment only)."""
    import re

    assert config.DEFAULT_CONFIG is not None
    shown: dict[str, set[str]] = {}
    section = ""
    for line in config.DEFAULT_CONFIG.read_text("utf-8").splitlines():
        if m := re.match(r"^#?\s*\[\[?([a-z_]+)(?:\.([a-z_]+))?\]", line):
            section = m[1]
            shown.setdefault(section, set()).update([m[2]] if m[2] else [])  # [[social.accounts]]
        elif (m := re.match(r"^#?\s*([a-z_]+)\s*=", line)) and section:
            shown[section].add(m[1])
    secrets = {"password", "unsubscribe_secret"}
    for name, field in Settings.model_fields.items():
        model = field.annotation
        assert isinstance(model, type)
        keys = set(getattr(model, "model_fields", {})) - secrets
        assert keys <= shown.get(name, set()), (name, sorted(keys - shown.get(name, set())))
        assert not shown.get(name, set()) & secrets, name
