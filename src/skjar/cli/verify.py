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

from ..errors import InvalidArgumentError, SkjarError
from ..format.header import declared_names
from ..format.reader import open_source
from ..format.spec import DIGEST_SIZE, END_MAGIC, FLAG_SIGNED, TRAILER_SIZE
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


def check_jar(path: str, keys: list[bytes] | None = None) -> dict[str, Any]:
    """Verify one jar's layout and digest; a dict with ``ok`` and the details or the error.

    >>> check_jar("model.skjar")["ok"]  # doctest: +SKIP
    True
    """
    t0 = time.perf_counter()
    try:
        raw = open_source(
            path, mmap=False, admit=lambda header: declared_names(header), keys=keys
        )
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
    # The full-file digest sits just before the end magic (docs/format.md, trailer).
    end = TRAILER_SIZE - len(END_MAGIC)
    digest = trailer[end - DIGEST_SIZE : end].hex() if trailer[end:] == END_MAGIC else None
    signed = bool(raw.flags & FLAG_SIGNED)
    return {
        "path": path,
        "ok": True,
        "exit_code": 0,
        "size": size,
        "format_version": f"{raw.version[0]}.{raw.version[1]}",
        "digest": f"xxh3-128:{digest}" if digest else None,
        "signature": (
            f"valid, by key {raw.signer}"
            if raw.signer
            else ("signed (not checked: pass --key)" if signed else "unsigned")
        ),
        "type": str(raw.header.get("object", {}).get("type", "")),
        "seconds": seconds,
        "throughput_mib_s": size / max(seconds, 1e-9) / 2**20,
    }


@click.command(short_help="Check jars' layout and digest without decoding or building anything.")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--key",
    "keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Public key (PEM) the jar must be signed by; repeat to accept several.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def verify(models: tuple[str, ...], keys: tuple[str, ...], as_json: bool) -> None:
    """Check the integrity of one or more jars without building anything.

    Reads every byte, checks the layout and compares the XXH3-128 digest in
    the trailer. Exits 1 if any jar is damaged, truncated or not a jar, 2 if a
    path cannot be read. With --key, the jar must also carry a valid Ed25519
    signature by one of the given public keys (exit 1 otherwise).

    \b
    Examples:
      skjar verify model.skjar
      skjar verify model.skjar --key ci-signer.pub.pem
      skjar verify models/*.skjar --json
      skjar verify model.skjar && skjar predict model.skjar data.csv -o out.csv
    """
    from ..signing import verify_keys

    wanted = verify_keys(list(keys)) if keys else None
    results = [check_jar(m, wanted) for m in models]
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
