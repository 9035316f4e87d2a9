"""scikit-learn: meaning checks for state that compiled code indexes into.

Types alone do not make a load safe: a trusted ``Tree`` whose child index
points past its node array makes Cython read out of bounds. Each check here
runs on the decoded state *before* it is handed to the object, vectorised with
numpy so it costs a pass over the arrays, not a Python step per node.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

import numpy as np

from .. import _compiled
from ..errors import CorruptFileError
from .decoder import brief
from .numpy import indices_below
from .registry import owns_indexes, validates


@functools.cache
def _imported(module: str, name: str) -> Any:
    """``module.name``, imported on first use (skjar does not import scikit-learn
    until a model needs it). A checked load calls these checks per tree, where an
    ``import`` statement in the function body cost ~1.7 us each time. sys.modules
    first: by the time a check runs, the load has imported the module, and
    import_module takes ~10 Python-level importlib steps to say so."""
    return getattr(sys.modules.get(module) or importlib.import_module(module), name)


_HGB_COMMON = "sklearn.ensemble._hist_gradient_boosting.common"


@functools.lru_cache(maxsize=64)
def _is_layout(dtype: np.dtype[Any], expected: np.dtype[Any]) -> bool:
    """``dtype == expected``, remembered. Comparing two record dtypes field by field
    costs ~0.6 us, a quarter of a tree's whole check, and a load sees the same few
    (decoded dtypes are cached objects, so the lookup is an identity hit)."""
    return bool(dtype == expected)


def _fail(what: str, why: str) -> CorruptFileError:
    return CorruptFileError(f"{what}: {why}; the file was damaged or crafted")


def _array(value: Any, what: str, ndim: int | None = None, kind: str | None = None) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise _fail(what, f"expected an array, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise _fail(what, f"expected {ndim} dimensions, got shape {value.shape}")
    if kind is not None and value.dtype.kind not in kind:
        raise _fail(what, f"unexpected dtype {value.dtype}")
    return value


def _int(value: Any, what: str, low: int = 0) -> int:
    if type(value) is int and value >= low:  # the common case, first: ~5 per tree loaded
        return value
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise _fail(what, f"expected an integer >= {low}, got {brief(value)}")
    return int(value)


def _child_outside(i: int, left: int, right: int, n: int, what: str) -> CorruptFileError:
    """The error for split ``i`` whose children are not both in (i, n) (left named first)."""
    side, child = ("left", left) if not i < left < n else ("right", right)
    return _fail(what, f"node {i} has {side} child {child} outside ({i}, {n})")


def _children_ok(inner: np.ndarray, lc: np.ndarray, rc: np.ndarray, n: int, what: str) -> None:
    """Splits ``inner`` (ascending) point strictly forward and inside the array: no cycles,
    no escape. ``lc``/``rc`` are their children."""
    bad = (lc <= inner) | (lc >= n) | (rc <= inner) | (rc >= n)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise _child_outside(int(inner[k]), int(lc[k]), int(rc[k]), n, what)


# -- decision trees ---------------------------------------------------------
def _tree_twin_extra() -> tuple[Any, ...]:
    """What ``tree_state_ok`` takes after (args, state)."""
    NODE_DTYPE = _imported("sklearn.tree._tree", "NODE_DTYPE")
    layout = _record_layout(NODE_DTYPE, ("left_child", "right_child", "feature"))
    return (np.ndarray, NODE_DTYPE, *layout)


@validates(
    "sklearn.tree._tree.Tree", twin="tree_state_ok", extra=_tree_twin_extra, with_args=True
)
def check_tree(args: Any, state: Any) -> None:
    _, NODE_DTYPE, *layout = _tree_twin_extra()
    what = "sklearn Tree"
    if type(args) is not list or len(args) != 3:
        raise _fail(what, "expected (n_features, n_classes, n_outputs)")
    n_features = _int(args[0], f"{what} n_features", 1)
    n_outputs = _int(args[2], f"{what} n_outputs", 1)
    classes = _array(args[1], f"{what} n_classes", 1, "iu").tolist()
    if len(classes) != n_outputs or min(classes) < 1:
        raise _fail(what, "n_classes must hold one positive count per output")
    if type(state) is not dict:
        raise _fail(what, "state must be a dict")
    nodes = _array(state.get("nodes"), f"{what} nodes", 1)
    values = _array(state.get("values"), f"{what} values", 3, "f")
    count = _int(state.get("node_count"), f"{what} node_count", 1)  # predict starts at node 0
    max_depth = _int(state.get("max_depth"), f"{what} max_depth")
    if not _is_layout(nodes.dtype, NODE_DTYPE) or len(nodes) != count:
        raise _fail(what, "node array has the wrong layout or length")
    if values.shape != (count, n_outputs, max(classes)):
        raise _fail(what, f"values shape {values.shape} does not fit {count} nodes")
    fast = _compiled.speedups if nodes.flags.c_contiguous else None
    if fast is not None and fast.tree_ok(nodes, *layout, n_features, max_depth):
        return
    # Not fine (or no compiled twin): the Python twin finds what is wrong and says so.
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    if count <= SMALL_TREE:
        _small_tree_ok(left.tolist(), right.tolist(), feature.tolist(), n_features, max_depth, what)
    else:
        _vectorised_tree_ok(left, right, feature, n_features, max_depth, what)
    if fast is not None:
        raise _fail(what, "the compiled tree check rejected it")  # the twins disagree: a bug


@functools.cache
def _record_layout(dtype: np.dtype[Any], fields: tuple[str, ...]) -> tuple[int, ...]:
    """A record dtype's itemsize and the byte offsets of ``fields``, as the compiled
    checks take them."""
    return (dtype.itemsize, *(dtype.fields[name][1] for name in fields))  # type: ignore[index]


def _vectorised_tree_ok(
    left: np.ndarray, right: np.ndarray, feature: np.ndarray, n_features: int, max_depth: int,
    what: str,
) -> None:
    """``check_tree``'s node checks for large trees: a few passes, then work on splits only."""
    n = len(left)
    _max_depth_reachable(max_depth, n, what)
    is_inner = left != -1
    if not np.array_equal(right != -1, is_inner):
        raise _fail(what, "a node has exactly one child")
    inner = np.flatnonzero(is_inner)
    lc, rc = left[inner], right[inner]
    _children_ok(inner, lc, rc, n, what)
    if not indices_below(feature[inner], n_features):
        raise _fail(what, f"a split uses a feature outside [0, {n_features})")
    children = np.concatenate((lc, rc))
    if len(children) and np.bincount(children, minlength=n).max() > 1:
        raise _fail(what, "a node has two parents: the nodes do not form a tree")
    _depth_ok(inner, lc, rc, n, max_depth, what)


def _max_depth_reachable(max_depth: int, n: int, what: str) -> None:
    """A tree of ``n`` nodes is less than ``n`` deep, and sklearn never stores more.

    decision_path() allocates n_samples * (1 + max_depth) entries in C arithmetic:
    a max_depth of 2**63 - 1 wrapped that to a small array, and the paths were
    written past it (heap overflow; found while fuzzing).
    """
    if max_depth >= n:
        raise _fail(what, f"max_depth {max_depth} is more than a tree of {n} nodes can reach")


def _depth_ok(
    inner: np.ndarray, lc: np.ndarray, rc: np.ndarray, n: int, max_depth: int, what: str
) -> None:
    """A tree (children after parents, one parent each) no deeper than ``max_depth``.

    decision_path() allocates n_samples * (1 + max_depth) entries and writes one
    per node on each path, and partial dependence ("recursion") pushes children on
    a stack of node_count entries: a stored max_depth below the real depth, or a
    node shared by two parents, made them write past their arrays (heap overflow;
    found while fuzzing). Depths come from pointer jumping over the split nodes only
    (a leaf lies one below its parent): O(m log depth) for m splits, vectorised.
    """
    m = len(inner)
    if not m:
        return  # a single leaf: depth 0
    parent = np.arange(n)
    parent[lc] = inner
    parent[rc] = inner
    rank = np.empty(n, dtype=np.intp)
    rank[inner] = np.arange(m)
    jump = rank[parent[inner]]  # among splits; a split without a parent is its own root
    depth = (jump != rank[inner]).astype(np.intp)  # distance to jump[j]
    for _ in range(min(max_depth, n).bit_length()):
        depth += depth[jump]  # roots have depth 0: nodes already at theirs add nothing
        jump = jump[jump]
    # Doubling that long reaches a root from any split less than 2**k > max_depth deep.
    converged = np.array_equal(jump[jump], jump)
    deepest = int(depth.max()) + 1
    if not converged or deepest > max_depth:
        known = f" {deepest}" if converged else ""
        raise _fail(what, f"max_depth {max_depth} is below the tree's depth{known}")


# Up to this many nodes a Python loop over the node lists beats the vectorised
# checks, whose ~30 numpy calls cost ~100 us whatever the size (a 100-tree
# gradient boosting of depth 3 spent 40% of its load there). Both paths make the
# same decision: tests/test_meaning_paths.py runs them side by side on random trees.
SMALL_TREE = 256


def _small_tree_ok(
    left: list[int], right: list[int], feature: list[int], n_features: int, max_depth: int,
    what: str,
) -> None:
    """The checks of ``_vectorised_tree_ok`` in one forward pass over the node lists."""
    n = len(left)
    _max_depth_reachable(max_depth, n, what)
    depth = [0] * n  # a node without a parent is a root of its own, at depth 0
    has_parent = [False] * n
    deepest = 0
    for i in range(n):
        lc, rc = left[i], right[i]
        if lc == -1 or rc == -1:
            if lc != rc:
                raise _fail(what, "a node has exactly one child")
            continue
        if not (i < lc < n and i < rc < n):
            raise _child_outside(i, lc, rc, n, what)
        if not 0 <= feature[i] < n_features:
            raise _fail(what, f"a split uses a feature outside [0, {n_features})")
        if has_parent[lc] or has_parent[rc] or lc == rc:
            raise _fail(what, "a node has two parents: the nodes do not form a tree")
        has_parent[lc] = has_parent[rc] = True
        # Children point strictly forward, so depth[i] is final when i is reached.
        d = depth[lc] = depth[rc] = depth[i] + 1
        if d > deepest:
            deepest = d
    if deepest > max_depth:
        raise _fail(what, f"max_depth {max_depth} is below the tree's depth {deepest}")


def _tree_features(tree: Any, what: str) -> int:
    if type(tree) is not _imported("sklearn.tree._tree", "Tree"):
        raise _fail(what, "tree_ is not a fitted sklearn Tree")
    return int(tree.n_features)


@validates(
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._classes.ExtraTreeRegressor",
)
def check_tree_estimator(args: Any, state: Any) -> None:
    """The Tree reads X[i, feature] for X validated against n_features_in_: they must agree.

    Forests and isolation forests call their trees with ``check_input=False``,
    which still checks X against each tree estimator's ``n_features_in_``.
    """
    what = "decision tree estimator"
    if type(state) is not dict or "tree_" not in state:
        return  # unfitted
    n_features = _int(state.get("n_features_in_"), f"{what} n_features_in_", 1)
    tree_features = _tree_features(state["tree_"], what)
    if tree_features != n_features:
        raise _fail(what, f"its Tree splits on {tree_features} features, "
                    f"not n_features_in_={n_features}")


@validates(
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
)
def check_gradient_boosting(args: Any, state: Any) -> None:
    """predict_stages walks every tree on X and adds into out[:, k] without bounds checks."""
    what = "GradientBoosting"
    if type(state) is not dict or "estimators_" not in state:
        return  # unfitted
    estimators = state["estimators_"]
    if not isinstance(estimators, np.ndarray) or estimators.ndim != 2 or estimators.dtype != object:
        raise _fail(what, "estimators_ must be a 2-d object array of trees")
    n_features = _int(state.get("n_features_in_"), f"{what} n_features_in_", 1)
    k = _int(state.get("n_trees_per_iteration_"), f"{what} n_trees_per_iteration_", 1)
    if estimators.shape[1] != k:
        raise _fail(what, f"estimators_ has {estimators.shape[1]} trees per stage, "
                    f"n_trees_per_iteration_ says {k}")
    multiclass = getattr(state.get("_loss"), "is_multiclass", False) is True
    if k > 1 and state.get("init_") != "zero" and not multiclass:
        raise _fail(what, "several trees per stage need a multiclass loss")
    for estimator in estimators.flat:
        if type(estimator).__name__ != "DecisionTreeRegressor":
            raise _fail(what, "estimators_ must hold DecisionTreeRegressor objects")
        if _tree_features(getattr(estimator, "tree_", None), what) != n_features:
            raise _fail(what, f"a tree splits on features other than the {n_features} inputs")
    _check_initial_estimator(state.get("init_"), k, multiclass, what)


def _check_initial_estimator(init: Any, k: int, multiclass: bool, what: str) -> None:
    """predict_stages adds into columns 0 .. k-1 of the raw predictions that init_ starts
    them from, unchecked: they must be k wide. A multiclass model whose DummyClassifier
    knew one class prior made them 1 wide, and predict wrote past the array (found while
    fuzzing with ASan). 'zero' makes them k wide; a binary model takes column 1 of
    predict_proba (one column, or an IndexError); a regressor's predict gives one column
    per output. Any other initial estimator's output cannot be judged from its state."""
    if type(init) is str and init == "zero":
        return
    if type(init) is _imported("sklearn.dummy", "DummyClassifier"):
        if not multiclass:
            return
        attributes = vars(init)
        prior = attributes.get("class_prior_")
        if (
            attributes.get("n_outputs_") != 1
            or type(attributes.get("n_classes_")) is not int
            or attributes["n_classes_"] != k
            or not isinstance(prior, np.ndarray)
            or prior.shape != (k,)
        ):
            raise _fail(what, f"its initial estimator does not predict the {k} classes")
        return
    if type(init) is _imported("sklearn.dummy", "DummyRegressor"):
        n_outputs = vars(init).get("n_outputs_")
        if k != 1 or type(n_outputs) is not int or n_outputs < 1:
            raise _fail(what, "its initial estimator does not predict one value per sample")
        return
    raise _fail(
        what,
        "its initial estimator (init_) is neither 'zero' nor scikit-learn's DummyClassifier "
        "or DummyRegressor; compiled prediction adds into its output unchecked, and the "
        "width of another estimator's output cannot be judged before it runs",
    )


# -- histogram gradient boosting ---------------------------------------------
@owns_indexes("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
def predictor_indexes(args: Any, state: Any) -> tuple[Any, ...]:
    """A predictor keeps its node array by reference (converted only on another layout),
    and its compiled prediction follows the children it holds, unchecked."""
    return (state.get("nodes"),) if type(state) is dict else ()


def _predictor_twin_extra() -> tuple[Any, ...]:
    """What ``predictor_state_ok`` takes after the state."""
    PREDICTOR_RECORD_DTYPE = _imported(_HGB_COMMON, "PREDICTOR_RECORD_DTYPE")
    return (np.ndarray, PREDICTOR_RECORD_DTYPE, *_predictor_layout())


@validates(
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    twin="predictor_state_ok",
    extra=_predictor_twin_extra,
)
def check_predictor(args: Any, state: Any) -> None:
    PREDICTOR_RECORD_DTYPE = _imported(_HGB_COMMON, "PREDICTOR_RECORD_DTYPE")
    what = "HistGradientBoosting TreePredictor"
    if type(state) is not dict:
        raise _fail(what, "state must be a dict")
    nodes = _array(state.get("nodes"), f"{what} nodes", 1)
    if not _is_layout(nodes.dtype, PREDICTOR_RECORD_DTYPE) or len(nodes) == 0:
        raise _fail(what, "node array has the wrong layout")
    raw = _array(state.get("raw_left_cat_bitsets"), f"{what} bitsets", 2, "u")
    binned = _array(state.get("binned_left_cat_bitsets"), f"{what} bitsets", 2, "u")
    if raw.shape[1:] != (8,) or binned.shape != raw.shape:
        raise _fail(what, "category bitsets have the wrong shape")
    fast = _compiled.speedups if nodes.flags.c_contiguous else None
    if fast is not None and fast.predictor_ok(nodes, *_predictor_layout(), len(raw), -1, b""):
        return
    if len(nodes) <= SMALL_TREE:
        _small_predictor_ok(nodes, len(raw), what)
    else:
        _vectorised_predictor_ok(nodes, len(raw), what)
    if fast is not None:
        raise _fail(what, "the compiled predictor check rejected it")  # twins disagree: a bug


def _predictor_layout() -> tuple[int, ...]:
    """PREDICTOR_RECORD_DTYPE's layout, as ``predictor_ok`` takes it."""
    PREDICTOR_RECORD_DTYPE = _imported(_HGB_COMMON, "PREDICTOR_RECORD_DTYPE")
    fields = ("left", "right", "feature_idx", "is_leaf", "is_categorical", "bitset_idx")
    return _record_layout(PREDICTOR_RECORD_DTYPE, fields)


def _vectorised_predictor_ok(nodes: np.ndarray, n_bitsets: int, what: str) -> None:
    inner = np.flatnonzero(nodes["is_leaf"] == 0)
    # (Children are unsigned here: a negative index wraps to a huge one.)
    _children_ok(inner, nodes["left"][inner], nodes["right"][inner], len(nodes), what)
    if (nodes["feature_idx"][inner] < 0).any():
        raise _fail(what, "a split uses a negative feature index")
    cat = inner[nodes["is_categorical"][inner] != 0]
    if (nodes["bitset_idx"][cat] >= n_bitsets).any():
        raise _fail(what, "a categorical split points past the bitsets")


def _small_predictor_ok(nodes: np.ndarray, n_bitsets: int, what: str) -> None:
    """``check_predictor``'s node checks as one loop (see ``SMALL_TREE``)."""
    n = len(nodes)
    left, right = nodes["left"].tolist(), nodes["right"].tolist()
    feature, bitset = nodes["feature_idx"].tolist(), nodes["bitset_idx"].tolist()
    is_leaf, is_cat = nodes["is_leaf"].tolist(), nodes["is_categorical"].tolist()
    for i in range(n):
        if is_leaf[i]:
            continue
        if not (i < left[i] < n and i < right[i] < n):
            raise _child_outside(i, left[i], right[i], n, what)
        if feature[i] < 0:
            raise _fail(what, "a split uses a negative feature index")
        if is_cat[i] and bitset[i] >= n_bitsets:
            raise _fail(what, "a categorical split points past the bitsets")


@validates(
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
)
def check_hist_gradient_boosting(args: Any, state: Any) -> None:
    """Split features must exist in the input the estimator validates predictions against."""
    what = "HistGradientBoosting"
    if type(state) is not dict or "_predictors" not in state:
        return  # unfitted
    n_features = _int(state.get("n_features_in_"), f"{what} n_features_in_", 1)
    predictors = state["_predictors"]
    if type(predictors) is not list:
        raise _fail(what, "_predictors must be a list")
    node_arrays = []
    for row in predictors:
        if type(row) is not list:
            raise _fail(what, "_predictors must be a list of lists")
        for predictor in row:
            nodes = getattr(predictor, "nodes", None)
            if not isinstance(nodes, np.ndarray):
                raise _fail(what, "a predictor has no node array")
            node_arrays.append(nodes)
    for dtype in {nodes.dtype for nodes in node_arrays}:  # one layout, not one per tree
        if dtype.names is None or any(
            field not in dtype.names for field in ("feature_idx", "is_leaf", "is_categorical")
        ):
            raise _fail(what, "a predictor has no node array")
    mapper = state.get("_bin_mapper")
    is_cat = getattr(mapper, "is_categorical_", None)
    if is_cat is not None and (not isinstance(is_cat, np.ndarray) or is_cat.shape != (n_features,)):
        raise _fail(what, "the bin mapper's is_categorical_ does not match n_features_in_")
    compiled = _compiled_features_ok(node_arrays, n_features, is_cat) if node_arrays else None
    if node_arrays and not compiled:
        # All predictors at once: a few numpy calls instead of a few per tree.
        fields = ["feature_idx", "is_leaf", "is_categorical"]
        nodes = np.concatenate([a[fields] for a in node_arrays])
        inner = nodes["is_leaf"] == 0
        features = nodes["feature_idx"][inner]
        if len(features) and (features.max() >= n_features or features.min() < 0):
            raise _fail(what, f"a split uses a feature outside [0, {n_features})")
        # A categorical split on a feature the bin mapper does not know as categorical
        # makes prediction read a row of known-category bitsets that does not exist.
        split = nodes["is_categorical"][inner] != 0
        if split.any() and (is_cat is None or not is_cat[features[split]].all()):
            raise _fail(what, "a categorical split uses a feature that is not categorical")
        if compiled is False:  # the compiled twin said "not fine", the Python one did not
            raise _fail(what, "the compiled feature check rejected it")  # a bug
    known = getattr(mapper, "known_categories", None)
    if isinstance(known, list) and len(known) != n_features:
        raise _fail(what, "the bin mapper's known categories do not match n_features_in_")


def _compiled_features_ok(
    node_arrays: list[np.ndarray], n_features: int, is_cat: Any
) -> bool | None:
    """``check_hist_gradient_boosting``'s feature checks by the compiled twin: its
    verdict, or None where it does not apply (not built, other layouts)."""
    PREDICTOR_RECORD_DTYPE = _imported(_HGB_COMMON, "PREDICTOR_RECORD_DTYPE")
    fast = _compiled.speedups
    # The twin reads one byte per feature, non-zero meaning categorical, as numpy's
    # truthiness does; scikit-learn keeps is_categorical_ as uint8 (an earlier bool-only
    # test here sent every real model down the Python path: ~1 ms per 100-tree load).
    if fast is None or (
        is_cat is not None and (is_cat.itemsize != 1 or is_cat.dtype.kind not in "biu")
    ):
        return None
    mask = b"" if is_cat is None else np.ascontiguousarray(is_cat)
    # (Children and bitsets were checked with each predictor: no bitset limit here.)
    return fast.predictors_ok(
        node_arrays, np.ndarray, PREDICTOR_RECORD_DTYPE, *_predictor_layout(), n_features, mask
    )


# -- neighbors: KDTree / BallTree ------------------------------------------
_NODE_DATA = np.dtype(
    [("idx_start", np.intp), ("idx_end", np.intp), ("is_leaf", np.intp), ("radius", np.float64)]
)

_NODE_LAYOUT = _record_layout(_NODE_DATA, ("idx_start", "idx_end", "is_leaf"))


def _binary_tree_ranges_ok(n: int, node_data: np.ndarray, n_nodes: int, what: str) -> None:
    """The twin of the compiled ``binary_tree_ok``: every node's range inside the data,
    the last half of the nodes leaves."""
    start, end = node_data["idx_start"], node_data["idx_end"]
    if start.min() < 0 or end.max() > n or (end - start).min() < 0:
        raise _fail(what, "a node's index range falls outside the data")
    # Inner nodes i have children 2i+1, 2i+2: the last half of the array must be leaves.
    if not node_data["is_leaf"][(n_nodes - 1) // 2 :].all():
        raise _fail(what, "an inner node's children fall outside the node array")


def _binary_tree_twin_extra(planes: int) -> tuple[Any, ...]:
    """What ``binary_tree_state_ok`` takes after the state."""
    metric = _imported("sklearn.metrics", "DistanceMetric")
    return (planes, np.ndarray, metric, _NODE_DATA, *_NODE_LAYOUT)


def check_binary_tree(args: Any, state: Any, planes: int | None = None) -> None:
    """``planes``: node_bounds planes the tree's query code reads (see below)."""
    what = "KDTree/BallTree"
    if type(state) is not tuple or len(state) != 13:
        raise _fail(what, "state must be a 13-tuple")
    data = _array(state[0], f"{what} data", 2, "f")
    idx = _array(state[1], f"{what} idx_array", 1, "i")
    node_data = _array(state[2], f"{what} node_data", 1)
    bounds = _array(state[3], f"{what} node_bounds", 3, "f")
    leaf_size = _int(state[4], f"{what} leaf_size", 1)
    n_levels = _int(state[5], f"{what} n_levels", 1)
    n_nodes = _int(state[6], f"{what} n_nodes", 1)
    n, d = data.shape
    if data.dtype != np.float64 or idx.dtype != np.intp:
        raise _fail(what, "data must be float64 and idx_array intp")
    if len(idx) != n or not indices_below(idx, n):
        raise _fail(what, f"idx_array must index the {n} data rows")
    if n_levels > 64 or n_nodes != 2**n_levels - 1 or len(node_data) != n_nodes:
        raise _fail(what, "n_nodes, n_levels and node_data disagree")
    if not _is_layout(node_data.dtype, _NODE_DATA):
        raise _fail(what, "node_data has the wrong layout")
    fast = _compiled.speedups if node_data.flags.c_contiguous else None
    if fast is None or not fast.binary_tree_ok(node_data, n, *_NODE_LAYOUT):
        # Not fine (or no compiled twin): the numpy twin finds what is wrong and says so.
        _binary_tree_ranges_ok(n, node_data, n_nodes, what)
        if fast is not None:
            raise _fail(what, "the compiled node check rejected it")  # the twins disagree
    if bounds.shape[1:] != (n_nodes, d) or bounds.shape[0] not in ((1, 2) if planes is None
                                                                  else (planes,)):
        raise _fail(what, f"node_bounds shape {bounds.shape} does not fit {n_nodes} nodes x {d}")
    if leaf_size > max(n, 1) * 2 + 1_000_000:
        raise _fail(what, "leaf_size is implausible")
    weight = state[12]
    if weight is not None and _array(weight, f"{what} sample_weight", 1, "f").shape != (n,):
        raise _fail(what, "sample_weight must have one entry per data row")
    metric = state[11]
    # (An instance, not "has a __getstate__": from Python 3.11 None has one, and a tree
    # given None loaded and dereferenced NULL on its first query - a fuzz finding.)
    if not isinstance(metric, _imported("sklearn.metrics", "DistanceMetric")):
        raise _fail(what, "dist_metric is not a distance metric")
    getstate = metric.__getstate__
    kind = type(metric).__name__
    # Only these metrics index their own vector/matrix with the data's width.
    # (What their _validate_data demands, which a tree does not re-run on load:
    # SEuclidean reads vec[j] for every j < d, even from an empty vec; Minkowski
    # only when its vec is non-empty; Haversine reads x[0] and x[1]. Found while
    # fuzzing (issue 3): both read out of bounds.) The other metrics' state is not
    # read: building it makes arrays, ~40 us of a tiny model's first load.
    if kind.startswith(_METRICS_WITH_STATE):
        _, vec, mat = getstate()[:3]
        if kind.startswith("SEuclidean") and np.asarray(vec).shape[0] != d:
            raise _fail(what, "the metric's weight vector does not match the data's width")
        if kind.startswith("Minkowski") and np.asarray(vec).shape[0] not in (0, d):
            raise _fail(what, "the metric's weight vector does not match the data's width")
        if kind.startswith("Mahalanobis") and np.asarray(mat).shape != (d, d):
            raise _fail(what, "the Mahalanobis matrix does not match the data's width")
    if kind.startswith("Haversine") and d != 2:
        raise _fail(what, "the haversine metric needs 2-d data")


# A KDTree's query reads node_bounds[0] and node_bounds[1] (lower/upper corners),
# a BallTree's node_bounds[0] (centroids): a KDTree given one plane read past
# its end (found while fuzzing, issue 3: answers came from whatever memory followed).
for _name, _planes in (("_kd_tree.KDTree", 2), ("_ball_tree.BallTree", 1)):
    validates(
        f"sklearn.neighbors.{_name}",
        twin="binary_tree_state_ok",
        extra=functools.partial(_binary_tree_twin_extra, _planes),
    )(functools.partial(check_binary_tree, planes=_planes))
del _name, _planes


@owns_indexes("sklearn.neighbors._kd_tree.KDTree", "sklearn.neighbors._ball_tree.BallTree")
def binary_tree_indexes(args: Any, state: Any) -> tuple[Any, ...]:
    """A KD/Ball tree keeps its idx_array and node_data by reference and its queries
    index with them unchecked (check_binary_tree has passed them)."""
    return state[1], state[2]


@validates(
    *(
        f"sklearn.metrics._dist_metrics.{name}{bits}"
        for bits in ("64", "32")
        for name in (
            "BrayCurtisDistance",
            "CanberraDistance",
            "ChebyshevDistance",
            "DiceDistance",
            "EuclideanDistance",
            "HammingDistance",
            "HaversineDistance",
            "JaccardDistance",
            "MahalanobisDistance",
            "ManhattanDistance",
            "MinkowskiDistance",
            "RogersTanimotoDistance",
            "RussellRaoDistance",
            "SEuclideanDistance",
            "SokalMichenerDistance",
            "SokalSneathDistance",
        )
    ),
    twin="distance_metric_state_ok",
    extra=(np.ndarray,),
)
def check_distance_metric(args: Any, state: Any) -> None:
    what = "DistanceMetric"
    if type(state) is not tuple or len(state) != 3:
        raise _fail(what, "state must be (p, vec, mat)")
    p, vec, mat = state
    if not isinstance(p, float):
        raise _fail(what, "p must be a float")
    vec = _array(vec, f"{what} vec", 1, "f")
    mat = _array(mat, f"{what} mat", 2, "f")
    if mat.shape[0] != mat.shape[1]:
        raise _fail(what, f"the metric matrix must be square, got {mat.shape}")


# -- support vector machines -------------------------------------------------
_LIBSVM = (
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.NuSVC",
    "sklearn.svm._classes.SVR",
    "sklearn.svm._classes.NuSVR",
    "sklearn.svm._classes.OneClassSVM",
)


@owns_indexes(*_LIBSVM)
def libsvm_indexes(args: Any, state: Any) -> tuple[Any, ...]:
    """libsvm's prediction counts support vectors per class from _n_support, unchecked."""
    return (state.get("support_"), state.get("_n_support")) if type(state) is dict else ()


@validates(*_LIBSVM, twin="libsvm_state_ok", extra=(np.ndarray,))
def check_libsvm(args: Any, state: Any) -> None:
    import scipy.sparse as sp

    what = "libsvm model"
    if type(state) is not dict or "support_" not in state:
        return  # unfitted
    support = _array(state["support_"], f"{what} support_", 1, "i")
    n_sv = len(support)
    n_support = _array(state.get("_n_support"), f"{what} _n_support", 1, "i")
    sv = state.get("support_vectors_")
    dual = state.get("_dual_coef_")
    intercept = _array(state.get("_intercept_"), f"{what} _intercept_", 1, "f")
    shape_fit = state.get("shape_fit_")
    if type(shape_fit) is not tuple or len(shape_fit) != 2:
        raise _fail(what, "shape_fit_ must be a pair")
    n_train = _int(shape_fit[0], f"{what} shape_fit_[0]")
    if n_sv and not indices_below(support, n_train):
        raise _fail(what, f"support_ must index the {n_train} training samples")
    dual_shape: tuple[int, ...] | None
    # (isinstance first: issparse's first call in a process costs ~0.5 ms, an ABC check.)
    sv_sparse = not isinstance(sv, np.ndarray) and sp.issparse(sv)
    dual_sparse = not isinstance(dual, np.ndarray) and sp.issparse(dual)
    if sv_sparse or dual_sparse:
        sv_rows = sv.shape[0] if sv_sparse else -1  # type: ignore[union-attr]
        dual_shape = dual.shape if dual_sparse else None  # type: ignore[union-attr]
    else:
        sv_rows = _array(sv, f"{what} support_vectors_", 2, "f").shape[0]
        dual_shape = _array(dual, f"{what} _dual_coef_", 2, "f").shape
    # No rows only for a precomputed kernel (libsvm then indexes X by support_):
    # an rbf SVC with 0 support-vector rows and n_sv > 0 loaded, and predict
    # segfaulted reading the missing rows (found while fuzzing).
    precomputed = state.get("kernel") == "precomputed"
    if sv_rows not in ((0, n_sv) if precomputed else (n_sv,)):
        raise _fail(what, f"{sv_rows} support vectors but {n_sv} support indices")
    if dual_shape is None or dual_shape[1] != n_sv:
        raise _fail(what, "dual coefficients do not match the support vectors")
    counts = n_support.tolist()  # one per class: Python is quicker than numpy's first call
    if min(counts, default=0) < 0:
        raise _fail(what, "negative support counts")
    classifier = "classes_" in state
    if classifier:
        n_class = len(counts)
        if sum(counts) != n_sv or dual_shape[0] != n_class - 1:
            raise _fail(what, "support counts per class disagree with the support vectors")
        pairs = n_class * (n_class - 1) // 2
    else:
        pairs = 1
        if dual_shape[0] != 1:
            raise _fail(what, "a regression/one-class model has one row of dual coefficients")
    if len(intercept) != pairs:
        raise _fail(what, f"expected {pairs} intercepts, got {len(intercept)}")
    for key in ("_probA", "_probB"):
        prob = _array(state.get(key), f"{what} {key}", 1, "f")
        if len(prob) not in (0, pairs):
            raise _fail(what, f"{key} has {len(prob)} entries, expected 0 or {pairs}")
    n_features = state.get("n_features_in_")
    if (
        isinstance(sv, np.ndarray)
        and sv.shape[0]
        and (n_features is not None and sv.shape[1] != n_features)
    ):
        raise _fail(what, "support vectors do not have n_features_in_ columns")


# -- k-means family ------------------------------------------------------------
@validates(
    "sklearn.cluster._kmeans.KMeans",
    "sklearn.cluster._kmeans.MiniBatchKMeans",
    "sklearn.cluster._bisect_k_means.BisectingKMeans",
)
def check_kmeans(args: Any, state: Any) -> None:
    """Cython assigns labels reading centers[k, j] for j < X.shape[1] = n_features_in_."""
    if type(state) is not dict or "cluster_centers_" not in state:
        return
    centers = _array(state["cluster_centers_"], "k-means cluster_centers_", 2, "f")
    n_features = state.get("n_features_in_")
    if n_features is not None and centers.shape[1] != n_features:
        raise _fail("k-means", "cluster centers do not have n_features_in_ columns")
    # predict/transform/score pass _n_threads to an OpenMP prange as is: a crafted
    # value made libgomp end the process (-1, 2**31: "out of memory allocating
    # 900 GB") or segfault (100000) (found while fuzzing). It is the training
    # machine's thread count: at least 1, and capped at what this machine would use.
    if "_n_threads" in state:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        limit = _openmp_effective_n_threads()
        if _int(state["_n_threads"], "k-means _n_threads", 1) > limit:
            state["_n_threads"] = limit


# -- scipy splines (SplineTransformer) -----------------------------------------
# scipy up to 1.17 keeps a BSpline's knots and coefficients in its own __dict__
# (t, c; _t, _c in 1.17); from 1.18 a BSpline delegates to a _BSpline (t, c) and its state is the
# pair (delegate, an empty array naming the array library). The check takes either
# layout; a BSpline's own __setstate__ takes only its scipy's, so a spline loads
# under the scipy series that saved it (the header's versions tell which).
_BSPLINES = "scipy.interpolate._bsplines"


def _check_spline_fields(state: Any, t_key: str, c_key: str, what: str) -> None:
    """The checks BSpline's own constructor makes; compiled evaluation trusts them."""
    if type(state) is not dict:
        raise _fail(what, "state must be a dict")
    k = _int(state.get("k"), f"{what} degree k")
    t = _array(state.get(t_key), f"{what} knots", 1, "f")
    c = _array(state.get(c_key), f"{what} coefficients", None, "fc")
    axis = state.get("axis")
    if t.dtype != np.float64 or not t.flags.c_contiguous:
        raise _fail(what, "knots must be contiguous float64")
    if c.ndim < 1 or type(axis) is not int or not 0 <= axis < c.ndim:
        raise _fail(what, "coefficients/axis are inconsistent")
    n = t.shape[0] - k - 1
    if k > 64 or n < k + 1:
        raise _fail(what, f"{t.shape[0]} knots cannot carry a degree-{k} spline")
    if not np.isfinite(t).all() or (np.diff(t) < 0).any():
        raise _fail(what, "knots must be finite and non-decreasing")
    if c.shape[0] < n:
        raise _fail(what, "knots, coefficients and degree are inconsistent")
    if state.get("extrapolate") not in (True, False, "periodic"):
        raise _fail(what, "extrapolate must be a bool or 'periodic'")


@validates(f"{_BSPLINES}._BSpline")
def check_bspline_delegate(args: Any, state: Any) -> None:
    """scipy >= 1.18: the NumPy spline a BSpline delegates to."""
    _check_spline_fields(state, "t", "c", "scipy BSpline")


@validates(f"{_BSPLINES}.BSpline")
def check_bspline(args: Any, state: Any) -> None:
    """Either layout of a BSpline's state (see above)."""
    what = "scipy BSpline"
    if type(state) is dict:  # scipy <= 1.17: knots and coefficients in its own __dict__,
        # as _t and _c behind properties t and c from 1.17, as t and c before
        private = isinstance(getattr(_imported(_BSPLINES, "BSpline"), "t", None), property)
        _check_spline_fields(state, "_t" if private else "t", "_c" if private else "c", what)
        return
    if type(state) is not tuple or len(state) != 2:
        raise _fail(what, "state must be a dict or a (spline, array) pair")
    delegate, sentinel = state
    # The delegate's own check ran when its state was set (a bare _BSpline, or one
    # still waiting for its state, is refused: see objects._refuse_pending).
    delegate_class = getattr(sys.modules.get(_BSPLINES), "_BSpline", None)
    if delegate_class is None or type(delegate) is not delegate_class:
        raise _fail(what, "it must delegate to a NumPy spline (scipy's _BSpline)")
    if type(sentinel) is not np.ndarray or sentinel.size != 0:
        raise _fail(what, "the array library must be named by an empty NumPy array")


# -- nearest neighbors (brute force) -------------------------------------------------
# kneighbors/radius_neighbors check X against n_features_in_ only; the compiled
# pairwise reductions then read n_features values from every row of _fit_X and
# from the metric's weight vector / matrix. A KNeighborsClassifier whose _fit_X
# had 1 column (or whose Mahalanobis VI was 1 x 1) for 2 000 000 input features
# loaded and segfaulted on predict: tests/security/test_meaning_tampering.py.
# The distance metrics whose own vector or matrix is indexed with the data's width.
_METRICS_WITH_STATE = ("SEuclidean", "Minkowski", "Mahalanobis")


def _check_metric_width(metric: Any, params: Any, d: int, what: str) -> None:
    # (Not a `from ... import`: from a package that runs importlib's Python-level
    # _handle_fromlist, twice per first load of a neighbours model.)
    if isinstance(metric, _imported("sklearn.metrics", "DistanceMetric")):
        kind = type(metric).__name__
        if kind.startswith(_METRICS_WITH_STATE):  # (the others' state is not read)
            _, vec, mat = metric.__getstate__()[:3]
            vec, mat = np.asarray(vec), np.asarray(mat)
            if (
                (kind.startswith("SEuclidean") and vec.shape != (d,))
                or (kind.startswith("Minkowski") and vec.shape[0] not in (0, d))
                or (kind.startswith("Mahalanobis") and mat.shape != (d, d))
            ):
                raise _fail(what, "the distance metric does not match n_features_in_")
        kind = kind.lower()
    else:
        kind = metric if isinstance(metric, str) else ""
    if kind.startswith("haversine") and d != 2:
        raise _fail(what, "the haversine metric needs exactly 2 features")
    for value in (params or {}).values() if isinstance(params, dict) else ():
        # V (seuclidean, mahalanobis), VI (mahalanobis), w (minkowski): d or d x d.
        if isinstance(value, np.ndarray) and any(n != d for n in value.shape):
            raise _fail(what, f"a metric parameter of shape {value.shape} does not fit {d} features")


@validates(
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.neighbors._graph.KNeighborsTransformer",
    "sklearn.neighbors._lof.LocalOutlierFactor",
    "sklearn.neighbors._unsupervised.NearestNeighbors",
    "sklearn.neighbors._classification.RadiusNeighborsClassifier",
    "sklearn.neighbors._regression.RadiusNeighborsRegressor",
    "sklearn.neighbors._graph.RadiusNeighborsTransformer",
    twin="neighbors_state_ok",
    extra=(np.ndarray,),
)
def check_neighbors(args: Any, state: Any) -> None:
    import scipy.sparse as sp

    what = "nearest neighbors"
    if type(state) is not dict or "_fit_X" not in state:
        return  # unfitted
    fit_x = state["_fit_X"]
    if not (isinstance(fit_x, np.ndarray) or sp.issparse(fit_x)) or len(fit_x.shape) != 2:
        raise _fail(what, "_fit_X must be a 2-d array or sparse matrix")
    d = _int(state.get("n_features_in_"), f"{what} n_features_in_", 1)
    if fit_x.shape[1] != d:
        raise _fail(what, f"_fit_X has {fit_x.shape[1]} columns, n_features_in_ says {d}")
    # kneighbors_graph sizes its sparse output by n_samples_fit_ and fills it with row
    # indices into _fit_X: fewer columns than rows made toarray() write out of bounds.
    if "n_samples_fit_" in state and _int(
        state["n_samples_fit_"], f"{what} n_samples_fit_"
    ) != fit_x.shape[0]:
        raise _fail(what, "n_samples_fit_ is not the number of rows of _fit_X")
    for metric, params in (
        (state.get("effective_metric_"), state.get("effective_metric_params_")),
        (state.get("metric"), state.get("metric_params")),
    ):
        _check_metric_width(metric, params, d, what)



# -- encoders and vectorizers: column indices of the sparse matrices transform builds ----
# transform builds a scipy sparse matrix whose column indices come from fitted state
# and whose width comes from other fitted state; scipy's constructor does not check
# the indices, and compiled code downstream (toarray, X @ coef) writes or reads at
# them. A CountVectorizer or DictVectorizer with vocabulary_ indices past its size
# segfaulted in Pipeline.predict, and so did a MultiLabelBinarizer with such a
# cached class map; a OneHotEncoder with a short _n_features_outs corrupted the
# heap in transform ("corrupted size vs. prev_size"):
# tests/security/test_meaning_tampering.py.
def _check_columns(mapping: Any, key: str, what: str) -> None:
    """``mapping`` (a dict) must number its n keys 0 to n - 1: the output's columns."""
    if type(mapping) is not dict:
        raise _fail(what, f"{key} must be a dict")
    fast = _compiled.speedups
    if fast is not None and fast.columns_ok(mapping):
        return  # the test below in one compiled pass (the twin decides anything else)
    n = len(mapping)
    try:
        columns = np.fromiter(mapping.values(), dtype=np.int64, count=n)
    except (TypeError, ValueError, OverflowError):
        raise _fail(what, f"{key} must map to integer columns") from None
    if n and indices_below(columns, n):
        # n values in [0, n) cover every column exactly when none repeats: O(n), where
        # np.unique sorted or hashed (1 s for a 1.1M-term vocabulary).
        hit = np.zeros(n, dtype=bool)
        hit[columns] = True
        if hit.all():
            return
    if n:
        raise _fail(what, f"{key} must number its {n} entries 0 to {n - 1}")


@validates(
    "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_extraction._dict_vectorizer.DictVectorizer",
)
def check_vocabulary(args: Any, state: Any) -> None:
    if type(state) is dict and "vocabulary_" in state:  # else unfitted
        _check_columns(state["vocabulary_"], "vocabulary_", "vectorizer")


@validates("sklearn.preprocessing._label.MultiLabelBinarizer")
def check_label_cache(args: Any, state: Any) -> None:
    """transform builds its output from the cached class -> column map, as wide as the map."""
    if type(state) is dict and state.get("_cached_dict") is not None:
        _check_columns(state["_cached_dict"], "_cached_dict", "MultiLabelBinarizer")


def _sorted_categories(cats: np.ndarray) -> bool:
    """Non-object categories are searched with np.searchsorted: they must be sorted."""
    if cats.dtype == object or len(cats) < 2:
        return True
    values = cats
    if cats.dtype.kind == "f":
        nan = np.isnan(cats)
        if nan.any() and (not nan[-1] or nan.sum() > 1):  # at most one NaN, last
            return False
        values = cats[~nan]
    return bool(np.all(values[:-1] < values[1:]))


@validates("sklearn.preprocessing._encoders.OneHotEncoder")
def check_one_hot(args: Any, state: Any) -> None:
    what = "OneHotEncoder"
    if type(state) is not dict or "categories_" not in state:
        return  # unfitted
    categories = state["categories_"]
    if type(categories) is not list or not all(
        isinstance(c, np.ndarray) and c.ndim == 1 for c in categories
    ):
        raise _fail(what, "categories_ must be a list of 1-d arrays")
    n = len(categories)
    if "n_features_in_" in state and _int(state["n_features_in_"], f"{what} n_features_in_") != n:
        raise _fail(what, "categories_ does not have one entry per feature")
    if not all(_sorted_categories(c) for c in categories):
        raise _fail(what, "categories must be sorted (transform searches them)")
    sizes = [len(c) for c in categories]
    grouped = list(sizes)  # categories per feature once infrequent ones are grouped
    infrequent = state.get("_infrequent_indices") if state.get("_infrequent_enabled") else None
    if infrequent is not None:
        if type(infrequent) is not list or len(infrequent) != n:
            raise _fail(what, "_infrequent_indices does not have one entry per feature")
        for i, idx in enumerate(infrequent):
            if idx is None:
                continue
            idx = _array(idx, f"{what} _infrequent_indices", 1, "iu")
            if len(idx) == 0 or idx.min() < 0 or idx.max() >= sizes[i]:
                raise _fail(what, "an infrequent category index is out of range")
            grouped[i] -= len(idx) - 1
        mappings = state.get("_default_to_infrequent_mappings")
        if type(mappings) is not list or len(mappings) != n:
            raise _fail(what, "_default_to_infrequent_mappings does not fit the features")
        for i, mapping in enumerate(mappings):
            if mapping is None:
                continue
            mapping = _array(mapping, f"{what} infrequent mapping", 1, "iu")
            if len(mapping) != sizes[i] or (
                len(mapping) and (mapping.min() < 0 or mapping.max() >= grouped[i])
            ):
                raise _fail(what, "an infrequent-category mapping is out of range")
    outs = list(grouped)
    drop = state.get("_drop_idx_after_grouping")
    if drop is not None:
        if not isinstance(drop, (list, np.ndarray)) or len(drop) != n:
            raise _fail(what, "_drop_idx_after_grouping does not have one entry per feature")
        for i, d in enumerate(drop):
            if d is None:
                continue
            if not 0 <= _int(d, f"{what} dropped category") < grouped[i]:
                raise _fail(what, "a dropped category is out of range")
            outs[i] -= 1
    if state.get("_n_features_outs") != outs:
        raise _fail(what, f"_n_features_outs must be {outs} for these categories")
