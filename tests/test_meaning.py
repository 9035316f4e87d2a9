"""Crafted files whose every type is trusted but whose state is out of range.

scikit-learn's and scipy's compiled code trusts the indices it is given: a tree
child pointing past the node array, a KDTree index past the data, a sparse
column index past the width read (or write) out of bounds. skjar must refuse
such state at load time with ``CorruptFileError``, before any of it reaches
compiled code. Each case edits a real model's jar at the format level (the
stored arrays, through ``jarcraft``) and keeps a valid digest, so only the
meaning checks stand in the way.

Every crafted file is also loaded (and, if it loads, used) in a separate Python
process, which must exit normally: a segfault there is a memory-safety bug.
"""

from __future__ import annotations

import functools
import itertools
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
from skjar.codec import nodes

TREE = "sklearn.tree._tree.Tree"
PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
KDTREE = "sklearn.neighbors._kd_tree.KDTree"
BALLTREE = "sklearn.neighbors._ball_tree.BallTree"
SVC = "sklearn.svm._classes.SVC"
CSR = "scipy.sparse._csr.csr_matrix"
KMEANS = "sklearn.cluster._kmeans.KMeans"
GB = "sklearn.ensemble._gb.GradientBoostingRegressor"
GB_CLASSIFIER = "sklearn.ensemble._gb.GradientBoostingClassifier"


# -- models (fitted once per process) --------------------------------------------------------
@functools.cache
def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X, y


@functools.cache
def decision_tree() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(*iris())


@functools.cache
def hist_gradient_boosting(categorical: bool = False) -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.RandomState(0)
    X = np.c_[rng.randint(0, 5, 300), rng.rand(300)]
    y = (X[:, 0] == 2) * 3.0 + X[:, 1]
    model = HistGradientBoostingRegressor(
        max_iter=3, categorical_features=[0] if categorical else None, random_state=0
    )
    return model.fit(X, y)


@functools.cache
def neighbors(algorithm: str) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=3, algorithm=algorithm, leaf_size=5).fit(*iris())


def kd_neighbors() -> Any:
    return neighbors("kd_tree")


def ball_neighbors() -> Any:
    return neighbors("ball_tree")


def categorical_hgb() -> Any:
    return hist_gradient_boosting(categorical=True)


@functools.cache
def svc() -> Any:
    from sklearn.svm import SVC as SVMClassifier

    return SVMClassifier().fit(*iris())


@functools.cache
def sparse_sgd() -> Any:
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(random_state=0).fit(*iris()).sparsify()


@functools.cache
def sparse_dict() -> dict[str, Any]:
    import scipy.sparse as sp

    return {"m": sp.csr_matrix(np.arange(12.0).reshape(3, 4) % 3)}


@functools.cache
def gradient_boosting_multiclass() -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = iris()
    return GradientBoostingClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, y)


def gradient_boosting() -> Any:
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = iris()
    return GradientBoostingRegressor(n_estimators=3, max_depth=2, random_state=0).fit(X, y * 1.0)


@functools.cache
def kmeans() -> Any:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=3, n_init=1, random_state=0).fit(iris()[0])


# -- edits -----------------------------------------------------------------------------------------
Edit = Callable[[jarcraft.Jar, jarcraft.Ext], None]


def set_field(key: Any, field: str | None, index: Any, value: Any) -> Edit:
    """Set ``state[key][field][index] = value`` (``field`` None: a plain array)."""

    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        def change(arr: np.ndarray) -> None:
            target = arr if field is None else arr[field]
            target[index(target) if callable(index) else index] = value

        jar.edit(jar.state(node)[key], change)

    return edit


def replace(key: Any, make: Callable[[np.ndarray], np.ndarray]) -> Edit:
    """Replace ``state[key]`` by ``make(old)`` (which may change its shape)."""

    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        jar.edit(jar.state(node)[key], make)

    return edit


def both(*edits: Edit) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        for e in edits:
            e(jar, node)

    return edit


def tree_args(position: int, value: Any) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        node.payload[1][position] = value

    return edit


def tree_state(key: str, value: Any) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        jar.state(node)[key] = value

    return edit


def empty_tree(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    state = jar.state(node)
    state["node_count"] = 0
    jar.edit(state["nodes"], lambda a: a[:0])
    jar.edit(state["values"], lambda a: a[:0])


def categorical_root(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    """Make a numeric model's root split categorical, with a bitset row to point at."""
    state = jar.state(node)

    def change(arr: np.ndarray) -> None:
        arr["is_categorical"][0] = 1
        arr["bitset_idx"][0] = 0

    jar.edit(state["nodes"], change)
    for key in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
        jar.edit(state[key], lambda a: np.zeros((1, 8), a.dtype))


def kd_item(position: int, make: Callable[[np.ndarray], np.ndarray | None]) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        jar.edit(jar.state(node)[position], make)

    return edit


def kd_value(position: int, value: Any) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        jar.state(node)[position] = value

    return edit


def setitem(field: str | None, index: Any, value: Any) -> Callable[[np.ndarray], None]:
    def change(arr: np.ndarray) -> None:
        (arr if field is None else arr[field])[index] = value

    return change


def tuple_item(key: str, position: int, value: Any) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        holder = jar.state(node)[key]
        assert holder.code == nodes.TUPLE
        holder.payload[position] = value

    return edit


def more_trees_per_stage(per_iteration: int) -> Edit:
    """Give every boosting stage two trees: predict_stages then writes to out[:, 1]."""

    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        state = jar.state(node)
        stages = state["estimators_"]
        assert stages.code == nodes.OBJARRAY
        shape, _, items = stages.payload
        stages.payload[0] = [shape[0], 2]
        # The second tree of each stage is the first one again, as a shared reference.
        ids = [n.payload[0] for n in jar.nodes(nodes.SHARED_DEF)]
        fresh = itertools.count(max(ids, default=-1) + 1)
        pairs = []
        for item in items:
            ident = next(fresh)
            pairs += [jarcraft.Ext(nodes.SHARED_DEF, [ident, item]),
                      jarcraft.Ext(nodes.SHARED_REF, ident)]
        stages.payload[2] = pairs
        state["n_trees_per_iteration_"] = per_iteration

    return edit


def wide_later_tree(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    """A later stage's tree (and its estimator) claim a million features; the model, 4.

    Only the first stage's tree is used to validate X, so every tree must fit the model.
    """
    stages = jar.state(node)["estimators_"].payload[2]
    estimator = stages[1]
    assert estimator.code == nodes.INSTANCE
    state = jar.state(estimator)
    state["n_features_in_"] = 10**6
    tree = state["tree_"]
    assert tree.code == nodes.RECONSTRUCT
    tree.payload[1][0] = 10**6

    def change(arr: np.ndarray) -> None:
        arr["feature"][0] = 10**5

    jar.edit(jar.state(tree)["nodes"], change)


# -- the cases ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    model: Callable[[], Any]
    target: str  # the object whose state is edited
    edit: Edit
    use: str = "predict"  # what the subprocess does with the model if it loads
    message: str = "crafted"  # in the error message


def _tree_inner(arr: np.ndarray) -> int:
    return int(np.flatnonzero(arr["left_child"] != -1)[1])


def _hgb_inner(arr: np.ndarray) -> int:
    return int(np.flatnonzero(arr["is_leaf"] == 0)[1]) if (arr["is_leaf"] == 0).sum() > 1 else 0


def _categorical_split(arr: np.ndarray) -> int:
    return int(np.flatnonzero((arr["is_leaf"] == 0) & (arr["is_categorical"] != 0))[0])


def self_loop(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
    def change(arr: np.ndarray) -> None:
        i = _tree_inner(arr)
        arr["right_child"][i] = i

    jar.edit(jar.state(node)["nodes"], change)


def _node_edit(key: str, field: str, where: Callable[[np.ndarray], int], value: Any) -> Edit:
    def edit(jar: jarcraft.Jar, node: jarcraft.Ext) -> None:
        def change(arr: np.ndarray) -> None:
            arr[field][where(arr)] = value

        jar.edit(jar.state(node)[key], change)

    return edit


CASES = [
    # decision trees
    Case("tree-child-out-of-range", decision_tree, TREE,
         _node_edit("nodes", "left_child", lambda a: 0, 10**6)),
    Case("tree-child-negative", decision_tree, TREE,
         _node_edit("nodes", "right_child", lambda a: 0, -7)),
    Case("tree-child-points-backwards", decision_tree, TREE,
         _node_edit("nodes", "left_child", _tree_inner, 0)),
    Case("tree-child-points-at-itself", decision_tree, TREE, self_loop),
    Case("tree-feature-too-large", decision_tree, TREE,
         _node_edit("nodes", "feature", lambda a: 0, 4)),
    Case("tree-feature-negative", decision_tree, TREE,
         _node_edit("nodes", "feature", lambda a: 0, -1)),
    Case("tree-half-leaf", decision_tree, TREE,
         _node_edit("nodes", "left_child", lambda a: 0, -1)),
    Case("tree-wider-than-the-estimator", decision_tree, TREE,
         both(tree_args(0, 10**9), _node_edit("nodes", "feature", lambda a: 0, 10**8))),
    Case("tree-no-nodes", decision_tree, TREE, empty_tree),
    Case("tree-node-count-disagrees", decision_tree, TREE, tree_state("node_count", 1000)),
    Case("tree-values-too-short", decision_tree, TREE, replace("values", lambda a: a[:-1])),
    # gradient boosting: the stages are walked by compiled code without per-tree checks
    Case("gb-more-trees-per-stage-than-outputs", gradient_boosting, GB, more_trees_per_stage(1)),
    Case("gb-several-trees-per-stage-without-multiclass-loss", gradient_boosting, GB,
         more_trees_per_stage(2)),
    Case("gb-later-tree-wider-than-the-model", gradient_boosting, GB, wide_later_tree),
    # its initial estimator's raw predictions, which predict_stages adds K columns into
    # (found while fuzzing with ASan: one class prior for three classes corrupted the heap)
    Case("gb-initial-prior-narrower-than-the-classes", gradient_boosting_multiclass,
         "sklearn.dummy.DummyClassifier", replace("class_prior_", lambda a: a[:1])),
    Case("gb-initial-classes-fewer-than-the-trees", gradient_boosting_multiclass,
         "sklearn.dummy.DummyClassifier", tree_state("n_classes_", 1)),
    Case("gb-initial-regressor-without-outputs", gradient_boosting,
         "sklearn.dummy.DummyRegressor", tree_state("n_outputs_", 0)),
    Case("gb-initial-estimator-of-another-kind", gradient_boosting_multiclass, GB_CLASSIFIER,
         tree_state("init_", "mean")),
    # histogram gradient boosting
    Case("hgb-left-out-of-range", hist_gradient_boosting, PREDICTOR,
         _node_edit("nodes", "left", lambda a: 0, 10**6)),
    Case("hgb-right-backwards", hist_gradient_boosting, PREDICTOR,
         _node_edit("nodes", "right", _hgb_inner, 0)),
    Case("hgb-feature-too-large", hist_gradient_boosting, PREDICTOR,
         _node_edit("nodes", "feature_idx", lambda a: 0, 2)),
    Case("hgb-bitset-out-of-range", categorical_hgb, PREDICTOR,
         _node_edit("nodes", "bitset_idx", _categorical_split, 1000)),
    Case("hgb-categorical-split-on-numeric-feature", hist_gradient_boosting, PREDICTOR,
         categorical_root),
    # KDTree / BallTree
    Case("kdtree-index-too-large", kd_neighbors, KDTREE,
         kd_item(1, setitem(None, 0, 150))),
    Case("kdtree-index-negative", kd_neighbors, KDTREE,
         kd_item(1, setitem(None, 3, -1))),
    Case("kdtree-node-end-past-data", kd_neighbors, KDTREE,
         kd_item(2, setitem("idx_end", 0, 10**6))),
    Case("kdtree-node-start-after-end", kd_neighbors, KDTREE,
         kd_item(2, setitem("idx_start", 1, 100))),
    Case("kdtree-inner-node-without-children", kd_neighbors, KDTREE,
         kd_item(2, setitem("is_leaf", slice(None), 0))),
    Case("kdtree-levels-disagree", kd_neighbors, KDTREE,
         kd_value(5, 30)),
    Case("kdtree-bounds-too-narrow", kd_neighbors, KDTREE,
         kd_item(3, lambda a: a[:, :, :-1].copy())),
    Case("balltree-index-too-large", ball_neighbors, BALLTREE,
         kd_item(1, setitem(None, 0, 10**9))),
    Case("balltree-node-end-past-data", ball_neighbors, BALLTREE,
         kd_item(2, setitem("idx_end", 1, 151))),
    # support vector machines
    Case("svc-support-counts-disagree", svc, SVC, set_field("_n_support", None, 0, 1000)),
    Case("svc-support-counts-negative", svc, SVC, set_field("_n_support", None, 1, -5)),
    Case("svc-support-index-too-large", svc, SVC, set_field("support_", None, 0, 150)),
    Case("svc-support-index-negative", svc, SVC, set_field("support_", None, 0, -1)),
    Case("svc-fewer-support-vectors", svc, SVC, replace("support_vectors_", lambda a: a[:-1])),
    Case("svc-narrow-support-vectors", svc, SVC,
         replace("support_vectors_", lambda a: a[:, :-1].copy())),
    Case("svc-training-set-shrunk", svc, SVC, tuple_item("shape_fit_", 0, 10)),
    # sparse matrices
    Case("sgd-csr-column-too-large", sparse_sgd, CSR, set_field("indices", None, 0, 4)),
    Case("sgd-csr-column-negative", sparse_sgd, CSR, set_field("indices", None, 0, -1)),
    Case("sgd-csr-indptr-decreasing", sparse_sgd, CSR, set_field("indptr", None, 1, 9)),
    Case("sgd-csr-indptr-not-from-zero", sparse_sgd, CSR, set_field("indptr", None, 0, 1)),
    Case("dict-csr-column-too-large", sparse_dict, CSR, set_field("indices", None, -1, 10**6)),
    Case("dict-csr-indptr-decreasing", sparse_dict, CSR,
         replace("indptr", lambda a: np.array([0, 5, 2, a[-1]], a.dtype))),
    Case("dict-csr-nnz-disagrees", sparse_dict, CSR, replace("indices", lambda a: a[:-1])),
    # k-means
    Case("kmeans-centers-too-wide", kmeans, KMEANS,
         replace("cluster_centers_", lambda a: np.c_[a, a[:, :1]])),
    Case("kmeans-centers-too-narrow", kmeans, KMEANS,
         replace("cluster_centers_", lambda a: a[:, :-1].copy())),
]


def crafted(case: Case) -> bytes:
    jar = jarcraft.decode(skjar.dumps(case.model()))
    targets = jar.objects(case.target)
    assert targets, f"{case.id}: the model holds no {case.target}"
    case.edit(jar, targets[0])
    return jarcraft.encode(jar)


def untouched(case: Case) -> bytes:
    """The same jar through the same machinery, with no edit (the control)."""
    jar = jarcraft.decode(skjar.dumps(case.model()))
    assert jar.objects(case.target)
    jar.root = jar.root  # unpack and pack again
    return jarcraft.encode(jar)


def use(model: Any, how: str) -> Any:
    X = iris()[0] if not isinstance(model, dict) else None
    if isinstance(model, dict):
        return model["m"] @ np.ones(model["m"].shape[1])
    if getattr(model, "n_features_in_", 4) == 2:
        X = np.c_[np.arange(20) % 5, np.linspace(0, 1, 20)]
    return getattr(model, how)(X)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_out_of_range_state_is_refused(case: Case) -> None:
    data = crafted(case)
    with pytest.raises(skjar.CorruptFileError) as info:
        skjar.loads(data)
    assert case.message in str(info.value), str(info.value)


MODELS = {c.model.__name__: c for c in CASES}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_control_untouched_jars_load(model: str) -> None:
    """Without the edit, the same round trip through jarcraft loads and predicts alike."""
    case = MODELS[model]
    original = case.model()
    loaded = skjar.loads(untouched(case))
    np.testing.assert_array_equal(np.asarray(use(loaded, case.use)),
                                  np.asarray(use(original, case.use)))


SUBPROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import skjar

    X4 = np.asarray(__import__("sklearn.datasets").datasets.load_iris().data)
    X2 = np.c_[np.arange(20) % 5, np.linspace(0, 1, 20)]
    for path in sys.argv[1:]:
        name = path.rsplit("/", 1)[-1]
        print(name, "loading", flush=True)
        try:
            model = skjar.load(path)
        except skjar.SkjarError as exc:
            print(name, "refused", type(exc).__name__, flush=True)
            continue
        print(name, "LOADED", flush=True)  # then use it: this is where memory breaks
        try:
            if isinstance(model, dict):
                model["m"] @ np.ones(model["m"].shape[1])
            else:
                model.predict(X2 if model.n_features_in_ == 2 else X4)
        except Exception as exc:
            print(name, "predict raised", type(exc).__name__, flush=True)
    print("done", flush=True)
    """
)


def test_crafted_files_never_crash_a_process(tmp_path: Path) -> None:
    """Each crafted file, loaded (and used, if it loads) in a fresh process: no segfault."""
    paths = []
    for case in CASES:
        path = tmp_path / f"{case.id}.skjar"
        path.write_bytes(crafted(case))
        paths.append(str(path))
    proc = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, *paths],
        capture_output=True, text=True, timeout=300, check=False,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, (
        f"the process died with code {proc.returncode} after: {lines[-3:]}\n{proc.stderr[-2000:]}"
    )
    assert lines[-1] == "done"
    outcomes = {line.split()[0]: line for line in lines if " refused " in line or "LOADED" in line}
    for case in CASES:
        line = outcomes.get(f"{case.id}.skjar", "")
        assert "refused CorruptFileError" in line, f"{case.id}: {line or 'no outcome'}"
