"""Bad input to every public entry point raises the right SkjarError, with a useful message.

Damaged files (any single flipped byte, any truncation, trailing bytes) are refused
with a ``ReadError`` subclass and never another exception type. Foreign files
(pickle, joblib, zip) are recognised and named.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
import threading
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jarcraft
import skjar
from skjar.format import spec


@pytest.fixture(scope="module")
def model() -> Any:
    from sklearn.linear_model import LogisticRegression

    # 20 features: coef_ (160 bytes) is stored out of line, so the jar has a buffer
    # section; smaller arrays would be inlined into the tree.
    rng = np.random.default_rng(0)
    X = rng.random((8, 20))
    return LogisticRegression().fit(X, [0, 1, 1, 0, 0, 1, 1, 0])


@pytest.fixture(scope="module")
def jar(model: Any) -> bytes:
    return skjar.dumps(model)


def load_quietly(data: Any, **kwargs: Any) -> Any:
    """Load with every warning turned into an error, so none is hidden behind a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return skjar.load(data, **kwargs)


# -- dump: targets ---------------------------------------------------------------------
def test_dump_to_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "model.skjar"
    with pytest.raises(skjar.InvalidArgumentError, match="does not exist") as info:
        skjar.dump([1], target)
    assert "nope" in str(info.value)
    assert not (tmp_path / "nope").exists()


def test_dump_to_a_directory(tmp_path: Path) -> None:
    with pytest.raises(skjar.InvalidArgumentError, match="is a directory"):
        skjar.dump([1], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_dump_to_text_mode_file(tmp_path: Path) -> None:
    with open(tmp_path / "x.txt", "w") as f, pytest.raises(
        skjar.InvalidArgumentError, match=r"text mode.*'wb'"
    ):
        skjar.dump([1], f)
    with pytest.raises(skjar.InvalidArgumentError, match="text mode"):
        skjar.dump([1], io.StringIO())
    assert (tmp_path / "x.txt").read_text() == ""


def test_dump_to_read_only_file(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    with open(path, "rb") as f, pytest.raises(skjar.InvalidArgumentError, match="'wb'"):
        skjar.dump([1], f)
    assert path.read_bytes() == b"old"


@pytest.mark.parametrize("target", [42, object(), None, [1]], ids=["int", "object", "None", "list"])
def test_dump_to_something_that_is_not_a_file(target: Any) -> None:
    with pytest.raises(skjar.InvalidArgumentError, match="path or a binary file object"):
        skjar.dump([1], target)


# -- dump/dumps: options -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("compress", "message"),
    [
        ("gzip", "unknown compression 'gzip'"),
        ("ZSTD", "unknown compression 'ZSTD'"),
        (("zstd", 99), "between -7 and 22, got 99"),
        (("lz4", -1), "between 0 and 16, got -1"),
        (3, "compress=3 is not understood"),
        (True, "compress=True is not understood"),
        (("zstd",), r"compress=\('zstd',\) is not understood"),
        (("zstd", 3, 1), "is not understood"),
        (("zstd", "3"), "is not understood"),
        (("zstd", True), "is not understood"),
        (["zstd", 3], "is not understood"),
    ],
)
def test_bad_compress(compress: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(skjar.InvalidArgumentError, match=message) as info:
        skjar.dumps([1], compress=compress)
    assert re.search("zstd|lz4", str(info.value))  # says what would work
    with pytest.raises(skjar.InvalidArgumentError):
        skjar.dump([1], tmp_path / "m.skjar", compress=compress)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"a": object()}, "JSON-serialisable"),
        ({"a": {1, 2}}, "JSON-serialisable"),
        ({"a": float("nan")}, "JSON-serialisable"),
        ({"a": b"bytes"}, "JSON-serialisable"),
        ({"a": np.arange(3)}, "JSON-serialisable"),
        ({1: "x"}, "string keys"),
        ({("a",): "x"}, "string keys"),
        ({"nested": {1: "x"}}, "string keys"),
        (["a"], "dict"),
        ("a=1", "dict"),
        ({"a": ["x\udcff"]}, "not valid Unicode"),  # a lone surrogate: UnicodeEncodeError before
        ({"k\ud800": 1}, "not valid Unicode"),
    ],
    ids=["object", "set", "nan", "bytes", "array", "int-key", "tuple-key", "nested-int-key",
         "list", "str", "surrogate-value", "surrogate-key"],
)
def test_bad_metadata(metadata: Any, message: str) -> None:
    """Metadata must survive as given: anything JSON cannot hold exactly is refused."""
    with pytest.raises(skjar.InvalidArgumentError, match=message):
        skjar.dumps([1], metadata=metadata)


def test_good_metadata_comes_back_exactly() -> None:
    metadata = {"auc": 0.93, "tags": ["a", "b"], "nested": {"n": 1, "ok": True, "none": None},
                "unicode": "\u00e9\u2603"}
    assert skjar.inspect(skjar.dumps([1], metadata=metadata)).metadata == metadata


# -- trusted= ------------------------------------------------------------------------------
BAD_TRUST = {
    "top-level module": ("sklearn", "exact 'module.qualname'"),
    "module": ("numpy.linalg", "names a module"),
    "stdlib module": ("os.path", "names a module"),
    "wildcard": ("sklearn.*", "never by prefix or wildcard"),
    "prefix": ("sklearn.", "never by prefix or wildcard"),
    "inner wildcard": ("sklearn.*.LogisticRegression", "never by prefix or wildcard"),
    "bare word": ("LogisticRegression", "exact 'module.qualname'"),
    "empty": ("", "exact 'module.qualname'"),
    "not identifiers": ("my-pkg.Model", "exact 'module.qualname'"),
    "dunder": ("builtins.object.__subclasses__", "dunder"),
    "module object": (os, "never a whole module"),
    "lambda": (lambda x: x, "no importable name"),
    "instance": (3, "no importable name"),
    "None": (None, "no importable name"),
    "bad use": (("numpy.log1p", "execute"), "must be \\(name_or_object, use\\)"),
    "long pair": (("numpy.log1p", "value", "x"), "must be \\(name_or_object, use\\)"),
}


@pytest.mark.parametrize("case", list(BAD_TRUST))
@pytest.mark.parametrize("entry_point", ["load", "audit", "is_trusted"])
def test_bad_trusted_entries(case: str, entry_point: str, jar: bytes) -> None:
    item, message = BAD_TRUST[case]
    call: dict[str, Callable[[], Any]] = {
        "load": lambda: skjar.loads(jar, trusted=[item]),
        "audit": lambda: skjar.audit(jar, trusted=[item]),
        "is_trusted": lambda: skjar.is_trusted("numpy.log1p", "value", [item]),
    }
    with pytest.raises(skjar.TrustSpecError, match=message):
        call[entry_point]()


@pytest.mark.parametrize("trusted", ["numpy.log1p", None, 3, b"numpy.log1p"])
def test_trusted_must_be_a_collection(trusted: Any, jar: bytes) -> None:
    with pytest.raises(skjar.TrustSpecError, match="must be a list"):
        skjar.loads(jar, trusted=trusted)


def test_trust_spec_error_is_an_invalid_argument() -> None:
    assert issubclass(skjar.TrustSpecError, skjar.InvalidArgumentError)


@pytest.mark.parametrize(("flag", "value"), [("mmap", 1), ("mmap", "yes"),
                                             ("strict_versions", None)])
def test_boolean_flags_must_be_booleans(flag: str, value: Any, tmp_path: Path, jar: bytes) -> None:
    path = tmp_path / "m.skjar"
    path.write_bytes(jar)
    with pytest.raises(skjar.InvalidArgumentError, match=f"{flag}= must be True or False"):
        skjar.load(path, **{flag: value})


# -- load: sources -------------------------------------------------------------------------
def test_load_missing_file(tmp_path: Path) -> None:
    for fn in (skjar.load, skjar.inspect, skjar.audit):
        with pytest.raises(skjar.InvalidArgumentError) as info:
            fn(tmp_path / "missing.skjar")
        assert "missing.skjar" in str(info.value)
        assert re.search("no such file|No such file", str(info.value))


def test_load_a_directory(tmp_path: Path) -> None:
    for fn in (skjar.load, skjar.inspect, skjar.audit):
        with pytest.raises(skjar.InvalidArgumentError, match=r"directory|Is a directory"):
            fn(tmp_path)


def test_load_text_mode_file(tmp_path: Path, jar: bytes) -> None:
    (tmp_path / "m.skjar").write_bytes(jar)
    for fn in (skjar.load, skjar.inspect, skjar.audit):
        with open(tmp_path / "m.skjar", encoding="latin-1") as f, pytest.raises(
            skjar.InvalidArgumentError, match=r"text mode.*'rb'"
        ):
            fn(f)


def test_load_write_only_file(tmp_path: Path) -> None:
    with open(tmp_path / "m.skjar", "wb") as f:
        for fn in (skjar.load, skjar.inspect):
            with pytest.raises(skjar.InvalidArgumentError, match="'rb'"):
                fn(f)


def test_load_a_closed_file_object(tmp_path: Path, jar: bytes) -> None:
    (tmp_path / "m.skjar").write_bytes(jar)
    closed = [io.BytesIO(jar), open(tmp_path / "m.skjar", "rb")]  # noqa: SIM115
    for f in closed:
        f.close()
        for fn in (skjar.load, skjar.inspect, skjar.audit):
            with pytest.raises(skjar.InvalidArgumentError, match="closed"):
                fn(f)


@pytest.mark.parametrize("source", [42, object(), None, ["m.skjar"]])
def test_load_something_that_is_not_a_file(source: Any) -> None:
    for fn in (skjar.load, skjar.inspect, skjar.audit):
        with pytest.raises(skjar.InvalidArgumentError, match="cannot read a skjar from"):
            fn(source)


@pytest.mark.parametrize("data", ["text", 42, None, io.BytesIO(b"")])
def test_loads_takes_only_bytes(data: Any) -> None:
    with pytest.raises(skjar.InvalidArgumentError, match="bytes, bytearray or memoryview"):
        skjar.loads(data)


def test_mmap_needs_a_path(jar: bytes) -> None:
    with pytest.raises(skjar.InvalidArgumentError, match="mmap=True needs a file path"):
        skjar.load(jar, mmap=True)
    with pytest.raises(skjar.InvalidArgumentError, match="mmap=True needs a file path"):
        skjar.load(io.BytesIO(jar), mmap=True)


def test_load_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.skjar"
    path.write_bytes(b"")
    for source in (path, b"", io.BytesIO(b"")):
        with pytest.raises(skjar.NotASkjarFileError, match="empty"):
            skjar.load(source)
    with pytest.raises(skjar.NotASkjarFileError, match="empty"):
        skjar.load(path, mmap=True)
    with pytest.raises(skjar.NotASkjarFileError, match="empty"):
        skjar.inspect(path)


def _foreign_files(tmp_path: Path) -> dict[str, Path]:
    import joblib

    files = {}
    files["pickle"] = tmp_path / "model.pkl"
    files["pickle"].write_bytes(pickle.dumps({"a": [1, 2]}, protocol=pickle.HIGHEST_PROTOCOL))
    files["pickle-2"] = tmp_path / "model2.pkl"
    files["pickle-2"].write_bytes(pickle.dumps([1], protocol=2))
    files["joblib"] = tmp_path / "model.joblib"
    joblib.dump({"a": np.arange(3)}, files["joblib"])
    files["joblib-3"] = tmp_path / "model3.joblib"
    joblib.dump({"a": np.arange(3)}, files["joblib-3"], compress=3)
    files["zip"] = tmp_path / "model.zip"
    with zipfile.ZipFile(files["zip"], "w") as z:
        z.writestr("schema.json", "{}")
    files["text"] = tmp_path / "notes.txt"
    files["text"].write_text("hello, this is text\n" * 10)
    return files


FOREIGN = {
    "pickle": "pickle",
    "pickle-2": "pickle",
    "joblib": "joblib",
    "joblib-3": "joblib",
    "zip": "zip",
    "text": "instead of",
}


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_foreign_files_are_named(kind: str, tmp_path: Path) -> None:
    path = _foreign_files(tmp_path)[kind]
    data = path.read_bytes()
    for source in (path, data, io.BytesIO(data)):
        with pytest.raises(skjar.NotASkjarFileError) as info:
            skjar.load(source)
        assert FOREIGN[kind] in str(info.value), str(info.value)
        assert "not a skjar file" in str(info.value)
    with pytest.raises(skjar.NotASkjarFileError, match=FOREIGN[kind]):
        skjar.load(path, mmap=True)
    with pytest.raises(skjar.NotASkjarFileError, match=FOREIGN[kind]):
        skjar.inspect(path)
    if kind.startswith(("pickle", "joblib")):
        assert "never unpickles" in str(info.value)


# -- damaged jars -----------------------------------------------------------------------
def _expected_for_position(
    spans: dict[str, list[tuple[int, int]]], i: int, damaged: bytes = b""
) -> type[Exception]:
    if i < 8:
        return skjar.NotASkjarFileError  # the magic
    if i < 12:
        major, minor = struct.unpack_from("<HH", damaged, 8)
        if major == spec.FORMAT_MAJOR and minor <= spec.FORMAT_MINOR:
            return skjar.CorruptFileError  # another version this reader reads: the digest fails
        return skjar.FormatVersionError  # major, minor
    return skjar.CorruptFileError  # flags, header length, header, tree, buffers, padding, trailer


def test_every_section_kind_is_present(jar: bytes) -> None:
    spans = jarcraft.section_spans(jar)
    for kind in ("preamble", "header", "tree", "buffer", "padding", "trailer"):
        assert spans[kind], f"the sample jar has no {kind}"


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_flipped_byte_is_refused(jar: bytes, mask: int) -> None:
    """Flip each byte of a whole jar (preamble, header, tree, buffers, padding, trailer)."""
    spans = jarcraft.section_spans(jar)
    wrong = []
    for i in range(len(jar)):
        damaged = bytearray(jar)
        damaged[i] ^= mask
        expected = _expected_for_position(spans, i, bytes(damaged))
        try:
            load_quietly(bytes(damaged))
        except expected:
            continue
        except BaseException as exc:  # any other outcome is a finding
            wrong.append((i, f"{type(exc).__name__}: {exc}"))
        else:
            wrong.append((i, "loaded"))
    assert not wrong, f"{len(wrong)} positions misbehave, e.g. {wrong[:5]}"


@pytest.mark.parametrize("via", ["path", "mmap-full", "file object"])
def test_flipped_bytes_are_refused_from_files(jar: bytes, via: str, tmp_path: Path) -> None:
    spans = jarcraft.section_spans(jar)
    path = tmp_path / "damaged.skjar"
    for i in range(0, len(jar), 37):
        damaged = bytearray(jar)
        damaged[i] ^= 0x10
        path.write_bytes(damaged)
        with pytest.raises(_expected_for_position(spans, i)):
            if via == "file object":
                with open(path, "rb") as f:
                    load_quietly(f)
            elif via == "mmap-full":
                load_quietly(path, mmap=True, verify="full")
            else:
                load_quietly(path)


def test_mmap_checks_the_structure_and_leaves_array_bytes_unread(jar: bytes, tmp_path: Path) -> None:
    """mmap=True verifies preamble, header and tree, not array data (that would read it all)."""
    spans = jarcraft.section_spans(jar)
    path = tmp_path / "damaged.skjar"
    start, end = spans["tree"][0]
    for i in (0, 30, start, (start + end) // 2, end - 1):
        damaged = bytearray(jar)
        damaged[i] ^= 0x10
        path.write_bytes(damaged)
        with pytest.raises(skjar.SkjarError):
            load_quietly(path, mmap=True)
    buf_start, _ = spans["buffer"][0]
    damaged = bytearray(jar)
    damaged[buf_start] ^= 0x10
    path.write_bytes(damaged)
    load_quietly(path, mmap=True)  # array bytes are not hashed by the default mmap check
    with pytest.raises(skjar.CorruptFileError, match="integrity check failed"):
        load_quietly(path, mmap=True, verify="full")
    with pytest.raises(skjar.InvalidArgumentError, match="verify="):
        skjar.load(path, verify="sometimes")


def test_damaged_file_object_is_refused_the_same_way(jar: bytes) -> None:
    damaged = bytearray(jar)
    damaged[jarcraft.section_spans(jar)["buffer"][0][0]] ^= 0x01
    with pytest.raises(skjar.CorruptFileError, match="integrity check failed"):
        skjar.load(io.BytesIO(bytes(damaged)))


def test_damage_is_reported_as_damage_not_as_version_skew(jar: bytes) -> None:
    """A damaged version string must not pass for a jar made by other library versions."""
    import sklearn

    version = sklearn.__version__.encode()
    start = jar.index(b'"scikit-learn":"' + version)
    damaged = bytearray(jar)
    damaged[start + len(b'"scikit-learn":"')] ^= 0x01
    for strict in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(skjar.CorruptFileError, match="integrity"):
                skjar.loads(bytes(damaged), strict_versions=strict)
        assert not [w for w in caught if issubclass(w.category, skjar.SkjarWarning)]


def test_damage_is_reported_as_damage_not_as_untrusted(jar: bytes) -> None:
    name = b"LogisticRegression"
    damaged = bytearray(jar)
    damaged[jar.index(name) + 3] ^= 0x01
    with pytest.raises(skjar.CorruptFileError):
        skjar.loads(bytes(damaged))


def test_damaged_tree_with_a_valid_digest_never_escapes(jar: bytes) -> None:
    """Damage the digest does not catch (it was recomputed): a SkjarError or a load, nothing else."""
    base = jarcraft.decode(jar)
    sections = [base.tree, *base.buffers]
    outcomes: set[str] = set()
    for index, data in enumerate(sections):
        for i in range(len(data)):
            for mask in (0x01, 0x40, 0xFF):
                damaged = bytearray(data)
                damaged[i] ^= mask
                parts = [*sections[:index], bytes(damaged), *sections[index + 1 :]]
                crafted = jarcraft.Jar(base.header, parts[0], parts[1:])
                try:
                    load_quietly(jarcraft.encode(crafted))
                    outcomes.add("loaded")
                except skjar.ReadError as exc:
                    outcomes.add(type(exc).__name__)
    assert "CorruptFileError" in outcomes


@pytest.mark.parametrize("via", ["bytes", "path", "mmap", "file object", "inspect"])
def test_every_truncation_is_refused(jar: bytes, via: str, tmp_path: Path) -> None:
    path = tmp_path / "short.skjar"
    step = 1 if via == "bytes" else 13
    header_end = jarcraft.section_spans(jar)["header"][0][1]
    for n in range(0, len(jar), step):
        short = jar[:n]
        if via == "inspect":
            if n >= header_end:  # the header is intact: inspect reads nothing more
                continue
            source: Any = short
            fn: Callable[..., Any] = skjar.inspect
        elif via == "bytes":
            source, fn = short, load_quietly
        else:
            path.write_bytes(short)
            source = open(path, "rb") if via == "file object" else path  # noqa: SIM115
            fn = load_quietly if via != "mmap" else (lambda p: load_quietly(p, mmap=True))
        try:
            with pytest.raises((skjar.CorruptFileError, skjar.NotASkjarFileError)) as info:
                fn(source)
        finally:
            if hasattr(source, "close"):
                source.close()
        if n >= 8:  # the whole magic is there: it is a jar, cut short
            assert isinstance(info.value, skjar.CorruptFileError), (n, info.value)
            assert "truncated" in str(info.value) or "describes" in str(info.value), str(info.value)


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", bytes(64), b"SKJAREND"])
def test_trailing_bytes_are_refused(jar: bytes, extra: bytes, tmp_path: Path) -> None:
    path = tmp_path / "long.skjar"
    path.write_bytes(jar + extra)
    for source in (jar + extra, path, io.BytesIO(jar + extra)):
        with pytest.raises(skjar.CorruptFileError, match="trailing"):
            load_quietly(source)
    with pytest.raises(skjar.CorruptFileError, match="trailing"):
        load_quietly(path, mmap=True)


def test_trailing_bytes_are_refused_from_a_stream(jar: bytes) -> None:
    r, w = os.pipe()
    os.write(w, jar + b"x")
    os.close(w)
    with open(r, "rb", buffering=0) as stream, pytest.raises(skjar.CorruptFileError):
        load_quietly(stream)


@pytest.mark.parametrize("version", [(1, 4), (1, 99), (2, 0), (0, 9), (65535, 0)])
def test_other_format_versions_are_refused(jar: bytes, version: tuple[int, int]) -> None:
    crafted = jarcraft.decode(jar)
    crafted.version = version
    data = jarcraft.encode(crafted)
    for fn in (skjar.loads, skjar.inspect, skjar.audit):
        with pytest.raises(skjar.FormatVersionError) as info:
            fn(data)
        assert f"{version[0]}.{version[1]}" in str(info.value)
        assert "Upgrade skjar" in str(info.value)


def test_the_current_format_version_loads(jar: bytes, model: Any) -> None:
    """A jar is stamped with the oldest version that holds it: 1.1 without packs, 1.2 with
    one, 1.3 with a chunked section."""
    crafted = jarcraft.decode(jar)
    assert crafted.version == spec.WITHOUT_PACKS
    assert jarcraft.encode(crafted) == jar  # the helper re-encodes faithfully
    assert skjar.inspect(jar).format_version == "1.1"
    packed = skjar.dumps([np.zeros(100), np.ones(100)], compress="zstd")  # two buffers, one pack
    assert skjar.inspect(packed).format_version == "1.2"
    assert any(len(entry) == 4 for entry in jarcraft.decode(packed).header["layout"]["buffers"])
    chunked = skjar.dumps([np.zeros(100), np.ones(100), np.zeros(1 << 20)], compress="zstd")
    assert skjar.inspect(chunked).format_version == f"{spec.FORMAT_MAJOR}.{spec.FORMAT_MINOR}"
    entries = jarcraft.decode(chunked).header["layout"]["buffers"]
    assert [type(entry[3]) for entry in entries] == [list, dict]


# -- dump: unsupported objects ------------------------------------------------------------
_OUT_OF_ORDER = np.dtype({"names": ["a", "b"], "formats": ["<i4", "<i4"], "offsets": [4, 0]})


def test_unsupported_object_names_its_path() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipe = Pipeline([("f", FunctionTransformer(lambda x: x)), ("m", LogisticRegression())])
    with pytest.raises(skjar.UnsupportedObjectError) as info:
        skjar.dumps(pipe)
    assert info.value.path == "steps[0][1].func"
    assert "(at steps[0][1].func)" in str(info.value)
    assert "lambda" in str(info.value)
    assert "top level of an importable module" in str(info.value)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": [1, {"b": lambda: 1}]}, "a[1].b"),
        ({"not an identifier": [io.BytesIO]}, None),
        ([1, 2, (3, {"k": threading.Lock()})], "[2][1].k"),
        ({"gen": (i for i in range(3))}, "gen"),
        ({"mod": os}, "mod"),
        ({"d": [_OUT_OF_ORDER]}, "d[0]"),  # no field-by-field descr (found by fuzzing)
        ({"a": np.zeros(2, _OUT_OF_ORDER)}, "a"),
        ({"a": np.zeros(2, [("x", "<i2"), ("y", _OUT_OF_ORDER)])}, "a"),
        ({"k": [1, "x\udcffyz"]}, "k[1]"),  # a lone surrogate: no UTF-8 for it
    ],
    ids=["lambda", "ok-class", "lock", "generator", "module", "overlapping-dtype",
         "overlapping-array", "nested-overlap", "lone-surrogate"],
)
def test_unsupported_values_name_their_path(value: Any, path: str | None) -> None:
    if path is None:
        skjar.dumps(value)  # a class with an importable name is a value like any other
        return
    with pytest.raises(skjar.UnsupportedObjectError) as info:
        skjar.dumps(value)
    assert info.value.path == path


def test_refused_dump_leaves_the_target_untouched(tmp_path: Path) -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    target = tmp_path / "model.skjar"
    target.write_bytes(b"the previous model")
    before = target.stat()
    with pytest.raises(skjar.UnsupportedObjectError):
        skjar.dump(make_pipeline(FunctionTransformer(lambda x: x)), target)
    with pytest.raises(skjar.InvalidArgumentError):
        skjar.dump([1], target, compress="gzip")
    with pytest.raises(skjar.InvalidArgumentError):
        skjar.dump([1], target, metadata={"x": object()})
    assert target.read_bytes() == b"the previous model"
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(os.listdir(tmp_path)) == ["model.skjar"], "a temporary file was left behind"


def test_refused_dump_to_a_file_object_writes_nothing() -> None:
    buf = io.BytesIO()
    with pytest.raises(skjar.UnsupportedObjectError):
        skjar.dump({"f": lambda: 0}, buf)
    assert buf.getvalue() == b""


# -- version skew --------------------------------------------------------------------------
def _with_versions(jar: bytes, **versions: str) -> bytes:
    crafted = jarcraft.decode(jar)
    packages = crafted.header["environment"]["packages"]
    for name, version in versions.items():
        packages[name.replace("_", "-")] = version
    return jarcraft.encode(crafted)


def test_version_skew_warns_naming_both_versions(jar: bytes, model: Any) -> None:
    import sklearn

    data = _with_versions(jar, scikit_learn="0.24.2")
    with pytest.warns(skjar.VersionSkewWarning) as record:
        loaded = skjar.loads(data)
    message = str(record[0].message)
    assert "scikit-learn" in message and "0.24.2" in message and sklearn.__version__ in message
    assert "strict_versions=True" in message
    np.testing.assert_array_equal(loaded.coef_, model.coef_)
    info = skjar.inspect(data)
    assert info.version_skew == {"scikit-learn": ("0.24.2", sklearn.__version__)}


def test_version_skew_follows_the_modules_imported_now(
    jar: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process's versions are kept while the same modules are imported: a module
    replaced in sys.modules (a reload, a shim) is read afresh, and the kept versions are
    never handed out to be changed."""
    import sys
    import types

    import numpy
    import scipy

    from skjar.metadata import here_packages

    assert skjar.inspect(jar).version_skew == {}
    assert skjar.inspect(jar).version_skew == {}  # from the kept versions
    shim = types.ModuleType("scipy")
    shim.__version__ = "0.0.1"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "scipy", shim)
    assert skjar.inspect(jar).version_skew == {"scipy": (scipy.__version__, "0.0.1")}
    monkeypatch.undo()
    assert skjar.inspect(jar).version_skew == {}
    here_packages()["numpy"] = "0.0.0"
    assert here_packages()["numpy"] == numpy.__version__
    assert skjar.inspect(jar).version_skew == {}


def test_version_skew_warning_points_at_the_caller(jar: bytes, tmp_path: Path) -> None:
    data = _with_versions(jar, scikit_learn="0.24.2")
    path = tmp_path / "old.skjar"
    path.write_bytes(data)
    for load in (lambda: skjar.loads(data), lambda: skjar.load(path)):
        with pytest.warns(skjar.VersionSkewWarning) as record:
            load()
        assert record[0].filename == __file__, (
            f"the warning points at {record[0].filename}:{record[0].lineno}, not at the "
            "caller's load()"
        )


def test_version_skew_names_every_package(jar: bytes) -> None:
    import numpy
    import scipy

    data = _with_versions(jar, numpy="1.0.0", scipy="0.1")
    with pytest.warns(skjar.VersionSkewWarning) as record:
        skjar.loads(data)
    message = str(record[0].message)
    for text in ("numpy 1.0.0", numpy.__version__, "scipy 0.1", scipy.__version__):
        assert text in message


def test_strict_versions_refuses_skew(jar: bytes, tmp_path: Path) -> None:
    import sklearn

    data = _with_versions(jar, scikit_learn="0.24.2")
    path = tmp_path / "old.skjar"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(skjar.VersionMismatchError) as info:
            load_quietly(source, strict_versions=True)
        assert "0.24.2" in str(info.value) and sklearn.__version__ in str(info.value)


def test_matching_versions_load_silently(jar: bytes) -> None:
    load_quietly(jar, strict_versions=True)
    crafted = jarcraft.decode(jar)
    crafted.header["environment"]["packages"]["some-other-package"] = "0.0.1"
    crafted.header["environment"]["python"] = "2.7.18"
    load_quietly(jarcraft.encode(crafted), strict_versions=True)  # only the skew packages count


def _nul_path_calls(tmp_path: Path, jar: bytes) -> dict[str, Any]:
    """Every public entry point given a path no file can have (a NUL inside), in each of
    its path arguments, the others valid."""
    import pickle

    good = tmp_path / "m.skjar"
    good.write_bytes(jar)
    pkl = tmp_path / "m.pkl"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    key = skjar.generate_key()
    key_path = tmp_path / "k.pem"
    skjar.save_key(key, key_path)
    bad = str(tmp_path / "a\0b")
    return {
        "dump": lambda: skjar.dump({"a": 1}, bad),
        "dump sign_with": lambda: skjar.dump({"a": 1}, tmp_path / "n.skjar", sign_with=bad),
        "load": lambda: skjar.load(bad),
        "load mmap": lambda: skjar.load(bad, mmap=True),
        "load verify_with": lambda: skjar.load(good, verify_with=bad),
        "inspect": lambda: skjar.inspect(bad),
        "audit": lambda: skjar.audit(bad),
        "verify": lambda: skjar.verify(bad),
        "sign": lambda: skjar.sign(bad, key),
        "sign output": lambda: skjar.sign(good, key, output=bad),
        "convert": lambda: skjar.convert(bad, tmp_path / "c.skjar"),
        "convert output": lambda: skjar.convert(pkl, bad),
        "load_legacy": lambda: skjar.load_legacy(bad),
        "save_key": lambda: skjar.save_key(key, bad),
        "load_private_key": lambda: skjar.load_private_key(bad),
        "load_public_key": lambda: skjar.load_public_key(bad),
    }


NUL_CALLS = [
    "dump", "dump sign_with", "load", "load mmap", "load verify_with", "inspect", "audit",
    "verify", "sign", "sign output", "convert", "convert output", "load_legacy", "save_key",
    "load_private_key", "load_public_key",
]


@pytest.mark.parametrize("call", NUL_CALLS)
def test_a_path_with_a_nul_is_an_invalid_argument(call: str, tmp_path: Path, jar: bytes) -> None:
    """No file can have such a name: every entry point says so with an InvalidArgumentError
    (not the OS layer's bare ValueError), and writes nothing."""
    calls = _nul_path_calls(tmp_path, jar)
    assert sorted(calls) == sorted(NUL_CALLS)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(skjar.InvalidArgumentError, match="NUL"):
        calls[call]()
    assert sorted(os.listdir(tmp_path)) == before


UNOPENABLE = ["a name too long", "a file as a folder"]
UNOPENABLE_CALLS = ["load", "load mmap", "inspect", "audit", "verify", "dump", "sign output",
                    "convert", "convert output", "load_legacy"]


@pytest.mark.parametrize("call", UNOPENABLE_CALLS)
@pytest.mark.parametrize("how", UNOPENABLE)
def test_a_path_that_cannot_be_opened_is_an_invalid_argument(
    how: str, call: str, tmp_path: Path, jar: bytes
) -> None:
    """Reasons a path cannot be opened beyond a missing file or a directory (ENAMETOOLONG,
    ENOTDIR) are bad arguments too, not the OSError escaping as it did; nothing is written."""
    import pickle

    good = tmp_path / "m.skjar"
    good.write_bytes(jar)
    pkl = tmp_path / "m.pkl"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    bad = tmp_path / ("a" * 300 + ".skjar") if how == "a name too long" else good / "x.skjar"
    calls: dict[str, Callable[[], Any]] = {
        "load": lambda: skjar.load(bad),
        "load mmap": lambda: skjar.load(bad, mmap=True),
        "inspect": lambda: skjar.inspect(bad),
        "audit": lambda: skjar.audit(bad),
        "verify": lambda: skjar.verify(bad),
        "dump": lambda: skjar.dump({"a": 1}, bad),
        "sign output": lambda: skjar.sign(good, skjar.generate_key(), output=bad),
        "convert": lambda: skjar.convert(bad, tmp_path / "c.skjar"),
        "convert output": lambda: skjar.convert(pkl, bad),
        "load_legacy": lambda: skjar.load_legacy(bad),
    }
    assert sorted(calls) == sorted(UNOPENABLE_CALLS)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(skjar.InvalidArgumentError, match=re.escape(str(bad)[:40])):
        calls[call]()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _special(kind: str, path: Path) -> Any:
    """Make a special file at ``path``; returns what keeps it alive (a bound socket)."""
    import socket

    if kind == "named pipe":
        os.mkfifo(path)
        return None
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return sock


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes and unix sockets: POSIX")
@pytest.mark.parametrize("kind", ["named pipe", "socket"])
@pytest.mark.parametrize("via", ["dump", "sign output"])
def test_a_save_never_replaces_a_special_file(
    kind: str, via: str, tmp_path: Path, jar: bytes
) -> None:
    """A save to a path renames a new file over it: over a device, a pipe or a socket that
    would destroy it (as root, skjar.dump(model, "/dev/null") replaced /dev/null). It is
    refused instead, saying how to write into it, and the special file stays."""
    import stat as stat_module

    target = tmp_path / "special"
    keep = _special(kind, target)
    try:
        mode = os.lstat(target).st_mode
        good = tmp_path / "m.skjar"
        good.write_bytes(jar)
        with pytest.raises(skjar.InvalidArgumentError, match=f"is a {kind}.*open\\("):
            if via == "dump":
                skjar.dump({"a": 1}, target)
            else:
                skjar.sign(good, skjar.generate_key(), output=target)
        assert os.lstat(target).st_mode == mode
        assert not stat_module.S_ISREG(mode)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["m.skjar", "special"]
    finally:
        if keep is not None:
            keep.close()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes: POSIX")
def test_a_save_never_replaces_a_link_to_a_special_file(tmp_path: Path) -> None:
    """A link to a device or a pipe (as /dev/stdout is) is refused too: replacing the
    link would destroy it, and writing through it is what passing the file open does."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "out.skjar"
    link.symlink_to(fifo)
    with pytest.raises(skjar.InvalidArgumentError, match=r"is a named pipe.*open\("):
        skjar.dump({"a": 1}, link)
    assert link.is_symlink() and os.readlink(link) == str(fifo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.skjar", "pipe"]


def test_a_save_through_a_symbolic_link_replaces_the_link(tmp_path: Path) -> None:
    """A rename replaces the link itself: the file it pointed to keeps its bytes, and
    the link's name now holds the new jar."""
    old = tmp_path / "v1.skjar"
    skjar.dump({"v": 1}, old)
    before = old.read_bytes()
    link = tmp_path / "current.skjar"
    link.symlink_to(old)
    skjar.dump({"v": 2}, link)
    assert not link.is_symlink() and skjar.load(link) == {"v": 2}
    assert old.read_bytes() == before


def _feed_pipe(fifo: Path, data: bytes, done: threading.Event, broken: list[str]) -> None:
    """Write ``data`` into a named pipe; if a reader closes it first, record that and keep
    opening it for writing (and closing it) until ``done``, so that a reader waiting for a
    writer sees the end of the stream instead of hanging the test."""
    import time

    try:
        with open(fifo, "wb") as f:
            f.write(data)
    except BrokenPipeError:
        broken.append("the reader closed the pipe before reading it")
        deadline = time.monotonic() + 10
        while not done.is_set() and time.monotonic() < deadline:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader waiting yet
                time.sleep(0.01)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes: POSIX")
@pytest.mark.parametrize("call", ["load", "inspect", "audit"])
def test_a_jar_streams_through_a_named_pipe(call: str, tmp_path: Path, model: Any) -> None:
    """A path naming a pipe is read as a stream: the compiled front must not open it (and
    take the writer's data), and its size is not its fstat size (0)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    done, broken = threading.Event(), []
    writer = threading.Thread(target=_feed_pipe, args=(fifo, skjar.dumps(model), done, broken))
    writer.start()
    try:
        got = getattr(skjar, call)(fifo)
    finally:
        done.set()
        writer.join(15)
    assert not broken
    if call == "load":
        assert (got.coef_ == model.coef_).all()
    elif call == "inspect":
        assert got.type.endswith("LogisticRegression")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("mmap", [False, True])
def test_a_device_is_not_read_forever(mmap: bool) -> None:
    """A path naming a device (read only here) is refused, not read until memory runs
    out; mmap=True on a pipe or a device is refused too."""
    with pytest.raises(skjar.InvalidArgumentError, match="not a regular file"):
        skjar.load("/dev/zero", mmap=mmap)
