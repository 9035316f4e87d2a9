"""numpy values rebuilt from validated parts: dtypes, arrays, scalars.

The pickle of a numpy array names ``numpy._core.multiarray._reconstruct`` and
hands ``ndarray.__setstate__`` a tuple; a dtype names ``numpy.dtype`` and hands
``dtype.__setstate__`` another. The converter calls neither: it checks each
part (shape, byte order, field offsets, data length...) and builds the value
with numpy's ordinary constructors, so malformed state is refused with
``CorruptFileError`` instead of reaching numpy's C unpickling code.

>>> arr = array_from_bytes(b"\\x01\\x00\\x02\\x00", np.dtype("<i2"), (2,), False, "x")
>>> arr.tolist(), arr.flags.writeable
([1, 2], True)
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any, Literal

import numpy as np

from ..codec.numpy import PLAIN_KINDS, record_copy
from ..errors import CorruptFileError, UnsupportedPickleError
from ..format.spec import MAX_NDIM

__all__ = [
    "array_from_bytes",
    "array_from_items",
    "check_shape",
    "exact_copy",
    "make_dtype",
    "native_byte_order",
    "scalar_from_bytes",
]

MAX_FIELDS = 4096
MAX_DIM = 1 << 62
_TYPESTR = re.compile(r"^[?bBhHiIlLqQpPefdgFDGbiufcOSUVMma][0-9]{0,10}$")
_DATETIME_UNITS = frozenset(
    {"Y", "M", "W", "D", "h", "m", "s", "ms", "us", "μs", "ns", "ps", "fs", "as", "generic"}
)
ALIGNED_STRUCT = 0x80  # NPY_ALIGNED_STRUCT in a dtype's pickled flags


def _fail(what: str, why: str) -> CorruptFileError:
    return CorruptFileError(f"{what}: {why}; the file is damaged or crafted")


def check_shape(shape: Any, what: str) -> tuple[int, ...]:
    """A validated array shape (a tuple of non-negative ints, at most 64 dims).

    >>> check_shape((2, 3), "a")
    (2, 3)
    """
    if type(shape) is int:
        shape = (shape,)
    if type(shape) not in (tuple, list) or len(shape) > MAX_NDIM:
        raise _fail(what, f"malformed shape {shape!r:.80}")
    out = []
    for n in shape:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n < MAX_DIM:
            raise _fail(what, f"malformed shape {shape!r:.80}")
        out.append(int(n))
    return tuple(out)


def _is_bool_flag(value: Any) -> bool:
    return type(value) in (bool, int) and value in (0, 1)


# -- dtypes ------------------------------------------------------------------
def make_dtype(args: tuple[Any, ...], state: Any) -> np.dtype[Any]:
    """The dtype pickled as ``numpy.dtype(*args)`` + BUILD ``state``, rebuilt safely.

    >>> make_dtype(("f8", False, True), (3, ">", None, None, None, -1, -1, 0))
    dtype('>f8')
    >>> make_dtype(("M8", False, True), (4, "<", None, None, None, -1, -1, 0, (None, (b"D", 1, 1, 1))))
    dtype('<M8[D]')
    """
    what = "numpy dtype"
    if type(args) is not tuple or not 1 <= len(args) <= 3:
        raise _fail(what, "expected (typestr, align, copy)")
    typestr = args[0]
    if type(typestr) is bytes:
        typestr = typestr.decode("latin-1")
    if type(typestr) is not str or not _TYPESTR.match(typestr):
        raise _fail(what, f"unknown type string {typestr!r:.40}")
    if any(not _is_bool_flag(a) for a in args[1:]):
        raise _fail(what, "align/copy must be booleans")
    try:
        base = np.dtype(typestr)
    except (TypeError, ValueError) as exc:
        raise _fail(what, f"invalid type string {typestr!r}: {exc}") from None
    if state is None:
        return _checked(base)
    if type(state) is not tuple or len(state) not in (8, 9) or state[0] not in (3, 4):
        raise _fail(what, "state must be numpy's (version, endian, subarray, names, fields, ...)")
    if len(state) != (9 if state[0] == 4 else 8):
        raise _fail(what, "state length does not match its version")
    endian, subarray, names, fields, elsize, alignment, flags = state[1:8]
    if endian not in ("<", ">", "|", "="):
        raise _fail(what, f"unknown byte order {endian!r:.10}")
    for value in (elsize, alignment, flags):
        if type(value) is not int:
            raise _fail(what, "size, alignment and flags must be integers")
    metadata = state[8] if len(state) == 9 else None
    if subarray is not None:
        dtype = _subarray_dtype(subarray)
    elif names is not None or fields is not None:
        dtype = _struct_dtype(names, fields, elsize, bool(flags & ALIGNED_STRUCT))
    else:
        dtype = base
        if base.kind in "mM":
            dtype = _datetime_dtype(typestr, metadata)
        if endian in "<>" and dtype.byteorder != "|":
            dtype = dtype.newbyteorder(endian)
        if base.kind in "SUV" and elsize >= 0 and elsize != dtype.itemsize:
            raise _fail(what, f"item size {elsize} does not match {typestr!r}")
    return _checked(dtype)


def _checked(dtype: np.dtype[Any]) -> np.dtype[Any]:
    if dtype.kind not in PLAIN_KINDS and dtype != np.dtype(object):
        raise _fail("numpy dtype", f"dtype {dtype} is not allowed")
    return dtype


def _datetime_dtype(typestr: str, metadata: Any) -> np.dtype[Any]:
    what = "numpy datetime dtype"
    if metadata is None:
        return np.dtype(typestr)
    if type(metadata) is not tuple or len(metadata) != 2:
        raise _fail(what, "malformed unit metadata")
    unit = metadata[1]
    if type(unit) is not tuple or len(unit) != 4:
        raise _fail(what, "malformed unit metadata")
    name, num = unit[0], unit[1]
    if type(name) is bytes:
        name = name.decode("latin-1")
    if name not in _DATETIME_UNITS or type(num) is not int or not 1 <= num < 1 << 31:
        raise _fail(what, f"unknown unit {unit!r:.40}")
    kind = typestr[:2]
    return np.dtype(kind if name == "generic" else f"{kind}[{num}{name}]")


def _subarray_dtype(subarray: Any) -> np.dtype[Any]:
    what = "numpy sub-array dtype"
    if type(subarray) is not tuple or len(subarray) != 2 or not isinstance(subarray[0], np.dtype):
        raise _fail(what, "expected (base dtype, shape)")
    shape = check_shape(subarray[1], what)
    if any(n >= 1 << 31 for n in shape) or math.prod(shape) * subarray[0].itemsize >= 1 << 40:
        raise _fail(what, "sub-array is too large")
    return np.dtype((subarray[0], shape))


def _struct_dtype(names: Any, fields: Any, elsize: Any, aligned: bool) -> np.dtype[Any]:
    what = "numpy structured dtype"
    if (
        type(names) is not tuple
        or type(fields) is not dict
        or not names
        or len(names) > MAX_FIELDS
        or any(type(n) is not str for n in names)
    ):
        raise _fail(what, "names must be a tuple of strings and fields a dict")
    formats, offsets, titles = [], [], []
    for name in names:
        spec = fields.get(name)
        if (
            type(spec) is not tuple
            or len(spec) not in (2, 3)
            or not isinstance(spec[0], np.dtype)
            or type(spec[1]) is not int
            or spec[1] < 0
        ):
            raise _fail(what, f"malformed field {name!r:.40}")
        formats.append(spec[0])
        offsets.append(spec[1])
        title = spec[2] if len(spec) == 3 else None
        if title is not None and type(title) is not str:
            raise _fail(what, "field titles must be strings")
        titles.append(title)
    if type(elsize) is not int or not 0 <= elsize < 1 << 40:
        raise _fail(what, "invalid item size")
    spec_dict: dict[str, Any] = {
        "names": list(names),
        "formats": formats,
        "offsets": offsets,
        "itemsize": elsize,
    }
    if any(t is not None for t in titles):
        spec_dict["titles"] = titles
    try:
        return np.dtype(spec_dict, align=aligned)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise _fail(what, f"{exc}") from None


# -- arrays -----------------------------------------------------------------
def _raw(data: Any, what: str) -> bytes | bytearray | memoryview:
    if isinstance(data, (bytes, bytearray)):
        return data
    if type(data) is str:  # Python 2 strings read as latin-1, as numpy does
        return data.encode("latin-1")
    raise _fail(what, f"array data must be bytes, got {type(data).__name__}")


def array_from_bytes(
    data: Any, dtype: np.dtype[Any], shape: tuple[int, ...], fortran: bool, what: str
) -> np.ndarray:
    """A new writable array of ``dtype`` and ``shape`` holding a copy of ``data``."""
    if dtype.hasobject:
        raise _fail(what, "object arrays are pickled as lists, not bytes")
    raw = _raw(data, what)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if len(raw) != nbytes:
        raise _fail(
            what,
            f"shape {shape} of {dtype} needs {nbytes} bytes of data, the file holds {len(raw)}",
        )
    order: Literal["C", "F"] = "F" if fortran else "C"
    if nbytes == 0:
        return np.empty(shape, dtype=dtype, order=order)
    return exact_copy(raw, dtype, count).reshape(shape, order=order)


def exact_copy(raw: Any, dtype: np.dtype[Any], count: int) -> np.ndarray:
    """A writable array of ``count`` items holding exactly the bytes of ``raw``: copied
    as bytes, since numpy copies a record array field by field and leaves the gaps
    between fields uninitialised (another object's memory, in the converted jar)."""
    return np.frombuffer(raw, dtype=np.uint8, count=count * dtype.itemsize).copy().view(dtype)


def array_from_items(
    items: Any, dtype: np.dtype[Any], shape: tuple[int, ...], fortran: bool, what: str
) -> np.ndarray:
    """An object array of ``shape`` from the list numpy pickles for it."""
    if dtype != np.dtype(object):
        raise UnsupportedPickleError(
            f"{what}: arrays of {dtype} with object fields are not supported"
        )
    if type(items) is not list or len(items) != math.prod(shape):
        raise _fail(what, f"expected {math.prod(shape)} items for shape {shape}")
    flat = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        flat[i] = item
    # numpy lists the items in C order whatever the layout (its __setstate__ fills the
    # array in C order too); the flag only says how the array lies in memory.
    array = flat.reshape(shape)
    return np.asfortranarray(array) if fortran else array


def ndarray_from_state(state: Any, what: str = "numpy array") -> np.ndarray:
    """The array ``ndarray.__setstate__(state)`` would build, from checked parts.

    >>> ndarray_from_state((1, (2,), np.dtype("u1"), False, b"\\x05\\x06")).tolist()
    [5, 6]
    """
    if type(state) is not tuple or len(state) not in (4, 5):
        raise _fail(what, "state must be (version, shape, dtype, is_fortran, data)")
    if len(state) == 5:
        if state[0] not in (0, 1):
            raise _fail(what, f"unknown state version {state[0]!r:.20}")
        state = state[1:]
    shape_, dtype, fortran, data = state
    shape = check_shape(shape_, what)
    if not isinstance(dtype, np.dtype) or not _is_bool_flag(fortran):
        raise _fail(what, "malformed dtype or order flag")
    if dtype.hasobject:
        return array_from_items(data, dtype, shape, bool(fortran), what)
    array = array_from_bytes(data, dtype, shape, bool(fortran), what)
    if dtype.byteorder == _SWAPPED:
        # As numpy's __setstate__ does: a non-native array comes back native, its
        # bytes swapped (a record dtype has no byte order of its own: kept as it is).
        return native_byte_order(array)
    return array


def scalar_from_bytes(dtype: Any, data: Any) -> Any:
    """The numpy scalar ``numpy._core.multiarray.scalar(dtype, data)`` returns.

    >>> scalar_from_bytes(np.dtype("f8"), b"\\x00\\x00\\x00\\x00\\x00\\x00\\xf8?")
    np.float64(1.5)
    """
    what = "numpy scalar"
    if not isinstance(dtype, np.dtype):
        raise _fail(what, "the first argument must be a dtype")
    if dtype.hasobject:
        if dtype != np.dtype(object):
            raise UnsupportedPickleError("numpy scalars with object fields are not supported")
        return data  # numpy returns the object itself
    raw = _raw(data, what)
    if len(raw) != dtype.itemsize:
        raise _fail(what, f"{dtype} needs {dtype.itemsize} bytes, the file holds {len(raw)}")
    if not raw:
        return np.zeros((), dtype)[()]
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


_SWAPPED = ">" if sys.byteorder == "little" else "<"


def native_byte_order(array: np.ndarray) -> np.ndarray:
    """What joblib's loader does by default: swap non-native byte orders to native (a
    record array's too, when all its fields are swapped)."""
    dtype = array.dtype
    swapped = dtype.byteorder == _SWAPPED or (
        dtype.byteorder == "|"
        and dtype.fields
        and all(f[0].byteorder == _SWAPPED for f in dtype.fields.values())
    )
    if not swapped:
        return array
    if dtype.names is None:
        return array.byteswap().view(dtype.newbyteorder("="))
    order: Literal["C", "F"] = (
        "F" if array.ndim > 1 and array.flags.f_contiguous and not array.flags.c_contiguous
        else "C"
    )
    return record_copy(array, dtype.newbyteorder("="), order)  # (not byteswap: see record_copy)
