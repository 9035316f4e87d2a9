"""The file itself: golden files, a deterministic writer, atomic writes, streams,
memory mapping, compression, and the layout rules a reader enforces.

Golden files (``tests/golden/v<major>.<minor>/``, written once by
``tests/golden/make_golden.py``) must keep loading to the values recorded with
them, whatever changes later. The writer check re-dumps the golden builtins value
and compares it with ``builtins.skjar`` (or, once the writer was deliberately
revised within a format version, with ``writer/builtins.skjar``; see
make_golden.py): the object tree, buffers and padding must be byte-identical, and the header equal once its volatile parts are removed
(``producer``: who wrote it and when; ``environment``: the versions installed;
the trailer's digests cover the header, so they differ with it). A change to how
a value is encoded therefore fails here: either it is a new format version (new
golden folder) or the writer lost its determinism.
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import gzip
import importlib.util
import io
import json
import lzma
import mmap
import os
import struct
import threading
import time
import tracemalloc
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn

import jarcraft
import skjar
from exact import assert_same
from skjar.format import spec, writer

GOLDEN = Path(__file__).resolve().parent / "golden"
VERSIONS = sorted(p.name for p in GOLDEN.glob("v*.*") if p.is_dir())


def _make_golden() -> Any:
    module_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


MAKE_GOLDEN = _make_golden()


def _same(a: Any, b: Any, where: str = "value") -> None:
    """Exact equality (types, NaN, -0.0, dtypes), enough for the golden value."""
    assert_same(a, b, where)


def _load_golden(path: Path, **kwargs: Any) -> Any:
    from sklearn.exceptions import InconsistentVersionWarning

    with warnings.catch_warnings():
        # Made by other versions, later: skjar says so, and so does a scikit-learn
        # estimator's own __setstate__ when its version differs
        # (test_golden_models_keep_predicting expects both).
        warnings.simplefilter("ignore", skjar.VersionSkewWarning)
        warnings.simplefilter("ignore", InconsistentVersionWarning)
        return skjar.load(path, **kwargs)


# -- golden files ---------------------------------------------------------------------------
def test_there_is_a_golden_folder_for_the_current_version() -> None:
    assert f"v{spec.FORMAT_MAJOR}.{spec.FORMAT_MINOR}" in VERSIONS


# The golden files of values (not models), each compared whole with the value it holds.
BUILTINS = [
    p.relative_to(GOLDEN).as_posix()
    for version in VERSIONS
    for name in MAKE_GOLDEN.VALUES
    for p in sorted([*(GOLDEN / version).glob(f"{name}*.skjar"),
                     *(GOLDEN / version).glob(f"writer/{name}*.skjar")])
]
MODELS = [
    (version, name)
    for version in VERSIONS
    for name in json.loads((GOLDEN / version / "expected.json").read_text())
]


def _writer_reference() -> Path:
    """What the current plain writer must produce: the newest writer revision of the
    version a jar without packs is stamped with."""
    folder = GOLDEN / "v{}.{}".format(*spec.WITHOUT_PACKS)
    newer = folder / "writer" / "builtins.skjar"
    return newer if newer.exists() else folder / "builtins.skjar"


@pytest.mark.parametrize("golden", BUILTINS)
@pytest.mark.parametrize("mmap_", [False, True], ids=["read", "mmap"])
def test_golden_builtins_keep_loading(golden: str, mmap_: bool) -> None:
    loaded = _load_golden(GOLDEN / golden, mmap=mmap_)
    name = Path(golden).name.split("-")[0].removesuffix(".skjar")
    expected = MAKE_GOLDEN.VALUES[name]()
    assert list(loaded) == list(expected)
    for key in expected:
        _same(expected[key], loaded[key], key)
    if name == "builtins":
        assert loaded["shared"][0] is loaded["shared"][1]


def test_every_golden_folder_has_builtins_and_models() -> None:
    for version in VERSIONS:
        assert any(b.startswith(f"{version}/") for b in BUILTINS), version
        assert any(v == version for v, _ in MODELS), version


@pytest.mark.parametrize(("version", "name"), MODELS)
def test_golden_models_keep_predicting(version: str, name: str) -> None:
    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    expected = json.loads((GOLDEN / version / "expected.json").read_text())[name]
    path = GOLDEN / version / name
    model = _load_golden(path)
    assert f"{type(model).__module__}.{type(model).__qualname__}" == expected["type"]
    info = skjar.inspect(path)
    made_by = info.environment["packages"]["scikit-learn"]
    if made_by.split(".")[:2] == sklearn.__version__.split(".")[:2]:
        assert model.predict(X).tolist() == expected["predict"]
        np.testing.assert_allclose(model.predict_proba(X), expected["predict_proba"], rtol=1e-10)
    else:
        # An estimator's attributes change between scikit-learn versions (1.9 dropped
        # LogisticRegression.multi_class, which 1.7 predicts with): the file loads, and
        # the load says which versions differ.
        from sklearn.exceptions import InconsistentVersionWarning

        with (
            pytest.warns(skjar.VersionSkewWarning, match=f"scikit-learn {made_by} in the file"),
            pytest.warns(InconsistentVersionWarning, match=f"from version {made_by}"),
        ):
            skjar.load(path)
    assert info.format_version == version[1:]
    assert info.metadata == {"golden": name}
    assert info.type == expected["type"]


def test_writer_is_deterministic_against_the_golden_file(tmp_path: Path) -> None:
    golden = _writer_reference().read_bytes()
    path = tmp_path / "again.skjar"
    skjar.dump(MAKE_GOLDEN.builtins_value(), path)
    fresh = path.read_bytes()
    old, new = jarcraft.decode(golden), jarcraft.decode(fresh)

    def stable(header: dict[str, Any]) -> dict[str, Any]:
        header = copy.deepcopy(header)
        del header["producer"], header["environment"]
        return header

    assert stable(new.header) == stable(old.header)
    assert new.header["producer"]["name"] == "skjar"
    # Everything between the header and the trailer, padding included.
    old_spans, new_spans = jarcraft.section_spans(golden), jarcraft.section_spans(fresh)
    old_body = golden[old_spans["header"][0][1] : old_spans["trailer"][0][0]]
    new_body = fresh[new_spans["header"][0][1] : new_spans["trailer"][0][0]]
    # The header's length may differ (versions, timestamps): compare from the first
    # aligned section on, which is where the tree starts in both.
    old_tree_at = old_spans["tree"][0][0] - old_spans["header"][0][1]
    new_tree_at = new_spans["tree"][0][0] - new_spans["header"][0][1]
    assert new_body[new_tree_at:] == old_body[old_tree_at:]
    assert (new.version, old.version) == (spec.WITHOUT_PACKS, spec.WITHOUT_PACKS)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_the_compressed_writer_packs_as_the_golden_file_does(codec: str) -> None:
    """Compressed bytes depend on the codec library's version, so what is compared is
    what they hold: the same buffers, grouped into the same packs, with the same sizes."""
    golden = jarcraft.decode((GOLDEN / "v1.2" / f"builtins-{codec}.skjar").read_bytes())
    fresh = jarcraft.decode(skjar.dumps(MAKE_GOLDEN.builtins_value(), compress=codec))

    def shape(layout: dict[str, Any]) -> list[Any]:
        return [[size, codec, *members] for _, size, codec, *members in layout["buffers"]]

    assert shape(fresh.header["layout"]) == shape(golden.header["layout"])
    assert fresh.tree == golden.tree and fresh.buffers == golden.buffers
    assert fresh.version == golden.version == (1, 2)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_the_compressed_writer_chunks_as_the_golden_file_does(codec: str) -> None:
    """As above for chunks (1.3): the same sections, cut into as many chunks of the same
    size (each chunk's stored length depends on the codec library)."""
    golden = jarcraft.decode((GOLDEN / "v1.3" / f"chunked-{codec}.skjar").read_bytes())
    fresh = jarcraft.decode(skjar.dumps(MAKE_GOLDEN.chunked_value(), compress=codec))

    def shape(layout: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for _, size, codec, *extra in layout["buffers"]:
            if extra and isinstance(extra[0], dict):
                extra = [extra[0]["chunk"], len(extra[0]["lengths"])]
            out.append([size, codec, *extra])
        return out

    assert shape(fresh.header["layout"]) == shape(golden.header["layout"])
    assert sum(isinstance(e[-1], int) and e[-1] >= 2 for e in shape(golden.header["layout"])) == 3
    assert fresh.tree == golden.tree and fresh.buffers == golden.buffers
    assert fresh.version == golden.version == (1, 3)


def test_dumping_twice_gives_the_same_bytes_but_the_header() -> None:
    value = MAKE_GOLDEN.builtins_value()
    a, b = jarcraft.decode(skjar.dumps(value)), jarcraft.decode(skjar.dumps(value))
    assert a.tree == b.tree and a.buffers == b.buffers
    a.header["producer"].pop("created")
    b.header["producer"].pop("created")
    assert a.header == b.header


def test_source_date_epoch_makes_dumps_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SOURCE_DATE_EPOCH set (reproducible builds), the header's time is that one, so
    the same model saved twice, seconds apart, is the same bytes - digest and all; a
    parameter shown by its repr loses its memory address, which differs per object."""
    from sklearn.linear_model import SGDClassifier

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    model = SGDClassifier(random_state=np.random.RandomState(0)).fit([[0.0], [1.0]], [0, 1])
    first = skjar.dumps(model)
    time.sleep(1.05)
    assert skjar.dumps(copy.deepcopy(model)) == first
    info = skjar.inspect(first)
    assert info.producer["created"] == "2023-11-14T22:13:20+00:00"
    assert info.params["random_state"] == "RandomState(MT19937)"

    path = tmp_path / "kept.skjar"
    skjar.dump(model, path)
    for bad in ("yesterday", "-5", "1e9", "", "²", "1" * 13, "253402300800", "9" * 12):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", bad)
        with pytest.raises(skjar.InvalidArgumentError, match="SOURCE_DATE_EPOCH"):
            skjar.dump({"new": 1}, path)
    assert skjar.load(path).coef_.tolist() == model.coef_.tolist()
    _only(path)


# -- atomic writes ----------------------------------------------------------------------------
@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.skjar"
    skjar.dump({"version": "old"}, path)
    return path


def _only(path: Path) -> None:
    assert sorted(os.listdir(path.parent)) == [path.name], "a temporary file was left behind"


@pytest.mark.parametrize("stage", ["replace", "fsync", "write"])
def test_a_failed_dump_leaves_the_old_file(old_file: Path, stage: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    before = old_file.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    if stage == "write":  # (saves gather their pieces with writev, where there is one)
        real_writev = os.writev if hasattr(os, "writev") else lambda fd, p: os.write(fd, p[0])

        def writev(fd: int, pieces: list[Any]) -> int:
            real_writev(fd, pieces[:2])  # some of the file is out: fail half-way
            boom()
            return 0

        monkeypatch.setattr(os, "writev", writev, raising=False)
        monkeypatch.setattr(writer, "_HAS_WRITEV", True)
        # (the Python loop; test_speedups.py fails the compiled write_jar half-way)
        monkeypatch.setattr(writer._FileWriter, "jar_writer", lambda self: None)
    else:
        monkeypatch.setattr(os, stage, boom)
    with pytest.raises(OSError, match="No space left"):
        skjar.dump({"version": "new", "data": np.zeros(1000)}, old_file)
    monkeypatch.undo()
    assert old_file.read_bytes() == before
    assert skjar.load(old_file) == {"version": "old"}
    _only(old_file)


def test_a_save_survives_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may take fewer bytes than a writev offers (a pipe, a signal, a full
    quota nearly reached): the rest is written, in order, nothing twice."""
    real_writev = os.writev if hasattr(os, "writev") else lambda fd, p: os.write(fd, p[0])
    sizes: list[int] = []

    def short(fd: int, pieces: list[Any]) -> int:
        flat = b"".join(bytes(p) for p in pieces)
        n = real_writev(fd, [flat[: 1 + len(sizes) % 7]])  # 1 to 7 bytes a call
        sizes.append(n)
        return n

    model = {"a": np.arange(5000.0), "b": "text", "c": [np.ones(3), 2]}
    made = skjar.api.producer()  # one creation time for both jars (it has a second's grain)
    monkeypatch.setattr(skjar.api, "producer", lambda: made)
    monkeypatch.setattr(os, "writev", short, raising=False)
    monkeypatch.setattr(writer, "_HAS_WRITEV", True)
    # (the Python loop: test_speedups.py makes the compiled write_jar's writes short)
    monkeypatch.setattr(writer._FileWriter, "jar_writer", lambda self: None)
    skjar.dump(model, tmp_path / "m.skjar")
    assert len(sizes) > 1000
    assert (tmp_path / "m.skjar").read_bytes() == skjar.dumps(model)


def test_an_interrupted_dump_leaves_the_old_file(old_file: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        skjar.dump({"version": "new"}, old_file)
    monkeypatch.undo()
    assert skjar.load(old_file) == {"version": "old"}
    _only(old_file)


def test_a_successful_dump_replaces_the_file(old_file: Path) -> None:
    skjar.dump({"version": "new"}, old_file)
    assert skjar.load(old_file) == {"version": "new"}
    _only(old_file)
    mask = os.umask(0)
    os.umask(mask)
    assert old_file.stat().st_mode & 0o777 == 0o666 & ~mask  # like open(path, "wb")


def test_a_mapped_model_survives_its_file_being_replaced(old_file: Path) -> None:
    skjar.dump({"a": np.arange(1000.0)}, old_file)
    loaded = skjar.load(old_file, mmap=True)
    skjar.dump({"a": np.zeros(1000)}, old_file)
    np.testing.assert_array_equal(loaded["a"], np.arange(1000.0))


# -- streams and file objects -------------------------------------------------------------------
@contextlib.contextmanager
def pipe_reader() -> Iterator[tuple[Any, list[bytes]]]:
    """A write end of a pipe, and the bytes a thread reads from the other end."""
    r, w = os.pipe()
    received: list[bytes] = []

    def drain() -> None:
        with open(r, "rb", buffering=0) as f:
            while chunk := f.read(1 << 16):
                received.append(chunk)

    thread = threading.Thread(target=drain)
    thread.start()
    try:
        with open(w, "wb", buffering=0) as out:
            yield out, received
    finally:
        thread.join(timeout=30)


def test_dump_to_a_pipe_and_load_from_a_pipe() -> None:
    value = {"a": np.arange(100_000.0), "b": ["x"] * 300, "c": 1}
    with pipe_reader() as (out, received):
        assert not out.seekable()
        skjar.dump(value, out, compress="zstd")
    data = b"".join(received)
    loaded = skjar.loads(data)
    np.testing.assert_array_equal(loaded["a"], value["a"])
    assert loaded["b"] == value["b"]

    for buffering in (0, -1):
        r, w = os.pipe()

        def feed(fd: int = w) -> None:
            with open(fd, "wb") as f:
                f.write(data)

        thread = threading.Thread(target=feed)
        thread.start()
        with open(r, "rb", buffering=buffering) as f:
            again = skjar.load(f)
        thread.join(timeout=30)
        np.testing.assert_array_equal(again["a"], value["a"])


def test_load_from_a_file_object_at_an_offset(tmp_path: Path) -> None:
    value = {"a": np.arange(500), "b": "text"}
    data = skjar.dumps(value)
    path = tmp_path / "offset.bin"
    path.write_bytes(b"JUNKJUNK" + data)
    with open(path, "rb") as f:
        f.seek(8)
        loaded = skjar.load(f)
        assert f.tell() == 8 + len(data)
    np.testing.assert_array_equal(loaded["a"], value["a"])
    stream = io.BytesIO(b"prefix" + data)
    stream.seek(6)
    assert skjar.load(stream)["b"] == "text"
    with open(path, "rb") as f:
        f.seek(8)
        assert skjar.inspect(f).object["type"] == "builtins.dict"


class _GzipCountingSeeks(gzip.GzipFile):
    seeks = 0

    def seek(self, *args: Any) -> int:
        self.seeks += 1
        return super().seek(*args)


class _LyingDescriptor(io.BytesIO):
    """A user's file object whose fileno() is some other file's descriptor."""

    def __init__(self, data: bytes, other: Any) -> None:
        super().__init__(data)
        self.other = other

    def fileno(self) -> int:
        return int(self.other.fileno())

    def close(self) -> None:
        self.other.close()
        super().close()


@pytest.mark.parametrize("kind", ["gzip", "bz2", "lzma", "zip member", "wrapper"])
def test_a_file_object_over_another_files_descriptor_loads(kind: str, tmp_path: Path) -> None:
    """gzip.open's file (bz2's, lzma's, a zip member's, a user's wrapper) answers fileno()
    with the descriptor under it, whose size is not its own: a jar read through one was
    refused as truncated. A decompressing reader is read as a stream, never sought (a
    seek to its end decompresses it, and back to the start again)."""
    value = {"a": np.arange(20_000.0), "b": "text"}
    data = skjar.dumps(value)
    path = tmp_path / "m.skjar.packed"
    if kind in ("gzip", "bz2", "lzma"):
        module = {"gzip": gzip, "bz2": bz2, "lzma": lzma}[kind]
        with module.open(path, "wb") as out:
            out.write(data)

        def opened() -> Any:
            if kind == "gzip":
                return _GzipCountingSeeks(path, "rb")
            return module.open(path, "rb")
    elif kind == "zip member":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("m.skjar", data)

        def opened() -> Any:
            return zipfile.ZipFile(path).open("m.skjar")
    else:
        path.write_bytes(data[:100])

        def opened() -> Any:
            return _LyingDescriptor(data, open(path, "rb"))

    with opened() as f:
        loaded = skjar.load(f)
        assert f.read() == b""
        assert getattr(f, "seeks", 0) == 0
    np.testing.assert_array_equal(loaded["a"], value["a"])
    with opened() as f:
        assert skjar.inspect(f).object["type"] == "builtins.dict"
    with opened() as f:
        assert [n.name for n in skjar.audit(f)] == []


def test_dump_to_a_file_object_at_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "offset.bin"
    with open(path, "wb") as f:
        f.write(b"HEAD")
        skjar.dump([1, 2], f)
        f.write(b"TAIL")
    raw = path.read_bytes()
    assert raw.startswith(b"HEAD") and raw.endswith(b"TAIL")
    assert skjar.loads(raw[4:-4]) == [1, 2]


@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b)).toreadonly(),
     lambda b: memoryview(b"xx" + b)[2:], lambda b: memoryview(np.frombuffer(b, np.uint8))],
    ids=["bytes", "bytearray", "memoryview", "readonly-view", "sliced-view", "numpy-view"],
)
def test_loads_takes_any_bytes_like(wrap: Any) -> None:
    data = skjar.dumps({"a": np.arange(50), "b": [1, 2]})
    source = wrap(data)
    loaded = skjar.loads(source)
    np.testing.assert_array_equal(loaded["a"], np.arange(50))
    assert loaded["b"] == [1, 2]


def test_loaded_arrays_do_not_alias_the_input_bytes() -> None:
    data = bytearray(skjar.dumps({"a": np.arange(100.0)}))
    loaded = skjar.loads(data)
    data[:] = bytes(len(data))  # the caller reuses its buffer
    np.testing.assert_array_equal(loaded["a"], np.arange(100.0))


# -- what a load keeps ------------------------------------------------------------------------------
def _allocation(arr: np.ndarray) -> memoryview:
    """The memory ``arr``'s is part of: its owner's, through arrays and memoryviews."""
    owner: Any = arr
    while isinstance(owner, (np.ndarray, memoryview)):
        base = owner.base if isinstance(owner, np.ndarray) else owner.obj
        if base is None:
            break
        owner = base
    return memoryview(owner)


@pytest.mark.parametrize("source", ["bytes", "path"])
def test_a_kept_large_array_does_not_pin_the_rest_of_the_file(source: str, tmp_path: Path) -> None:
    """Sections of 256 KiB or more get allocations of their own: what the model keeps is
    what it holds, not the whole file (the string buffer of a vocabulary, 2 MiB here,
    is freed once its dict is built)."""
    value = {
        "vocabulary": {f"term {i}": i for i in range(300_000)},
        "coef": np.arange(300_000.0),
        "small": np.arange(10.0),
    }
    data = skjar.dumps(value)
    if source == "path":
        (tmp_path / "v.skjar").write_bytes(data)
    loaded = skjar.load(tmp_path / "v.skjar" if source == "path" else data)
    assert loaded["vocabulary"] == value["vocabulary"]
    owner = _allocation(loaded["coef"])
    assert owner.nbytes <= loaded["coef"].nbytes + 64
    assert _allocation(loaded["small"]).nbytes < 1 << 20  # the small sections' run


@pytest.mark.parametrize("source", ["bytes", "path", "file"])
def test_large_sections_are_read_apart_and_the_rest_together(source: str, tmp_path: Path) -> None:
    """Like a forest: large sections (a tree's nodes, which its Tree copies and drops)
    alternate with small ones. Each large one is an allocation of its own, freed on its
    own; all the small ones share one; every array is aligned as in the file."""
    rng = np.random.default_rng(0)
    value = [
        (rng.random(40_000 + i), rng.integers(0, 9, 500 + i), np.arange(20.0 + i))
        for i in range(6)
    ]
    data = skjar.dumps(value)
    path = tmp_path / "v.skjar"
    path.write_bytes(data)
    if source == "file":
        with open(path, "rb") as f:
            loaded = skjar.load(f)
    else:
        loaded = skjar.load(path if source == "path" else data)
    small_owners = set()
    for (big, small, inline), (big0, small0, inline0) in zip(loaded, value, strict=True):
        for got, want in ((big, big0), (small, small0), (inline, inline0)):
            np.testing.assert_array_equal(got, want)
        assert big.ctypes.data % 64 == 0 and small.ctypes.data % 64 == 0
        assert _allocation(big).nbytes <= big.nbytes + 64
        small_owners.add(id(_allocation(small).obj))
    assert len(small_owners) == 1


# -- memory mapping -------------------------------------------------------------------------------
def _base_chain(arr: np.ndarray) -> list[Any]:
    chain: list[Any] = []
    obj: Any = arr
    while obj is not None and len(chain) < 20:
        chain.append(obj)
        obj = getattr(obj, "base", None) if not isinstance(obj, memoryview) else obj.obj
    return chain


def test_mmap_arrays_are_views_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.skjar"
    value = {"a": np.arange(100_000.0), "b": np.ones((300, 7), dtype=">i4", order="F")}
    skjar.dump(value, path)
    before = path.read_bytes()
    loaded = skjar.load(path, mmap=True)
    for key in value:
        arr = loaded[key]
        assert any(isinstance(o, mmap.mmap) for o in _base_chain(arr)), f"{key} is a copy"
        assert arr.flags.writeable
        assert arr.ctypes.data % 64 == 0
        np.testing.assert_array_equal(arr, value[key])
    loaded["a"][:] = -1  # copy-on-write: the process sees it, the file does not
    loaded["b"][0, 0] = 7
    assert loaded["a"][5] == -1
    assert path.read_bytes() == before
    assert skjar.load(path, mmap=True)["a"][5] == 5.0


def test_plain_loads_are_not_views_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.skjar"
    skjar.dump({"a": np.arange(100_000.0)}, path)
    loaded = skjar.load(path)
    assert not any(isinstance(o, mmap.mmap) for o in _base_chain(loaded["a"]))


def test_mmap_of_a_compressed_jar_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "z.skjar"
    skjar.dump({"a": np.zeros(100_000)}, path, compress="zstd")
    loaded = skjar.load(path, mmap=True)
    np.testing.assert_array_equal(loaded["a"], np.zeros(100_000))
    loaded["a"][0] = 1.0  # decompressed into private memory: writable


# -- compression ------------------------------------------------------------------------------------
COMPRESS = ["zstd", "lz4", ("zstd", 1), ("zstd", 19), ("zstd", -5), ("lz4", 0), ("lz4", 9), None]


@pytest.mark.parametrize("compress", COMPRESS, ids=str)
def test_compression_round_trips(compress: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    value = {
        "zeros": np.zeros(50_000),
        "noise": rng.random(5_000),  # incompressible: stored raw
        "small": np.arange(10),
        "words": [f"w{i}" for i in range(1000)],
        "vocab": {f"t{i}": i for i in range(2000)},
    }
    data = skjar.dumps(value, compress=compress)
    info = skjar.inspect(data)
    if compress is None:
        assert info.compression is None
    else:
        name, level = compress if isinstance(compress, tuple) else (compress, None)
        assert info.compression["codec"] == name
        if level is not None:
            assert info.compression["level"] == level
        assert len(data) < 100_000
    path = tmp_path / "c.skjar"
    path.write_bytes(data)
    for loaded in (skjar.loads(data), skjar.load(path, mmap=True), skjar.load(io.BytesIO(data))):
        for key in ("zeros", "noise", "small"):
            np.testing.assert_array_equal(loaded[key], value[key])
        assert loaded["words"] == value["words"] and loaded["vocab"] == value["vocab"]


def _compressed_section(data: bytes) -> tuple[int, int]:
    """Start and end of the first stored section whose codec is not 'none'."""
    spans = jarcraft.section_spans(data)
    layout = json.loads(data[spec.PREAMBLE_SIZE : spans["header"][0][1]])["layout"]
    codecs = [layout["tree"]["codec"]] + [codec for length, _, codec in layout["buffers"] if length]
    for codec, span in zip(codecs, spans["tree"] + spans["buffer"]):
        if codec != "none":
            return span
    raise AssertionError("no compressed section")


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_sections_are_digest_checked(codec: str) -> None:
    data = skjar.dumps({"a": np.zeros(100_000)}, compress=codec)
    start, end = _compressed_section(data)
    for i in (start, (start + end) // 2, end - 1):
        damaged = bytearray(data)
        damaged[i] ^= 0x01
        with pytest.raises(skjar.CorruptFileError, match="integrity"):
            skjar.loads(bytes(damaged))


def _respliced(data: bytes, edit: Any, stored: list[bytes] | None = None) -> bytes:
    """Re-assemble ``data`` with its stored sections as they are (or ``stored``), after
    ``edit(header)``."""
    spans = jarcraft.section_spans(data)
    header = json.loads(data[spec.PREAMBLE_SIZE : spans["header"][0][1]])
    version = struct.unpack_from("<HH", data, len(spec.MAGIC))
    edit(header)
    return jarcraft.assemble(header, stored or jarcraft.stored_sections(data), version=version)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("claim", [10**15, 2**62, "ratio+1"])
def test_decompression_bombs_are_refused_before_allocation(codec: str, claim: Any) -> None:
    data = skjar.dumps({"a": np.zeros(1_000_000)}, compress=codec)

    def lie(header: dict[str, Any]) -> None:
        for entry in header["layout"]["buffers"]:
            if entry[2] == codec:
                size = entry[0] * spec.MAX_RATIO[codec] + spec.RATIO_SLACK + 1
                entry[1] = size if claim == "ratio+1" else claim

    bomb = _respliced(data, lie)
    tracemalloc.start()
    try:
        with pytest.raises(skjar.CorruptFileError, match=r"bomb|claims"):
            skjar.loads(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak} bytes allocated before refusing"


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("delta", [1, -1, 4096])
def test_a_wrong_decompressed_size_is_refused(codec: str, delta: int) -> None:
    data = skjar.dumps({"a": np.zeros(1_000_000)}, compress=codec)

    def lie(header: dict[str, Any]) -> None:
        for entry in header["layout"]["buffers"]:
            if entry[2] == codec:
                entry[1] += delta

    with pytest.raises(skjar.CorruptFileError):
        skjar.loads(_respliced(data, lie))


def test_resplicing_unchanged_is_faithful() -> None:
    data = skjar.dumps({"a": np.zeros(1_000_000)}, compress="zstd")
    assert _respliced(data, lambda header: None) == data


# -- packs: small buffers compressed together (1.2) ------------------------------------------
def _many_small(n: int = 40) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "small": [rng.integers(0, 5, size=int(rng.integers(20, 3000))).astype("i2") for _ in range(n)],
        "odd": np.arange(333).astype("u1"),  # not a multiple of 64 long
        "empty": np.zeros(0),
        "big": np.zeros(400_000),  # >= PACK_MEMBER_MAX: a section of its own
        "tail": np.arange(500.0),
    }


def _pack_entries(data: bytes) -> list[list[Any]]:
    return [e for e in jarcraft.decode(data).header["layout"]["buffers"] if len(e) == 4]


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_small_buffers_are_packed_and_come_back_aligned(tmp_path: Path, codec: str) -> None:
    from skjar.format import writer

    value = _many_small()
    data = skjar.dumps(value, compress=codec)
    packs = _pack_entries(data)
    assert packs and skjar.inspect(data).format_version == "1.2"
    assert all(max(e[3]) < writer.PACK_MEMBER_MAX and e[1] <= writer.PACK_MAX for e in packs)
    sizes = [e[1] for e in jarcraft.decode(data).header["layout"]["buffers"]]
    assert 400_000 * 8 in sizes  # the big array stands alone
    assert skjar.inspect(data).sizes["buffers"] == len(jarcraft.decode(data).buffers)
    path = tmp_path / "packed.skjar"
    path.write_bytes(data)
    for loaded in (skjar.loads(data), skjar.load(path, mmap=True), skjar.load(io.BytesIO(data))):
        assert_same(loaded, value)
        for arr in [*loaded["small"], loaded["odd"], loaded["tail"]]:
            assert arr.ctypes.data % spec.ALIGNMENT == 0


def test_a_pack_is_capped_and_an_incompressible_run_stays_plain() -> None:
    from skjar.format import writer

    # 40 x 200 KB of zeros: two packs, neither above PACK_MAX
    data = skjar.dumps([np.zeros(25_000) for _ in range(40)], compress="zstd")
    packs = _pack_entries(data)
    assert len(packs) >= 2 and all(e[1] <= writer.PACK_MAX for e in packs)
    noise = [np.random.default_rng(i).bytes(5000) for i in range(5)]
    plain = skjar.dumps([np.frombuffer(b, dtype="u1") for b in noise], compress="zstd")
    assert _pack_entries(plain) == []
    assert skjar.inspect(plain).format_version == "1.1"  # no pack: readable by 1.1 readers
    assert all(e[2] == "none" for e in jarcraft.decode(plain).header["layout"]["buffers"])


def _packed_jar() -> bytes:
    return skjar.dumps([np.arange(100.0), np.arange(7, dtype="u1"), np.ones(50)], compress="zstd")


def _pack_lie(edit: Any) -> bytes:
    data = _packed_jar()
    assert len(_pack_entries(data)) == 1

    def lie(header: dict[str, Any]) -> None:
        (entry,) = [e for e in header["layout"]["buffers"] if len(e) == 4]
        edit(entry)

    return _respliced(data, lie)


@pytest.mark.parametrize(
    "edit",
    [
        lambda e: e[3].append(0),  # members no longer fill the pack
        lambda e: e[3].pop(),
        lambda e: e[3].__setitem__(0, e[3][0] + 64),
        lambda e: e[3].__setitem__(0, e[3][0] - 64),
        lambda e: e[3].__setitem__(0, -1),
        lambda e: e[3].__setitem__(0, 800.0),
        lambda e: e[3].__setitem__(0, True),
        lambda e: e[3].__setitem__(0, 2**64),
        lambda e: e.__setitem__(3, [e[1]]),  # one member: not a pack
        lambda e: e.__setitem__(3, []),
        lambda e: e.__setitem__(3, {"0": 800}),
        lambda e: e.__setitem__(3, "800,7,400"),
        lambda e: e.append([1]),  # five items
        lambda e: e.__setitem__(2, "none"),  # a pack must be compressed
    ],
    ids=["extra member", "member missing", "member +64", "member -64", "negative", "float",
         "bool", "2**64", "one member", "no members", "dict", "string", "five items",
         "uncompressed"],
)
def test_malformed_packs_are_refused(edit: Any) -> None:
    bad = _pack_lie(edit)
    for fn in (skjar.loads, skjar.inspect):
        with pytest.raises(skjar.CorruptFileError, match="buffer"):
            fn(bad)


@pytest.mark.parametrize(
    ("delta", "message"),
    [(1, "needs 800 bytes"), (32, "needs 800 bytes"), (-1, "padding inside the pack")],
)
def test_a_member_size_that_still_fills_the_pack_is_caught_on_load(delta: int, message: str) -> None:
    """Within the padding the header alone cannot tell: a longer member is caught by its
    array's size check, a shorter one by the padding check (its last byte is not zero)."""
    bad = _pack_lie(lambda e: e[3].__setitem__(0, e[3][0] + delta))
    skjar.inspect(bad)  # the layout itself is consistent
    with pytest.raises(skjar.CorruptFileError, match=message):
        skjar.loads(bad)


def test_a_pack_in_a_version_1_1_file_is_refused() -> None:
    data = _packed_jar()
    for old in ((1, 1), (1, 0)):
        crafted = bytearray(data)
        struct.pack_into("<HH", crafted, len(spec.MAGIC), *old)
        with pytest.raises(skjar.CorruptFileError, match="malformed buffer entry"):
            skjar.loads(jarcraft.redigest(bytes(crafted)))


def test_nonzero_padding_inside_a_pack_is_refused() -> None:
    import zstandard

    data = _packed_jar()
    stored = jarcraft.stored_sections(data)
    entries = jarcraft.decode(data).header["layout"]["buffers"]
    (i,) = [k for k, e in enumerate(entries) if len(e) == 4]
    pack = bytearray(zstandard.ZstdDecompressor().decompress(stored[1 + i]))
    assert pack[807] == 0  # 800 bytes of the first member, then padding up to 832
    pack[807] = 1
    stored[1 + i] = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(pack))

    def relength(header: dict[str, Any]) -> None:
        header["layout"]["buffers"][i][0] = len(stored[1 + i])

    with pytest.raises(skjar.CorruptFileError, match="padding inside the pack"):
        skjar.loads(_respliced(data, relength, stored))


# -- many sections: compressed and decompressed on every core ----------------------------------
def _forest_like() -> list[np.ndarray]:
    """40 arrays of 320 KB (each a section of its own), 12.8 MB: above PARALLEL_MIN."""
    return [np.arange(40_000.0) % (i + 7) for i in range(40)]


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_many_sections_round_trip_through_the_thread_pool(codec: str) -> None:
    from skjar.format import compression

    value = _forest_like()
    assert sum(a.nbytes for a in value) >= compression.PARALLEL_MIN
    data = skjar.dumps(value, compress=codec)
    entries = jarcraft.decode(data).header["layout"]["buffers"]
    assert len(entries) == 40 and all(e[2] == codec for e in entries)
    assert_same(skjar.loads(data), value)


def test_run_parallel_keeps_order_uses_threads_and_raises_the_first_failure() -> None:
    import threading

    from skjar.format.compression import PARALLEL_MIN, _cores, run_parallel

    names = run_parallel([lambda: threading.current_thread().name] * 8, PARALLEL_MIN)
    if _cores() >= 2:
        assert all(name.startswith("skjar-codec") for name in names)
    assert run_parallel([lambda i=i: i for i in range(50)], PARALLEL_MIN) == list(range(50))

    def fail(i: int) -> None:
        raise skjar.CorruptFileError(f"job {i}")

    with pytest.raises(skjar.CorruptFileError, match="job 3"):
        run_parallel([lambda: 0] * 3 + [lambda i=i: fail(i) for i in (3, 4, 5)], PARALLEL_MIN)


def test_without_threads_the_work_is_done_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that cannot start a thread (a limit, interpreter shutdown) still loads."""
    from skjar.format import compression

    class NoThreads:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr(compression, "ThreadPoolExecutor", NoThreads)
    value = _forest_like()
    assert_same(skjar.loads(skjar.dumps(value, compress="zstd")), value)


def test_the_first_damaged_section_in_file_order_is_reported() -> None:
    data = skjar.dumps(_forest_like(), compress="zstd")
    stored = jarcraft.stored_sections(data)
    for i in (30, 5, 17):
        stored[1 + i] += b"junk"

    def relength(header: dict[str, Any]) -> None:
        for i in (30, 5, 17):
            header["layout"]["buffers"][i][0] += 4

    with pytest.raises(skjar.CorruptFileError, match=r"^buffer entry 5: "):
        skjar.loads(_respliced(data, relength, stored))


# -- chunks: large buffers compressed in pieces (1.3) --------------------------------------------
def _chunky() -> dict[str, Any]:
    """Buffers around multiples of the chunk size used below (64 KiB, the smallest a reader
    accepts); those under 256 KiB are packed, not chunked."""
    rng = np.random.default_rng(3)
    return {
        "five": np.arange(40_960.0) % 97,  # exactly five chunks
        "one more byte": np.arange(262_145, dtype=np.uint8),  # four chunks and one byte
        "fortran": np.asfortranarray((np.arange(300_000.0) % 13).reshape(600, 500)),
        "swapped": (np.arange(100_000) % 11).astype(">i4"),
        "noise": rng.integers(0, 256, 300_000, dtype=np.uint8),  # would not compress
        "small": [np.arange(10), np.ones(100)],
        "packed": np.zeros(8192),  # 65,536 bytes: in a pack
    }


def _chunked_entries(data: bytes) -> list[list[Any]]:
    return [e for e in jarcraft.decode(data).header["layout"]["buffers"]
            if len(e) == 4 and isinstance(e[3], dict)]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(writer, "CHUNK", spec.MIN_CHUNK)
    return spec.MIN_CHUNK


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_large_buffers_are_chunked_and_come_back_from_every_source(
    tmp_path: Path, codec: str, small_chunks: int
) -> None:
    value = _chunky()
    data = skjar.dumps(value, compress=codec)
    chunked = _chunked_entries(data)
    sizes = sorted(e[1] for e in chunked)
    assert sizes == sorted([327_680, 262_145, 2_400_000, 400_000])
    for length, size, _, table in chunked:
        assert table["chunk"] == small_chunks
        assert len(table["lengths"]) == -(-size // small_chunks) and sum(table["lengths"]) == length
    plain = [e for e in jarcraft.decode(data).header["layout"]["buffers"] if e[2] == "none"]
    assert [e[1] for e in plain] == [300_000]  # the noise, stored as it is: mmap-able
    assert skjar.inspect(data).format_version == "1.3"
    assert jarcraft.decode(data).buffers == jarcraft.decode(skjar.dumps(value)).buffers
    path = tmp_path / "chunked.skjar"
    path.write_bytes(data)
    for loaded in (skjar.loads(data), skjar.loads(bytearray(data)), skjar.load(path),
                   skjar.load(path, mmap=True), skjar.load(io.BytesIO(data)),
                   skjar.load(path, verify="structure")):
        assert_same(loaded, value)


def test_loading_chunks_leaves_the_input_as_it_was(tmp_path: Path, small_chunks: int) -> None:
    """Each chunk's stored bytes are given back to the kernel once decompressed: only the
    reader's own copy of them, never the caller's buffer or the file."""
    data = bytearray(skjar.dumps(_chunky(), compress="zstd"))
    before = bytes(data)
    skjar.loads(data)
    skjar.loads(memoryview(data))
    assert data == before
    path = tmp_path / "chunked.skjar"
    path.write_bytes(before)
    for mmap_ in (False, True, False):
        assert_same(skjar.load(path, mmap=mmap_), _chunky())
    assert path.read_bytes() == before


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_damaged_chunk_is_named(codec: str, small_chunks: int) -> None:
    data = skjar.dumps({"a": np.arange(40_000.0) % 7}, compress=codec)
    (entry,) = _chunked_entries(data)
    stored = jarcraft.stored_sections(data)
    lengths = entry[3]["lengths"]
    at = lengths[0] + lengths[1] // 2  # inside chunk 1
    section = bytearray(stored[1])
    section[at] ^= 0xFF
    stored[1] = bytes(section)
    bad = _respliced(data, lambda header: None, stored)  # digests recomputed: the codec finds it
    with pytest.raises(skjar.CorruptFileError, match=r"^chunk 1 of buffer entry 0: "):
        skjar.loads(bad)


def test_the_default_chunk_is_above_the_readers_minimum() -> None:
    assert writer.CHUNK >= spec.MIN_CHUNK and writer.CHUNK % spec.ALIGNMENT == 0
    assert writer.PACK_MAX <= writer.CHUNK  # a pack is never chunked


# -- the layout a reader accepts ------------------------------------------------------------------
def _jar() -> bytes:
    return skjar.dumps({"a": np.arange(1000.0), "b": np.arange(300, dtype="i2"), "c": [1]})


def test_nonzero_padding_is_refused() -> None:
    data = _jar()
    assert jarcraft.redigest(data) == data
    for start, end in jarcraft.section_spans(data)["padding"]:
        for i in (start, end - 1):
            damaged = bytearray(data)
            damaged[i] = 0x20
            for verify in ("full", None):
                with pytest.raises(skjar.CorruptFileError, match="padding"):
                    skjar.load(jarcraft.redigest(damaged), verify=verify)


@pytest.mark.parametrize("field", ["tree", "buffer"])
@pytest.mark.parametrize("delta", [1, -1, 64])
def test_sections_must_cover_the_data_exactly(field: str, delta: int) -> None:
    data = _jar()

    def lie(header: dict[str, Any]) -> None:
        if field == "tree":
            header["layout"]["tree"]["length"] += delta
            header["layout"]["tree"]["size"] += delta
        else:
            header["layout"]["buffers"][0][0] += delta
            header["layout"]["buffers"][0][1] += delta

    with pytest.raises(skjar.CorruptFileError):
        skjar.loads(_respliced(data, lie))


@pytest.mark.parametrize(
    "layout",
    [
        {"tree": {"length": -1, "size": -1, "codec": "none"}, "buffers": []},
        {"tree": {"length": 1.5, "size": 1.5, "codec": "none"}, "buffers": []},
        {"tree": {"length": True, "size": True, "codec": "none"}, "buffers": []},
        {"tree": {"length": 10, "size": 10, "codec": "gzip"}, "buffers": []},
        {"tree": {"length": 10, "size": 11, "codec": "none"}, "buffers": []},
        {"tree": {"length": 10, "size": 10, "codec": "none"}, "buffers": [[1, 1]]},
        {"tree": {"length": 10, "size": 10, "codec": "none"}, "buffers": {"0": [1, 1, "none"]}},
        {"tree": [10, 10, "none"], "buffers": []},
        [],
    ],
)
def test_malformed_layouts_are_refused(layout: Any) -> None:
    crafted = jarcraft.decode(_jar())
    crafted.header["layout"] = layout
    data = jarcraft.encode(crafted, layout=False)
    for fn in (skjar.loads, skjar.inspect):
        with pytest.raises(skjar.CorruptFileError):
            fn(data)


@pytest.mark.parametrize(
    "layout",
    [
        {"tree": {"length": 2**70, "size": 2**70, "codec": "none"}, "buffers": []},
        {"tree": {"length": 10, "size": 10, "codec": "none"}, "buffers": [[2**40, 2**40, "none"]]},
        {"tree": {"length": 0, "size": 0, "codec": "none"}, "buffers": []},
    ],
)
def test_layouts_that_do_not_fit_the_file_are_refused(layout: Any) -> None:
    """Well-formed, but describing another file: refused before anything is allocated."""
    crafted = jarcraft.decode(_jar())
    crafted.header["layout"] = layout
    data = jarcraft.encode(crafted, layout=False)
    tracemalloc.start()
    try:
        with pytest.raises(skjar.CorruptFileError, match="describes"):
            skjar.loads(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize("length", [0, 1, spec.MAX_HEADER_SIZE + 1, 2**63])
def test_header_length_is_bounded(length: int) -> None:
    data = bytearray(_jar())
    struct.pack_into("<Q", data, 16, length)
    for fn in (skjar.loads, skjar.inspect):
        with pytest.raises(skjar.CorruptFileError):
            fn(bytes(data))


@pytest.mark.parametrize(
    "header",
    [b"", b"not json", b"[1, 2]", b"\xff\xfe{}", b'{"producer": {}}', b"{" * 100_000],
    ids=["empty", "text", "list", "utf16", "incomplete", "deep"],
)
def test_malformed_headers_are_refused(header: bytes) -> None:
    crafted = jarcraft.decode(_jar())
    data = jarcraft.assemble(header, [crafted.tree, *crafted.buffers])
    for fn in (skjar.loads, skjar.inspect):
        with pytest.raises(skjar.CorruptFileError):
            fn(data)


def test_unknown_flags_are_refused() -> None:
    crafted = jarcraft.decode(_jar())
    crafted.flags = 1 << 7
    with pytest.raises(skjar.CorruptFileError, match="flags"):
        skjar.loads(jarcraft.encode(crafted))


def test_the_layout_is_what_the_spec_says() -> None:
    """Every section starts on a 64-byte boundary; the trailer ends with the end magic."""
    data = _jar()
    spans = jarcraft.section_spans(data)
    for start, _ in spans["tree"] + spans["buffer"]:
        assert start % spec.ALIGNMENT == 0
    assert data.startswith(spec.MAGIC) and data.endswith(spec.END_MAGIC)
    assert struct.unpack_from("<HHI", data, 8) == (*spec.WITHOUT_PACKS, 0)


def test_the_header_summary_never_fails_a_save() -> None:
    """The summary is read from the object's own attributes: odd ones (a converted file's,
    a hand-built object's) are described as far as they can be, and the save goes on.
    (Found by fuzzing the converter: a step named by an estimator made json.dumps raise
    TypeError out of dumps.)"""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    odd = Pipeline([("scale", StandardScaler()), ("fit", LinearRegression())])
    odd.steps[0] = (LinearRegression, odd.steps[0][1])  # a class as a step's name
    odd.steps.append(7)  # not a (name, estimator) pair
    info = skjar.inspect(io.BytesIO(skjar.dumps(odd)))
    assert info.type == "sklearn.pipeline.Pipeline"
    assert "not_described" in info.object  # steps that cannot be read as steps

    named = Pipeline([("scale", StandardScaler())])
    named.steps[0] = (LinearRegression(), named.steps[0][1])  # an estimator as a name
    info = skjar.inspect(io.BytesIO(skjar.dumps(named)))
    assert list(info.object["children"]) == ["LinearRegression()"]
    assert type(skjar.loads(skjar.dumps(named)).steps[0][0]) is LinearRegression


def test_a_label_no_utf8_can_hold_is_summarised_as_its_escape() -> None:
    """A numpy str array holds any code point, a lone surrogate too; the model saves and
    loads exactly, and the header's summary (UTF-8 JSON) shows the escape as text.
    (Found by fuzzing the converter: json's UTF-8 encoding raised out of dumps.)"""
    from sklearn.linear_model import LogisticRegression

    labels = np.array(["a\udcff", "b"])
    model = LogisticRegression().fit([[0.0], [1.0]], labels)
    data = skjar.dumps(model)
    assert skjar.inspect(io.BytesIO(data)).schema["classes"] == ["a\\udcff", "b"]
    assert skjar.loads(data).classes_.tolist() == labels.tolist()


# -- streamed saves: sections written while the next ones are compressed -------------------------
def _front(data: bytes) -> tuple[int, bytes]:
    """The header length and the header's bytes."""
    (length,) = struct.unpack_from("<Q", data, 16)
    return length, data[spec.PREAMBLE_SIZE : spec.PREAMBLE_SIZE + length]


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_streamed_save_holds_what_dumps_holds_whatever_the_cores(
    codec: str, signed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compressed save to a path with work for every core writes its sections as they
    are compressed and its header last, into room reserved from the sections' sizes:
    the same header, tree and sections as ``dumps`` (whose header is not padded), the
    header followed by spaces only, and the same bytes on one core as on two."""
    from skjar.format import compression

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    value = {"trees": _forest_like(), "noise": np.random.default_rng(5).bytes(300_000)}
    key = skjar.generate_key() if signed else None
    (tmp_path / "jar").mkdir()
    path = tmp_path / "jar" / "streamed.skjar"
    skjar.dump(value, path, compress=codec, sign_with=key)
    streamed = path.read_bytes()
    whole = skjar.dumps(value, compress=codec, sign_with=key)
    (length, head), (whole_length, whole_head) = _front(streamed), _front(whole)
    assert length > whole_length and head[:whole_length] == whole_head
    assert set(head[whole_length:]) == {ord(" ")} and json.loads(head) == json.loads(whole_head)
    if not signed:  # (jarcraft reads unsigned jars)
        a, b = jarcraft.decode(streamed), jarcraft.decode(whole)
        assert a.tree == b.tree and a.buffers == b.buffers
        assert jarcraft.stored_sections(streamed) == jarcraft.stored_sections(whole)
    public = [skjar.save_key(key, tmp_path / "k.pem")] if signed else None
    assert skjar.verify(path, verify_with=public).signed is signed
    for loaded in (skjar.load(path, verify_with=public), skjar.loads(streamed, verify_with=public),
                   skjar.load(io.BytesIO(streamed), verify_with=public),
                   skjar.load(path, mmap=True, verify_with=public)):
        assert_same(loaded, value)
    monkeypatch.setattr(compression, "_cores", lambda: 1)
    skjar.dump(value, path, compress=codec, sign_with=key)
    if not signed:  # (an Ed25519 signature is deterministic too, but say so only once)
        assert path.read_bytes() == streamed
    _only(path)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_the_reserved_header_is_never_shorter_than_the_real_one(codec: str) -> None:
    """``bound()`` gives every section its worst case: stored as it is, an incompressible
    pack apart member by member, a chunk grown by its codec's framing. Sizes around the
    powers of ten, contents from zeros to noise, chunks of the smallest size."""
    rng = np.random.default_rng(11)
    saved = writer.CHUNK
    writer.CHUNK = spec.MIN_CHUNK
    try:
        for trial in range(60):
            buffers = []
            for _ in range(int(rng.integers(1, 12))):
                size = int(rng.choice([9, 10, 99, 100, 999, 1000, 99_999, 100_000, 300_001,
                                       spec.MIN_CHUNK - 1, spec.MIN_CHUNK + 1]))
                noise = rng.integers(0, 256, size, dtype=np.uint8)
                buffers.append(noise if rng.random() < 0.5 else noise & rng.integers(0, 4))
                # Chunked, its last chunk noise of 10**k - 1 bytes: stored larger than
                # it is, one digit longer.
                tail = rng.integers(0, 256, 10 ** int(rng.integers(1, 5)) - 1, dtype=np.uint8)
                buffers.append(np.concatenate([np.zeros(4 * spec.MIN_CHUNK, np.uint8), tail]))
            tree = rng.integers(0, 256 if trial % 2 else 2, int(rng.integers(1, 5000)),
                                dtype=np.uint8).tobytes()
            sections = writer.plan_sections(tree, buffers, (codec, 1))
            bound = json.dumps(sections.bound(), separators=(",", ":"))
            layout, _ = sections.finish()
            assert len(json.dumps(layout, separators=(",", ":"))) <= len(bound), trial
    finally:
        writer.CHUNK = saved


@pytest.mark.parametrize("stage", ["compress", "write"])
def test_a_streamed_save_that_fails_midway_leaves_the_old_file(
    old_file: Path, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sections already on their way to the disk are in the temporary file only, and
    the compression queued behind a failure is stopped, not left running."""
    from skjar.format import compression

    real_compress, real_writev, calls = compression.Compressor.compress, os.writev, []

    def compress(self: Any, data: memoryview) -> bytes:
        calls.append("compress")
        if stage == "compress" and calls.count("compress") == 20:
            raise MemoryError("out of memory in a codec")
        return real_compress(self, data)

    def writev(fd: int, pieces: list[Any]) -> int:
        calls.append("write")
        if stage == "write" and calls.count("write") == 2:
            raise OSError(28, "No space left on device")
        return real_writev(fd, pieces)

    before = old_file.read_bytes()
    monkeypatch.setattr(compression.Compressor, "compress", compress)
    monkeypatch.setattr(os, "writev", writev)
    rng = np.random.default_rng(8)  # 40 MiB that zstd halves: several writes on the way
    value = [rng.integers(0, 16, 1 << 20, dtype=np.uint8) for _ in range(40)]
    with pytest.raises(MemoryError if stage == "compress" else OSError) as failure:
        skjar.dump(value, old_file, compress="zstd")
    assert calls.count("write") == 2 if stage == "write" else calls.count("compress") >= 20
    assert old_file.read_bytes() == before
    _only(old_file)
    # (The failure's traceback still holds the compressing generator's frame: only an
    # explicit close stops its threads.)
    assert failure.traceback
    assert not [t for t in threading.enumerate() if t.name.startswith("skjar-codec")]


@pytest.mark.parametrize("compress", [("zstd", 1), ("zstd", 19), ("lz4", 0), ("lz4", 9)], ids=str)
def test_a_chunk_frame_is_never_longer_than_its_bound(compress: Any) -> None:
    """The reserved header counts a chunk's stored length as ``_frame_bound`` of its size:
    noise, which every codec stores a little larger than it is, stays within it."""
    from skjar.format.compression import Compressor

    compressor = Compressor(*compress)
    rng = np.random.default_rng(2)
    for size in (1, 9, 10, 99, 999, 9_999, 65_535, 99_999, 1 << 20):
        noise = rng.integers(0, 256, size, dtype=np.uint8)
        assert size < len(compressor.compress(memoryview(noise))) <= writer._frame_bound(size)
