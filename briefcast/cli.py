"""The ``briefcast`` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from briefcast.cli_subscribers import subscribers_app
from briefcast.config import load_settings
from briefcast.pipeline import CHANNELS, parse_channels, read
from briefcast.readers import BriefError
from flows import prefect_defaults

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(subscribers_app, name="subscribers", help="Manage newsletter subscribers.")
console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.callback()
def main() -> None:
    """briefcast: one brief in; newsletter, feeds and social posts out."""


@app.command()
def publish(
    paths: Annotated[list[Path], typer.Argument(help="Brief files (.txt, .md).")],
    out: Annotated[Path, typer.Option(help="Previews go to OUT/<brief-id>/.")] = Path("out"),
    channels: Annotated[
        str, typer.Option(help="Comma-separated: " + ",".join(CHANNELS))
    ] = ",".join(CHANNELS),
    send: Annotated[bool, typer.Option("--send", help="Really send (default: dry run).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect logs.")] = False,
) -> None:
    """Read briefs, build every channel's output and write dry-run previews."""
    try:
        chosen = parse_channels(channels)
    except ValueError as exc:
        fail(f"--channels: {exc}")
    if send:
        fail(
            "--send: live delivery is not available yet; nothing was sent. "
            "Run without --send to write the previews."
        )
    try:
        settings = load_settings()
    except Exception as exc:  # pydantic's report is many lines; the first names the key
        fail(f"configuration: {str(exc).splitlines()[0]}")
    try:
        # Read every brief before Prefect starts: bad input fails fast and changes nothing.
        briefs = read(paths, settings)
    except BriefError as exc:
        fail(str(exc))

    prefect_defaults(verbose)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        progress.add_task(f"Publishing {len(briefs)} brief(s) through Prefect (dry run)…")
        from flows.publish import publish as publish_flow  # Prefect import is slow: only now

        folders = publish_flow([str(p) for p in paths], chosen, dry_run=True, out=str(out))
    for brief, folder in zip(briefs, folders, strict=True):
        print(f"{brief.id}  languages={','.join(brief.languages)}  {folder}/index.html")
    console.print(f"[green]Dry run complete:[/] previews in {out}/ (nothing was sent).")


def run() -> None:
    app(prog_name="briefcast")


if __name__ == "__main__":
    sys.exit(run())
