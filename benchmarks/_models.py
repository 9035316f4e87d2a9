"""The model suite: deterministic builders plus an on-disk cache of the fitted models.

Each model is built once per (name, size, suite version, scikit-learn version) and cached in
``<cache>/models/`` as two pickles:

* ``<key>.model.pkl`` -- the fitted estimator (written atomically);
* ``<key>.meta.pkl``  -- held-out ``X_test``, the *original* model's predictions on it (computed
  right after fitting, before any round trip), the modules the pickle references (so that child
  processes can import them before the timed load), and build information. Written last, so a
  model is cached only when both files exist.
"""

from __future__ import annotations

import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from _serializers import atomic_write

SUITE_VERSION = 1
SEED = 20240601


@dataclass
class Built:
    model: Any
    X_test: Any
    description: str


@dataclass
class CachedModel:
    name: str
    key: str
    model_path: Path
    meta_path: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def modules(self) -> list[str]:
        return list(self.meta["modules"])

    def load_model(self) -> Any:
        with open(self.model_path, "rb") as f:
            return pickle.load(f)


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def _classification(
    n_train: int, n_test: int, n_features: int, seed: int, **kw: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=n_train + n_test, n_features=n_features, random_state=seed, **kw
    )
    return X[:n_train], y[:n_train], X[n_train:]


def build_iris_knn(quick: bool) -> Built:
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    X, y = load_iris(return_X_y=True)
    X_tr, X_te, y_tr, _ = train_test_split(X, y, test_size=30, stratify=y, random_state=SEED)
    model = KNeighborsClassifier(3).fit(X_tr, y_tr)
    return Built(model, X_te, "KNeighborsClassifier(3) on iris (120 train rows)")


def build_knn_big(quick: bool) -> Built:
    from sklearn.neighbors import KNeighborsClassifier

    n, d, n_test, k = (50_000 if quick else 2_000_000), 32, 32, 16
    rng = np.random.default_rng(SEED)
    centers = rng.normal(scale=3.0, size=(k, d))
    labels = rng.integers(0, k, size=n + n_test)
    X = centers[labels]
    X += rng.standard_normal(X.shape)
    y = labels % 4
    model = KNeighborsClassifier(algorithm="kd_tree").fit(X[:n], y[:n])
    return Built(
        model,
        np.ascontiguousarray(X[n:]),
        f'KNeighborsClassifier(algorithm="kd_tree") on {n:,} x {d} float64 ({k} blobs)',
    )


def build_forest(quick: bool) -> Built:
    from sklearn.ensemble import RandomForestClassifier

    n, trees = (5_000, 20) if quick else (50_000, 200)
    X, y, X_te = _classification(n, 256, 20, SEED + 1, n_informative=10)
    model = RandomForestClassifier(trees, random_state=SEED, n_jobs=-1).fit(X, y)
    model.set_params(n_jobs=None)  # predict single-threaded in the children
    return Built(model, X_te, f"RandomForestClassifier({trees}) on make_classification({n:,} x 20)")


def build_hgb(quick: bool) -> Built:
    from sklearn.ensemble import HistGradientBoostingClassifier

    n = 10_000 if quick else 100_000
    X, y, X_te = _classification(n, 256, 30, SEED + 2, n_informative=15)
    model = HistGradientBoostingClassifier(random_state=SEED).fit(X, y)
    return Built(
        model,
        X_te,
        f"HistGradientBoostingClassifier on {n:,} x 30 ({model.n_iter_} iterations)",
    )


def _pseudo_words(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct lowercase pseudo-words of 2-4 syllables, in a seeded order."""
    cons, vows = "bcdfghjklmnprstvwz", "aeiou"
    syl = [c + v for c in cons for v in vows] + [c + v + "n" for c in cons for v in vows]
    words: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        k = n - len(out)
        lengths = rng.integers(2, 5, size=k)
        picks = rng.integers(0, len(syl), size=(k, 4))
        for length, row in zip(lengths, picks):
            w = "".join(syl[i] for i in row[:length])
            if w not in words:
                words.add(w)
                out.append(w)
    return out


def _zipf_sample(rng: np.random.Generator, n_words: int, exponent: float, size: int) -> np.ndarray:
    p = 1.0 / np.arange(1, n_words + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size)), n_words - 1)


def make_emails(
    n_docs: int, n_words: int, exponent: float, mean_len: int, seed: int
) -> tuple[list[str], np.ndarray]:
    """Synthetic spam/ham emails drawn from a Zipf-distributed pseudo-word vocabulary.

    Word ranks are independent draws, so the number of distinct bigrams grows with the corpus;
    spam mails additionally mix in words from a small "spam topic" drawn from the mid ranks.
    """
    rng = np.random.default_rng(seed)
    vocab = np.array(_pseudo_words(n_words, rng), dtype=object)
    spam_topic = rng.choice(np.arange(50, 5_000), size=300, replace=False)
    labels = rng.random(n_docs) < 0.4
    lengths = rng.integers(mean_len // 2, mean_len * 3 // 2, size=n_docs)
    ranks = _zipf_sample(rng, n_words, exponent, int(lengths.sum()))
    topical = rng.random(ranks.size) < 0.08
    doc_of_token = np.repeat(np.arange(n_docs), lengths)
    swap = topical & labels[doc_of_token]
    ranks[swap] = spam_topic[rng.integers(0, spam_topic.size, size=int(swap.sum()))]
    words = vocab[ranks]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    docs = [" ".join(words[bounds[i] : bounds[i + 1]]) for i in range(n_docs)]
    y = np.where(labels, "spam", "ham")
    return docs, y


def build_spam_tfidf(quick: bool) -> Built:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if quick:
        n_docs, n_words, exponent, mean_len = 2_500, 20_000, 1.2, 50
    else:
        n_docs, n_words, exponent, mean_len = 50_000, 100_000, 1.23, 100
    n_test = 256
    docs, y = make_emails(n_docs + n_test, n_words, exponent, mean_len, SEED + 3)
    model = Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2))),
            ("clf", LogisticRegression(max_iter=200)),
        ]
    ).fit(docs[:n_docs], y[:n_docs])
    n_vocab = len(model.named_steps["tfidf"].vocabulary_)
    return Built(
        model,
        docs[n_docs:],
        f"Pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression) on {n_docs:,} "
        f"synthetic emails, vocabulary {n_vocab:,}",
    )


def build_svc(quick: bool) -> Built:
    from sklearn.svm import SVC

    n = 1_000 if quick else 5_000
    X, y, X_te = _classification(n, 256, 20, SEED + 4, flip_y=0.05)
    with warnings.catch_warnings():
        # probability=True is deprecated in scikit-learn 1.9 but still what people ship.
        warnings.simplefilter("ignore", FutureWarning)
        model = SVC(probability=True, random_state=SEED).fit(X, y)
    return Built(
        model,
        X_te,
        f"SVC(probability=True) on {n:,} x 20 ({int(model.n_support_.sum()):,} support vectors)",
    )


def build_mlp(quick: bool) -> Built:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    n = 2_000 if quick else 20_000
    X, y, X_te = _classification(n, 256, 50, SEED + 5, n_informative=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier((256, 256), max_iter=5, random_state=SEED).fit(X, y)
    return Built(model, X_te, f"MLPClassifier((256, 256)) on {n:,} x 50, 5 epochs")


def _customer_frame(n: int, seed: int) -> tuple[Any, np.ndarray]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    countries = np.array([f"country_{i:02d}" for i in range(30)], dtype=object)
    plans = np.array(["free", "basic", "plus", "pro", "enterprise"], dtype=object)
    channels = np.array([f"channel_{c}" for c in "abcdefgh"], dtype=object)
    cities = np.array([f"city_{i:03d}" for i in range(300)], dtype=object)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n).round(),
            "income": rng.lognormal(10.5, 0.6, n),
            "score_a": rng.normal(size=n),
            "score_b": rng.normal(size=n),
            "tenure_days": rng.integers(0, 3_000, n).astype(np.float64),
            "balance": rng.normal(1_000, 400, n),
            "country": countries[_zipf_sample(rng, len(countries), 1.1, n)],
            "plan": plans[rng.integers(0, len(plans), n)],
            "channel": channels[rng.integers(0, len(channels), n)],
            "city": cities[_zipf_sample(rng, len(cities), 1.0, n)],
        }
    )
    plan_effect = df["plan"].map({"free": -1.0, "basic": -0.3, "plus": 0.2, "pro": 0.8}).fillna(1.2)
    logit = (
        0.8 * df["score_a"]
        - 0.5 * df["score_b"]
        + 0.02 * (df["age"] - 40)
        + plan_effect
        + 0.3 * (df["channel"] == "channel_c")
    )
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit.to_numpy()))).astype(np.int64)
    return df, y


def build_column_pipeline(quick: bool) -> Built:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    n, n_test = (2_000 if quick else 20_000), 256
    df, y = _customer_frame(n + n_test, SEED + 6)
    numeric = ["age", "income", "score_a", "score_b", "tenure_days", "balance"]
    categorical = ["country", "plan", "channel", "city"]
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), numeric),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
                    ]
                ),
            ),
            ("gb", GradientBoostingClassifier(n_estimators=100, random_state=SEED)),
        ]
    ).fit(df.iloc[:n], y[:n])
    return Built(
        model,
        df.iloc[n:].reset_index(drop=True),
        "ColumnTransformer(StandardScaler, OneHotEncoder) + GradientBoostingClassifier(100) "
        f"on a {n:,}-row DataFrame",
    )


BUILDERS: dict[str, Callable[[bool], Built]] = {
    "iris-knn": build_iris_knn,
    "knn-big": build_knn_big,
    "forest": build_forest,
    "hgb": build_hgb,
    "spam-tfidf": build_spam_tfidf,
    "svc": build_svc,
    "mlp": build_mlp,
    "column-pipeline": build_column_pipeline,
}


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


class _RecordingUnpickler(pickle.Unpickler):
    """Unpickler that records the module of every global the pickle references."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.modules: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.modules.add(module)
        return super().find_class(module, name)


def referenced_modules(path: Path) -> list[str]:
    with open(path, "rb") as f:
        unpickler = _RecordingUnpickler(f)
        unpickler.load()
    return sorted(unpickler.modules)


def cache_key(name: str, quick: bool) -> str:
    import sklearn

    size = "quick" if quick else "full"
    return f"{name}-{size}-v{SUITE_VERSION}-sklearn{sklearn.__version__}"


def ensure_model(
    name: str, quick: bool, cache_dir: Path, log: Callable[[str], None]
) -> CachedModel:
    """Return the cached model ``name``, building (and caching) it first if needed."""
    key = cache_key(name, quick)
    directory = cache_dir / "models"
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / f"{key}.model.pkl"
    meta_path = directory / f"{key}.meta.pkl"
    if model_path.exists() and meta_path.exists():
        with open(meta_path, "rb") as f:
            meta = pickle.load(f)
        log(f"  {name}: cached ({meta['description']})")
        return CachedModel(name, key, model_path, meta_path, meta)

    log(f"  {name}: building ...")
    t0 = time.perf_counter()
    built = BUILDERS[name](quick)
    fit_seconds = time.perf_counter() - t0
    y_ref = np.asarray(built.model.predict(built.X_test))
    atomic_write(str(model_path), lambda f: pickle.dump(built.model, f, protocol=5))
    built.model = None  # free it before re-reading the pickle for its module list
    meta = {
        "name": name,
        "key": key,
        "description": built.description,
        "X_test": built.X_test,
        "y_ref": y_ref,
        "modules": referenced_modules(model_path),
        "build_seconds": fit_seconds,
        "quick": quick,
    }
    atomic_write(str(meta_path), lambda f: pickle.dump(meta, f, protocol=5))
    log(f"  {name}: built in {fit_seconds:.1f}s ({built.description})")
    return CachedModel(name, key, model_path, meta_path, meta)
