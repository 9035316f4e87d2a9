"""``skjar predict``: formats in and out, stdin/stdout, chunking, schema checks, error paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import skjar

from .conftest import Files, Runner, run_runner


def _expected(files: Files, method: str = "predict") -> np.ndarray:
    return np.asarray(getattr(skjar.load(files.knn), method)(files.iris_X))


def test_predict_csv_to_csv(cli: Runner, files: Files, out_dir: Path) -> None:
    out = out_dir / "pred.csv"
    res = cli("predict", str(files.knn), str(files.iris_features_csv), "-o", str(out))
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out)
    assert list(got.columns) == ["prediction"]
    assert got["prediction"].tolist() == _expected(files).tolist()
    assert "scored 38 rows" in res.stderr


@pytest.mark.parametrize("source", ["iris_parquet", "iris_jsonl", "iris_features_csv"])
@pytest.mark.parametrize("target", ["out.csv", "out.jsonl", "out.parquet"])
def test_predict_formats(files: Files, out_dir: Path, source: str, target: str) -> None:
    out = out_dir / target
    res = run_runner(
        "predict",
        str(files.knn),
        str(getattr(files, source)),
        "-o",
        str(out),
        "--method",
        "predict_proba",
        "--chunksize",
        "7",
    )
    assert res.exit_code == 0, res.output
    if target.endswith(".csv"):
        got = pd.read_csv(out)
    elif target.endswith(".jsonl"):
        got = pd.read_json(out, lines=True)
    else:
        got = pd.read_parquet(out)
    assert list(got.columns) == ["proba_setosa", "proba_versicolor", "proba_virginica"]
    np.testing.assert_allclose(got.to_numpy(), _expected(files, "predict_proba"), rtol=1e-9)


def test_predict_chunks_give_the_same_answer(files: Files, out_dir: Path) -> None:
    for chunksize in ("1", "5", "1000"):
        out = out_dir / f"p{chunksize}.csv"
        res = run_runner(
            "predict",
            str(files.knn),
            str(files.iris_features_csv),
            "-o",
            str(out),
            "--chunksize",
            chunksize,
        )
        assert res.exit_code == 0
        assert pd.read_csv(out)["prediction"].tolist() == _expected(files).tolist()


def test_predict_stdin_to_stdout(cli: Runner, files: Files) -> None:
    res = cli(
        "predict",
        str(files.knn),
        "-",
        "-o",
        "-",
        "--format",
        "jsonl",
        "--output-format",
        "jsonl",
        input=files.iris_jsonl.read_bytes(),
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["prediction"] for r in rows] == _expected(files).tolist()


def test_predict_parquet_from_stdin(files: Files, out_dir: Path) -> None:
    out = out_dir / "p.csv"
    res = run_runner(
        "predict",
        str(files.knn),
        "-",
        "--format",
        "parquet",
        "-o",
        str(out),
        input=files.iris_parquet.read_bytes(),
    )
    assert res.exit_code == 0, res.output
    assert pd.read_csv(out)["prediction"].tolist() == _expected(files).tolist()


def test_predict_keep_and_reordered_columns(files: Files, out_dir: Path) -> None:
    data = out_dir / "shuffled.csv"
    df = files.iris_X.iloc[:, ::-1].copy()
    df.insert(0, "row_id", range(len(df)))
    df.to_csv(data, index=False)
    out = out_dir / "p.csv"
    res = run_runner("predict", str(files.knn), str(data), "-o", str(out), "--keep", "row_id")
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out)
    assert list(got.columns) == ["row_id", "prediction"]
    assert got["row_id"].tolist() == list(range(len(df)))
    assert got["prediction"].tolist() == _expected(files).tolist()


def test_predict_mixed_types_and_decision_function(files: Files, out_dir: Path) -> None:
    out = out_dir / "p.jsonl"
    res = run_runner(
        "predict",
        str(files.mixed),
        str(files.mixed_csv),
        "-o",
        str(out),
        "--keep",
        "id",
        "--method",
        "decision_function",
        "--json",
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["rows"] == 50 and summary["method"] == "decision_function"
    got = pd.read_json(out, lines=True)
    assert list(got.columns) == ["id", "decision"]
    model = skjar.load(files.mixed)
    X = pd.read_csv(files.mixed_csv).drop(columns="id")
    np.testing.assert_allclose(got["decision"], model.decision_function(X))


def test_predict_transform(files: Files, out_dir: Path) -> None:
    out = out_dir / "t.csv"
    res = run_runner(
        "predict",
        str(files.mixed),
        str(files.mixed_csv),
        "-o",
        str(out),
        "--ignore-extra",
        "--method",
        "transform",
    )
    # A pipeline ending in a classifier has no transform: a usage error naming what it offers.
    assert res.exit_code == 2
    assert "has no transform()" in res.stderr and "predict_proba" in res.stderr
    assert not out.exists()


def test_predict_text_model(cli: Runner, files: Files, out_dir: Path) -> None:
    out = out_dir / "spam.csv"
    res = cli("predict", str(files.text), str(files.texts_csv), "-o", str(out))
    assert res.exit_code == 0, res.output
    texts = pd.read_csv(files.texts_csv)["body"].tolist()
    assert pd.read_csv(out)["prediction"].tolist() == skjar.load(files.text).predict(texts).tolist()


def test_predict_text_model_column_choice(files: Files, out_dir: Path) -> None:
    data = out_dir / "mails.csv"
    df = pd.read_csv(files.texts_csv)
    df.insert(0, "id", range(len(df)))
    df.to_csv(data, index=False)
    out = out_dir / "spam.csv"
    res = run_runner("predict", str(files.text), str(data), "-o", str(out))
    assert res.exit_code == 2
    assert "--text-column" in res.stderr and "'id', 'body'" in res.stderr
    res = run_runner(
        "predict",
        str(files.text),
        str(data),
        "-o",
        str(out),
        "--text-column",
        "body",
        "--keep",
        "id",
    )
    assert res.exit_code == 0, res.output
    assert list(pd.read_csv(out).columns) == ["id", "prediction"]
    res = run_runner("predict", str(files.text), str(data), "-o", str(out), "--text-column", "x")
    assert res.exit_code == 2 and "'x' is not in the data" in res.stderr


def test_predict_array_model(files: Files, out_dir: Path) -> None:
    out = out_dir / "a.csv"
    res = run_runner("predict", str(files.array), str(files.array_csv), "-o", str(out))
    assert res.exit_code == 0, res.output
    X = pd.read_csv(files.array_csv).to_numpy()
    np.testing.assert_allclose(pd.read_csv(out)["prediction"], skjar.load(files.array).predict(X))
    res = run_runner("predict", str(files.array), str(files.iris_features_csv), "-o", str(out))
    assert res.exit_code == 2 and "array of 3 columns" in res.stderr


# -- error paths --------------------------------------------------------------
def test_predict_wrong_columns(cli: Runner, files: Files, out_dir: Path) -> None:
    data = out_dir / "wrong.csv"
    df = files.iris_X.rename(columns={"petal width (cm)": "Petal Width (cm)"})
    df["colour"] = "red"
    df.to_csv(data, index=False)
    out = out_dir / "p.csv"
    res = cli("predict", str(files.knn), str(data), "-o", str(out))
    assert res.exit_code == 2
    assert "missing: 'petal width (cm)'" in res.stderr
    assert "extra: 'Petal Width (cm)', 'colour'" in res.stderr
    assert "did you mean" in res.stderr
    assert not out.exists()


def test_predict_extra_columns_can_be_ignored(files: Files, out_dir: Path) -> None:
    out = out_dir / "p.csv"
    res = run_runner("predict", str(files.knn), str(files.iris_csv), "-o", str(out))
    assert res.exit_code == 2 and "extra: 'species'" in res.stderr
    res = run_runner(
        "predict", str(files.knn), str(files.iris_csv), "-o", str(out), "--ignore-extra"
    )
    assert res.exit_code == 0


def test_predict_mistyped_column(cli: Runner, files: Files, out_dir: Path) -> None:
    data = out_dir / "typo.csv"
    df = pd.read_csv(files.mixed_csv).drop(columns="id")
    df["age"] = df["age"].astype(str)
    df.loc[3, "age"] = "forty"
    df.to_csv(data, index=False)
    res = cli("predict", str(files.mixed), str(data), "-o", str(out_dir / "p.csv"))
    assert res.exit_code == 2
    assert "mistyped" in res.stderr
    assert "'age': the model needs numbers, found 'forty' in data row 4" in res.stderr


def test_predict_text_in_numeric_column_without_dtypes(files: Files, out_dir: Path) -> None:
    data = out_dir / "typo.csv"
    df = files.iris_X.astype(object)
    df.iloc[5, 2] = "n/a?"
    df.to_csv(data, index=False)
    res = run_runner("predict", str(files.knn), str(data), "-o", str(out_dir / "p.csv"))
    assert res.exit_code == 2
    assert "'petal length (cm)' (e.g. 'n/a?' in data row 6)" in res.stderr


def test_predict_empty_inputs(cli: Runner, files: Files, out_dir: Path) -> None:
    empty = out_dir / "empty.csv"
    empty.write_bytes(b"")
    out = out_dir / "p.csv"
    res = cli("predict", str(files.knn), str(empty), "-o", str(out))
    assert res.exit_code == 2 and "is empty" in res.stderr
    header_only = out_dir / "header.csv"
    header_only.write_text(",".join(files.iris_X.columns) + "\n")
    res = cli("predict", str(files.knn), str(header_only), "-o", str(out))
    assert res.exit_code == 2 and "has no rows" in res.stderr
    assert not out.exists()


def test_predict_empty_stdin_and_jsonl(files: Files, out_dir: Path) -> None:
    out = out_dir / "p.csv"
    res = run_runner("predict", str(files.knn), "-", "-o", str(out), input=b"")
    assert res.exit_code == 2 and "stdin is empty" in res.stderr
    blank = out_dir / "blank.jsonl"
    blank.write_text("\n\n")
    res = run_runner("predict", str(files.knn), str(blank), "-o", str(out))
    assert res.exit_code == 2 and "has no rows" in res.stderr
    bad = out_dir / "bad.jsonl"
    bad.write_text('{"a": 1}\n[1, 2]\n')
    res = run_runner("predict", str(files.knn), str(bad), "-o", str(out))
    assert res.exit_code == 2 and "line 2: expected a JSON object" in res.stderr


def test_predict_untrusted(cli: Runner, files: Files, out_dir: Path) -> None:
    out = out_dir / "p.csv"
    res = cli("predict", str(files.untrusted), str(files.iris_features_csv), "-o", str(out))
    assert res.exit_code == 1
    assert "untrusted" in res.stderr and "skjar_cli_test_custom.Doubler" in res.stderr
    assert not out.exists()


def test_predict_corrupt_pickle_missing(cli: Runner, files: Files, out_dir: Path) -> None:
    out = out_dir / "p.csv"
    data = str(files.iris_features_csv)
    res = cli("predict", str(files.corrupt), data, "-o", str(out))
    assert res.exit_code == 1 and "error:" in res.stderr
    res = cli("predict", str(files.pickle), data, "-o", str(out))
    assert res.exit_code == 1 and "pickle" in res.stderr
    res = cli("predict", str(files.root / "nope.skjar"), data, "-o", str(out))
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = cli("predict", str(files.knn), str(files.root / "nope.csv"), "-o", str(out))
    assert res.exit_code == 2 and "does not exist" in res.stderr
    assert not out.exists()


def test_predict_usage_errors(files: Files, out_dir: Path) -> None:
    data = str(files.iris_features_csv)
    res = run_runner("predict", str(files.knn), data)
    assert res.exit_code == 2 and "-o" in res.stderr
    res = run_runner("predict", str(files.knn), data, "-o", str(out_dir / "x.unknown"))
    assert res.exit_code == 2 and "--output-format" not in res.stderr and "--format" in res.stderr
    res = run_runner("predict", str(files.knn), data, "-o", str(out_dir / "no" / "x.csv"))
    assert res.exit_code == 2 and "does not exist" in res.stderr
    res = run_runner("predict", str(files.knn), data, "-o", "-", "--output-format", "parquet")
    assert res.exit_code == 2 and "Parquet output needs a file path" in res.stderr
    res = run_runner(
        "predict", str(files.knn), data, "-o", str(out_dir / "p.csv"), "--chunksize", "0"
    )
    assert res.exit_code == 2
    res = run_runner(
        "predict", str(files.knn), data, "-o", str(out_dir / "p.csv"), "--keep", "nope"
    )
    assert res.exit_code == 2 and "--keep column(s) not in the data: 'nope'" in res.stderr


def test_predict_progress_bar_on_request(files: Files, out_dir: Path) -> None:
    res = run_runner(
        "predict",
        str(files.knn),
        str(files.iris_features_csv),
        "-o",
        str(out_dir / "p.csv"),
        "--progress",
    )
    assert res.exit_code == 0
    assert "rows" in res.stderr


def test_predict_gzip_in_and_out(files: Files, out_dir: Path) -> None:
    import gzip

    data = out_dir / "iris.csv.gz"
    data.write_bytes(gzip.compress(files.iris_features_csv.read_bytes()))
    out = out_dir / "p.jsonl.gz"
    res = run_runner("predict", str(files.knn), str(data), "-o", str(out))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in gzip.decompress(out.read_bytes()).splitlines()]
    assert [r["prediction"] for r in rows] == _expected(files).tolist()
    res = run_runner("predict", str(files.knn), str(data), "-o", str(out_dir / "p.parquet.gz"))
    assert res.exit_code == 2 and "drop the .gz" in res.stderr
    assert not list(out_dir.glob("*.partial"))
