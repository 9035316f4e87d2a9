"""Reading a jar: preamble, header, layout, sections, digest — validated before use.

Every size comes from the header and is checked against the file before
anything is allocated; the whole file is hashed and the digest compared before
any section is decompressed or decoded.
"""

from __future__ import annotations

import bisect
import functools
import io
import itertools
import mmap as _mmap
import os
import re
import stat
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

import numpy as np

from .. import _compiled
from .._paths import file_path, open_to_read
from ..errors import CorruptFileError, FormatVersionError, InvalidArgumentError, NotASkjarFileError
from . import pagein
from .compression import PARALLEL_MIN, Decompressor, run_parallel
from .digest import new_hasher
from .header import Layout, Section, pack_offsets, parse_header, plan_layout
from .spec import (
    ALIGNMENT,
    DIGEST_SIZE,
    END_MAGIC,
    FLAG_SIGNED,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    KNOWN_FLAGS,
    MAGIC,
    MAX_BUFFERS,
    MAX_HEADER_SIZE,
    MAX_RATIO,
    PACKS_SINCE,
    PREAMBLE_SIZE,
    RATIO_SLACK,
    SIGNATURE_SIZE,
    TRAILER_SIZE,
)

Source = Any  # str | os.PathLike | bytes-like | binary file object


@dataclass
class RawJar:
    """A jar whose bytes were verified, split into sections, not yet decoded."""

    version: tuple[int, int]
    header: dict[str, Any]
    layout: Layout
    tree: bytes | memoryview
    buffers: list[np.ndarray]
    declared: dict[str, tuple[str, frozenset[str]]]
    signer: str | None = None  # fingerprint of the verified signer, when one was required
    flags: int = 0


# Called with the parsed header once the digest is verified, before anything is
# decompressed or decoded: checks trust and versions and returns the declared
# names. Raising here stops the load.
Admit = Callable[[dict[str, Any]], dict[str, tuple[str, frozenset[str]]]]


# -- recognising foreign input ---------------------------------------------
_FOREIGN = (
    (b"\x80", "a Python pickle (or an uncompressed joblib file)"),
    (b"\x1f\x8b", "a gzip file (perhaps a joblib file saved with compress=gzip)"),
    (b"x\x01", "a zlib stream (perhaps a joblib file saved with compress=True)"),
    (b"x\x5e", "a zlib stream (perhaps a joblib file saved with compress=True)"),
    (b"x\x9c", "a zlib stream (perhaps a joblib file saved with compress=True)"),
    (b"x\xda", "a zlib stream (perhaps a joblib file saved with compress=True)"),
    (b"ZF", "an old joblib compressed file"),
    (b"BZh", "a bz2 file (perhaps a joblib file saved with compress='bz2')"),
    (b"\xfd7zXZ\x00", "an xz file (perhaps a joblib file saved with compress='xz')"),
    (b"\x5d\x00\x00", "an lzma file (perhaps a joblib file saved with compress='lzma')"),
    (b"\x04\x22\x4d\x18", "an lz4 frame (perhaps a joblib file saved with compress='lz4')"),
    (b"\x28\xb5\x2f\xfd", "a zstd frame"),
    (b"PK\x03\x04", "a zip archive (perhaps a skops file)"),
    (b"\x93NUMPY", "a numpy .npy file"),
)


# Pickle protocols 0 and 1 have no header: a classic malicious pickle starts with
# GLOBAL ("cos\nsystem\n", "cposix\n..."), a MARK or an empty list/dict. Without this
# they were refused with a bare "starts with b'cposix\\ns'" instead of the pickle hint
# (tests/security/test_foreign_input.py).
_OLD_PICKLE = re.compile(
    rb"\Ac[A-Za-z_][\w.]{0,13}\n|\A\((?:dp\d|lp\d|I\d|S'|V|c[A-Za-z_]|t|X|K|J|M)|\A[\]}](?:q\x00|\()"
)


def _not_a_jar(head: bytes) -> NotASkjarFileError:
    if _OLD_PICKLE.match(head):
        head = b"\x80"  # named as a pickle, below
    for prefix, what in _FOREIGN:
        if head.startswith(prefix):
            hint = ""
            if "pickle" in what or "joblib" in what:
                hint = (
                    " skjar never unpickles: loading a pickle can run arbitrary code. "
                    "Convert a file you trust with `skjar convert`, or re-save the model "
                    "with skjar.dump."
                )
            return NotASkjarFileError(f"this is not a skjar file: it looks like {what}.{hint}")
    if not head:
        return NotASkjarFileError("this is not a skjar file: it is empty")
    return NotASkjarFileError(
        f"this is not a skjar file: it starts with {head[:8]!r} instead of {MAGIC!r}"
    )


def parse_preamble(pre: bytes) -> tuple[tuple[int, int], int, int]:
    """(version, flags, header_length) from the first 24 bytes."""
    if not pre.startswith(MAGIC):
        raise _not_a_jar(bytes(pre[:16]))
    if len(pre) < PREAMBLE_SIZE:
        raise CorruptFileError(f"the file is truncated: {len(pre)} bytes, not even a preamble")
    major, minor, flags, header_length = struct.unpack_from("<HHIQ", pre, len(MAGIC))
    if major != FORMAT_MAJOR or minor > FORMAT_MINOR:
        raise FormatVersionError(
            f"this jar uses format version {major}.{minor}; this skjar reads "
            f"{FORMAT_MAJOR}.0 to {FORMAT_MAJOR}.{FORMAT_MINOR}. Upgrade skjar to load it."
        )
    if flags & ~KNOWN_FLAGS:
        raise CorruptFileError(f"unknown flags {flags:#x} in the preamble")
    if not 2 <= header_length <= MAX_HEADER_SIZE:
        raise CorruptFileError(f"header length {header_length} is out of bounds")
    return (major, minor), flags, header_length


_ZEROS = bytes(64)


def aligned_empty(n: int, offset: int = 0, populate: bool = True) -> np.ndarray:
    """An uninitialised uint8 array of ``n`` bytes whose address is ``offset`` mod 64.

    With ``offset`` = the file offset of its first byte, every 64-aligned
    section of the file lands on a 64-byte boundary in memory. ``populate=False``
    leaves its pages to be mapped in by the caller (see pagein.py).
    """
    fast = _compiled.speedups
    raw = _anonymous(n + 64, populate) if n >= POPULATE_MIN else None
    if raw is None:
        raw = np.empty(n + 64, dtype=np.uint8)
        if populate and n >= PREFAULT_MIN and fast is not None:
            fast.prefault(raw)
    here = fast.address(raw) if fast is not None else raw.__array_interface__["data"][0]
    start = (offset - here) % 64
    return raw[start : start + n]


# A buffer is filled right away by a read, so its pages are mapped in before, in one
# kernel call, not one page fault per 4 KiB during the read (forked children: mlp's
# 2.5 MB body 4.4 -> 4.1 ms, forest's 92 MB 76 -> 70 ms).
#
# Below POPULATE_MIN the memory comes from malloc (np.empty) and is prefaulted with
# MADV_POPULATE_WRITE. Malloc matters: a section freed once its consumer has copied it
# (every sklearn Tree copies its nodes) is reused by the next consumer's own allocation.
# Each of forest's 200 node arrays in one populated mapping instead: 117 vs 78 ms,
# twice the page faults, since every Tree's copy then lands in fresh memory.
#
# From POPULATE_MIN up, an anonymous mapping with MAP_POPULATE: numpy asks for
# transparent huge pages on allocations of 4 MiB and more, which is faster when the
# kernel has them at hand (knn-big's 587 MB body: 0.17 s) and stalls when it does not
# (0.8-2.7 s, forked children on this machine, same hour); populated 4 KiB pages took
# 0.39-0.49 s every time. A steady load time was chosen over a sometimes faster one.
#
# A body of pagein.MIN_TOTAL or more is allocated unpopulated instead, and helper
# threads map its pages in just ahead of the read (pagein.py): knn-big 253 -> 143 ms,
# forest 80 -> 68 ms (forked children, 2 CPUs).
POPULATE_MIN = 4 << 20
PREFAULT_MIN = 64 << 10
_ANONYMOUS_FLAGS = getattr(_mmap, "MAP_PRIVATE", 0) | getattr(_mmap, "MAP_ANONYMOUS", 0)


def _anonymous(n: int, populate: bool) -> np.ndarray | None:
    """``n`` writable bytes of fresh anonymous memory, its pages mapped if ``populate``,
    or None where the platform has no MAP_POPULATE (macOS, Windows: np.empty is used)."""
    if not hasattr(_mmap, "MAP_POPULATE"):
        return None
    try:
        mapping = _mmap.mmap(-1, n, flags=_ANONYMOUS_FLAGS | (_mmap.MAP_POPULATE if populate else 0))
    except (OSError, ValueError, OverflowError):
        return None  # e.g. a strict overcommit policy: let numpy try (and raise MemoryError)
    # The array keeps the mapping alive; it is unmapped when the last view goes.
    return np.frombuffer(mapping, dtype=np.uint8)


class _Reader:
    """The input: small sequential reads for preamble and header, then the body at once.

    The body (everything after the header) is read in one go into one aligned
    buffer - a private copy, or for ``mmap`` a copy-on-write view of the file -
    and sections become views of it: one system call and one allocation per
    load, not one per array.
    """

    def __init__(self, view: memoryview | None, file: IO[bytes] | None, zero_copy: bool) -> None:
        self.view = view
        self.file = file
        self.zero_copy = zero_copy
        self.pos = 0

    def read(self, n: int, what: str) -> Any:
        if self.view is not None:
            data: Any = self.view[self.pos : self.pos + n]
            if data.nbytes != n:
                raise CorruptFileError(f"the file is truncated inside {what}")
        else:
            assert self.file is not None
            data = _read_exact(self.file, n, what)
        self.pos += n
        return data

    def read_body(self, n: int, cuts: list[tuple[int, int]], feed: Feed) -> Body:
        """The next ``n`` bytes, aligned like the file, as pieces split at ``cuts``,
        each part handed to ``feed`` in order as soon as it is read.

        ``cuts`` are (start, end) file ranges of large sections: each gets an
        allocation of its own, so that memory is returned (or reused) as soon as
        the objects using it are gone - a vocabulary's string buffer right after
        its dict is built, a tree's nodes once the Tree has copied them - and a
        kept array does not pin its neighbours. The runs of bytes between them
        share one allocation: one page-fault pass instead of one per run. mmap:
        one view of the mapping.
        """
        start = self.pos
        if self.view is not None and self.zero_copy:
            data = self.read(n, "the file")
            one = np.frombuffer(data, dtype=np.uint8) if n else np.empty(0, np.uint8)
            feed(one)
            return Body([(start, one)])
        bounds = [start]
        for a, b in cuts:
            bounds += [a, b]
        bounds.append(start + n)
        ranges = list(itertools.pairwise(bounds))  # run, cut, run, ..., cut, run
        helpers = pagein.helper_count() if n >= pagein.MIN_TOTAL and _compiled.speedups else 0
        populate = not helpers
        shared = aligned_empty(sum(b - a + 63 for a, b in ranges[::2]), populate=populate)
        used = 0
        pieces: list[tuple[int, np.ndarray]] = []
        for i, (a, b) in enumerate(ranges):
            if b == a and pieces:
                continue
            if i % 2:
                out = aligned_empty(b - a, a, populate=populate)
            else:  # a run: the next part of `shared` whose address is `a` mod 64
                used += (a - used) % 64
                out = shared[used : used + b - a]
                used += b - a
            pieces.append((a, out))
        if populate:
            for _, out in pieces:
                self._fill_and_feed(out, feed)
        else:
            chunks = pagein.chunked([out for _, out in pieces])
            with pagein.PageIn(chunks, helpers, fresh=True) as mapped:
                for i, chunk in enumerate(chunks):
                    mapped.wait(i)
                    self._fill_and_feed(chunk, feed)
        return Body(pieces)

    def _fill_and_feed(self, out: np.ndarray, feed: Feed) -> None:
        """Fill ``out`` and hand it to ``feed`` FEED_STEP bytes at a time, so that the
        digest reads each step while it is still in the nearer caches."""
        for at in range(0, len(out), FEED_STEP):
            step = out[at : at + FEED_STEP]
            self._fill(step)
            feed(step)

    def _fill(self, out: np.ndarray) -> None:
        """Read the next ``len(out)`` bytes into ``out``."""
        n = len(out)
        if self.view is not None:
            out[:] = np.frombuffer(self.read(n, "the file"), dtype=np.uint8)
            return
        assert self.file is not None
        view = memoryview(out)  # type: ignore[arg-type]
        got = 0
        while got < n:
            k = self.file.readinto(view[got:])  # type: ignore[attr-defined]
            if not k:
                raise CorruptFileError("the file is truncated")
            got += k
        self.pos += n


# A large body is read and hashed this much at a time: the digest then reads what the
# read has just written from the CPU's nearer caches, not from memory. On AMD EPYC cores
# XXH3's AVX-512 path hashed 512 MiB read in 8 MiB steps in 16 ms, in 1 MiB steps in
# 6.5 ms; the reads took ~40 ms either way (knn-big's first load 0.95-0.97x).
FEED_STEP = 1 << 20

# Sections at least this large are read into an allocation of their own (see read_body
# and aligned_empty: forest's 390-415 KB node arrays are freed, one by one, as their
# trees copy them).
OWN_ALLOCATION = 256 << 10


Feed = Callable[[np.ndarray], None]


class _Digests:
    """The integrity hash over bytes fed in file order from ``pos`` on: the digest
    is taken at each offset in ``marks`` (ascending), and hashing stops at the last."""

    def __init__(self, hasher: Any, pos: int, marks: list[int]) -> None:
        self.hasher = hasher
        self.pos = pos
        self.marks = marks
        self.taken: list[bytes] = []

    def feed(self, data: np.ndarray) -> None:
        while len(self.taken) < len(self.marks):
            mark = self.marks[len(self.taken)]
            take = min(len(data), mark - self.pos)
            if take > 0:
                self.hasher.update(data[:take])
                self.pos += take
                data = data[take:]
            if self.pos < mark:
                return
            self.taken.append(self.hasher.digest())


class Body:
    """The file after its header: consecutive pieces, addressed by file offset."""

    def __init__(self, pieces: list[tuple[int, np.ndarray]]) -> None:
        self.pieces = pieces
        self.starts = [first for first, _ in pieces]
        self.end = pieces[-1][0] + len(pieces[-1][1])
        self._last = (pieces[0][0], pieces[0][0] + len(pieces[0][1]), pieces[0][1])

    def slice(self, start: int, end: int) -> np.ndarray:
        """Bytes [start, end) of the file; the range lies within one piece by construction."""
        first, last, data = self._last  # sections are asked for in order: mostly this piece
        if not (first <= start and end <= last):
            first, data = self.pieces[max(bisect.bisect_right(self.starts, start) - 1, 0)]
            last = first + len(data)
            if not (first <= start and end <= last):  # pragma: no cover
                raise AssertionError(f"range {start}-{end} straddles pieces")
            self._last = (first, last, data)
        return data[start - first : end - first]

    def chunks(self, start: int, end: int) -> list[np.ndarray]:
        """Bytes [start, end) as views of the pieces that hold them, in order."""
        out = []
        for first, data in self.pieces:
            a, b = max(start, first), min(end, first + len(data))
            if a < b:
                out.append(data[a - first : b - first])
        return out


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    chunks = []
    left = n
    while left:
        chunk = f.read(left)
        if not chunk:
            raise CorruptFileError(f"the file is truncated inside {what}")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _file_size(f: IO[bytes]) -> int | None:
    """How many bytes ``f`` has left, or None for a stream that cannot say cheaply."""
    if _plain_file(f):
        try:
            return os.fstat(f.fileno()).st_size - f.tell()
        except (OSError, ValueError):  # a pipe cannot tell(); a closed file
            pass
    elif _decompressing(f):
        return None  # read as a stream: finding its end would decompress it twice more
    try:
        if f.seekable():
            here = f.tell()
            end = f.seek(0, os.SEEK_END)
            f.seek(here)
            return end - here
    except (OSError, AttributeError, ValueError):
        pass
    return None


def _plain_file(f: Any) -> bool:
    """A file's own descriptor read through io's layers, so that the descriptor's size is
    the file object's. A wrapper that changes the bytes it reads (gzip.open's file, a
    user's class) can answer fileno() with the descriptor under it, whose size says
    nothing of its own: a gzipped jar was refused as truncated."""
    kind = type(f)
    if kind is io.BufferedReader or kind is io.BufferedRandom:
        return type(f.raw) is io.FileIO
    return kind is io.FileIO


def _decompressing(f: Any) -> bool:
    """One of the standard library's decompressing readers, which seek by decompressing
    from the start. (Its module is imported if one of its objects exists.)"""
    modules = sys.modules
    return any(
        module is not None and isinstance(f, getattr(module, name))
        for module, name in (
            (modules.get("gzip"), "GzipFile"),
            (modules.get("bz2"), "BZ2File"),
            (modules.get("lzma"), "LZMAFile"),
            (modules.get("zipfile"), "ZipExtFile"),
        )
    )


def _read_all(
    r: _Reader,
    size: int | None,
    admit: Admit,
    keys: list[bytes] | None = None,
    verify: str = "full",
) -> RawJar:
    pre = r.read(PREAMBLE_SIZE, "the preamble") if (size is None or size >= PREAMBLE_SIZE) else None
    if pre is None:
        head = r.read(size, "the preamble") if size else b""
        parse_preamble(bytes(head))  # not a jar, or a jar truncated inside its preamble
        raise CorruptFileError(f"the file is truncated: {size} bytes, not even a preamble")
    version, flags, header_length = parse_preamble(bytes(pre))
    signed = bool(flags & FLAG_SIGNED)
    if keys is not None and not signed:
        from ..errors import SignatureError

        raise SignatureError(
            "the jar is not signed, and this load requires a signature "
            "(verify_with= or SKJAR_VERIFY_KEYS). Sign it with `skjar sign` or dump(sign_with=...)."
        )
    if size is not None and PREAMBLE_SIZE + header_length > size:
        raise CorruptFileError(
            f"the header claims {header_length} bytes but the file has only {size}: truncated?"
        )
    raw_header = r.read(header_length, "the header")
    header = parse_header(raw_header)
    layout = plan_layout(header_length, header["layout"], version)
    expected_size = layout.file_size + (SIGNATURE_SIZE if signed else 0)
    if size is not None and expected_size != size:
        raise CorruptFileError(
            f"the layout describes a {expected_size}-byte file, but it has {size} bytes"
            + (": truncated" if size < expected_size else ": trailing bytes")
        )
    base = r.pos
    cuts = [
        (section.offset, section.offset + section.length)
        for section in (layout.tree, *layout.buffers)
        if section.length >= OWN_ALLOCATION
    ]
    signed_end = layout.data_end  # file offsets from here on
    hashed_end = signed_end + (SIGNATURE_SIZE if signed else 0)
    tree_end = layout.tree.offset + layout.tree.length
    hasher = new_hasher()
    hasher.update(pre)
    hasher.update(raw_header)
    # The body is hashed as it is read, while each part is still in the cache: the
    # structure digest up to the tree's end, the full one up to the trailer.
    digests = _Digests(hasher, base, [tree_end, hashed_end] if verify == "full" else [tree_end])
    body = r.read_body(expected_size - base, cuts, digests.feed)
    if r.file is not None and size is None and r.file.read(1):
        raise CorruptFileError("trailing bytes after the trailer")
    trailer = bytes(body.slice(hashed_end, body.end)) if hashed_end <= body.end else b""
    if len(trailer) != TRAILER_SIZE or trailer[2 * DIGEST_SIZE :] != END_MAGIC:
        raise CorruptFileError("the trailer is missing or damaged: the file is truncated")
    taken = digests.taken
    damaged = trailer[:DIGEST_SIZE] != taken[0]
    if verify == "full" and not damaged:
        damaged = trailer[DIGEST_SIZE : 2 * DIGEST_SIZE] != taken[1]
    if damaged:
        raise CorruptFileError(
            "the integrity check failed: the file's content does not match its digest "
            "(damaged in storage or transit). Re-copy it from its source."
        )
    signer = None
    if keys is not None:
        message = itertools.chain((pre, raw_header), body.chunks(base, signed_end))
        signer = _signed_by(message, bytes(body.slice(signed_end, hashed_end)), keys)
    # Padding must be zero: the layout leaves no byte unaccounted for.
    pos = base
    # A structure-only check leaves data pages untouched, padding between them included.
    for section in (layout.tree, *layout.buffers) if verify == "full" else (layout.tree,):
        gap = section.offset - pos
        if gap and body.slice(pos, section.offset).tobytes() != _ZEROS[:gap]:
            raise CorruptFileError(f"non-zero padding before offset {section.offset}")
        pos = section.offset + section.length
    # Trust and versions are judged on a verified header only: a damaged name or
    # version string is reported as damage, not as an untrusted type or a skew.
    declared = admit(header)
    t = layout.tree
    parts = [body.slice(t.offset, t.offset + t.length)]
    parts += [body.slice(b.offset, b.offset + b.length) for b in layout.buffers]
    del body  # sections hold what they need; a large unused piece is freed now
    stored = (t, *layout.buffers)
    compressed = [i for i, section in enumerate(stored) if section.codec != "none"]
    if compressed:
        _decompress(parts, stored, compressed)
    tree: Any = memoryview(parts[0])  # type: ignore[arg-type]
    if compressed in ([], [0]):  # no buffer compressed (index 0 is the tree): no pack either
        return RawJar(version, header, layout, tree, parts[1:], declared, signer, flags)
    buffers = _split_packs(parts[1:], layout.buffers)
    return RawJar(version, header, layout, tree, buffers, declared, signer, flags)


def _signed_by(message: Iterable[Any], block: bytes, keys: list[bytes]) -> str:
    """The fingerprint of the key among ``keys`` whose signature ``block`` is over the
    bytes of ``message`` (its pieces, in order); SignatureError if there is none."""
    from ..signing import check_signature, new_message_hasher

    hasher = new_message_hasher()
    for piece in message:
        hasher.update(piece)
    return check_signature(block, hasher.digest(), keys)


def _split_packs(parts: list[Any], sections: Sequence[Section]) -> list[Any]:
    """The buffers of the buffer sections ``parts`` (decompressed), each pack split into
    its members."""
    buffers: list[Any] = []
    for i, (out, section) in enumerate(zip(parts, sections)):
        if section.members:
            buffers += _unpack(out, section.members, i)
        else:
            buffers.append(out)
    return buffers


def _what(i: int, section: Section | None = None, chunk: int = 0) -> str:
    what = "the object tree" if i == 0 else f"buffer entry {i - 1}"
    return f"chunk {chunk} of {what}" if section is not None and section.chunks else what


def _decompress(parts: list[np.ndarray], stored: tuple[Section, ...], which: list[int]) -> None:
    """Replace ``parts[i]`` for each ``i`` in ``which`` by its decompressed section.

    Every zstd frame is checked against the header before anything is allocated;
    the outputs are allocated in file order in this thread (so the allocator's reuse
    of freed memory does not depend on thread scheduling), then filled, on every core
    when there is enough zstd work: a section at once, or a chunked one (format 1.3)
    chunk by chunk, each chunk's stored bytes given back to the kernel once it is
    decompressed. The first failure in file order is raised.
    """
    decompressor = Decompressor()
    pieces = {i: stored[i].pieces() for i in which}
    for i in which:
        for k, (at, length, _, size) in enumerate(pieces[i]):
            data = memoryview(parts[i][at : at + length])  # type: ignore[arg-type]
            decompressor.check(data, stored[i].codec, size, _what(i, stored[i], k))
    fast = _compiled.speedups
    whole = [i for i in which if not stored[i].chunks]
    total = sum(stored[i].size for i in whole)
    helpers = pagein.helper_count() if total >= pagein.MIN_TOTAL and fast else 0
    # A chunked section's output is mapped in chunk by chunk by the job that fills it (the
    # page-in helpers would run ahead of the decompressors, so that the output would be
    # in memory while the stored bytes are still there: knn-big 1,010 against 611 MiB).
    outs = {
        i: _allocate(stored[i].size, _what(i), populate=not (helpers or stored[i].chunks))
        for i in which
    }

    def job(i: int, k: int, out: np.ndarray) -> None:
        at, length, start, size = pieces[i][k]
        data, into = parts[i][at : at + length], out[start : start + size]
        helper = fast if stored[i].chunks else None
        if helper is not None:
            helper.prefault(into)
        decompressor.into(memoryview(data), stored[i].codec, into, _what(i, stored[i], k))  # type: ignore[arg-type]
        if helper is not None:
            # The stored bytes are the reader's own copy (or a copy-on-write mapping) and
            # each chunk is read once: its pages can go as soon as it is decompressed.
            helper.discard(data)

    jobs = [functools.partial(job, i, k, outs[i]) for i in which for k in range(len(pieces[i]))]
    # zstd is CPU-bound (forest: 110-120 vs 91-95 ms on two cores); lz4 decompresses at
    # memory speed, and many small lz4 sections gain nothing from threads (forest: 84 vs 91
    # ms), but chunks do: each goes through a 4 MiB temporary, which a worker thread's
    # malloc arena hands back again (200 MB in lz4 chunks: 340-390 -> 90-120 ms).
    parallel_work = sum(
        stored[i].size for i in which if stored[i].codec == "zstd" or stored[i].chunks
    )
    if helpers or parallel_work >= PARALLEL_MIN:
        # Large outputs are mapped in by helper threads running ahead of the decompressor,
        # which faults in any page they have not reached yet itself. The outputs from
        # malloc lose their pages still shared copy-on-write first (pagein.make_fresh):
        # the decompressors write without waiting, so the helpers must not drop any.
        pagein.make_fresh([outs[i] for i in which if stored[i].size < POPULATE_MIN])
        with pagein.PageIn(pagein.chunked([outs[i] for i in whole]) if helpers else [], helpers):
            run_parallel(jobs, parallel_work)
    else:  # a small jar's: in turn, here (the pool's and helpers' set-up is ~0.2 ms cold)
        for run in jobs:
            run()
    for i in which:
        parts[i] = outs[i]


def _allocate(size: int, what: str, populate: bool = True) -> np.ndarray:
    try:
        return aligned_empty(size, populate=populate)
    except MemoryError:
        raise CorruptFileError(f"{what}: {size} decompressed bytes do not fit in memory") from None


def _unpack(pack: np.ndarray, members: tuple[int, ...], entry: int) -> list[np.ndarray]:
    """A decompressed pack's buffers, as views; the padding between them must be zero."""
    out, pos = [], 0
    for offset, size in zip(pack_offsets(members), members):
        if offset != pos and pack[pos:offset].tobytes() != _ZEROS[: offset - pos]:
            raise CorruptFileError(f"buffer entry {entry}: non-zero padding inside the pack")
        out.append(pack[offset : offset + size])
        pos = offset + size
    return out


# What read_small checks, from format/spec.py (and this module's own section bound).
SMALL_SPEC = (
    MAGIC, END_MAGIC, FORMAT_MAJOR, FORMAT_MINOR, MAX_HEADER_SIZE, MAX_BUFFERS, ALIGNMENT,
    PREAMBLE_SIZE, TRAILER_SIZE, DIGEST_SIZE, OWN_ALLOCATION, pagein.MIN_TOTAL - 1, PREFAULT_MIN,
    MAX_RATIO["zstd"], MAX_RATIO["lz4"], RATIO_SLACK, PACKS_SINCE[1], FLAG_SIGNED, SIGNATURE_SIZE,
)


# MAP_PRIVATE: pages are shared with the page cache (and with other processes) until
# written; a write copies the page and never reaches the file.
_MAP_COPY = functools.partial(_mmap.mmap, length=0, access=_mmap.ACCESS_COPY)


def read_small(
    source: Source,
    admit: Admit,
    known: tuple[Any, ...] | None = None,
    *,
    mmap: bool = False,
    verify: str = "full",
    keys: list[bytes] | None = None,
) -> tuple[memoryview, list[Any], dict[str, tuple[str, frozenset[str]]]] | None:
    """``open_source(source, mmap=False, verify="full", keys=keys)``'s tree, buffers and
    declared names for a jar under pagein.MIN_TOTAL (whose larger ones the helper
    threads read) with no chunked section, read from a path or a plain file object's
    ``FileRegion``, or copied from bytes, a bytearray or a memoryview, and verified in
    one compiled pass (``_front.c``), large sections in allocations of their own as
    ``read_body`` makes them; compressed sections are then decompressed here, as
    ``_read_all`` does. None for any other jar or source (a file object: see
    ``stream_source``), any damage, or without the compiled helpers: then
    ``open_source`` decides.

    In a fresh process the Python reader's first run costs more than a small model's
    whole decode (iris-knn: ~1.2 of ~2.4 ms, mostly first-touch page faults; mlp: 4.05
    -> 3.50 ms with the front).

    ``known`` - ``(trust.DEFAULT_USES, metadata.SKEW_MODULES)``, for a load that
    trusts only the defaults - lets the front give admit's usual answer itself (all
    names trusted, no version skew); anything else still goes to ``admit``.

    With ``keys`` only a signed jar is taken, and its signature is checked as
    ``_read_all`` checks it (after the digests, before the padding and ``admit``).

    With ``mmap=True`` it is ``open_source(path, mmap=True, verify=verify)``'s answer
    instead, for an unsigned, uncompressed jar of any size: the file mapped
    copy-on-write, the sections memoryviews of the mapping (knn-big: ~1 ms of Python
    before its first array, cold).
    """
    fast = _compiled.speedups
    if fast is None or not (mmap or verify == "full") or (mmap and keys is not None):
        return None  # a read jar is verified in full, or open_source does it
    if not isinstance(source, _FRONT_TAKES):
        return None
    # A path no file can have is left to open_source, which says so (file_path), as is
    # a mapping of bytes or of a file object's region (refused there).
    got = fast.read_small(source, admit, SMALL_SPEC, known, _MAP_COPY if mmap else None,
                          verify == "full",
                          None if keys is None else functools.partial(_signed_by, keys=keys))
    if got is None:
        return None
    if len(got) == 4:
        got = decompressed(got)
    if type(source) is FileRegion:  # read: left at the jar's end, as the Python reader leaves it
        source.stream.seek(source.offset + source.size)
    return got


def decompressed(got: tuple[Any, ...]) -> tuple[memoryview, list[Any], Any]:
    """``fast.read_small``'s answer for a jar with compressed sections (their parts as
    stored, and their codings) as its answer for a raw one: (tree, buffers, declared)."""
    tree, stored, declared, coded = got
    return (*_decoded([tree, *stored], coded), declared)


def _decoded(parts: list[Any], coded: list[tuple[str, int, tuple[int, ...]] | None]) -> tuple[
    memoryview, list[Any]
]:
    """The tree and buffers of the sections the compiled front read and verified, each
    compressed one (``coded[i]``: its codec, size and pack members) decompressed and a
    pack split, as ``_read_all`` does after its checks (and with its checks: the codec's
    frame must agree with the header, the padding in a pack must be zero)."""
    sections = tuple(
        Section(0, len(part), *info) if info else Section(0, len(part), "none", len(part))
        for part, info in zip(parts, coded)
    )
    _decompress(parts, sections, [i for i, info in enumerate(coded) if info])
    return memoryview(parts[0]), _split_packs(parts[1:], sections[1:])


# What the compiled front reads: paths, and jars already in memory (and a FileRegion).
FRONT_SOURCES = (str, os.PathLike, bytes, bytearray, memoryview)


class FileRegion(NamedTuple):
    """A plain file object's jar, for the compiled front: ``size`` bytes from ``offset`` on
    in the file its descriptor ``fd`` has open (read with pread: ``stream`` does not
    move unless the front takes the jar, which leaves it at the jar's end)."""

    fd: int
    offset: int
    size: int
    stream: Any


_FRONT_TAKES = (*FRONT_SOURCES, FileRegion)


def open_source(
    source: Source,
    *,
    mmap: bool,
    admit: Admit,
    keys: list[bytes] | None = None,
    verify: str = "full",
) -> RawJar:
    """Read and verify a jar from a path, a bytes-like object or a binary file object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if mmap:
            raise InvalidArgumentError("mmap=True needs a file path, not bytes")
        view = _byte_view(source)
        return _read_all(_Reader(view, None, zero_copy=False), view.nbytes, admit, keys, verify)
    if isinstance(source, (str, os.PathLike)):
        path = file_path(source)
        with open_to_read(path) as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return _read_special(f, path, st.st_mode, mmap, admit, keys, verify)
            size = st.st_size
            if mmap:
                if size < PREAMBLE_SIZE:
                    return _read_all(_Reader(None, f, zero_copy=False), size, admit, keys, verify)
                mapping = _MAP_COPY(f.fileno())
                return _read_all(
                    _Reader(memoryview(mapping), None, zero_copy=True), size, admit, keys, verify
                )
            return _read_all(_Reader(None, f, zero_copy=False), size, admit, keys, verify)
    if mmap:
        raise InvalidArgumentError("mmap=True needs a file path, not a file object")
    stream_size = _readable_size(source)
    if stream_size is None or not hasattr(source, "readinto"):
        return _read_whole_stream(source, admit, keys, verify)
    return _read_all(_Reader(None, source, zero_copy=False), stream_size, admit, keys, verify)


def _readable_size(source: Any) -> int | None:
    """How many bytes a binary file object has left (None: a stream that cannot say), once
    it is known to be one."""
    if not hasattr(source, "read"):
        raise InvalidArgumentError(
            f"cannot read a skjar from {type(source).__name__}: pass a path, bytes, "
            "or a binary file object opened with 'rb'"
        )
    try:
        probe = source.read(0)
    except io.UnsupportedOperation:
        raise InvalidArgumentError("the file object is not readable: open it with 'rb'") from None
    except ValueError as exc:  # a closed file object
        raise InvalidArgumentError(f"cannot read from this file object: {exc}") from None
    if not isinstance(probe, (bytes, bytearray)):
        raise InvalidArgumentError("the file object is in text mode: open it with 'rb'")
    return _file_size(source)


def stream_source(source: Any) -> memoryview | FileRegion | None:
    """What the compiled front reads of a binary file object, where it is the faster way in
    (in a fresh process the Python reader's first run costs a small model ~1-2 ms more):

    - a plain file (``open(path, "rb")``): its ``FileRegion``, read with pread straight
      into the front's pieces, one copy as from a path;
    - an ``io.BytesIO``: the rest of its own buffer, without a copy (``getvalue`` hands
      it over), the stream moved to its end as if read;
    - any other file object with less than STREAM_WHOLE left, or a stream that cannot
      say how much it holds (which ``open_source`` reads whole anyway): its bytes, read
      whole;
    - None for any other file object, which the Python reader reads straight into its
      sections: read whole first, its bytes would be copied twice, through fresh memory.

    An error for anything that is not a readable binary file object. A file object that
    says how much it holds is read for exactly that much, as the Python reader reads it
    (a device says 0, and ``/dev/zero`` is never read to an end).
    """
    size = _readable_size(source)
    if size is None:
        return memoryview(_read_stream(source))
    if _plain_file(source):  # (its size came from its descriptor and position)
        return FileRegion(source.fileno(), source.tell(), size, source)
    if type(source) is io.BytesIO:
        # (read() would copy a buffer grown by writes, and getbuffer() one made from bytes:
        # a 2.4 MB copy through fresh pages, mlp's warm load 1.0 -> 2.7 ms.)
        here = source.tell()
        source.seek(here + size)
        return memoryview(source.getvalue())[here : here + size]
    if size >= STREAM_WHOLE and hasattr(source, "readinto"):
        return None
    return memoryview(_read_exact(source, size, "the jar") if size else b"")


# Below this, a file object's bytes are read whole for the compiled front (stream_source):
# a copy this small is made in memory malloc reuses, and costs less than the Python
# reader's first run (mlp's 2.4 MB read whole from a file object took 1.7 -> 3.3 ms warm).
STREAM_WHOLE = OWN_ALLOCATION


def _read_special(
    f: IO[bytes], path: str, mode: int, mmap: bool, admit: Admit, keys: list[bytes] | None,
    verify: str,
) -> RawJar:
    """A path that names a pipe or a socket is read as a stream, as such a file object is;
    a device is refused (``/dev/zero`` would be read forever)."""
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        raise InvalidArgumentError(f"{path!r} is not a regular file or a pipe: nothing to load")
    if mmap:
        raise InvalidArgumentError(
            f"mmap=True needs a regular file; {path!r} is a pipe or a socket"
        )
    return _read_whole_stream(f, admit, keys, verify)


def _read_whole_stream(
    f: IO[bytes], admit: Admit, keys: list[bytes] | None, verify: str
) -> RawJar:
    """A pipe or a socket: its size cannot be checked up front, so it is read into memory
    first (memory follows the bytes sent, never a size the header declares)."""
    view = memoryview(_read_stream(f))
    return _read_all(_Reader(view, None, zero_copy=False), view.nbytes, admit, keys, verify)


def _byte_view(source: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(source)
    if not view.c_contiguous:
        raise InvalidArgumentError(
            "the memoryview is not contiguous: pass bytes(view), or a contiguous view"
        )
    return view.cast("B")


def _read_stream(f: IO[bytes]) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class HeaderView(NamedTuple):
    """What the preamble and header say, before any data is read.

    (A tuple: made on every inspect and audit, where a frozen dataclass's setattr per
    field is a measurable part of the time.)
    """

    version: tuple[int, int]
    flags: int
    header: dict[str, Any]
    layout: Layout
    size: int | None

    @property
    def signed(self) -> bool:
        return bool(self.flags & FLAG_SIGNED)


def read_header(source: Source) -> HeaderView:
    """Only the preamble and header (no data read, nothing verified beyond their shape)."""
    version, flags, header, tree, buffers, data_end, size = read_header_fields(source)
    return HeaderView(version, flags, header, Layout(tree, buffers, data_end), size)


def read_header_fields(source: Source, *, compiled: bool = True) -> tuple[Any, ...]:
    """read_header's answer as one flat tuple, HeaderView's fields with its layout's
    spread: (version, flags, header, tree, buffers, data_end, size). With ``compiled``
    the common case is one compiled call (_front.c's read_head); without it, or when that
    declines, the Python reads it (api's inspect and audit, whose compiled read_info has
    declined already)."""
    fast = _compiled.speedups if compiled else None
    got = (
        fast.read_head(source, Section, SMALL_SPEC)
        if fast is not None and isinstance(source, FRONT_SOURCES)
        else None
    )
    if got is not None:
        version, header, tree, buffers, data_end, size, flags = got
        return version, flags, header, tree, buffers, data_end, size
    view = _read_header_python(source)
    return (view.version, view.flags, view.header, *view.layout, view.size)


def _read_header_python(source: Source) -> HeaderView:
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = _byte_view(source)
        version, flags, n = parse_preamble(bytes(view[:PREAMBLE_SIZE]))
        if PREAMBLE_SIZE + n > view.nbytes:
            raise CorruptFileError("the file is truncated inside the header")
        header = parse_header(view[PREAMBLE_SIZE : PREAMBLE_SIZE + n])
        layout = plan_layout(n, header["layout"], version)
        return HeaderView(version, flags, header, layout, view.nbytes)
    if isinstance(source, (str, os.PathLike)):
        with open_to_read(file_path(source)) as f:
            return _read_header_file(f)
    return _read_header_file(source)


def _read_header_file(f: IO[bytes]) -> HeaderView:
    size = _readable_size(f)
    version, flags, n = parse_preamble(f.read(PREAMBLE_SIZE))
    if size is not None and PREAMBLE_SIZE + n > size:
        raise CorruptFileError("the file is truncated inside the header")
    header = parse_header(_read_exact(f, n, "the header"))
    return HeaderView(version, flags, header, plan_layout(n, header["layout"], version), size)
