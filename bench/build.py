"""How long briefcast's own work takes per brief, and what Prefect adds on top.

Run: .venv/bin/python bench/build.py [--brief seeds/001_….txt] [--repeat 15]

1. The project's own work for one brief (read + every builder: three email editions,
   feeds for each language, social posts, web pages), median of --repeat runs.
2. The same publish through the Prefect flow, against a trivial 3-task Prefect flow,
   alternating in the same process (after one warm-up that starts Prefect's local server),
   so the ratio compares like with like on a noisy machine.
3. The social posts of the brief with one 20,000-character first paragraph as its teaser,
   against those of the brief itself, median of SOCIAL_REPEAT runs each (shortening used to
   try every cut: 6.8 s for one such paragraph in one language).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from briefcast.brief import Block, BlockKind, Brief  # noqa: E402 (plain data, no settings)

LONG_PARAGRAPH = 20_000  # characters
SOCIAL_REPEAT = 5


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def with_long_paragraph(brief: Brief, chars: int) -> Brief:
    """The brief with one long paragraph first, its teaser in every language."""
    text = ("parola " * (chars // 7 + 1))[:chars]
    first = Block(BlockKind.PARAGRAPH, text)
    sections = tuple(replace(s, summary=None, blocks=(first, *s.blocks)) for s in brief.sections)
    return replace(brief, summary=None, sections=sections)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brief", default=str(next((ROOT / "seeds").glob("001_*.txt"))))
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="briefcast-bench-"))
    os.environ["BRIEFCAST_DATABASE__URL"] = f"sqlite:///{work / 'bench.db'}"

    from flows import prefect_defaults

    prefect_defaults()
    from briefcast import pipeline
    from briefcast.config import load_settings
    from briefcast.readers import read_brief
    from briefcast.render.email import build_emails
    from briefcast.render.feeds import build_feeds
    from briefcast.render.social import build_social
    from briefcast.render.web import build_pages

    settings = load_settings()
    path = Path(args.brief)
    archive = pipeline.archive(
        pipeline.read(sorted((ROOT / "seeds").glob("*")), settings), settings, dry_run=True
    )

    def own_work() -> None:
        brief = read_brief(path, settings).dated(archive[0].date)
        build_emails(brief, settings)
        for lang in settings.site.languages:
            build_feeds([brief, *archive], settings, lang)
        build_social(brief, settings.site)
        build_pages(brief, settings)

    own_work()  # imports, template compilation
    own = median_time(own_work, args.repeat)

    brief = read_brief(path, settings).dated(archive[0].date)
    long_brief = with_long_paragraph(brief, LONG_PARAGRAPH)
    social = median_time(lambda: build_social(brief, settings.site), SOCIAL_REPEAT)
    social_long = median_time(lambda: build_social(long_brief, settings.site), SOCIAL_REPEAT)

    from prefect import flow, task

    from flows.publish import publish

    @task
    def step(x: int) -> int:
        return x + 1

    @flow(name="trivial")
    def trivial() -> int:
        return step(step(step(0)))

    t0 = time.perf_counter()
    trivial()  # starts Prefect's local server: paid once by whichever flow runs first
    startup = time.perf_counter() - t0
    out = work / "out"
    runs = max(3, args.repeat // 3)
    trivial_times, publish_times = [], []
    for _ in range(runs):
        trivial_times.append(median_time(trivial, 1))
        publish_times.append(median_time(lambda: publish([str(path)], out=str(out)), 1))
    t_trivial = statistics.median(trivial_times)
    t_publish = statistics.median(publish_times)

    cmd = "python bench/build.py" + (f" --repeat {args.repeat}" if args.repeat != 15 else "")
    print(f"brief: {path.name}")
    print(
        f"own work (read + all builders), median of {args.repeat}: {own * 1000:.0f} ms"
        f"   goal < 250 ms  {'OK' if own < 0.25 else 'MISSED'}"
    )
    print(
        f"social posts, median of {SOCIAL_REPEAT}: {LONG_PARAGRAPH:,}-character paragraph"
        f" {social_long * 1000:.1f} ms vs {path.name} {social * 1000:.1f} ms"
        f"   ratio {social_long / social:.1f}"
    )
    print(f"Prefect local server start (first flow run): {startup:.1f} s")
    print(f"trivial 3-task flow, median of {runs}: {t_trivial * 1000:.0f} ms")
    print(f"publish flow (1 brief, 4 channels), median of {runs}: {t_publish * 1000:.0f} ms")
    ratio = t_publish / t_trivial
    print(f"publish / trivial: {ratio:.2f}   goal <= 1.20  {'OK' if ratio <= 1.2 else 'MISSED'}")
    print(f"reproduce: {cmd}")


if __name__ == "__main__":
    main()
