"""The HTML report of ``skjar compare --report``: one self-contained page.

Inline CSS and inline SVG only — no scripts, fonts, images or links to fetch —
so the file can be mailed, archived or opened offline. Each model keeps one
colour across every chart.

>>> html = render_report(summary, results, rows)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import math
from html import escape
from typing import TYPE_CHECKING, Any

from .. import __version__
from . import _svg
from ._render import short_type

if TYPE_CHECKING:
    from .compare import Scored

MAX_CURVE_POINTS = 400
MAX_SCATTER_POINTS = 1500
MAX_CONFUSION_LABELS = 30

CSS = """
:root{--ink:#1f2933;--muted:#616e7c;--bg:#f3f5f8;--card:#fff;--line:#e4e7eb;--good:#0b6e4f;--goodbg:#e3f6ec}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ink);background:var(--bg)}
header{background:linear-gradient(120deg,#0b3954 0%,#0072b2 100%);color:#fff;padding:26px 40px 22px}
header h1{margin:0 0 4px;font-size:26px;font-weight:650;letter-spacing:.2px}
header p{margin:0;opacity:.9}
main{max-width:1220px;margin:0 auto;padding:8px 28px 40px}
section.card{background:var(--card);border-radius:10px;box-shadow:0 1px 3px rgba(15,23,42,.08),0 1px 2px rgba(15,23,42,.04);padding:18px 22px 20px;margin:18px 0}
h2{font-size:18px;margin:0 0 12px;font-weight:650}
h3{font-size:14px;margin:6px 0;color:var(--muted);font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:14px}
.grid2{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:18px}
.grid3{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:16px}
svg.chart{width:100%;height:auto;display:block}
.plot{border:1px solid var(--line);border-radius:8px;padding:6px;background:#fff}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead th{font-size:13px;color:var(--muted);font-weight:600;vertical-align:bottom}
td.best{background:var(--goodbg);color:var(--good);font-weight:650}
tr.group td{background:#f8fafc;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.6px;text-align:left}
.swatch{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:7px;vertical-align:-1px}
.type{display:block;font-size:12px;color:var(--muted);font-weight:400}
.pills{display:flex;flex-wrap:wrap;gap:8px;margin:0 0 12px}
.pill{background:#eef2f7;border-radius:999px;padding:3px 12px;font-size:13px}
.pill b{color:var(--good)}
.note{color:var(--muted);font-size:13px;margin:8px 0 0}
footer{max-width:1220px;margin:0 auto;padding:0 28px 28px;color:var(--muted);font-size:12px}
@media print{body{background:#fff}section.card{box-shadow:none;border:1px solid var(--line)}}
"""


def _downsample(xs: Any, ys: Any, limit: int = MAX_CURVE_POINTS) -> tuple[list[float], list[float]]:
    import numpy as np

    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if len(xs) > limit:
        idx = np.unique(np.linspace(0, len(xs) - 1, limit).round().astype(int))
        xs, ys = xs[idx], ys[idx]
    return xs.tolist(), ys.tolist()


def _swatch(i: int) -> str:
    return f'<span class="swatch" style="background:{_svg.color(i)}"></span>'


def _fmt(key: str, v: float) -> str:
    from .compare import format_value

    return escape(format_value(key, v))


def _summary_table(results: list[Scored], rows: list[tuple[str, str, list[float], bool]]) -> str:
    from .compare import COSTS, best_indices

    head = "".join(
        f"<th>{_swatch(i)}{escape(r.name)}<span class='type'>{escape(short_type(r.type))}</span></th>"
        for i, r in enumerate(results)
    )
    body = []
    group = None
    for key, label, values, higher in rows:
        g = "cost" if key in COSTS else "quality"
        if g != group:
            group = g
            title = "quality on the test set" if g == "quality" else "cost of using it"
            body.append(f'<tr class="group"><td colspan="{len(results) + 1}">{title}</td></tr>')
        best = best_indices(values, higher)
        arrow = "↑" if higher else "↓"
        cells = "".join(
            f'<td class="best">{_fmt(key, v)} ★</td>' if i in best else f"<td>{_fmt(key, v)}</td>"
            for i, v in enumerate(values)
        )
        body.append(
            f"<tr><td>{escape(label)} <span class='type' style='display:inline'>{arrow}</span></td>{cells}</tr>"
        )
    return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _pills(results: list[Scored], rows: list[tuple[str, str, list[float], bool]]) -> str:
    from .compare import COSTS, best_indices

    pills = []
    for key, label, values, higher in rows:
        if key in COSTS and key not in ("latency_batch_seconds", "size_bytes"):
            continue
        best = best_indices(values, higher)
        if best:
            winners = ", ".join(results[i].name for i in sorted(best))
            pills.append(f'<span class="pill">{escape(label)}: <b>{escape(winners)}</b></span>')
    return f'<div class="pills">{"".join(pills)}</div>' if pills else ""


def _metric_bars(results: list[Scored], rows: list[tuple[str, str, list[float], bool]]) -> str:
    from .compare import COSTS, best_indices

    charts = []
    names = [r.name for r in results]
    colors = [_svg.color(i) for i in range(len(results))]
    for key, label, values, higher in rows:
        if key in COSTS and key not in ("latency_batch_seconds", "load_seconds", "size_bytes"):
            continue
        scale, unit = 1.0, ""
        if key.endswith("_seconds"):
            scale, unit = 1e3, "ms"
        elif key == "size_bytes":
            scale, unit = 1 / 1024, "KiB"
        shown = [v * scale for v in values]
        ylim = (
            (0.0, 1.12) if key in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc") else None
        )
        arrow = "↑ higher is better" if higher else "↓ lower is better"
        charts.append(
            '<div class="plot">'
            + _svg.bar_chart(
                names,
                shown,
                title=f"{label}{' (' + unit + ')' if unit else ''}",
                ylabel=arrow,
                colors=colors,
                ylim=ylim,
                best=best_indices(values, higher),
            )
            + "</div>"
        )
    return f'<div class="grid">{"".join(charts)}</div>'


def _curves(results: list[Scored]) -> str:
    import numpy as np
    from sklearn.metrics import precision_recall_curve, roc_curve
    from sklearn.preprocessing import label_binarize

    roc, pr, notes = [], [], []
    base_rates = []
    kinds = set()
    for i, r in enumerate(results):
        if r.scores is None:
            notes.append(f"{r.name}: no scores (no predict_proba or decision_function)")
            continue
        classes = np.asarray(r.classes)
        if len(classes) == 2:
            truth = np.asarray(r.y_true == classes[1], dtype=int)
            s = r.scores[:, 1] if r.scores_are_proba else r.scores
            kinds.add(f"positive class {classes[1]!s}")
        elif r.scores_are_proba:
            truth = label_binarize(r.y_true, classes=classes).ravel()
            s = np.asarray(r.scores).ravel()
            kinds.add(f"micro-average over {len(classes)} classes")
        else:
            continue
        if truth.min() == truth.max():
            notes.append(f"{r.name}: the test set has a single class; no curves")
            continue
        fpr, tpr, _ = roc_curve(truth, s)
        prec, rec, _ = precision_recall_curve(truth, s)
        base_rates.append(float(truth.mean()))
        auc = r.metrics.get("roc_auc", math.nan)
        label = f"{r.name} (AUC {auc:.3f})" if math.isfinite(auc) else r.name
        roc.append(_svg.Series(label, *_downsample(fpr, tpr), color=_svg.color(i)))
        pr.append(_svg.Series(r.name, *_downsample(rec, prec), color=_svg.color(i)))
    if not roc:
        return "<p class='note'>" + escape("; ".join(notes) or "no curves") + "</p>"
    what = "; ".join(sorted(kinds))
    out = (
        '<div class="grid2"><div class="plot">'
        + _svg.line_chart(
            roc,
            title=f"ROC curve ({what})",
            xlabel="false positive rate",
            ylabel="true positive rate",
            xlim=(0, 1),
            ylim=(0, 1),
            diagonal=True,
        )
        + '</div><div class="plot">'
        + _svg.line_chart(
            pr,
            title=f"Precision\u2013recall ({what})",
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.02),
            baseline=base_rates[0] if len(set(base_rates)) == 1 else None,
            legend="bl",
        )
        + "</div></div>"
    )
    if notes:
        out += "<p class='note'>" + escape("; ".join(notes)) + "</p>"
    return out


def _confusions(results: list[Scored]) -> str:
    import numpy as np
    from sklearn.metrics import confusion_matrix

    charts = []
    for i, r in enumerate(results):
        truth, pred = np.asarray(r.y_true), np.asarray(r.y_pred)
        labels = sorted(set(truth.tolist()) | set(pred.tolist()), key=lambda v: (str(type(v)), v))
        if len(labels) > MAX_CONFUSION_LABELS:
            charts.append(
                f"<p class='note'>{escape(r.name)}: {len(labels)} labels, too many for a "
                "confusion matrix</p>"
            )
            continue
        cm = confusion_matrix(truth, pred, labels=labels)
        rgb = _svg.color(i)
        base = (int(rgb[1:3], 16), int(rgb[3:5], 16), int(rgb[5:7], 16))
        charts.append(
            '<div class="plot">'
            + _svg.heatmap(
                cm.tolist(),
                [str(v) for v in labels],
                [str(v) for v in labels],
                title=f"{r.name}: accuracy {r.metrics['accuracy']:.3f}",
                base_color=base,
            )
            + "</div>"
        )
    return f'<div class="grid3">{"".join(charts)}</div>'


def _residuals(results: list[Scored]) -> str:
    import numpy as np

    rng = np.random.default_rng(0)
    blocks = []
    for i, r in enumerate(results):
        y, p = np.asarray(r.y_true, dtype=float), np.asarray(r.y_pred, dtype=float)
        idx = np.arange(len(y))
        if len(idx) > MAX_SCATTER_POINTS:
            idx = np.sort(rng.choice(idx, MAX_SCATTER_POINTS, replace=False))
        col = _svg.color(i)
        blocks.append(
            '<div class="plot">'
            + _svg.scatter_chart(
                p[idx].tolist(),
                y[idx].tolist(),
                title=f"{r.name}: predicted vs actual (R² {r.metrics['r2']:.3f})",
                xlabel="predicted",
                ylabel="actual",
                point_color=col,
                diagonal=True,
            )
            + '</div><div class="plot">'
            + _svg.scatter_chart(
                p[idx].tolist(),
                (y[idx] - p[idx]).tolist(),
                title=f"{r.name}: residuals (RMSE {r.metrics['rmse']:.3g})",
                xlabel="predicted",
                ylabel="actual \u2212 predicted",
                point_color=col,
                hline=0.0,
            )
            + "</div>"
        )
    return f'<div class="grid2">{"".join(blocks)}</div>'


def _models_table(results: list[Scored]) -> str:
    from ._render import human_bytes, human_seconds

    rows = "".join(
        f"<tr><td>{_swatch(i)}{escape(r.name)}</td><td style='text-align:left'>{escape(r.type)}</td>"
        f"<td style='text-align:left'>{escape(r.path)}</td><td>{human_bytes(r.costs['size_bytes'])}</td>"
        f"<td>{escape(r.sklearn_version)}</td><td>{human_seconds(r.costs['load_seconds'])}</td>"
        f"<td>{human_seconds(r.costs['latency_row_seconds'])}</td>"
        f"<td>{human_seconds(r.costs['latency_batch_seconds'])} / {r.batch_rows:,}</td></tr>"
        for i, r in enumerate(results)
    )
    return (
        "<table><thead><tr><th>model</th><th style='text-align:left'>type</th>"
        "<th style='text-align:left'>file</th><th>size</th><th>made with scikit-learn</th>"
        "<th>load</th><th>1 row</th><th>batch / rows</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def render_report(
    summary: dict[str, Any],
    results: list[Scored],
    rows: list[tuple[str, str, list[float], bool]],
) -> str:
    """The whole HTML page for ``skjar compare --report``."""
    task = summary["task"]
    n = len(results)
    subtitle = (
        f"{task} · {n} model{'s' if n != 1 else ''} · {summary['rows']:,} rows of "
        f"{summary['data']} · target “{summary['target']}”"
    )
    sections = [
        "<section class='card'><h2>Summary</h2>"
        + _pills(results, rows)
        + _summary_table(results, rows)
        + "<p class='note'>★ best in its row. Latency: median of single-row predict calls and "
        f"of 3 calls on a batch of {results[0].batch_rows:,} rows; load time: best of 3 loads "
        "in one process.</p></section>",
        "<section class='card'><h2>Metrics</h2>" + _metric_bars(results, rows) + "</section>",
    ]
    if task == "classification":
        sections.append(
            "<section class='card'><h2>ROC and precision&ndash;recall curves</h2>"
            + _curves(results)
            + "</section>"
        )
        sections.append(
            "<section class='card'><h2>Confusion matrices</h2>"
            "<p class='note' style='margin:0 0 10px'>rows: actual class; columns: predicted "
            "class; shading: share of the row</p>" + _confusions(results) + "</section>"
        )
    else:
        sections.append(
            "<section class='card'><h2>Predictions and residuals</h2>"
            + _residuals(results)
            + "</section>"
        )
    sections.append("<section class='card'><h2>Models</h2>" + _models_table(results) + "</section>")
    notes = [f"{r.name}: {t}" for r in results for t in r.notes]
    if notes:
        sections.append(
            "<section class='card'><h2>Notes</h2><ul>"
            + "".join(f"<li>{escape(t)}</li>" for t in notes)
            + "</ul></section>"
        )
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    title = f"skjar compare — {', '.join(r.name for r in results)}"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>Model comparison</h1><p>{escape(subtitle)}</p></header>"
        f"<main>{''.join(sections)}</main>"
        f"<footer>Made by skjar {escape(__version__)} on {created}. Self-contained: no scripts, "
        "no external resources.</footer></body></html>"
    )
