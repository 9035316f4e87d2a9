"""The compiled reader front (src/skjar/_front.c) against its twins.

``skjar.load(path)`` and ``skjar.loads(data)`` read a small, unsigned jar in one compiled
pass (``read_small``; compressed sections are then decompressed in Python, as
``open_source`` does); anything else, and any damage, goes to ``open_source``, which then
names the fault. ``inspect`` and ``audit`` read a path's or
bytes' header in one compiled call (``read_info``; ``read_head`` is the compiled
``read_header``), whose twin is the Python ``read_header`` of a file object. So the front may step aside for any file, but must
never accept one its twin refuses, nor read one differently - nor read the same jar
differently from a file and from memory.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skjar
from skjar import _compiled
from skjar.errors import CorruptFileError, NotASkjarFileError, SkjarError
from skjar.format import pagein
from skjar.format.header import declared_names
from skjar.format.reader import (
    OWN_ALLOCATION,
    SMALL_SPEC,
    FileRegion,
    Section,
    _read_header_file,
    open_source,
    read_header,
    read_small,
    stream_source,
)
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
        # Sections of 256 KiB or more (each read into an allocation of its own), two of
        # them adjacent, between and after small ones; and a tree that large itself.
        "large sections": {"small": np.arange(5.0), "big": np.arange(40_001.0),
                           "bigger": np.ones(70_001, np.int32), "tail": np.arange(3)},
        "large tree": [f"word{i}" for i in range(40_000)],
    }


MODELS = _models()


# How a path is loaded: read and verified in full (mmap=False), or mapped (mmap=True)
# with its structure verified (the default) or all of it.
READ = (False, "full")
MODES = [READ, (True, "structure"), (True, "full")]


def both(
    path: Path, mode: tuple[bool, str] = READ, keys: list[bytes] | None = None
) -> tuple[Any, Any]:
    """The front's answer, and the twin's (its tree, buffers and names, or its error);
    with ``keys``, for a load that requires a signature by one of them."""
    mapped, verify = mode
    fast = _front(path, keys, mmap=mapped, verify=verify)
    try:
        raw = open_source(path, mmap=mapped, admit=declared_names, verify=verify, keys=keys)
        twin: Any = (bytes(raw.tree), [b.tobytes() for b in raw.buffers], raw.declared)
    except SkjarError as exc:
        twin = _error(exc)
    return fast, twin


def _front(source: Any, keys: list[bytes] | None = None, **kwargs: Any) -> Any:
    """read_small's answer, or the error it raised: a compressed jar's sections are
    decompressed after the front's checks, and a signature checked, and a fault found
    there is raised."""
    try:
        return _plain(read_small(source, declared_names, keys=keys, **kwargs))
    except SkjarError as exc:
        return _error(exc)


class Refused(NamedTuple):
    """An error, comparable: the front must raise exactly what its twin raises."""

    kind: type
    message: str


def _error(exc: SkjarError) -> Refused:
    return Refused(type(exc), str(exc))


def agree(path: Path, where: Any, keys: list[bytes] | None = None) -> None:
    """In every mode, the front steps aside, or reads exactly what its twin reads from a
    jar the twin accepts, or refuses it exactly as the twin does (only a compressed
    section's or a signature's fault, found once the front has checked the rest, is
    raised); and the same bytes in memory are taken or left exactly as the file is, and
    read alike. ``keys``: as in ``both``."""
    for mode in MODES:
        fast, twin = both(path, mode, keys)
        assert fast is None or fast == twin, (where, mode)
        if mode == READ:
            for form in in_memory(path):
                assert _front(form, keys) == fast, (where, type(form))
            for offset in (0, 5):
                assert _from_file_object(path, offset, keys) == fast, (where, offset)
                assert _from_bytesio(path, offset, keys) == fast, (where, offset)


def in_memory(path: Path) -> list[Any]:
    """The jar at ``path`` as each bytes-like object ``loads`` takes."""
    data = path.read_bytes()
    return [data, bytearray(data), memoryview(data), memoryview(b"??" + data + b"?")[2:-1]]


def _from_file_object(path: Path, offset: int, keys: list[bytes] | None = None) -> Any:
    """read_small of the jar at ``path`` through a plain file object, the jar ``offset``
    bytes into its file: the stream is left at the jar's end if the front reads it, and
    where it stood if the front leaves it or refuses it."""
    data = path.read_bytes()
    held = path.with_name(f"{path.name}.at{offset}")
    held.write_bytes(b"\0" * offset + data)
    with open(held, "rb") as f:
        f.seek(offset)
        region = stream_source(f)
        assert type(region) is FileRegion
        got = _front(region, keys)
        read = got is not None and not isinstance(got, Refused)
        assert f.tell() == (offset + len(data) if read else offset)
    return got


def _from_bytesio(path: Path, offset: int, keys: list[bytes] | None = None) -> Any:
    """read_small of the jar at ``path`` in a BytesIO, ``offset`` bytes into it: its own
    buffer's bytes, the stream moved to the jar's end as if read, and free to grow."""
    data = path.read_bytes()
    stream = io.BytesIO(b"\0" * offset + data)
    stream.seek(offset)
    view = stream_source(stream)
    assert type(view) is memoryview and stream.tell() == offset + len(data)
    got = _front(view, keys)
    stream.write(b"grows")
    return got


def _plain(small: Any) -> Any:
    return small if small is None else (bytes(small[0]), [bytes(b) for b in small[1]], small[2])


def head_both(path: Path) -> tuple[Any, Any]:
    """read_head's answer, and its twin's (read_header of a file object, or its error),
    in read_head's shape. read_head answers the same for the jar's bytes in memory, and
    read_info (inspect's and audit's compiled read) takes exactly the jars it takes."""
    assert _compiled.speedups is not None
    fast = _compiled.speedups.read_head(str(path), Section, SMALL_SPEC)
    if path.is_file():
        for form in in_memory(path):
            assert _compiled.speedups.read_head(form, Section, SMALL_SPEC) == fast
    try:
        with open(path, "rb") as f:
            view = _read_header_file(f)
        layout = view.layout
        twin: Any = (view.version, view.header, layout.tree, layout.buffers, layout.data_end,
                     view.size, view.flags)
    except SkjarError as exc:
        twin = exc
    _same_info(path, fast)
    return fast, twin


def _same_info(path: Path, fast: Any) -> None:
    """read_info takes what read_head takes, with its header, and gives the Info fields
    and names the Python reader alone gives (names left to it only when not remembered
    yet, or outside the defaults); from memory as from the file."""
    from skjar import api

    assert _compiled.speedups is not None
    forms = [str(path), *in_memory(path)] if path.is_file() else [str(path)]
    for form in forms:
        got = [_compiled.speedups.read_info(form, SMALL_SPEC, api._DEFAULT_KNOWN,
                                            api._DEFAULT_INFOS, describe) for describe in (True, False)]
        if fast is None:
            assert got == [None, None]
            continue
        assert got[0] is not None and got[1] is not None
        (header, names, fields), (unbuilt, names_unbuilt, no_fields) = got
        assert header == fast[1] and names_unbuilt == names and no_fields is None
        assert {k: unbuilt[k] for k in ("environment", "names", "layout")} == {
            k: header[k] for k in ("environment", "names", "layout")}
        fast_helpers, _compiled.speedups = _compiled.speedups, None
        try:
            expected: Any = api._info_fields(path)
        except SkjarError as exc:  # malformed names: inspect's Python step refuses them
            expected = exc
        finally:
            _compiled.speedups = fast_helpers
        if isinstance(expected, SkjarError):
            assert names is None, expected
            with pytest.raises(type(expected)):
                skjar.inspect(form)
            continue
        if names is None:
            assert fields["names"] is None and fields["version_skew"] is None
            fields = {**fields, "names": expected["names"], "version_skew": expected["version_skew"]}
        else:
            assert names == fields["names"] and fields["version_skew"] == {}
        assert fields == expected


def _same_head(fast: Any, twin: Any, where: Any) -> None:
    assert fast is None or fast == twin, where
    assert fast is None or not isinstance(twin, Exception), where
    if fast is not None:  # the sections are header.Section, as the twin's
        assert type(fast[2]) is Section and all(type(b) is Section for b in fast[3])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_headers_take_the_compiled_path(name: str, tmp_path: Path) -> None:
    path = tmp_path / "m.skjar"
    skjar.dump(MODELS[name], path)
    fast, twin = head_both(path)
    assert fast is not None
    _same_head(fast, twin, name)
    assert read_header(path) == read_header(path.read_bytes())


def _make(make: str, path: Path) -> None:
    """At ``path``, a jar the front steps aside for, or something that is no jar."""
    if make == "chunked":  # a section compressed in chunks: the page-in helpers' size
        skjar.dump(np.zeros(5 << 20, np.uint8), path, compress="zstd")
    elif make == "large file":  # read with the page-in helpers instead
        skjar.dump(np.zeros(pagein.MIN_TOTAL, np.uint8), path)
    elif make == "not a jar":
        path.write_bytes(b"\x80\x05" + bytes(100))
    elif make == "directory":
        path.mkdir()
    # "missing": nothing at all


@pytest.mark.parametrize("make", ["chunked", "not a jar", "directory", "missing"])
def test_read_head_steps_aside(make: str, tmp_path: Path) -> None:
    path = tmp_path / "m.skjar"
    _make(make, path)
    fast, twin = head_both(path) if make not in ("directory", "missing") else (None, None)
    assert _compiled.speedups is not None
    assert _compiled.speedups.read_head(str(path), Section, SMALL_SPEC) is None
    if make == "chunked":
        assert fast is None and not isinstance(twin, Exception)
        assert skjar.inspect(path).compression == {"codec": "zstd", "level": 3}


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_compressed_and_signed_headers_take_the_compiled_path(
    name: str, codec: str, signed: bool, tmp_path: Path
) -> None:
    """A compressed jar's header and layout - packs, compressed sizes - and a signed jar's
    flag are read in the same compiled call, into the same Sections and flags as the
    twin's."""
    path = tmp_path / "m.skjar"
    skjar.dump(MODELS[name], path, compress=codec, sign_with=_KEY if signed else None)
    fast, twin = head_both(path)
    assert fast is not None and fast[-1] == (1 if signed else 0)
    _same_head(fast, twin, name)
    assert read_header(path) == read_header(path.read_bytes())
    info = skjar.inspect(path)
    assert info.compression == {"codec": codec, "level": 3 if codec == "zstd" else 0}
    assert info.signed == signed and info.sizes["file"] == path.stat().st_size


_KEY = skjar.generate_key()


def test_a_header_longer_than_the_first_read(tmp_path: Path) -> None:
    """The front reads 4 KiB first; a longer header needs a second read, in both calls."""
    path = tmp_path / "m.skjar"
    model = MODELS["logistic"]
    skjar.dump(model, path, metadata={"notes": "x" * 10_000})
    fast, twin = head_both(path)
    assert fast is not None and fast[1]["metadata"]["notes"] == "x" * 10_000
    _same_head(fast, twin, "long")
    small, open_twin = both(path)
    assert small is not None and small == open_twin
    data = path.read_bytes()
    for at in (4095, 4096, 4097, 8000):  # around and past the first read
        damaged = bytearray(data)
        damaged[at] ^= 4
        path.write_bytes(damaged)
        assert both(path)[0] is None, at
        agree(path, at)
        _same_head(*head_both(path), at)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_small_jars_take_the_compiled_path(name: str, tmp_path: Path) -> None:
    path = tmp_path / "m.skjar"
    skjar.dump(MODELS[name], path)
    for mode in MODES:
        fast, twin = both(path, mode)
        assert fast is not None and fast == twin, mode
    for source in (path, *in_memory(path)):
        tree, buffers, _ = read_small(source, declared_names)  # type: ignore[misc]
        for part in buffers:  # 64-byte aligned as in the file, writable, as the twin's
            assert type(part) is memoryview and part.format == "B" and not part.readonly
            assert np.frombuffer(part, np.uint8).ctypes.data % 64 == 0
        # A large section has an allocation of its own, shared with no other section, so
        # that it is freed as soon as its consumer is done with it (as read_body does).
        # Bytes in memory are copied, never viewed: the caller's bytes stay the caller's.
        owners = [part.obj for part in (tree, *buffers)]
        assert all(type(owner) is bytearray and owner is not source for owner in owners)
        for owner, part in zip(owners, (tree, *buffers)):
            if part.nbytes >= OWN_ALLOCATION:
                assert sum(o is owner for o in owners) == 1
    for loaded in (skjar.load(path), skjar.loads(path.read_bytes())):
        if hasattr(loaded, "predict"):
            X = np.random.RandomState(1).rand(5, 3)
            assert (loaded.predict(X) == MODELS[name].predict(X)).all()


def test_a_model_loaded_from_a_bytearray_owns_its_arrays() -> None:
    """loads() through the front copies: overwriting the bytearray after the load changes
    nothing in the model (and its arrays are writable, as pickle's are)."""
    data = bytearray(skjar.dumps(MODELS["plain"]))
    assert read_small(data, declared_names) is not None
    loaded = skjar.loads(data)
    data[:] = bytes(len(data))
    assert loaded["arrays"][0].tolist() == list(np.arange(40.0))
    loaded["arrays"][1][0, 0] = 7
    assert loaded["arrays"][1].sum() == 15


@pytest.mark.parametrize(
    "make",
    ["chunked", "large file", "not a jar", "directory", "missing"],
)
def test_the_front_steps_aside(make: str, tmp_path: Path) -> None:
    path = tmp_path / "m.skjar"
    _make(make, path)
    assert read_small(path, declared_names) is None
    if path.is_file():  # in memory, the same jar is left to open_source alike
        assert all(read_small(form, declared_names) is None for form in in_memory(path))
        assert all(read_small(form, declared_names, mmap=True) is None for form in in_memory(path))
    if make in ("chunked", "large file"):
        assert not isinstance(both(path)[1], Refused)  # the twin reads it
    if make == "chunked":
        assert len(path.read_bytes()) < 100_000  # small, and left for its chunks alone
    for mode in MODES[1:]:  # mapped: a jar of any size is taken, nothing else
        fast, twin = both(path, mode) if make not in ("directory", "missing") else (None, None)
        assert (fast is not None) == (make == "large file") and (fast is None or fast == twin)
        assert read_small(path, declared_names, mmap=True, verify=mode[1]) is None or (
            make == "large file"
        )


def test_file_objects_are_taken_by_the_front(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A plain file object (``open(path, "rb")``, buffered or not, at any offset) is read
    by the front through its descriptor, a BytesIO from its own buffer; any file object
    under STREAM_WHOLE and a pipe are read whole and their bytes taken by the front.
    Each is left at its end, as the Python reader leaves it. A larger file object of
    another kind is left unread to the Python reader, which reads it straight into its
    sections."""
    import tempfile

    from skjar import api
    from skjar.format.reader import STREAM_WHOLE
    from test_speedups import _Counting

    small, large = tmp_path / "small.skjar", tmp_path / "large.skjar"
    skjar.dump(MODELS["knn"], small)
    skjar.dump(MODELS["large sections"], large)
    data, big = small.read_bytes(), large.read_bytes()
    assert len(data) < STREAM_WHOLE <= len(big)
    embedded = tmp_path / "embedded.bin"
    embedded.write_bytes(b"not the jar" + big)

    def at(f: Any, offset: int) -> Any:
        f.seek(offset)
        return f

    temporary = tempfile.TemporaryFile()  # noqa: SIM115 (an io.BufferedRandom)
    temporary.write(big)
    r, w = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(w, big), os.close(w)))
    writer.start()  # (the jar is larger than a pipe's buffer)
    written = io.BytesIO(b"not the jar")  # a buffer grown by writes, not made from bytes
    written.seek(0, os.SEEK_END)
    skjar.dump(MODELS["large sections"], written)
    sources = [
        io.BytesIO(data), at(io.BytesIO(b"not the jar" + data), 11), io.BytesIO(big),
        at(written, 11),
        open(small, "rb"), at(open(embedded, "rb"), 11),  # noqa: SIM115
        at(open(embedded, "rb", buffering=0), 11), at(temporary, 0),  # noqa: SIM115
        os.fdopen(r, "rb"),
    ]

    def python_reader(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the Python reader was used")

    counting = _Counting(_compiled.speedups)
    monkeypatch.setattr(_compiled, "speedups", counting)
    monkeypatch.setattr(api, "open_source", python_reader)
    for source in sources:
        with source:
            loaded = skjar.load(source)
            assert source.read() == b""  # read to its end, as before
            if isinstance(source, io.BytesIO):  # nothing holds its buffer: it grows
                source.write(b"more")
        assert type(loaded) is type(MODELS["knn"]) or (loaded["bigger"] == 1).all()
    writer.join()
    assert counting.calls.get("read_small") == len(sources)
    monkeypatch.undo()

    class Wrapped(io.BufferedReader):  # not a plain file: its read() may be anything
        pass

    for source in (Wrapped(io.FileIO(large)), io.BufferedReader(io.BytesIO(big))):
        with source:
            source.seek(5)
            assert stream_source(source) is None and source.tell() == 5  # nothing read
            source.seek(0)
            assert (skjar.load(source)["bigger"] == 1).all()


@pytest.mark.parametrize("kind", ["file", "BytesIO"])
def test_a_jar_in_a_file_object_is_read_from_where_it_stood(
    kind: str, tmp_path: Path
) -> None:
    """A compressed, signed or damaged jar in a plain file object or a BytesIO, at an
    offset: read by the front (compressed, signed), or by the Python reader, which names
    a damaged one's fault, from where the stream stood, and the stream left at the jar's
    end. An untrusted jar is refused by the front itself, and a BytesIO is left free to
    grow after every one."""
    import jarcraft
    from jarcraft import Ext, name_entry
    from skjar.codec import nodes

    key = skjar.generate_key()
    value = MODELS["large sections"]
    jars = {
        "zstd": skjar.dumps(value, compress="zstd"),
        "signed": skjar.dumps(value, sign_with=key),
        "damaged": skjar.dumps(value)[:-1] + b"?",
        "untrusted": jarcraft.build(Ext(nodes.REF, "os.system"),
                                    [name_entry("os.system", "os", ("value",))]),
    }
    for what, jar in jars.items():
        path = tmp_path / f"{what}.bin"
        path.write_bytes(b"HEAD" + jar)
        with open(path, "rb") if kind == "file" else io.BytesIO(b"HEAD" + jar) as f:
            f.seek(4)
            if what in ("damaged", "untrusted"):
                error = CorruptFileError if what == "damaged" else skjar.UntrustedTypeError
                with pytest.raises(error, match=r"trailer is missing|os\.system"):
                    skjar.load(f)
            else:
                loaded = skjar.load(f)
                assert f.tell() == 4 + len(jar)
                np.testing.assert_array_equal(loaded["big"], value["big"])
            if kind == "BytesIO":
                f.seek(0, os.SEEK_END)
                f.write(b"grows")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="a device file: POSIX")
def test_a_device_opened_as_a_file_object_is_not_read_forever() -> None:
    """/dev/zero says it holds 0 bytes: it is read for that much, and refused as empty."""
    with open("/dev/zero", "rb") as f, pytest.raises(NotASkjarFileError, match="empty"):
        skjar.load(f)


# -- compressed jars: the front checks, reader.py decompresses --------------------------
CODECS = ["zstd", "lz4"]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_compressed_jars_take_the_compiled_path(
    name: str, codec: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Compressed sections, packs among them, are read and verified by the front and
    decompressed as open_source decompresses them, from a path, bytes and file objects;
    mapped (mmap=True) the front leaves them, as before. Each section comes out
    64-byte aligned, writable, and the model predicts as it did."""
    from skjar import api

    path = tmp_path / "m.skjar"
    skjar.dump(MODELS[name], path, compress=codec)
    fast, twin = both(path)
    assert fast is not None and fast == twin
    agree(path, name)
    assert all(_front(path, mmap=True, verify=v) is None for v in ("structure", "full")) or (
        name == "string"  # nothing in it compresses: it is stored raw
    )
    _, buffers, _ = read_small(path, declared_names)  # type: ignore[misc]
    for part in buffers:
        view = memoryview(part)
        assert not view.readonly and np.frombuffer(view, np.uint8).ctypes.data % 64 == 0

    def python_reader(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the Python reader was used")

    monkeypatch.setattr(api, "open_source", python_reader)
    with open(path, "rb") as f:
        loaded = [skjar.load(path), skjar.loads(path.read_bytes()), skjar.load(f),
                  skjar.load(io.BytesIO(path.read_bytes()))]
    for model in loaded:
        if hasattr(model, "predict"):
            X = np.random.RandomState(1).rand(5, 3)
            assert (model.predict(X) == MODELS[name].predict(X)).all()
        else:
            assert repr(model) == repr(MODELS[name])


@pytest.mark.parametrize(("name", "codec"), [("knn", "zstd"), ("plain", "lz4")])
def test_every_flipped_bit_of_a_compressed_jar_is_left_or_refused_alike(
    name: str, codec: str, tmp_path: Path
) -> None:
    """One bit flipped anywhere in a compressed jar (with a pack, a compressed tree, a
    raw tree): the front never accepts it, and refuses it only as its twin does."""
    data = skjar.dumps(MODELS[name], compress=codec)
    _flip_each(data, range(len(data)), tmp_path / "m.skjar")


def _recrafted(data: bytes, edit: Any, version: tuple[int, int] | None = None) -> bytes:
    """The jar ``data`` rebuilt around its stored sections after ``edit(header,
    sections)``, with valid digests: what a crafted file can claim."""
    import json
    import struct

    import jarcraft

    header_length = struct.unpack_from("<Q", data, 16)[0]
    header = json.loads(data[24 : 24 + header_length])
    sections = jarcraft.stored_sections(data)
    edit(header, sections)
    stamped = struct.unpack_from("<HH", data, 8)
    return jarcraft.assemble(header, sections, version=version or stamped)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(write_content_size=True).compress(data)


def _unzstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)


def _set(where: str, value: Any) -> Any:
    """An edit of the knn jar's layout: ``where`` is "tree.size", "pack" (its buffer entry)
    or "pack.N" (item N of it)."""
    def edit(header: dict[str, Any], sections: list[bytes]) -> None:
        layout = header["layout"]
        if where == "tree.size":
            layout["tree"]["size"] = value(layout["tree"]) if callable(value) else value
        elif where == "pack":
            layout["buffers"][0] = value
        else:
            layout["buffers"][0][int(where.split(".")[1])] = value
    return edit


def _with_sections(change: Any) -> Any:
    def edit(header: dict[str, Any], sections: list[bytes]) -> None:
        sections[:] = change(list(sections))
        layout = header["layout"]
        layout["tree"]["length"] = len(sections[0])
        for entry, stored in zip(layout["buffers"], sections[1:]):
            entry[0] = len(stored)
    return edit


def _pack_padding(sections: list[bytes]) -> list[bytes]:
    pack = bytearray(_unzstd(sections[1]))
    pack[490] = 1  # between the first member (480 bytes) and the second (at 512)
    return [sections[0], _zstd(bytes(pack))]


def _uncompressed_pack(header: dict[str, Any], sections: list[bytes]) -> None:
    sections[1] = _unzstd(sections[1])
    header["layout"]["buffers"][0][:3] = [len(sections[1]), len(sections[1]), "none"]


# What a crafted compressed jar (knn's under zstd: a compressed tree and one pack of
# three buffers) claims, and how it must be refused: by the front stepping aside and
# the twin naming it (None), or by both alike once the front has checked the structure
# (the codec's own checks run after the trust check, in either reader).
CRAFTED = {
    "frame size != header size": (_set("tree.size", lambda t: t["size"] + 64), "frame declares"),
    "garbage stored": (_with_sections(lambda s: [bytes(len(s[0])), *s[1:]]), "does not decompress"),
    "junk after the frame": (_with_sections(lambda s: [s[0] + b"junk" * 4, *s[1:]]),
                             "does not decompress"),
    "two frames": (_with_sections(lambda s: [s[0] + s[0], *s[1:]]), "followed by extra data"),
    "non-zero pack padding": (_with_sections(_pack_padding), "padding inside the pack"),
    "a bomb": (_set("tree.size", lambda t: t["length"] * (1 << 16) + (1 << 16) + 1), None),
    "negative size": (_set("tree.size", -1), None),
    "size as text": (_set("tree.size", "750"), None),
    "size as a float": (_set("tree.size", 750.0), None),
    "unknown codec": (_set("pack.2", "zstD"), None),
    "members short": (_set("pack.3", [480, 1440, 416]), None),
    "members long": (_set("pack.3", [480, 1440, 544]), None),
    "one member": (_set("pack.3", [2464]), None),
    "member a bool": (_set("pack.3", [480, 1440, True, 416]), None),
    "member negative": (_set("pack.3", [480, -1440, 480]), None),
    "member past the end": (_set("pack.3", [4000, 0]), None),
    "members not a list": (_set("pack.3", {"chunk": 65536, "lengths": [1, 2]}), None),
    "five items": (lambda h, s: h["layout"]["buffers"][0].append([]), None),
    "uncompressed pack": (_uncompressed_pack, None),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_compressed_jars_are_refused_alike(case: str, tmp_path: Path) -> None:
    """Digests valid, the layout or the stored bytes lying: every claim the twin refuses
    before reading the body, the front leaves to it; a fault found in decompressing is
    raised by both, with the same message."""
    edit, raised = CRAFTED[case]
    data = _recrafted(skjar.dumps(MODELS["knn"], compress="zstd"), edit)
    path = tmp_path / "m.skjar"
    path.write_bytes(data)
    fast, twin = both(path)
    assert isinstance(twin, Refused) and twin.kind is CorruptFileError, twin
    if raised is None:
        assert fast is None
    else:
        assert fast == twin and raised in twin.message
    agree(path, case)
    _same_head(*head_both(path), case)
    with pytest.raises(CorruptFileError):
        skjar.load(path)


@pytest.mark.parametrize("version", [(1, 1), (1, 2)])
def test_a_pack_or_chunk_table_the_version_does_not_hold_is_left_to_the_twin(
    version: tuple[int, int], tmp_path: Path
) -> None:
    """Packs came in format 1.2 and chunk tables in 1.3: a 1.1 jar with a pack, or a 1.2
    jar with a chunk table, is malformed, and the front leaves it to the twin to say so."""
    data = skjar.dumps(MODELS["knn"], compress="zstd")
    if version == (1, 2):
        edit = _set("pack.3", {"chunk": 65536, "lengths": [805, 806]})
    else:
        def edit(header: dict[str, Any], sections: list[bytes]) -> None:
            pass
    path = tmp_path / "m.skjar"
    path.write_bytes(_recrafted(data, edit, version))
    fast, twin = both(path)
    assert fast is None and isinstance(twin, Refused) and "buffer entry 0" in twin.message
    agree(path, version)
    assert head_both(path)[0] is None


def test_a_compressed_jar_is_judged_for_trust_before_it_is_decompressed(tmp_path: Path) -> None:
    """An untrusted name in a jar whose compressed tree is garbage: the trust check comes
    first, in the front as in the twin - nothing is decompressed for an untrusted jar."""
    import jarcraft
    from jarcraft import Ext, name_entry
    from skjar.codec import nodes

    tree = jarcraft.pack_tree(Ext(nodes.REF, "os.system"))
    names = [name_entry("os.system", "os", ("value",))]
    for stored in (None, bytes(40)):
        data = jarcraft.compressed(tree, "zstd", stored=stored, names=names)
        path = tmp_path / "m.skjar"
        path.write_bytes(data)
        if stored is None:  # a well-formed one is the front's to read
            assert read_small(path, declared_names) is not None
        for source in (path, data, io.BytesIO(data)):
            with pytest.raises(skjar.UntrustedTypeError, match=r"os\.system"):
                skjar.load(source)
        with pytest.raises(skjar.UntrustedTypeError):
            open_source(path, mmap=False, admit=lambda h: skjar.api._DEFAULT_POLICY.check(
                (n, m, u) for n, (m, us) in declared_names(h).items() for u in us))


# -- signed jars: the front checks the structure, signing.py the signature -------------
@pytest.fixture(scope="module")
def signer() -> tuple[Any, list[bytes]]:
    """A private key, and the raw public keys a load that trusts it passes."""
    from skjar.signing import raw_public

    key = skjar.generate_key()
    return key, [raw_public(key.public_key())]


@pytest.mark.parametrize("name", ["knn", "plain", "large sections"])
def test_signed_jars_take_the_compiled_path(
    name: str, signer: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A signed jar, raw or compressed, is read by the front whether the load requires
    its signature (which is checked) or not (which is read past, as open_source does);
    mapped with a signature required, the front leaves it. Loads by path, bytes and file
    objects need no Python reader, and a load requiring another key is refused."""
    from skjar import api

    key, keys = signer
    for compress in (None, "zstd"):
        path = tmp_path / f"{compress}.skjar"
        skjar.dump(MODELS[name], path, sign_with=key, compress=compress)
        for required in (keys, None):
            fast, twin = both(path, READ, required)
            assert fast is not None and fast == twin, (compress, required)
            agree(path, compress, required)
        assert _front(path, keys, mmap=True) is None
    monkeypatch.setattr(api, "open_source", lambda *a, **k: pytest.fail("the Python reader"))
    public = key.public_key()
    with open(path, "rb") as f:
        loaded = [skjar.load(path, verify_with=[public]), skjar.loads(path.read_bytes()),
                  skjar.load(f, verify_with=[public])]
    for model in loaded:
        assert repr(model) == repr(MODELS[name]) or hasattr(model, "predict")
    with pytest.raises(skjar.SignatureError, match="not among"):
        skjar.load(path, verify_with=[skjar.generate_key().public_key()])


def test_every_flipped_bit_of_a_signed_jar_is_left_to_the_twin(
    signer: Any, tmp_path: Path
) -> None:
    """One bit flipped anywhere in a signed jar - its flag, its block, its trailer - with
    the signature required or not: the front never accepts it, and its header is read
    as the twin reads it, or left to it."""
    key, keys = signer
    data = skjar.dumps(MODELS["logistic"], sign_with=key)
    path = tmp_path / "m.skjar"
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 1 << (at % 8)
        path.write_bytes(damaged)
        for required in (keys, None):
            assert both(path, READ, required)[0] is None, at
        agree(path, at, keys)
        _same_head(*head_both(path), at)


def _signed_crafted(data: bytes, how: str) -> bytes:
    """A signed jar made to lie in one way, its digests made valid again (jarcraft's
    redigest: the full digest covers the signature block)."""
    import struct

    import jarcraft
    from skjar.format.spec import SIGNATURE_SIZE, TRAILER_SIZE

    raw = bytearray(data)
    end = len(raw) - TRAILER_SIZE
    if how == "other signer":
        block = bytearray(raw[end - SIGNATURE_SIZE : end])
        block[:32] = bytes(range(32))  # a key the load does not trust
        raw[end - SIGNATURE_SIZE : end] = block
    elif how == "modified after signing":
        raw[end - SIGNATURE_SIZE - 1] ^= 1  # the last byte of the last section
    elif how == "signature damaged":
        raw[end - 1] ^= 1
    elif how == "flag without a block":
        raw = raw[: end - SIGNATURE_SIZE] + raw[end:]
    elif how == "block without the flag":
        struct.pack_into("<I", raw, 12, 0)
    elif how == "unknown flag":
        struct.pack_into("<I", raw, 12, 3)
    elif how == "stripped":
        raw = raw[: end - SIGNATURE_SIZE] + raw[end:]
        struct.pack_into("<I", raw, 12, 0)
    return jarcraft.redigest(raw)


SIGNED_CRAFTED = {  # how -> the twin's refusal, with the signature required
    "other signer": (skjar.SignatureError, "not among"),
    "modified after signing": (skjar.SignatureError, "does not match"),
    "signature damaged": (skjar.SignatureError, "does not match"),
    "flag without a block": (CorruptFileError, "describes"),
    "block without the flag": (skjar.SignatureError, "not signed"),
    "unknown flag": (SkjarError, ""),
    "stripped": (skjar.SignatureError, "not signed"),
}


@pytest.mark.parametrize("how", sorted(SIGNED_CRAFTED))
def test_crafted_signed_jars_are_refused_alike(how: str, signer: Any, tmp_path: Path) -> None:
    """Digests valid, the signature or the flag lying: a signature that does not verify
    is refused by the front exactly as by its twin (after the digests, before the trust
    check); anything wrong in the structure is left to the twin. Without a signature
    required, a jar whose signature is bad still loads alike either way."""
    key, keys = signer
    data = _signed_crafted(skjar.dumps(MODELS["knn"], sign_with=key, compress="zstd"), how)
    path = tmp_path / "m.skjar"
    path.write_bytes(data)
    fast, twin = both(path, READ, keys)
    kind, words = SIGNED_CRAFTED[how]
    assert isinstance(twin, Refused) and issubclass(twin.kind, kind) and words in twin.message
    assert fast is None or fast == twin
    assert (fast is not None) == (twin.kind is skjar.SignatureError and how not in (
        "block without the flag", "stripped"))
    agree(path, how, keys)
    agree(path, how)
    with pytest.raises(kind):
        skjar.load(path, verify_with=[key.public_key()])


def test_a_signed_jar_is_checked_for_its_signature_before_its_names(
    signer: Any, tmp_path: Path
) -> None:
    """An untrusted name in a jar whose signature does not verify: the signature is
    refused first, by the front as by its twin; with a valid signature, the name."""
    import jarcraft
    from jarcraft import Ext, name_entry
    from skjar.codec import nodes
    from skjar.format.spec import FLAG_SIGNED, SIGNATURE_SIZE

    key, _ = signer
    unsigned = jarcraft.build(Ext(nodes.REF, "os.system"),
                              [name_entry("os.system", "os", ("value",))])
    path = tmp_path / "u.skjar"
    path.write_bytes(unsigned)
    skjar.sign(path, key)
    signed = path.read_bytes()
    forged = _signed_crafted(signed, "signature damaged")
    assert signed[12] & FLAG_SIGNED and len(signed) == len(unsigned) + SIGNATURE_SIZE
    for data, error in ((signed, skjar.UntrustedTypeError), (forged, skjar.SignatureError)):
        for source in (data, io.BytesIO(data)):
            with pytest.raises(error):
                skjar.load(source, verify_with=[key.public_key()])


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
    _flip_each(data, range(len(data)), tmp_path / "m.skjar")


def _flip_each(data: bytes, spots: Any, path: Path) -> None:
    """Flip one bit at each offset in ``spots``, in turn: the front steps aside, or reads
    exactly what the twin reads from a jar the twin accepts."""
    for at in spots:
        damaged = bytearray(data)
        damaged[at] ^= 1 << (at % 8)
        path.write_bytes(damaged)
        agree(path, at)
        _same_head(*head_both(path), at)


def test_flipped_bits_in_a_jar_with_large_sections_are_left_to_the_twin(tmp_path: Path) -> None:
    """The header, every section's edges, the padding and the trailer of a jar read in
    pieces, and bits at random elsewhere: the front never accepts a damaged one."""
    data = skjar.dumps(MODELS["large sections"])
    raw = open_source(data, mmap=False, admit=declared_names)
    edges = [raw.layout.tree.offset, *(b.offset for b in raw.layout.buffers)]
    edges += [raw.layout.tree.offset + raw.layout.tree.length]
    edges += [b.offset + b.length for b in raw.layout.buffers]
    spots = set(range(raw.layout.tree.offset + 64)) | set(range(len(data) - 96, len(data)))
    for edge in edges:
        spots |= set(range(max(edge - 72, 0), min(edge + 72, len(data))))
    spots |= set(np.random.default_rng(3).integers(0, len(data), 1_500).tolist())
    _flip_each(data, sorted(spots), tmp_path / "m.skjar")


@pytest.mark.parametrize("name", ["plain", "large sections"])
def test_padding_is_checked_behind_valid_digests(name: str, tmp_path: Path) -> None:
    """A non-zero byte in every gap between sections in turn, with both digests
    recomputed over it (as a crafted file would have them): refused by the twin, left to
    it by the front."""
    from xxhash import xxh3_128_digest

    from skjar.format.reader import parse_preamble
    from skjar.format.spec import DIGEST_SIZE, PREAMBLE_SIZE, TRAILER_SIZE

    data = skjar.dumps(MODELS[name])
    layout = open_source(data, mmap=False, admit=declared_names).layout
    sections = [layout.tree, *layout.buffers]
    tree_end = layout.tree.offset + layout.tree.length
    end = len(data) - TRAILER_SIZE
    pos, gaps = PREAMBLE_SIZE + parse_preamble(data[:PREAMBLE_SIZE])[2], []
    for section in sections:
        if section.offset > pos:
            gaps.append(section.offset - 1)  # the last padding byte before the section
        pos = section.offset + section.length
    assert len(gaps) >= 2
    path = tmp_path / "m.skjar"
    for at in gaps:
        crafted = bytearray(data)
        crafted[at] = 1
        crafted[end : end + 2 * DIGEST_SIZE] = (
            xxh3_128_digest(bytes(crafted[:tree_end])) + xxh3_128_digest(bytes(crafted[:end]))
        )
        path.write_bytes(crafted)
        fast, twin = both(path)
        assert fast is None and isinstance(twin, Refused), at
        assert twin.kind is CorruptFileError and "padding" in twin.message
        agree(path, at)  # mapped, the structure check passes it: the same either way


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
    agree(path, how)
    _same_head(*head_both(path), how)


# -- a default load's trust and versions, judged in C (read_small's `known`) ----------
def _admit_in_python(header: dict[str, Any]) -> tuple[Any, str | None]:
    """What skjar.load's admit does for a load trusting only the defaults."""
    from skjar.metadata import check_versions
    from skjar.trust import TrustPolicy

    declared = declared_names(header)
    TrustPolicy().check((n, m, u) for n, (m, uses) in declared.items() for u in uses)
    return declared, check_versions(header["environment"], False)


def _known() -> tuple[Any, Any]:
    from skjar.metadata import SKEW_MODULES
    from skjar.trust import DEFAULT_USES

    return DEFAULT_USES, SKEW_MODULES


def test_every_default_name_is_well_formed() -> None:
    """The compiled admit takes a name the defaults trust under its module as
    well-formed, without declared_names' identifier checks: so each must pass them."""
    from jarcraft import minimal_header, name_entry
    from skjar.trust import DEFAULT_USES

    entries = [name_entry(n, m, sorted(uses)) for n, (m, uses) in DEFAULT_USES.items()]
    assert len(entries) > 300
    declared = declared_names({**minimal_header(), "names": entries})
    assert declared == {n: (m, frozenset(u)) for n, (m, u) in DEFAULT_USES.items()}


def _name_entries() -> Any:
    """Header name entries: trusted ones as the writer makes them, and ones with each
    part of an entry changed (module, uses, types, duplicates, extra keys)."""
    from jarcraft import name_entry
    from skjar.trust import DEFAULT_USES

    defaults = sorted(DEFAULT_USES.items())
    trusted = st.sampled_from(defaults).map(lambda kv: name_entry(kv[0], kv[1][0], kv[1][1]))

    def changed(entry: dict[str, Any], how: str, junk: Any) -> Any:
        entry = dict(entry)
        if how == "module":  # the same dotted text split elsewhere, or another module
            entry["module"] = entry["name"].split(".")[0] if junk else entry["module"] + "x"
        elif how == "uses":
            entry["uses"] = [*entry["uses"], junk if junk else "call"]
        elif how == "no uses":
            entry["uses"] = []
        elif how == "type":
            entry[junk if junk in ("name", "module", "uses") else "name"] = 7
        elif how == "extra key":
            entry["extra"] = junk
        elif how == "not a dict":
            return [entry["name"]]
        elif how == "unknown":
            entry["name"] = entry["module"] + ".NotAThing"
        elif how == "uses not a list":
            entry["uses"] = tuple(entry["uses"])
        elif how == "use repeated":  # the same set of uses: admitted by both
            entry["uses"] = entry["uses"] * 2
        return entry

    hows = ["module", "uses", "no uses", "type", "extra key", "not a dict", "unknown",
            "uses not a list", "use repeated"]
    junk = st.sampled_from(["", "name", "module", "uses", "object", "value", "call", "exec", 0])
    # Mostly trusted entries, so that a fair share of jars is admitted (by C, when all is
    # well) and the compiled answer is compared, not only the refusals.
    return st.one_of(trusted, trusted, trusted, trusted,
                     st.builds(changed, trusted, st.sampled_from(hows), junk))


def _drawn_packages(data: st.DataObject, more: list[str] | None = None) -> tuple[dict[str, Any], str]:
    """This process's package versions, mostly as they are, else one changed: another
    version, missing, not a str (or, among ``more``, an extra package)."""
    from skjar.metadata import here_packages

    packages: dict[str, Any] = dict(here_packages())
    how = data.draw(st.sampled_from(["same", "same", "same", "other", "missing", "not a str",
                                     *(more or [])]))
    package = data.draw(st.sampled_from(sorted(packages)))
    if how == "other":
        packages[package] += ".post1"
    elif how == "missing":
        del packages[package]
    elif how == "not a str":
        packages[package] = 1
    elif how == "extra":
        packages["pandas"] = "0.0"
    return packages, how


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(entries=st.lists(_name_entries(), max_size=6), data=st.data())
def test_the_compiled_admit_agrees_with_python(entries: Any, data: st.DataObject,
                                               tmp_path: Path) -> None:
    """Any names and versions in a jar with valid digests: the compiled admit answers as
    the Python admit would (the same names, no version warning), or leaves it the
    question; it never admits what Python refuses, nor misses a version skew."""
    import jarcraft

    packages, _ = _drawn_packages(data, ["extra"])
    if data.draw(st.integers(0, 4)) == 0:
        entries.append(entries[0] if entries else {"name": 1})  # a duplicate
    header = {**jarcraft.minimal_header(), "names": entries, "environment": {"packages": packages}}
    path = tmp_path / "m.skjar"
    path.write_bytes(jarcraft.build(None, entries, header=header))
    asked: list[Any] = []

    def admit(header: dict[str, Any]) -> Any:
        asked.append(header)
        return declared_names(header)

    try:
        expected: Any = _admit_in_python(jarcraft.decode(path.read_bytes()).header)
    except SkjarError as exc:
        expected = exc
    try:
        got = read_small(path, admit, _known())
    except SkjarError as exc:  # refused: by Python, asked
        assert asked and type(exc) is type(expected) and str(exc) == str(expected)
    else:
        assert got is not None
        if not asked:  # answered in C: only what Python admits silently
            assert not isinstance(expected, Exception), expected
            assert expected == (got[2], None)
    if isinstance(expected, Exception):  # and the load says what Python says
        with pytest.raises(type(expected)) as info:
            skjar.load(path)
        assert str(info.value) == str(expected)


def test_the_compiled_admit_takes_real_models(tmp_path: Path) -> None:
    """What the writer makes is admitted in C (the reason it exists)."""
    path = tmp_path / "m.skjar"
    for model in MODELS.values():
        skjar.dump(model, path)

        def admit(header: dict[str, Any]) -> Any:
            raise AssertionError("admit was asked")

        got = read_small(path, admit, _known())
        assert got is not None and got[2] == _admit_in_python(read_header(path).header)[0]


def test_a_version_not_held_in_a_plain_module_is_left_to_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The compiled admit reads a module's __version__ from its dict, not through
    getattr: a module of another type is left to Python, whose getattr may find
    another version there (here a property saying 0.0.0, which is a version skew)."""
    import types
    import warnings

    import scipy

    from skjar.errors import VersionSkewWarning

    class Odd(types.ModuleType):
        @property  # type: ignore[misc]
        def __version__(self) -> str:
            return "0.0.0"

    path = tmp_path / "m.skjar"
    skjar.dump(MODELS["logistic"], path)
    odd = Odd("scipy")
    odd.__dict__["__version__"] = scipy.__version__  # what a dict lookup would find
    monkeypatch.setitem(sys.modules, "scipy", odd)
    asked: list[Any] = []

    def admit(header: dict[str, Any]) -> Any:
        asked.append(header)
        return declared_names(header)

    assert read_small(path, admit, _known()) is not None and asked
    with pytest.warns(VersionSkewWarning, match="0.0.0"):
        skjar.load(path)
    monkeypatch.setitem(sys.modules, "scipy", scipy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        skjar.load(path)


@pytest.mark.parametrize("mode", MODES)
def test_untrusted_and_skewed_jars_are_judged_alike_on_every_path(
    mode: tuple[bool, str], tmp_path: Path
) -> None:
    """An untrusted name, a malformed one, or other library versions: bytes and a path,
    read or mapped through the compiled front, and a str path with every option left
    alone (load's shortest way), give the Python reader's error or warning (a file
    object's), word for word, and the warning names the caller's line."""
    import warnings

    import jarcraft
    from jarcraft import Ext, name_entry
    from skjar.codec import nodes

    skewed = jarcraft.decode(skjar.dumps(MODELS["logistic"]))
    skewed.header["environment"]["packages"]["scikit-learn"] = "0.0.1"
    jars = {
        "untrusted": jarcraft.build(Ext(nodes.REF, "os.system"),
                                    [name_entry("os.system", "os", ("value",))]),
        "malformed": jarcraft.build(None, [name_entry("numpy.log1p", "numpyx", ("value",))]),
        "skewed": jarcraft.encode(skewed),
    }
    mapped, verify = mode
    for what, data in jars.items():
        path = tmp_path / f"{what}.skjar"
        path.write_bytes(data)
        for strict in (False, True):
            outcomes = []
            ways: list[tuple[Any, dict[str, Any]]] = [
                (io.BytesIO(data), {}), (data, {}), (path, {"mmap": mapped, "verify": verify}),
                (str(path), {}),
            ]
            for source, options in ways:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        skjar.load(source, strict_versions=strict, **options)
                        outcome = "loaded"
                    except SkjarError as exc:
                        outcome = f"{type(exc).__name__}: {exc}"
                outcomes.append((outcome, [(str(w.message), w.filename) for w in caught]))
            assert outcomes[0] == outcomes[1] == outcomes[2] == outcomes[3], (what, strict)
            assert all(filename == __file__ for _, filename in outcomes[0][1])
            assert outcomes[0][0] != "loaded" or what == "skewed"
            assert what != "skewed" or bool(outcomes[0][1]) != strict


# -- the path, as given ------------------------------------------------------------------
class _Fspath:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __fspath__(self) -> Any:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


def test_the_front_takes_a_path_in_every_form(tmp_path: Path) -> None:
    """str and os.PathLike (str or bytes) are encoded as os.fsencode does, with no Python
    step. bytes are a jar, never a path (as open_source takes them)."""
    path = tmp_path / "m.skjar"
    skjar.dump(MODELS["plain"], path)
    want = skjar.loads(path.read_bytes())
    assert read_small(os.fsencode(path), declared_names) is None
    with pytest.raises(NotASkjarFileError, match="starts with"):
        skjar.loads(os.fsencode(path))
    for form in (str(path), path, _Fspath(str(path)), _Fspath(bytes(path))):
        got = read_small(form, declared_names)
        assert got is not None, form
        assert _compiled.speedups is not None
        assert _compiled.speedups.read_head(form, Section, SMALL_SPEC) is not None, form
    assert skjar.load(_Fspath(str(path)))["a"] == want["a"]


@pytest.mark.parametrize("form", ["a\x00b", _Fspath(b"a\x00b"), 3.5, _Fspath(ValueError("no")),
                                  _Fspath(42)])
def test_a_path_no_file_can_have_is_left_to_python(form: Any) -> None:
    assert read_small(form, declared_names) is None
    assert _compiled.speedups is not None
    assert _compiled.speedups.read_head(form, Section, SMALL_SPEC) is None


def test_an_interrupt_in_fspath_is_not_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt):
        read_small(_Fspath(KeyboardInterrupt()), declared_names)
    with pytest.raises(SkjarError, match="NUL"):
        skjar.load("a\x00b")


# -- must a load check a signature? ---------------------------------------------------------
@pytest.mark.parametrize("value", [None, "", " ", " \t\n\r\v\f", "k.pem", " k.pem ", "\u00a0",
                                   "\u2003x", "\x1c"])
def test_env_set_never_misses_what_os_environ_holds(value: str | None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled answer may say "look" where os.environ holds only whitespace outside
    ASCII (verify_keys then decides), but never "no" where it holds keys."""
    from skjar.signing import VERIFY_KEYS_ENV, _keys_named_in_environment, keys_in_environment

    if value is None:
        monkeypatch.delenv(VERIFY_KEYS_ENV, raising=False)
    else:
        monkeypatch.setenv(VERIFY_KEYS_ENV, value)
    assert _compiled.speedups is not None
    compiled = _compiled.speedups.env_set(VERIFY_KEYS_ENV)
    assert keys_in_environment() == compiled
    python = _keys_named_in_environment()
    assert compiled or not python, (value, compiled, python)
    assert compiled == (value is not None and value.strip(" \t\n\r\v\f") != "")


# -- a cold inspect's and audit's compiled steps -------------------------------------------
def _infos_in_python(header: dict[str, Any]) -> Any:
    """inspect's names and version skew as the Python alone answers them, or its error."""
    from skjar import api
    from skjar.metadata import version_skew

    fast, _compiled.speedups = _compiled.speedups, None
    try:
        return api._name_infos(header, api._DEFAULT_POLICY), version_skew(header["environment"])
    except SkjarError as exc:
        return exc
    finally:
        _compiled.speedups = fast


@settings(max_examples=400, deadline=None)
@given(entries=st.lists(_name_entries(), max_size=6), data=st.data())
def test_the_compiled_name_infos_agree_with_python(entries: Any, data: st.DataObject) -> None:
    """Any names and versions: the compiled default_infos answers what Python answers
    (the same NameInfos, and no version skew), or leaves the question to it; it never
    answers for a header Python refuses, a skew, or a name the memo does not hold yet, and
    answers every header as skjar writes it whose names the defaults trust."""
    import jarcraft
    from skjar import api

    packages, how = _drawn_packages(data)
    header = {**jarcraft.minimal_header(), "names": entries, "environment": {"packages": packages}}
    assert _compiled.speedups is not None
    memo = api._DEFAULT_INFOS
    memo.clear()  # a memo another test filled to its 4,096 names has no room for these
    empty: dict[Any, Any] = {}
    got_cold = _compiled.speedups.default_infos(header, api._DEFAULT_KNOWN, empty)
    assert got_cold is None or (got_cold == () and not entries)  # nothing to look up
    expected = _infos_in_python(header)  # (fills the memo)
    got = _compiled.speedups.default_infos(header, api._DEFAULT_KNOWN, memo)
    if got is not None:
        assert not isinstance(expected, Exception), expected
        assert (got, {}) == expected and all(n.trusted for n in got)
        assert [n.name for n in got] == sorted(n.name for n in got)
    elif not isinstance(expected, Exception) and how == "same":
        # Left to Python only for a name outside the defaults (or not all its uses), or
        # entries not as skjar writes them: names in increasing order, each one's uses sorted.
        names = [e["name"] for e in entries]
        as_written = names == sorted(set(names)) and all(
            e["uses"] == sorted(set(e["uses"])) for e in entries)
        assert not all(n.trusted for n in expected[0]) or not as_written


def test_inspect_and_audit_answer_alike_with_and_without_the_compiled_helpers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Real jars: the compiled answer is taken (the reason it exists), and inspect and
    audit give the same Info and names as the Python alone; Info._of sets every field."""
    import dataclasses

    from skjar import api

    path = tmp_path / "m.skjar"
    fast = _compiled.speedups
    assert fast is not None
    api._DEFAULT_INFOS.clear()  # a memo another test filled has no room for these names
    for model in MODELS.values():
        skjar.dump(model, path)
        compiled = skjar.inspect(path), skjar.audit(path)  # (the first fills the memo)
        header = read_header(path).header
        assert fast.default_infos(header, api._DEFAULT_KNOWN, api._DEFAULT_INFOS) is not None
        got = fast.read_info(str(path), SMALL_SPEC, api._DEFAULT_KNOWN, api._DEFAULT_INFOS, True)
        assert got is not None and got[1] is not None and got[2]["names"] == compiled[0].names
        assert set(vars(compiled[0])) == {f.name for f in dataclasses.fields(api.Info)}
        monkeypatch.setattr(_compiled, "speedups", None)
        assert (skjar.inspect(path), skjar.audit(path)) == compiled
        monkeypatch.setattr(_compiled, "speedups", fast)


def test_a_full_name_memo_leaves_the_answers_to_python_unchanged(tmp_path: Path) -> None:
    """The memo keeps at most 4,096 names: full of others, inspect and audit take the
    Python path and answer as they do with room (CI once ran a test that fills it first)."""
    from skjar import api

    path = tmp_path / "m.skjar"
    skjar.dump(MODELS["logistic"], path)
    api._DEFAULT_INFOS.clear()
    roomy = skjar.inspect(path), skjar.audit(path)
    api._DEFAULT_INFOS.clear()
    filler = api.NameInfo(name="other.f", module="other", uses=("value",), trusted=False,
                          untrusted_uses=("value",))
    api._DEFAULT_INFOS.update({f"other{i}.f": ("other", ("value",), False, filler)
                               for i in range(4096)})
    try:
        header = read_header(path).header
        assert _compiled.speedups is not None
        assert _compiled.speedups.default_infos(header, api._DEFAULT_KNOWN, api._DEFAULT_INFOS) is None
        assert (skjar.inspect(path), skjar.audit(path)) == roomy
        assert len(api._DEFAULT_INFOS) == 4096  # nothing evicted, nothing added
    finally:
        api._DEFAULT_INFOS.clear()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**62), st.integers(0, 2**62),
                          st.lists(st.integers(0, 2**40), max_size=4)), max_size=8),
       st.booleans())
def test_the_compiled_section_totals_agree_with_python(
    parts: list[tuple[int, int, list[int]]], as_list: bool
) -> None:
    from skjar.format.header import section_totals

    sections = [Section(64 * k, length, "none", size, tuple(members))
                for k, (length, size, members) in enumerate(parts)]
    expected = (sum(len(m) or 1 for _, _, m in parts), sum(p[0] for p in parts),
                sum(p[1] for p in parts))
    assert _compiled.speedups is not None
    got = _compiled.speedups.section_totals(sections if as_list else tuple(sections))
    if max(expected[1:], default=0) < 2**63:
        assert got == expected
    else:  # beyond a long long: left to Python, which sums without limit
        assert got is None
    assert section_totals(sections) == expected


@pytest.mark.parametrize(
    "odd",
    [[(1, 2)], [Section(0, -1, "none", 5)], [Section(0, 1, "none", -5)], [Section(0, True, "none", 1)],
     [Section(0, 1, "none", 1.0)], [Section(0, 1, "none", 1, [2])], [Section(0, 2**63, "none", 1)],
     [7], iter([Section(0, 1, "none", 1)]), {Section(0, 1, "none", 1)}],
    ids=["pair", "negative length", "negative size", "bool", "float", "members a list",
         "too large", "not a section", "an iterator", "a set"],
)
def test_the_compiled_section_totals_step_aside_for_anything_odd(odd: Any) -> None:
    assert _compiled.speedups is not None
    assert _compiled.speedups.section_totals(odd) is None
