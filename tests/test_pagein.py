"""Reading a large body with helper threads mapping its pages in (format/pagein.py), and
hashing the body as it is read (reader._Digests).

Both only change when memory is mapped in and when bytes are hashed, never what is
read or accepted: a jar read with the helpers loads to the same value as one read
without them, and damage is found either way.
"""

from __future__ import annotations

import ast
import itertools
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import skjar
from exact import assert_same
from skjar import _compiled
from skjar.errors import CorruptFileError
from skjar.format import pagein, reader
from skjar.format.digest import new_hasher


def _value() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    return {
        "run": rng.random((300, 70)),  # 168 KB: read into the shared allocation
        "own": rng.integers(0, 9, 90_000, dtype=np.int64),  # 720 KB: an allocation of its own
        "small": [rng.random(5), "text", 3],
    }


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Helpers for any body, in 4 KiB chunks (hundreds of handoffs), even on one CPU, each
    read and hashed in steps that do not divide it (reader.FEED_STEP)."""
    monkeypatch.setattr(pagein, "MIN_TOTAL", 0)
    monkeypatch.setattr(pagein, "CHUNK", 4096)
    monkeypatch.setattr(pagein, "helper_count", lambda: 2)
    monkeypatch.setattr(reader, "FEED_STEP", 1000)


def _threads() -> int:
    return sum(t.name == "skjar-page-in" for t in threading.enumerate())


@pytest.mark.skipif(_compiled.speedups is None, reason="the helpers need the compiled prefault")
@pytest.mark.parametrize("compress", [None, "zstd", "lz4"])
@pytest.mark.parametrize("source", ["path", "file object", "bytes"])
def test_a_jar_read_with_helpers_loads_the_same(
    small_chunks: None, tmp_path: Path, source: str, compress: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Read, hashed and (compressed) decompressed with helpers mapping pages in: the body's
    read waits for each chunk; a decompressor's output is mapped in ahead of it."""
    value = _value()
    path = tmp_path / "v.skjar"
    skjar.dump(value, path, compress=compress)
    started: list[int] = []
    real = pagein.PageIn.__init__

    def spy(self: pagein.PageIn, chunks: list[np.ndarray], helpers: int, **kw: Any) -> None:
        started.append(len(chunks))
        real(self, chunks, helpers, **kw)

    monkeypatch.setattr(pagein.PageIn, "__init__", spy)
    monkeypatch.setattr(skjar.api, "read_small", lambda *a, **k: None)  # never the compiled front
    if source == "path":
        loaded = skjar.load(path)
    elif source == "file object":
        with open(path, "rb") as f:
            loaded = skjar.load(f)
    else:
        loaded = skjar.loads(path.read_bytes())
    assert started and started[0] > 40  # the helpers really ran, over many chunks
    if compress:  # once for the compressed body, once for the decompressed sections
        assert len(started) == 2 and started[1] > 100
    assert_same(loaded, value)
    assert _threads() == 0


@pytest.mark.skipif(_compiled.speedups is None, reason="the helpers need the compiled prefault")
@pytest.mark.parametrize("where", ["tree", "buffer", "trailer digest", "truncated"])
def test_damage_is_found_with_helpers(small_chunks: None, tmp_path: Path, where: str) -> None:
    path = tmp_path / "v.skjar"
    skjar.dump(_value(), path)
    data = bytearray(path.read_bytes())
    raw = reader.open_source(bytes(data), mmap=False, admit=lambda h: {})
    tree_at = raw.layout.tree.offset
    if where == "tree":
        data[tree_at + 3] ^= 1
    elif where == "buffer":
        data[raw.layout.buffers[0].offset + 1000] ^= 0x10
    elif where == "trailer digest":
        data[-40] ^= 1
    else:
        del data[len(data) // 2 :]
    path.write_bytes(data)
    with pytest.raises(CorruptFileError, match=r"integrity check failed|truncated"):
        skjar.load(path)
    assert _threads() == 0  # a failed read still stops and joins its helpers


@pytest.mark.parametrize("damaged", [False, True])
def test_a_body_read_in_steps_without_helpers_is_hashed_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    """One CPU: each piece is read and hashed in steps of its own (that split the tree,
    the sections and the digest's marks anywhere); a flipped bit is still found."""
    monkeypatch.setattr(pagein, "helper_count", lambda: 0)
    monkeypatch.setattr(reader, "FEED_STEP", 777)
    monkeypatch.setattr(skjar.api, "read_small", lambda *a, **k: None)
    value = _value()
    path = tmp_path / "v.skjar"
    skjar.dump(value, path)
    if damaged:
        data = bytearray(path.read_bytes())
        raw = reader.open_source(bytes(data), mmap=False, admit=lambda h: {})
        data[raw.layout.buffers[-1].offset + 5] ^= 0x40
        path.write_bytes(data)
        with pytest.raises(CorruptFileError, match="integrity check failed"):
            skjar.load(path)
    else:
        assert_same(skjar.load(path), value)


def test_helpers_stop_when_the_reader_gives_up() -> None:
    """Leaving the block mid-read joins the helpers at once: nothing more is claimed."""
    chunks = [np.empty(1 << 16, np.uint8) for _ in range(64)]
    with pagein.PageIn(chunks, 2) as mapped:
        mapped.wait(0)
    assert _threads() == 0


def test_no_thread_to_be_had_means_no_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that may start no more threads still reads: the reader maps every
    chunk in itself."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    chunks = [np.empty(4096, np.uint8) for _ in range(20)]
    with pagein.PageIn(chunks, 2) as mapped:
        for i in range(len(chunks)):
            mapped.wait(i)  # claimed by the reader: returns at once


def test_every_chunk_is_waited_for_in_order() -> None:
    chunks = [np.empty(4096, np.uint8) for _ in range(200)]
    with pagein.PageIn(chunks, 2) as mapped:
        for i in range(len(chunks)):
            mapped.wait(i)  # returns: mapped by a helper, or claimed by the reader


def test_chunked_views_cover_the_pieces_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagein, "CHUNK", 10)
    outs = [np.arange(25, dtype=np.uint8), np.arange(0, dtype=np.uint8), np.arange(10, dtype=np.uint8)]
    chunks = pagein.chunked(outs)
    assert [len(c) for c in chunks] == [10, 10, 5, 10]
    assert np.concatenate(chunks).tobytes() == np.concatenate(outs).tobytes()
    chunks[0][0] = 99  # views, not copies: a read into a chunk fills the piece
    assert outs[0][0] == 99


def test_one_cpu_gets_no_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert pagein.helper_count() == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert pagein.helper_count() == pagein.MAX_HELPERS


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    marks=st.lists(st.integers(0, 300), min_size=1, max_size=3),
)
def test_digests_taken_while_reading_match_one_pass(data: bytes, cuts: list[int], marks: list[int]) -> None:
    """However the body arrives in parts, the digest at each mark is the one-pass digest
    of the bytes before it (the preamble and header included)."""
    head = b"preamble+header"
    marks = sorted(min(m, len(data)) for m in marks)
    hasher = new_hasher()
    hasher.update(head)
    base = 1000  # file offsets: the body starts after the header
    digests = reader._Digests(hasher, base, [base + m for m in marks])
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    for a, b in itertools.pairwise(bounds):
        digests.feed(np.frombuffer(data[a:b], dtype=np.uint8))
    assert digests.taken == [xxhash.xxh3_128_digest(head + data[:m]) for m in marks]


needs_linux_speedups = pytest.mark.skipif(
    _compiled.speedups is None or not os.path.exists("/proc/self/pagemap"),
    reason="fresh_pages reads Linux's page map, from the compiled helpers",
)


def _in_child(job: Any) -> Any:
    """``job()``'s result (a small tuple of ints) computed in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            answer = repr(job())
        except BaseException as exc:
            answer = repr(("failed in the child", repr(exc)))
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    return ast.literal_eval(answer)


@needs_linux_speedups
def test_fresh_pages_drops_only_pages_shared_copy_on_write() -> None:
    """In a forked child the parent's pages are shared: they are dropped (and read as
    zeros), once. The parent's own pages, and a page map that cannot be read, change
    nothing."""
    fast = _compiled.speedups
    assert fast is not None
    buf = np.full(1 << 20, 7, np.uint8)  # present, and this process's own

    def child() -> tuple[Any, ...]:
        fd = pagein._open_pagemap()
        try:
            first = fast.fresh_pages(fd, buf)
            zeros = int(np.count_nonzero(buf[8192:-8192] == 0))
            buf[:] = 5  # now the child's own
            again = fast.fresh_pages(fd, buf)
            return first, zeros, again, int(buf.min())
        finally:
            os.close(fd)

    assert _in_child(child) == (True, (1 << 20) - 16384, False, 5)
    fd = pagein._open_pagemap()
    try:
        assert fast.fresh_pages(fd, buf) is False  # the parent's own pages: kept
    finally:
        os.close(fd)
    assert fast.fresh_pages(-1, buf) is False
    assert int(buf.min()) == int(buf.max()) == 7  # the child's writes stayed its own


@needs_linux_speedups
@pytest.mark.parametrize("compress", [None, "zstd", "lz4"])
def test_a_forked_child_reading_with_helpers_loads_the_same(
    small_chunks: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compress: str | None
) -> None:
    """A child forked after its parent loaded and dropped a value (its heap's free
    memory shared copy-on-write) reads with the helpers, every chunk made fresh first
    (a decompressor's outputs before any is written), and loads the same value."""
    value = _value()
    path = tmp_path / "v.skjar"
    skjar.dump(value, path, compress=compress)
    monkeypatch.setattr(skjar.api, "read_small", lambda *a, **k: None)
    del_me = skjar.load(path)
    del del_me
    fast = _compiled.speedups
    asked: list[int] = []
    real = fast.fresh_pages  # type: ignore[union-attr]

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(fast, name)

        def fresh_pages(self, fd: int, chunk: Any) -> bool:
            asked.append(fd)
            return bool(real(fd, chunk))

    monkeypatch.setattr(_compiled, "speedups", Spy())

    def child() -> tuple[Any, ...]:
        loaded = skjar.load(path)
        assert_same(loaded, value)
        return len(asked), min(asked)

    calls, lowest = _in_child(child)
    assert calls > 40 and lowest >= 0  # every chunk, with the page map open


@needs_linux_speedups
def test_helpers_drop_nothing_unless_the_filler_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decompressors fill their outputs without waiting for the helpers: a PageIn made
    for them (fresh=False) never drops pages, which could be ones already written; the
    reader's (fresh=True) drops before each chunk is filled."""
    fast = _compiled.speedups
    asked: list[int] = []

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(fast, name)

        def fresh_pages(self, fd: int, chunk: Any) -> bool:
            asked.append(fd)
            return False

    monkeypatch.setattr(_compiled, "speedups", Spy())
    chunks = [np.empty(1 << 16, np.uint8) for _ in range(30)]
    with pagein.PageIn(chunks, 2) as mapped:
        for i in range(len(chunks)):
            mapped.wait(i)
    assert asked == []
    with pagein.PageIn(chunks, 2, fresh=True) as mapped:
        for i in range(len(chunks)):
            mapped.wait(i)
    assert len(asked) == len(chunks) and min(asked) >= 0  # each chunk once, by someone
