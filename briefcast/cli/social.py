"""The social accounts that `publish --send` posts from ([[social.accounts]])."""

from __future__ import annotations

import typer
from rich.console import Console

from briefcast.cli import startup
from briefcast.cli.output import err

social_app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
out = Console(highlight=False, soft_wrap=True, markup=False)


@social_app.command()
def check() -> None:
    """Check every account's credentials with its network (nothing is posted): its handle,
    or its problem in one line. Exit 2 if any account cannot post."""
    settings = startup.settings()
    accounts = settings.social.accounts
    if not accounts:
        err.print(
            "no [[social.accounts]] configured: `publish --send` posts nothing "
            "(see README, Posting to social networks)",
            markup=False,
        )
        return
    from briefcast.posting.accounts import check_all  # the networks' clients: here only

    checks = check_all(settings.social)
    for c in checks:
        said = c.handle if c.ok else "problem: " + " ".join(c.problem.split())
        out.print(f"{c.account.name} ({c.account.network}): {said}")
    failed = sum(not c.ok for c in checks)
    if failed:
        err.print(f"{failed} of {len(checks)} account(s) cannot post", markup=False)
        raise typer.Exit(2)
