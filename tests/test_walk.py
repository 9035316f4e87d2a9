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
from skjar.codec.decoder import ARRAY_DTYPES, Decoder
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
    tree: bytes, compiled: bool, buffers: tuple[bytes, ...] = (), declared: Any = None
) -> tuple[Any, ...]:
    """("ok", value) or ("refused", message) from one walker."""
    saved = _compiled.speedups
    _compiled.speedups = speedups if compiled else None
    try:
        arrays = [np.frombuffer(bytearray(b), dtype=np.uint8) for b in buffers]
        decoder = Decoder(arrays, DECLARED if declared is None else declared, TrustPolicy())
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
        else:
            try:
                equal = bool(x == y)
            except Exception:
                equal = False
            if not equal and repr(x) != repr(y):
                return False
    return True


def agree(tree: bytes, buffers: tuple[bytes, ...] = (), declared: Any = None) -> tuple[Any, ...]:
    compiled = decode(tree, True, buffers, declared)
    twin = decode(tree, False, buffers, declared)
    assert compiled[0] == twin[0], f"compiled {compiled!r:.300} but the twin {twin!r:.300}"
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


def test_skjars_own_trees_decode_alike() -> None:
    from sklearn.linear_model import LogisticRegression

    import skjar
    from skjar.format.header import declared_names
    from skjar.format.reader import open_source

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    shared = [1.5, "x"]
    for value in (model, {"a": [1, 2.5, None], 3: (4, 5)}, [np.arange(3)] * 2, [shared, shared]):
        raw = open_source(skjar.dumps(value), mmap=False, admit=declared_names)
        status, loaded = agree(bytes(raw.tree), tuple(b.tobytes() for b in raw.buffers),
                               raw.declared)
        assert status == "ok"
        if value is model:
            assert loaded.predict([[2.5]]) == model.predict([[2.5]])


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
    """Inline, out of line, structured, empty: no call reaches the Python handler."""
    calls: list[Any] = []
    monkeypatch.setitem(DECODERS, nodes.NDARRAY, lambda dec, payload: calls.append(payload))
    tree = pack_tree([Ext(nodes.NDARRAY, ["<f8", [2], False, bytes(16)]),
                      Ext(nodes.NDARRAY, ["<i4", [2, 2], True, 0]),
                      Ext(nodes.NDARRAY, [STRUCTURED, [1], False, bytes(17)]),
                      Ext(nodes.NDARRAY, ["<u4", [0, 8], False, b""])])
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
