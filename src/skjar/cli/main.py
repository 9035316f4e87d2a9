"""Entry point: ``skjar COMMAND ...``. Exit codes: 0 ok, 1 refused (untrusted/corrupt), 2 usage."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import SkjarError
from .demo import demo
from .look import audit, inspect


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="skjar")
def cli() -> None:
    """Save scikit-learn models safely and load them anywhere.

    \b
    Examples:
      skjar inspect model.skjar
      skjar audit model.skjar --trust mypkg.MyScaler
      skjar demo
    """


cli.add_command(inspect)
cli.add_command(audit)
cli.add_command(demo)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="skjar", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    except SkjarError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
