"""Property-based round trips: whatever skjar writes, it reads back exactly.

Every value goes through ``dumps``/``loads`` and through ``dump`` to a file and
``load(mmap=True)``. "Exactly" means: same types (a tuple stays a tuple, a
frozenset a frozenset, an ``int`` is not a ``bool``), same values bit for bit
(NaN and -0.0 included), same dtype (byte order, field offsets, item size),
shape and memory order for arrays, same dict order.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import pickle
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import skjar
from exact import assert_same
from skjar.codec.encoder import DEFER_DEPTH

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the two ways through -------------------------------------------------------
@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def round_trips(value: Any, folder: Path) -> list[Any]:
    """``value`` back through bytes and through a memory-mapped file."""
    out = [skjar.loads(skjar.dumps(value))]
    path = folder / "value.skjar"
    skjar.dump(value, path)
    out.append(skjar.load(path, mmap=True))
    return out


def check_round_trip(value: Any, folder: Path) -> None:
    for way, loaded in zip(("bytes", "mmap"), round_trips(value, folder)):
        assert_same(value, loaded, way)


# -- builtin values ------------------------------------------------------------------
INTS = st.one_of(
    st.integers(-(2**64), 2**64),
    st.integers(),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1,
                     2**300, -(2**300)]),
)
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308]),
)
TEXT = st.text(max_size=20)
HASHABLE_ATOMS = st.one_of(st.none(), st.booleans(), INTS, TEXT, st.binary(max_size=10),
                           st.floats(allow_nan=False))
HASHABLE = st.recursive(
    HASHABLE_ATOMS,
    lambda inner: st.one_of(st.tuples(inner, inner), st.frozensets(inner, max_size=3)),
    max_leaves=6,
)
ATOMS = st.one_of(
    st.none(), st.booleans(), INTS, FLOATS, TEXT, st.binary(max_size=20),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.binary(max_size=10).map(bytearray),
)
VALUES = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.one_of(TEXT, INTS, st.tuples(HASHABLE, HASHABLE)), inner, max_size=5),
        st.sets(HASHABLE, max_size=5),
        st.frozensets(HASHABLE, max_size=5),
    ),
    max_leaves=25,
)


@SETTINGS
@given(VALUES)
def test_builtin_values_round_trip(folder: Path, value: Any) -> None:
    check_round_trip(value, folder)


@SETTINGS
@given(st.lists(INTS, min_size=1, max_size=40))
def test_integers_of_any_size_round_trip(folder: Path, value: list[int]) -> None:
    check_round_trip(value, folder)
    check_round_trip(tuple(value), folder)


@SETTINGS
@given(st.lists(FLOATS, max_size=20), st.lists(st.complex_numbers(), max_size=5))
def test_floats_keep_their_bits(folder: Path, floats: list[float], complexes: list[complex]) -> None:
    check_round_trip([floats, complexes, -0.0, complex(-0.0, math.nan)], folder)


def test_special_values_round_trip(folder: Path) -> None:
    check_round_trip(
        [None, True, False, 0, -0.0, math.nan, math.inf, -math.inf, "", b"", "\x00", "é\u2603\U0001f600",
         (), [], {}, set(), frozenset(), bytearray(b"a\x00"), 1j, (1,), [[[]]],
         {1: "int", "1": "str", (1, "1"): "tuple", 2.5: "float", None: "none"}],
        folder,
    )


def big_lists(strings: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """256-400 strings (enough for the column-wise paths), cycling through a drawn few."""
    return st.builds(
        lambda few, n: [few[i % len(few)] for i in range(n)],
        st.lists(strings, min_size=1, max_size=16),
        st.integers(256, 400),
    )


def big_dicts(strings: st.SearchStrategy[str], values: st.SearchStrategy[Any]) -> Any:
    """256-400 distinct string keys (``"<i>:<drawn>"``) with drawn values."""
    return st.builds(
        lambda keys, vals, n: {f"{i}:{keys[i % len(keys)]}": vals[i % len(vals)] for i in range(n)},
        st.lists(strings, min_size=1, max_size=16),
        st.lists(values, min_size=1, max_size=16),
        st.integers(256, 400),
    )


@SETTINGS
@given(big_lists(st.text(max_size=12)))
def test_large_string_lists_round_trip(folder: Path, value: list[str]) -> None:
    check_round_trip(value, folder)  # the column-wise STRLIST path (unless a NUL is inside)


@SETTINGS
@given(
    big_dicts(st.text(max_size=12), st.integers(-(2**63), 2**63 - 1)),
    st.sampled_from([None, np.int64, np.int32, np.uint16]),
)
def test_large_string_dicts_round_trip(folder: Path, value: dict[str, int], kind: Any) -> None:
    if kind is not None:
        value = {k: kind(v % 2**15) for k, v in value.items()}
    check_round_trip(value, folder)  # the column-wise STRDICT path (unless a NUL is inside)


def test_columnar_paths_are_taken_and_exact(folder: Path) -> None:
    from jarcraft import decode
    from skjar.codec import nodes

    words = [f"w\u00e9{i}" for i in range(300)]
    for value, code in (
        (words, nodes.STRLIST),
        ({w: i for i, w in enumerate(words)}, nodes.STRDICT),
        ({w: np.int16(i) for i, w in enumerate(words)}, nodes.STRDICT),
    ):
        assert {n.code for n in decode(skjar.dumps(value)).nodes()} >= {code}
        check_round_trip(value, folder)
    # Not columnar (NUL inside, mixed values, big ints): still exact.
    check_round_trip(["a\x00b"] * 300, folder)
    check_round_trip({**{w: 1 for w in words}, "x": 2**64}, folder)
    check_round_trip({**{w: 1 for w in words}, "x": True}, folder)
    check_round_trip({w: None for w in words}, folder)


SURROGATE_TEXT = st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=8)


@SETTINGS
@given(st.one_of(SURROGATE_TEXT, st.lists(SURROGATE_TEXT, max_size=3),
                 big_lists(SURROGATE_TEXT), big_dicts(SURROGATE_TEXT, st.integers(0, 9))))
def test_lone_surrogates_round_trip_or_are_refused(folder: Path, value: Any) -> None:
    """Strings that are not valid UTF-8 either come back exactly or are refused cleanly."""
    try:
        data = skjar.dumps(value)
    except skjar.UnsupportedObjectError as exc:
        assert "surrogate" in str(exc)
        return
    assert_same(value, skjar.loads(data))


# -- numpy arrays ----------------------------------------------------------------------
ENDIAN = "?"
PLAIN_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness=ENDIAN),
    hnp.unsigned_integer_dtypes(endianness=ENDIAN),
    hnp.floating_dtypes(endianness=ENDIAN, sizes=(16, 32, 64)),
    st.sampled_from([np.dtype(np.longdouble), np.dtype(np.clongdouble)]),
    hnp.complex_number_dtypes(endianness=ENDIAN),
    hnp.datetime64_dtypes(endianness=ENDIAN),
    hnp.timedelta64_dtypes(endianness=ENDIAN),
    hnp.byte_string_dtypes(endianness=ENDIAN, min_len=1, max_len=6),
    hnp.unicode_string_dtypes(endianness=ENDIAN, min_len=1, max_len=6),
    st.integers(1, 9).map(lambda n: np.dtype(f"V{n}")),
)


@st.composite
def padded_struct_dtypes(draw: Any) -> np.dtype[Any]:
    """Structured dtypes with explicit offsets, gaps and trailing padding."""
    fields = draw(st.lists(PLAIN_DTYPES, min_size=1, max_size=4))
    names, offsets, pos = [], [], 0
    for i, dtype in enumerate(fields):
        pos += draw(st.integers(0, 5))
        names.append(f"f{i}")
        offsets.append(pos)
        pos += dtype.itemsize
    itemsize = pos + draw(st.integers(0, 7))
    return np.dtype({"names": names, "formats": fields, "offsets": offsets, "itemsize": itemsize})


STRUCT_DTYPES = st.one_of(
    hnp.array_dtypes(PLAIN_DTYPES, max_size=4),
    hnp.nested_dtypes(PLAIN_DTYPES, max_leaves=5),
    padded_struct_dtypes(),
    st.builds(lambda d: np.dtype([("a", d, (2, 3)), ("b", "<i2")]), PLAIN_DTYPES),
)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@st.composite
def views(draw: Any, base: np.ndarray) -> np.ndarray:
    """``base`` or a view of it: transposed, Fortran-ordered, strided, reversed."""
    kind = draw(st.sampled_from(["plain", "fortran", "transpose", "slice"]))
    if kind == "fortran":
        return np.asfortranarray(base)
    if kind == "transpose":
        return base.T
    if kind == "slice" and base.ndim:
        index = tuple(
            slice(draw(st.integers(0, 2)), None, draw(st.sampled_from([1, 2, -1, -2])))
            for _ in range(base.ndim)
        )
        return base[index]
    return base


def _object_elements() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.integers(), st.text(max_size=5), FLOATS,
                     st.lists(st.integers(), max_size=3), st.tuples(st.text(max_size=3)))


def arrays_of(data: Any, dtype: np.dtype[Any], shape: Any) -> np.ndarray:
    """An array drawn value by value, or from raw bytes when numpy has no elements for it."""
    if dtype.kind != "V":
        return data.draw(hnp.arrays(dtype, shape), "array")  # type: ignore[no-any-return]
    shape = data.draw(shape, "shape")
    n = math.prod(shape) * dtype.itemsize
    raw = data.draw(st.binary(min_size=n, max_size=n), "bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


@SETTINGS
@given(st.data())
def test_plain_arrays_round_trip(folder: Path, data: Any) -> None:
    dtype = data.draw(PLAIN_DTYPES, "dtype")
    base = arrays_of(data, dtype, SHAPES)
    check_round_trip(data.draw(views(base), "view"), folder)


@SETTINGS
@given(st.data())
def test_structured_arrays_round_trip(folder: Path, data: Any) -> None:
    dtype = data.draw(STRUCT_DTYPES, "dtype")
    base = arrays_of(data, dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3))
    check_round_trip(data.draw(views(base), "view"), folder)


@SETTINGS
@given(st.data())
def test_object_arrays_round_trip(folder: Path, data: Any) -> None:
    base = data.draw(hnp.arrays(object, SHAPES, elements=_object_elements()), "array")
    check_round_trip(data.draw(views(base), "view"), folder)


@SETTINGS
@given(st.data())
def test_numpy_scalars_round_trip(folder: Path, data: Any) -> None:
    dtype = data.draw(PLAIN_DTYPES | STRUCT_DTYPES, "dtype")
    scalar = arrays_of(data, dtype, st.just(()))[()]
    check_round_trip([scalar, dtype], folder)


def test_array_kinds_and_layouts_round_trip(folder: Path) -> None:
    """A fixed sample of what the strategies cover, so a failure names the case."""
    nested = np.dtype([("a", [("x", ">i2"), ("y", "S3")]), ("b", "<c8", (2, 2)), ("c", "M8[s]")])
    padded = np.dtype({"names": ["a", "b"], "formats": ["<i4", ">f8"], "offsets": [4, 12],
                       "itemsize": 32})
    cube = np.arange(120, dtype=">f4").reshape(2, 3, 4, 5)
    samples = {
        "0-d": np.array(3.5),
        "0-d structured": np.zeros((), nested),
        "empty": np.zeros((0, 3), "<i8"),
        "empty F": np.zeros((3, 0), order="F"),
        "4-d": cube,
        "F order": np.asfortranarray(cube),
        "transposed": cube.transpose(2, 0, 3, 1),
        "strided": cube[:, ::2, 1:, ::-3],
        "reversed": np.arange(10)[::-1],
        "big-endian": np.arange(6, dtype=">i8").reshape(2, 3),
        "float16": np.array([np.nan, -0.0, np.inf, 65504], np.float16),
        "longdouble": np.array([1 / 3, -0.0, np.nan], np.longdouble),
        "datetime": np.array(["2020-01-01T10", "NaT"], "M8[h]"),
        "timedelta": np.array([1, -5, "NaT"], ">m8[us]"),
        "bytes": np.array([b"a\x00", b"", b"xyz"], "S4"),
        "unicode": np.array(["", "\u2603", "a\x00b"], ">U3"),
        "void": np.array([b"\x00\x01\x02"], "V3"),
        "nested": np.zeros(3, nested),
        "padded": np.frombuffer(bytes(range(64)), padded),
        "object": np.array([[1, "a"], [None, [2.5]]], dtype=object),
        "object F": np.asfortranarray(np.array([[1, "a"], [None, (3,)]], dtype=object)),
        "object 0-d": np.array(None, dtype=object),
        "objects in object": np.array([np.arange(3), {"k": np.zeros(2)}, None], dtype=object),
    }
    for name, value in samples.items():
        try:
            check_round_trip(value, folder)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_record_gaps_are_zeros_not_leftover_memory(folder: Path) -> None:
    """A non-contiguous record array is written from a contiguous copy, and numpy's
    copies leave the gaps between a record's fields as whatever the allocator held
    (heap addresses, other objects' bytes): the file carried them, and no two saves
    were alike. The copy is zeroed first; the same goes for the converter's copies."""
    import io

    from skjar.legacy import load_legacy

    padded = np.dtype({"names": ["a", "b"], "formats": ["<i8", "u1"], "offsets": [0, 8],
                       "itemsize": 16})
    records = np.zeros(64, padded)
    records["a"], records["b"] = np.arange(64), 7
    strided = records[::2]
    saves = []
    for _ in range(3):
        litter = np.full(1 << 16, 0xAB, np.uint8)  # freed memory for the copy to land in
        del litter
        saves.append(skjar.dumps(strided))
    assert saves[0] == saves[1] == saves[2]
    for loaded in [skjar.loads(saves[0]), *round_trips(strided, folder)[1:]]:
        raw = np.ascontiguousarray(loaded).view(np.uint8).reshape(-1, 16)
        assert not raw[:, 9:].any(), "the gaps between fields must be zeros"
        assert loaded["a"].tolist() == list(range(0, 64, 2))
    for protocol in (2, 5):
        data = pickle.dumps(records, protocol=protocol)
        converted = load_legacy(io.BytesIO(data))
        assert converted.tobytes() == pickle.loads(data).tobytes()


def test_arrays_come_back_writeable_and_aligned(folder: Path) -> None:
    small = [np.arange(3.0), np.zeros((3, 4), ">i2"), np.array([1 + 2j], np.clongdouble)]  # inline
    large = [np.arange(1000.0), np.zeros((30, 40), ">i2"), np.ones((7, 9), "c16")]  # buffers
    for loaded in round_trips([*small, *large], folder):
        for arr in loaded:
            assert arr.flags.writeable
            assert arr.flags.aligned
        for arr in loaded[len(small):]:
            assert arr.ctypes.data % 64 == 0, "out-of-line arrays keep the file's 64-byte alignment"


# -- identity: shared references and cycles ---------------------------------------------
class Holder:
    """A plain class whose instances can refer to each other (trusted explicitly)."""

    def __eq__(self, other: object) -> bool:  # pragma: no cover - identity is what matters
        return self is other

    __hash__ = object.__hash__


def test_shared_references_stay_shared(folder: Path) -> None:
    a = [1]
    d = {"k": a}
    arr = np.arange(3)
    s = {1, 2}
    t = (a, "t")
    value = [a, a, d, d, arr, arr, s, s, t, t, {"again": a}]
    for loaded in round_trips(value, folder):
        assert loaded[0] is loaded[1] and loaded[0] == [1]
        assert loaded[2] is loaded[3] and loaded[2]["k"] is loaded[0]
        assert loaded[4] is loaded[5]
        assert loaded[6] is loaded[7]
        assert loaded[8] is loaded[9] and loaded[8][0] is loaded[0]
        assert loaded[10]["again"] is loaded[0]
        loaded[0].append(2)
        assert loaded[2]["k"] == [1, 2]


def test_equal_but_distinct_objects_stay_distinct(folder: Path) -> None:
    value = [[1], [1], np.zeros(2), np.zeros(2), {"a": 1}, {"a": 1}]
    for loaded in round_trips(value, folder):
        for i in range(0, 6, 2):
            assert loaded[i] is not loaded[i + 1]


def test_shared_tuples_are_written_once() -> None:
    t: tuple[Any, ...] = ()
    for _ in range(40):  # 2**40 paths through the graph: only sharing keeps this small
        t = (t, t)
    data = skjar.dumps(t)
    assert len(data) < 64 * 1024
    loaded = skjar.loads(data)
    assert loaded[0] is loaded[1] and loaded[0][0] is loaded[1][1]


def test_cycles_through_instances_keep_their_shape(folder: Path) -> None:
    a, b = Holder(), Holder()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    a.me = a  # type: ignore[attr-defined]
    b.items = [a, b, (a,)]  # type: ignore[attr-defined]
    name = f"{Holder.__module__}.{Holder.__qualname__}"
    data = skjar.dumps([a, b])
    with pytest.raises(skjar.UntrustedTypeError) as info:
        skjar.loads(data)
    assert info.value.names == [name]
    x, y = skjar.loads(data, trusted=[Holder])
    assert type(x) is Holder and type(y) is Holder and x is not a
    assert x.other is y and y.other is x and x.me is x
    assert y.items[0] is x and y.items[1] is y and y.items[2][0] is x


def test_cycles_through_builtins_are_refused_cleanly() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(skjar.UnsupportedObjectError, match="refers back to itself"):
        skjar.dumps({"a": loop})
    d: dict[str, Any] = {}
    d["self"] = [d]
    with pytest.raises(skjar.UnsupportedObjectError) as info:
        skjar.dumps(d)
    assert info.value.path == "self[0]"


def test_birch_keeps_its_cycles(folder: Path) -> None:
    from sklearn.cluster import Birch

    X = np.random.RandomState(0).rand(300, 2)
    model = Birch(threshold=0.1, branching_factor=5, n_clusters=None).fit(X)

    def leaves(m: Any) -> list[Any]:
        out, leaf = [], m.dummy_leaf_.next_leaf_
        while leaf is not None:
            out.append(leaf)
            leaf = leaf.next_leaf_
        return out

    def tree_leaves(node: Any) -> list[Any]:
        if node.is_leaf:
            return [node]
        return [leaf for sub in node.subclusters_ for leaf in tree_leaves(sub.child_)]

    assert len(leaves(model)) > 3
    for loaded in round_trips(model, folder):
        chain = leaves(loaded)
        assert len(chain) == len(leaves(model))
        assert chain[0].prev_leaf_ is loaded.dummy_leaf_
        for left, right in itertools.pairwise(chain):
            assert left.next_leaf_ is right and right.prev_leaf_ is left
        assert {id(x) for x in tree_leaves(loaded.root_)} == {id(x) for x in chain}
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        np.testing.assert_array_equal(loaded.subcluster_centers_, model.subcluster_centers_)


def test_masked_arrays_round_trip_after_their_fill_value_was_read(folder: Path) -> None:
    samples = [
        np.ma.MaskedArray([1.0, 2.0, 3.0], mask=[True, False, False]),
        np.ma.MaskedArray(["a", "b"], dtype=object, mask=[False, True]),
        # (int8/int16 would not do: their default fill value 999999 does not fit, and
        # numpy itself - pickle included - wraps it around when rebuilding the array)
        np.ma.MaskedArray(np.arange(4, dtype=">i4").reshape(2, 2), mask=[[0, 1], [1, 0]]),
        np.ma.MaskedArray(np.zeros(2, [("a", "<i4"), ("b", "<f8")]),
                          mask=[(True, False), (False, False)]),
    ]
    for original in samples:
        for touched in (False, True):
            if touched:
                assert original.fill_value is not None  # numpy now keeps it as a 0-d array
            for loaded in round_trips(original, folder):
                assert type(loaded) is np.ma.MaskedArray
                assert_same(np.asarray(original.data), np.asarray(loaded.data))
                assert_same(np.ma.getmaskarray(original), np.ma.getmaskarray(loaded))
                assert loaded.fill_value == original.fill_value


@pytest.mark.parametrize(
    "seed",
    [5, np.uint64(5), [1, 2, 3], np.array([7, 8], dtype=np.uint32), None, 2**200],
    ids=["int", "numpy-int", "list", "array", "os-entropy", "big-int"],
)
def test_bit_generators_keep_their_seed_sequence(folder: Path, seed: Any) -> None:
    """As pickle does: after a load, spawn() gives the original's children and
    .seed_seq its entropy, spawn key and count of children spawned."""
    for cls in (np.random.MT19937, np.random.PCG64, np.random.PCG64DXSM, np.random.Philox,
                np.random.SFC64):
        original = np.random.Generator(cls(seed))
        original.spawn(2)  # children already spawned must be counted
        for loaded in round_trips(original, folder):
            a, b = original.bit_generator.seed_seq, loaded.bit_generator.seed_seq
            assert (a.spawn_key, a.pool_size, a.n_children_spawned) == (
                b.spawn_key, b.pool_size, b.n_children_spawned)
            assert np.array_equal(np.asarray(a.entropy, dtype=object),
                                  np.asarray(b.entropy, dtype=object))
            assert [g.integers(10**9) for g in loaded.spawn(3)] == [
                g.integers(10**9) for g in copy.deepcopy(original).spawn(3)]
            assert loaded.integers(10**9, size=4).tolist() == copy.deepcopy(original).integers(
                10**9, size=4).tolist()


def test_legacy_seeded_generators_keep_having_no_seed_sequence(folder: Path) -> None:
    """RandomState(42) - what every scikit-learn estimator's random_state=42 makes -
    seeds its MT19937 the legacy way, without a SeedSequence; pickle keeps it None (with
    numpy 2) and so must a load, not a fresh one from the OS's entropy."""
    original = np.random.RandomState(42)
    original.random_sample(3)
    assert original._bit_generator.seed_seq is None
    via_pickle = pickle.loads(pickle.dumps(original))._bit_generator.seed_seq
    for loaded in round_trips(original, folder):
        assert loaded._bit_generator.seed_seq is via_pickle
        assert loaded.randint(10**9, size=4).tolist() == copy.deepcopy(original).randint(
            10**9, size=4).tolist()


class _OnesSequence(np.random.bit_generator.ISeedSequence):
    """A seed sequence that is not numpy's SeedSequence: the writer leaves it out."""

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        return np.ones(n_words, dtype)


@pytest.mark.parametrize("cls", [np.random.MT19937, np.random.PCG64, np.random.PCG64DXSM,
                                 np.random.Philox, np.random.SFC64])
def test_a_bit_generator_stored_without_its_seed_sequence_gets_a_fresh_one(
    folder: Path, cls: Any
) -> None:
    """The loader builds a bit generator from zero words before setting its state; none
    of that may show: the state is the original's, and the seed sequence a fresh one from
    the OS, as numpy's constructor makes (and a jar from before seed sequences gives)."""
    original = cls(_OnesSequence())
    original.random_raw(5)
    entropies = set()
    for loaded in round_trips(original, folder) + round_trips(original, folder):
        assert type(loaded.seed_seq) is np.random.SeedSequence
        entropies.add(loaded.seed_seq.entropy)
        assert loaded.random_raw(8).tolist() == copy.deepcopy(original).random_raw(8).tolist()
    assert len(entropies) == 4


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (np.full(624, 2**33, dtype=np.int64), "too large"),
        (np.full(624, -1, dtype=np.int64), "negative"),
        (np.zeros(600, dtype=np.uint32), "out of"),
    ],
    ids=["words-past-32-bits", "negative-words", "short-key"],
)
def test_an_mt19937_key_numpy_refuses_is_refused(key: np.ndarray, reason: str) -> None:
    import jarcraft
    from security.hostile import encode_state
    from skjar.codec import nodes

    state = np.random.MT19937(7).state
    state["state"]["key"] = key
    buffers: list[bytes] = []
    name = "numpy.random._mt19937.MT19937"
    jar = jarcraft.build(jarcraft.Ext(nodes.BITGENERATOR, [name, encode_state(state, buffers)]),
                         [jarcraft.name_entry(name, uses=("object",))], buffers)
    with pytest.raises(skjar.CorruptFileError, match=f"invalid {name} state: .*{reason}"):
        skjar.loads(jar)


def test_long_chains_of_instances_round_trip(folder: Path) -> None:
    """Birch links its leaves in a list (prev_leaf_/next_leaf_): ~100 leaves is common.

    Encoding follows each link one level deeper, so a chain longer than the nesting
    cap cannot be written at all today (UnsupportedObjectError, "nests ... deep").
    """
    from sklearn.cluster import Birch
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(6000, n_features=5, centers=10, random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    model = Birch(threshold=0.08).fit(X)
    n_leaves, leaf = 0, model.dummy_leaf_.next_leaf_
    while leaf is not None:
        n_leaves, leaf = n_leaves + 1, leaf.next_leaf_
    assert n_leaves > 100
    for loaded in round_trips(model, folder):
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


CHECKED_HOLDERS = ["kd-tree", "ball-tree", "hgb", "gb", "spline", "svc-sparse", "tree",
                   "brute-sparse", "kmeans", "tfidf"]


@functools.cache  # (fitted once; the graph test copies them before changing them)
def _nested_checked_holders() -> dict[str, Any]:
    """Models whose meaning checks read other objects: a KD tree its metric, a ball tree
    its Mahalanobis metric, HGB its predictors, GB its initial estimator, a
    SplineTransformer its BSplines (scipy >= 1.18: each BSpline its _BSpline), an SVC or
    brute-force neighbours their sparse matrices, a decision tree its Tree (rebuilt by a
    call); and k-means and a vectorizer, checked on their own arrays and dicts."""
    import scipy.sparse as sp
    from sklearn.cluster import KMeans
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import SplineTransformer
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.RandomState(0)
    X, y = rng.rand(120, 4), rng.randint(0, 3, 120)
    sparse = sp.csr_matrix(np.where(X > 0.5, X, 0.0))
    text = [" ".join(rng.choice(["spam", "ham", "eggs", "tea", "jam"], 6)) for _ in range(30)]
    mahalanobis = {"metric": "mahalanobis", "metric_params": {"VI": np.eye(4)}}
    models = {
        "kd-tree": (KNeighborsClassifier(3).fit(X, y), X),
        "ball-tree": (KNeighborsClassifier(3, algorithm="ball_tree", **mahalanobis).fit(X, y), X),
        "hgb": (HistGradientBoostingClassifier(max_iter=3).fit(X, y), X),
        "gb": (GradientBoostingClassifier(n_estimators=3).fit(X, y), X),
        "spline": (SplineTransformer().fit(X), X),
        "svc-sparse": (SVC().fit(sparse, y), sparse),
        "tree": (DecisionTreeClassifier(random_state=0).fit(X, y), X),
        "brute-sparse": (KNeighborsClassifier(3, algorithm="brute").fit(sparse, y), sparse),
        "kmeans": (KMeans(3, n_init=1, random_state=0).fit(X), X),
        "tfidf": (TfidfVectorizer().fit(text), text),
    }
    assert list(models) == CHECKED_HOLDERS
    return models


@pytest.mark.parametrize("case", CHECKED_HOLDERS)
def test_checked_holders_load_at_any_depth(case: str, folder: Path) -> None:
    """Instances met deeper than the encoder's DEFER_DEPTH get their state at the top
    level, after everything else; a holder whose check reads them must then find them
    complete. A KNN, HGB or GB model nested 30 lists deep was written with its KD tree,
    predictors or initial estimator deferred, and its own check refused to load it."""

    model, X = _nested_checked_holders()[case]
    expected = _outputs(model, X)
    for depth in range(DEFER_DEPTH - 8, DEFER_DEPTH + 3):
        value = model
        for _ in range(depth):
            value = [value]
        for loaded in round_trips(value, folder):
            for _ in range(depth):
                (loaded,) = loaded
            got = _outputs(loaded, X)
            np.testing.assert_array_equal(got, expected, err_msg=f"nested {depth} deep")


def test_references_a_checked_holder_cannot_load_are_refused_on_saving(folder: Path) -> None:
    """A meaning check runs when its object gets its state, and refuses to judge an object
    that is still waiting for its own: a back-reference to a container of the checked
    object, or a shared object also stored deeper than DEFER_DEPTH (whose state comes at
    the end of the file). Both were written, and their load then failed as a "corrupt"
    file; dump now refuses them, saying where, and leaves the target as it was."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline


    rng = np.random.RandomState(0)
    X, y = rng.rand(40, 3), rng.randint(0, 2, 40)
    target = folder / "kept.skjar"
    skjar.dump([1, 2], target)

    knn = KNeighborsClassifier(3).fit(X, y)
    pipeline = Pipeline([("knn", knn)])
    knn.owner_ = pipeline
    with pytest.raises(skjar.UnsupportedObjectError, match=r"refers back to a Pipeline.*steps\[0\]\[1\]\.owner_"):
        skjar.dump(pipeline, target)
    knn.me_ = knn
    del knn.owner_
    with pytest.raises(skjar.UnsupportedObjectError, match="refers back to a KNeighborsClassifier"):
        skjar.dumps(knn)
    del knn.me_

    deep: Any = knn._tree
    for _ in range(DEFER_DEPTH + 1):
        deep = [deep]
    with pytest.raises(skjar.UnsupportedObjectError, match=r"KDTree that is also stored .*\[1\]\._tree"):
        skjar.dump([deep, knn], target)
    assert skjar.load(target) == [1, 2]

    # The same structures load where no check judges the reference: an unchecked
    # holder's back-reference, and the deep object met after the checked holder.
    pipeline.me_ = pipeline
    for loaded in round_trips(pipeline, folder):
        assert loaded.me_ is loaded
        np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))
    for a, b in round_trips([knn, deep], folder):
        for _ in range(DEFER_DEPTH + 1):
            (b,) = b
        assert a._tree is b
        np.testing.assert_array_equal(a.predict(X), knn.predict(X))


def _outputs(model: Any, X: Any) -> np.ndarray:
    out = model.predict(X) if hasattr(model, "predict") else model.transform(X)
    return out.toarray() if hasattr(out, "toarray") else out


def _parts_of(model: Any) -> list[Any]:
    """The instances a model's own check reads, which a graph may also share elsewhere."""
    found = [getattr(model, "_tree", None), getattr(model, "init_", None),
             getattr(model, "tree_", None), getattr(model, "support_vectors_", None),
             getattr(model, "_fit_X", None)]
    found += [p for ps in getattr(model, "_predictors", [])[:1] for p in ps[:1]]
    found += getattr(model, "bsplines_", [])[:1]
    return [part for part in found if part is not None and not isinstance(part, str)]


@settings(SETTINGS, max_examples=200)
@given(st.data())
def test_dump_writes_only_what_load_takes(folder: Path, data: Any) -> None:
    """Random graphs of checked models, the parts their checks read, plain holders,
    nesting around DEFER_DEPTH, sharing and back-references: ``dump`` either refuses
    with UnsupportedObjectError or writes a jar that loads into the same graph (the same
    pickle, so the same values, types and sharing) whose models predict as before."""

    models = copy.deepcopy(_nested_checked_holders())  # attributes get added below
    names = sorted(models)
    depths = st.sampled_from([0, 1, DEFER_DEPTH - 5, DEFER_DEPTH - 1, DEFER_DEPTH + 1,
                              DEFER_DEPTH + 5])
    root: list[Any] = []
    used: list[tuple[Any, Any]] = []
    holders: list[Any] = []
    for _ in range(data.draw(st.integers(1, 4), label="items")):
        model, X = models[data.draw(st.sampled_from(names), label="model")]
        used.append((model, X))
        choices = [model, *_parts_of(model)]
        value: Any = choices[data.draw(st.integers(0, len(choices) - 1), label="part")]
        if data.draw(st.booleans(), label="in a holder"):
            holder = Holder()
            holder.inner = value  # type: ignore[attr-defined]
            holders.append(holder)
            value = holder
        for _ in range(data.draw(depths, label="depth")):
            value = [value]
        root.append(value)
    if holders and data.draw(st.booleans(), label="back-reference"):
        model, _ = used[data.draw(st.integers(0, len(used) - 1), label="from")]
        model.back_ = holders[data.draw(st.integers(0, len(holders) - 1), label="to")]
    try:
        blob = skjar.dumps(root)
    except skjar.UnsupportedObjectError as exc:
        assert "refers back to" in str(exc) or "also stored more than" in str(exc), exc
        event("refused")
        return
    event("loaded")
    loaded = skjar.loads(blob, trusted=[Holder])
    twins: dict[int, Any] = {}
    _assert_same_graph(root, loaded, "root", twins, [])
    for model, X in used:
        if id(model) in twins:  # (not when only a part of it was placed)
            np.testing.assert_array_equal(_outputs(twins[id(model)], X), _outputs(model, X))


_VALUES = (str, bytes, int, float, complex, bool, type(None), type, np.dtype, np.generic,
           types.FunctionType, types.BuiltinFunctionType, np.ufunc)


def _assert_same_graph(a: Any, b: Any, where: str, twins: dict[int, Any], keep: list[Any]) -> None:
    """``b`` is ``a`` rebuilt: equal values, and the same sharing of mutable objects and
    instances (``twins``: id in ``a`` -> its object in ``b``; ``keep`` holds the states
    read on the way, so that no id is reused while they are compared)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, _VALUES):
        assert_same(a, b, where)
        return
    if type(a) is not tuple:
        if id(a) in twins:
            assert twins[id(a)] is b, f"{where}: a shared object became two"
            return
        assert all(other is not b for other in twins.values()), f"{where}: two became one"
        twins[id(a)] = b
    keep += [a, b]
    if type(a) is np.random.SeedSequence:  # stored as ints (docs/format.md, BITGENERATOR)
        def ints(value: Any) -> Any:
            return None if value is None else np.asarray(value).astype(object).tolist()

        for field in ("entropy", "spawn_key", "pool_size", "n_children_spawned"):
            assert ints(getattr(a, field)) == ints(getattr(b, field)), f"{where}.{field}"
    elif type(a) is np.ndarray and a.dtype == object:
        assert a.shape == b.shape, f"{where}: shape {a.shape} became {b.shape}"
        for i, (x, y) in enumerate(zip(a.flat, b.flat)):
            _assert_same_graph(x, y, f"{where}.flat[{i}]", twins, keep)
    elif type(a) is np.ndarray:
        assert_same(a, b, where)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_graph(x, y, f"{where}[{i}]", twins, keep)
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys differ"
        for key in a:
            _assert_same_graph(a[key], b[key], f"{where}[{key!r}]", twins, keep)
    else:
        _assert_same_graph(a.__reduce_ex__(4)[1:3], b.__reduce_ex__(4)[1:3], f"{where}.<state>",
                           twins, keep)


def test_header_parameters_are_get_params() -> None:
    """The header's estimator summary reads parameter names once per class (sklearn's
    get_params reads the __init__ signature per call): it must give what get_params does,
    for every default-constructible estimator, and defer to any get_params of its own."""
    from sklearn.utils import all_estimators

    from skjar.metadata import _shallow_params

    checked = 0
    for _, cls in all_estimators():
        try:
            est = cls()
        except TypeError:  # needs arguments (meta-estimators): covered by the duck below
            continue
        assert repr(_shallow_params(est)) == repr(est.get_params(deep=False)), cls
        checked += 1
    assert checked > 150

    class Duck:
        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {"deep": deep}

    assert _shallow_params(Duck()) == {"deep": False}

    from sklearn.base import BaseEstimator

    class One(BaseEstimator):  # (one name: attrgetter of one gives the value, not a tuple)
        def __init__(self, alpha: Any = (1, 2)) -> None:
            self.alpha = alpha

    class Two(BaseEstimator):
        def __init__(self, a: Any = None, b: Any = 3.5) -> None:
            self.a, self.b = a, b

    class Missing(BaseEstimator):  # a parameter never set: the summary's own fallback
        def __init__(self, gone: int = 1) -> None:
            pass

    for est in (One(), One(alpha=[1]), Two(), Two(a="x", b=float("nan"))):
        assert repr(_shallow_params(est)) == repr(est.get_params(deep=False))
    with pytest.raises(AttributeError):
        _shallow_params(Missing())


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(
    st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(),
    st.text(max_size=300), st.lists(st.integers(), max_size=3),
    st.sampled_from([np.float64(1.5), np.int64(7), np.bool_(True), "auto", 1e-8]),
))
def test_a_summary_writes_parameter_values_as_jsonable_does(value: Any) -> None:
    """jsonable answers the usual values (None, booleans, ints, finite floats, text up to
    MAX_REPR) with the value itself, and everything else with JSON-safe, bounded text or
    numbers of the types json writes."""
    import json

    from skjar.metadata import MAX_REPR, jsonable

    rendered = jsonable(value)
    usual = type(value) in (type(None), bool, int) or (
        type(value) is float and math.isfinite(value)
    ) or (type(value) is str and len(value) <= MAX_REPR)
    if usual:
        assert rendered is value
    json.dumps(rendered, allow_nan=False)  # (raises on anything JSON cannot hold)
    if isinstance(value, (np.integer, np.floating)) and math.isfinite(value):
        assert type(rendered) in (int, float) and rendered == value
    if isinstance(value, str) and len(value) > MAX_REPR:
        assert rendered == value[:MAX_REPR] + "…"


def test_a_summary_calls_fitted_what_check_is_fitted_calls_fitted() -> None:
    """An attribute ending with "_" and not starting with "__" marks a fitted estimator,
    as sklearn.utils.validation.check_is_fitted has it."""
    from sklearn.linear_model import LinearRegression

    from skjar.metadata import summarize

    model = LinearRegression()
    assert summarize(model)["fitted"] is False
    for name, fitted in (("__private_", False), ("x_", True), ("_", True), ("a\n_", True),
                         ("a_b", False), ("__", False)):
        vars(model)[name] = 1
        assert summarize(model)["fitted"] is fitted, name
        del vars(model)[name]


@pytest.mark.parametrize(
    "seed_seq",
    [np.random.SeedSequence([1 << 14000] * 200), np.random.SeedSequence(1, spawn_key=(1 << 14000,) * 200)],
    ids=["entropy-of-2.8-million-bits", "spawn-key-of-2.8-million-bits"],
)
def test_a_seed_sequence_numpy_takes_minutes_over_is_not_loaded(
    seed_seq: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numpy splits entropy ints into words in time quadratic in each (2**21 bits: 39 s),
    so the loader bounds each int and all the bits together (a single int is bounded by
    Python's 4,300-digit limit already); the writer keeps no such sequence (found by
    fuzzing the converter, which had no bound at all)."""
    import skjar.codec.numpy as codec_numpy

    bitgen = np.random.PCG64(seed_seq)
    kept = skjar.loads(skjar.dumps(bitgen)).seed_seq  # the writer leaves it out
    assert kept is None or kept.entropy != seed_seq.entropy
    monkeypatch.setattr(codec_numpy, "seed_fields_ok", lambda fields: True)  # a writer without it
    data = skjar.dumps(bitgen)
    monkeypatch.undo()
    with pytest.raises(skjar.CorruptFileError, match="seed sequence"):
        skjar.loads(data)


_BIG = 1 << (32 << 10)  # 32,769 bits: one past the bound on a single int
_WORDS = 1 << 16  # the most words an entropy or spawn key may hold


@pytest.mark.parametrize(
    "fields, ok",
    [
        ([1, [], 4, 0], True),
        ([None, [], 4, 0], True),
        ([[1, 2, 3], [4, 5], 256, (1 << 63) - 1], True),
        ([_BIG - 1, [], 4, 0], True),  # 32,768 bits
        ([[(1 << 1024) - 1] * 2048, [], 4, 0], True),  # 2**21 bits in all: the bound
        ([[(1 << 1024) - 1] * 2048, [1], 4, 0], False),  # one bit more
        ([[(1 << 1024) - 1] * 1024, [(1 << 1024) - 1] * 1025, 4, 0], False),
        ([_BIG, [], 4, 0], False),
        ([1, [_BIG], 4, 0], False),
        ([[0] * _WORDS, [0] * _WORDS, 4, 0], True),
        ([[0] * (_WORDS + 1), [], 4, 0], False),
        ([1, [0] * (_WORDS + 1), 4, 0], False),
        ([-1, [], 4, 0], False),
        ([1, [-1], 4, 0], False),
        ([True, [], 4, 0], False),  # a bool is not an int here
        ([1, [True], 4, 0], False),
        ([1.0, [], 4, 0], False),
        ([(1,), [], 4, 0], False),
        ([1, (), 4, 0], False),
        ([1, None, 4, 0], False),
        ([1, [], 3, 0], False),
        ([1, [], 257, 0], False),
        ([1, [], True, 0], False),
        ([1, [], 4, -1], False),
        ([1, [], 4, 1 << 63], False),
        ([1, [], 4, 0.0], False),
        ([1, [], 4], False),
        ((1, [], 4, 0), False),
    ],
)
def test_the_seed_sequence_rules(fields: Any, ok: bool) -> None:
    """What the writer keeps, the reader loads and the converter converts of a
    SeedSequence (codec/numpy.py: seed_fields_ok), at each bound and type."""
    from skjar.codec.numpy import seed_fields_ok

    assert seed_fields_ok(fields) is ok
