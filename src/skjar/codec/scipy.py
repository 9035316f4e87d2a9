"""scipy.sparse: meaning checks for the index arrays compiled code will follow.

scipy's C++ sparsetools trust ``indptr``/``indices`` (and COO ``coords``):
out-of-range values read or write out of bounds. Sparse matrices are plain
instances (state is their ``__dict__``), so their state is checked here
before it is applied. Cached "sorted"/"canonical" flags are dropped so scipy
recomputes them instead of trusting the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CorruptFileError
from .decoder import brief
from .numpy import indices_below
from .registry import owns_indexes, validates

_CACHED_FLAGS = ("_has_sorted_indices", "_has_canonical_format", "has_canonical_format")


def _fail(fmt: str, why: str) -> CorruptFileError:
    return CorruptFileError(f"sparse {fmt} matrix: {why}; the file was damaged or crafted")


def _shape(state: dict[str, Any], fmt: str) -> tuple[int, ...]:
    shape = state.get("_shape")
    if (
        type(shape) is not tuple
        or not 1 <= len(shape) <= 2
        or any(not isinstance(n, (int, np.integer)) or n < 0 for n in shape)
    ):
        raise _fail(fmt, f"invalid shape {brief(shape)}")
    return tuple(int(n) for n in shape)


def _index_array(value: Any, fmt: str, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in "iu":
        raise _fail(fmt, f"{what} must be a 1-d integer array")
    return value


def _check_compressed(
    state: dict[str, Any], fmt: str, major: int, minor: int, block: tuple[int, int]
) -> None:
    indptr = _index_array(state.get("indptr"), fmt, "indptr")
    indices = _index_array(state.get("indices"), fmt, "indices")
    data = state.get("data")
    if not isinstance(data, np.ndarray):
        raise _fail(fmt, "data must be an array")
    if len(indptr) != major + 1 or (len(indptr) and indptr[0] != 0):
        raise _fail(fmt, f"indptr must have {major + 1} entries starting at 0")
    # (Compared, not subtracted: np.diff wraps around in the array's own type, and an
    # indptr going 100, -2**31, -1 "never decreased" - a fuzz finding that segfaulted.)
    if (indptr[1:] < indptr[:-1]).any():
        raise _fail(fmt, "indptr must not decrease")
    nnz = int(indptr[-1]) if len(indptr) else 0
    if (
        nnz != len(indices)
        or data.shape[:1] != (nnz,)
        or data.shape[1:] != (block if fmt == "bsr" else ())
    ):
        raise _fail(fmt, "indptr, indices and data disagree on the number of entries")
    if not indices_below(indices, minor):
        raise _fail(fmt, f"column/row indices must lie in [0, {minor})")


def _check(fmt: str) -> Any:
    def check(args: Any, state: Any) -> None:
        if type(state) is not dict:
            raise _fail(fmt, "state must be a dict")
        for flag in _CACHED_FLAGS:
            state.pop(flag, None)
        shape = _shape(state, fmt)
        rows, cols = shape if len(shape) == 2 else (1, shape[0])
        if fmt == "csr":
            _check_compressed(state, fmt, rows, cols, (1, 1))
        elif fmt == "csc":
            _check_compressed(state, fmt, cols, rows, (1, 1))
        elif fmt == "bsr":
            data = state.get("data")
            if not isinstance(data, np.ndarray) or data.ndim != 3:
                raise _fail(fmt, "data must be a 3-d array of blocks")
            r, c = data.shape[1:]
            if r < 1 or c < 1 or rows % r or cols % c:
                raise _fail(fmt, f"block size {(r, c)} does not divide shape {shape}")
            _check_compressed(state, fmt, rows // r, cols // c, (r, c))
        else:  # coo
            coords = state.get("coords")
            data = state.get("data")
            if (
                type(coords) is not tuple
                or len(coords) != len(shape)
                or not isinstance(data, np.ndarray)
            ):
                raise _fail(fmt, "coords must be one index array per dimension")
            for axis, (idx, size) in enumerate(zip(coords, shape)):
                idx = _index_array(idx, fmt, f"coords[{axis}]")
                if idx.shape != data.shape:
                    raise _fail(fmt, "coords and data differ in length")
                if not indices_below(idx, size):
                    raise _fail(fmt, f"coords[{axis}] must lie in [0, {size})")

    return check


def _index_arrays(args: Any, state: Any) -> tuple[Any, ...]:
    """A sparse matrix's index arrays, which scipy's compiled code follows unchecked."""
    coords = state.get("coords")
    return (state.get("indices"), state.get("indptr"), *(coords if type(coords) is tuple else ()))


for _fmt in ("csr", "csc", "coo", "bsr"):
    _names = (f"scipy.sparse._{_fmt}.{_fmt}_matrix", f"scipy.sparse._{_fmt}.{_fmt}_array")
    validates(*_names)(_check(_fmt))
    owns_indexes(*_names)(_index_arrays)
