"""Output helpers shared by every command.

* Tables and trees go through rich; colours appear only when the stream is a
  terminal (and ``NO_COLOR`` is unset), so pipes, files and CI logs get plain
  text.
* ``--json`` output goes through :func:`emit_json`: indented, UTF-8, no colour.
* Errors are raised as :class:`CliError` subclasses carrying the exit code:
  :class:`Refused` (1: untrusted, corrupt, failed check) and :class:`InputError`
  (2: bad usage or unusable input).

>>> human_bytes(2048)
'2.0 KiB'
>>> human_seconds(0.0042)
'4.2 ms'
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

import click

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


class CliError(click.ClickException):
    """An error the command reports as ``error: message`` on stderr, with an exit code."""

    exit_code = EXIT_REFUSED

    def show(self, file: IO[Any] | None = None) -> None:
        stream = file if file is not None else sys.stderr
        prefix = click.style("error:", fg="red", bold=True) if is_terminal(stream) else "error:"
        click.echo(f"{prefix} {self.format_message()}", file=stream)


class Refused(CliError):
    """Exit 1: a check failed or the input was refused (untrusted, corrupt, not a jar)."""

    exit_code = EXIT_REFUSED


class InputError(CliError):
    """Exit 2: the command cannot work with what it was given (columns, empty data, options)."""

    exit_code = EXIT_USAGE


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (default stdout) is an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr): colour on a terminal only, wide when piped."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    terminal = is_terminal(stream)
    width = None if terminal or os.environ.get("COLUMNS") else 200
    return Console(
        file=stream,
        highlight=False,
        width=width,
        no_color=not terminal or bool(os.environ.get("NO_COLOR")),
        force_terminal=terminal,
        emoji=False,
    )


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON (numpy scalars and other objects via ``str``)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def escape(text: Any) -> str:
    """``text`` as a string with rich markup characters escaped."""
    from rich.markup import escape as _escape

    return str(_escape(str(text)))


def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    styles: Sequence[str | None] | None = None,
    markup: bool = False,
) -> None:
    """Print a table. Cells are plain text unless ``markup`` (then rich markup is honoured).

    >>> table("sizes", ["part", "bytes"], [["header", "3.1 KiB"]])  # doctest: +SKIP
    """
    from rich.table import Table

    t = Table(title=title or None, title_justify="left", show_lines=False, title_style="bold")
    for i, c in enumerate(columns):
        style = styles[i] if styles and i < len(styles) else None
        t.add_column(c, overflow="fold", style=style or "")
    for r in rows:
        t.add_row(*(str(v) if markup else escape(v) for v in r))
    console().print(t)


def note(message: str, *, style: str = "", err: bool = False) -> None:
    """One line of text, styled on a terminal (``style`` is a rich style such as ``"green"``)."""
    c = console(stderr=err)
    c.print(message, style=style or None, markup=False, soft_wrap=True)


def warn(message: str) -> None:
    """``warning: message`` on stderr (yellow on a terminal)."""
    prefix = (
        click.style("warning:", fg="yellow", bold=True) if is_terminal(sys.stderr) else "warning:"
    )
    click.echo(f"{prefix} {message}", err=True)


def human_bytes(n: float) -> str:
    """``2048`` -> ``'2.0 KiB'``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def human_seconds(s: float) -> str:
    """``0.0042`` -> ``'4.2 ms'``; ``3e-6`` -> ``'3.0 µs'``; ``75`` -> ``'75.0 s'``."""
    if not math.isfinite(s):
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.1f} s"


def short_type(name: str) -> str:
    """``'sklearn.linear_model._logistic.LogisticRegression'`` -> ``'LogisticRegression'``."""
    return name.rsplit(".", 1)[-1] if name else "?"


def compact(value: Any, limit: int = 80) -> str:
    """A parameter value as short text: JSON for containers, truncated to ``limit``."""
    if isinstance(value, dict) and set(value) == {"estimator"}:
        text = short_type(str(value["estimator"]))
    elif isinstance(value, dict) and set(value) == {"ref"}:
        text = str(value["ref"])
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
