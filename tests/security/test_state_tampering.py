"""State tampering: state handed to what must never take it, or in a shape it must not have.

The loader creates instances only by ``cls.__new__(cls)`` and gives them state only by
``__setstate__`` / ``__dict__.update`` / real ``__slots__`` members, never to a class,
a function or a module (monkey-patching), and never twice. Types that have a node of
their own (bit generators, RandomState, Generator, MaskedArray, partial) are built only
by that node's checked handler.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jarcraft
import skjar
from jarcraft import Ext, name_entry
from skjar import _compiled
from skjar.codec import nodes

LR = "sklearn.linear_model._base.LinearRegression"
RBF = "sklearn.gaussian_process.kernels.RBF"
SCORER = "sklearn.metrics._scorer._Scorer"
BUNCH = "sklearn.utils._bunch.Bunch"
LR_STATE = {"fit_intercept": True, "copy_X": True, "tol": 1e-6, "n_jobs": None,
            "positive": False, "_sklearn_version": __import__("sklearn").__version__}


def _ref(name: str) -> Ext:
    return Ext(nodes.REF, name)


def _inst(first: Any, state: Any = None, mode: int = 1, kind: int = 0, items: Any = None) -> Ext:
    return Ext(nodes.INSTANCE, [first, mode, state, kind, items])


def _def(i: int, value: Any) -> Ext:
    return Ext(nodes.SHARED_DEF, [i, value])


def _use(i: int) -> Ext:
    return Ext(nodes.SHARED_REF, i)


OBJ = ("object",)
VAL = ("value",)

# -- state given to something that is not a fresh instance ------------------------------------
NOT_INSTANCES: dict[str, tuple[Any, list[dict[str, Any]]]] = {
    "a trusted class (REF)": (_inst(_ref(LR), {"predict": 1}), [name_entry(LR, uses=VAL)]),
    "a ufunc (REF numpy.log1p)": (_inst(_ref("numpy.log1p"), {"__call__": 1}),
                                  [name_entry("numpy.log1p", "numpy", VAL)]),
    "a builtin function (REF builtins.len)": (_inst(_ref("builtins.len"), {"x": 1}),
                                              [name_entry("builtins.len", "builtins", VAL)]),
    "a shared class (SHARED_DEF of a REF)": (
        [_def(0, _ref(LR)), _inst(_use(0), {"fit": None})], [name_entry(LR, uses=VAL)]),
    "a finished instance (state twice)": (
        [_def(0, _inst(LR, dict(LR_STATE))), _inst(_use(0), {"coef_": 1})],
        [name_entry(LR, uses=OBJ)]),
    "a shell completed twice": (
        [_inst(_def(0, Ext(nodes.NEWOBJ, LR)), dict(LR_STATE)), _inst(_use(0), {"x": 1})],
        [name_entry(LR, uses=OBJ)]),
    "a plain list": (_inst([1, 2], {"x": 1}), []),
    "a dict": (_inst({"a": 1}, {"x": 1}), []),
    "a number": (_inst(12, {"x": 1}), []),
    "a dtype": (_inst(Ext(nodes.DTYPE, "<f8"), {"x": 1}), []),
    "an ndarray": (_inst(Ext(nodes.NDARRAY, ["<f8", [1], False, bytes(8)]), {"x": 1}), []),
}


@pytest.mark.parametrize("case", list(NOT_INSTANCES))
def test_state_is_never_applied_to_a_non_instance(case: str, refused: Any) -> None:
    tree, names = NOT_INSTANCES[case]
    data = jarcraft.build(tree, names)
    refused(lambda: skjar.loads(data), "state only on instances")


def test_an_instance_left_without_its_state(refused: Any) -> None:
    """A NEWOBJ shell nobody completes: an object whose invariants were never set up."""
    data = jarcraft.build([_def(0, Ext(nodes.NEWOBJ, LR))], [name_entry(LR, uses=OBJ)])
    refused(lambda: skjar.loads(data), "instances must be completed")


@pytest.mark.parametrize("returns", ["make_class", "make_function", "make_module"])
@pytest.mark.parametrize("mode", [1, 2])
def test_a_reconstructor_returning_a_class_function_or_module_gets_no_state(
    returns: str, mode: int, package: Any, refused: Any
) -> None:
    """Even a reconstructor the caller trusts cannot be used to monkey-patch what it returns:
    ``make_class()`` returns the package's class (whose __setstate__ writes the canary)."""
    name = package.qualified(returns)
    tree = Ext(nodes.RECONSTRUCT, [name, [], mode, {"__setstate__": None, "x": 1}, 0, None])
    data = jarcraft.build(tree, [name_entry(name, package.name, ("call",))])
    refused(lambda: skjar.loads(data, trusted=[(name, "call")]), "state only on instances")
    assert package.module().Model.__dict__.get("x") is None


@pytest.mark.parametrize("node", ["INSTANCE", "NEWOBJ", "NAMEDTUPLE"])
def test_a_function_trusted_by_string_is_not_a_class(
    node: str, package: Any, refused: Any
) -> None:
    """A string in trusted= grants object+value; a function still cannot be instantiated."""
    name = package.qualified("boom")
    tree = {
        "INSTANCE": _inst(name, {"x": 1}),
        "NEWOBJ": _inst(_def(0, Ext(nodes.NEWOBJ, name)), {"x": 1}),
        "NAMEDTUPLE": Ext(nodes.NAMEDTUPLE, [name, []]),
    }[node]
    data = jarcraft.build(tree, [name_entry(name, package.name, OBJ)])
    refused(lambda: skjar.loads(data, trusted=[name]),
            "per-use resolution (not a class / a module / not callable)")


@pytest.mark.parametrize("use", ["value", "object"])
def test_a_module_reached_through_an_attribute_is_refused(
    use: str, package: Any, refused: Any
) -> None:
    """``pkg.module_alias`` is an attribute bound to a module (find_spec cannot see it)."""
    name = package.qualified("module_alias")
    tree = _ref(name) if use == "value" else _inst(name, {"write_text": 1})
    data = jarcraft.build(tree, [name_entry(name, package.name, (use,))])
    refused(lambda: skjar.loads(data, trusted=[name]),
            "per-use resolution (not a class / a module / not callable)")


# -- state of the wrong shape --------------------------------------------------------------------
def _tuple(*items: Any) -> Ext:
    return Ext(nodes.TUPLE, list(items))


WRONG_STATE: dict[str, tuple[str, Any, str]] = {
    # (class, state, defence)
    "estimator: a list": (LR, [1, 2], "state must map attribute names"),
    "estimator: a tuple": (LR, _tuple({"x": 1}, None), "state must map attribute names"),
    "estimator: an int": (LR, 7, "state must map attribute names"),
    "estimator: a string": (LR, "coef_", "state must map attribute names"),
    "estimator: nil with mode 1": (LR, None, "trusted code failure becomes CorruptFileError"),
    "estimator: int keys": (LR, {1: 2, "fit_intercept": True}, "state must map attribute names"),
    "estimator: tuple keys": (LR, {_tuple("a", 1): 2}, "state must map attribute names"),
    "estimator: numpy str keys": (
        LR, {Ext(nodes.NPSCALAR, ["<U4", "fit_".encode("utf-32-le")]): 2},
        "state must map attribute names"),
    "estimator: an OrderedDict": (
        LR, Ext(nodes.ORDEREDDICT, [["coef_", 1]]), "state must map attribute names"),
    "estimator: a defaultdict": (
        LR, Ext(nodes.DEFAULTDICT, [None, [["coef_", 1]]]), "state must map attribute names"),
    "plain class: a list": (RBF, [1], "state must map attribute names"),
    "plain class: a 3-tuple": (RBF, _tuple({}, {}, {}), "state must map attribute names"),
    "plain class: int keys": (RBF, {3: 1}, "state must map attribute names"),
    "slots: __class__ (swap the object's class)": (
        RBF, _tuple({"length_scale": 1.0}, {"__class__": _ref(LR)}),
        "slots: only real __slots__ members"),
    "slots: __dict__ (replace the namespace)": (
        RBF, _tuple(None, {"__dict__": {"k1": 1}}), "slots: only real __slots__ members"),
    "slots: a property setter (theta)": (
        RBF, _tuple({"length_scale": 1.0, "length_scale_bounds": "fixed"},
                    {"theta": Ext(nodes.NDARRAY, ["<f8", [1], False, bytes(8)])}),
        "slots: only real __slots__ members"),
    "slots: an ordinary attribute": (
        RBF, _tuple(None, {"length_scale": 1.0}), "slots: only real __slots__ members"),
    "slots: a non-str key": (RBF, _tuple(None, {1: 1}), "state must map attribute names"),
    "slots: a list": (RBF, _tuple(None, [1]), "state must map attribute names"),
}


@pytest.mark.parametrize("case", list(WRONG_STATE))
def test_state_of_the_wrong_shape_is_refused(case: str, refused: Any) -> None:
    cls, state, defence = WRONG_STATE[case]
    names = [name_entry(cls, uses=OBJ), name_entry(LR, uses=("object", "value"))]
    data = jarcraft.build(_inst(cls, state), jarcraft_merge(names))
    refused(lambda: skjar.loads(data), defence)


def jarcraft_merge(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from .hostile import merge

    return merge(entries)


def test_class_swap_through_slots_would_have_changed_the_type() -> None:
    """Control for the __class__ case: a plain setattr (what the loader used to do)
    turns the scorer into a LinearRegression, bypassing any check keyed by class."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics._scorer import _Scorer

    obj = _Scorer.__new__(_Scorer)
    obj.__dict__.update(LR_STATE)
    obj.__class__ = LinearRegression
    assert type(obj) is LinearRegression


PAYLOAD_SHAPES: dict[str, tuple[Any, list[dict[str, Any]]]] = {
    "mode 2 on a class without a Cython setter": (
        _inst(LR, {"x": 1}, mode=2), [name_entry(LR, uses=OBJ)]),
    "unknown mode": (_inst(LR, {"x": 1}, mode=7), [name_entry(LR, uses=OBJ)]),
    "mode 'none' with state": (_inst(LR, {"x": 1}, mode=0), [name_entry(LR, uses=OBJ)]),
    "list items for a non-list": (_inst(LR, dict(LR_STATE), kind=1, items=[1, 2]),
                                  [name_entry(LR, uses=OBJ)]),
    "dict items for a non-dict": (_inst(LR, dict(LR_STATE), kind=2, items=[["a", 1]]),
                                  [name_entry(LR, uses=OBJ)]),
    "dict items malformed": (_inst(BUNCH, None, mode=0, kind=2, items=[["a", 1, 2]]),
                             [name_entry(BUNCH, uses=OBJ)]),
    "named tuple of a class that is not one": (
        Ext(nodes.NAMEDTUPLE, [LR, [1]]), [name_entry(LR, uses=OBJ)]),
    "named tuple with the wrong field count": (
        Ext(nodes.NAMEDTUPLE, ["sklearn.gaussian_process.kernels.Hyperparameter", [1]]),
        [name_entry("sklearn.gaussian_process.kernels.Hyperparameter", uses=OBJ)]),
    "instance payload too short": (Ext(nodes.INSTANCE, [LR, 1, {}]), [name_entry(LR, uses=OBJ)]),
    "a node naming a numpy string": (
        Ext(nodes.REF, Ext(nodes.NPSCALAR, ["<U1", "a".encode("utf-32-le")])), []),
}


@pytest.mark.parametrize("case", list(PAYLOAD_SHAPES))
def test_malformed_instance_payloads_are_refused(case: str, refused: Any) -> None:
    tree, names = PAYLOAD_SHAPES[case]
    data = jarcraft.build(tree, names)
    refused(lambda: skjar.loads(data), "node payload shape check")


# -- types only their own node may build ------------------------------------------------------
HANDLER_BUILT = [
    "numpy.random._pcg64.PCG64",
    "numpy.random._pcg64.PCG64DXSM",
    "numpy.random._philox.Philox",
    "numpy.random._mt19937.MT19937",
    "numpy.random._sfc64.SFC64",
    "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
    "numpy.ma.core.MaskedArray",
    "functools.partial",
]


@pytest.mark.parametrize("form", ["INSTANCE", "NEWOBJ"])
@pytest.mark.parametrize("name", HANDLER_BUILT)
def test_types_with_their_own_node_are_not_generic_instances(
    name: str, form: str, refused: Any
) -> None:
    """``cls.__new__(cls)`` alone leaves e.g. PCG64's C state unset: reading it segfaults
    (mode 0), and so does giving it state (test_meaning_tampering runs those in a
    subprocess). Only the node's handler, which checks its input, builds these."""
    tree = _inst(name, None, mode=0) if form == "INSTANCE" else _inst(
        _def(0, Ext(nodes.NEWOBJ, name)), None, mode=0)
    data = jarcraft.build(tree, [name_entry(name, uses=OBJ)])
    refused(lambda: skjar.loads(data), "handler-built types only by their node")


def test_masked_array_state_would_bypass_the_array_checks() -> None:
    """Control: through MaskedArray.__setstate__ (the generic path), numpy builds an array
    of 2**33 zero-size elements from 0 bytes, which the NDARRAY node refuses."""
    m = np.ma.MaskedArray.__new__(np.ma.MaskedArray)
    m.__setstate__((1, (2**33,), np.dtype("S0"), False, b"", b"", None))
    assert m.shape == (2**33,)


def test_generic_instances_of_trusted_classes_still_load(canary: Path) -> None:
    """Control: the rules above leave honest state alone."""
    data = jarcraft.build(
        [_inst(LR, dict(LR_STATE)), _inst(RBF, {"length_scale": 2.0,
                                                "length_scale_bounds": "fixed"}),
         _inst(BUNCH, None, mode=0, kind=2, items=[["a", 1]])],
        [name_entry(LR, uses=OBJ), name_entry(RBF, uses=OBJ), name_entry(BUNCH, uses=OBJ)],
    )
    lr, rbf, bunch = skjar.loads(data)
    assert lr.fit_intercept is True and rbf.length_scale == 2.0 and bunch.a == 1


# -- deferred states (STATE nodes inside the ROOT node) --------------------------------------------
def _root(value: Any, *states: Any) -> Ext:
    return Ext(nodes.ROOT, [value, list(states)])


def _state(shell: Any, state: Any, mode: int = 1) -> Ext:
    return Ext(nodes.STATE, [shell, mode, state, 0, None])


SVC = "sklearn.svm._classes.SVC"
DEFERRED: dict[str, tuple[Any, list[dict[str, Any]], str]] = {
    "a STATE node outside a ROOT": (
        [_def(0, Ext(nodes.NEWOBJ, LR)), _state(_use(0), dict(LR_STATE))],
        [name_entry(LR)], "state only on instances"),
    "a STATE node for a class": (
        _root(_def(0, _ref(LR)), _state(_use(0), {"fit": None})),
        [name_entry(LR, uses=VAL)], "state only on instances"),
    "a STATE node for a finished instance": (
        _root(_def(0, _inst(LR, dict(LR_STATE))), _state(_use(0), {"coef_": 1})),
        [name_entry(LR)], "state only on instances"),
    "two STATE nodes for one shell": (
        _root(_def(0, Ext(nodes.NEWOBJ, LR)), _state(_use(0), dict(LR_STATE)),
              _state(_use(0), {"coef_": 1})),
        [name_entry(LR)], "state only on instances"),
    "a STATE node nested in the value": (
        _root(Ext(nodes.TUPLE, [_def(0, Ext(nodes.NEWOBJ, LR)), _state(_use(0), dict(LR_STATE))]),
              _state(_use(0), dict(LR_STATE))),
        [name_entry(LR)], "state only on instances"),
    "a ROOT node that is not outermost": (
        Ext(nodes.TUPLE, [_root(1, _state(1, {}))]), [], "deferred states only at the root"),
    "a ROOT node inside a ROOT node": (
        _root(_root(1, _state(1, {})), _state(1, {})), [], "deferred states only at the root"),
    "a ROOT node with something other than STATE nodes": (
        _root(1, 2), [], "deferred states only at the root"),
    "a deferred SVC state as an OrderedDict": (
        _root(_def(0, Ext(nodes.NEWOBJ, SVC)),
              _state(_use(0), Ext(nodes.ORDEREDDICT, [["support_", 1]]))),
        [name_entry(SVC)], "meaning checks need plain state"),
    "a deferred bit generator shell": (
        _root(_def(0, Ext(nodes.NEWOBJ, "numpy.random._pcg64.PCG64")), _state(_use(0), {})),
        [name_entry("numpy.random._pcg64.PCG64")], "handler-built types only by their node"),
    "a deferred state left out": (
        _root(_def(0, Ext(nodes.NEWOBJ, LR)), None), [name_entry(LR)],
        "instances must be completed"),
}


@pytest.mark.parametrize("case", list(DEFERRED))
def test_deferred_states_follow_the_same_rules(case: str, refused: Any) -> None:
    """The writer gives deep instances their state at the top level (ROOT/STATE); the
    same rules hold there: once, only to empty instances, only plain state for checks."""
    tree, names, defence = DEFERRED[case]
    data = jarcraft.build(tree, names)
    refused(lambda: skjar.loads(data), defence)


# -- ZIPDICT: state as a key list (often shared) and a value list -----------------------------
def _zip(keys: Any, values: Any) -> Ext:
    return Ext(nodes.ZIPDICT, [keys, values])


LR_KEYS, LR_VALUES = list(LR_STATE), list(LR_STATE.values())
ZIPDICT_ATTACKS: dict[str, tuple[Any, str, str | None]] = {
    # what the state is, the defence, and a message it must name
    "keys not a list": (_zip("fit_intercept", LR_VALUES), "node payload shape check", "keyed"),
    "values not a list": (_zip(LR_KEYS, {"a": 1}), "node payload shape check", "keyed"),
    "fewer values than keys": (_zip(LR_KEYS, LR_VALUES[:-1]), "node payload shape check",
                               "one length"),
    "a non-string key": (_zip([*LR_KEYS[:-1], 7], LR_VALUES), "node payload shape check",
                         "strings"),
    "a tuple key (unhashable list inside)": (
        _zip([*LR_KEYS[:-1], Ext(nodes.TUPLE, [[1]])], LR_VALUES), "node payload shape check",
        "strings"),
    "a key twice (last one would win)": (_zip([*LR_KEYS[:-1], LR_KEYS[0]], LR_VALUES),
                                         "node payload shape check", "distinct"),
    "keys shared before they are defined": (_zip(_use(5), LR_VALUES), "shared ids defined once, used after",
                                            "undefined shared object"),
}


@pytest.mark.parametrize("attack", list(ZIPDICT_ATTACKS))
def test_malformed_keyed_state_is_refused(attack: str, refused: Any) -> None:
    state, defence, match = ZIPDICT_ATTACKS[attack]
    data = jarcraft.build(_inst(LR, state), [name_entry(LR)])
    refused(lambda: skjar.loads(data), defence, match)


def test_keyed_state_with_a_shared_key_list_loads() -> None:
    """The control: the writer's own shape (a key list defined once, then referenced)."""
    keys = _def(0, LR_KEYS)
    data = jarcraft.build([_inst(LR, _zip(keys, LR_VALUES)), _inst(LR, _zip(_use(0), LR_VALUES))],
                          [name_entry(LR)])
    first, second = skjar.loads(data)
    expected = {k: v for k, v in LR_STATE.items() if k != "_sklearn_version"}  # setstate pops it
    assert vars(first) == vars(second) == expected


# -- a checked container changed afterwards by a setter it is also given ---------------------
def _shared_vocabulary_jar(order: str) -> tuple[bytes, Any, list[str]]:
    """A text pipeline whose vectorizer's vocabulary_ is also, through a shared reference,
    the whole state of another estimator - placed after the vectorizer (so its setter runs
    after the vocabulary was checked) or before it. BaseEstimator.__setstate__ pops
    ``_sklearn_version`` from the dict it is given: here a term of the vocabulary, whose
    loss would leave a column index past the vocabulary's end."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    texts = ["spam free money _sklearn_version", "hello friend meeting", "free offer now",
             "lunch tomorrow friend"]
    model = Pipeline([("vec", CountVectorizer()), ("clf", LogisticRegression())])
    model.fit(texts, [1, 0, 1, 0])
    jar = jarcraft.decode(skjar.dumps(model))
    pipeline_state = jarcraft.Jar.state(jar.root)
    vectorizer_state = jarcraft.Jar.state(pipeline_state["steps"][0].payload[1])
    scaler = "sklearn.preprocessing._data.StandardScaler"
    jar.header["names"].append(name_entry(scaler, "sklearn.preprocessing._data"))
    vocabulary = vectorizer_state["vocabulary_"]
    if order == "setter after the check":
        vectorizer_state["vocabulary_"] = _def(777, vocabulary)
        pipeline_state["memory"] = _inst(scaler, _use(777))  # "memory" follows "steps"
    else:
        steps = pipeline_state.pop("steps")
        pipeline_state["memory"] = _inst(scaler, _def(777, vocabulary))
        pipeline_state["steps"] = steps  # now after "memory"
        vectorizer_state["vocabulary_"] = _use(777)
    return jarcraft.encode(jar), model, texts


# The compiled walker's case needs the helpers, which CI builds (test_speedups.py fails
# without them); as there, only SKJAR_ALLOW_PURE_PYTHON=1 excuses their absence.
_WITH_WALKER = pytest.param(True, marks=pytest.mark.skipif(
    _compiled.speedups is None and os.environ.get("SKJAR_ALLOW_PURE_PYTHON") == "1",
    reason="SKJAR_ALLOW_PURE_PYTHON=1: the compiled helpers are not built here",
))


@pytest.mark.parametrize("order", ["setter after the check", "setter before the check"])
@pytest.mark.parametrize("compiled", [_WITH_WALKER, False])
def test_a_setter_cannot_change_a_checked_container_it_shares(
    order: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setters get a copy of a dict or list state: the vocabulary stays as it was checked,
    with the compiled walker and without it."""
    data, model, texts = _shared_vocabulary_jar(order)
    if not compiled:
        monkeypatch.setattr(_compiled, "speedups", None)
    else:
        assert _compiled.speedups is not None, "skjar._speedups is not built: reinstall"
    with pytest.warns(Warning):  # the scaler's state names no scikit-learn version
        loaded = skjar.loads(data)
    assert loaded[0].vocabulary_ == model[0].vocabulary_
    assert "_sklearn_version" not in vars(loaded.memory)
    assert (loaded.predict(texts) == model.predict(texts)).all()


# -- an index array shared with something that may change it after the load ------------------
def _find(value: Any, name: str) -> Ext:
    found: list[Ext] = []

    def walk(v: Any) -> None:
        if isinstance(v, Ext):
            first = v.payload[0] if v.code == nodes.INSTANCE else None
            if isinstance(first, Ext) and first.code == nodes.SHARED_DEF:
                first = first.payload[1]  # a class name written once, shared after
            if first == name:
                found.append(v)
            walk(v.payload)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    walk(value)
    return found[0]


@pytest.mark.parametrize("order", ["tree first", "scaler first"])
@pytest.mark.parametrize("compiled", [True, False])
def test_an_index_array_shared_with_another_object_is_refused(
    order: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A KD tree queries with its idx_array unchecked once check_binary_tree has passed
    it. A file made it also a StandardScaler's n_samples_seen_, to which partial_fit
    (with_mean and with_std off) adds in place: after the load, one partial_fit took the
    indices to 1,000,029 for 30 rows. The load refuses such sharing, in either order."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from skjar.errors import CorruptFileError

    rng = np.random.default_rng(0)
    X = rng.random((30, 3))
    parts = {"knn": KNeighborsClassifier(algorithm="kd_tree").fit(X, (X[:, 0] > 0.5)),
             "scaler": StandardScaler(with_mean=False, with_std=False).fit(rng.random((5, 30)))}
    model = parts if order == "tree first" else {"scaler": parts["scaler"], "knn": parts["knn"]}
    assert skjar.loads(skjar.dumps(model))["knn"].predict(X[:3]) is not None  # honest: loads
    jar = jarcraft.decode(skjar.dumps(model))
    tree_state = jarcraft.Jar.state(_find(jar.root, "sklearn.neighbors._kd_tree.KDTree"))
    scaler_state = jarcraft.Jar.state(_find(jar.root, "sklearn.preprocessing._data.StandardScaler"))
    if order == "tree first":
        tree_state[1] = _def(555, tree_state[1])
        scaler_state["n_samples_seen_"] = _use(555)
    else:
        scaler_state["n_samples_seen_"] = _def(555, tree_state[1])
        tree_state[1] = _use(555)
    if not compiled:
        monkeypatch.setattr(_compiled, "speedups", None)
    with pytest.raises(CorruptFileError, match="index array it holds is shared"):
        skjar.loads(jarcraft.encode(jar))


def test_every_owned_index_declaration_has_a_meaning_check() -> None:
    """Owned index arrays are noted after the meaning check runs: a class without one
    would never be noted."""
    from skjar.codec.registry import OWNED_INDEXES, VALIDATORS

    assert OWNED_INDEXES
    assert set(OWNED_INDEXES) <= set(VALIDATORS)


@pytest.mark.parametrize(
    "name, key",
    [("scipy.sparse._csr.csr_matrix", "indices"), ("scipy.sparse._csr.csr_matrix", "indptr"),
     ("sklearn.svm._classes.SVC", "support_"), ("sklearn.svm._classes.SVC", "_n_support")],
)
def test_index_arrays_of_sparse_matrices_and_svms_are_their_own(name: str, key: str) -> None:
    """The same rule for the other holders of indices their compiled code follows:
    here the array is also placed, as is, beside the model."""
    import scipy.sparse as sp
    from sklearn.svm import SVC

    from skjar.errors import CorruptFileError

    rng = np.random.default_rng(0)
    X = rng.random((20, 3))
    part = (sp.csr_matrix(np.eye(4)) if name.startswith("scipy")
            else SVC().fit(X, (X[:, 0] > 0.5).astype(int)))
    model = [part, None]
    skjar.loads(skjar.dumps(model))  # honest: loads
    jar = jarcraft.decode(skjar.dumps(model))
    state = jarcraft.Jar.state(_find(jar.root, name))
    state[key] = _def(555, state[key])
    jar.root[1] = _use(555)
    with pytest.raises(CorruptFileError, match="index array it holds is shared"):
        skjar.loads(jarcraft.encode(jar))


def test_a_predictors_node_array_is_its_own() -> None:
    """HistGradientBoosting's compiled prediction follows each predictor's children
    unchecked, from the node array the predictor keeps by reference."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from skjar.errors import CorruptFileError

    rng = np.random.default_rng(0)
    X = rng.random((60, 3))
    model = [HistGradientBoostingClassifier(max_iter=2).fit(X, (X[:, 0] > 0.5).astype(int)), None]
    jar = jarcraft.decode(skjar.dumps(model))
    name = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    state = jarcraft.Jar.state(_find(jar.root, name))
    state["nodes"] = _def(555, state["nodes"])
    jar.root[1] = _use(555)
    with pytest.raises(CorruptFileError, match="index array it holds is shared"):
        skjar.loads(jarcraft.encode(jar))
