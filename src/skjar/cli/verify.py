"""``skjar verify``: is every byte of the jar intact? Nothing is decoded or built.

The whole file is read, its layout checked (header, section offsets, padding,
trailer) and its XXH3-128 digest compared with the trailer — the same checks
``load`` makes before building anything — but the object tree is never
decoded, so no name is imported and trust does not matter.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(verify, ["model.skjar"]).exit_code  # doctest: +SKIP
0
"""

from __future__ import annotations

import os
import time
from typing import Any

import click

from .. import api
from ..errors import InvalidArgumentError, SkjarError
from ..format.header import declared_names
from ..format.reader import open_source
from ..format.spec import DIGEST_SIZE, END_MAGIC, TRAILER_SIZE
from ._render import (
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    emit_json,
    escape,
    human_bytes,
    human_seconds,
    table,
)


def check_jar(path: str) -> dict[str, Any]:
    """Verify one jar's layout and digest; a dict with ``ok`` and the details or the error.

    >>> check_jar("model.skjar")["ok"]  # doctest: +SKIP
    True
    """
    t0 = time.perf_counter()
    try:
        open_source(path, mmap=False, admit=lambda header: declared_names(header))
        info = api.inspect(path)
    except InvalidArgumentError as exc:
        return {"path": path, "ok": False, "exit_code": EXIT_USAGE, "error": str(exc)}
    except SkjarError as exc:
        return {
            "path": path,
            "ok": False,
            "exit_code": EXIT_REFUSED,
            "error": str(exc),
            "error_type": type(exc).__name__,
        }
    seconds = time.perf_counter() - t0
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(size - TRAILER_SIZE)
        trailer = f.read(TRAILER_SIZE)
    digest = trailer[:DIGEST_SIZE].hex() if trailer[DIGEST_SIZE:] == END_MAGIC else None
    return {
        "path": path,
        "ok": True,
        "exit_code": 0,
        "size": size,
        "format_version": info.format_version,
        "digest": f"xxh3-128:{digest}" if digest else None,
        "signature": "signed" if getattr(info, "signed", False) else "unsigned",
        "type": info.type,
        "seconds": seconds,
        "throughput_mib_s": size / max(seconds, 1e-9) / 2**20,
    }


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def verify(models: tuple[str, ...], as_json: bool) -> None:
    """Check the integrity of one or more jars without building anything.

    Reads every byte, checks the layout and compares the XXH3-128 digest in
    the trailer. Exits 1 if any jar is damaged, truncated or not a jar, 2 if a
    path cannot be read. (Signatures: the status is shown; checking them with a
    public key comes with the signing commands.)

    \b
    Examples:
      skjar verify model.skjar
      skjar verify models/*.skjar --json
      skjar verify model.skjar && skjar predict model.skjar data.csv -o out.csv
    """
    results = [check_jar(m) for m in models]
    if as_json:
        emit_json(results)
    else:
        rows = []
        for r in results:
            if r["ok"]:
                rows.append(
                    [
                        "[green]ok[/green]",
                        r["path"],
                        human_bytes(r["size"]),
                        r["digest"] or "-",
                        r["signature"],
                        human_seconds(r["seconds"]),
                    ]
                )
            else:
                rows.append(["[bold red]FAILED[/bold red]", r["path"], "", "", "", ""])
        table(
            "integrity",
            ["", "jar", "size", "digest (matches)", "signature", "time"],
            [[row[0], *(escape(v) for v in row[1:])] for row in rows],
            markup=True,
        )
        for r in results:
            if not r["ok"]:
                CliError(f"{r['path']}: {r['error']}").show()
    worst = max(r["exit_code"] for r in results)
    if worst:
        raise click.exceptions.Exit(worst)
