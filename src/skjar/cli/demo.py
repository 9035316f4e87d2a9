"""``skjar demo``: the whole workflow on two classic models, in a scratch folder.

Train the iris KNN and a small spam classifier, save both, inspect and audit
them from their headers, load each in a fresh Python process (plain and
memory-mapped) and predict on new data, comparing with the in-memory model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from .. import api
from ._render import human_bytes, table

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
    data = workdir / f"{path.stem}-input.json"
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
    return json.loads(out.stdout)


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to write the jars (default: a temporary folder).",
)
def demo(workdir: str | None) -> None:
    """Train iris KNN and a spam classifier, save, inspect, audit, reload in a fresh process, predict.

    \b
    Example:
      skjar demo
      skjar demo --workdir ./demo-out
    """
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="skjar-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(
        f"1. training iris-knn and spam (TF-IDF + logistic regression) … jars go to {folder}"
    )
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
    table("2. saved", ["model", "type", "file", "dump time", "accuracy"], rows)

    for name in models:
        info = api.inspect(folder / f"{name}.skjar")
        schema = info.schema
        features = schema.get("feature_names_in", schema.get("n_features_in", "text"))
        table(
            f"3. inspect {name}.skjar (header only, nothing loaded)",
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
                [
                    "names referenced",
                    f"{len(info.names)}, untrusted: {sum(not n.trusted for n in info.names)}",
                ],
            ],
        )

    rows = []
    for name, (model, X_new, _) in models.items():
        expected = np.asarray(model.predict(X_new)).tolist()
        for mode in ("plain", "mmap"):
            got = _predict_in_fresh_process(folder / f"{name}.skjar", X_new, mode, folder)
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
        "4. loaded in a fresh process, predicted on new data",
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
    click.echo("done: every prediction after loading is identical to the trained model's.")
