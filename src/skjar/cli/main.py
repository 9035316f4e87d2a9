"""Entry point: ``skjar COMMAND ...``.

Exit codes (the same through :func:`main` and through click's runner):

* 0 — done; the check passed.
* 1 — refused or failed: untrusted names, a damaged jar, not a jar, a failed
  signature or version check, a failed ``audit``.
* 2 — usage or input error: unknown option, missing file, wrong columns,
  empty input.

>>> main(["verify", "model.skjar"])  # doctest: +SKIP
0
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import click

from .. import __version__, _compiled
from ..errors import InvalidArgumentError, SkjarError
from ._render import EXIT_REFUSED, EXIT_USAGE, CliError, InputError, Refused, warn
from .compare import compare
from .convert import convert
from .demo import demo
from .diff import diff
from .keys import keygen, sign
from .look import audit, inspect
from .predict import predict
from .verify import verify


class SkjarGroup(click.Group):
    """A click group that turns skjar's exceptions into messages and exit codes.

    ``InvalidArgumentError`` (a bad path or option) exits 2; every other
    ``SkjarError`` (untrusted, corrupt, not a jar, …) and an operating-system
    error (disk full, permission denied) exits 1. Warnings are printed as one
    ``warning:`` line each.
    """

    def invoke(self, ctx: click.Context) -> Any:
        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            warn(str(message))

        with warnings.catch_warnings():
            warnings.showwarning = show
            try:
                return super().invoke(ctx)
            except InvalidArgumentError as exc:
                raise InputError(str(exc)) from exc
            except SkjarError as exc:
                raise Refused(str(exc)) from exc
            except BrokenPipeError:
                raise
            except OSError as exc:  # disk full, permissions, … while reading or writing
                where = f" ({exc.filename})" if exc.filename else ""
                raise Refused(f"{exc.strerror or exc}{where}") from exc


@click.group(
    cls=SkjarGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__,
    prog_name="skjar",
    message="%(prog)s %(version)s (compiled helpers: "
    + ("on" if _compiled.speedups is not None else "off: loads use the slower Python twins")
    + ")",
)
def cli() -> None:
    """Save scikit-learn models safely and load them anywhere.

    Every command reads jars written by skjar.dump; nothing outside the trusted
    set is ever imported or run. Read commands take --json for scripts.

    \b
    Examples:
      skjar inspect model.skjar                 # what is inside (header only)
      skjar audit model.skjar                   # exit 1 if anything is untrusted
      skjar verify model.skjar                  # integrity check, nothing built
      skjar diff old.skjar new.skjar            # what changed between two jars
      skjar predict model.skjar data.csv -o predictions.csv
      skjar compare a.skjar b.skjar --data test.csv --target y --report report.html
      skjar demo                                # the whole workflow on two models

    \b
    Exit codes: 0 ok, 1 refused or check failed (untrusted, corrupt, not a
    jar), 2 usage or input error (missing file, wrong columns, empty data).

    \b
    Shell completion (bash, zsh, fish) comes from click:
      eval "$(_SKJAR_COMPLETE=bash_source skjar)"    # in ~/.bashrc
      eval "$(_SKJAR_COMPLETE=zsh_source skjar)"     # in ~/.zshrc
      _SKJAR_COMPLETE=fish_source skjar > ~/.config/fish/completions/skjar.fish
    """


cli.add_command(inspect)
cli.add_command(audit)
cli.add_command(verify)
cli.add_command(diff)
cli.add_command(predict)
cli.add_command(compare)
cli.add_command(demo)
cli.add_command(convert)
cli.add_command(keygen)
cli.add_command(sign)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (the console script exits with it)."""
    try:
        rv = cli.main(args=argv, prog_name="skjar", standalone_mode=False)
    except CliError as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:  # pragma: no cover - click returns it instead
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except click.Abort:
        click.echo("aborted", err=True)
        return EXIT_REFUSED
    except BrokenPipeError:
        # The reader of our output went away (`skjar inspect --json | head`).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_REFUSED
    # Without standalone mode, click returns the code of `ctx.exit(code)` (or
    # the command's return value, which is None for every command here).
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
