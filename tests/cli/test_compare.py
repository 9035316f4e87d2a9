"""``skjar compare``: metrics per task, costs, JSON, the HTML report, and error paths."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, r2_score

import skjar
from skjar.cli import _svg
from skjar.cli.compare import best_indices

from .conftest import Files, Runner, run_runner


def test_compare_classifiers(files: Files) -> None:
    res = run_runner(
        "compare",
        str(files.knn),
        str(files.logreg),
        "--data",
        str(files.iris_csv),
        "--target",
        "species",
    )
    assert res.exit_code == 0, res.output
    for label in (
        "accuracy",
        "balanced accuracy",
        "F1 (macro)",
        "ROC AUC",
        "log loss",
        "file size",
        "load time",
        "latency, 1 row",
        "latency, batch",
    ):
        assert label in res.stdout, label
    assert "★" in res.stdout


def test_compare_json_metrics_are_right(files: Files) -> None:
    res = run_runner(
        "compare",
        str(files.knn),
        str(files.logreg),
        "--data",
        str(files.iris_csv),
        "--target",
        "species",
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["task"] == "classification" and data["rows"] == 38
    knn = data["models"][0]
    test = pd.read_csv(files.iris_csv)
    expected = accuracy_score(
        test["species"], skjar.load(files.knn).predict(test.drop(columns="species"))
    )
    assert math.isclose(knn["metrics"]["accuracy"], expected)
    for key in ("balanced_accuracy", "f1_macro", "roc_auc", "log_loss"):
        assert isinstance(knn["metrics"][key], float)
    for key in ("size_bytes", "load_seconds", "latency_row_seconds", "latency_batch_seconds"):
        assert knn[key] > 0
    assert knn["size_bytes"] == files.knn.stat().st_size


def test_compare_regressors_with_report(cli: Runner, files: Files, out_dir: Path) -> None:
    report = out_dir / "report.html"
    res = cli(
        "compare",
        str(files.ridge),
        str(files.tree_reg),
        "--data",
        str(files.regression_csv),
        "--target",
        "target",
        "--report",
        str(report),
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["task"] == "regression"
    test = pd.read_csv(files.regression_csv)
    pred = skjar.load(files.ridge).predict(test.drop(columns="target"))
    assert math.isclose(data["models"][0]["metrics"]["r2"], r2_score(test["target"], pred))
    assert set(data["models"][0]["metrics"]) == {"r2", "mae", "rmse"}
    html = report.read_text()
    assert "residuals" in html and "predicted vs actual" in html
    _assert_self_contained(html)


def test_compare_report_classification(files: Files, out_dir: Path) -> None:
    report = out_dir / "report.html"
    res = run_runner(
        "compare",
        str(files.knn),
        str(files.logreg),
        str(files.knn_other),
        "--data",
        str(files.iris_csv),
        "--target",
        "species",
        "--report",
        str(report),
    )
    assert res.exit_code == 0, res.output
    html = report.read_text()
    _assert_self_contained(html)
    for title in (
        "ROC curve",
        "Precision\u2013recall",
        "Confusion matrices",
        "Metrics",
        "log loss",
    ):
        assert title in html, title
    assert html.count("<svg") >= 2 + 3 + 8  # curves, confusion matrices, metric bars


def _assert_self_contained(html: str) -> None:
    assert html.startswith("<!doctype html>")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), "external URL"
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert "<style>" in html


def test_compare_text_models(files: Files, out_dir: Path) -> None:
    data = out_dir / "mails.csv"
    df = pd.read_csv(files.texts_csv)
    model = skjar.load(files.text)
    df["label"] = model.predict(df["body"].tolist())
    df.to_csv(data, index=False)
    res = run_runner(
        "compare",
        str(files.text),
        "--data",
        str(data),
        "--target",
        "label",
        "--json",
        "--text-column",
        "body",
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["models"][0]["metrics"]["accuracy"] == 1.0


def test_compare_mixed_tasks_is_a_usage_error(files: Files, out_dir: Path) -> None:
    from sklearn.linear_model import Ridge

    regressor = out_dir / "petal-width.skjar"
    skjar.dump(Ridge().fit(files.iris_X, files.iris_X["petal width (cm)"]), regressor)
    res = run_runner(
        "compare",
        str(files.knn),
        str(regressor),
        "--data",
        str(files.iris_csv),
        "--target",
        "species",
    )
    assert res.exit_code == 2
    assert "do not share a task" in res.stderr


def test_compare_regressor_needs_numeric_target(files: Files, out_dir: Path) -> None:
    from sklearn.linear_model import Ridge

    regressor = out_dir / "petal-width.skjar"
    skjar.dump(Ridge().fit(files.iris_X, files.iris_X["petal width (cm)"]), regressor)
    res = run_runner(
        "compare", str(regressor), "--data", str(files.iris_csv), "--target", "species"
    )
    assert res.exit_code == 2 and "must hold numbers" in res.stderr


@pytest.mark.parametrize(
    ("values", "higher", "best"),
    [
        ([1.0, 2.0, 2.0], True, {1, 2}),
        ([1.0, 1.0], True, set()),
        ([3.0, float("nan"), 1.0], False, {2}),
    ],
)
def test_best_indices(values: list[float], higher: bool, best: set[int]) -> None:
    assert best_indices(values, higher) == best


def test_svg_helpers() -> None:
    assert _svg.nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    svg = _svg.line_chart(
        [_svg.Series("a <b>", [0, 0.5, 1], [0, 0.9, 1])], title="t", xlabel="x", ylabel="y"
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "a &lt;b&gt;" in svg
    svg = _svg.heatmap([[3, 1], [0, 4]], ["a", "b"], ["a", "b"], title="cm")
    assert svg.count("<rect") == 4
    svg = _svg.bar_chart(["m1", "m2"], [0.5, float("nan")], title="acc")
    assert "n/a" in svg
