"""Fixtures for the command-line tests: small jars, damaged jars, data files, and two ways
to run ``skjar`` — the real console command in a subprocess, and click's CliRunner.

Every test that takes the ``cli`` fixture runs twice, once per way, and sees the
same :class:`Outcome` (exit code, stdout, stderr).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import skjar
from skjar.cli.main import cli as cli_group

SUBPROCESS_ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}


@dataclass
class Outcome:
    """What one run of ``skjar`` did."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


Runner = Callable[..., Outcome]


def run_subprocess(
    *args: str, input: bytes | str | None = None, cwd: Path | None = None
) -> Outcome:
    """``skjar ARGS`` as a real process (``python -m skjar.cli.main``, the console entry point)."""
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [sys.executable, "-m", "skjar.cli.main", *args],
        input=data,
        capture_output=True,
        env=SUBPROCESS_ENV,
        cwd=cwd,
        timeout=120,
    )
    return Outcome(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def run_runner(*args: str, input: bytes | str | None = None, cwd: Path | None = None) -> Outcome:
    """``skjar ARGS`` through click's CliRunner, in this process."""
    runner = CliRunner()
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = runner.invoke(cli_group, list(args), input=input, catch_exceptions=False)
    finally:
        os.chdir(old)
    return Outcome(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(params=["runner", "subprocess"])
def cli(request: pytest.FixtureRequest) -> Runner:
    """Run ``skjar`` one way or the other (each test using it runs both ways)."""
    return run_runner if request.param == "runner" else run_subprocess


# -- models -----------------------------------------------------------------
CUSTOM_MODULE = textwrap.dedent(
    """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin

    class Doubler(TransformerMixin, BaseEstimator):
        def fit(self, X, y=None):
            self.n_features_in_ = X.shape[1]
            self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
            return self

        def transform(self, X):
            return np.asarray(X, dtype=float) * 2
    """
)


@dataclass
class Files:
    """Everything the tests read, made once per session."""

    root: Path
    iris_X: pd.DataFrame
    knn: Path
    logreg: Path
    knn_other: Path
    mixed: Path
    text: Path
    array: Path
    ridge: Path
    tree_reg: Path
    untrusted: Path
    corrupt: Path
    bad_header: Path
    truncated: Path
    pickle: Path
    iris_csv: Path  # features + species
    iris_features_csv: Path
    iris_parquet: Path
    iris_jsonl: Path
    mixed_csv: Path
    texts_csv: Path
    regression_csv: Path
    array_csv: Path

    def models(self) -> dict[str, Any]:
        return {"knn": skjar.load(self.knn), "logreg": skjar.load(self.logreg)}


def _flip(path: Path, target: Path, offset: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeRegressor

    root = tmp_path_factory.mktemp("cli")
    iris = load_iris(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        iris.data, iris.target_names[iris.target], random_state=0
    )
    knn = KNeighborsClassifier(3).fit(X_train, y_train)
    skjar.dump(knn, root / "knn.skjar", metadata={"owner": "tests"})
    skjar.dump(
        LogisticRegression(max_iter=1000).fit(X_train, y_train),
        root / "logreg.skjar",
        compress="zstd",
    )
    skjar.dump(KNeighborsClassifier(5).fit(X_train, y_train), root / "knn5.skjar")

    rng = np.random.default_rng(0)
    n = 300
    mixed_df = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50, 10, n).round(2),
            "city": rng.choice(["oslo", "bergen", "tromso"], n),
        }
    )
    mixed_y = np.where(mixed_df["income"] + (mixed_df["city"] == "oslo") * 5 > 52, "yes", "no")
    ct = ColumnTransformer(
        [("num", StandardScaler(), ["age", "income"]), ("cat", OneHotEncoder(), ["city"])]
    )
    skjar.dump(make_pipeline(ct, LogisticRegression()).fit(mixed_df, mixed_y), root / "mixed.skjar")

    texts = [
        " ".join(
            rng.choice(["win", "free", "cash", "prize"] if s else ["meeting", "notes", "team"], 4)
        )
        for s in (rng.random(200) < 0.5)
    ]
    labels = ["spam" if t.split()[0] in ("win", "free", "cash", "prize") else "ham" for t in texts]
    text_model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, labels)
    skjar.dump(text_model, root / "text.skjar")

    Xa = rng.normal(size=(100, 3))
    skjar.dump(Ridge().fit(Xa, Xa @ [1.0, 2.0, 3.0]), root / "array.skjar")

    diabetes = load_diabetes(as_frame=True)
    d_train, d_test, t_train, t_test = train_test_split(
        diabetes.data, diabetes.target, random_state=0
    )
    skjar.dump(Ridge().fit(d_train, t_train), root / "ridge.skjar")
    skjar.dump(
        DecisionTreeRegressor(max_depth=4, random_state=0).fit(d_train, t_train),
        root / "tree_reg.skjar",
    )

    # An instance of a class from a module the default trust knows nothing about.
    moddir = root / "mods"
    moddir.mkdir()
    (moddir / "skjar_cli_test_custom.py").write_text(CUSTOM_MODULE)
    sys.path.insert(0, str(moddir))
    try:
        import skjar_cli_test_custom as custom

        pipe = make_pipeline(custom.Doubler(), LogisticRegression(max_iter=1000))
        skjar.dump(pipe.fit(X_train, y_train), root / "untrusted.skjar")
    finally:
        sys.path.remove(str(moddir))
        sys.modules.pop("skjar_cli_test_custom", None)

    knn_bytes = (root / "knn.skjar").read_bytes()
    corrupt = _flip(root / "knn.skjar", root / "corrupt.skjar", len(knn_bytes) - 100)
    bad_header = _flip(root / "knn.skjar", root / "bad-header.skjar", 40)
    truncated = root / "truncated.skjar"
    truncated.write_bytes(knn_bytes[: len(knn_bytes) - 50])
    pkl = root / "model.pkl"
    pkl.write_bytes(pickle.dumps({"not": "a jar"}))

    test = X_test.copy()
    test["species"] = y_test
    test.to_csv(root / "iris.csv", index=False)
    X_test.to_csv(root / "iris-features.csv", index=False)
    X_test.to_parquet(root / "iris.parquet", index=False)
    X_test.to_json(root / "iris.jsonl", orient="records", lines=True)
    mixed_test = mixed_df.iloc[:50].copy()
    mixed_test.insert(0, "id", range(50))
    mixed_test.to_csv(root / "mixed.csv", index=False)
    pd.DataFrame({"body": texts[:30]}).to_csv(root / "texts.csv", index=False)
    reg = d_test.copy()
    reg["target"] = t_test
    reg.to_csv(root / "regression.csv", index=False)
    pd.DataFrame(Xa[:20], columns=["a", "b", "c"]).to_csv(root / "array.csv", index=False)

    return Files(
        root=root,
        iris_X=X_test.reset_index(drop=True),
        knn=root / "knn.skjar",
        logreg=root / "logreg.skjar",
        knn_other=root / "knn5.skjar",
        mixed=root / "mixed.skjar",
        text=root / "text.skjar",
        array=root / "array.skjar",
        ridge=root / "ridge.skjar",
        tree_reg=root / "tree_reg.skjar",
        untrusted=root / "untrusted.skjar",
        corrupt=corrupt,
        bad_header=bad_header,
        truncated=truncated,
        pickle=pkl,
        iris_csv=root / "iris.csv",
        iris_features_csv=root / "iris-features.csv",
        iris_parquet=root / "iris.parquet",
        iris_jsonl=root / "iris.jsonl",
        mixed_csv=root / "mixed.csv",
        texts_csv=root / "texts.csv",
        regression_csv=root / "regression.csv",
        array_csv=root / "array.csv",
    )


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path
