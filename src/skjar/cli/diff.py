"""``skjar diff A B``: what differs between two jars, side by side.

Estimator types and parameters, input schema, environment, metadata and sizes
come from the headers (nothing built). Fitted attributes — shapes, dtypes,
statistics and checksums of every array, recursively through nested
estimators — need the models, so both are loaded with the default trust
(an untrusted jar is refused, exit 1); ``--header-only`` skips that part.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(diff, ["a.skjar", "b.skjar", "--json"]).output  # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import Any

import click

from .. import api
from ._fitted import fitted_summary
from ._render import console, emit_json, escape, human_bytes, note, short_type, table

SECTIONS = ("estimator", "schema", "environment", "metadata", "sizes", "fitted")
MISSING = "—"


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def flatten_estimator(node: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{path: value}`` for the types and parameters of a header's estimator tree.

    >>> flatten_estimator({"type": "m.A", "params": {"C": 1}, "children": {"s": {"type": "m.B"}}})
    {'<type>': 'm.A', 'C': '1', 's.<type>': 'm.B'}
    """
    out = {f"{prefix}<type>": str(node.get("type", "?"))}
    for k, v in node.get("params", {}).items():
        out[f"{prefix}{k}"] = _text(v)
    for name, child in node.get("children", {}).items():
        out.update(flatten_estimator(child, f"{prefix}{name}."))
    return out


def _flat(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts flattened to dotted keys; leaves as text.

    >>> _flat({"packages": {"numpy": "2.1"}, "python": "3.11"})
    {'packages.numpy': '2.1', 'python': '3.11'}
    """
    if isinstance(value, dict) and value:
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): _text(value)}


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header_sections(info: api.Info) -> dict[str, dict[str, str]]:
    """The header-derived sections of one jar, each flattened to ``{key: text}``."""
    env = dict(info.environment)
    env["skjar"] = info.producer.get("version")
    env["created"] = info.producer.get("created")
    env["format_version"] = info.format_version
    sizes = {k: human_bytes(v) if k != "buffers" else str(v) for k, v in info.sizes.items()}
    comp = info.compression
    sizes["compression"] = f"{comp['codec']} level {comp.get('level')}" if comp else "none"
    sizes["signature"] = "signed" if getattr(info, "signed", False) else "unsigned"
    return {
        "estimator": flatten_estimator(info.object),
        "schema": _flat(info.schema),
        "environment": _flat(env),
        "metadata": _flat(info.metadata) if info.metadata else {},
        "sizes": sizes,
    }


def compare_maps(a: dict[str, str], b: dict[str, str]) -> list[tuple[str, str, str]]:
    """``[(key, in_a, in_b)]`` for every key whose value differs (``—`` when absent).

    >>> compare_maps({"x": "1", "y": "2"}, {"x": "1", "z": "3"})
    [('y', '2', '—'), ('z', '—', '3')]
    """
    out = []
    for key in sorted(set(a) | set(b), key=_key_order(a, b)):
        va, vb = a.get(key, MISSING), b.get(key, MISSING)
        if va != vb:
            out.append((key, va, vb))
    return out


def _key_order(a: dict[str, str], b: dict[str, str]) -> Any:
    order = {k: i for i, k in enumerate(list(a) + [k for k in b if k not in a])}
    return lambda k: order[k]


@click.command(short_help="Show what differs between two jars, side by side.")
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
@click.option("--header-only", is_flag=True, help="Compare headers only; do not load the models.")
@click.option("--all", "show_all", is_flag=True, help="Show equal entries too.")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as JSON.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when the jars differ (like git diff).")
@click.option(
    "--ignore",
    multiple=True,
    type=click.Choice(SECTIONS),
    help="Leave a section out (repeatable), e.g. --ignore environment.",
)
def diff(
    a: str,
    b: str,
    header_only: bool,
    show_all: bool,
    as_json: bool,
    exit_code: bool,
    ignore: tuple[str, ...],
) -> None:
    """Show what differs between jars A and B, side by side.

    Sections: estimator (types and parameters), schema (features, dtypes,
    classes), environment (versions that made them), metadata, sizes, and
    fitted (every fitted attribute's type, shape, dtype, min/max/mean and
    checksum, through nested estimators). The fitted section loads both
    models with the default trust: an untrusted jar is refused (exit 1).
    Exits 0 whatever the differences, unless --exit-code.

    \b
    Examples:
      skjar diff model-v1.skjar model-v2.skjar
      skjar diff a.skjar b.skjar --header-only --ignore environment
      skjar diff a.skjar b.skjar --json | jq '.fitted'
      skjar diff a.skjar b.skjar --exit-code --ignore sizes --ignore environment
    """
    info_a, info_b = api.inspect(a), api.inspect(b)
    sec_a, sec_b = header_sections(info_a), header_sections(info_b)
    if not header_only and "fitted" not in ignore:
        sec_a["fitted"] = fitted_summary(api.load(a))
        sec_b["fitted"] = fitted_summary(api.load(b))
    result: dict[str, list[tuple[str, str, str]]] = {}
    for section in SECTIONS:
        if section in ignore or section not in sec_a:
            continue
        if show_all:
            keys = list(dict.fromkeys(list(sec_a[section]) + list(sec_b[section])))
            result[section] = [
                (k, sec_a[section].get(k, MISSING), sec_b[section].get(k, MISSING)) for k in keys
            ]
        else:
            result[section] = compare_maps(sec_a[section], sec_b[section])
    differs = any(va != vb for rows in result.values() for _, va, vb in rows)
    if as_json:
        emit_json(
            {
                "a": a,
                "b": b,
                "identical": not differs,
                **{
                    s: [{"key": k, "a": va, "b": vb, "equal": va == vb} for k, va, vb in rows]
                    for s, rows in result.items()
                },
            }
        )
    else:
        c = console()
        c.print(
            f"[bold]A[/bold] {escape(a)}: {escape(short_type(info_a.type))}    "
            f"[bold]B[/bold] {escape(b)}: {escape(short_type(info_b.type))}"
        )
        for section, rows in result.items():
            if not rows:
                note(f"{section}: no differences", style="dim")
                continue
            c.print(f"[bold]{section}[/bold]: {sum(va != vb for _, va, vb in rows)} difference(s)")
            table(
                "",
                ["", "A", "B"],
                [
                    [
                        escape(k),
                        escape(_clip(va)) if va == vb else f"[red]{escape(_clip(va))}[/red]",
                        escape(_clip(vb)) if va == vb else f"[green]{escape(_clip(vb))}[/green]",
                    ]
                    for k, va, vb in rows
                ],
                markup=True,
            )
        if header_only:
            note("fitted attributes not compared (--header-only)", style="dim")
        note(
            "the jars differ" if differs else "no differences", style="bold" if differs else "green"
        )
    if exit_code and differs:
        raise click.exceptions.Exit(1)
