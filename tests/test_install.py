"""briefcast installed from a wheel works without the repository, and a site's templates_dir
changes the templates and words it has, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from jinja2 import UndefinedError
from test_config import refused
from test_web import BASE, BILINGUAL

from briefcast.config import Settings, SiteSettings, load_settings
from briefcast.errors import ConfigError
from briefcast.i18n import strings
from briefcast.render.email import build_email
from briefcast.render.feeds import feed_doc
from briefcast.render.web import build_page

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "seeds" / "001_976e42ba209d30ec.txt"
MARKER = "<!-- our site's own page -->"


def clean_environment(**extra: str) -> dict[str, str]:
    """The test's environment without anything that would point at the repository or at
    settings: no BRIEFCAST_* variable, no PYTHONPATH, no active virtualenv."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BRIEFCAST_")}
    return {k: v for k, v in env.items() if k not in drop} | extra


def run(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


# --- the wheel --------------------------------------------------------------------------------


@pytest.mark.install
def test_the_wheel_publishes_without_the_repository(tmp_path: Path) -> None:
    started = time.perf_counter()
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--quiet", "-w", dist)
    (wheel,) = dist.glob("briefcast-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("templates/i18n/en.toml", "templates/web/page.html.j2", "config/briefcast.toml"):
        assert f"briefcast/_resources/{name}" in names
    # Nothing at the top of site-packages but our packages (no "templates" or "config").
    tops = {name.split("/")[0] for name in names if not name.startswith("briefcast-")}
    assert tops == {"briefcast", "flows", "channels"}
    built = time.perf_counter()

    # A fresh virtualenv; the installer `make` used installs into it (dependencies from its
    # cache, else PyPI), without compiling every dependency's .py files first: uv (this test
    # took 23 s of CPU with it, 43 s with pip), or the test's own pip where uv is not there.
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    uv = Path(sys.executable).with_name("uv")
    if uv.is_file():
        run(uv, "pip", "install", "--quiet", "--python", python, wheel)
    else:
        pip = (sys.executable, "-m", "pip", "--python", python)
        run(*pip, "install", "--quiet", "--no-compile", "--disable-pip-version-check", wheel)
    installed = time.perf_counter()

    empty = tmp_path / "empty"  # no settings file, nothing of the repository
    empty.mkdir()
    env = clean_environment(BRIEFCAST_DATABASE__URL=f"sqlite:///{tmp_path / 'b.db'}")
    where = run(
        python,
        "-c",
        "import briefcast, briefcast.config as c, briefcast.resources as r;"
        "print(briefcast.__file__, r.templates_root(), c.DEFAULT_CONFIG, sep='\\n')",
        cwd=empty,
        env=env,
    ).stdout.splitlines()
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    package = venv.resolve() / "lib" / version / "site-packages" / "briefcast"
    assert where == [
        str(package / "__init__.py"),
        str(package / "_resources" / "templates"),
        str(package / "_resources" / "config" / "briefcast.toml"),
    ]

    result = run(venv / "bin" / "briefcast", "publish", SEED, cwd=empty, env=env)
    published = time.perf_counter()
    assert "Traceback" not in result.stderr
    (folder,) = (empty / "out").iterdir()
    assert f"out/{folder.name}/index.html" in result.stdout
    for name in (
        "index.html",
        "email/en.html",
        "email/it.txt",
        "email/both.eml",
        "web/en.html",
        "web/it.html",
        "feed/en/atom.xml",
        "social/posts.json",
    ):
        assert (folder / name).stat().st_size > 0, name
    # Our settings file came along: its site, not the defaults'.
    assert "https://briefs.europolitiche.it/en/" in (folder / "web" / "en.html").read_text()
    print(
        f"\nwheel: built in {built - started:.1f} s, installed in {installed - built:.1f} s, "
        f"published in {published - installed:.1f} s; {published - started:.1f} s in all"
    )


# --- [site] templates_dir ---------------------------------------------------------------------


def site_settings(templates_dir: Path | None) -> Settings:
    site = SiteSettings(name="Test Brief", base_url=BASE, templates_dir=templates_dir)
    return Settings(site=site)


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """A site with its own web page: ours plus a marker."""
    folder = tmp_path / "site"
    (folder / "web").mkdir(parents=True)
    ours = (ROOT / "templates" / "web" / "page.html.j2").read_text("utf-8")
    (folder / "web" / "page.html.j2").write_text(ours.replace("<head>", f"<head>\n{MARKER}", 1))
    return folder


def test_a_site_template_replaces_ours_and_only_that_one(site_dir: Path) -> None:
    theirs, ours = site_settings(site_dir), site_settings(None)
    assert theirs.site.templates_dir == site_dir.resolve()
    for lang in ("en", "it"):
        page = build_page(BILINGUAL, theirs, lang)
        assert MARKER in page
        # The rest of the page is ours, and so is every other template.
        assert page.replace(f"{MARKER}\n", "") == build_page(BILINGUAL, ours, lang)
    # One environment per templates_dir: ours again, without the marker.
    assert MARKER not in build_page(BILINGUAL, ours, "en")
    for edition in ("en", "it", "both"):
        mine, theirs_email = (
            build_email(BILINGUAL, ours, edition),
            build_email(BILINGUAL, theirs, edition),
        )
        assert (mine.html, mine.text) == (theirs_email.html, theirs_email.text)


def test_a_site_word_file_changes_words_key_by_key(site_dir: Path) -> None:
    (site_dir / "i18n").mkdir()
    (site_dir / "i18n" / "en.toml").write_text('feed_title = "{site}, in English"\n')
    settings = site_settings(site_dir)
    assert feed_doc([BILINGUAL], settings, "en").title == "Test Brief, in English"
    assert feed_doc([BILINGUAL], settings, "it").title == "Test Brief (italiano)"  # ours in it
    english = strings("en", site_dir.resolve())
    assert english["feed_title"] == "{site}, in English"
    assert english["unsubscribe"] == strings("en")["unsubscribe"]  # not in the site's file
    assert strings("en")["feed_title"] == "{site} (English)"  # cached apart


def test_site_word_file_mistakes_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "i18n").mkdir()
    words = tmp_path / "i18n" / "en.toml"
    for text, message in (
        ('unsubcribe = "Leave"\n', 'unknown key "unsubcribe" (did you mean "unsubscribe"?)'),
        ("unsubscribe = 3\n", '"unsubscribe" must be a string'),
        ("unsubscribe = \n", "is not valid TOML"),
    ):
        words.write_text(text)
        strings.cache_clear()
        with pytest.raises(ConfigError, match="^" + str(words)) as caught:
            feed_doc([BILINGUAL], site_settings(tmp_path), "en")
        assert message in str(caught.value)
        assert len(str(caught.value).splitlines()) == 1
    words.write_text('feed_title = "{website}"\n')
    strings.cache_clear()
    with pytest.raises(ConfigError) as caught:
        feed_doc([BILINGUAL], site_settings(tmp_path), "en")
    assert str(caught.value) == (
        f"{tmp_path / 'i18n'}: \"feed_title\" in en, '{{website}}': {{website}} is no "
        "placeholder of it (the placeholders it may use: {site})"
    )
    strings.cache_clear()


def test_site_templates_are_strict(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "page.html.j2").write_text("<p>{{ site_nam }}</p>\n")
    with pytest.raises(UndefinedError, match="site_nam"):
        build_page(BILINGUAL, site_settings(tmp_path), "en")


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No BRIEFCAST_* variable from the shell running the tests; cwd a scratch folder."""
    for name in list(os.environ):
        if name.upper().startswith("BRIEFCAST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_a_wrong_templates_dir_is_one_line(environ: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    (tmp_path / "nothing-of-ours").mkdir()
    for value, message in (
        ("nowhere", f'"nowhere" does not exist (relative to {tmp_path})'),
        (str(tmp_path / "a-file"), "is not a folder"),
        ("nothing-of-ours", "has none of the folders email/, web/, i18n/"),
        (" ", "is empty; leave it out"),
    ):
        environ.setenv("BRIEFCAST_SITE__TEMPLATES_DIR", value)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        line = str(caught.value)
        assert line.startswith("BRIEFCAST_SITE__TEMPLATES_DIR: [site] templates_dir: "), line
        assert message in line
        assert len(line.splitlines()) == 1
    environ.setenv("BRIEFCAST_SITE__TEMPLATES_DIR", str(tmp_path / "nothing-of-ours"))
    (tmp_path / "nothing-of-ours" / "web").mkdir()
    assert load_settings().site.templates_dir == tmp_path / "nothing-of-ours"


def test_a_missing_templates_dir_through_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    ours = (ROOT / "config" / "briefcast.toml").read_text("utf-8")
    config.write_text(ours.replace("[site]\n", '[site]\ntemplates_dir = "my-templates"\n', 1))
    line = refused(tmp_path, {"BRIEFCAST_CONFIG": str(config)})
    assert line == (
        f'{config}: [site] templates_dir: "my-templates" does not exist (relative to {tmp_path})'
    )
