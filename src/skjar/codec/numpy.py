"""numpy: arrays (data out of line), object arrays, dtypes, scalars, random generators."""

from __future__ import annotations

import math
import sys
import warnings
from typing import Any, Literal

import numpy as np

from .. import _compiled
from ..errors import CorruptFileError, UnsupportedObjectError
from ..format.spec import INLINE_MAX, MAX_NDIM
from ..trust import OBJECT
from .decoder import ARRAY_DTYPES, Decoder, brief, expect_list
from .encoder import Encoder, Path, render_path
from .nodes import (
    BITGENERATOR,
    DTYPE,
    GENERATOR,
    MASKEDARRAY,
    NDARRAY,
    NPSCALAR,
    OBJARRAY,
    RANDOMSTATE,
    Node,
)
from .registry import ENCODERS, MEMOIZED, decodes, encodes

MAX_DESCR_DEPTH = 8
PLAIN_KINDS = frozenset("biufcmMSUV")
_SIMPLE = frozenset({str, int, float, bool, type(None), bytes})


# -- dtypes ----------------------------------------------------------------
_DESCRS: dict[Any, Any] = {}


def dtype_descr(dtype: np.dtype[Any], path: Path) -> Any:
    """A JSON/msgpack-friendly description of ``dtype`` (numpy's .npy ``descr``).

    Cached: numpy builds structured descrs slowly and a forest repeats one
    node dtype hundreds of times. Plain dtypes are keyed by their exact
    ``str`` (byte order included), structured ones by the dtype itself.
    """
    key = dtype.str if dtype.fields is None else dtype
    cached = _DESCRS.get(key)
    if cached is not None:
        return cached
    descr = _dtype_descr(dtype, path)
    if len(_DESCRS) < 4096:
        _DESCRS[key] = descr
    return descr


def _dtype_descr(dtype: np.dtype[Any], path: Path) -> Any:
    if dtype.kind not in PLAIN_KINDS and dtype != np.dtype(object):
        raise UnsupportedObjectError(f"numpy dtype {dtype} is not supported", render_path(path))
    if dtype.fields is None and dtype.subdtype is not None:
        raise UnsupportedObjectError(f"sub-array dtype {dtype} is not supported", render_path(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # metadata is dropped, as in .npy files
        try:
            descr = np.lib.format.dtype_to_descr(dtype)
        except ValueError as exc:  # fields out of order or overlapping: no descr for them
            raise UnsupportedObjectError(
                f"numpy dtype {dtype} cannot be described field by field ({exc}): give its "
                "fields increasing, non-overlapping offsets (e.g. arr.astype of a dtype "
                "listing them in memory order)",
                render_path(path),
            ) from None
    return _listify(descr)


def _listify(descr: Any) -> Any:
    if isinstance(descr, (list, tuple)):
        return [_listify(d) for d in descr]
    return descr


def _tuplify(descr: Any, depth: int = 0) -> Any:
    """Validate a decoded descr and convert its lists back to numpy's tuples."""
    if depth > MAX_DESCR_DEPTH:
        raise CorruptFileError("dtype description nests too deeply")
    if type(descr) is str:
        if len(descr) > 64:
            raise CorruptFileError("dtype string too long")
        return descr
    if type(descr) is not list or not descr or len(descr) > 4096:
        raise CorruptFileError(f"malformed dtype description {brief(descr)}")
    fields: list[tuple[Any, ...]] = []
    for field in descr:
        if type(field) is not list or len(field) not in (2, 3):
            raise CorruptFileError("malformed structured dtype field")
        name = field[0]
        if type(name) is not str and not (
            type(name) is list and len(name) == 2 and all(type(n) is str for n in name)
        ):
            raise CorruptFileError("malformed structured dtype field name")
        name = tuple(name) if type(name) is list else name
        sub = _tuplify(field[1], depth + 1)
        if len(field) == 3:
            shape = field[2]
            if (
                type(shape) is not list
                or len(shape) > MAX_NDIM
                or any(type(n) is not int or not 0 <= n < 1 << 31 for n in shape)
            ):
                raise CorruptFileError("malformed structured dtype sub-array shape")
            fields.append((name, sub, tuple(shape)))
        else:
            fields.append((name, sub))
    return tuple(fields)


_DTYPES: dict[Any, np.dtype[Any]] = {}
_LIST_ONLY = {list}


def descr_dtype(descr: Any) -> np.dtype[Any]:
    """The dtype behind a decoded descr, validated first (cached: models repeat a few dtypes)."""
    try:
        # A structured descr of plain [name, type] fields, as a tuple of tuples, is
        # the very spec _tuplify would make of it; a cache hit is therefore a spec
        # that passed validation before. (Anything else - sub-arrays, titles, junk -
        # is unhashable here or equal to no valid spec, and takes the full path.)
        if type(descr) is str:
            key: Any = descr
        elif type(descr) is list and set(map(type, descr)) == _LIST_ONLY:
            key = tuple(map(tuple, descr))
        else:
            key = None
        cached = _DTYPES.get(key)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    spec = _tuplify(descr)
    try:
        return _DTYPES[spec]
    except KeyError:
        pass
    except TypeError:  # pragma: no cover - _tuplify returns hashable specs
        raise CorruptFileError("malformed dtype description") from None
    dtype = _make_dtype(spec, descr)
    if len(_DTYPES) < 4096:
        _DTYPES[spec] = dtype
        if not dtype.hasobject and dtype.itemsize:
            ARRAY_DTYPES[spec] = (dtype, dtype.itemsize)
    return dtype


def _numpy_descr(spec: Any) -> Any:
    """Back to numpy's descr: a str, or a *list* of field tuples (a tuple means (dtype, shape))."""
    if type(spec) is str:
        return spec
    return [(f[0], _numpy_descr(f[1]), *f[2:]) for f in spec]


def _make_dtype(spec: Any, descr: Any) -> np.dtype[Any]:
    try:
        # (A plain type string is what descr_to_dtype itself hands to np.dtype.)
        dtype = np.dtype(spec) if type(spec) is str else np.lib.format.descr_to_dtype(
            _numpy_descr(spec)
        )
    except Exception as exc:
        raise CorruptFileError(f"invalid dtype description {brief(descr)}: {exc}") from None
    if dtype.kind not in PLAIN_KINDS and dtype != np.dtype(object):
        raise CorruptFileError(f"dtype {dtype} is not allowed")
    return dtype


@encodes(np.dtype)
def _enc_dtype(enc: Encoder, obj: np.dtype[Any], path: Path) -> Node:
    return Node(DTYPE, dtype_descr(obj, path))


@decodes(DTYPE, lambda: [np.dtype("f8"), np.dtype(">i2"), np.dtype([("a", "<u4"), ("b", "O")])])
def _dec_dtype(dec: Decoder, payload: Any) -> np.dtype[Any]:
    return descr_dtype(payload)


# -- arrays ----------------------------------------------------------------
def indices_below(arr: np.ndarray, n: int) -> bool:
    """Whether every value of the integer array ``arr`` lies in [0, n).

    One pass, not two (min and max): viewed as unsigned, negative values become
    huge. On a memory-mapped KD-tree index array of 2M entries this halves the
    pages the load must read.
    """
    if not arr.size:
        return True
    fast = _compiled.speedups
    if (
        fast is not None
        and 0 <= n <= sys.maxsize
        and arr.flags.c_contiguous
        and arr.dtype.isnative
        and arr.dtype.kind in "iu"
        and fast.below(arr, arr.itemsize, arr.dtype.kind == "i", n)
    ):
        return True
    # Not fine (or no compiled twin): numpy's answer is the reference.
    if arr.dtype.kind == "i":
        if n > np.iinfo(arr.dtype).max:
            # Every non-negative value is below n, and viewed as unsigned a negative one
            # may be too (int8 -1 is 255 < 256: the compiled twin's test found it).
            return int(arr.min()) >= 0
        arr = arr.view(arr.dtype.str.replace("i", "u"))
    return int(arr.max()) < n


def _raw_bytes(arr: np.ndarray) -> np.ndarray:
    """The array's memory as a flat uint8 array, in C order, or F order if F-contiguous."""
    if arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous:
        flat = arr.T.reshape(-1)
    else:
        flat = contiguous(arr).reshape(-1)
    return flat.view(np.uint8) if flat.dtype.itemsize else np.empty(0, np.uint8)


def contiguous(arr: np.ndarray) -> np.ndarray:
    """``arr`` in C order; a copy of a record array has zeros between its fields."""
    if arr.flags.c_contiguous or arr.dtype.names is None:
        return np.ascontiguousarray(arr)
    return record_copy(arr, arr.dtype)


def record_copy(
    arr: np.ndarray, dtype: np.dtype[Any], order: Literal["C", "F"] = "C"
) -> np.ndarray:
    """A copy of record array ``arr`` as ``dtype`` (another byte order, say), laid out in
    ``order``, with zeros between its fields.

    numpy copies records field by field (``ascontiguousarray``, ``copy``, ``byteswap``,
    ``astype``), leaving the gaps between fields as whatever the allocator held - bytes
    of other objects, heap addresses among them - which a saved file would then carry
    (and no two saves alike)."""
    out = np.zeros(arr.shape, dtype, order=order)  # zeroed; assignment fills the fields
    out[...] = arr
    return out


def array_node(enc: Encoder, arr: np.ndarray, path: Path = None) -> Node:
    """NDARRAY node for a non-object array: data out of line in a buffer, or inline if tiny."""
    fortran = bool(arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous)
    descr = dtype_descr(arr.dtype, path)
    if type(descr) is list:  # structured: repeats across a forest's trees
        descr = enc.intern(descr)
    raw = _raw_bytes(arr)
    data: Any = raw.tobytes() if raw.nbytes <= INLINE_MAX else enc.add_buffer(raw)
    return Node(NDARRAY, [descr, list(arr.shape), fortran, data])


@encodes(np.ndarray, memoize=True)
def _enc_ndarray(enc: Encoder, arr: np.ndarray, path: Path) -> Node:
    if arr.dtype.hasobject:
        if arr.dtype != np.dtype(object):
            raise UnsupportedObjectError(
                f"structured arrays with object fields ({arr.dtype}) are not supported",
                render_path(path),
            )
        fortran = bool(arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous)
        items = arr.ravel(order="F" if fortran else "C").tolist() if arr.ndim else [arr[()]]
        # tolist() on an object array returns the elements themselves.
        return Node(OBJARRAY, [list(arr.shape), fortran, enc.encode_items(items, path)])
    return array_node(enc, arr, path)


def _shape(value: Any) -> tuple[int, ...]:
    if type(value) is not list or len(value) > MAX_NDIM:
        raise CorruptFileError(f"malformed array shape {brief(value)}")
    for n in value:
        if type(n) is not int or n < 0:
            raise CorruptFileError(f"malformed array shape {brief(value)}")
    return tuple(value)


def _sample_arrays() -> list[Any]:
    return [
        np.arange(12.0).reshape(3, 4),
        np.asfortranarray(np.arange(6).reshape(2, 3)),
        np.array(3.5),
        np.zeros((0, 3), dtype=">i4"),
        np.array(["a", "bc"]),
        np.array(["2020-01-01"], dtype="M8[D]"),
        np.zeros(2, dtype=[("x", "<f4"), ("y", "u1", (2,))]),
    ]


@decodes(NDARRAY, _sample_arrays)
def _dec_ndarray(dec: Decoder, payload: Any) -> np.ndarray:
    descr, shape_, fortran, index = expect_list(payload, 4, "array")
    dtype = descr_dtype(descr)
    shape = _shape(shape_)
    if dtype.hasobject or type(fortran) is not bool:
        raise CorruptFileError("malformed array node (object dtype out of line)")
    buf: np.ndarray | bytearray
    if type(index) is bytes:
        if len(index) > INLINE_MAX:
            raise CorruptFileError("an inline array is larger than inline arrays may be")
        buf = bytearray(index)  # a writable copy the array owns (via its base)
        size = len(buf)
    else:
        buf = dec.take_buffer(index)
        size = buf.nbytes
    count = math.prod(shape)
    if dtype.itemsize == 0 and count:
        # numpy would silently widen a zero-size dtype and allocate count bytes.
        raise CorruptFileError(f"array of {count} elements of the zero-size dtype {dtype}")
    nbytes = count * dtype.itemsize
    if nbytes != size:
        raise CorruptFileError(
            f"array of shape {shape} and dtype {dtype} needs {nbytes} bytes, "
            f"its buffer holds {size}"
        )
    if nbytes == 0:
        return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    return np.ndarray(shape, dtype=dtype, buffer=buf, order="F" if fortran else "C")


@decodes(OBJARRAY, lambda: [np.array(["a", None, 3], dtype=object), np.empty((2, 0), dtype=object)])
def _dec_objarray(dec: Decoder, payload: Any) -> np.ndarray:
    shape_, fortran, items = expect_list(payload, 3, "object array")
    shape = _shape(shape_)
    if type(items) is not list or len(items) != math.prod(shape) or type(fortran) is not bool:
        raise CorruptFileError("object array: item count does not match its shape")
    dec.expand(items, "an object array")
    flat = np.empty(len(items), dtype=object)
    if set(map(type, items)) <= _SIMPLE:
        flat[:] = items  # one C-level copy; sequences would be broadcast, so they take the loop
    else:
        for i, v in enumerate(items):
            flat[i] = v
    return flat.reshape(shape, order="F" if fortran else "C")


# -- scalars ---------------------------------------------------------------
def _enc_scalar(enc: Encoder, obj: np.generic, path: Path) -> Node:
    if obj.dtype.hasobject:
        raise UnsupportedObjectError("numpy object scalars are not supported", render_path(path))
    # An empty bytes_/str_ scalar has dtype S0/U0, but np.asarray() widens it to S1/U1.
    raw = np.asarray(obj).tobytes() if obj.dtype.itemsize else b""
    return Node(NPSCALAR, [dtype_descr(obj.dtype, path), raw])


# The scalar types the compiled walk writes itself (_encode.c's encode_scalar): numbers,
# whose bytes are their value's (long doubles' padding bytes left to the handler).
NUMBER_SCALARS = frozenset(
    t for t in np.sctypeDict.values()
    if isinstance(t, type) and issubclass(t, (np.number, np.bool_))
    and t not in (np.longdouble, np.clongdouble)
)

for _t in {
    *np.sctypeDict.values(),
    np.bool_,
    np.str_,
    np.bytes_,
    np.void,
    np.datetime64,
    np.timedelta64,
}:
    if isinstance(_t, type) and issubclass(_t, np.generic) and _t is not np.object_:
        ENCODERS[_t] = _enc_scalar


@decodes(
    NPSCALAR,
    lambda: [
        np.float64(1.5),
        np.int8(-3),
        np.bool_(True),
        np.str_("hé"),
        np.datetime64("2021-02-03"),
    ],
)
def _dec_scalar(dec: Decoder, payload: Any) -> np.generic:
    descr, raw = expect_list(payload, 2, "numpy scalar")
    dtype = descr_dtype(descr)
    if type(raw) is not bytes or dtype.hasobject or len(raw) != dtype.itemsize:
        raise CorruptFileError("numpy scalar: data does not match its dtype")
    scalar: Any = np.frombuffer(raw, dtype=dtype, count=1)[0] if raw else np.zeros((), dtype)[()]
    return scalar


# -- random generators -----------------------------------------------------
BIT_GENERATORS = {
    cls: f"{cls.__module__}.{cls.__qualname__}"
    for cls in (
        np.random.MT19937,
        np.random.PCG64,
        np.random.PCG64DXSM,
        np.random.Philox,
        np.random.SFC64,
    )
}


def _enc_bitgen(enc: Encoder, obj: Any, path: Path) -> Node:
    cls = type(obj)
    name = enc.intern(enc.declare(cls.__module__, cls.__qualname__, OBJECT))
    state = enc.bitgen_states.get(id(obj)) or obj.state
    seed_seq = getattr(obj, "seed_seq", _ABSENT)  # (numpy >= 1.25)
    # Kept, as pickle keeps it: spawn() and .seed_seq after a load are the original's,
    # None included (a legacy-seeded generator: RandomState(42), as every scikit-learn
    # estimator's random_state=42 makes).
    fields = None if seed_seq is None else _seed_fields(seed_seq)
    if fields is not None or seed_seq is None:
        state = {**state, SEED_SEQ: fields}
    return Node(BITGENERATOR, [name, enc.encode(state, (path, "state"))])


_ABSENT = object()
# numpy 2 bit generators take their seed sequence with their state (pickle's way):
# the only way to give one back None, which no constructor makes.
STATE_AND_SEED = int(np.__version__.split(".")[0]) >= 2


class _Zeros(np.random.bit_generator.ISeedSequence):
    """A seed sequence of zero words, for a bit generator whose state is set next.

    It answers numpy's request exactly as a SeedSequence does (an array of the asked
    length and dtype), so every bit generator's constructor takes it.
    """

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        return np.zeros(n_words, dtype)


class _ZeroWords(_Zeros):
    """The zeros for MT19937 alone, as a list: its constructor copies the words one at a
    time by index (numpy 1.17 to 2.x, _mt19937.pyx), which took 33 us over an array (a
    numpy scalar per word) and 2 us over a list. The other bit generators read the
    array's memory, so they are given the array."""

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> Any:
        return [0] * n_words


_UNSEEDED = _Zeros()
# (A numpy past 2.x might read the words' memory, as the others do: it gets the array.)
_UNSEEDED_MT = _ZeroWords() if int(np.__version__.split(".")[0]) <= 2 else _UNSEEDED


# The state map's extra entry for the bit generator's SeedSequence (numpy's own state
# has no such key; readers that predate it pass it to numpy, which ignores it).
SEED_SEQ = "seed_seq"
_MAX_SEED_WORDS = 1 << 16
_MAX_INT_BITS = 32 << 10  # one entropy int: ~10 ms for numpy to split
_MAX_SEED_BITS = 32 << 16  # all entropy and spawn-key bits of one seed sequence
_MAX_POOL = 256


for _cls in BIT_GENERATORS:
    ENCODERS[_cls] = _enc_bitgen
    MEMOIZED.add(_cls)


def _drawn_from(bitgen: Any) -> Any:
    """``bitgen`` after 1,001 draws: its words and position no longer as seeded."""
    np.random.Generator(bitgen).integers(0, 10, 1001)
    return bitgen


@decodes(
    BITGENERATOR,
    lambda: [np.random.PCG64(7), np.random.MT19937(3), _drawn_from(np.random.MT19937(5))],
)
def _dec_bitgen(dec: Decoder, payload: Any) -> Any:
    name, state = expect_list(payload, 2, "bit generator")
    cls = dec.require(name, OBJECT)
    if cls not in BIT_GENERATORS:
        raise CorruptFileError(f"{name} is not a numpy bit generator")
    if type(state) is not dict:
        raise CorruptFileError("bit generator state must be a dict")
    fields = state.get(SEED_SEQ, _ABSENT)
    if fields is not _ABSENT:
        state = {k: v for k, v in state.items() if k != SEED_SEQ}
    seed_seq: np.random.SeedSequence | None
    if fields is _ABSENT:  # a jar from before seed sequences were kept: a fresh one,
        seed_seq = np.random.SeedSequence()  # as numpy's constructor makes
    else:
        seed_seq = None if fields is None else _seed_sequence(fields, name)
    if not STATE_AND_SEED:
        bitgen = cls() if seed_seq is None else _guarded_new(cls, seed_seq, name)
    else:
        # The state set next overwrites what the constructor seeds, so it seeds the
        # cheapest way: MT19937 from zeros (seeding its 624 words from a sequence took
        # 0.1 ms warm, 0.3 ms cold), the others from their own sequence or zeros.
        cheapest: np.random.bit_generator.ISeedSequence
        if cls is np.random.MT19937:
            cheapest = _UNSEEDED_MT
        else:
            cheapest = _UNSEEDED if seed_seq is None else seed_seq
        bitgen = _guarded_new(cls, cheapest, name)
    try:
        check_positions(state)
        state = _key_as_list(state)
        if STATE_AND_SEED:
            bitgen.__setstate__((state, seed_seq))  # numpy validates names, types and sizes
        else:
            bitgen.state = state  # (the same checks)
    except CorruptFileError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"invalid {name} state: {exc}") from None
    return bitgen


def _seed_fields(seed_seq: Any) -> list[Any] | None:
    """A SeedSequence as stored: [entropy, spawn_key, pool_size, n_children_spawned], or
    None when it is not a plain SeedSequence or a reader would refuse it (the load then
    reseeds from the OS, as before)."""
    if type(seed_seq) is not np.random.SeedSequence:
        return None
    entropy = seed_seq.entropy
    if isinstance(entropy, (np.ndarray, list, tuple)):
        entropy = [int(x) for x in np.asarray(entropy).ravel()]
    elif isinstance(entropy, np.integer):
        entropy = int(entropy)
    fields = [
        entropy,
        [int(x) for x in seed_seq.spawn_key],
        seed_seq.pool_size,
        seed_seq.n_children_spawned,
    ]
    return fields if seed_fields_ok(fields) else None


def seed_fields_ok(fields: Any) -> bool:
    """The stored fields' rules, for the writer, the reader and the pickle converter alike.

    pool_size sizes an allocation and numpy mixes the pool in time quadratic in it; numpy
    splits each entropy int into 32-bit words in time quadratic in its length (an int of
    2**21 bits took 39 s): so the pool, each int and all the bits together are bounded.
    """
    if type(fields) is not list or len(fields) != 4:
        return False
    entropy, spawn_key, pool_size, n_children = fields
    if (
        type(spawn_key) is not list
        or len(spawn_key) > _MAX_SEED_WORDS
        or type(pool_size) is not int
        or not 4 <= pool_size <= _MAX_POOL
        or type(n_children) is not int
        or not 0 <= n_children < 1 << 63
    ):
        return False
    if entropy is None or type(entropy) is int:
        numbers = spawn_key if entropy is None else [entropy, *spawn_key]
    elif type(entropy) is list and len(entropy) <= _MAX_SEED_WORDS:
        numbers = entropy + spawn_key
    else:
        return False
    # One loop, no closures: a forked process's first load ran the nested helpers'
    # first calls for one seed sequence (~50 us).
    bits = 0
    for x in numbers:
        if type(x) is not int or x < 0:
            return False
        n = x.bit_length()
        if n > _MAX_INT_BITS:
            return False
        bits += n
    return bits <= _MAX_SEED_BITS


def _seed_sequence(fields: Any, name: str) -> np.random.SeedSequence:
    """The SeedSequence stored with a bit generator, checked before numpy sees it."""
    if not seed_fields_ok(fields):
        raise CorruptFileError(f"{name}: malformed seed sequence {brief(fields)}")
    entropy, spawn_key, pool_size, n_children = fields
    try:
        return np.random.SeedSequence(
            entropy, spawn_key=tuple(spawn_key), pool_size=pool_size,
            n_children_spawned=n_children,
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptFileError(f"{name}: invalid seed sequence: {exc}") from None


def _key_as_list(state: dict[str, Any]) -> dict[str, Any]:
    """MT19937's state with its 624-word key as a list: numpy's setter indexes the key
    word by word, which took 55 us over an array (a numpy scalar per word) and 2.5 us
    over a list. Only a key of exactly that shape and an integer dtype is converted, so
    numpy sees the same values and refuses the same ones; anything else is left to it."""
    inner = state.get("state")
    if type(inner) is not dict:
        return state
    key = inner.get("key")
    if type(key) is not np.ndarray or key.shape != (624,) or key.dtype.kind not in "iu":
        return state
    return {**state, "state": {**inner, "key": key.tolist()}}


def _guarded_new(cls: type, seed_seq: np.random.bit_generator.ISeedSequence, name: str) -> Any:
    try:
        return cls(seed_seq)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CorruptFileError(f"{name}: cannot seed from its seed sequence: {exc}") from None


# Positions numpy's state setters store without a range check, and its C code then
# uses to index the generator's buffers: MT19937 ``pos`` (key[pos], 624 words) and
# Philox ``buffer_pos`` (buffer[buffer_pos], 4 words). pos = 10**7 or buffer_pos =
# -10**9 loaded and segfaulted on the first draw: tests/security/test_meaning_tampering.py.
_POSITIONS = {"MT19937": (("state", "pos"), 624), "Philox": (("buffer_pos",), 4)}


def check_positions(state: dict[str, Any]) -> None:
    """Checked on the decoded state before numpy stores it (so only exact ints pass)."""
    name = state.get("bit_generator")
    if state.get("has_uint32", 0) not in (0, 1) or type(state.get("has_uint32", 0)) is not int:
        raise CorruptFileError(f"{name} state: has_uint32 must be 0 or 1")
    if name in _POSITIONS:
        path, size = _POSITIONS[name]
        value: Any = state
        for key in path:
            value = value.get(key) if type(value) is dict else None
        if type(value) is not int:
            raise CorruptFileError(f"{name} state: position {brief(value)} is not an integer")
        if not 0 <= value <= size:
            raise CorruptFileError(f"{name} state: position {value} is outside [0, {size}]")


@encodes(np.random.RandomState, memoize=True)
def _enc_randomstate(enc: Encoder, obj: np.random.RandomState, path: Path) -> Node:
    enc.declare("numpy.random.mtrand", "RandomState", OBJECT)
    state = obj.get_state(legacy=False)  # the bit generator's state, and the Gaussian
    bitgen = obj._bit_generator
    own = {k: v for k, v in state.items() if k not in ("has_gauss", "gauss")}
    enc.bitgen_states[id(bitgen)] = own  # read once, not again by _enc_bitgen
    try:
        node = enc.encode(bitgen, (path, "bit_generator"))
    finally:
        del enc.bitgen_states[id(bitgen)]
    return Node(RANDOMSTATE, [node, int(state["has_gauss"]), float(state["gauss"])])


@decodes(RANDOMSTATE, lambda: [np.random.RandomState(0), np.random.RandomState(np.random.PCG64(1))])
def _dec_randomstate(dec: Decoder, payload: Any) -> np.random.RandomState:
    bitgen, has_gauss, gauss = expect_list(payload, 3, "RandomState")
    cls = dec.require("numpy.random.mtrand.RandomState", OBJECT)
    if type(bitgen) not in BIT_GENERATORS or has_gauss not in (0, 1) or type(gauss) is not float:
        raise CorruptFileError("malformed RandomState node")
    rs = cls(bitgen)
    if has_gauss or gauss != 0.0:  # a new RandomState holds no Gaussian: nothing to set
        state = rs.get_state(legacy=False)
        state.update(has_gauss=has_gauss, gauss=gauss)
        rs.set_state(state)
    return rs


@encodes(np.random.Generator, memoize=True)
def _enc_generator(enc: Encoder, obj: np.random.Generator, path: Path) -> Node:
    enc.declare("numpy.random._generator", "Generator", OBJECT)
    return Node(GENERATOR, enc.encode(obj.bit_generator, (path, "bit_generator")))


@decodes(GENERATOR, lambda: [np.random.default_rng(5)])
def _dec_generator(dec: Decoder, payload: Any) -> np.random.Generator:
    cls = dec.require("numpy.random._generator.Generator", OBJECT)
    if type(payload) not in BIT_GENERATORS:
        raise CorruptFileError("malformed Generator node")
    return cls(payload)


# -- masked arrays (e.g. GridSearchCV.cv_results_) ---------------------------
def _fill_scalar(value: Any) -> Any:
    # Once read, numpy keeps the fill value as a 0-d array: store its scalar.
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


@encodes(np.ma.MaskedArray, memoize=True)
def _enc_masked(enc: Encoder, obj: np.ma.MaskedArray, path: Path) -> Node:
    enc.declare("numpy.ma.core", "MaskedArray", OBJECT)
    mask = obj._mask  # type: ignore[attr-defined]
    return Node(
        MASKEDARRAY,
        [
            enc.encode(np.asarray(obj.data), (path, "data")),
            False if mask is np.ma.nomask else enc.encode(np.asarray(mask), (path, "mask")),
            enc.encode(_fill_scalar(obj._fill_value), (path, "fill_value")),  # type: ignore[attr-defined]
            bool(obj._hardmask),  # type: ignore[attr-defined]
        ],
    )


@decodes(
    MASKEDARRAY,
    lambda: [
        np.ma.MaskedArray([1.0, 2.0], mask=[True, False]),
        np.ma.MaskedArray(["a", "b"], dtype=object),
        np.ma.MaskedArray(np.zeros(2, [("a", "<i4")]), mask=[(True,), (False,)]),
    ],
)
def _dec_masked(dec: Decoder, payload: Any) -> np.ma.MaskedArray:
    data, mask, fill_value, hard = expect_list(payload, 4, "masked array")
    cls = dec.require("numpy.ma.core.MaskedArray", OBJECT)
    if not isinstance(data, np.ndarray) or type(hard) is not bool:
        raise CorruptFileError("malformed masked array node")
    if mask is not False and (
        not isinstance(mask, np.ndarray)
        or mask.shape != data.shape
        or mask.dtype != np.ma.make_mask_descr(data.dtype)  # bool, or bool fields
    ):
        raise CorruptFileError("masked array: the mask must be a bool array shaped like the data")
    if fill_value is not None and not isinstance(
        fill_value, (np.generic, int, float, str, bytes, bool)
    ):
        raise CorruptFileError("masked array: invalid fill value")
    try:
        return cls(
            data,
            mask=np.ma.nomask if mask is False else mask,
            fill_value=fill_value,
            hard_mask=hard,
            copy=False,
        )
    except Exception as exc:
        raise CorruptFileError(f"invalid masked array: {exc}") from None


# The dtypes of nearly every model's arrays, validated once at import: a process's
# first load then finds them (and the compiled walker builds their arrays itself).
# The structured ones are scikit-learn's node records - a decision tree's, a
# HistGradientBoosting predictor's, a KD/Ball tree's - spelled as the writer spells
# them (a descr that no longer matches a newer scikit-learn only costs its entry).
# Validating one on first use runs numpy's descr_to_dtype, ~0.1 ms in a fresh process.
_STRUCTURED_DESCRS: list[list[list[str]]] = [
    [["left_child", "<i8"], ["right_child", "<i8"], ["feature", "<i8"], ["threshold", "<f8"],
     ["impurity", "<f8"], ["n_node_samples", "<i8"], ["weighted_n_node_samples", "<f8"],
     ["missing_go_to_left", "|u1"], ["", "|V7"]],
    [["value", "<f8"], ["count", "<u4"], ["feature_idx", "<i8"], ["num_threshold", "<f8"],
     ["missing_go_to_left", "|u1"], ["left", "<u4"], ["right", "<u4"], ["gain", "<f8"],
     ["depth", "<u4"], ["is_leaf", "|u1"], ["bin_threshold", "|u1"], ["is_categorical", "|u1"],
     ["bitset_idx", "<u4"]],
    [["idx_start", "<i8"], ["idx_end", "<i8"], ["is_leaf", "<i8"], ["radius", "<f8"]],
]


def _native(descr: Any) -> Any:
    """A little-endian descr as this machine's byte order spells it."""
    if sys.byteorder == "little":
        return descr
    if type(descr) is str:
        return descr.replace("<", ">")
    return [[name, _native(sub)] for name, sub in descr]


for _descr in ("<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2", "|u1",
               "|b1", "<c16", "<c8", *_STRUCTURED_DESCRS):
    descr_dtype(_native(_descr))
