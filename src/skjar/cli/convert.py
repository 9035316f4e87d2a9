"""``skjar convert``: turn a legacy pickle/joblib file into a jar without running its code."""

from __future__ import annotations

import click

from .. import legacy


@click.command(short_help="Convert a pickle or joblib file into a skjar file, safely.")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--trust", "trust", multiple=True, metavar="NAME", help="Extra exact module.qualname to trust.")
@click.option(
    "--compress",
    type=click.Choice(["zstd", "lz4"]),
    default=None,
    help="Compress the arrays of the new jar.",
)
@click.option(
    "--unsafe",
    is_flag=True,
    help="Really unpickle SOURCE (runs its code!) - only for files you made yourself.",
)
def convert(source: str, target: str, trust: tuple[str, ...], compress: str | None, unsafe: bool) -> None:
    """Read SOURCE (pickle, or joblib raw/compressed) with a restricted unpickler; write TARGET.

    Nothing in SOURCE is executed: only trusted names are imported, only
    trusted reconstructors are emulated, and state is only given to
    instances. A file that needs anything else is refused (exit 1), listing
    every untrusted name at once.

    \b
    Examples:
      skjar convert model.pkl model.skjar
      skjar convert model.joblib model.skjar --compress zstd
      skjar convert old.pkl new.skjar --trust mypkg.features.LogRatio
      skjar convert mine.pkl mine.skjar --unsafe     # runs the pickle: your own files only
    """
    if unsafe:
        click.echo(
            "warning: --unsafe unpickles the file for real; any code it contains runs now",
            err=True,
        )
    legacy.convert(source, target, trusted=list(trust), unsafe=unsafe, compress=compress)
    click.echo(f"converted {source} -> {target}")
