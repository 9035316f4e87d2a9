"""``skjar inspect`` and ``skjar audit``: what a jar holds, read from its header only."""

from __future__ import annotations

from typing import Any

import click

from .. import api
from ._render import emit_json, human_bytes, table


def _tree_rows(node: dict[str, Any], prefix: str = "", name: str = "") -> list[list[str]]:
    label = f"{prefix}{name + ': ' if name else ''}{node.get('type', '?').rsplit('.', 1)[-1]}"
    params = node.get("params", {})
    shown = ", ".join(f"{k}={v}" for k, v in list(params.items())[:6] if not isinstance(v, dict))
    rows = [[label, shown]]
    for child_name, child in node.get("children", {}).items():
        rows.extend(_tree_rows(child, prefix + "  ", child_name))
    return rows


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the header as JSON.")
def inspect(model: str, as_json: bool) -> None:
    """Show what MODEL holds, from its header only (nothing is loaded).

    \b
    Example:
      skjar inspect spam.skjar
      skjar inspect spam.skjar --json | jq .object.schema
    """
    info = api.inspect(model)
    if as_json:
        emit_json(info.to_dict())
        return
    table(f"{model}: {info.type}", ["estimator", "key parameters"], _tree_rows(info.object))
    schema = info.schema
    rows = [
        [k, v if not isinstance(v, list) or len(v) <= 12 else f"{v[:12]} … ({len(v)})"]
        for k, v in schema.items()
    ]
    if rows:
        table("input schema", ["field", "value"], rows)
    env = info.environment.get("packages", {})
    skew = info.version_skew
    table(
        "made with",
        ["component", "version", "here"],
        [
            ["python", info.environment.get("python"), ""],
            ["skjar", info.producer.get("version"), ""],
        ]
        + [[k, v, f"{skew[k][1]} (differs)" if k in skew else "same"] for k, v in env.items()],
    )
    if info.metadata:
        table("metadata", ["key", "value"], [[k, v] for k, v in info.metadata.items()])
    s = info.sizes
    comp = info.compression["codec"] if info.compression else "none"
    table(
        "size",
        ["part", "bytes"],
        [
            ["file", human_bytes(s["file"])],
            ["header", human_bytes(s["header"])],
            ["object tree", f"{human_bytes(s['tree_stored'])} stored / {human_bytes(s['tree'])}"],
            [
                f"{s['buffers']} buffers ({comp})",
                f"{human_bytes(s['data_stored'])} stored / {human_bytes(s['data'])}",
            ],
        ],
    )
    untrusted = [n.name for n in info.names if not n.trusted]
    click.echo(
        f"{len(info.names)} referenced names, "
        + (f"{len(untrusted)} untrusted: {', '.join(untrusted)}" if untrusted else "all trusted")
    )


@click.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--trust", "trust", multiple=True, metavar="NAME", help="Extra exact module.qualname to trust."
)
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
def audit(model: str, trust: tuple[str, ...], as_json: bool) -> None:
    """List every type and function MODEL references; exit 1 if any is untrusted.

    \b
    Example:
      skjar audit model.skjar
      skjar audit model.skjar --trust mypkg.features.LogRatio || echo "review needed"
    """
    names = api.audit(model, trusted=list(trust))
    if as_json:
        emit_json([{"name": n.name, "uses": n.uses, "trusted": n.trusted} for n in names])
    else:
        table(
            f"{model}: {len(names)} referenced names",
            ["name", "uses", "trusted"],
            [[n.name, ", ".join(n.uses), "yes" if n.trusted else "NO"] for n in names],
        )
    bad = [n.name for n in names if not n.trusted]
    if bad:
        raise click.exceptions.Exit(1)
