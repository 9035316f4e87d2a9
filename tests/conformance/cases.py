"""Round-trip conformance cases: fitted scikit-learn estimators plus data to query them with.

``all_estimator_cases()`` gives one case per estimator listed by
``sklearn.utils.all_estimators()`` that can be built and fitted generically;
``composite_cases()`` gives hand-written cases for the structures a serializer is
most likely to get wrong (pipelines, DataFrames, trees, RandomState, sparse data...).

Every ``Case.make()`` returns ``(fitted_estimator, X_test)``, where ``X_test`` is
what ``predict``/``transform``/... should be called with after the round trip.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn import clone, config_context

# Importing these registers the experimental estimators with ``all_estimators()``
# (as scikit-learn's own common tests do), so they are covered too.
from sklearn.experimental import (  # noqa: F401
    enable_halving_search_cv,
    enable_iterative_imputer,
)
from sklearn.utils import all_estimators, get_tags
from threadpoolctl import ThreadpoolController

__all__ = ["Case", "all_estimator_cases", "composite_cases"]

Fitted = tuple[Any, Any]
"""What ``Case.make`` returns: ``(fitted_estimator, X_test)``."""


@dataclass(frozen=True)
class Case:
    """One fitted estimator to round-trip; ``make()`` fits it (lazily, on call)."""

    id: str
    make: Callable[[], Fitted]
    note: str = ""


# Small on purpose: ~200 estimators are fitted in every test session.
N_TRAIN = 60
N_TEST = 20
N_FEATURES = 4
_SEED = 0

# Warnings raised while fitting tiny data sets with few iterations are expected and
# say nothing about serialization.
_SILENCED = (UserWarning, RuntimeWarning, FutureWarning, DeprecationWarning)


@functools.cache
def _threadpools() -> ThreadpoolController:
    # Built once: each threadpool_limits() call rescans the loaded libraries (~10 ms).
    return ThreadpoolController()


def single_threaded() -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS and OpenMP to one thread."""
    limiter: contextlib.AbstractContextManager[Any] = _threadpools().limit(limits=1)
    return limiter


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Hide fitting warnings and run BLAS/OpenMP single-threaded.

    Threads only add overhead on data this small, and oversubscribe the cores when
    the suite runs under pytest-xdist.
    """
    with warnings.catch_warnings(), single_threaded():
        # ConvergenceWarning and FitFailedWarning are UserWarning/RuntimeWarning subclasses.
        for category in _SILENCED:
            warnings.simplefilter("ignore", category)
        yield


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Data:
    """Training arguments for ``fit`` and the input for the output methods."""

    fit_args: tuple[Any, ...]
    X_test: Any
    kind: str


def _numeric_xy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardized features (train+test stacked), 3-class labels and a regression target."""
    rng = np.random.RandomState(_SEED)
    n = N_TRAIN + N_TEST
    centers = rng.normal(scale=2.0, size=(3, N_FEATURES))
    y = np.arange(n) % 3
    X = centers[y] + rng.normal(size=(n, N_FEATURES))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y_reg = X @ np.linspace(1.5, -2.0, N_FEATURES) + 0.1 * rng.normal(size=n) + 3.0
    return X, y, y_reg


_WORDS = {
    0: "apple banana cherry grape lemon mango melon peach pear plum".split(),
    1: "car bus train plane boat bike truck tram ship taxi".split(),
    2: "red green blue black white pink brown grey gold cyan".split(),
}
_SHARED_WORDS = "the a of and to in is it on with".split()


def make_texts(n: int, seed: int = _SEED) -> tuple[list[str], np.ndarray]:
    """``n`` short generated documents drawn from 3 topics, and their topic labels."""
    rng = np.random.RandomState(seed)
    labels = np.arange(n) % 3
    docs = [
        " ".join(rng.choice(_WORDS[int(label)] + _SHARED_WORDS, size=rng.randint(4, 12)))
        for label in labels
    ]
    return docs, labels


def _texts_data(y_kind: str) -> _Data:
    docs, labels = make_texts(N_TRAIN + N_TEST)
    return _Data((docs[:N_TRAIN], labels[:N_TRAIN]), docs[N_TRAIN:], f"text documents, {y_kind}")


def _dicts_data() -> _Data:
    X, y, _ = _numeric_xy()
    colors = np.array(["red", "green", "blue"])
    records = [
        {"f0": float(row[0]), "f1": float(row[1]), "color": str(colors[i % 3])}
        for i, row in enumerate(X)
    ]
    return _Data((records[:N_TRAIN], y[:N_TRAIN]), records[N_TRAIN:], "list of dicts")


def _one_d_labels_data() -> _Data:
    _, y, _ = _numeric_xy()
    labels = np.array(["cat", "dog", "fish"])[y]
    return _Data((labels[:N_TRAIN],), labels[N_TRAIN:], "1-d string labels, fit(y)")


def _two_d_labels_data() -> _Data:
    _, y, _ = _numeric_xy()
    names = ["cat", "dog", "fish"]
    sets = [
        tuple(names[j] for j in range(3) if j == label or (i + j) % 4 == 0)
        for i, label in enumerate(y)
    ]
    return _Data((sets[:N_TRAIN],), sets[N_TRAIN:], "label sets, fit(y)")


def _images_data() -> _Data:
    rng = np.random.RandomState(_SEED)
    images = rng.uniform(size=(4, 12, 10))
    return _Data((images[:3],), images[3:], "3-d array of images")


def _inject_nan(X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Put NaN in ~5% of the cells, as sklearn's pickle check does for allow_nan estimators."""
    X = X.astype(np.float64, copy=True)
    mask = rng.choice(X.size, max(1, X.size // 20), replace=False)
    X.reshape(-1)[mask] = np.nan
    return X


def _choose_data(est: Any) -> _Data | str:
    """Pick training/test data from the estimator's tags; a str explains why none fits."""
    tags = get_tags(est)
    inp, tgt = tags.input_tags, tags.target_tags
    is_clf = tags.estimator_type == "classifier"
    is_reg = tags.estimator_type == "regressor"
    multi_only = tgt.multi_output and not tgt.single_output
    binary_only = tags.classifier_tags is not None and not tags.classifier_tags.multi_class

    if not inp.two_d_array:
        if tgt.one_d_labels:
            return _one_d_labels_data()
        if tgt.two_d_labels:
            return _two_d_labels_data()
        if inp.string:
            return _texts_data("3 classes")
        if inp.dict:
            return _dicts_data()
        if inp.three_d_array:
            return _images_data()
        if not inp.one_d_array:
            return (
                "cannot be fitted generically: its input tags accept none of 2-d array, "
                "1-d array, strings, dicts, labels or 3-d array"
            )

    X, y, y_reg = _numeric_xy()
    kind: list[str] = []
    rng = np.random.RandomState(_SEED + 1)

    # Target, following sklearn.utils.estimator_checks._enforce_estimator_tags_y.
    y_fit: np.ndarray
    if is_reg:
        y_fit = y_reg
        if tgt.positive_only:
            y_fit = np.exp(y_reg / 4.0)
            kind.append("positive y")
        if multi_only:
            y_fit = np.column_stack([y_fit, y_fit[::-1] * 0.5 + 1.0])
            kind.append("2-column y")
        else:
            kind.append("continuous y")
    else:
        y_fit = y
        if binary_only:
            y_fit = (y == 0).astype(np.int64)
            kind.append("binary y")
        elif multi_only:
            y_fit = np.column_stack([y == 0, y == 1]).astype(np.int64)
            kind.append("multilabel y")
        else:
            kind.append("3-class y" if is_clf else "3-class y (ignored if unsupervised)")

    # Input, following sklearn.utils.estimator_checks._enforce_estimator_tags_X.
    X_train, X_test = X[:N_TRAIN], X[N_TRAIN:]
    if inp.positive_only or type(est).__name__ == "SkewedChi2Sampler":
        shift = X.min()
        X_train, X_test = X_train - shift, X_test - shift
        kind.append("non-negative X")
    if inp.categorical:
        dtype = np.float64 if inp.allow_nan else np.int32
        X_train = np.round(X_train - X.min()).astype(dtype)
        # Unseen categories make most encoders raise: query with known rows only.
        X_test = X_train[:N_TEST].copy()
        kind.append("integer categories")
    if inp.allow_nan:
        X_train = _inject_nan(X_train, rng)
        X_test = _inject_nan(X_test, rng)
        kind.append("NaN in X")
    if getattr(est, "metric", None) == "precomputed":
        from sklearn.metrics import pairwise_distances

        X_train, X_test = pairwise_distances(X_train), pairwise_distances(X_test, X_train)
        kind.append("precomputed distances")
    elif inp.pairwise:
        X_train, X_test = X_train @ X_train.T, X_test @ X_train.T
        kind.append("linear kernel matrix")
    if inp.one_d_array and not inp.two_d_array:
        X_train, X_test = X_train[:, 0], X_test[:, 0]
        kind.append("1-d X")

    y_train = y_fit[:N_TRAIN]
    return _Data((X_train, y_train), X_test, ", ".join(kind))


# ---------------------------------------------------------------------------
# Generic estimator cases
# ---------------------------------------------------------------------------

# Estimators sklearn's instance generator refuses, with the reason they need a case of
# their own (see composite_cases for the ones that get one).
_NOT_GENERIC = {
    "FrozenEstimator": (
        "cannot be constructed generically: needs an already fitted estimator to wrap "
        "(covered by the composite case 'frozen-logreg')"
    ),
}

# Parameter changes on top of sklearn's test parameters, each for a reason of ours.
_OVERRIDES: dict[str, Callable[[], dict[str, Any]]] = {
    # sklearn's test dictionary has 3 atoms of 3 features; ours must match N_FEATURES.
    "SparseCoder": lambda: {
        "dictionary": np.random.RandomState(_SEED).normal(size=(5, N_FEATURES))
    },
    # Fewer candidates: the defaults (100 alphas/thresholds, 10 Cs) dominate the suite's
    # fitting time while adding nothing to serialize but longer arrays.
    "TunedThresholdClassifierCV": lambda: {"thresholds": 10},
    "LogisticRegressionCV": lambda: {"Cs": 3},
    # The default radius leaves test points without neighbours, and predict then raises
    # for both copies: a comparison that proves nothing.
    "RadiusNeighborsClassifier": lambda: {"radius": 1.5, "outlier_label": "most_frequent"},
    **{
        name: lambda: {"alphas": 5}
        for name in ("ElasticNetCV", "LassoCV", "MultiTaskElasticNetCV", "MultiTaskLassoCV")
    },
}


def _fallback_params(name: str) -> dict[str, Any]:
    """Constructor arguments for when sklearn's private instance generator is missing.

    Sub-estimators for meta-estimators, and sizes that suit our small data.
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    clf, reg = LogisticRegression(C=1), Ridge()
    two_trees_clf = [
        ("est1", DecisionTreeClassifier(max_depth=3, random_state=0)),
        ("est2", DecisionTreeClassifier(max_depth=3, random_state=1)),
    ]
    two_trees_reg = [
        ("est1", DecisionTreeRegressor(max_depth=3, random_state=0)),
        ("est2", DecisionTreeRegressor(max_depth=3, random_state=1)),
    ]
    search = {"cv": 2, "error_score": "raise", "estimator": Ridge()}
    table: dict[str, dict[str, Any]] = {
        "ColumnTransformer": {"transformers": [("trans1", StandardScaler(), [0, 1])]},
        "FeatureUnion": {"transformer_list": [("trans1", StandardScaler())]},
        "Pipeline": {"steps": [("scaler", StandardScaler()), ("final_estimator", Ridge())]},
        "GridSearchCV": {**search, "param_grid": {"alpha": [0.1, 1.0]}},
        "HalvingGridSearchCV": {**search, "param_grid": {"alpha": [0.1, 1.0]}},
        "RandomizedSearchCV": {**search, "param_distributions": {"alpha": [0.1, 1.0]}},
        "HalvingRandomSearchCV": {**search, "param_distributions": {"alpha": [0.1, 1.0]}},
        "StackingClassifier": {"estimators": two_trees_clf, "cv": 3},
        "StackingRegressor": {"estimators": two_trees_reg, "cv": 3},
        "VotingClassifier": {"estimators": two_trees_clf},
        "VotingRegressor": {"estimators": two_trees_reg},
        "MultiOutputRegressor": {"estimator": reg},
        "RegressorChain": {"estimator": reg, "cv": 3},
        # Defaults that do not fit N_TRAIN x N_FEATURES data.
        "CCA": {"n_components": 1},
        "PLSCanonical": {"n_components": 1},
        "PLSRegression": {"n_components": 1},
        "PLSSVD": {"n_components": 1},
        "GaussianRandomProjection": {"n_components": 2},
        "SparseRandomProjection": {"n_components": 2},
    }
    needs_classifier = (
        "CalibratedClassifierCV ClassifierChain FixedThresholdClassifier MultiOutputClassifier "
        "OneVsOneClassifier OneVsRestClassifier OutputCodeClassifier RFE RFECV "
        "SelfTrainingClassifier SequentialFeatureSelector TunedThresholdClassifierCV"
    ).split()
    table.update({n: {"estimator": clf} for n in needs_classifier})
    table["SelectFromModel"] = {"estimator": reg}
    return table.get(name, {})


def _construct(name: str, cls: type) -> Any:
    """Build one instance the way sklearn's common tests do (their first parameter set)."""
    try:
        from sklearn.utils._test_common.instance_generator import _construct_instances
    except ImportError:  # private helper: absent in some sklearn versions
        _construct_instances = None
    # Deprecated estimators warn on every construction, clone included.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        overrides = _OVERRIDES[name]() if name in _OVERRIDES else {}
        if _construct_instances is None:
            est = cls(**{**_fallback_params(name), **overrides})
        else:
            est = next(iter(_construct_instances(cls))).set_params(**overrides)
        # sklearn's table shares sub-estimator instances between calls: never fit those.
        return clone(est)


def fix_random_state(est: Any, seed: int = _SEED) -> Any:
    """Set every ``random_state`` parameter left at None (nested ones too) to ``seed``."""
    params = est.get_params(deep=True)
    unset = {
        key: seed
        for key, value in params.items()
        if (key == "random_state" or key.endswith("__random_state")) and value is None
    }
    if unset:
        est.set_params(**unset)
    return est


def _describe(est: Any) -> str:
    """Compact repr showing only changed parameters (like sklearn's check ids)."""
    with config_context(print_changed_only=True):
        return re.sub(r"\s", "", repr(est))


def _fit(est: Any, data: _Data) -> Fitted:
    with silenced():
        est.fit(*data.fit_args)
    return est, data.X_test


class _LazyFit:
    """``Case.make`` for generic cases: each call returns a newly fitted estimator.

    The fit done while probing (in ``all_estimator_cases``) is handed over by the
    first call instead of being thrown away, so every estimator is fitted once.
    """

    def __init__(self, build: Callable[[], tuple[Any, _Data]], prefit: Fitted) -> None:
        self._build = build
        self._prefit: Fitted | None = prefit

    def __call__(self) -> Fitted:
        if self._prefit is not None:
            fitted, self._prefit = self._prefit, None
            return fitted
        return _fit(*self._build())


def _builder(name: str, cls: type) -> Callable[[], tuple[Any, _Data]]:
    def build() -> tuple[Any, _Data]:
        est = fix_random_state(_construct(name, cls))
        data = _choose_data(est)
        assert isinstance(data, _Data)  # checked while probing
        return est, data

    return build


def _probe(name: str, cls: type) -> Case | str:
    """Construct, fit and pickle one estimator; return its case or why it is skipped."""
    if name in _NOT_GENERIC:
        return _NOT_GENERIC[name]
    try:
        est = fix_random_state(_construct(name, cls))
    except Exception as exc:
        return f"cannot be constructed generically: {type(exc).__name__}: {exc}"
    data = _choose_data(est)
    if isinstance(data, str):
        return data
    description = _describe(est)
    start = time.perf_counter()
    try:
        fitted = _fit(est, data)
    except Exception as exc:
        return f"fit failed on generic data ({data.kind}): {type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    try:
        pickle.loads(pickle.dumps(fitted[0]))
    except Exception as exc:
        return f"pickle itself cannot round-trip it: {type(exc).__name__}: {exc}"
    note = f"{description}; data: {data.kind}; fit {seconds:.3f}s"
    return Case(name, _LazyFit(_builder(name, cls), fitted), note)


@functools.lru_cache(maxsize=1)
def _all_estimator_cases() -> tuple[tuple[Case, ...], tuple[tuple[str, str], ...]]:
    cases: list[Case] = []
    skipped: list[tuple[str, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # module imports may warn
        estimators = all_estimators()
    # Deprecated estimators also warn when unpickled, hence around the whole probe.
    with silenced():
        for name, cls in estimators:
            outcome = _probe(name, cls)
            if isinstance(outcome, Case):
                cases.append(outcome)
            else:
                skipped.append((name, outcome))
    return tuple(cases), tuple(skipped)


def all_estimator_cases() -> tuple[list[Case], dict[str, str]]:
    """One case per generically fittable estimator, and ``{name: reason}`` for the rest.

    Probing fits every estimator once (the fit is reused by the first ``make()``
    call); the result is cached per process.
    """
    cases, skipped = _all_estimator_cases()
    return list(cases), dict(skipped)


# ---------------------------------------------------------------------------
# Composite cases
# ---------------------------------------------------------------------------


def _clf_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numeric 3-class training data and test rows."""
    X, y, _ = _numeric_xy()
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:]


def _reg_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, _, y_reg = _numeric_xy()
    return X[:N_TRAIN], y_reg[:N_TRAIN], X[N_TRAIN:]


def _people_frame(n: int, seed: int, category_dtype: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """A DataFrame with numeric columns and a string (or pandas category) column."""
    rng = np.random.RandomState(seed)
    city = rng.choice(["paris", "oslo", "lima", "kyoto"], size=n)
    frame = pd.DataFrame(
        {
            "age": rng.randint(18, 80, size=n).astype(np.float64),
            "income": rng.lognormal(10, 0.5, size=n),
            "city": city,
        }
    )
    if category_dtype:
        frame["city"] = frame["city"].astype(
            pd.CategoricalDtype(["paris", "oslo", "lima", "kyoto"])
        )
    y = ((frame["age"] > 45).to_numpy() ^ (city == "oslo")).astype(np.int64)
    return frame, y


def _fit_case(
    make_est: Callable[[], Any], data: Callable[[], tuple[Any, Any, Any]]
) -> Callable[[], Fitted]:
    """``make`` for composite cases: build, fix seeds, fit on ``data()``; fresh every call."""

    def make() -> Fitted:
        X, y, X_test = data()
        est = fix_random_state(make_est())
        with silenced():
            est.fit(X, y)
        return est, X_test

    return make


def _composites() -> Iterator[Case]:
    """All composite cases; imports are local to keep module import cheap."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        IsolationForest,
        RandomForestClassifier,
        StackingClassifier,
        VotingClassifier,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    def frame_data() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
        X, y = _people_frame(N_TRAIN, 1, category_dtype=False)
        return X, y, _people_frame(N_TEST, 2, category_dtype=False)[0]

    def category_frame_data() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
        X, y = _people_frame(N_TRAIN, 1, category_dtype=True)
        return X, y, _people_frame(N_TEST, 2, category_dtype=True)[0]

    def column_transformer(sparse: bool) -> ColumnTransformer:
        return ColumnTransformer(
            [
                ("num", StandardScaler(), ["age", "income"]),
                ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=sparse), ["city"]),
            ]
        )

    def texts_data(
        n_train: int, n_test: int
    ) -> Callable[[], tuple[list[str], np.ndarray, list[str]]]:
        def data() -> tuple[list[str], np.ndarray, list[str]]:
            docs, labels = make_texts(n_train + n_test, seed=3)
            return docs[:n_train], labels[:n_train], docs[n_train:]

        return data

    def sparse_text_data() -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix]:
        docs, labels, test_docs = texts_data(200, 40)()
        vectorizer = TfidfVectorizer().fit(docs)
        return vectorizer.transform(docs), labels, vectorizer.transform(test_docs)

    def sparse_numeric_data() -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix]:
        X, y, X_test = _clf_data()
        # Zero out small values so the matrices are genuinely sparse.
        return (
            sp.csr_matrix(np.where(X > 0.3, X, 0)),
            y,
            sp.csr_matrix(np.where(X_test > 0.3, X_test, 0)),
        )

    def categorical_mask_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X, y, X_test = _clf_data()
        codes = (np.arange(N_TRAIN + N_TEST) * 7) % 5
        X = np.column_stack([codes[:N_TRAIN], X])
        X_test = np.column_stack([codes[N_TRAIN:], X_test])
        return X, (y + (codes[:N_TRAIN] == 2)) % 3, X_test

    def positive_reg_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X, y, X_test = _reg_data()
        shift = min(X.min(), X_test.min())
        return X - shift, np.exp(y / 4.0), X_test - shift

    def string_label_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X, y, X_test = _clf_data()
        return X, np.array(["setosa", "versicolor", "virginica"])[y], X_test

    def multioutput_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X, y, X_test = _clf_data()
        return X, np.column_stack([y, (y + np.arange(N_TRAIN)) % 2]), X_test

    def float32_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X, y, X_test = _reg_data()
        return X.astype(np.float32), y.astype(np.float32), X_test.astype(np.float32)

    def frozen_logreg() -> FrozenEstimator:
        X, y, _ = _clf_data()
        return FrozenEstimator(LogisticRegression().fit(X, y))

    def case(
        id_: str,
        make_est: Callable[[], Any],
        data: Callable[[], tuple[Any, Any, Any]] = _clf_data,
        note: str = "",
    ) -> Case:
        return Case(id_, _fit_case(make_est, data), note)

    yield case(
        "pipeline-scaler-logreg",
        lambda: Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]),
    )
    yield case(
        "columntransformer-dataframe-onehot-scaler-logreg",
        lambda: make_pipeline(column_transformer(sparse=True), LogisticRegression()),
        frame_data,
        "pandas DataFrame with numeric and string columns",
    )
    yield case(
        "columntransformer-pandas-output",
        lambda: column_transformer(sparse=False).set_output(transform="pandas"),
        frame_data,
        "transform returns a DataFrame",
    )
    yield case(
        "featureunion-pca-selectkbest",
        lambda: FeatureUnion([("pca", PCA(n_components=2)), ("kbest", SelectKBest(k=1))]),
    )
    yield case(
        "voting-soft-a-b",
        lambda: VotingClassifier(
            [("a", LogisticRegression()), ("b", DecisionTreeClassifier(max_depth=3))],
            voting="soft",
        ),
        note="named_estimators_ shares its members with estimators_",
    )
    yield case(
        "stacking-classifier",
        lambda: StackingClassifier(
            [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3))],
            final_estimator=LogisticRegression(),
            cv=3,
        ),
    )
    yield case(
        "gridsearch-svc-refit",
        lambda: GridSearchCV(SVC(), {"C": [0.1, 1.0], "kernel": ["linear", "rbf"]}, cv=3),
        note="cv_results_ holds masked arrays",
    )
    yield case(
        "gridsearch-nested-pipeline",
        lambda: GridSearchCV(
            Pipeline([("scale", StandardScaler()), ("pca", PCA()), ("clf", LogisticRegression())]),
            {"pca__n_components": [2, 3], "clf__C": [0.1, 1.0]},
            cv=3,
        ),
    )
    yield case(
        "calibrated-linearsvc-sigmoid",
        lambda: CalibratedClassifierCV(LinearSVC(), cv=3),
    )
    yield case(
        "calibrated-gaussiannb-isotonic",
        lambda: CalibratedClassifierCV(GaussianNB(), method="isotonic", cv=3),
        note="IsotonicRegression rebuilds its interpolator f_ on unpickling",
    )
    yield case(
        "pipeline-functiontransformer-log1p-ridge",
        lambda: make_pipeline(FunctionTransformer(np.log1p, inverse_func=np.expm1), Ridge()),
        positive_reg_data,
        "numpy ufuncs as parameters",
    )
    yield case("selectkbest-f-classif", lambda: SelectKBest(f_classif, k=2))
    yield case(
        "tfidf-ngrams-logreg",
        lambda: make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression()),
        texts_data(300, 40),
        "X_test is a list of strings",
    )
    yield case(
        "sparse-tfidf-linearsvc",
        LinearSVC,
        sparse_text_data,
        "CSR input and CSR X_test",
    )
    yield case("svc-sparse-input", SVC, sparse_numeric_data, "support_vectors_ is sparse")
    yield case("knn-kd-tree", lambda: KNeighborsClassifier(algorithm="kd_tree"))
    yield case("knn-ball-tree", lambda: KNeighborsClassifier(algorithm="ball_tree"))
    yield case(
        "hgb-categorical-mask",
        lambda: HistGradientBoostingClassifier(
            max_iter=10, min_samples_leaf=5, categorical_features=[True] + [False] * N_FEATURES
        ),
        categorical_mask_data,
    )
    yield case(
        "hgb-categorical-from-dtype",
        lambda: HistGradientBoostingClassifier(
            max_iter=10, min_samples_leaf=5, categorical_features="from_dtype"
        ),
        category_frame_data,
        "DataFrame with a pandas category column",
    )
    yield case(
        "randomforest-randomstate-instance",
        lambda: RandomForestClassifier(n_estimators=5, random_state=np.random.RandomState(0)),
        note="random_state is a RandomState instance, advanced by fit",
    )
    yield case(
        "sgd-randomstate-instance",
        lambda: SGDClassifier(max_iter=20, random_state=np.random.RandomState(1)),
    )
    yield case("svc-probability", lambda: SVC(probability=True))
    yield case(
        "mlp-classifier",
        lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=50),
    )
    yield case("isolation-forest", lambda: IsolationForest(n_estimators=10))
    yield case(
        "transformed-target-regressor-log1p",
        lambda: TransformedTargetRegressor(regressor=Ridge(), func=np.log1p, inverse_func=np.expm1),
        positive_reg_data,
    )
    yield case("frozen-logreg", frozen_logreg, note="FrozenEstimator around a fitted model")
    yield case("logreg-string-labels", LogisticRegression, string_label_data)
    yield case(
        "decisiontree-multioutput",
        lambda: DecisionTreeClassifier(max_depth=4),
        multioutput_data,
        "classes_ is a list of arrays",
    )
    yield case("ridge-float32", Ridge, float32_data, "float32 coef_")


def composite_cases() -> list[Case]:
    """Hand-written cases for structures a serializer is most likely to get wrong."""
    return list(_composites())
