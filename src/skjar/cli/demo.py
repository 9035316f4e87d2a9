"""``skjar demo``: the whole workflow on two classic models, in a scratch folder.

Train the iris KNN and a small spam classifier, save both, inspect and audit
them from their headers, verify their digests, load each in a fresh Python
process (plain and memory-mapped) and predict on new data, comparing with the
in-memory model; then score a CSV with ``skjar predict`` and compare the KNN
with a challenger (logistic regression) with ``skjar compare --report``.

>>> from click.testing import CliRunner
>>> CliRunner().invoke(demo, ["--workdir", "demo-out"]).exit_code  # doctest: +SKIP
0
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import numpy as np

from .. import api
from ._render import human_bytes, note, table
from .compare import compare
from .predict import predict
from .verify import check_jar

SPAM_WORDS = (
    "win free prize cash claim urgent offer winner credit bonus click now limited cheap".split()
)
HAM_WORDS = (
    "meeting lunch report project tomorrow thanks agenda review notes team call schedule".split()
)
FILLER = "the a to of and for your you this is on with at please".split()


def spam_corpus(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Generated emails: spam leans on SPAM_WORDS, ham on HAM_WORDS, both share filler."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        spam = bool(rng.random() < 0.4)
        own, other = (SPAM_WORDS, HAM_WORDS) if spam else (HAM_WORDS, SPAM_WORDS)
        words = list(rng.choice(own, 5)) + list(rng.choice(FILLER, 6)) + list(rng.choice(other, 1))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append("spam" if spam else "ham")
    return texts, np.array(labels)


def train_models() -> dict[str, tuple[Any, Any, dict[str, Any]]]:
    """iris-knn, spam (TF-IDF + logistic regression) and iris-logreg (the challenger).

    Each entry is (model, new data to predict, metadata to save with it).
    """
    from sklearn.datasets import load_iris
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    iris = load_iris(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        iris.data, iris.target_names[iris.target], random_state=0
    )
    knn = KNeighborsClassifier(3).fit(X_train, y_train)
    logreg = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    test = X_test.copy()
    test["species"] = y_test
    texts, labels = spam_corpus(2000, seed=0)
    new_texts, new_labels = spam_corpus(200, seed=1)
    spam = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(max_iter=1000))
    spam.fit(texts, labels)
    return {
        "iris-knn": (
            knn,
            X_test,
            {"dataset": "iris", "accuracy": round(float(knn.score(X_test, y_test)), 4)},
        ),
        "iris-logreg": (
            logreg,
            test,
            {"dataset": "iris", "accuracy": round(float(logreg.score(X_test, y_test)), 4)},
        ),
        "spam": (
            spam,
            new_texts,
            {
                "dataset": "generated emails",
                "accuracy": round(float(spam.score(new_texts, new_labels)), 4),
            },
        ),
    }


CHILD = """
import json, sys, time, numpy as np, pandas as pd
import skjar
t0 = time.perf_counter()
model = skjar.load(sys.argv[1], mmap=sys.argv[3] == "mmap")
load_s = time.perf_counter() - t0
data = json.load(open(sys.argv[2]))
X = pd.DataFrame(data["X"], columns=data["columns"]) if data["columns"] else data["X"]
print(json.dumps({"pred": np.asarray(model.predict(X)).tolist(), "load_s": load_s}))
"""


def _predict_in_fresh_process(path: Path, X: Any, mode: str, workdir: Path) -> dict[str, Any]:
    data = workdir / f"{path.stem}-{mode}-input.json"
    if hasattr(X, "columns"):
        payload = {"X": X.to_numpy().tolist(), "columns": list(X.columns)}
    else:
        payload = {"X": list(X), "columns": None}
    data.write_text(json.dumps(payload))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(data), mode],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _step(text: str) -> None:
    note(f"\n{text}", style="bold")


@click.command(short_help="Run the whole workflow on iris KNN and a spam classifier.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write the jars, data and report (default: a temporary folder).",
)
@click.pass_context
def demo(ctx: click.Context, workdir: str | None) -> None:
    """Run the whole workflow on iris KNN and a spam classifier.

    Trains them, saves them, inspects and audits them from their headers
    alone, verifies their digests, loads each in a fresh Python process (plain
    and memory-mapped) and checks the predictions are identical, scores a CSV
    with `skjar predict`, and compares the KNN with a logistic-regression
    challenger with `skjar compare --report` (report.html in the work folder).

    \b
    Examples:
      skjar demo
      skjar demo --workdir ./demo-out && open demo-out/report.html
    """
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="skjar-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    _step(f"1. training iris-knn, iris-logreg and spam (TF-IDF + logistic regression) in {folder}")
    models = train_models()
    rows = []
    for name, (model, _, meta) in models.items():
        path = folder / f"{name}.skjar"
        t0 = time.perf_counter()
        api.dump(model, path, metadata=meta, compress="zstd" if name == "spam" else None)
        rows.append(
            [
                name,
                type(model).__name__,
                human_bytes(os.path.getsize(path)),
                f"{(time.perf_counter() - t0) * 1000:.1f} ms",
                meta["accuracy"],
            ]
        )
    table("2. saved with skjar.dump", ["model", "type", "file", "dump time", "accuracy"], rows)

    for name in ("iris-knn", "spam"):
        info = api.inspect(folder / f"{name}.skjar")
        schema = info.schema
        features = schema.get("feature_names_in", schema.get("n_features_in", "text"))
        table(
            f"3. skjar inspect {name}.skjar (header only, nothing loaded)",
            ["field", "value"],
            [
                ["type", info.type],
                ["steps", ", ".join(info.object.get("children", {})) or "-"],
                ["features", features],
                ["classes", schema.get("classes", "-")],
                [
                    "made with",
                    ", ".join(f"{k} {v}" for k, v in info.environment["packages"].items()),
                ],
                ["metadata", json.dumps(info.metadata)],
            ],
        )

    rows = []
    for name in models:
        path = folder / f"{name}.skjar"
        names = api.audit(path)
        check = check_jar(str(path))
        rows.append(
            [
                f"{name}.skjar",
                len(names),
                sum(not n.trusted for n in names),
                "ok" if check["ok"] else f"FAILED: {check['error']}",
            ]
        )
    table(
        "4. skjar audit + skjar verify",
        ["jar", "names referenced", "untrusted", "digest"],
        rows,
    )

    jobs = [
        (name, mode, models[name][0], models[name][1])
        for name in ("iris-knn", "spam")
        for mode in ("plain", "mmap")
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda job: _predict_in_fresh_process(
                    folder / f"{job[0]}.skjar", job[3], job[1], folder
                ),
                jobs,
            )
        )
    rows = []
    for (name, mode, model, X_new), got in zip(jobs, results):
        expected = np.asarray(model.predict(X_new)).tolist()
        same = got["pred"] == expected
        rows.append(
            [
                name,
                mode,
                f"{got['load_s'] * 1000:.1f} ms",
                len(got["pred"]),
                got["pred"][:4],
                "yes" if same else "NO",
            ]
        )
        if not same:
            raise click.ClickException(f"{name} ({mode}) predicted differently after loading")
    table(
        "5. loaded in a fresh process, predicted on new data",
        [
            "model",
            "load",
            "load time (incl. sklearn import)",
            "rows",
            "first predictions",
            "identical",
        ],
        rows,
    )

    new_data = folder / "iris-new.csv"
    models["iris-knn"][1].to_csv(new_data, index=False)
    out = folder / "iris-predictions.csv"
    _step(f"6. skjar predict iris-knn.skjar {new_data.name} -o {out.name} --method predict_proba")
    ctx.invoke(
        predict,
        model=str(folder / "iris-knn.skjar"),
        data=str(new_data),
        output=str(out),
        method="predict_proba",
        progress=False,
    )
    test = folder / "iris-test.csv"
    models["iris-logreg"][1].to_csv(test, index=False)
    report = folder / "report.html"
    _step(
        f"7. skjar compare iris-knn.skjar iris-logreg.skjar --data {test.name} --target species "
        f"--report {report.name}"
    )
    ctx.invoke(
        compare,
        models=(str(folder / "iris-knn.skjar"), str(folder / "iris-logreg.skjar")),
        data=str(test),
        target="species",
        report=str(report),
    )
    note(
        "\ndone: every prediction after loading is identical to the trained model's; "
        f"open {report} in a browser for the comparison.",
        style="green",
    )
