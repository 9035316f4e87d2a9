"""Meaning tampering: trusted types, state that would make compiled code go out of bounds.

tests/test_meaning.py checks that the meaning checks refuse out-of-range state. This
file attacks the checks themselves and the state they do not see, and delivers every
crafted jar to a *separate process* that loads it and, if it loads, uses it: the
process must exit normally having printed a ``SkjarError``, never die of a signal.

- index tampering in every family the loader checks (trees, HGB predictors, KD/Ball
  trees, libsvm, sparse matrices, BSplines, k-means, bit generator positions);
- bypass attempts: the same bad state handed over as an ``OrderedDict``/``defaultdict``/
  ``Bunch`` (checks read plain dicts), or through a class swap (``__class__`` slot);
- objects whose C state was never initialised (a bit generator built by ``__new__``).

The jars are built from real fitted models (the builders of tests/test_meaning.py) and
edited at the format level with a recomputed digest.
"""

from __future__ import annotations

import dataclasses
import fcntl
import importlib
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jarcraft
import skjar
import test_meaning as models
from jarcraft import Ext, name_entry
from skjar.codec import nodes

from .conftest import DEFENCES
from .hostile import encode_state

TREE = "sklearn.tree._tree.Tree"
PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
HGB = "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor"
KDTREE = "sklearn.neighbors._kd_tree.KDTree"
BALLTREE = "sklearn.neighbors._ball_tree.BallTree"
SVC = "sklearn.svm._classes.SVC"
KMEANS = "sklearn.cluster._kmeans.KMeans"
DTC = "sklearn.tree._classes.DecisionTreeClassifier"
BSPLINE = "scipy.interpolate._bsplines.BSpline"
# scipy >= 1.18: a BSpline's state is (the _BSpline it delegates to, an empty array),
# and the knots and coefficients are the delegate's t and c (codec/sklearn.py).
# Up to 1.17 they are the BSpline's own: _t and _c in 1.17 (behind properties), t and c before.
_BSPLINES = importlib.import_module("scipy.interpolate._bsplines")
SPLINE_DELEGATES = hasattr(_BSPLINES, "_BSpline")
SPLINE, SPLINE_T, SPLINE_C = (
    ("scipy.interpolate._bsplines._BSpline", "t", "c") if SPLINE_DELEGATES
    else (BSPLINE, "_t", "_c") if isinstance(_BSPLINES.BSpline.__dict__.get("t"), property)
    else (BSPLINE, "t", "c")
)
BUNCH = "sklearn.utils._bunch.Bunch"
SCORER = "sklearn.metrics._scorer._Scorer"
KNN = "sklearn.neighbors._classification.KNeighborsClassifier"
COUNT = "sklearn.feature_extraction.text.CountVectorizer"
TFIDF = "sklearn.feature_extraction.text.TfidfVectorizer"
DICTVEC = "sklearn.feature_extraction._dict_vectorizer.DictVectorizer"
ONE_HOT = "sklearn.preprocessing._encoders.OneHotEncoder"

Edit = Callable[[jarcraft.Jar, jarcraft.Ext], None]


# -- more models ------------------------------------------------------------------------------
def spline() -> Any:
    from sklearn.preprocessing import SplineTransformer

    return SplineTransformer(n_knots=4).fit(models.iris()[0])


def sparse_formats() -> dict[str, Any]:
    import scipy.sparse as sp

    dense = np.arange(12.0).reshape(3, 4) % 3
    return {"m": sp.csc_matrix(dense), "coo": sp.coo_matrix(dense)}


def sparse_tall() -> dict[str, Any]:
    import scipy.sparse as sp

    return {"m": sp.csr_matrix(np.arange(12.0).reshape(4, 3) % 3)}


DOCS = ["apple banana", "banana cherry", "cherry apple apple", "date"]
DICTS = [{"a": 1, "b": 2}, {"b": 1, "c": 3}, {"a": 2}, {"d": 1}]
CATEGORIES = [["a", "x"], ["b", "y"], ["c", "z"], ["a", "z"]]


def text_pipeline(kind: str) -> Callable[[], Any]:
    def make() -> Any:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        first = {"count": CountVectorizer, "tfidf": TfidfVectorizer, "dict": DictVectorizer}[kind]
        return make_pipeline(first(), LogisticRegression()).fit(
            DICTS if kind == "dict" else DOCS, [0, 1, 0, 1])

    return make


def one_hot(**params: Any) -> Callable[[], Any]:
    def make() -> Any:
        from sklearn.preprocessing import OneHotEncoder

        X = np.array(CATEGORIES * 3, dtype=object)
        return OneHotEncoder(sparse_output=False, **params).fit(X)

    return make


def multilabel() -> Any:
    from sklearn.preprocessing import MultiLabelBinarizer

    model = MultiLabelBinarizer().fit([["a", "b"], ["c"]])
    model.transform([["a"]])  # fills the cache that transform trusts
    return model


def one_hot_numbers() -> Any:
    from sklearn.preprocessing import OneHotEncoder

    X = np.array([[0, 10], [1, 20], [2, 30], [0, 30]] * 3)
    return OneHotEncoder(sparse_output=False).fit(X)


def drop_past_the_end(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    drop = jar.state(node)["_drop_idx_after_grouping"]
    drop = drop.payload[1] if drop.code == nodes.SHARED_DEF else drop
    drop.payload[2] = [10**6, 10**6]  # the OBJARRAY's items


def neighbors_graph() -> Any:
    from sklearn.neighbors import KNeighborsTransformer

    return KNeighborsTransformer(n_neighbors=5).fit(np.random.RandomState(0).rand(50, 3))


def ball_neighbors_1d() -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    X, y = models.iris()
    return KNeighborsClassifier(n_neighbors=3, algorithm="ball_tree").fit(X[:, :1], y)


def metric_filled_after_the_check(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    """The tree's metric is an empty shell when the tree is checked, and receives a
    0 x 0 Mahalanobis matrix only afterwards, from a STATE node at the root."""
    mahalanobis = "sklearn.metrics._dist_metrics.MahalanobisDistance64"
    jar.state(node)[11] = Ext(nodes.SHARED_DEF, [10**6, Ext(nodes.NEWOBJ, mahalanobis)])
    empty = Ext(nodes.TUPLE, [2.0, Ext(nodes.NDARRAY, ["<f8", [0], False, b""]),
                              Ext(nodes.NDARRAY, ["<f8", [0, 0], False, b""])])
    late = Ext(nodes.STATE, [Ext(nodes.SHARED_REF, 10**6), 1, empty, 0, None])
    jar.root = Ext(nodes.ROOT, [jar.root, [late]])
    _declare(jar, mahalanobis, "object")


def vocabulary_past_the_end(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    state = jar.state(node)
    state["vocabulary_"] = {k: 2**31 - 1 - 1000 * i for i, k in enumerate(state["vocabulary_"])}


def vocabulary_negative(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    state = jar.state(node)
    state["vocabulary_"] = {k: -(10**6) - i for i, k in enumerate(state["vocabulary_"])}


def knn(metric: Any = "euclidean", **params: Any) -> Any:
    """A brute-force KNeighborsClassifier on 2 features (to be widened by the edits)."""
    from sklearn.neighbors import KNeighborsClassifier

    X = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    model = KNeighborsClassifier(n_neighbors=1, algorithm="brute", metric=metric,
                                 metric_params=params or None)
    return model.fit(X, [0, 1, 0, 1])


def knn_mahalanobis_object() -> Any:
    from sklearn.metrics import DistanceMetric

    return knn(DistanceMetric.get_metric("mahalanobis", VI=np.eye(2)))


WIDE = 20_000  # features the edited models claim; the subprocess predicts on 2 such rows


def widen(fit_x_columns: int, wide: int = WIDE) -> Edit:
    """n_features_in_ = ``wide``, and _fit_X of ``fit_x_columns`` columns."""

    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        state = jar.state(node)
        state["n_features_in_"] = wide
        jar.edit(state["_fit_X"], lambda a: np.zeros((len(a), fit_x_columns)))

    return edit


def shrink_param(key: str) -> Edit:
    """metric_params[key] (shared with effective_metric_params_) cut to 1 (x 1)."""

    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        jar.edit(jar.state(node)["metric_params"][key],
                 lambda a: np.ones((1,) * a.ndim))

    return edit


def shrink_metric_matrix(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    metric = jar.objects("sklearn.metrics._dist_metrics.MahalanobisDistance64")[0]
    mat = jar.state(metric)[2]
    jar.edit(mat, lambda a: np.ones((1, 1)))


def narrow_to_one_feature(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    state = jar.state(node)
    state["n_features_in_"] = 1
    jar.edit(state["_fit_X"], lambda a: np.ascontiguousarray(a[:, :1]))


# -- edits --------------------------------------------------------------------------------------
def put(key: Any, field: str | None, index: Callable[[np.ndarray], Any] | Any, value: Any) -> Edit:
    """``state[key][field][index] = value`` (``index`` may be computed from the whole array)."""

    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        def change(arr: np.ndarray) -> None:
            target = arr if field is None else arr[field]
            target[index(arr) if callable(index) else index] = value

        jar.edit(jar.state(node)[key], change)

    return edit


def wrapping_indptr(indptr: np.ndarray) -> np.ndarray:
    """An indptr that decreases twice, by amounts whose differences wrap around in its
    own integer type, so that ``np.diff(indptr) < 0`` sees no decrease."""
    out = indptr.copy()
    assert len(out) >= 5, "the matrix needs 4 rows (CSR) or columns (CSC)"
    out[1:4] = (100, np.iinfo(out.dtype).min, -1)
    assert not (np.diff(out) < 0).any() and (out[1:] < out[:-1]).any()
    return out


def reshape(key: Any, make: Callable[[np.ndarray], np.ndarray]) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        jar.edit(jar.state(node)[key], make)

    return edit


def set_state(key: str, value: Any) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        jar.state(node)[key] = value

    return edit


def then(*edits: Edit) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        for e in edits:
            e(jar, node)

    return edit


def _declare(jar: jarcraft.Jar, name: str, use: str) -> None:
    for entry in jar.header["names"]:
        if entry["name"] == name:
            entry["uses"] = sorted(set(entry["uses"]) | {use})
            return
    jar.header["names"].append(name_entry(name, uses=(use,)))


def as_container(kind: str) -> Edit:
    """Hand the (already edited) state over as a dict subclass instead of a plain dict."""

    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        pairs = [[k, v] for k, v in jar.state(node).items()]
        if kind == "OrderedDict":
            node.payload[2] = Ext(nodes.ORDEREDDICT, pairs)
        elif kind == "defaultdict":
            node.payload[2] = Ext(nodes.DEFAULTDICT, [None, pairs])
        else:
            node.payload[2] = Ext(nodes.INSTANCE, [BUNCH, 0, None, 2, pairs])
            _declare(jar, BUNCH, "object")

    return edit


def class_swap(real: str) -> Edit:
    """Write the object as a harmless class (no meaning check) and switch its __class__."""

    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        state = jar.state(node)
        node.payload[0] = SCORER
        node.payload[2] = Ext(nodes.TUPLE, [state, {"__class__": Ext(nodes.REF, real)}])
        _declare(jar, SCORER, "object")
        _declare(jar, real, "value")

    return edit


def tree_inner(a: np.ndarray) -> int:
    return int(np.flatnonzero(a["left_child"] != -1)[1])


def hgb_inner(a: np.ndarray) -> int:
    inner = np.flatnonzero(a["is_leaf"] == 0)
    return int(inner[1]) if len(inner) > 1 else int(inner[0])


def categorical_split(a: np.ndarray) -> int:
    return int(np.flatnonzero((a["is_leaf"] == 0) & (a["is_categorical"] != 0))[0])


# -- jars from scratch (bit generators) --------------------------------------------------------
def bit_generator(cls: Any, edit: Callable[[dict[str, Any]], None], wrap: str = "") -> bytes:
    name = f"{cls.__module__}.{cls.__qualname__}"
    state = cls(7).state
    edit(state)
    buffers: list[bytes] = []
    node = Ext(nodes.BITGENERATOR, [name, encode_state(state, buffers)])
    names = [name_entry(name, uses=("object",))]
    if wrap == "RandomState":
        node = Ext(nodes.RANDOMSTATE, [node, 0, 0.0])
        names.append(name_entry("numpy.random.mtrand.RandomState", uses=("object",)))
    elif wrap == "Generator":
        node = Ext(nodes.GENERATOR, node)
        names.append(name_entry("numpy.random._generator.Generator", uses=("object",)))
    return jarcraft.build(node, names, buffers)


def bare_instance(cls: Any, state: dict[str, Any] | None = None) -> bytes:
    """A bit generator as a generic INSTANCE: ``cls.__new__`` and (maybe) state."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    buffers: list[bytes] = []
    encoded = None if state is None else encode_state(state, buffers)
    node = Ext(nodes.INSTANCE, [name, 0 if state is None else 1, encoded, 0, None])
    return jarcraft.build(node, [name_entry(name, uses=("object",))], buffers)


def _pos(path: tuple[str, ...], value: int) -> Callable[[dict[str, Any]], None]:
    def edit(state: dict[str, Any]) -> None:
        d = state
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value

    return edit


# -- the cases ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    defence: str
    make: Callable[[], bytes]
    use: str = "predict"


def edited(model: Callable[[], Any], target: str, edit: Edit, nth: int = 0) -> Callable[[], bytes]:
    def make() -> bytes:
        jar = jarcraft.decode(skjar.dumps(model()))
        edit(jar, jar.objects(target)[nth])
        return jarcraft.encode(jar)

    return make


TREE_CHECK = "meaning check: Tree child/feature index"
HGB_CHECK = "meaning check: HGB predictor nodes"
BINARY_CHECK = "meaning check: KDTree/BallTree index arrays"
SVM_CHECK = "meaning check: SVC support counts"
SPARSE_CHECK = "meaning check: sparse indices/indptr"
SPLINE_CHECK = "meaning check: BSpline knots"
NEIGHBORS_CHECK = "meaning check: nearest neighbors data and metric"
VOCABULARY_CHECK = "meaning check: vocabulary / class-column maps"
ONE_HOT_CHECK = "meaning check: one-hot encoder categories"
BITGEN_CHECK = "meaning check: bit generator positions"
SEED_CHECK = "meaning check: bit generator seed sequence"
PLAIN = "meaning checks need plain state"
PENDING = "meaning checks see no pending shells"
SLOTS = "slots: only real __slots__ members"
HANDLER = "handler-built types only by their node"

bad_svc = put("_n_support", None, 0, 10**6)
bad_kmeans = reshape("cluster_centers_", lambda a: np.c_[a, a, a])
bad_hgb_feature = put("nodes", "feature_idx", 0, 10**6)

def spline_pair(change: Callable[[jarcraft.Jar, list[Any]], None]) -> Callable[[], bytes]:
    """The spline with its last BSpline's (delegate, array) state changed (scipy >= 1.18;
    the last, because the first spells out the names the others refer back to)."""
    return edited(spline, BSPLINE, lambda jar, node: change(jar, jar.state(node)), nth=-1)


def delegate_of_another_class(jar: jarcraft.Jar, pair: list[Any]) -> None:
    pair[0].payload[0] = SCORER
    _declare(jar, SCORER, "object")


def delegate_without_state(jar: jarcraft.Jar, pair: list[Any]) -> None:
    pair[0].payload[1:3] = [nodes.STATE_NONE, None]


SPLINE_PAIR_CASES = [
    Case("bspline-delegate-of-another-class", SPLINE_CHECK,
         spline_pair(delegate_of_another_class), use="transform"),
    Case("bspline-delegate-without-state", SPLINE_CHECK,
         spline_pair(delegate_without_state), use="transform"),
    Case("bspline-library-not-an-array", SPLINE_CHECK,
         spline_pair(lambda jar, pair: pair.__setitem__(1, [])), use="transform"),
    Case("bspline-state-of-three", SPLINE_CHECK,
         spline_pair(lambda jar, pair: pair.append(None)), use="transform"),
] if SPLINE_DELEGATES else []


CASES = [
    # decision trees: child and feature indices
    Case("tree-child-past-the-end", TREE_CHECK,
         edited(models.decision_tree, TREE, put("nodes", "left_child", 0, 10**6))),
    Case("tree-child-cycle-to-root", TREE_CHECK,
         edited(models.decision_tree, TREE, put("nodes", "right_child", tree_inner, 0))),
    Case("tree-child-negative", TREE_CHECK,
         edited(models.decision_tree, TREE, put("nodes", "left_child", 0, -(2**40)))),
    Case("tree-feature-past-the-width", TREE_CHECK,
         edited(models.decision_tree, TREE, put("nodes", "feature", 0, 10**6))),
    Case("tree-feature-negative", TREE_CHECK,
         edited(models.decision_tree, TREE, put("nodes", "feature", 0, -3))),
    # histogram gradient boosting predictors
    Case("hgb-left-past-the-end", HGB_CHECK,
         edited(models.hist_gradient_boosting, PREDICTOR, put("nodes", "left", 0, 10**6))),
    Case("hgb-right-cycle", HGB_CHECK,
         edited(models.hist_gradient_boosting, PREDICTOR, put("nodes", "right", hgb_inner, 0))),
    Case("hgb-feature-past-the-width", HGB_CHECK,
         edited(models.hist_gradient_boosting, PREDICTOR, bad_hgb_feature)),
    Case("hgb-bitset-past-the-end", HGB_CHECK,
         edited(models.categorical_hgb, PREDICTOR,
                put("nodes", "bitset_idx", categorical_split, 10**6))),
    # KD / Ball trees
    Case("kdtree-index-past-the-data", BINARY_CHECK,
         edited(models.kd_neighbors, KDTREE, put(1, None, 0, 10**6))),
    Case("kdtree-index-negative", BINARY_CHECK,
         edited(models.kd_neighbors, KDTREE, put(1, None, 2, -(10**6)))),
    Case("kdtree-node-range-past-the-data", BINARY_CHECK,
         edited(models.kd_neighbors, KDTREE, put(2, "idx_end", 0, 10**6))),
    Case("balltree-index-past-the-data", BINARY_CHECK,
         edited(models.ball_neighbors, BALLTREE, put(1, None, 0, 10**6))),
    # (None has a __getstate__ from Python 3.11, which the checks took as the mark of a
    # metric: the tree loaded and its query dereferenced NULL - a fuzz finding)
    Case("kdtree-metric-none", BINARY_CHECK, edited(models.kd_neighbors, KDTREE, set_state(11, None))),
    Case("balltree-metric-none", BINARY_CHECK,
         edited(models.ball_neighbors, BALLTREE, set_state(11, None))),
    Case("kdtree-metric-an-int", BINARY_CHECK, edited(models.kd_neighbors, KDTREE, set_state(11, 7))),
    Case("balltree-metric-given-state-after-the-check", PENDING,
         edited(ball_neighbors_1d, BALLTREE, metric_filled_after_the_check)),
    # support vector machines
    Case("svc-support-counts-disagree", SVM_CHECK, edited(models.svc, SVC, bad_svc)),
    Case("svc-support-index-past-the-data", SVM_CHECK,
         edited(models.svc, SVC, put("support_", None, 0, 10**6))),
    Case("svc-dual-coefficients-short", SVM_CHECK,
         edited(models.svc, SVC, reshape("dual_coef_", lambda a: a[:1].copy()))),  # shared
    # sparse matrices
    Case("csr-index-past-the-width", SPARSE_CHECK,
         edited(models.sparse_dict, "scipy.sparse._csr.csr_matrix",
                put("indices", None, -1, 10**6)), use="sparse"),
    Case("csr-indptr-decreasing", SPARSE_CHECK,
         edited(models.sparse_dict, "scipy.sparse._csr.csr_matrix",
                put("indptr", None, 1, 10**6)), use="sparse"),
    # (np.diff wraps: 100 then the type's minimum then -1 "never decreased", and the
    # matrix loaded and segfaulted in toarray - a fuzz finding)
    Case("csr-indptr-decreasing-by-wrapping-around", SPARSE_CHECK,
         edited(sparse_tall, "scipy.sparse._csr.csr_matrix",
                reshape("indptr", wrapping_indptr)), use="sparse"),
    Case("csc-indptr-decreasing-by-wrapping-around", SPARSE_CHECK,
         edited(sparse_formats, "scipy.sparse._csc.csc_matrix",
                reshape("indptr", wrapping_indptr)), use="sparse"),
    Case("csr-indptr-past-the-entries", SPARSE_CHECK,
         edited(models.sparse_dict, "scipy.sparse._csr.csr_matrix",
                put("indptr", None, -1, 10**6)), use="sparse"),
    Case("csc-index-past-the-height", SPARSE_CHECK,
         edited(sparse_formats, "scipy.sparse._csc.csc_matrix",
                put("indices", None, 0, 10**6)), use="sparse"),
    Case("coo-coordinate-past-the-width", SPARSE_CHECK,
         edited(sparse_formats, "scipy.sparse._coo.coo_matrix",
                lambda jar, node: jar.edit(jar.state(node)["coords"].payload[1],
                                           lambda a: np.full_like(a, 10**6))), use="sparse"),
    Case("sgd-coef-csr-index-past-the-width", SPARSE_CHECK,
         edited(models.sparse_sgd, "scipy.sparse._csr.csr_matrix",
                put("indices", None, 0, 10**6))),
    # BSplines (SplineTransformer): compiled evaluation trusts t, c and k
    Case("bspline-too-few-coefficients", SPLINE_CHECK,
         edited(spline, SPLINE, reshape(SPLINE_C, lambda a: a[:1].copy())), use="transform"),
    Case("bspline-knots-decreasing", SPLINE_CHECK,
         edited(spline, SPLINE, reshape(SPLINE_T, lambda a: a[::-1].copy())), use="transform"),
    Case("bspline-degree-huge", SPLINE_CHECK,
         edited(spline, SPLINE, set_state("k", 10**6)), use="transform"),
    Case("bspline-nan-knot", SPLINE_CHECK,
         edited(spline, SPLINE, put(SPLINE_T, None, 3, np.nan)), use="transform"),
    *SPLINE_PAIR_CASES,
    # brute-force nearest neighbors: the pairwise reductions read n_features_in_ values
    # from every _fit_X row and from the metric's weights (found here: no check existed,
    # and these segfaulted on predict)
    Case("knn-fit-x-narrower-than-the-input", NEIGHBORS_CHECK,
         edited(knn, KNN, widen(1, wide=1_000_000))),
    Case("knn-mahalanobis-vi-too-small", NEIGHBORS_CHECK,
         edited(lambda: knn("mahalanobis", VI=np.eye(2)), KNN,
                then(widen(WIDE), shrink_param("VI")))),
    Case("knn-seuclidean-v-too-small", NEIGHBORS_CHECK,
         edited(lambda: knn("seuclidean", V=np.ones(2)), KNN, then(widen(WIDE),
                                                                  shrink_param("V")))),
    Case("knn-mahalanobis-metric-object-too-small", NEIGHBORS_CHECK,
         edited(knn_mahalanobis_object, KNN, then(widen(WIDE), shrink_metric_matrix))),
    Case("knn-haversine-on-one-feature", NEIGHBORS_CHECK,
         edited(lambda: knn("haversine"), KNN, narrow_to_one_feature)),
    Case("knn-graph-narrower-than-the-data", NEIGHBORS_CHECK,
         edited(neighbors_graph, "sklearn.neighbors._graph.KNeighborsTransformer",
                set_state("n_samples_fit_", 10)), use="graph"),
    # vectorizers and encoders: transform builds a sparse matrix from stored column
    # indices (found here: unchecked; predict/transform segfaulted or corrupted the heap)
    Case("count-vectorizer-vocabulary-past-the-end", VOCABULARY_CHECK,
         edited(text_pipeline("count"), COUNT, vocabulary_past_the_end), use="text"),
    Case("tfidf-vectorizer-vocabulary-negative", VOCABULARY_CHECK,
         edited(text_pipeline("tfidf"), TFIDF, vocabulary_negative), use="text"),
    Case("dict-vectorizer-vocabulary-past-the-end", VOCABULARY_CHECK,
         edited(text_pipeline("dict"), DICTVEC, vocabulary_past_the_end), use="dicts"),
    Case("multilabel-cache-past-the-end", VOCABULARY_CHECK,
         edited(multilabel, "sklearn.preprocessing._label.MultiLabelBinarizer",
                set_state("_cached_dict", {"a": 10**9, "b": 2, "c": 1})), use="labels"),
    Case("one-hot-outputs-too-few", ONE_HOT_CHECK,
         edited(one_hot(), ONE_HOT, set_state("_n_features_outs", [1, 1])), use="onehot"),
    Case("one-hot-categories-unsorted", ONE_HOT_CHECK,
         edited(one_hot_numbers, ONE_HOT,
                lambda jar, node: jar.edit(jar.state(node)["categories_"][1],
                                           lambda a: a[::-1].copy())), use="onehot-numbers"),
    Case("one-hot-infrequent-mapping-past-the-end", ONE_HOT_CHECK,
         edited(one_hot(min_frequency=4), ONE_HOT,
                lambda jar, node: jar.edit(
                    jar.state(node)["_default_to_infrequent_mappings"][0],
                    lambda a: np.full_like(a, 10**6))), use="onehot"),
    Case("one-hot-dropped-category-past-the-end", ONE_HOT_CHECK,
         edited(one_hot(drop="first"), ONE_HOT, drop_past_the_end), use="onehot"),
    # k-means
    Case("kmeans-centers-too-wide", "meaning check: k-means centers",
         edited(models.kmeans, KMEANS, bad_kmeans)),
    # bit generator positions numpy stores without a range check (fixed: MT19937 pos and
    # Philox buffer_pos segfaulted on the first draw)
    Case("mt19937-pos-past-the-key", BITGEN_CHECK,
         lambda: bit_generator(np.random.MT19937, _pos(("state", "pos"), 10**7)), use="random"),
    Case("mt19937-pos-negative", BITGEN_CHECK,
         lambda: bit_generator(np.random.MT19937, _pos(("state", "pos"), -(10**7))),
         use="random"),
    Case("mt19937-in-randomstate", BITGEN_CHECK,
         lambda: bit_generator(np.random.MT19937, _pos(("state", "pos"), 10**7), "RandomState"),
         use="random"),
    Case("philox-buffer-pos-negative", BITGEN_CHECK,
         lambda: bit_generator(np.random.Philox, _pos(("buffer_pos",), -(10**9))), use="random"),
    Case("philox-in-generator", BITGEN_CHECK,
         lambda: bit_generator(np.random.Philox, _pos(("buffer_pos",), -(10**9)), "Generator"),
         use="random"),
    Case("pcg64-has-uint32-garbage", BITGEN_CHECK,
         lambda: bit_generator(np.random.PCG64, _pos(("has_uint32",), 7)), use="random"),
    # the seed sequence stored with a bit generator (pool_size sizes numpy's allocation)
    Case("seed-sequence-pool-of-a-billion-words", SEED_CHECK,
         lambda: bit_generator(np.random.PCG64, _pos(("seed_seq",), [1, [], 10**9, 0])),
         use="random"),
    Case("seed-sequence-negative-entropy", SEED_CHECK,
         lambda: bit_generator(np.random.MT19937, _pos(("seed_seq",), [-5, [], 4, 0])),
         use="random"),
    Case("seed-sequence-spawn-key-of-strings", SEED_CHECK,
         lambda: bit_generator(np.random.Philox, _pos(("seed_seq",), [1, ["x"], 4, 0])),
         use="random"),
    Case("seed-sequence-children-negative", SEED_CHECK,
         lambda: bit_generator(np.random.SFC64, _pos(("seed_seq",), [1, [], 4, -1]), "Generator"),
         use="random"),
    Case("seed-sequence-not-four-fields", SEED_CHECK,
         lambda: bit_generator(np.random.MT19937, _pos(("seed_seq",), [1, []]), "RandomState"),
         use="random"),
    # bypasses: the same bad state as a dict subclass (checks read plain dicts) ...
    Case("svc-state-as-ordereddict", PLAIN, edited(models.svc, SVC, then(bad_svc,
                                                                         as_container("OrderedDict")))),
    Case("svc-state-as-defaultdict", PLAIN, edited(models.svc, SVC, then(bad_svc,
                                                                         as_container("defaultdict")))),
    Case("kmeans-state-as-bunch", PLAIN, edited(models.kmeans, KMEANS, then(bad_kmeans,
                                                                            as_container("Bunch")))),
    Case("hgb-state-as-ordereddict", PLAIN,
         edited(models.hist_gradient_boosting, HGB,
                lambda jar, node: (bad_hgb_feature(jar, jar.objects(PREDICTOR)[0]),
                                   as_container("OrderedDict")(jar, node)))),
    Case("tree-estimator-state-as-ordereddict", PLAIN,
         edited(models.decision_tree, DTC, then(set_state("n_features_in_", 10**6),
                                                as_container("OrderedDict")))),
    # ... or through the __class__ slot of an object of a class without a check
    Case("svc-class-swap", SLOTS, edited(models.svc, SVC, then(bad_svc, class_swap(SVC)))),
    Case("kmeans-class-swap", SLOTS,
         edited(models.kmeans, KMEANS, then(bad_kmeans, class_swap(KMEANS)))),
    Case("hgb-class-swap", SLOTS,
         edited(models.hist_gradient_boosting, HGB,
                lambda jar, node: (bad_hgb_feature(jar, jar.objects(PREDICTOR)[0]),
                                   class_swap(HGB)(jar, node)))),
    # objects whose C state was never initialised (cls.__new__ only): used to segfault
    Case("pcg64-bare-instance-given-state", HANDLER,
         lambda: bare_instance(np.random.PCG64, np.random.PCG64(1).state),
         use="random"),
    Case("pcg64-bare-instance-used", HANDLER, lambda: bare_instance(np.random.PCG64),
         use="random"),
    Case("philox-bare-instance-used", HANDLER, lambda: bare_instance(np.random.Philox),
         use="random"),
    Case("pcg64dxsm-bare-instance-used", HANDLER, lambda: bare_instance(np.random.PCG64DXSM),
         use="random"),
]

RUNNER = textwrap.dedent(
    """
    import ctypes, json, sys
    import numpy as np
    import skjar

    def use(model, how):
        if how == "random":
            if hasattr(model, "random_raw"):  # a bit generator: its state, then draws
                model.state
                return model.random_raw(64)
            if hasattr(model, "get_state"):
                model.get_state()
            return model.random(64) if hasattr(model, "random") else model.random_sample(64)
        if how == "sparse":
            return [m @ np.ones(m.shape[1]) for m in model.values()]
        if how == "text":
            return model.predict_proba(["apple banana", "cherry date", "banana"])
        if how == "dicts":
            return model.predict_proba([{"a": 1, "b": 2}, {"d": 1}, {"c": 5}])
        if how == "onehot":
            return model.transform(np.array([["a", "x"], ["b", "y"], ["c", "z"]] * 50,
                                            dtype=object))
        if how == "labels":
            return model.transform([["a", "b"], ["c"], ["a"]])
        if how == "onehot-numbers":
            return model.transform(np.array([[0, 10], [1, 20], [2, 30]] * 50))
        if how == "graph":
            return model.transform(np.random.RandomState(1).rand(200, 3)).toarray()
        n = getattr(model, "n_features_in_", 4)
        X = np.random.RandomState(0).randint(0, 5, (40 if n < 1000 else 2, n)).astype(float)
        return getattr(model, how)(X)

    cases = json.loads(sys.argv[1])
    for case in cases:
        if case["id"] == "CRASH-CONTROL":  # proves a dead process is noticed
            print(case["id"], "loading", flush=True)
            ctypes.string_at(0)  # a read of address 0: a segfault on every version
        print(case["id"], "loading", flush=True)
        try:
            model = skjar.load(case["path"])
        except skjar.SkjarError as exc:
            print(case["id"], "REFUSED", json.dumps([type(exc).__name__, str(exc)]), flush=True)
            continue
        except BaseException as exc:
            print(case["id"], "ESCAPED", json.dumps([type(exc).__name__, str(exc)]), flush=True)
            continue
        print(case["id"], "LOADED", flush=True)  # and use it: this is where memory breaks
        try:
            use(model, case["use"])
            print(case["id"], "USED", flush=True)
        except Exception as exc:
            print(case["id"], "USE-RAISED", type(exc).__name__, flush=True)
    print("done", flush=True)
    """
)


@dataclass
class Batch:
    outcomes: dict[str, str]  # case id -> "REFUSED [...]", "LOADED USED", "DIED -11" ...
    crashes: list[str]  # what each dead process printed last, and its stderr


def run_batch(cases: list[dict[str, str]], timeout: float = 300) -> Batch:
    """Run the cases in one process; if it dies, note the case and go on in a new one."""
    outcomes: dict[str, str] = {}
    crashes: list[str] = []
    todo = list(cases)
    while todo:
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, json.dumps(todo)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        current = None
        for line in proc.stdout.splitlines():
            ident, _, rest = line.partition(" ")
            if rest.startswith("loading"):
                current = ident
            elif ident != "done":
                outcomes[ident] = (outcomes.get(ident, "") + " " + rest).strip()
        if proc.returncode == 0:
            break
        if current is None:  # died before the first case: nothing to skip past
            crashes.append(f"code {proc.returncode}: {proc.stderr[-2000:]}")
            break
        outcomes[current] = (outcomes.get(current, "") + f" DIED {proc.returncode}").strip()
        crashes.append(f"{current}: code {proc.returncode}: {proc.stderr[-1000:]}")
        todo = todo[[c["id"] for c in todo].index(current) + 1 :]
    return Batch(outcomes, crashes)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Batch:
    """One process for all cases, shared by the xdist workers (the first one runs it)."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the folder all workers of this session share
    result = shared / "meaning-batch.json"
    with open(shared / "meaning-batch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            folder = shared / "meaning-jars"
            folder.mkdir(exist_ok=True)
            cases = []
            for case in CASES:
                path = folder / f"{case.id}.skjar"
                path.write_bytes(case.make())
                cases.append({"id": case.id, "path": str(path), "use": case.use})
            result.write_text(json.dumps(dataclasses.asdict(run_batch(cases))))
    return Batch(**json.loads(result.read_text()))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_tampered_state_is_refused_in_a_separate_process(
    case: Case, batch: Batch, record_property: Any
) -> None:
    outcome = batch.outcomes.get(case.id, "no outcome")
    assert "DIED" not in outcome, f"{case.id}: the process died: {outcome}\n{batch.crashes}"
    assert outcome.startswith("REFUSED"), f"{case.id}: {outcome}"
    name, message = json.loads(outcome.removeprefix("REFUSED "))
    exc_type, pattern = DEFENCES[case.defence]
    assert name == exc_type.__name__, f"{case.id}: {name}: {message}"
    assert re.search(pattern, message), f"{case.id}: not {case.defence!r}: {message}"
    record_property("defence", case.defence)


def test_the_process_check_notices_a_crash(tmp_path: Path) -> None:
    """Control: the runner's own segfault (address 0 read through ctypes, not through
    skjar) shows up as a dead process, so the checks above can fail."""
    result = run_batch([{"id": "CRASH-CONTROL", "path": "", "use": ""},
                        {"id": "after", "path": str(tmp_path / "missing.skjar"), "use": ""}],
                       timeout=120)
    assert result.outcomes["CRASH-CONTROL"].startswith("DIED -"), result
    assert result.outcomes["after"].startswith("REFUSED"), result  # the next case still ran


def test_untouched_jars_still_load_and_predict() -> None:
    """Control: the same models through the same edit machinery, without an edit."""
    for make in (models.svc, models.kmeans, models.hist_gradient_boosting, spline):
        original = make()
        jar = jarcraft.decode(skjar.dumps(original))
        jar.root = jar.root
        loaded = skjar.loads(jarcraft.encode(jar))
        X = models.iris()[0][:, : original.n_features_in_]
        how = "transform" if hasattr(original, "transform") and not hasattr(
            original, "predict") else "predict"
        np.testing.assert_array_equal(getattr(loaded, how)(X), getattr(original, how)(X))
    for cls in (np.random.MT19937, np.random.Philox, np.random.PCG64):
        data = bit_generator(cls, lambda state: None)
        assert skjar.loads(data).random_raw(3).tolist() == cls(7).random_raw(3).tolist()
