"""The compiled tree walker (src/skjar/_walk.c) against its Python twin (Decoder._ext_hook).

Every load with the compiled helpers walks the tree in C; the whole suite runs on
that path. Here both walkers decode the same trees - random ones, damaged ones and
ones at each limit - and must agree: equal objects, or both refused.
"""

from __future__ import annotations

import math
import sys
import threading
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarcraft import Ext, pack_tree
from skjar import _compiled
from skjar.codec import nodes
from skjar.codec.decoder import ARRAY_DTYPES, LOOKED_UP, Decoder
from skjar.codec.numpy import _STRUCTURED_DESCRS, _native, descr_dtype, dtype_descr
from skjar.codec.registry import DECODERS
from skjar.errors import SkjarError
from skjar.format.spec import INLINE_MAX, MAX_NESTING
from skjar.trust import TrustPolicy
from test_registry import FUZZ_NAMES
from test_speedups import needs_speedups, speedups

pytestmark = needs_speedups

DECLARED = {name: (module, frozenset(uses)) for name, (module, uses) in FUZZ_NAMES.items()}


def decode(
    tree: bytes, compiled: bool, buffers: tuple[bytes, ...] = (), declared: Any = None,
    trusted: Any = (),
) -> tuple[Any, ...]:
    """("ok", value) or ("refused", message) from one walker."""
    saved = _compiled.speedups
    _compiled.speedups = speedups if compiled else None
    try:
        arrays = [np.frombuffer(bytearray(b), dtype=np.uint8) for b in buffers]
        decoder = Decoder(arrays, DECLARED if declared is None else declared, TrustPolicy(trusted))
        return ("ok", decoder.decode_root(tree))
    except SkjarError as exc:
        return ("refused", str(exc))
    finally:
        _compiled.speedups = saved


def same(a: Any, b: Any) -> bool:
    """Structural equality of decoded values (NaN equals NaN, arrays by bytes), walked
    with a stack of its own: trees nest deeper than Python's recursion limit."""
    stack, seen = [(a, b)], set()
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                return False
        elif isinstance(x, np.ndarray):
            if x.dtype != y.dtype or x.shape != y.shape:
                return False
            if x.dtype.hasobject:
                stack.extend(zip(x.flat, y.flat))
            elif x.tobytes() != y.tobytes():
                return False
        elif id(x) in seen:  # shared values: compared once
            continue
        elif isinstance(x, (set, frozenset)):
            # By their items' reprs, in order: a NaN item hashes by identity (Python 3.10+),
            # so equal sets may iterate in different orders and never compare equal.
            if sorted(map(repr, x)) != sorted(map(repr, y)):
                return False
        elif isinstance(x, (list, tuple)):
            seen.add(id(x))
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif isinstance(x, dict):
            seen.add(id(x))
            if list(map(repr, x)) != list(map(repr, y)):
                return False
            stack.extend(zip(x.values(), y.values()))
        elif type(x).__module__ != "builtins" and isinstance(getattr(x, "__dict__", None), dict):
            seen.add(id(x))  # an instance: compared by its attributes
            stack.append((vars(x), vars(y)))
        else:
            try:
                equal = bool(x == y)
            except Exception:
                equal = False
            if not equal and type(x).__module__ != "builtins":
                seen.add(id(x))  # an extension or slotted type (a Cython Tree): by its state
                stack.append((_state(x), _state(y)))
            elif not equal and repr(x) != repr(y):
                return False
    return True


def _state(obj: Any) -> Any:
    """What pickle would store of ``obj``: its state, or (Python 3.10's object has no
    __getstate__) its reduction's arguments and state."""
    getstate = getattr(obj, "__getstate__", None)
    return getstate() if getstate is not None else obj.__reduce_ex__(4)[1:3]


def agree(
    tree: bytes, buffers: tuple[bytes, ...] = (), declared: Any = None, trusted: Any = (),
    same_message: bool = False,
) -> tuple[Any, ...]:
    """Both walkers load ``tree`` to the same value, or both refuse it - with the very
    same message if ``same_message`` (msgpack-level damage is worded by each its own way)."""
    compiled = decode(tree, True, buffers, declared, trusted)
    twin = decode(tree, False, buffers, declared, trusted)
    assert compiled[0] == twin[0], f"compiled {compiled!r:.300} but the twin {twin!r:.300}"
    if compiled[0] == "refused" and same_message:
        assert compiled[1] == twin[1]
    if compiled[0] == "ok":
        assert same(compiled[1], twin[1]), f"{compiled[1]!r:.300} != {twin[1]!r:.300}"
    return compiled


CODES = sorted({*DECODERS, nodes.SHARED_DEF, nodes.SHARED_REF, 0, 99})  # -1: see below
ATOMS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.integers(-(2**63), 2**64 - 1),
    st.floats(), st.sampled_from(sorted(FUZZ_NAMES)), st.text(max_size=6),
    st.binary(max_size=16), st.sampled_from(["<f8", "|u1", "<U3", "O", "|V0", "|S0"]),
)
TREES = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(0, 3)), inner, max_size=4),
        st.builds(Ext, st.sampled_from(CODES), inner),
        st.builds(lambda i, v: Ext(nodes.SHARED_DEF, [i, v]), st.integers(0, 2), inner),
        st.builds(lambda i: Ext(nodes.SHARED_REF, i), st.integers(0, 2)),
    ),
    max_leaves=16,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, buffers=st.lists(st.binary(max_size=24), max_size=2))
def test_random_trees_decode_alike(tree: Any, buffers: list[bytes]) -> None:
    agree(pack_tree(tree), tuple(buffers))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, data=st.data())
def test_damaged_trees_decode_alike(tree: Any, data: st.DataObject) -> None:
    raw = bytearray(pack_tree(tree))
    how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    at = data.draw(st.integers(0, len(raw)))
    if how == "flip" and at < len(raw):
        raw[at] = data.draw(st.integers(0, 255))
    elif how == "cut":
        del raw[at:]
    else:
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    agree(bytes(raw))


def _fitted_models() -> list[Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X, y = rng.random((60, 3)), np.arange(60) % 2
    return [
        LogisticRegression().fit(X, y),
        KNeighborsClassifier(2).fit(X, y),
        RandomForestClassifier(3, random_state=0).fit(X, y),
        GradientBoostingClassifier(n_estimators=3, random_state=0).fit(X, y),
        HistGradientBoostingClassifier(max_iter=3).fit(X, y),
        MLPClassifier((4,), max_iter=5, random_state=0).fit(X, y),
        make_pipeline(ColumnTransformer([("s", StandardScaler(), [0, 1])]),
                      LogisticRegression()).fit(X, y),
    ]


def test_skjars_own_trees_decode_alike() -> None:
    """Models (instances, reconstructed Cython trees, keyed dicts, arrays) and plain values
    decode to equal objects, attribute by attribute, with either walker."""
    import warnings

    import skjar
    from skjar.format.header import declared_names
    from skjar.format.reader import open_source

    X = np.random.default_rng(1).random((7, 3))
    shared = [1.5, "x"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLP's convergence warning
        models = _fitted_models()
    for value in (*models, {"a": [1, 2.5, None], 3: (4, 5)}, [np.arange(3)] * 2,
                  [shared, shared]):
        raw = open_source(skjar.dumps(value), mmap=False, admit=declared_names)
        status, loaded = agree(bytes(raw.tree), tuple(b.tobytes() for b in raw.buffers),
                               raw.declared)
        assert status == "ok"
        if value in models:
            assert (loaded.predict(X) == value.predict(X)).all()


@pytest.mark.parametrize("depth", [1023, 1024, 1025])
@pytest.mark.parametrize("inside_a_node", [False, True])
def test_container_depth_is_msgpacks(depth: int, inside_a_node: bool) -> None:
    """Containers nest at most 1024 deep in one payload, as in msgpack.unpackb."""
    nested = b"\x91" * depth + b"\xc0"
    tree = msgpack.packb(msgpack.ExtType(nodes.TUPLE, nested)) if inside_a_node else nested
    outcome = agree(tree)
    assert (outcome[0] == "ok") == (depth <= 1024)
    if depth > 1024:
        assert "nested too deeply" in outcome[1] or "StackError" in outcome[1]


@pytest.mark.parametrize("levels", [MAX_NESTING, MAX_NESTING + 1])
def test_typed_node_depth_cap(levels: int) -> None:
    tree: Any = 1
    for _ in range(levels):
        tree = Ext(nodes.TUPLE, [tree])
    outcome = agree(pack_tree(tree))
    assert (outcome[0] == "ok") == (levels <= MAX_NESTING)


@pytest.mark.parametrize(
    "tree",
    [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
     b"\xc6\xff\xff\xff\xff", b"\xc9\xff\xff\xff\xff\x14", b"\x92\x01", b"", b"\xc1",
     b"\x01\x02", b"\xd4\x14\x01", b"\xc7\x00\x14", b"\xa2\xff\xfe", b"\x82\xa1a\x01\xa1a\x02"],
    ids=repr,
)
def test_counts_are_not_trusted(tree: bytes) -> None:
    """A count past the data is refused before anything is allocated, by both."""
    assert agree(tree)[0] == "refused"


def test_map_keys_are_interned_and_other_keys_go_to_the_hook() -> None:
    key = "".join(["attr", "ibute_"])  # not interned by the compiler
    status, value = decode(msgpack.packb([{key: 1}, {1: "a", "b": 2}, {"b": 2, 1: "a"}]), True)
    assert status == "ok" and value == [{key: 1}, {1: "a", "b": 2}, {"b": 2, 1: "a"}]
    assert sys.intern(key) is next(iter(value[0]))
    assert list(value[2]) == ["b", 1]  # order kept when the map changes to pairs


def test_the_walk_reads_its_static_tuple_in_place_and_refuses_another() -> None:
    """The walker reads decoder.WALK_STATIC's nested tuples itself (without a reference
    taken per item); a tuple of another shape, or with an item of the wrong type where it
    checks one, is a TypeError before anything is read, and walk_plan's and walk_setter's
    steps are read the same way."""
    from skjar.codec.decoder import WALK_STATIC, walk_static

    static = WALK_STATIC or walk_static()
    tree = msgpack.packb([1, {"a": 2}])
    decoder = Decoder([], {}, TrustPolicy())

    def walk(static_: Any) -> Any:
        return speedups.walk(tree, decoder, decoder.safe_dict, {}, [], {}, {}, None, static_)

    assert walk(static) == [1, {"a": 2}]
    limits, arrays, steps = static[2], static[3], static[4]
    broken = [
        static[:4],
        (None, *static[1:]),  # decoders: a dict
        (*static[:2], (*limits[:4],), *static[3:]),
        (*static[:2], ("many", *limits[1:]), *static[3:]),
        (*static[:2], (limits[0], 1 << 40, *limits[2:]), *static[3:]),  # past an int
        (*static[:3], (*arrays[:5], [], arrays[6]), steps),  # dtypes: a dict
        (*static[:4], (*steps[:11], [], *steps[12:])),  # encoders: a dict
        (*static[:4], (*steps[:14], list(steps[14]), *steps[15:])),  # not_stateful: a tuple
        (*static[:4], (*steps[:16], 1.5)),
        (*static[:4], steps + (0,)),
    ]
    for bad in broken:
        with pytest.raises(TypeError, match="static tuple"):
            walk(bad)
    with pytest.raises(TypeError, match="static tuple"):
        speedups.walk_setter((*static[:4], (*steps[:12], None, *steps[13:])), int)


def test_deep_trees_do_not_touch_the_c_stack() -> None:
    """100 nested nodes of 1024 nested lists each: the walk's stack is on the heap,
    so it loads in a thread with a 256 KiB stack (the twin would need 4 MiB)."""
    payload = b"\x91" * 1024 + b"\xc0"
    for _ in range(MAX_NESTING):
        payload = b"\x91" * 1023 + msgpack.packb(msgpack.ExtType(nodes.TUPLE, payload))
    out: list[Any] = []
    old = threading.stack_size(256 << 10)
    try:
        worker = threading.Thread(target=lambda: out.append(decode(payload, True)))
        worker.start()
        worker.join()
    finally:
        threading.stack_size(old)
    assert out and out[0][0] == "ok"


def test_timestamps_are_unknown_nodes() -> None:
    tree = msgpack.packb([msgpack.Timestamp(1, 2)])
    assert decode(tree, True) == ("refused", "unknown node code -1")
    assert decode(tree, False)[0] == "refused"


def test_shared_nodes_resolve_in_c_and_fail_in_the_twin() -> None:
    shared = [Ext(nodes.SHARED_DEF, [7, [1, 2]]), Ext(nodes.SHARED_REF, 7)]
    status, value = agree(pack_tree(shared))
    assert status == "ok" and value[0] is value[1]
    for bad, message in (
        ([Ext(nodes.SHARED_REF, 7)], "undefined shared object 7"),
        ([Ext(nodes.SHARED_DEF, [7, 1]), Ext(nodes.SHARED_DEF, [7, 1])], "defined twice"),
        ([Ext(nodes.SHARED_DEF, [True, 1])], "invalid or defined twice"),
    ):
        compiled, twin = decode(pack_tree(bad), True), decode(pack_tree(bad), False)
        assert compiled == twin and message in compiled[1]


def test_handler_errors_pass_through_unchanged() -> None:
    tree = pack_tree(Ext(nodes.REF, "os.system"))
    compiled, twin = decode(tree, True), decode(tree, False)
    assert compiled == twin and compiled[0] == "refused" and "os.system" in compiled[1]


# -- arrays: the walker builds common NDARRAY nodes itself --------------------------
STRUCTURED = [["left", "<i8"], ["value", "<f8"], ["flag", "|u1"]]
descr_dtype(STRUCTURED)  # validated once, as a first load would


@pytest.mark.parametrize("descr", [*sorted(d for d in ARRAY_DTYPES if type(d) is str), STRUCTURED],
                         ids=str)
@pytest.mark.parametrize("shape,fortran", [([], False), ([5], False), ([2, 3], False),
                                           ([2, 3], True), ([1, 2, 2], True), ([40, 3], False),
                                           ([0], False), ([0, 3], True), ([3, 0], False)])
@pytest.mark.parametrize("inline", [False, True])
def test_arrays_build_alike(descr: Any, shape: list[int], fortran: bool, inline: bool) -> None:
    dtype = descr_dtype(descr)
    data = bytes(range(256)) * 20
    data = data[: math.prod(shape) * dtype.itemsize]
    tree = pack_tree(Ext(nodes.NDARRAY, [descr, shape, fortran, data if inline else 0]))
    status, array = agree(tree, () if inline else (data,))
    if inline and len(data) > INLINE_MAX:  # a writer stores these out of line
        assert status == "refused" and "larger than inline arrays may be" in array
        return
    assert status == "ok" and array.dtype == dtype and list(array.shape) == shape
    assert array.tobytes(order="F" if fortran else "C") == data
    assert (array.ndim < 2 or not data or array.flags.f_contiguous == fortran) and array.flags.writeable
    if data:
        assert type(array.base) is (bytearray if inline else np.ndarray)
    else:  # an empty array owns its (empty) memory, as np.empty makes it
        assert array.base is None and array.flags.owndata


def test_the_walker_builds_those_arrays_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inline, out of line, structured, empty: once the Python handler has validated each
    dtype, no call reaches it."""
    from skjar.codec import numpy as handlers

    tree = pack_tree([Ext(nodes.NDARRAY, ["<f8", [2], False, bytes(16)]),
                      Ext(nodes.NDARRAY, ["<i4", [2, 2], True, 0]),
                      Ext(nodes.NDARRAY, [STRUCTURED, [1], False, bytes(17)]),
                      Ext(nodes.NDARRAY, ["<u4", [0, 8], False, b""])])
    # Room to cache them, whatever ran before in this process (the cache stops at 4,096).
    monkeypatch.setattr(handlers, "_DTYPES", {})
    assert decode(tree, True, (bytes(16),))[0] == "ok"
    calls: list[Any] = []
    monkeypatch.setitem(DECODERS, nodes.NDARRAY, lambda dec, payload: calls.append(payload))
    status, arrays = decode(tree, True, (bytes(16),))
    assert status == "ok" and not calls
    assert [a.shape for a in arrays] == [(2,), (2, 2), (1,), (0, 8)]


def _sklearn_records() -> list[np.dtype[Any]]:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.neighbors import KDTree
    from sklearn.tree._tree import NODE_DTYPE

    return [NODE_DTYPE, PREDICTOR_RECORD_DTYPE, KDTree(np.zeros((2, 1))).__getstate__()[2].dtype]


@pytest.mark.parametrize("record", _sklearn_records(), ids=["tree", "hgb-predictor", "kd-tree"])
def test_scikit_learns_node_records_are_validated_at_import(record: np.dtype[Any]) -> None:
    """A fresh process finds the installed scikit-learn's node records among the dtypes
    validated at import (spelled as the writer spells them), so its first load of a
    tree model skips numpy's descr_to_dtype. Fails when scikit-learn changes a record:
    update ``_STRUCTURED_DESCRS`` in codec/numpy.py."""
    descr = dtype_descr(record, ())
    assert descr in [_native(d) for d in _STRUCTURED_DESCRS]
    spec = tuple(tuple(field) for field in descr)
    assert ARRAY_DTYPES[spec][0] == record


@pytest.mark.parametrize(
    "payload,buffers",
    [
        (["<f8", [2], False, 0], (b"\x00" * 8,)),  # too small
        (["<f8", [2], False, 0], (b"\x00" * 24,)),  # too large
        (["<f8", [0], False, 0], (b"\x00",)),  # empty, but its buffer is not
        (["<f8", [0], False, b"\x00"], ()),
        (["<f8", [0, 2**62], False, b""], ()),  # empty, yet too big for numpy: both raise
        (["<f8", [0, 2**62], False, 0], (b"",)),
        (["<f8", [2], False, 1], (b"\x00" * 16,)),  # no such buffer
        (["<f8", [2], False, -1], (b"\x00" * 16,)),
        (["<f8", [2], False, True], (b"\x00" * 16,)),
        (["<f8", [2], 1, 0], (b"\x00" * 16,)),
        (["<f8", [-2], False, 0], (b"\x00" * 16,)),
        (["<f8", [2**62, 2**62], False, 0], (b"\x00" * 16,)),  # overflowing size
        (["<f8", [1] * 65, False, 0], (b"\x00" * 8,)),  # too many dimensions
        (["<f8", [2.0], False, 0], (b"\x00" * 16,)),
        (["O", [2], False, 0], (b"\x00" * 16,)),  # object dtype: refused by the handler
        (["|V0", [2], False, 0], (b"",)),  # zero-size items
        ([">f8", [2], False, 0], (b"\x00" * 16,)),  # not pre-validated: the handler's path
        (["<f8", [2], False, b"\x00" * 8], ()),  # inline, too small
        (["<f8", [20], False, b"\x00" * 160], ()),  # inline, larger than inline arrays may be
        ([[["a", "<f8"], ["b", "O"]], [1], False, b"\x00" * 16], ()),  # object field
        ([[["a", "<f8", [2]]], [1], False, b"\x00" * 16], ()),  # sub-array: the handler's path
        ([[], [1], False, b"\x00" * 16], ()),
        ([[["a", 1]], [1], False, b"\x00" * 16], ()),
        (["<f8", [2], False, 0, 0], (b"\x00" * 16,)),
        ([b"<f8", [2], False, 0], (b"\x00" * 16,)),
    ],
    ids=repr,
)
def test_unusual_arrays_are_left_to_the_handler(payload: list[Any], buffers: tuple[bytes]) -> None:
    agree(pack_tree(Ext(nodes.NDARRAY, payload)), buffers)


def test_a_buffer_used_twice_is_refused_by_both() -> None:
    array = Ext(nodes.NDARRAY, ["<f8", [2], False, 0])
    status, message = agree(pack_tree([array, array]), (b"\x00" * 16,))
    assert status == "refused" and "used twice" in message


ARRAYS = st.builds(
    lambda descr, shape, fortran, index: Ext(nodes.NDARRAY, [descr, shape, fortran, index]),
    st.sampled_from(["<f8", "<i4", "|u1", "|b1", ">f8", "O", "|V0"]),
    st.lists(st.integers(-1, 4), max_size=3), st.booleans(), st.integers(-1, 2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays=st.lists(ARRAYS, max_size=4), sizes=st.lists(st.integers(0, 40), max_size=3))
def test_random_arrays_build_alike(arrays: list[Any], sizes: list[int]) -> None:
    agree(pack_tree(arrays), tuple(bytes(n) for n in sizes))


# -- objects: the walker builds INSTANCE and RECONSTRUCT nodes itself ----------------
class Setter:
    """A class with its own __setstate__ (any dict keys), which may fail."""

    def __setstate__(self, state: dict[Any, Any]) -> None:
        if "boom" in state:
            raise ValueError("boom")
        self.__dict__.update({str(k): v for k, v in state.items()})


class Plain:
    """No __setstate__: the handlers' __dict__ path (objects._finish here)."""


class Cythonish:
    """A class pickled the way Cython's auto-pickling does (state mode 2)."""

    def __setstate_cython__(self, state: Any) -> None:
        if state == "boom":
            raise TypeError("not a state")
        self.got = state


class Slotted:
    __slots__ = ("a",)


class OddNew:
    def __new__(cls) -> Any:  # returns another type, on purpose
        return 5


def make(*args: Any) -> Setter:
    if args == ("fail",):
        raise KeyError("no such thing")
    return object.__new__(Setter)


OBJECT_CLASSES = [Setter, Plain, Cythonish, Slotted, OddNew]
TRUSTED = [*OBJECT_CLASSES, (make, "call")]
OBJECT_DECLARED = {
    **{f"test_walk.{c.__name__}": ("test_walk", frozenset({"object"})) for c in OBJECT_CLASSES},
    "test_walk.make": ("test_walk", frozenset({"call"})),
    "test_walk.Undeclared": ("test_walk", frozenset({"value"})),  # declared, not as object
    "numpy.random.mtrand.RandomState": ("numpy.random.mtrand", frozenset({"object"})),
    "sklearn.preprocessing._data.StandardScaler": ("sklearn.preprocessing._data",
                                                   frozenset({"object"})),
    "sklearn.tree._tree.Tree": ("sklearn.tree._tree", frozenset({"call"})),
}
SCALER = "sklearn.preprocessing._data.StandardScaler"
COUNTER = "sklearn.feature_extraction.text.CountVectorizer"  # has a meaning check
OBJECT_DECLARED[COUNTER] = ("sklearn.feature_extraction.text", frozenset({"object"}))


def _instance(name: str, state: Any, mode: int = 1, kind: int = 0, items: Any = None) -> Ext:
    return Ext(nodes.INSTANCE, [name, mode, state, kind, items])


def _reconstruct(name: str, args: Any, state: Any, mode: int = 1) -> Ext:
    return Ext(nodes.RECONSTRUCT, [name, args, mode, state, 0, None])


def _scaler_state(**extra: Any) -> dict[str, Any]:
    import sklearn

    return {"with_mean": True, "with_std": True, "copy": True, "n_features_in_": 1,
            "n_samples_seen_": 3, "_sklearn_version": sklearn.__version__, **extra}


def _tuple(*items: Any) -> Ext:
    return Ext(nodes.TUPLE, list(items))


def _floats(*values: float) -> Ext:
    return Ext(nodes.NDARRAY, ["<f8", [len(values)], False, np.array(values, "<f8").tobytes()])


OBJECT_NODES = {
    "setter": _instance("test_walk.Setter", {"a": 1, "b": [2]}),
    "setter, int keys": _instance("test_walk.Setter", {1: "x"}),
    "setter raises": _instance("test_walk.Setter", {"boom": 1}),
    "setter, no state": _instance("test_walk.Setter", None, mode=0),
    "setter, list state": _instance("test_walk.Setter", [1, 2]),
    "setter, none state in default mode": _instance("test_walk.Setter", None),
    "estimator, list state": _instance(SCALER, [1, 2]),
    "estimator, none state": _instance(SCALER, None),
    "setter, tuple state": _instance("test_walk.Setter", _tuple({"a": 1}, None)),
    "setter, bool mode": _instance("test_walk.Setter", {"a": 1}, mode=True),  # type: ignore[arg-type]
    "setter, unknown mode": _instance("test_walk.Setter", {"a": 1}, mode=7),
    "setter, cython mode": _instance("test_walk.Setter", {"a": 1}, mode=2),
    "setter, huge mode": _instance("test_walk.Setter", {"a": 1}, mode=2**63 + 5),
    "setter, huge kind": _instance("test_walk.Setter", {"a": 1}, kind=2**63 + 5),
    "cython": _instance("test_walk.Cythonish", [1, 2], mode=2),
    "cython, default mode": _instance("test_walk.Cythonish", {"a": 1}),
    "cython, setter raises": _instance("test_walk.Cythonish", "boom", mode=2),
    "setter, items": _instance("test_walk.Setter", {"a": 1}, kind=1, items=[1]),
    "plain": _instance("test_walk.Plain", {"a": 1}),
    "plain, int keys": _instance("test_walk.Plain", {1: 1}),
    "slotted": _instance("test_walk.Slotted", _tuple(None, {"a": 1})),
    "slotted, bad slot": _instance("test_walk.Slotted", _tuple(None, {"__class__": 1})),
    "odd new": _instance("test_walk.OddNew", {"a": 1}),
    "undeclared": _instance("test_walk.Nowhere", {"a": 1}),
    "declared as a value only": _instance("test_walk.Undeclared", {"a": 1}),
    "own node": _instance("numpy.random.mtrand.RandomState", {"a": 1}),
    "not a name": _instance(7, {"a": 1}),  # type: ignore[arg-type]
    "short payload": Ext(nodes.INSTANCE, ["test_walk.Setter", 1, {}]),
    "estimator": _instance(SCALER, _scaler_state(mean_=_floats(0.0), var_=_floats(1.0),
                                                 scale_=_floats(1.0))),
    "estimator, int key": _instance(SCALER, {**_scaler_state(), 5: 1}),
    "checked estimator": _instance(COUNTER, {"vocabulary_": {"a": 1, "b": 0}}),
    "checked estimator, check fails": _instance(COUNTER, {"vocabulary_": {"a": 1, "b": 1}}),
    "estimator, unfitted": _instance(SCALER, {k: v for k, v in _scaler_state().items()
                                              if k != "n_features_in_"}),
    "call": _reconstruct("test_walk.make", [1, 2], {"a": 1}),
    "call fails": _reconstruct("test_walk.make", ["fail"], {"a": 1}),
    "call, args not a list": _reconstruct("test_walk.make", {"a": 1}, None, mode=0),
    "call, no state": _reconstruct("test_walk.make", [], None, mode=0),
    "call, state with mode none": _reconstruct("test_walk.make", [], {"a": 1}, mode=0),
    "call of a class as an object": _reconstruct("test_walk.Setter", [], None, mode=0),
    "tree, bad args": _reconstruct("sklearn.tree._tree.Tree", [1, 2], {"nodes": None}),
    "tree, bad state": _reconstruct("sklearn.tree._tree.Tree",
                                    [1, Ext(nodes.NDARRAY, ["<i8", [1], False, bytes(8)]), 1],
                                    {"nodes": None}),
    "pending shell": [Ext(nodes.SHARED_DEF, [0, Ext(nodes.NEWOBJ, "test_walk.Setter")]),
                      _instance(COUNTER, {"vocabulary_": {"a": 0}, "x": Ext(nodes.SHARED_REF, 0)})],
    "shared state, twice": [Ext(nodes.SHARED_DEF, [0, {"a": 1}]),
                            _instance("test_walk.Setter", Ext(nodes.SHARED_REF, 0)),
                            _instance("test_walk.Setter", Ext(nodes.SHARED_REF, 0))],
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # scikit-learn's version warnings
@pytest.mark.parametrize("node", OBJECT_NODES.values(), ids=OBJECT_NODES.keys())
def test_objects_build_alike(node: Any) -> None:
    """The same objects, or the same refusal, with or without the walker's object path."""
    agree(pack_tree(node), declared=OBJECT_DECLARED, trusted=TRUSTED, same_message=True)


def test_the_walker_builds_objects_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    for code in (nodes.INSTANCE, nodes.RECONSTRUCT, nodes.ZIPDICT):
        monkeypatch.setitem(DECODERS, code, lambda dec, payload, code=code: calls.append(code))
    tree = pack_tree([OBJECT_NODES["setter"], OBJECT_NODES["estimator"], OBJECT_NODES["call"],
                      Ext(nodes.ZIPDICT, [["a", "b"], [1, 2]])])
    status, (setter, scaler, made, keyed) = decode(tree, True, (), OBJECT_DECLARED, TRUSTED)
    assert status == "ok" and not calls
    assert vars(setter) == {"a": 1, "b": [2]} and scaler.n_features_in_ == 1
    assert vars(made) == {"a": 1} and keyed == {"a": 1, "b": 2}


def test_an_instance_state_is_charged_to_the_load() -> None:
    """One shared state dict given to many instances: each instance pays for its items, and
    the expansion budget stops the load with both walkers (the same message)."""
    big = {f"k{i}": i for i in range(2_000)}
    tree = pack_tree([Ext(nodes.SHARED_DEF, [0, big]),
                      *[_instance("test_walk.Setter", Ext(nodes.SHARED_REF, 0))] * 3_000])
    status, message = agree(tree, declared=OBJECT_DECLARED, trusted=TRUSTED, same_message=True)
    assert status == "refused" and "more container items than its size allows" in message


KEYED = {
    "keyed": Ext(nodes.ZIPDICT, [["a", "b"], [1, [2]]]),
    "empty": Ext(nodes.ZIPDICT, [[], []]),
    "duplicate keys": Ext(nodes.ZIPDICT, [["a", "a"], [1, 2]]),
    "int key": Ext(nodes.ZIPDICT, [["a", 1], [1, 2]]),
    "lengths differ": Ext(nodes.ZIPDICT, [["a"], [1, 2]]),
    "not lists": Ext(nodes.ZIPDICT, ["a", "b"]),
    "three parts": Ext(nodes.ZIPDICT, [["a"], [1], []]),
    "shared keys": [Ext(nodes.SHARED_DEF, [0, ["x", "y"]]),
                    Ext(nodes.ZIPDICT, [Ext(nodes.SHARED_REF, 0), [1, 2]]),
                    Ext(nodes.ZIPDICT, [Ext(nodes.SHARED_REF, 0), [3, 4]])],
    "shared keys past the budget": [
        Ext(nodes.SHARED_DEF, [0, [f"k{i}" for i in range(1_000)]]),
        *[Ext(nodes.ZIPDICT, [Ext(nodes.SHARED_REF, 0), Ext(nodes.SHARED_REF, 1)])] * 0,
        Ext(nodes.SHARED_DEF, [1, list(range(1_000))]),
        *[Ext(nodes.ZIPDICT, [Ext(nodes.SHARED_REF, 0), Ext(nodes.SHARED_REF, 1)])] * 5_000,
    ],
}


@pytest.mark.parametrize("node", KEYED.values(), ids=KEYED.keys())
def test_keyed_dicts_build_alike(node: Any) -> None:
    agree(pack_tree(node), same_message=True)


# -- plans and setters made in C (default_plan, class_setter) against objects._plan/_setter --
def _default_names() -> list[tuple[str, str, str]]:
    """(name, module, use) for every default name trusted to be made or called that
    exists here (not every name exists in every version of its library:
    _trusted_names.ONLY_IN_SOME_VERSIONS, held to that by test_trust)."""
    import importlib

    from skjar.trust import DEFAULT_TRUST

    out = []
    for name, entry in sorted(DEFAULT_TRUST.items()):
        assert entry.module is not None
        try:
            obj: Any = importlib.import_module(entry.module)
            for part in name[len(entry.module) + 1 :].split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            continue
        out += [(name, entry.module, use) for use in sorted(entry.uses) if use in ("object", "call")]
    return out


DEFAULT_NAMES = _default_names()


def _python_plan(declared: dict[str, Any], code: int, name: str) -> Any:
    from skjar.codec import objects
    from skjar.trust import TrustPolicy

    try:
        return objects._plan(Decoder([], declared, TrustPolicy()), code, name)
    except SkjarError as exc:
        return exc


def test_the_default_names_are_many() -> None:
    assert len(DEFAULT_NAMES) > 300  # the test below is not quietly empty


@pytest.mark.parametrize("name,module,use", DEFAULT_NAMES, ids=[f"{n}:{u}" for n, _, u in DEFAULT_NAMES])
def test_default_plans_are_the_pythons(name: str, module: str, use: str) -> None:
    """Made in C, a plan is the Python's to the object (an owned-index note's closure
    becomes the pair it closes over, which the walker runs as the closure does: see
    test_owned_indexes_are_noted_as_the_closure_notes_them); where C steps aside, the
    Python plan is one it must not make: a class with a node of its own, or a refusal."""
    from skjar.codec.decoder import WALK_STATIC
    from skjar.trust import DEFAULT_USES

    assert speedups is not None and WALK_STATIC is not None
    code = nodes.INSTANCE if use == "object" else nodes.RECONSTRUCT
    declared = {name: (module, frozenset({use}))}
    python = _python_plan(declared, code, name)
    compiled = speedups.walk_plan(declared, DEFAULT_USES, WALK_STATIC, code, name)
    from skjar.codec.registry import ENCODERS, OWNED_INDEXES, VALIDATORS

    if compiled is None:

        assert python is None or isinstance(python, SkjarError) or python[1] in ENCODERS, (
            name, python)
        return
    assert type(compiled) is tuple and type(python) is tuple, (compiled, python)
    assert compiled[0] == python[0] and compiled[1] is python[1], (compiled, python)
    if name in OWNED_INDEXES and name in VALIDATORS:
        assert python[2].__name__ == "check_and_note"
        assert compiled[2] == (VALIDATORS[name], OWNED_INDEXES[name])
    else:
        assert compiled[2] is python[2] or compiled[2] == python[2]


@pytest.mark.parametrize(
    "declared, known, name, code",
    [
        # not declared, or declared for another use, or under another module
        ({}, "defaults", "sklearn.preprocessing._data.StandardScaler", nodes.INSTANCE),
        ({"sklearn.preprocessing._data.StandardScaler": ("sklearn.preprocessing._data",
                                                         frozenset({"value"}))},
         "defaults", "sklearn.preprocessing._data.StandardScaler", nodes.INSTANCE),
        ({"sklearn.preprocessing._data.StandardScaler": ("sklearn.preprocessing",
                                                         frozenset({"object"}))},
         "defaults", "sklearn.preprocessing._data.StandardScaler", nodes.INSTANCE),
        # a load with trust of its own: the Python resolves
        ({"sklearn.preprocessing._data.StandardScaler": ("sklearn.preprocessing._data",
                                                         frozenset({"object"}))},
         None, "sklearn.preprocessing._data.StandardScaler", nodes.INSTANCE),
        # names the defaults do not hold, or hold for another use
        ({"os.system": ("os", frozenset({"call"}))}, "defaults", "os.system", nodes.RECONSTRUCT),
        ({"sklearn.preprocessing._data.StandardScaler": ("sklearn.preprocessing._data",
                                                         frozenset({"call"}))},
         "defaults", "sklearn.preprocessing._data.StandardScaler", nodes.RECONSTRUCT),
        # not a str
        ({}, "defaults", 42, nodes.INSTANCE),
    ],
)
def test_default_plans_step_aside(declared: Any, known: Any, name: Any, code: int) -> None:
    from skjar.codec.decoder import WALK_STATIC
    from skjar.trust import DEFAULT_USES

    assert speedups is not None
    known = DEFAULT_USES if known == "defaults" else known
    assert speedups.walk_plan(declared, known, WALK_STATIC, code, name) is None


@pytest.mark.parametrize(
    "entry, code",
    [
        (("fake.module.never.imported", "fake.module.never.imported.Thing"), nodes.INSTANCE),
        (("sklearn.base", "sklearn.base.NoSuchName"), nodes.INSTANCE),
        (("os", "os.path"), nodes.INSTANCE),  # a module
        (("math", "math.sqrt"), nodes.INSTANCE),  # not a class
        (("math", "math.pi"), nodes.RECONSTRUCT),  # not callable
        (("numpy.random._pcg64", "numpy.random._pcg64.PCG64"), nodes.INSTANCE),  # own node
    ],
)
def test_default_plans_step_aside_from_what_python_must_word(entry: tuple[str, str],
                                                             code: int) -> None:
    """Resolution that imports, fails, or finds the wrong kind of thing stays the
    Python's, which words it; here the defaults are made to hold each name."""
    from skjar.codec.decoder import WALK_STATIC

    assert speedups is not None
    module, name = entry
    use = "object" if code == nodes.INSTANCE else "call"
    declared = {name: (module, frozenset({use}))}
    known = {name: (module, frozenset({use}))}
    assert speedups.walk_plan(declared, known, WALK_STATIC, code, name) is None
    assert "fake.module.never.imported" not in sys.modules


def _default_classes() -> list[type]:
    from skjar.codec import objects
    from skjar.trust import DEFAULT_TRUST, TrustPolicy

    policy, out = TrustPolicy(), []
    for name, module, use in DEFAULT_NAMES:
        if use == "object":
            cls = policy.resolve(name, module, use)
            if isinstance(cls, type):
                out.append(cls)
    del DEFAULT_TRUST, objects
    return out


class _OddModule(str):
    pass


class _OddSetter:
    def __setstate__(self, state: Any) -> None:  # pragma: no cover - never called
        pass


_OddSetter.__setstate__.__module__ = _OddModule("sklearn.base")  # type: ignore[assignment]


@pytest.mark.parametrize("cls", [*_default_classes(), type, int, dict, np.ndarray, _OddSetter],
                         ids=lambda c: getattr(c, "__qualname__", str(c)))
def test_setters_are_the_pythons(cls: type) -> None:
    from skjar.codec import objects
    from skjar.codec.decoder import WALK_STATIC

    assert speedups is not None
    compiled = speedups.walk_setter(WALK_STATIC, cls)
    python = objects._setter(cls)
    if compiled is Ellipsis:  # a __module__ that is not a plain str: the Python decides
        assert cls is _OddSetter
        return
    assert compiled == python, (cls, compiled, python)


def test_the_walker_builds_flat_tuples_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to _UNTRACKED_WORK items, none a tuple, nothing costly on record: built in C;
    anything else goes to the handler, which records what track_tuple must."""
    from skjar.codec import builtins as handlers
    from skjar.codec.decoder import _UNTRACKED_WORK

    calls: list[int] = []

    def spy(dec: Decoder, payload: Any) -> Any:
        calls.append(len(payload))
        return handlers._dec_tuple(dec, payload)

    monkeypatch.setitem(DECODERS, nodes.TUPLE, spy)
    flat = Ext(nodes.TUPLE, list(range(_UNTRACKED_WORK)))
    status, value = decode(pack_tree([flat, Ext(nodes.TUPLE, [])]), True)
    assert status == "ok" and value == [tuple(range(_UNTRACKED_WORK)), ()] and not calls
    for tree, handled in (
        ([Ext(nodes.TUPLE, list(range(_UNTRACKED_WORK + 1)))], [_UNTRACKED_WORK + 1]),
        ([Ext(nodes.TUPLE, [Ext(nodes.TUPLE, [1])])], [1]),  # the outer (the inner is flat: C)
        # a big int on record: tuples after it are the handler's
        ([Ext(nodes.BIGINT, b"\x01" * 600), Ext(nodes.TUPLE, [1])], [1]),
    ):
        calls.clear()
        assert decode(pack_tree(tree), True)[0] == "ok"
        assert calls == handled, (tree, calls)


@pytest.mark.parametrize("items", [
    [], [1, "a", None], list(range(64)), list(range(65)), [[1, 2], {"a": 3}],
    [Ext(nodes.TUPLE, [1, 2])], [Ext(nodes.BIGINT, b"\x01" * 600)],
])
def test_tuples_build_alike(items: list[Any]) -> None:
    agree(pack_tree([Ext(nodes.TUPLE, items), Ext(nodes.SET, [Ext(nodes.TUPLE, items)])]),
          same_message=True)


SCALARS = [np.float64(1.5), np.float64(-0.0), np.float64("nan"), np.float32(2.5), np.float16(0.5),
           np.int8(-3), np.int64(-(2**63)), np.uint64(2**64 - 1), np.bool_(True), np.bool_(False),
           np.complex128(1 + 2j), np.complex64(-1j)]


def _scalar_node(value: np.generic, descr: str | None = None) -> Any:
    return Ext(nodes.NPSCALAR, [descr or value.dtype.str, value.tobytes()])


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_build_alike(value: np.generic) -> None:
    """The same type, dtype and bytes (-0.0 and NaN included) from both walkers."""
    results = [decode(pack_tree([_scalar_node(value)]), compiled) for compiled in (True, False)]
    for status, got in results:
        assert status == "ok"
        assert type(got[0]) is type(value) and got[0].dtype == value.dtype
        assert got[0].tobytes() == value.tobytes()


def test_the_walker_builds_scalars_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validated dtypes in C; a big-endian one only once the handler has validated it,
    a wrong size and a structured or unknown descr always by the handler."""
    from skjar.codec import numpy as handlers

    calls: list[Any] = []

    def spy(dec: Decoder, payload: Any) -> Any:
        calls.append(payload[0])
        return handlers._dec_scalar(dec, payload)

    monkeypatch.setitem(DECODERS, nodes.NPSCALAR, spy)
    assert decode(pack_tree([_scalar_node(v) for v in SCALARS]), True)[0] == "ok" and not calls
    wrong_size = Ext(nodes.NPSCALAR, ["<f8", b"\x00" * 4])
    assert decode(pack_tree([wrong_size]), True)[0] == "refused" and calls == ["<f8"]
    calls.clear()
    record = np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")])[0]
    structured = Ext(nodes.NPSCALAR, [[["a", "<i4"], ["b", "<f8"]], record.tobytes()])
    status, got = decode(pack_tree([structured]), True)
    assert status == "ok" and got[0] == record and len(calls) == 1
    calls.clear()
    # A big-endian descr: built by the handler until it has validated it, then in C
    # (given room in the cache, which stops at 4,096, whatever ran before).
    monkeypatch.setattr(handlers, "_DTYPES", {})
    monkeypatch.delitem(ARRAY_DTYPES, ">f8", raising=False)
    node = Ext(nodes.NPSCALAR, [">f8", np.array(3.25, ">f8").tobytes()])
    for _ in range(2):
        status, got = decode(pack_tree([node]), True)
        assert status == "ok" and got[0] == 3.25 and type(got[0]) is np.float64  # as numpy gives
    assert calls == [">f8"]


def test_owned_indexes_are_noted_as_the_closure_notes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled walker runs a plan's (check, owned) pair as objects._check_for's
    closure runs: the same arrays noted under the same names, in the same order, for
    the end of the load to prove them the object's own."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    import skjar
    from skjar import api

    rng = np.random.default_rng(0)
    X, y = rng.random((40, 3)), np.arange(40) % 2
    data = skjar.dumps([KNeighborsClassifier(algorithm="kd_tree").fit(X, y),
                        KNeighborsClassifier(algorithm="ball_tree").fit(X, y),
                        SVC().fit(X, y)])
    decoders: list[Decoder] = []

    class Recording(Decoder):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            decoders.append(self)

    monkeypatch.setattr(api, "Decoder", Recording)
    for compiled in (True, False):
        monkeypatch.setattr(_compiled, "speedups", speedups if compiled else None)
        skjar.loads(data)
    with_c, without = (d.owned_indexes for d in decoders)
    assert [name for name, _ in with_c] == [name for name, _ in without] == [
        "sklearn.neighbors._kd_tree.KDTree", "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.svm._classes.SVC"]
    for (_, ours), (_, theirs) in zip(with_c, without):
        assert len(ours) == len(theirs) and all(
            type(a) is type(b) and np.array_equal(a, b) for a, b in zip(ours, theirs))


class _SeesTheCollector:
    """Notes, as its state is set, whether the cyclic GC runs; refuses a state saying so."""

    seen: list[bool] = []

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def __setstate__(self, state: dict[str, Any]) -> None:
        import gc

        _SeesTheCollector.seen.append(gc.isenabled())
        if state["fail"]:
            raise ValueError("refused")
        self.__dict__.update(state)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("enabled", [True, False])
def test_a_load_pauses_the_collector_and_leaves_it_as_it_found_it(
    compiled: bool, enabled: bool
) -> None:
    """Both walkers build with the cyclic GC paused (millions of new objects are no
    garbage), and put it back as it was, also when a build fails."""
    import gc

    import skjar

    good = skjar.dumps([_SeesTheCollector()])
    bad = skjar.dumps([_SeesTheCollector(fail=True)])
    saved = _compiled.speedups
    _compiled.speedups = speedups if compiled else None
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        _SeesTheCollector.seen.clear()
        assert type(skjar.loads(good, trusted=[_SeesTheCollector])[0]) is _SeesTheCollector
        assert gc.isenabled() is enabled
        with pytest.raises(SkjarError, match="refused"):
            skjar.loads(bad, trusted=[_SeesTheCollector])
        assert gc.isenabled() is enabled
        assert _SeesTheCollector.seen == [False, False]
    finally:
        _compiled.speedups = saved
        (gc.enable if was else gc.disable)()


def test_every_name_a_decoder_is_given_was_looked_up_at_import() -> None:
    """decoder.look_up_own_names finds the attributes a Decoder is given in its methods'
    code, so that a worker forked before its first load does not write them into the
    interpreter's method cache (a copy-on-write fault apiece)."""
    decoder = Decoder([], {}, TrustPolicy())
    assert decoder.decode_root(pack_tree([1, {"a": [2, 3]}])) == [1, {"a": [2, 3]}]
    assert set(vars(decoder)) <= LOOKED_UP
    assert {"depth", "in_root", "taken", "_expanded", "_costly", "owned_indexes"} <= LOOKED_UP
