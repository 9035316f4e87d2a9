"""``skjar diff``: header sections and fitted-attribute summaries, side by side."""

from __future__ import annotations

import json

import numpy as np

from skjar.cli._fitted import checksum, fitted_summary, summarize_value

from .conftest import Files, Runner, run_runner


def test_diff_two_models(cli: Runner, files: Files) -> None:
    out = cli("diff", str(files.knn), str(files.knn_other))
    assert out.exit_code == 0, out.output
    assert "n_neighbors" in out.stdout
    assert "estimator: 1 difference" in out.stdout
    assert "metadata" in out.stdout  # knn has metadata, knn5 has none
    assert "the jars differ" in out.stdout


def test_diff_json_has_fitted_attributes(files: Files) -> None:
    out = run_runner("diff", str(files.knn), str(files.logreg), "--json")
    assert out.exit_code == 0
    data = json.loads(out.stdout)
    assert data["identical"] is False
    fitted = {row["key"]: row for row in data["fitted"]}
    assert fitted["coef_"]["a"] == "—"
    assert fitted["coef_"]["b"].startswith("ndarray float64 (3, 4)")
    assert "xxh3=" in fitted["_fit_X"]["a"]
    sizes = {row["key"] for row in data["sizes"]}
    assert "compression" in sizes


def test_diff_same_file_is_identical(files: Files) -> None:
    out = run_runner("diff", str(files.mixed), str(files.mixed), "--exit-code")
    assert out.exit_code == 0, out.output
    assert "no differences" in out.stdout


def test_diff_exit_code_flag(files: Files) -> None:
    out = run_runner("diff", str(files.knn), str(files.knn_other), "--exit-code", "--header-only")
    assert out.exit_code == 1
    assert "fitted attributes not compared" in out.stdout


def test_diff_nested_estimators(files: Files) -> None:
    out = run_runner("diff", str(files.mixed), str(files.mixed), "--all", "--json")
    data = json.loads(out.stdout)
    keys = {row["key"] for row in data["fitted"]}
    assert "columntransformer.transformers_" in keys
    assert "columntransformer.transformers_[cat].categories_" in keys
    assert "logisticregression.coef_" in keys
    assert all(row["equal"] for row in data["fitted"])


def test_diff_untrusted_is_refused(cli: Runner, files: Files) -> None:
    out = cli("diff", str(files.untrusted), str(files.knn))
    assert out.exit_code == 1
    assert "untrusted" in out.stderr and "skjar_cli_test_custom.Doubler" in out.stderr


def test_diff_header_only_needs_no_trust(files: Files) -> None:
    out = run_runner("diff", str(files.untrusted), str(files.knn), "--header-only")
    assert out.exit_code == 0


def test_diff_corrupt_pickle_missing(cli: Runner, files: Files) -> None:
    out = cli("diff", str(files.corrupt), str(files.knn))
    assert out.exit_code == 1
    assert "error:" in out.stderr
    out = cli("diff", str(files.pickle), str(files.knn))
    assert out.exit_code == 1 and "pickle" in out.stderr
    assert cli("diff", str(files.root / "nope.skjar"), str(files.knn)).exit_code == 2


def test_diff_ignore_sections(files: Files) -> None:
    out = run_runner(
        "diff",
        str(files.knn),
        str(files.knn_other),
        "--json",
        "--ignore",
        "environment",
        "--ignore",
        "fitted",
    )
    data = json.loads(out.stdout)
    assert "environment" not in data and "fitted" not in data and "estimator" in data


def test_summaries() -> None:
    assert summarize_value(np.array([1.0, 3.0])).startswith(
        "ndarray float64 (2,) min=1 max=3 mean=2"
    )
    assert summarize_value({"a": 1}).startswith("dict len=1 xxh3=")
    assert checksum(np.arange(3)) != checksum(np.arange(3)[::-1])
    assert checksum({"a": np.arange(3)}) == checksum({"a": np.arange(3)})
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=12, random_state=0).fit(
        np.random.default_rng(0).normal(size=(40, 3)), [0, 1] * 20
    )
    summary = fitted_summary(forest)
    assert summary["estimators_"].startswith("list of 12 estimators")
    assert "estimators_[0].tree_" in summary
    assert "node_count=" in summary["estimators_[0].tree_"]
