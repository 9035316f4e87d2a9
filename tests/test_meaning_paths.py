"""The implementations of the tree meaning checks make the same decisions.

Small trees are checked by a Python loop over the node lists, large ones by
vectorised numpy passes (src/skjar/codec/sklearn.py, ``SMALL_TREE``), and both
by the compiled ``tree_ok`` when it is built. Loads of real models exercise
mostly one of them, so here all run side by side on random trees, honest and
damaged: each input must be accepted by all or refused by all. The compiled
whole-state checks (``tree_state_ok``, ``predictor_state_ok``) may step aside
for anything unusual, but must never accept what the Python refuses.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.metrics import DistanceMetric
from sklearn.tree._tree import NODE_DTYPE

from skjar import _compiled
from skjar._compiled import speedups
from skjar.codec import sklearn as checks
from skjar.errors import CorruptFileError


def random_tree(draw: Any, n_inner: int, order: str) -> tuple[list[int], list[int]]:
    """A random full binary tree with ``n_inner`` splits, numbered in ``order``."""
    children: dict[int, tuple[int, int]] = {}
    leaves, next_id = [0], 1
    for _ in range(n_inner):
        node = leaves.pop(draw(st.integers(0, len(leaves) - 1)))
        children[node] = (next_id, next_id + 1)
        leaves += [next_id, next_id + 1]
        next_id += 2
    # Renumber so that children always come after their parent.
    seq, stack = [], [0]
    while stack:
        node = stack.pop(0 if order == "breadth" else -1)
        seq.append(node)
        if node in children:
            lc, rc = children[node]
            stack += [lc, rc] if order == "breadth" else [rc, lc]
    new = {old: i for i, old in enumerate(seq)}
    left, right = [-1] * next_id, [-1] * next_id
    for old, (lc, rc) in children.items():
        left[new[old]], right[new[old]] = new[lc], new[rc]
    return left, right


@st.composite
def damaged_trees(draw: Any) -> tuple[list[int], list[int], list[int], int, int]:
    n_inner = draw(st.integers(0, 40))
    left, right = random_tree(draw, n_inner, draw(st.sampled_from(["depth", "breadth"])))
    n = len(left)
    n_features = draw(st.integers(1, 6))
    feature = [draw(st.integers(0, n_features - 1)) if lc != -1 else -2 for lc in left]
    true_depth = _reference_depth(left, right)
    max_depth = true_depth + draw(st.sampled_from([0, 0, 0, 1, -1, -3]))
    # An overstatement up to n - 1 is harmless; n and beyond is refused (2**63 - 1
    # wrapped decision_path's allocation).
    max_depth = draw(st.sampled_from([max_depth] * 6 + [n - 1, n, n + 4, 2**63 - 1]))
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(["left", "right", "feature"]))
        i = draw(st.integers(0, n - 1))
        value = draw(st.integers(-3, n + 2))
        {"left": left, "right": right, "feature": feature}[target][i] = value
    return left, right, feature, n_features, max(max_depth, 0)


def _reference_depth(left: list[int], right: list[int]) -> int:
    depth = [0] * len(left)
    for i in range(len(left)):
        if left[i] != -1:
            depth[left[i]] = depth[right[i]] = depth[i] + 1
    return max(depth)


def _compiled_outcome(
    left: list[int], right: list[int], feature: list[int], n_features: int, max_depth: int
) -> str:
    """What the compiled twin says ("accepted" or "refused"); the Python path when not built."""
    if speedups is None:
        return _outcome(checks._small_tree_ok, left, right, feature, n_features, max_depth, "t")
    nodes = np.zeros(len(left), dtype=NODE_DTYPE)
    nodes["left_child"], nodes["right_child"], nodes["feature"] = left, right, feature
    offsets = [NODE_DTYPE.fields[f][1] for f in ("left_child", "right_child", "feature")]
    ok = speedups.tree_ok(nodes, NODE_DTYPE.itemsize, *offsets, n_features, max_depth)
    return "accepted" if ok else "refused"


def _outcome(check: Any, *args: Any) -> str:
    try:
        check(*args)
    except CorruptFileError as exc:
        return str(exc)
    return "accepted"


@settings(max_examples=400, deadline=None)
@given(damaged_trees())
def test_tree_checks_agree(case: tuple[list[int], list[int], list[int], int, int]) -> None:
    left, right, feature, n_features, max_depth = case
    small = _outcome(checks._small_tree_ok, left, right, feature, n_features, max_depth, "t")
    arrays = [np.array(v, dtype=np.intp) for v in (left, right, feature)]
    vectorised = _outcome(checks._vectorised_tree_ok, *arrays, n_features, max_depth, "t")
    compiled = _compiled_outcome(left, right, feature, n_features, max_depth)
    # All must accept or refuse; a refusal may name a different first fault.
    assert (small == "accepted") == (vectorised == "accepted"), (small, vectorised)
    assert (compiled == "accepted") == (small == "accepted"), (compiled, small)


@settings(max_examples=400, deadline=None)
@given(damaged_trees(), st.integers(0, 3), st.lists(st.booleans(), max_size=90))
def test_predictor_checks_agree(case: Any, n_bitsets: int, categorical: list[bool]) -> None:
    left, right, feature, _, _ = case
    nodes = np.zeros(len(left), dtype=PREDICTOR_RECORD_DTYPE)
    nodes["is_leaf"] = [lc == -1 for lc in left]
    # Predictor children are unsigned: a negative index wraps to a huge one.
    nodes["left"] = np.array(left, dtype=np.int64).astype(np.uint32)
    nodes["right"] = np.array(right, dtype=np.int64).astype(np.uint32)
    nodes["feature_idx"] = feature
    nodes["is_categorical"] = (categorical + [False] * len(left))[: len(left)]
    nodes["bitset_idx"] = [i % 5 for i in range(len(left))]
    small = _outcome(checks._small_predictor_ok, nodes, n_bitsets, "p")
    vectorised = _outcome(checks._vectorised_predictor_ok, nodes, n_bitsets, "p")
    assert (small == "accepted") == (vectorised == "accepted"), (small, vectorised)
    if speedups is not None:
        compiled = speedups.predictor_ok(nodes, *checks._predictor_layout(), n_bitsets, -1, b"")
        assert compiled == (small == "accepted"), (compiled, small)


@st.composite
def binary_tree_indexes(draw: Any) -> tuple[np.ndarray, int, np.ndarray]:
    """A KD/Ball tree's idx_array and node_data: honest (split like sklearn's), or
    with one value pushed just past a bound."""
    n = draw(st.integers(0, 40))
    n_levels = draw(st.integers(1, 5))
    n_nodes = 2**n_levels - 1
    idx = np.array(draw(st.permutations(range(n))), dtype=np.intp)
    node_data = np.zeros(n_nodes, dtype=checks._NODE_DATA)
    for i in range(n_nodes):  # node i covers [start, end); children split it in two
        start, end = (0, n) if i == 0 else node_data[["idx_start", "idx_end"]][i]
        if i == 0:
            node_data[i] = (start, end, 0, 0.0)
        if 2 * i + 2 < n_nodes:
            mid = (int(start) + int(end)) // 2
            node_data[2 * i + 1] = (start, mid, 0, 0.0)
            node_data[2 * i + 2] = (mid, end, 0, 0.0)
        else:
            node_data["is_leaf"][i] = 1
    damage = draw(st.sampled_from(["none", "idx", "start", "end", "swap", "leaf"]))
    if damage == "idx" and n:
        idx[draw(st.integers(0, n - 1))] = draw(st.sampled_from([n, -1, n + 7, -(2**62)]))
    elif damage in ("start", "end", "swap", "leaf"):
        i = draw(st.integers(0, n_nodes - 1))
        if damage == "start":
            node_data["idx_start"][i] = -1
        elif damage == "end":
            node_data["idx_end"][i] = n + 1
        elif damage == "swap":
            node_data["idx_start"][i] = node_data["idx_end"][i] + 1
        else:
            node_data["is_leaf"][i] = 0
    return idx, n, node_data


@settings(max_examples=400, deadline=None)
@given(binary_tree_indexes())
def test_binary_tree_index_checks_agree(case: tuple[np.ndarray, int, np.ndarray]) -> None:
    idx, n, node_data = case
    python = _outcome(checks._binary_tree_ranges_ok, n, node_data, len(node_data), "t")
    values = idx.tolist()
    python_idx = min(values, default=0) >= 0 and max(values, default=-1) < n
    assert checks.indices_below(idx, n) is python_idx  # the compiled `below` when built
    if speedups is not None:
        layout = checks._record_layout(checks._NODE_DATA, ("idx_start", "idx_end", "is_leaf"))
        compiled = speedups.binary_tree_ok(node_data, n, *layout)
        assert compiled == (python == "accepted"), (compiled, python)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(-1, 6), st.booleans()), min_size=1, max_size=30
    ),
    st.integers(1, 5),
    st.one_of(st.none(), st.lists(st.integers(0, 2), min_size=5, max_size=5)),
    st.sampled_from([np.bool_, np.uint8, np.int8]),
    st.integers(1, 4),
    st.sampled_from(["contiguous", "strided", "other layout"]),
)
def test_estimator_feature_checks_agree(
    rows: list[tuple[bool, int, bool]], n_features: int, mask: list[int] | None,
    mask_dtype: Any, n_predictors: int, last: str,
) -> None:
    """HistGradientBoosting's split-feature checks over several predictors, with the
    compiled twin and without (is_categorical_ as scikit-learn keeps it, uint8, and as
    bool or int8); the compiled twin steps aside for a node array it cannot read."""
    nodes = np.zeros(len(rows), dtype=PREDICTOR_RECORD_DTYPE)
    nodes["is_leaf"] = [leaf for leaf, _, _ in rows]
    nodes["feature_idx"] = [f for _, f, _ in rows]
    nodes["is_categorical"] = [cat for _, _, cat in rows]
    node_arrays = list(np.array_split(nodes, n_predictors))
    if last == "strided":
        node_arrays[-1] = np.repeat(node_arrays[-1], 2)[::2]
    elif last == "other layout":
        node_arrays[-1] = node_arrays[-1].astype(
            [(name, "<i8") for name in PREDICTOR_RECORD_DTYPE.names]
        )
    is_cat = None if mask is None else np.array(mask[:n_features]).astype(mask_dtype)
    if speedups is not None:  # the twin must actually take part, not quietly step aside
        compiled = checks._compiled_features_ok(node_arrays, n_features, is_cat)
        readable = last == "contiguous" or (last == "strided" and len(node_arrays[-1]) < 2)
        assert (compiled is not None) == readable, (compiled, last)
    state = {
        "n_features_in_": n_features,
        "_predictors": [[SimpleNamespace(nodes=a)] for a in node_arrays],
        "_bin_mapper": SimpleNamespace(is_categorical_=is_cat),
    }
    with_twin = _outcome(checks.check_hist_gradient_boosting, None, state)
    kept, checks._compiled.speedups = checks._compiled.speedups, None
    try:
        python = _outcome(checks.check_hist_gradient_boosting, None, state)
    finally:
        checks._compiled.speedups = kept
    assert with_twin == python


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda lc, rc, f: lc.__setitem__(0, 0), "outside"),
        (lambda lc, rc, f: rc.__setitem__(0, -1), "exactly one child"),
        (lambda lc, rc, f: f.__setitem__(0, 99), "feature outside"),
        (lambda lc, rc, f: rc.__setitem__(0, lc[0]), "two parents"),
    ],
)
def test_each_fault_is_named_by_both(edit: Any, message: str) -> None:
    left, right = [1, 3, -1, -1, -1], [2, 4, -1, -1, -1]
    feature = [0, 1, -2, -2, -2]
    edit(left, right, feature)
    small = _outcome(checks._small_tree_ok, left, right, feature, 2, 4, "t")
    arrays = [np.array(v, dtype=np.intp) for v in (left, right, feature)]
    vectorised = _outcome(checks._vectorised_tree_ok, *arrays, 2, 4, "t")
    assert message in small and message in vectorised, (small, vectorised)


def test_depth_is_checked_by_both() -> None:
    left, right = [1, 3, -1, -1, -1], [2, 4, -1, -1, -1]  # depth 2
    feature = [0, 0, -2, -2, -2]
    arrays = [np.array(v, dtype=np.intp) for v in (left, right, feature)]
    for max_depth, ok in ((2, True), (1, False), (4, True), (5, False), (2**63 - 1, False)):
        small = _outcome(checks._small_tree_ok, left, right, feature, 1, max_depth, "t")
        vectorised = _outcome(checks._vectorised_tree_ok, *arrays, 1, max_depth, "t")
        assert (small == "accepted") == ok == (vectorised == "accepted"), (small, vectorised)
        compiled = _compiled_outcome(left, right, feature, 1, max_depth)
        assert (compiled == "accepted") == ok, compiled


# -- whole states: the compiled check never accepts what the Python refuses ----------
def _fitted_states() -> tuple[Any, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(200, 3)).astype(float)
    y = (X[:, 0] + rng.random(200) > 2).astype(int)
    two_outputs = np.column_stack([y, (X[:, 1] > 1).astype(int) * 2])  # n_classes [2, 2]
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, two_outputs).tree_
    _, args, tree_state = tree.__reduce__()
    hgb = HistGradientBoostingClassifier(max_iter=2, categorical_features=[0]).fit(X, y)
    predictor_state = dict(vars(hgb._predictors[0][0]))
    return (list(args[:1]) + [np.asarray(args[1])] + list(args[2:]), tree_state), predictor_state


(TREE_ARGS, TREE_STATE), PREDICTOR_STATE = _fitted_states()


def _swapped(a: np.ndarray) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder())


class _Sub(np.ndarray):
    """An ndarray subclass: the compiled checks read arrays from numpy's own fields."""


def _plain(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.dtype.kind in "biuf"


def _cast(v: np.ndarray, dtype: Any) -> np.ndarray:
    """``v.astype(dtype)``; a complex array's real part, as astype takes it, without the
    ComplexWarning astype gives (a drawn state may hold complex values), nor numpy's
    warnings for values the new type cannot hold (the damage intended)."""
    with np.errstate(all="ignore"):
        return (v.real if v.dtype.kind == "c" else v).astype(dtype)


# Each replaces one entry of a state (or of a Tree's arguments) with something the Python
# check may or may not accept: numpy integers, bools, wrong kinds, shapes, orders, layouts.
ENTRY_DAMAGE = [
    lambda v: np.int64(v) if type(v) is int else v,
    lambda v: True if type(v) is int else v,
    lambda v: v - 1 if type(v) is int else v,
    lambda v: v + 1 if type(v) is int else v,
    lambda v: -1 if type(v) is int else v,
    lambda v: 2**70 if type(v) is int else v,
    lambda v: float(v) if type(v) is int else v,
    lambda v: v[:-1] if isinstance(v, np.ndarray) else v,
    lambda v: v[::-1] if isinstance(v, np.ndarray) else v,
    lambda v: np.concatenate([v, v]) if isinstance(v, np.ndarray) and v.ndim else v,
    lambda v: _cast(v, np.float64) if isinstance(v, np.ndarray) and v.dtype.names is None else v,
    lambda v: _cast(v, np.int8) if isinstance(v, np.ndarray) and v.dtype.names is None else v,
    lambda v: _cast(v, np.uint64) if isinstance(v, np.ndarray) and v.dtype.names is None else v,
    lambda v: _swapped(v) if isinstance(v, np.ndarray) and v.dtype.names is None else v,
    lambda v: v.reshape(-1) if isinstance(v, np.ndarray) else v,
    lambda v: v.reshape(1, -1) if isinstance(v, np.ndarray) else v,
    lambda v: np.asfortranarray(v) if isinstance(v, np.ndarray) else v,
    lambda v: v.tolist() if isinstance(v, np.ndarray) else v,
    lambda v: np.zeros_like(v) if isinstance(v, np.ndarray) else v,
    lambda v: v.view(np.uint8) if isinstance(v, np.ndarray) and v.dtype.names else v,
    lambda v: v[["left_child", "right_child"]] if getattr(v, "dtype", None) == NODE_DTYPE else v,
    lambda v: v + 1 if isinstance(v, np.ndarray) and v.dtype.kind in "iu" else v,
    lambda v: v[..., :-1] if isinstance(v, np.ndarray) else v,
    lambda v: v[:, :, None] if isinstance(v, np.ndarray) and v.ndim == 2 else v,
    lambda v: v[:0] if isinstance(v, np.ndarray) else v,
    lambda v: np.concatenate([v, v[-1:]]) if isinstance(v, np.ndarray) and v.ndim else v,
    lambda v: np.concatenate([v[:-1], v[-1:] * 0]) if isinstance(v, np.ndarray) and v.dtype.kind in "iu" else v,
    # Other widths, strides and types, which the compiled view describes from the array's
    # own fields rather than through numpy's buffer export:
    lambda v: v[::2] if isinstance(v, np.ndarray) and v.ndim else v,
    lambda v: np.repeat(v, 2, axis=0)[::2] if isinstance(v, np.ndarray) and v.ndim else v,
    lambda v: _cast(v, np.float16) if _plain(v) else v,
    lambda v: v.astype(np.longdouble) if _plain(v) else v,
    lambda v: v.astype(np.float32) if _plain(v) else v,
    lambda v: v.astype(np.int16) if _plain(v) else v,
    lambda v: v.astype(np.int32) if _plain(v) else v,
    lambda v: v.astype(np.longlong) if _plain(v) else v,
    lambda v: v.astype(np.uint32) if _plain(v) else v,
    lambda v: v.astype(bool) if _plain(v) else v,
    lambda v: v.astype(np.complex128) if _plain(v) else v,
    lambda v: v.astype(object) if _plain(v) else v,
    lambda v: v.view(_Sub) if isinstance(v, np.ndarray) else v,
    lambda v: v.reshape(-1)[:1].reshape(()) if isinstance(v, np.ndarray) and v.size else v,
    lambda v: np.require(v, requirements="A") if isinstance(v, np.ndarray) else v,
    lambda v: None,
]


def _verdicts(check: Any, args: Any, state: Any) -> tuple[bool, str]:
    """(the compiled whole-state verdict, the Python check's outcome with no twin)."""
    if check is checks.check_tree:
        layout = checks._record_layout(NODE_DTYPE, ("left_child", "right_child", "feature"))
        compiled = speedups.tree_state_ok(args, state, np.ndarray, NODE_DTYPE, *layout)
    else:
        compiled = speedups.predictor_state_ok(
            state, np.ndarray, PREDICTOR_RECORD_DTYPE, *checks._predictor_layout()
        )
    with mock.patch.object(_compiled, "speedups", None):
        return compiled, _outcome(check, args, state)


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
@pytest.mark.parametrize("check", [checks.check_tree, checks.check_predictor])
def test_honest_states_take_the_compiled_check(check: Any) -> None:
    args, state = (TREE_ARGS, TREE_STATE) if check is checks.check_tree else ((), PREDICTOR_STATE)
    assert _verdicts(check, args, state) == (True, "accepted")


def _damaged(check: Any, damage: list[tuple[int, int]], drop: bool) -> tuple[Any, Any]:
    """The honest (args, state) of ``check`` with entries replaced, and maybe one dropped."""
    tree = check is checks.check_tree
    args = list(TREE_ARGS) if tree else ()
    state = dict(TREE_STATE if tree else PREDICTOR_STATE)
    slots = [("state", key) for key in state] + ([("args", i) for i in range(3)] if tree else [])
    for slot, how in damage:
        where, key = slots[slot % len(slots)]
        target: Any = state if where == "state" else args
        try:
            target[key] = ENTRY_DAMAGE[how](target[key])
        except (ValueError, TypeError, OverflowError, IndexError):  # not applicable here
            pass
    if drop:
        state.pop(next(iter(state)))
    return args, state


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
@pytest.mark.parametrize("check", [checks.check_tree, checks.check_predictor])
def test_the_compiled_state_check_accepts_no_damaged_entry_the_python_refuses(check: Any) -> None:
    """Every single damage to every entry, exhaustively."""
    slots = len(TREE_STATE) + 3 if check is checks.check_tree else len(PREDICTOR_STATE)
    for slot in range(slots):
        for how in range(len(ENTRY_DAMAGE)):
            compiled, python = _verdicts(check, *_damaged(check, [(slot, how)], False))
            if compiled:
                assert python == "accepted", (slot, how, python)


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([checks.check_tree, checks.check_predictor]),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, len(ENTRY_DAMAGE) - 1)), max_size=3),
    st.booleans(),
)
def test_the_compiled_state_check_accepts_no_damaged_state_the_python_refuses(
    check: Any, damage: list[tuple[int, int]], drop: bool
) -> None:
    """Several damages at once, where one may hide another."""
    compiled, python = _verdicts(check, *_damaged(check, damage, drop))
    if compiled:
        assert python == "accepted", (damage, python)


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
def test_the_compiled_state_checks_refuse_bad_fields() -> None:
    with pytest.raises(ValueError, match="fields"):
        speedups.tree_state_ok(TREE_ARGS, TREE_STATE, np.ndarray, NODE_DTYPE, 64, 0, 8, 60)
    with pytest.raises(ValueError, match="fields"):
        speedups.predictor_state_ok({}, np.ndarray, PREDICTOR_RECORD_DTYPE, 56, 0, 4, 52, 12, 13, 14)
    with pytest.raises(TypeError):
        speedups.tree_state_ok(TREE_ARGS, TREE_STATE, "ndarray", NODE_DTYPE, 64, 0, 8, 16)
    assert speedups.tree_state_ok((), {}, np.ndarray, NODE_DTYPE, 64, 0, 8, 16) is False


# -- nearest neighbours and libsvm: the same rule for their compiled whole-state checks --
def _whole_states() -> dict[str, tuple[Any, Any]]:
    """Honest states, by case: (the Python check, the state it is given)."""
    import scipy.sparse as sp
    from sklearn.metrics import DistanceMetric
    from sklearn.neighbors import BallTree, KDTree, KNeighborsClassifier
    from sklearn.svm import SVC, SVR, NuSVC, OneClassSVM

    rng = np.random.default_rng(0)
    X = rng.random((60, 3))
    y = (X[:, 0] > 0.5).astype(int)
    kd = functools.partial(checks.check_binary_tree, planes=2)
    ball = functools.partial(checks.check_binary_tree, planes=1)
    cases: dict[str, tuple[Any, Any]] = {
        "kd": (kd, KDTree(X, leaf_size=5).__reduce__()[2]),
        "ball": (ball, BallTree(X, leaf_size=5).__reduce__()[2]),
        "kd-weighted": (kd, KDTree(X, leaf_size=5, sample_weight=rng.random(60)).__reduce__()[2]),
        "ball-haversine": (ball, BallTree(X[:, :2], metric="haversine").__reduce__()[2]),
        "ball-minkowski-w": (
            ball, BallTree(X, metric="minkowski", p=3, w=rng.random(3)).__reduce__()[2]
        ),
        "ball-seuclidean": (ball, BallTree(X, metric="seuclidean", V=rng.random(3)).__reduce__()[2]),
        "metric": (checks.check_distance_metric, DistanceMetric.get_metric("euclidean").__getstate__()),
        "metric-mahalanobis": (
            checks.check_distance_metric,
            DistanceMetric.get_metric("mahalanobis", VI=np.eye(3)).__getstate__(),
        ),
    }
    for name, params in {
        "knn-kd": dict(algorithm="kd_tree"),
        "knn-brute": dict(algorithm="brute"),
        "knn-minkowski-w": dict(algorithm="brute", metric="minkowski", p=3,
                                metric_params={"w": rng.random(3)}),
        "knn-haversine": dict(algorithm="ball_tree", metric="haversine"),
        "knn-metric-object": dict(algorithm="brute", metric="euclidean"),
    }.items():
        data = X[:, :2] if "haversine" in name else X
        model = KNeighborsClassifier(3, **params).fit(data, y)
        if name == "knn-metric-object":
            model.effective_metric_ = DistanceMetric.get_metric("euclidean")
        cases[name] = (checks.check_neighbors, dict(vars(model)))
    three = (X[:, 0] * 3).astype(int)
    for name, model in {
        "svc": SVC(probability=True, random_state=0).fit(X, three),
        "svc-binary": SVC().fit(X, y),
        "nusvc": NuSVC(nu=0.3).fit(X, three),
        "svr": SVR().fit(X, X[:, 1]),
        "oneclass": OneClassSVM().fit(X),
        "svc-precomputed": SVC(kernel="precomputed").fit(X @ X.T, y),
        "svc-sparse": SVC().fit(sp.csr_matrix(X), y),
        "svc-unfitted": SVC(),
    }.items():
        cases[name] = (checks.check_libsvm, model.__getstate__())
    return cases


WHOLE_STATES = _whole_states()
COMPILED_WHOLE = {
    checks.check_distance_metric: lambda state: speedups.distance_metric_state_ok(state, np.ndarray),
    checks.check_neighbors: lambda state: speedups.neighbors_state_ok(state, np.ndarray),
    checks.check_libsvm: lambda state: speedups.libsvm_state_ok(state, np.ndarray),
}


def _whole_verdicts(case: str, state: Any) -> tuple[bool, str]:
    """(the compiled whole-state verdict, the Python check's outcome with no twin)."""
    check = WHOLE_STATES[case][0]
    if isinstance(check, functools.partial):
        compiled = speedups.binary_tree_state_ok(
            state, check.keywords["planes"], np.ndarray, DistanceMetric, checks._NODE_DATA,
            *checks._NODE_LAYOUT,
        )
    else:
        compiled = COMPILED_WHOLE[check](state)
    with mock.patch.object(_compiled, "speedups", None):
        return compiled, _outcome(check, (), state)


# What these states hold beside arrays and ints: metrics, metric names, parameters,
# kernels, shapes.
def _state_damage() -> list[Any]:
    from sklearn.metrics import DistanceMetric

    return [
        lambda v: DistanceMetric.get_metric("haversine") if hasattr(v, "__getstate__") else v,
        lambda v: DistanceMetric.get_metric("seuclidean", V=np.ones(5)) if hasattr(v, "__getstate__") else v,
        lambda v: DistanceMetric.get_metric("minkowski", p=3, w=np.ones(5)) if hasattr(v, "__getstate__") else v,
        lambda v: DistanceMetric.get_metric("mahalanobis", VI=np.eye(5)) if hasattr(v, "__getstate__") else v,
        lambda v: "haversine" if isinstance(v, str) else v,
        lambda v: "haversine_x" if isinstance(v, str) else v,
        lambda v: "Haversine" if isinstance(v, str) else v,
        lambda v: {"w": np.ones(5)} if isinstance(v, dict) or v is None else v,
        lambda v: {"w": np.ones((3, 4)), "p": 2} if isinstance(v, dict) or v is None else v,
        lambda v: {"V": [1.0] * 5} if isinstance(v, dict) or v is None else v,
        lambda v: 3.0 if type(v) is float else v,
        lambda v: 3 if type(v) is float else v,
        lambda v: np.float64(v) if type(v) is float else v,
        lambda v: "precomputed" if isinstance(v, str) else v,
        lambda v: (v[0] + 1, v[1]) if type(v) is tuple and len(v) == 2 else v,
        lambda v: (0, v[1]) if type(v) is tuple and len(v) == 2 else v,
        lambda v: (np.int64(v[0]), v[1]) if type(v) is tuple and len(v) == 2 else v,
        lambda v: v[:, :-1] if isinstance(v, np.ndarray) and v.ndim == 2 else v,
        lambda v: v[:-1, :] if isinstance(v, np.ndarray) and v.ndim == 2 else v,
        lambda v: v[:0] if isinstance(v, np.ndarray) and v.ndim == 2 else v,
        lambda v: v * 0 - 1 if isinstance(v, np.ndarray) and v.dtype.kind == "i" else v,
        lambda v: np.array([2**62, 2**62]) if isinstance(v, np.ndarray) and v.dtype.kind == "i" else v,
        lambda v: object(),
        lambda v: None if isinstance(v, DistanceMetric) else v,
        lambda v: type(v) if isinstance(v, DistanceMetric) else v,
    ]


WHOLE_DAMAGE = ENTRY_DAMAGE + _state_damage()


def _damaged_whole(case: str, damage: list[tuple[int, int]], drop: bool) -> Any:
    """The honest state of ``case`` with entries replaced, and maybe one dropped."""
    state = WHOLE_STATES[case][1]
    target: Any = dict(state) if type(state) is dict else list(state)
    keys = list(target) if type(target) is dict else list(range(len(target)))
    for slot, how in damage:
        key = keys[slot % len(keys)]
        try:
            target[key] = WHOLE_DAMAGE[how](target[key])
        except (ValueError, TypeError, OverflowError, IndexError):  # not applicable here
            pass
    if drop:
        if type(target) is dict:
            target.pop(keys[0])
        else:
            target.pop()
    return target if type(target) is dict else tuple(target)


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
@pytest.mark.parametrize("case", sorted(WHOLE_STATES))
def test_honest_whole_states_pass_and_mostly_take_the_compiled_check(case: str) -> None:
    compiled, python = _whole_verdicts(case, WHOLE_STATES[case][1])
    assert python == "accepted"
    # Metrics whose own vector or matrix must be read, metric objects in an estimator's
    # state and sparse support vectors are left to the Python twin; the rest is compiled.
    deferred = case in ("ball-minkowski-w", "ball-seuclidean", "knn-metric-object", "svc-sparse")
    assert compiled is not deferred


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
@pytest.mark.parametrize("case", sorted(WHOLE_STATES))
def test_the_compiled_whole_checks_accept_no_damaged_entry_the_python_refuses(case: str) -> None:
    """Every single damage to every entry, exhaustively."""
    for slot in range(len(WHOLE_STATES[case][1])):
        for how in range(len(WHOLE_DAMAGE)):
            compiled, python = _whole_verdicts(case, _damaged_whole(case, [(slot, how)], False))
            if compiled:
                assert python == "accepted", (slot, how, python)


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(WHOLE_STATES)),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, len(WHOLE_DAMAGE) - 1)), max_size=4),
    st.booleans(),
)
def test_the_compiled_whole_checks_accept_no_damaged_state_the_python_refuses(
    case: str, damage: list[tuple[int, int]], drop: bool
) -> None:
    """Several damages at once, where one may hide another."""
    compiled, python = _whole_verdicts(case, _damaged_whole(case, damage, drop))
    if compiled:
        assert python == "accepted", (case, damage, python)


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
@pytest.mark.parametrize("case", ["kd", "ball", "ball-minkowski-w"])
@pytest.mark.parametrize("metric", [None, 0, "euclidean", object(), DistanceMetric])
def test_a_tree_whose_metric_is_not_a_distance_metric_is_refused(case: str, metric: Any) -> None:
    """Both twins, where agreeing is not enough: a tree given None as its metric loaded
    with Python >= 3.11 (None has a __getstate__, which both took as the mark of a
    metric) and dereferenced NULL on its first query (a fuzz finding)."""
    state = list(WHOLE_STATES[case][1])
    state[11] = metric
    compiled, python = _whole_verdicts(case, tuple(state))
    assert compiled is False
    assert python.startswith("KDTree/BallTree: dist_metric is not a distance metric"), python


@pytest.mark.skipif(speedups is None, reason="the compiled helpers are not built")
def test_the_compiled_whole_checks_refuse_bad_arguments() -> None:
    state = WHOLE_STATES["kd"][1]
    with pytest.raises(ValueError, match="fields"):
        speedups.binary_tree_state_ok(state, 2, np.ndarray, DistanceMetric, checks._NODE_DATA,
                                      32, 0, 8, 28)
    with pytest.raises(TypeError):
        speedups.binary_tree_state_ok(state, 2, "ndarray", DistanceMetric, checks._NODE_DATA,
                                      *checks._NODE_LAYOUT)
    with pytest.raises(TypeError):
        speedups.binary_tree_state_ok(state, 2, np.ndarray, "DistanceMetric", checks._NODE_DATA,
                                      *checks._NODE_LAYOUT)
    with pytest.raises(TypeError):
        speedups.neighbors_state_ok({}, None)
    assert speedups.distance_metric_state_ok([], np.ndarray) is False
    assert speedups.neighbors_state_ok({}, np.ndarray) is True  # unfitted
    assert speedups.libsvm_state_ok({}, np.ndarray) is True
    with pytest.raises(TypeError):
        speedups.libsvm_state_ok({}, None)
