"""Exact equality for round-trip tests: types, bits, dtypes, shapes, memory order.

``==`` is too forgiving to judge a serializer: ``1 == 1.0 == True``,
``0.0 == -0.0``, ``nan != nan``, ``np.dtype("<i4") == "i4"``. ``assert_same`` raises
``AssertionError`` naming the first difference, e.g. ``bytes[2]['f']: values differ``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["assert_same", "assert_same_array", "canon"]


def canon(value: Any) -> Any:
    """A hashable key that tells apart what ``==`` confuses (1, 1.0, True; 0.0, -0.0)."""
    kind = type(value)
    if kind is float:
        return (kind, value.hex() if not math.isnan(value) else "nan")
    if kind is complex:
        return (kind, canon(value.real), canon(value.imag))
    if kind in (tuple, frozenset):
        items = [canon(v) for v in value]
        return (kind, tuple(items) if kind is tuple else frozenset(items))
    return (kind, value)


def assert_same(a: Any, b: Any, where: str = "value") -> None:
    """``b`` equals ``a`` exactly; raises AssertionError naming the first difference."""
    assert type(a) is type(b), f"{where}: type {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert_same_array(a, b, where)
    elif isinstance(a, float):
        if math.isnan(a):
            assert math.isnan(b), f"{where}: nan became {b!r}"
        else:
            assert a == b and math.copysign(1, a) == math.copysign(1, b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, complex):
        assert_same(a.real, b.real, f"{where}.real")
        assert_same(a.imag, b.imag, f"{where}.imag")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} became {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert [canon(k) for k in a] == [canon(k) for k in b], f"{where}: keys differ"
        for (k, x), y in zip(a.items(), b.values()):
            assert_same(x, y, f"{where}[{k!r}]")
    elif isinstance(a, (set, frozenset)):
        assert {canon(v) for v in a} == {canon(v) for v in b}, f"{where}: {a!r} != {b!r}"
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} became {b.dtype}"
        assert_same_array(np.asarray(a), np.asarray(b), where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_array(a: np.ndarray, b: np.ndarray, where: str) -> None:
    assert type(b) is np.ndarray, f"{where}: loaded as {type(b).__name__}"
    assert a.dtype == b.dtype and a.dtype.str == b.dtype.str, f"{where}: {a.dtype} -> {b.dtype}"
    assert a.dtype.itemsize == b.dtype.itemsize
    assert a.shape == b.shape, f"{where}: shape {a.shape} became {b.shape}"
    if a.ndim > 1 and a.flags.f_contiguous and not a.flags.c_contiguous:
        assert b.flags.f_contiguous, f"{where}: Fortran order lost"
    _same_values(a, b, where)


def _same_values(a: np.ndarray, b: np.ndarray, where: str) -> None:
    dtype = a.dtype
    if dtype.names:
        for name in dtype.names:
            _same_values(a[name], b[name], f"{where}[{name!r}]")
    elif dtype.hasobject:
        for index in np.ndindex(a.shape):
            assert_same(a[index], b[index], f"{where}{list(index)}")
    elif dtype.kind == "f" and dtype.itemsize > 8:  # longdouble: padding bytes are noise
        assert np.array_equal(a, b, equal_nan=True), f"{where}: values differ"
        assert (np.signbit(a) == np.signbit(b)).all(), f"{where}: signs of zeros differ"
    elif dtype.kind == "c" and dtype.itemsize > 16:
        _same_values(a.real, b.real, f"{where}.real")
        _same_values(a.imag, b.imag, f"{where}.imag")
    else:  # bit for bit: NaN payloads, -0.0, NaT, trailing NULs
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
