"""Differential properties of the converter: on benign files it reads what pickle reads.

Each drawn value (the strategies of ``test_properties.py``: builtins of every kind,
arrays of every dtype and layout, structured and object arrays, numpy scalars, with
sharing) is written by ``pickle`` (every protocol) or ``joblib`` (raw or zlib), then
read twice: by ``pickle.loads``/``joblib.load`` - safe here, since the test made the
file - and by ``skjar.legacy.load_legacy``, which runs no code from it. The two must
be the same exactly (types, bits, dtypes, memory order, sharing), and what the
converter read must survive ``skjar.dumps``/``loads`` exactly too.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import hypothesis.extra.numpy as hnp
import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skjar
from exact import assert_same
from skjar.legacy import load_legacy
from test_properties import (
    FLOATS,
    PLAIN_DTYPES,
    SHAPES,
    STRUCT_DTYPES,
    VALUES,
    _object_elements,
    arrays_of,
    views,
)

SETTINGS = settings(max_examples=60, deadline=None)
WRITERS = ("p0", "p1", "p2", "p3", "p4", "p5", "joblib", "joblib-zlib")


def written(value: Any, writer: str) -> bytes:
    if writer.startswith("p"):
        return pickle.dumps(value, protocol=int(writer[1:]))
    buf = io.BytesIO()
    joblib.dump(value, buf, compress=3 if writer == "joblib-zlib" else 0)
    return buf.getvalue()


def read_back(data: bytes, writer: str) -> Any:
    return pickle.loads(data) if writer.startswith("p") else joblib.load(io.BytesIO(data))


def check_converts_as_pickle_reads(value: Any, writer: str) -> None:
    data = written(value, writer)
    expected = read_back(data, writer)
    got = load_legacy(io.BytesIO(data))
    assert_same(expected, got, f"{writer}: converted")
    assert_same(got, skjar.loads(skjar.dumps(got)), f"{writer}: converted, then a jar")


@SETTINGS
@given(VALUES, st.sampled_from(WRITERS))
def test_builtin_values(value: Any, writer: str) -> None:
    check_converts_as_pickle_reads(value, writer)


@SETTINGS
@given(st.data(), st.sampled_from(WRITERS))
def test_plain_arrays(data: Any, writer: str) -> None:
    dtype = data.draw(PLAIN_DTYPES, "dtype")
    base = arrays_of(data, dtype, SHAPES)
    check_converts_as_pickle_reads(data.draw(views(base), "view"), writer)


@SETTINGS
@given(st.data(), st.sampled_from(WRITERS))
def test_structured_arrays(data: Any, writer: str) -> None:
    dtype = data.draw(STRUCT_DTYPES, "dtype")
    base = arrays_of(data, dtype, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3))
    check_converts_as_pickle_reads(data.draw(views(base), "view"), writer)


@SETTINGS
@given(st.data(), st.sampled_from(WRITERS))
def test_object_arrays(data: Any, writer: str) -> None:
    base = data.draw(hnp.arrays(object, SHAPES, elements=_object_elements()), "array")
    check_converts_as_pickle_reads(data.draw(views(base), "view"), writer)


@SETTINGS
@given(st.data(), st.sampled_from(WRITERS))
def test_numpy_scalars_and_dtypes(data: Any, writer: str) -> None:
    dtype = data.draw(PLAIN_DTYPES | STRUCT_DTYPES, "dtype")
    scalar = arrays_of(data, dtype, st.just(()))[()]
    check_converts_as_pickle_reads([scalar, dtype], writer)


@SETTINGS
@given(st.lists(st.one_of(FLOATS, st.integers()), min_size=1, max_size=6),
       st.sampled_from(WRITERS))
def test_sharing_is_kept(items: list[Any], writer: str) -> None:
    """A list and an array held twice come back held twice, not copied."""
    shared_list, shared_array = list(items), np.arange(len(items), dtype="f8")
    value = {"a": shared_list, "b": [shared_list, shared_array], "c": shared_array}
    data = written(value, writer)
    got = load_legacy(io.BytesIO(data))
    expected = read_back(data, writer)
    assert_same(expected, got, writer)
    assert (got["a"] is got["b"][0]) == (expected["a"] is expected["b"][0])
    assert (got["c"] is got["b"][1]) == (expected["c"] is expected["b"][1])


@pytest.mark.parametrize("writer", WRITERS)
def test_the_writers_are_all_exercised(writer: str) -> None:
    """Each writer's file really is what its name says (a guard on the test itself)."""
    data = written([1.5, np.arange(3)], writer)
    if writer.startswith("p") and writer != "p0" and writer != "p1":
        assert data[:2] == bytes([0x80, int(writer[1:])])
    if writer == "joblib-zlib":
        assert data[:1] == b"x"
    assert_same(read_back(data, writer), load_legacy(io.BytesIO(data)), writer)
