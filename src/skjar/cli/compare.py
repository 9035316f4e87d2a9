"""``skjar compare A B ... --data TEST --target COLUMN``: which model is better on new data?

Every jar is loaded (default trust, plus ``--trust``), fed the test set through
the same schema checks as ``skjar predict``, and scored with the metrics that
fit its task:

* classification — accuracy, balanced accuracy, F1 (macro), ROC AUC (binary,
  or one-vs-rest for several classes, when the model has ``predict_proba``;
  from ``decision_function`` for a binary model without it), log loss;
* regression — R², MAE, RMSE;

plus the cost of using it: file size, load time, prediction latency for one
row and for a batch. ``--report`` writes one self-contained HTML page with
the table and plots (ROC and precision-recall curves, confusion matrices,
residual plots, metric bars) that opens offline in any browser.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(compare, ["a.skjar", "b.skjar", "--data", "t.csv", "--target", "y"])  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import click

from .. import api
from ._data import FORMATS, detect_format, read_all
from ._render import (
    InputError,
    console,
    emit_json,
    escape,
    human_bytes,
    human_seconds,
    note,
    short_type,
    table,
)
from ._schema import InputPlan

# metric key -> (label, higher is better)
CLASSIFICATION = {
    "accuracy": ("accuracy", True),
    "balanced_accuracy": ("balanced accuracy", True),
    "f1_macro": ("F1 (macro)", True),
    "roc_auc": ("ROC AUC", True),
    "log_loss": ("log loss", False),
}
REGRESSION = {
    "r2": ("R²", True),
    "mae": ("MAE", False),
    "rmse": ("RMSE", False),
}
COSTS = {
    "size_bytes": ("file size", False),
    "load_seconds": ("load time", False),
    "latency_row_seconds": ("latency, 1 row", False),
    "latency_batch_seconds": ("latency, batch", False),
    "per_row_in_batch_seconds": ("per row in batch", False),
}


@dataclass
class Scored:
    """One model's results on the test set (and what the report's plots need)."""

    path: str
    name: str
    type: str
    task: str
    metrics: dict[str, float]
    costs: dict[str, float]
    batch_rows: int
    classes: list[Any] = field(default_factory=list)
    y_true: Any = None
    y_pred: Any = None
    scores: Any = None  # probabilities (n, k) or binary decision scores (n,)
    scores_are_proba: bool = False
    sklearn_version: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "type": self.type,
            "task": self.task,
            "metrics": {k: _num(v) for k, v in self.metrics.items()},
            **{k: _num(v) for k, v in self.costs.items()},
            "batch_rows": self.batch_rows,
            "classes": [_plain(c) for c in self.classes],
            "made_with_scikit_learn": self.sklearn_version,
            "notes": self.notes,
        }


def _num(v: float) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def task_of(model: Any) -> str:
    """``"classification"``, ``"regression"``, or raise InputError."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model) and hasattr(model, "classes_"):
        return "classification"
    if is_regressor(model):
        return "regression"
    raise InputError(
        f"{type(model).__name__} is neither a classifier nor a regressor: compare scores "
        "predictions against --target, so it needs one of those"
    )


def _align_target(y: Any, classes: Any) -> Any:
    """The target column in the dtype of the model's classes (CSV may read '1' as 1)."""
    import numpy as np
    import pandas as pd

    classes = np.asarray(classes)
    if classes.dtype.kind in "OUS" and pd.api.types.is_numeric_dtype(y):
        return y.astype(str).to_numpy(dtype=object)
    if classes.dtype.kind in "biuf" and not pd.api.types.is_numeric_dtype(y):
        converted = pd.to_numeric(y, errors="coerce")
        if bool(converted.isna().any()):
            bad = y[converted.isna()].iloc[0]
            raise InputError(
                f"the target holds {bad!r}, but the model's classes are numbers: "
                f"{classes[:10].tolist()}"
            )
        return converted.to_numpy()
    return y.to_numpy()


def _time_calls(fn: Any, X: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rows(X: Any, start: int, stop: int) -> Any:
    return X.iloc[start:stop] if hasattr(X, "iloc") else X[start:stop]


def latency(model: Any, X: Any, n: int, batch_size: int) -> tuple[float, float, int]:
    """(median seconds for one row, median seconds for one batch, batch rows)."""
    singles = []
    for i in range(min(n, 25)):
        row = _rows(X, i, i + 1)
        t0 = time.perf_counter()
        model.predict(row)
        singles.append(time.perf_counter() - t0)
    batch = min(batch_size, n)
    return statistics.median(singles), _time_calls(model.predict, _rows(X, 0, batch), 3), batch


def classification_metrics(
    y: Any, pred: Any, scores: Any, classes: Any, is_proba: bool
) -> tuple[dict[str, float], list[str]]:
    """The classification metrics; NaN (with a note) where one cannot be computed."""
    import numpy as np
    from sklearn import metrics as m

    notes: list[str] = []
    out = {
        "accuracy": float(m.accuracy_score(y, pred)),
        "balanced_accuracy": float(m.balanced_accuracy_score(y, pred)),
        "f1_macro": float(m.f1_score(y, pred, average="macro")),
        "roc_auc": math.nan,
        "log_loss": math.nan,
    }
    classes = np.asarray(classes)
    if scores is None:
        notes.append("no predict_proba or decision_function: no ROC AUC or log loss")
        return out, notes
    try:
        if len(classes) == 2:
            s = scores[:, 1] if is_proba else scores
            out["roc_auc"] = float(m.roc_auc_score(y == classes[1], s))
        elif is_proba:
            out["roc_auc"] = float(m.roc_auc_score(y, scores, multi_class="ovr", labels=classes))
    except ValueError as exc:
        notes.append(f"ROC AUC not computed: {exc}")
    if is_proba:
        try:
            out["log_loss"] = float(m.log_loss(y, scores, labels=classes))
        except ValueError as exc:
            notes.append(f"log loss not computed: {exc}")
    else:
        notes.append("no predict_proba: no log loss")
    return out, notes


def regression_metrics(y: Any, pred: Any) -> dict[str, float]:
    """R², MAE and RMSE."""
    import numpy as np
    from sklearn import metrics as m

    return {
        "r2": float(m.r2_score(y, pred)),
        "mae": float(m.mean_absolute_error(y, pred)),
        "rmse": float(np.sqrt(m.mean_squared_error(y, pred))),
    }


def score_model(
    path: str,
    name: str,
    df: Any,
    target: str,
    text_column: str | None,
    trust: list[str],
    batch_size: int,
    expect_task: str | None = None,
) -> Scored:
    """Load one jar, predict the test set, compute metrics and costs.

    ``expect_task`` (the first model's task) makes a model of another task an InputError.
    """
    import numpy as np

    info = api.inspect(path)
    plan = InputPlan.from_schema(
        info.schema, text_column=text_column, ignore_extra=True, skip=frozenset([target])
    )
    t0 = time.perf_counter()
    model = api.load(path, trusted=trust)
    first_load = time.perf_counter() - t0
    # The first load also imports scikit-learn modules; time two more and keep the best.
    load_times = [first_load]
    for _ in range(2):
        t0 = time.perf_counter()
        api.load(path, trusted=trust)
        load_times.append(time.perf_counter() - t0)
    task = task_of(model)
    if expect_task and task != expect_task:
        raise InputError(
            f"the models do not share a task: {name} is a {task} model, the first one a "
            f"{expect_task} model"
        )
    X = plan.prepare(df, 0)
    n = len(df)
    try:
        pred = np.asarray(model.predict(X))
    except (ValueError, TypeError) as exc:
        raise plan.diagnose(df, exc, 0) from exc
    lat_row, lat_batch, batch = latency(model, X, n, batch_size)
    costs = {
        "size_bytes": float(os.path.getsize(path)),
        "load_seconds": min(load_times),
        "latency_row_seconds": lat_row,
        "latency_batch_seconds": lat_batch,
        "per_row_in_batch_seconds": lat_batch / max(batch, 1),
    }
    scored = Scored(
        path=path,
        name=name,
        type=info.type,
        task=task,
        metrics={},
        costs=costs,
        batch_rows=batch,
        sklearn_version=str(info.environment.get("packages", {}).get("scikit-learn", "")),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "classification":
            classes = np.asarray(model.classes_)
            y = _align_target(df[target], classes)
            scores, is_proba = None, False
            if hasattr(model, "predict_proba"):
                scores, is_proba = np.asarray(model.predict_proba(X)), True
            elif hasattr(model, "decision_function") and len(classes) == 2:
                scores = np.asarray(model.decision_function(X))
            scored.metrics, scored.notes = classification_metrics(
                y, pred, scores, classes, is_proba
            )
            scored.classes = classes.tolist()
            scored.y_true, scored.y_pred = y, pred
            scored.scores, scored.scores_are_proba = scores, is_proba
        else:
            import pandas as pd

            y = pd.to_numeric(df[target], errors="coerce")
            if bool(y.isna().any()):
                raise InputError(f"the target column {target!r} must hold numbers for a regressor")
            if pred.ndim != 1:
                raise InputError(
                    f"{name} predicts {pred.shape[1]} outputs; compare scores one --target column"
                )
            y_arr = y.to_numpy(dtype=float)
            scored.metrics = regression_metrics(y_arr, pred)
            scored.y_true, scored.y_pred = y_arr, pred.astype(float)
    return scored


def best_indices(values: list[float], higher: bool) -> set[int]:
    """Indices of the best finite value (all of them on a tie); empty when nothing stands out.

    >>> best_indices([0.9, 0.95, 0.95], True), best_indices([1.0, 1.0], True)
    ({1, 2}, set())
    """
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2 or len(set(finite)) == 1:
        return set()
    best = max(finite) if higher else min(finite)
    return {i for i, v in enumerate(values) if v == best}


def _names(paths: tuple[str, ...]) -> list[str]:
    """Short, unique display names for the jars (file names, de-duplicated)."""
    base = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(base)) == len(base):
        return base
    return list(paths)


def metric_table(results: list[Scored]) -> list[tuple[str, str, list[float], bool]]:
    """Rows (key, label, values per model, higher is better) for the task's metrics and costs."""
    metrics = CLASSIFICATION if results[0].task == "classification" else REGRESSION
    rows = [
        (k, label, [r.metrics.get(k, math.nan) for r in results], hi)
        for k, (label, hi) in metrics.items()
    ]
    rows += [(k, label, [r.costs[k] for r in results], hi) for k, (label, hi) in COSTS.items()]
    return rows


def format_value(key: str, v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    if key == "size_bytes":
        return human_bytes(v)
    if key.endswith("_seconds"):
        return human_seconds(v)
    return f"{v:.4f}"


@click.command(short_help="Compare models on a labelled test set: metrics, latency, size, report.")
@click.argument("models", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="Test set (CSV, Parquet or JSON lines; - for stdin) with features and the target.",
)
@click.option("--target", required=True, metavar="COLUMN", help="The column holding the truth.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Format of --data.")
@click.option(
    "--report",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a self-contained HTML report with plots here.",
)
@click.option(
    "--text-column", metavar="NAME", default=None, help="For text models: the texts' column."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Rows in the batch whose prediction latency is measured.",
)
@click.option(
    "--trust", multiple=True, metavar="NAME", help="Extra exact module.qualname to trust."
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def compare(
    models: tuple[str, ...],
    data: str,
    target: str,
    fmt: str | None,
    report: str | None,
    text_column: str | None,
    batch_size: int,
    trust: tuple[str, ...],
    as_json: bool,
) -> None:
    """Compare MODELS on a labelled test set: metrics, latency, size, load time.

    Classifiers get accuracy, balanced accuracy, F1 (macro), ROC AUC and log
    loss; regressors R², MAE and RMSE. All models must share a task. The best
    value in each row is marked. The test set must fit in memory; extra columns
    are ignored (each model takes the columns its schema names).

    \b
    Examples:
      skjar compare knn.skjar logreg.skjar --data test.csv --target species
      skjar compare v1.skjar v2.skjar --data test.parquet --target price --report report.html
      skjar compare spam-*.skjar --data mails.jsonl --target label --text-column body --json
    """
    infos = [api.inspect(m) for m in models]
    str_cols: frozenset[str] = frozenset()
    for info in infos:
        str_cols |= InputPlan.from_schema(info.schema, ignore_extra=True).str_columns()
    df = read_all(data, detect_format(data, fmt), str_cols)
    if target not in df.columns:
        raise InputError(
            f"--target {target!r} is not a column of the data; it has: "
            + ", ".join(repr(str(c)) for c in df.columns[:30])
        )
    missing = df[target].isna()
    if bool(missing.all()):
        raise InputError(f"the target column {target!r} is empty")
    if bool(missing.any()):
        note(f"dropping {int(missing.sum())} row(s) without a target", style="yellow", err=True)
        df = df.loc[~missing].reset_index(drop=True)
    names = _names(models)
    results: list[Scored] = []
    for path, name in zip(models, names):
        expect = results[0].task if results else None
        results.append(
            score_model(path, name, df, target, text_column, list(trust), batch_size, expect)
        )
    task = results[0].task
    summary = {
        "data": "stdin" if data == "-" else data,
        "rows": len(df),
        "target": target,
        "task": task,
        "models": [r.to_dict() for r in results],
    }
    if report:
        from ._report import render_report

        html = render_report(summary, results, metric_table(results))
        tmp = f"{report}.partial"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, report)
        summary["report"] = report
    if as_json:
        emit_json(summary)
        return
    rows = metric_table(results)
    out_rows = []
    for key, label, values, higher in rows:
        best = best_indices(values, higher)
        out_rows.append(
            [escape(label)]
            + [
                f"[bold green]{escape(format_value(key, v))} ★[/bold green]"
                if i in best
                else escape(format_value(key, v))
                for i, v in enumerate(values)
            ]
        )
    console().print(
        f"[bold]{task}[/bold] on {escape(summary['data'])}: {len(df):,} rows, target "
        f"{escape(target)!r}"
    )
    table(
        "comparison (★ best)",
        ["", *(f"{r.name}\n{short_type(r.type)}" for r in results)],
        out_rows,
        markup=True,
    )
    batch = results[0].batch_rows
    note(
        f"latency: median of single-row calls, and of 3 calls on a batch of {batch:,} rows; "
        "load time: best of 3 loads",
        style="dim",
    )
    for r in results:
        for text in r.notes:
            note(f"{r.name}: {text}", style="yellow")
    if report:
        note(f"report written to {report}", style="green")
