"""Draw a persistence run's ratios to pickle as one SVG: a grid per figure, to look at.

    python benchmarks/plot.py results.json [--out results.svg] [--serializers a,b,...]

Reads the JSON that ``persistence.py --out`` writes. One panel per figure (load, save,
size, peak extra RSS during load); in each, a row per model and a column per
serializer, the cell showing the median's ratio to pickle's and coloured on a log
scale: blue below 1 (better than pickle), orange above, white at 1. The targets of
issue 4 are written under the panels. The SVG has no scripts, fonts or external
resources, so it renders wherever Markdown shows images (RESULTS.md embeds one).
"""

from __future__ import annotations

import argparse
import json
import math
from html import escape
from pathlib import Path
from typing import Any

PANELS = (
    ("load_s", "Load (fresh process)"),
    ("save_s", "Save (same durability)"),
    ("size_bytes", "File size"),
    ("load_peak_extra_rss", "Peak extra RSS during load"),
)
TARGETS = (
    "Targets (issue 4): load <= 1x pickle from 1 MB, <= 2x below, geometric mean <= 0.8x; "
    "save <= 1x from 1 MB; size <= 1.02x; peak memory <= 1.05x."
)
CELL_W, CELL_H, LABEL_W, HEAD_H, GAP = 64, 22, 112, 58, 26
INK, MUTED, EMPTY = "#1f2933", "#7b8794", "#eef0f2"
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"
# Ratios are shaded up to 8x (or down to 1/8) either way; beyond that the colour saturates.
SATURATE = math.log(8.0)


def shade(ratio: float) -> str:
    """White at 1; towards blue below, orange above, on a log scale."""
    t = max(-1.0, min(1.0, math.log(ratio) / SATURATE))
    far = (0, 114, 178) if t < 0 else (213, 94, 0)
    r, g, b = (round(255 + (c - 255) * abs(t)) for c in far)
    return f"rgb({r},{g},{b})"


def ratio_text(ratio: float) -> str:
    if ratio < 0.1:
        return f"{ratio:.3f}x"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def ink(ratio: float) -> str:
    """Text colour that stays readable on the cell's shade."""
    return "#ffffff" if abs(math.log(ratio)) / SATURATE > 0.6 else INK


def ratios(results: list[dict[str, Any]], key: str) -> dict[tuple[str, str], float]:
    """(model, serializer) -> median's ratio to pickle, where both medians exist."""
    out = {}
    for cell in results:
        ratio = (cell.get("ratio_to_pickle") or {}).get(key)
        if isinstance(ratio, (int, float)) and ratio > 0 and math.isfinite(ratio):
            out[cell["model"], cell["serializer"]] = float(ratio)
    return out


def panel(
    x: float, y: float, title: str, models: list[str], serializers: list[str], got: dict[Any, float]
) -> list[str]:
    parts = [
        f'<text x="{x}" y="{y + 16}" font-size="14" font-weight="600" fill="{INK}">'
        f"{escape(title)}</text>"
    ]
    for j, ser in enumerate(serializers):
        cx = x + LABEL_W + j * CELL_W + CELL_W / 2
        weight = 600 if ser.startswith("skjar") else 400
        parts.append(
            f'<text x="{cx:.0f}" y="{y + HEAD_H - 6}" font-size="11" font-weight="{weight}" '
            f'fill="{INK}" text-anchor="start" transform="rotate(-35 {cx:.0f} {y + HEAD_H - 6})">'
            f"{escape(ser)}</text>"
        )
    for i, model in enumerate(models):
        top = y + HEAD_H + i * CELL_H
        parts.append(
            f'<text x="{x + LABEL_W - 8}" y="{top + CELL_H / 2 + 4:.0f}" font-size="11" '
            f'fill="{INK}" text-anchor="end">{escape(model)}</text>'
        )
        for j, ser in enumerate(serializers):
            left = x + LABEL_W + j * CELL_W
            ratio = got.get((model, ser))
            fill = EMPTY if ratio is None else shade(ratio)
            parts.append(
                f'<rect x="{left}" y="{top}" width="{CELL_W}" height="{CELL_H}" fill="{fill}" '
                'stroke="#ffffff"/>'
            )
            text = "-" if ratio is None else ratio_text(ratio)
            parts.append(
                f'<text x="{left + CELL_W / 2}" y="{top + CELL_H / 2 + 4:.0f}" font-size="11" '
                f'fill="{MUTED if ratio is None else ink(ratio)}" text-anchor="middle">{text}</text>'
            )
    return parts


def render(run: dict[str, Any], serializers: list[str] | None = None) -> str:
    """The whole SVG for one run's JSON."""
    results = run["results"]
    models = list(dict.fromkeys(cell["model"] for cell in results))
    present = list(dict.fromkeys(cell["serializer"] for cell in results))
    chosen = [s for s in (serializers or present) if s in present and s != "pickle"]
    if not chosen:
        raise SystemExit("no serializer besides pickle in this run: nothing to compare")
    panel_w = LABEL_W + CELL_W * len(chosen)
    panel_h = HEAD_H + CELL_H * len(models)
    width = 2 * panel_w + 3 * GAP
    height = 56 + 2 * (panel_h + GAP) + 36
    machine = run.get("machine", {})
    revision = str(machine.get("git_revision") or "")[:7]
    subtitle = (
        f"ratio of medians to pickle protocol 5, same run ({run.get('repeat')} rounds"
        + (f", commit {revision}" if revision else "")
        + f", {machine.get('cpu_count', '?')} CPUs); blue: better than pickle, orange: worse"
    )
    body = [
        f'<text x="{GAP}" y="24" font-size="16" font-weight="600" fill="{INK}">'
        "skjar and the alternatives, against pickle</text>",
        f'<text x="{GAP}" y="42" font-size="11" fill="{MUTED}">{escape(subtitle)}</text>',
    ]
    for k, (key, title) in enumerate(PANELS):
        x = GAP + (k % 2) * (panel_w + GAP)
        y = 56 + (k // 2) * (panel_h + GAP)
        body += panel(x, y, title, models, chosen, ratios(results, key))
    body.append(
        f'<text x="{GAP}" y="{height - 14}" font-size="11" fill="{MUTED}">{escape(TARGETS)}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" style="{FONT}" role="img">'
        "<title>Ratios to pickle: load, save, size, peak memory</title>"
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="JSON written by persistence.py --out")
    parser.add_argument("--out", type=Path, default=None, help="SVG path (default: beside it)")
    parser.add_argument("--serializers", default=None, help="comma-separated columns, in order")
    args = parser.parse_args(argv)
    try:
        run = json.loads(args.results.read_text())
        run["results"]  # the shape check: a KeyError or TypeError otherwise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{args.results}: not a persistence.py --out file ({exc})") from None
    out = args.out or args.results.with_suffix(".svg")
    chosen = args.serializers.split(",") if args.serializers else None
    out.write_text(render(run, chosen))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
