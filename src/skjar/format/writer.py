"""Writing a jar: sections in order, each aligned, digest in the trailer, atomically on disk."""

from __future__ import annotations

import contextlib
import functools
import os
import struct
from collections.abc import Callable
from typing import IO, Any, Protocol

import numpy as np

from .. import _compiled
from .._paths import cannot_write
from .compression import PARALLEL_MIN, Compressor, iter_parallel
from .digest import new_hasher
from .header import encode_header, pack_offsets
from .reader import OWN_ALLOCATION
from .spec import (
    ALIGNMENT,
    CHUNKS_SINCE,
    END_MAGIC,
    FLAG_SIGNED,
    MAGIC,
    PACKS_SINCE,
    PREAMBLE_SIZE,
    WITHOUT_PACKS,
    align,
)

_ZEROS = bytes(ALIGNMENT)
# Below this a section is not worth a compressor call.
MIN_COMPRESS = 256
# When compressing, runs of consecutive buffers smaller than PACK_MEMBER_MAX are
# compressed together as packs (format 1.2) of up to PACK_MAX bytes: one frame, not one
# per array, so small arrays share their context (hgb's 132 buffers: 259 -> 218 KB with
# zstd) and a load makes one decompressor call per pack. PACK_MEMBER_MAX is the
# reader's OWN_ALLOCATION: buffers below it share one allocation in an uncompressed
# load too, so a pack pins no more memory than the plain layout does.
PACK_MEMBER_MAX = OWN_ALLOCATION
PACK_MAX = 4 << 20
# When compressing, a buffer larger than CHUNK is stored in chunks of CHUNK bytes
# compressed apart (format 1.3), so that a load decompresses them on every core and
# frees each chunk's stored bytes once it is decompressed. knn-big's 488 MB array: 541.15
# MB with zstd in one frame, 541.08 in 4 MiB chunks; spam-tfidf's 17 MB string buffer
# 12.87 -> 12.98 MB. lz4 in one 488 MB block compressed in 2.7 s, in chunks 0.12 s.
CHUNK = 4 << 20
# A durable save ends with fsync, which waits until every dirty page is on disk. Asking
# the kernel to start writing each WRITEBACK_CHUNK as soon as it is written overlaps
# that wait with the rest of the write (91 MB: write + fsync 50 -> 31 ms; 512 MB: 298
# -> 248 ms, medians of 8 on this machine). Smaller files gain nothing measurable.
WRITEBACK_CHUNK = 8 << 20
# Each writev hands the kernel about WRITE_CHUNK: one 8 MiB writev stalled forest's 87 MB
# save at 130-210 ms in 10 of 40 saves, 1 MiB writevs in none (medians level; in the
# benchmark, where other work runs between saves, 7 of 30 against 5 of 45). Most likely
# the kernel's dirty-page throttling, which pauses a writer that has just dirtied many
# pages at once for up to 200 ms.
WRITE_CHUNK = 1 << 20


class Writable(Protocol):
    """What ``write_atomic`` hands its writer: a binary file to ``write`` to, nothing else."""

    def write(self, data: Any, /) -> int: ...


class Sections:
    """The layout table and the payloads in file order, planned one buffer at a time
    (``plan_sections``) and compressed at the end, on every core (``finish``)."""

    def __init__(self, tree: memoryview, compress: tuple[str, int] | None) -> None:
        self.tree = tree
        self.compressor = Compressor(*compress) if compress is not None else None
        # What will be stored, in file order: data, and a pack's member sizes (or None).
        self.planned: list[tuple[memoryview, list[int] | None]] = []
        self.run: list[memoryview] = []  # small buffers waiting to be packed
        self.run_size = 0

    def compressed(self, data: memoryview) -> tuple[Any, str]:
        """``data`` compressed if that is worth it, else as it is (then mmap-able)."""
        assert self.compressor is not None  # only asked when compressing
        if data.nbytes < MIN_COMPRESS:
            return data, "none"
        packed = self.compressor.compress(data)
        if len(packed) >= data.nbytes:
            return data, "none"
        return packed, self.compressor.codec

    def add(self, view: memoryview) -> None:
        if self.compressor is None or view.nbytes >= PACK_MEMBER_MAX:
            self.flush()
            self.planned.append((view, None))
            return
        if align(self.run_size) + view.nbytes > PACK_MAX:
            self.flush()
        self.run_size = align(self.run_size) + view.nbytes
        self.run.append(view)

    def flush(self) -> None:
        """Plan the waiting run: a pack of two or more buffers, else the one buffer."""
        run, size = self.run, self.run_size
        self.run, self.run_size = [], 0
        if len(run) == 1:
            self.planned.append((run[0], None))
        elif run:
            sizes = [v.nbytes for v in run]
            joined = bytearray(size)
            for offset, view in zip(pack_offsets(sizes), run):
                joined[offset : offset + view.nbytes] = view
            self.planned.append((memoryview(joined), sizes))

    def chunks(self, view: memoryview, members: list[int] | None) -> int:
        """In how many chunks a planned buffer is compressed: 0 for a whole section (a
        pack, at most PACK_MAX, is never chunked)."""
        if self.compressor is None or members is not None or view.nbytes <= CHUNK:
            return 0
        return -(-view.nbytes // CHUNK)

    @property
    def work(self) -> int:
        """Bytes to compress (0 when not compressing)."""
        if self.compressor is None:
            return 0
        return self.tree.nbytes + sum(view.nbytes for view, _ in self.planned)

    def finish(self, place: Callable[[Any], None] | None = None) -> tuple[dict[str, Any], list[Any]]:
        """Compress everything planned, on every core; the layout table and the payloads in
        file order (a chunked section's payload is the list of its chunks). ``place`` is
        given each payload, in file order, as soon as it is final: while the threads
        are still compressing the sections after it."""
        tree, compressor = self.tree, self.compressor
        payloads: list[Any]
        if compressor is None:  # (a raw section's length is its size)
            entries: list[Any] = [[view.nbytes, view.nbytes, "none"] for view, _ in self.planned]
            payloads = [tree, *[view for view, _ in self.planned]]
            if place is not None:
                for payload in payloads:
                    place(payload)
            return {"tree": _tree_entry(tree, "none", tree.nbytes), "buffers": entries}, payloads
        payloads = []
        add = payloads.append
        if place is not None:

            def add(payload: Any) -> None:
                payloads.append(payload)
                place(payload)

        # One job per whole section (the tree: the structure digest ends where it ends),
        # or per chunk of a large buffer.
        compress, whole = compressor.compress, self.compressed
        jobs: list[Callable[[], Any]] = [functools.partial(whole, tree)]
        for view, members in self.planned:
            if self.chunks(view, members):
                jobs += [
                    functools.partial(compress, view[at : at + CHUNK])
                    for at in range(0, view.nbytes, CHUNK)
                ]
            else:
                jobs.append(functools.partial(whole, view))
        # (Closed on the way out: a failed write stops the compression behind it.)
        with contextlib.closing(iter_parallel(jobs, self.work)) as done:
            tree_data, tree_codec = next(done)
            entries = []
            add(tree_data)
            for view, members in self.planned:
                count = self.chunks(view, members)
                if count:
                    chunks = [next(done) for _ in range(count)]
                    lengths = [len(chunk) for chunk in chunks]
                    if sum(lengths) < view.nbytes:
                        chunking = {"chunk": CHUNK, "lengths": lengths}
                        entries.append([sum(lengths), view.nbytes, compressor.codec, chunking])
                        add(chunks)
                    else:  # incompressible: stored as it is, so it stays mmap-able
                        entries.append(_entry(view, "none", view.nbytes))
                        add(view)
                    continue
                data, codec = next(done)
                if members is None or codec != "none":
                    entries.append(_entry(data, codec, view.nbytes, members))
                    add(data)
                    continue
                # The pack would not compress: its buffers one by one, maybe raw.
                for offset, size in zip(pack_offsets(members), members):
                    data, codec = self.compressed(view[offset : offset + size])
                    entries.append(_entry(data, codec, size))
                    add(data)
        table = {"tree": _tree_entry(tree_data, tree_codec, tree.nbytes), "buffers": entries}
        return table, payloads

    def bound(self) -> dict[str, Any]:
        """A layout table whose JSON is at least as long as the one ``finish`` will make,
        known before anything is compressed: every length its section's size (a section
        is stored compressed only when that is smaller) or, for a chunk, its codec's
        worst case; every codec named "none" (the longest name); a pack that may be
        stored member by member counted in whichever form is longer."""
        entries: list[Any] = []
        for view, members in self.planned:
            size = view.nbytes
            count = self.chunks(view, members)
            if count:
                lengths = [_frame_bound(min(CHUNK, size - at)) for at in range(0, size, CHUNK)]
                entries.append([size, size, "none", {"chunk": CHUNK, "lengths": lengths}])
            elif members is None:
                entries.append([size, size, "none"])
            else:
                whole = [[size, size, "none", members]]
                apart = [[member, member, "none"] for member in members]
                longer = len(encode_header(whole)) >= len(encode_header(apart))
                entries += whole if longer else apart
        size = self.tree.nbytes
        return {"tree": {"length": size, "size": size, "codec": "none"}, "buffers": entries}


def _tree_entry(data: Any, codec: str, size: int) -> dict[str, Any]:
    return {"length": len(data), "size": size, "codec": codec}


def _entry(data: Any, codec: str, size: int, members: list[int] | None = None) -> list[Any]:
    """A layout table entry; stored raw, a section's length is its size (``data`` may be a
    memoryview of wider items, whose len() is not its byte count)."""
    entry = [len(data) if codec != "none" else size, size, codec]
    return entry if members is None else [*entry, members]


def _frame_bound(size: int) -> int:
    """At least the largest frame zstd or lz4 makes of ``size`` bytes (ZSTD_COMPRESSBOUND:
    size + size/256 + 64 at most; LZ4_COMPRESSBOUND: size + size/255 + 16)."""
    return size + (size >> 7) + 128


def plan_sections(
    tree: bytes, buffers: list[np.ndarray], compress: tuple[str, int] | None
) -> Sections:
    """The sections a jar will hold, in file order; nothing compressed yet (``finish``)."""
    sections = Sections(memoryview(tree), compress)
    if compress is None:  # every buffer a section of its own (what add() would plan)
        sections.planned = [(memoryview(buf), None) for buf in buffers]  # type: ignore[arg-type]
        return sections
    for buf in buffers:
        sections.add(memoryview(buf))  # type: ignore[arg-type]
    sections.flush()
    return sections


def format_version(layout: dict[str, Any]) -> tuple[int, int]:
    """The oldest format version that holds ``layout``: 1.3 with chunks, 1.2 with packs,
    else 1.1."""
    extras = [type(entry[3]) for entry in layout["buffers"] if len(entry) == 4]
    if dict in extras:
        return CHUNKS_SINCE
    return PACKS_SINCE if extras else WITHOUT_PACKS


def write_jar(
    write: Callable[[Any], Any],
    header: dict[str, Any],
    payloads: list[Any],
    signer: Any = None,
    head_size: int | None = None,
    write_file: FileJarWriter | None = None,
) -> int:
    """Write a complete jar through ``write``; returns the number of bytes written.

    With ``signer`` (an Ed25519 private key) the preamble's signed flag is set
    and a signature block over everything before it precedes the trailer. With
    ``head_size`` the header is padded with spaces to that many bytes (JSON allows
    whitespace after the value): ``write_streamed`` places the sections before it
    knows the header. ``write_file`` (``_FileWriter.jar_writer``), when given for an
    unsigned jar, writes it all - the front, the payloads and the trailer - in one
    compiled call, as the Python below does.
    """
    head = encode_header(header)
    if head_size is not None:
        if len(head) > head_size:  # (bound() makes this impossible)
            raise AssertionError(f"a {len(head)}-byte header outgrew its {head_size} bytes")
        head += b" " * (head_size - len(head))
    flags = FLAG_SIGNED if signer is not None else 0
    major, minor = format_version(header["layout"])
    front = MAGIC + struct.pack("<HHIQ", major, minor, flags, len(head)) + head
    if write_file is not None and signer is None:
        return write_file(front, payloads)
    return _write_whole(write, front, payloads, signer)


# (front, payloads) -> bytes written: an unsigned jar written whole, as _write_whole does.
FileJarWriter = Callable[[bytes, list[Any]], int]


def _write_whole(write: Callable[[Any], Any], front: bytes, payloads: list[Any], signer: Any) -> int:
    """``front`` (the preamble and header), then the payloads, each aligned, the signature
    block when signing, and the trailer; the bytes written. The reference for the compiled
    ``write_jar``."""
    hasher = new_hasher()
    message = None
    if signer is not None:
        from ..signing import new_message_hasher

        message = new_message_hasher()
    written = 0

    def emit(data: Any) -> None:
        nonlocal written
        hasher.update(data)
        if message is not None:
            message.update(data)
        write(data)
        written += memoryview(data).nbytes

    emit(front)
    pos = len(front)
    structure = b""
    for data in payloads:
        pad = align(pos) - pos
        if pad:
            emit(_ZEROS[:pad])
        pos += pad
        for piece in data if type(data) is list else (data,):  # a chunked section's chunks
            emit(piece)
            pos += memoryview(piece).nbytes
        if not structure:  # the tree is the first payload
            structure = hasher.copy().digest()
    if signer is not None:
        from ..signing import sign_digest

        assert message is not None
        block = sign_digest(signer, message.digest())
        message = None  # the signature block is not part of the signed message
        emit(block)
    digest = hasher.digest()
    write(structure)
    write(digest)
    write(END_MAGIC)
    return written + len(structure) + len(digest) + len(END_MAGIC)


def write_sections(
    out: Writable, header: dict[str, Any], sections: Sections, signer: Any = None
) -> None:
    """Write a jar to the file ``write_atomic`` hands its writer: ``header`` with the
    layout ``sections`` make, then the sections.

    A save with compression work enough to use every core is written by
    ``write_streamed``; any other one is compressed first, then written in order.
    """
    if (
        isinstance(out, _FileWriter)
        and out.can_patch
        and sections.compressor is not None
        and sections.work >= PARALLEL_MIN
    ):
        write_streamed(out, header, sections, signer)
        return
    layout, payloads = sections.finish()
    whole = out.jar_writer() if isinstance(out, _FileWriter) else None
    write_jar(out.write, {**header, "layout": layout}, payloads, signer, write_file=whole)


def write_streamed(
    out: _FileWriter, header: dict[str, Any], sections: Sections, signer: Any = None
) -> None:
    """Write each section as soon as it is compressed, while the threads compress the
    next ones, and the header last.

    The header comes first in the file but holds every section's compressed length, so
    its room is reserved from ``sections.bound()`` and the header, padded with spaces,
    is written into it at the end: the writing and its writeback overlap the
    compression (forest under zstd, 87 MB: 261 -> 229 ms; lz4 195 -> 147 ms). ``write_jar`` then passes over
    the whole jar in file order as it always does, to hash it and write the header
    and trailer; the sections it finds already written are not written again. The
    file's bytes depend on the sections only, not on the number of cores.
    """
    head_size = len(encode_header({**header, "layout": sections.bound()}))
    start = align(PREAMBLE_SIZE + head_size)
    out.skip_to(start)
    pos = start

    def place(payload: Any) -> None:  # as write_jar lays it out
        nonlocal pos
        pad = align(pos) - pos
        if pad:
            out.write(_ZEROS[:pad])
            pos += pad
        for piece in payload if type(payload) is list else (payload,):  # a chunked one's chunks
            out.write(piece)
            pos += memoryview(piece).nbytes

    layout, payloads = sections.finish(place)
    out.flush()
    front = bytearray()  # preamble, header and padding: written into the room left
    at = 0

    def write(data: Any) -> None:
        nonlocal at
        size = memoryview(data).nbytes
        if at < start:
            front.extend(data)
        elif at >= pos:
            out.write(data)  # the signature block and trailer, after the sections
        at += size

    write_jar(write, {**header, "layout": layout}, payloads, signer, head_size)
    if len(front) != start:  # (write_jar pads the header to `start` before the tree)
        raise AssertionError(f"the jar's front is {len(front)} bytes, not {start}")
    out.patch(0, front)


def writer_for(stream: Any) -> Callable[[Any], None]:
    """A write function that writes everything, even on raw streams that write short."""

    def write(data: Any) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            n = stream.write(view)
            if n is None:  # non-blocking stream with nothing written
                continue
            view = view[n:]

    return write


def write_atomic(path: str, writer: Callable[[Writable], Any]) -> None:
    """Write a file so that ``path`` holds either its old content or the complete new one.

    A temporary file in the same directory is written, fsynced and renamed over
    ``path``; the directory is then fsynced so the rename survives a crash. On any
    exception the temporary file is removed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = _new_temporary(directory)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        try:
            out = _FileWriter(fd, _compiled.speedups)
            writer(out)
            out.flush()
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise cannot_write(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:  # (a bare try: contextlib.suppress adds two Python calls, cold in every save)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _gather_max() -> int:
    """Pieces handed to the kernel in one writev at most (POSIX guarantees 16; Linux 1024)."""
    try:
        return max(16, min(1024, os.sysconf("SC_IOV_MAX")))
    except (AttributeError, ValueError, OSError):  # no sysconf, or no such name here
        return 16


_GATHER_MAX = _gather_max()
_HAS_WRITEV = hasattr(os, "writev")


class _FileWriter:
    """The file ``write_atomic`` writes, written straight to its descriptor.

    Pieces are gathered and handed to the kernel in one ``writev`` per
    ``WRITE_CHUNK``: a jar is written in a few system calls, where a buffered
    file took a Python step per piece and pad (mlp, 2.4 MB in 50 pieces: 1.07 ->
    0.89 ms to write). After each ``WRITEBACK_CHUNK`` the kernel is asked to start
    writing it back (compiled ``start_writeback``), so that the closing fsync has less
    left to wait for; a large array is written a chunk at a time for that.
    """

    can_patch = hasattr(os, "pwrite")  # (not on Windows)

    def __init__(self, fd: int, speedups: Any) -> None:
        """``speedups``: the compiled helpers (``_compiled.speedups``), or None."""
        self.fd = fd
        self.start_writeback = speedups.start_writeback if speedups is not None else None
        self.compiled_jar = speedups.write_jar if speedups is not None and _HAS_WRITEV else None
        self.pending: list[memoryview] = []
        self.pending_bytes = 0
        self.written = self.started = 0

    def skip_to(self, offset: int) -> None:
        """Go on writing at ``offset`` of the (still empty) file; ``patch`` fills the gap."""
        self.flush()
        os.lseek(self.fd, offset, os.SEEK_SET)
        self.written = self.started = offset

    def patch(self, offset: int, data: Any) -> None:
        """Write ``data`` at ``offset``, leaving the end where it is."""
        view = memoryview(data).cast("B")
        while view.nbytes:
            n = os.pwrite(self.fd, view, offset)
            if n <= 0:
                raise OSError("the file system accepted no bytes")
            view, offset = view[n:], offset + n

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for at in range(0, view.nbytes, WRITE_CHUNK):
            piece = view[at : at + WRITE_CHUNK]
            self.pending.append(piece)
            self.pending_bytes += piece.nbytes
            if self.pending_bytes >= WRITE_CHUNK or len(self.pending) >= _GATHER_MAX:
                self.flush()
        return view.nbytes

    def jar_writer(self) -> FileJarWriter | None:
        """``write_jar``'s compiled writer for this file, if it has one and nothing is
        written yet (the jar's alignment is counted from the file's start)."""
        if self.compiled_jar is None or self.written or self.pending:
            return None
        return self._write_jar

    def _write_jar(self, front: bytes, payloads: list[Any]) -> int:
        start = self.written
        self.written, self.started = self.compiled_jar(  # type: ignore[misc]
            self.fd, front, payloads, END_MAGIC, ALIGNMENT, self.written, self.started,
            WRITE_CHUNK, WRITEBACK_CHUNK,
        )
        return self.written - start

    def flush(self) -> None:
        """Write everything pending (the file's end included), then start its writeback."""
        pending = self.pending
        while pending:
            n = os.writev(self.fd, pending) if _HAS_WRITEV else os.write(self.fd, pending[0])
            if n <= 0 and any(p.nbytes for p in pending):
                raise OSError("the file system accepted no bytes")
            self.written += n
            while pending and n >= pending[0].nbytes:  # drop what was written
                n -= pending.pop(0).nbytes
            if n:
                pending[0] = pending[0][n:]
        self.pending_bytes = 0
        if self.start_writeback is not None and self.written - self.started >= WRITEBACK_CHUNK:
            self.start_writeback(self.fd, self.started, self.written - self.started)
            self.started = self.written


# O_BINARY: on Windows a descriptor is opened in text mode without it (as mkstemp knows).
_TEMPORARY_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
)


def _new_temporary(directory: str) -> tuple[int, str]:
    """A new file in ``directory`` with a random name, open for writing.

    Created with mode 0o666 less the umask, as ``open(path, "wb")`` creates a file, so
    the jar needs no chmod after (tempfile.mkstemp makes it 0o600, and its Python name
    generator was a tenth of a small model's save with cold caches).
    """
    for _ in range(100):
        tmp = os.path.join(directory, f".skjar-{os.urandom(8).hex()}.tmp")
        try:
            return os.open(tmp, _TEMPORARY_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {directory!r}")


def sign_existing(src: str, dst: str, tree_end: int, data_end: int, signer: Any) -> None:
    """Rewrite the verified jar ``src`` into ``dst`` with the signed flag and a new signature."""
    from ..signing import new_message_hasher, sign_digest

    with open(src, "rb") as f:
        head = bytearray(f.read(PREAMBLE_SIZE))
        struct.pack_into("<I", head, 12, struct.unpack_from("<I", head, 12)[0] | FLAG_SIGNED)

        def writer(out: Writable) -> None:
            hasher, message = new_hasher(), new_message_hasher()
            structure = new_hasher()
            pos = 0
            for chunk in _chunks(f, bytes(head), data_end):
                hasher.update(chunk)
                message.update(chunk)
                if pos < tree_end:
                    structure.update(chunk[: tree_end - pos])
                pos += len(chunk)
                out.write(chunk)
            block = sign_digest(signer, message.digest())
            hasher.update(block)
            out.write(block)
            out.write(structure.digest())
            out.write(hasher.digest())
            out.write(END_MAGIC)

        write_atomic(dst, writer)


def _chunks(f: IO[bytes], head: bytes, end: int, size: int = 1 << 22) -> Any:
    yield head
    pos = len(head)
    f.seek(pos)
    while pos < end:
        chunk = f.read(min(size, end - pos))
        if not chunk:
            raise OSError("the file shrank while it was being signed")
        pos += len(chunk)
        yield chunk
