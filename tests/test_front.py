"""The compiled reader front (src/skjar/_front.c) against its twin, open_source.

``skjar.load(path)`` reads a small, unsigned, uncompressed jar in one compiled pass;
anything else, and any damage, goes to ``open_source``, which then names the fault.
So the front may step aside for any file, but must never accept one the twin refuses,
nor read one differently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skjar
from skjar.errors import CorruptFileError, SkjarError
from skjar.format.header import declared_names
from skjar.format.reader import open_source, read_small
from test_speedups import needs_speedups

pytestmark = needs_speedups


def _models() -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    X = np.random.RandomState(0).rand(60, 3)
    y = (X[:, 0] > 0.5).astype(int)
    return {
        "knn": KNeighborsClassifier(3).fit(X, y),
        "logistic": LogisticRegression().fit(X, y),
        "plain": {"a": [1, 2.5, None], "arrays": [np.arange(40.0), np.ones((3, 3), np.int32)]},
        "string": "just a string",
    }


MODELS = _models()


def both(path: Path) -> tuple[Any, Any]:
    """The front's answer, and the twin's (its tree, buffers and names, or its error)."""
    fast = read_small(path, declared_names)
    if fast is not None:
        fast = (bytes(fast[0]), [b.tobytes() for b in fast[1]], fast[2])
    try:
        raw = open_source(path, mmap=False, admit=declared_names)
        twin: Any = (bytes(raw.tree), [b.tobytes() for b in raw.buffers], raw.declared)
    except SkjarError as exc:
        twin = exc
    return fast, twin


@pytest.mark.parametrize("name", sorted(MODELS))
def test_small_jars_take_the_compiled_path(name: str, tmp_path: Path) -> None:
    path = tmp_path / "m.skjar"
    skjar.dump(MODELS[name], path)
    fast, twin = both(path)
    assert fast is not None and fast == twin
    _, buffers, _ = read_small(path, declared_names)  # type: ignore[misc]
    for part in buffers:  # 64-byte aligned as in the file, writable, as the twin's
        assert part.ctypes.data % 64 == 0 and part.flags.writeable
    loaded = skjar.load(path)
    if hasattr(loaded, "predict"):
        X = np.random.RandomState(1).rand(5, 3)
        assert (loaded.predict(X) == MODELS[name].predict(X)).all()


@pytest.mark.parametrize(
    "make",
    ["signed", "zstd", "large section", "large file", "not a jar", "directory", "missing"],
)
def test_the_front_steps_aside(make: str, tmp_path: Path) -> None:
    path = tmp_path / "m.skjar"
    if make == "signed":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        skjar.dump(MODELS["logistic"], path, sign_with=Ed25519PrivateKey.generate())
    elif make == "zstd":
        skjar.dump(MODELS["logistic"], path, compress="zstd")
    elif make == "large section":
        skjar.dump(np.zeros(300_000, np.uint8), path)  # a section of its own (>= 256 KiB)
    elif make == "large file":
        skjar.dump([np.zeros(200_000, np.uint8) for _ in range(25)], path)  # 5 MB
    elif make == "not a jar":
        path.write_bytes(b"\x80\x05" + bytes(100))
    elif make == "directory":
        path.mkdir()
    assert read_small(path, declared_names) is None
    if make in ("signed", "zstd", "large section", "large file"):
        assert both(path)[1] is not None  # the twin reads it


def test_admit_errors_pass_through(tmp_path: Path) -> None:
    """Trust is judged by admit, after the digest: its error is the load's error."""
    path = tmp_path / "m.skjar"
    skjar.dump(MODELS["knn"], path)

    def refuse(header: dict[str, Any]) -> Any:
        raise CorruptFileError("refused by admit")

    with pytest.raises(CorruptFileError, match="refused by admit"):
        read_small(path, refuse)


@pytest.mark.parametrize("name", ["plain", "logistic"])
def test_every_flipped_bit_is_left_to_the_twin(name: str, tmp_path: Path) -> None:
    """One bit flipped anywhere in a jar (a key of the header, a length, a digest, a
    padding byte...): the front never accepts it. (A missing layout key crashed it once.)"""
    data = skjar.dumps(MODELS[name])
    path = tmp_path / "m.skjar"
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 1 << (at % 8)
        path.write_bytes(damaged)
        fast, twin = both(path)
        assert fast is None or fast == twin, at
        assert fast is None or not isinstance(twin, Exception), at


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(MODELS)), data=st.data())
def test_damaged_jars_are_read_alike(name: str, data: st.DataObject, tmp_path: Path) -> None:
    """Cut, grown, zeroed or rewritten jars: the front steps aside or agrees exactly."""
    raw = bytearray(skjar.dumps(MODELS[name]))
    how = data.draw(st.sampled_from(["cut", "insert", "zero", "rewrite", "append"]))
    at = data.draw(st.integers(0, len(raw)))
    if how == "cut":
        del raw[at:]
    elif how == "insert":
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=70))
    elif how == "zero":
        raw[at : at + data.draw(st.integers(1, 64))] = bytes(len(raw[at : at + 64]))[:64]
    elif how == "rewrite":
        raw[at : at + 8] = data.draw(st.binary(min_size=8, max_size=8))
    else:
        raw += data.draw(st.binary(min_size=1, max_size=80))
    path = tmp_path / "m.skjar"
    path.write_bytes(bytes(raw))
    fast, twin = both(path)
    if fast is not None:
        assert not isinstance(twin, Exception) and fast == twin
