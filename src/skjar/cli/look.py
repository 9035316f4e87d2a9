"""``skjar inspect`` and ``skjar audit``: what a jar holds, read from its header only.

Neither command imports or builds anything from the jar: both are thin shells
over :func:`skjar.inspect` and :func:`skjar.audit`.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(inspect, ["model.skjar", "--json"]).output  # doctest: +SKIP
"""

from __future__ import annotations

import json
from typing import Any

import click

from .. import api
from ._render import compact, console, emit_json, escape, human_bytes, note, short_type, table

# Parameters that say how to run, not what the model is: left out of the summary
# unless --all-params.
OPERATIONAL = {"verbose", "n_jobs", "copy", "copy_X", "memory", "warm_start", "pre_dispatch"}
MAX_PARAMS = 8
MAX_LISTED = 30


def key_params(params: dict[str, Any], all_params: bool = False) -> list[str]:
    """``k=v`` strings for the parameters worth showing (nested estimators are shown as children).

    >>> key_params({"C": 1.0, "verbose": 0, "steps": [["a", {"estimator": "x.A"}]]})
    ['C=1.0']
    """
    out = []
    for k, v in params.items():
        if _is_estimator_ref(v):
            continue
        if not all_params and (v is None or k in OPERATIONAL or k.startswith("copy")):
            continue
        out.append(f"{k}={compact(v, 60)}")
    if not all_params and len(out) > MAX_PARAMS:
        out = out[:MAX_PARAMS] + [f"… +{len(out) - MAX_PARAMS} more (--all-params)"]
    return out


def _is_estimator_ref(value: Any) -> bool:
    """A parameter holding estimators (``steps``, ``transformers``, ``estimator``…)."""
    if isinstance(value, dict):
        return set(value) == {"estimator"}
    if isinstance(value, list) and value:
        return all(
            isinstance(item, list) and any(_is_estimator_ref(x) for x in item) for item in value
        ) or all(_is_estimator_ref(item) for item in value)
    return False


def estimator_tree(node: dict[str, Any], label: str = "", all_params: bool = False) -> Any:
    """A rich Tree of the estimator summary in the header."""
    from rich.tree import Tree

    tree = Tree(_node_label(node, label, all_params))
    _add_children(tree, node, all_params)
    return tree


def _node_label(node: dict[str, Any], name: str, all_params: bool) -> str:
    kind = str(node.get("type", "?"))
    module = kind.rsplit(".", 1)[0] if "." in kind else ""
    head = f"[bold]{escape(name)}[/bold]: " if name else ""
    text = f"{head}[cyan]{escape(short_type(kind))}[/cyan] [dim]({escape(module)})[/dim]"
    params = key_params(node.get("params", {}), all_params)
    if params:
        text += "\n" + escape(", ".join(params))
    return text


def _add_children(tree: Any, node: dict[str, Any], all_params: bool) -> None:
    for child_name, child in node.get("children", {}).items():
        sub = tree.add(_node_label(child, child_name, all_params))
        _add_children(sub, child, all_params)


def schema_rows(schema: dict[str, Any], all_rows: bool = False) -> list[list[str]]:
    """Rows (feature, dtype) of the input schema, bounded unless ``all_rows``."""
    names = schema.get("feature_names_in")
    dtypes = schema.get("feature_dtypes", {})
    rows: list[list[str]] = []
    if isinstance(names, list):
        shown = names if all_rows else names[:MAX_LISTED]
        rows = [[str(n), str(dtypes.get(str(n), "not recorded"))] for n in shown]
        if len(shown) < len(names):
            rows.append([f"… {len(names) - len(shown)} more (--all)", ""])
    return rows


def _listing(values: list[Any], all_rows: bool) -> str:
    shown = values if all_rows else values[:MAX_LISTED]
    text = ", ".join(str(v) for v in shown)
    return text + (f", … ({len(values)} in all)" if len(shown) < len(values) else "")


def input_kind(schema: dict[str, Any]) -> str:
    """How the model takes its input, in words."""
    if isinstance(schema.get("feature_names_in"), list):
        return f"a table of {len(schema['feature_names_in'])} named columns"
    if "n_features_in" in schema:
        return f"{schema['n_features_in']} unnamed numeric columns (fitted on an array)"
    return "one text column (or another 1-D input: no feature count recorded)"


@click.command(short_help="Show what a jar holds, from its header only (nothing is loaded).")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print everything the header says as JSON.")
@click.option("--all", "all_rows", is_flag=True, help="List every feature and class.")
@click.option("--all-params", is_flag=True, help="Show every parameter, not only the key ones.")
def inspect(model: str, as_json: bool, all_rows: bool, all_params: bool) -> None:
    """Show what MODEL holds, from its header only (nothing is imported or built).

    Estimator tree with key parameters, input schema (features, dtypes,
    categories, classes), the versions that made it against this environment,
    user metadata, size by part, compression, signature status and trust.

    \b
    Examples:
      skjar inspect spam.skjar
      skjar inspect spam.skjar --all-params
      skjar inspect spam.skjar --json | jq .object.schema
    """
    info = api.inspect(model)
    signed = bool(getattr(info, "signed", False))
    if as_json:
        out = info.to_dict()
        out["path"] = model
        out["signature"] = "signed" if signed else "unsigned"
        emit_json(out)
        return
    c = console()
    c.print(
        f"[bold]{escape(model)}[/bold]: {escape(info.type)}  "
        f"[dim](skjar format {escape(info.format_version)}, made by skjar "
        f"{escape(info.producer.get('version', '?'))} on {escape(info.producer.get('created', '?'))})[/dim]"
    )
    c.print(estimator_tree(info.object, all_params=all_params))

    schema = info.schema
    rows = [["input", input_kind(schema)]]
    if "n_features_in" in schema:
        rows.append(["n_features_in", str(schema["n_features_in"])])
    if isinstance(schema.get("classes"), list):
        rows.append(["classes", _listing(schema["classes"], all_rows)])
    if "n_outputs" in schema:
        rows.append(["n_outputs", str(schema["n_outputs"])])
    table("input schema", ["field", "value"], rows)
    features = schema_rows(schema, all_rows)
    if features:
        table("input columns", ["column", "dtype"], features)

    env = info.environment
    packages = env.get("packages", {})
    here = _here_packages(list(packages))
    import platform
    import sys

    version_rows = [
        _version_row("python", env.get("python"), platform.python_version()),
        _version_row("platform", env.get("platform"), f"{sys.platform}-{platform.machine()}"),
        _version_row("skjar", info.producer.get("version"), here.get("skjar")),
    ] + [_version_row(k, v, here.get(k)) for k, v in packages.items()]
    table("made with", ["component", "in the jar", "here", ""], version_rows, markup=True)

    if info.metadata:
        table(
            "metadata",
            ["key", "value"],
            [[k, v if isinstance(v, str) else json.dumps(v)] for k, v in info.metadata.items()],
        )
    s = info.sizes
    comp = info.compression
    codec = f"{comp['codec']} level {comp.get('level')}" if comp else "none"
    ratio = f"{s['data'] / s['data_stored']:.2f}x" if comp and s["data_stored"] else "-"
    table(
        "size",
        ["part", "stored", "in memory"],
        [
            ["file", human_bytes(s["file"]), ""],
            ["header", human_bytes(s["header"]), ""],
            ["object tree", human_bytes(s["tree_stored"]), human_bytes(s["tree"])],
            [
                f"{s['buffers']} array buffers",
                human_bytes(s["data_stored"]),
                human_bytes(s["data"]),
            ],
            ["compression", codec, ratio],
        ],
    )
    note(
        "signature: signed (inspect does not check it)" if signed else "signature: unsigned",
        style="green" if signed else "dim",
    )
    untrusted = [n.name for n in info.names if not n.trusted]
    if untrusted:
        note(
            f"{len(info.names)} referenced names, {len(untrusted)} NOT trusted: "
            f"{', '.join(untrusted)} — loading will refuse them; review with `skjar audit {model}`",
            style="bold red",
        )
    else:
        note(f"{len(info.names)} referenced names, all trusted", style="green")


def _here_packages(names: list[str]) -> dict[str, str]:
    """Versions installed here, from package metadata (nothing is imported)."""
    from importlib import metadata

    from .. import __version__

    out = {"skjar": __version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _version_row(name: str, jar: Any, here: str | None) -> list[str]:
    if here is None:
        status = "[dim]not checked[/dim]"
    elif str(jar) == here:
        status = "[green]same[/green]"
    else:
        status = "[yellow]differs[/yellow]"
    return [escape(name), escape(jar if jar is not None else "-"), escape(here or "-"), status]


@click.command(
    short_help="List the types and functions a jar references; exit 1 if any is untrusted."
)
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--trust",
    "trust",
    multiple=True,
    metavar="NAME",
    help="Extra exact module.qualname to trust (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON.")
@click.option("--untrusted-only", is_flag=True, help="List only the names that are not trusted.")
def audit(model: str, trust: tuple[str, ...], as_json: bool, untrusted_only: bool) -> None:
    """List every type and function MODEL references; exit 1 if any is untrusted.

    Reads the header only. What it lists is exactly what loading may touch:
    the loader refuses any name the header does not declare. Use it as a CI gate.

    \b
    Examples:
      skjar audit model.skjar
      skjar audit model.skjar --trust mypkg.features.LogRatio || echo "review needed"
      skjar audit model.skjar --json | jq '.[] | select(.trusted | not)'
    """
    names = api.audit(model, trusted=list(trust))
    bad = [n for n in names if not n.trusted]
    shown = bad if untrusted_only else names
    if as_json:
        emit_json(
            [
                {
                    "name": n.name,
                    "module": n.module,
                    "uses": list(n.uses),
                    "trusted": n.trusted,
                    "untrusted_uses": list(n.untrusted_uses),
                }
                for n in shown
            ]
        )
    else:
        table(
            f"{model}: {len(names)} referenced names",
            ["name", "uses", "trusted"],
            [
                [
                    escape(n.name),
                    escape(", ".join(n.uses)),
                    "[green]yes[/green]"
                    if n.trusted
                    else f"[bold red]NO[/bold red] ({escape(', '.join(n.untrusted_uses))})",
                ]
                for n in shown
            ],
            markup=True,
        )
        if bad:
            note(
                f"{len(bad)} untrusted: {', '.join(n.name for n in bad)}. If you trust the "
                "source of this file and these names, pass them with --trust NAME (or "
                "skjar.load(..., trusted=[...])).",
                style="bold red",
                err=True,
            )
        else:
            note("all trusted", style="green")
    if bad:
        raise click.exceptions.Exit(1)
