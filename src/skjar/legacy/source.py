"""Reading legacy files: compression detection, bounded decompression, buffered bytes.

joblib writes its files either raw or through one of six compressors, and
recognises them on load by their first bytes (``joblib.numpy_pickle_utils.
_detect_compressor``). This module does the same, then exposes the
(decompressed) bytes as a :class:`ByteSource`: exact reads that fail with
``CorruptFileError`` on truncation, that check a requested length against
what is left of a file of known size *before* allocating anything, and that
grow their allocation only as real data arrives when the size is unknown
(compressed streams), so a lying length can never reserve memory.

>>> import io
>>> src = ByteSource(io.BytesIO(b"\\x80\\x04K\\x01."), size=5)
>>> src.read_byte(), src.read(2), src.remaining()
(128, b'\\x04K', 2)
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from .._paths import file_path, open_to_read
from ..errors import CorruptFileError, InvalidArgumentError, ReadError
from ..format.spec import MAGIC

__all__ = [
    "MAX_EXPANSION",
    "ByteSource",
    "Opened",
    "compression_of",
    "open_legacy",
]

CHUNK = 1 << 20
# A compressed stream may expand to at most this many times its size (plus
# SLACK): more is treated as a decompression bomb and refused while streaming.
# deflate cannot exceed ~1032:1 and lz4 ~255:1; bz2 and xz can go far higher
# on runs of zeros, so they get a generous bound.
MAX_EXPANSION = 1 << 16
EXPANSION = {"zlib": 1100, "gzip": 1100, "compat": 1100, "lz4": 300}
SLACK = 1 << 26
# joblib's magic numbers (joblib/compressor.py), in joblib's detection order.
ZFILE_PREFIX = b"ZF"
PREFIXES: tuple[tuple[str, bytes], ...] = (
    ("zlib", b"\x78"),
    ("gzip", b"\x1f\x8b"),
    ("bz2", b"BZ"),
    ("lzma", b"\x5d\x00"),
    ("xz", b"\xfd\x37\x7a\x58\x5a"),
    ("lz4", b"\x04\x22\x4d\x18"),
)
ZFILE_LENGTH_WIDTH = len(f"{2**64:#x}")  # joblib's _MAX_LEN


def compression_of(head: bytes) -> str:
    """The compressor joblib would detect from a file's first bytes.

    >>> compression_of(b"\\x1f\\x8b\\x08"), compression_of(b"\\x80\\x05"), compression_of(b"ZF0x")
    ('gzip', 'none', 'compat')
    """
    if head.startswith(ZFILE_PREFIX):
        return "compat"
    for name, prefix in PREFIXES:
        if head.startswith(prefix):
            return name
    return "none"


# -- bounded decompression ---------------------------------------------------
class _Decompressor:
    """One streaming codec behind a uniform ``feed(data, max_length)`` API."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._tail = b""
        self._d: Any
        if kind in ("zlib", "gzip", "compat"):
            self._d = zlib.decompressobj(31 if kind == "gzip" else zlib.MAX_WBITS)
        elif kind == "bz2":
            self._d = bz2.BZ2Decompressor()
        elif kind == "lzma":
            self._d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
        elif kind == "xz":
            self._d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        elif kind == "lz4":
            try:
                import lz4.frame
            except ImportError:
                raise ReadError(
                    "this file is compressed with lz4, which is not installed: "
                    "pip install lz4 (or skjar[compress])"
                ) from None
            self._d = lz4.frame.LZ4FrameDecompressor()
        else:  # pragma: no cover - guarded by the callers
            raise InvalidArgumentError(f"unknown compression {kind!r}")

    @property
    def eof(self) -> bool:
        return bool(self._d.eof)

    def needs_input(self) -> bool:
        if isinstance(self._d, type(zlib.decompressobj())):
            return not self._tail
        return bool(self._d.needs_input)

    def feed(self, data: bytes, max_length: int) -> bytes:
        if isinstance(self._d, type(zlib.decompressobj())):
            out = self._d.decompress(self._tail + data, max_length)
            self._tail = self._d.unconsumed_tail
            return bytes(out)
        return bytes(self._d.decompress(data, max_length=max_length))


class DecompressingReader(io.RawIOBase):
    """A read-only stream of the decompressed bytes of ``raw``, never more than ``limit``.

    >>> import gzip
    >>> r = DecompressingReader(io.BytesIO(gzip.compress(b"abc" * 3)), "gzip", limit=100)
    >>> r.read(4), r.read(100), r.read(1)
    (b'abca', b'bcabc', b'')
    """

    def __init__(self, raw: IO[bytes], kind: str, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._codec = _Decompressor(kind)
        self._limit = limit
        self._produced = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit + 1
        chunks: list[bytes] = []
        got = 0
        while got < size and not self._codec.eof:
            data = b""
            if self._codec.needs_input():
                data = self._raw.read(CHUNK)
                if not data:
                    raise CorruptFileError(
                        f"the {self._codec.kind} stream is truncated: it ends before its "
                        "end-of-stream marker"
                    )
            try:
                out = self._codec.feed(data, min(size - got, CHUNK * 16))
            except (OSError, EOFError, ValueError, RuntimeError, zlib.error, lzma.LZMAError) as exc:
                raise CorruptFileError(
                    f"the {self._codec.kind} stream is damaged: {type(exc).__name__}: {exc}"
                ) from None
            if out:
                self._produced += len(out)
                if self._produced > self._limit:
                    raise CorruptFileError(
                        f"the {self._codec.kind} stream expands to more than {self._limit} "
                        "bytes, far more than its size allows: refused as a decompression bomb"
                    )
                chunks.append(out)
                got += len(out)
        return b"".join(chunks)

    def readinto(self, b: Any) -> int:  # pragma: no cover - RawIOBase protocol
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


# -- buffered exact reads ----------------------------------------------------
class ByteSource:
    """Exact, bounded reads over a binary stream (see the module docstring).

    ``size`` is the number of bytes the stream holds when known (a plain
    file); every length is then checked against what is left before reading.
    """

    def __init__(self, stream: IO[bytes] | io.RawIOBase, size: int | None = None) -> None:
        self._stream = stream
        self._size = size
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]

    # position and limits
    def tell(self) -> int:
        """Bytes consumed so far."""
        return self._base + self._pos

    def remaining(self) -> int | None:
        """Bytes left when the total size is known, else None."""
        return None if self._size is None else self._size - self.tell()

    def check_available(self, n: int, what: str) -> None:
        """Refuse a read of ``n`` bytes that cannot be satisfied, before allocating it."""
        if n < 0:
            raise CorruptFileError(f"{what}: negative length {n}")
        left = self.remaining()
        if left is not None and n > left:
            raise CorruptFileError(
                f"{what} declares {n} bytes but only {left} remain in the file: "
                "the file is truncated or crafted"
            )

    def _refill(self) -> bool:
        data = self._stream.read(CHUNK)
        if not data:
            return False
        self._base += len(self._buf)
        self._buf = bytes(data)
        self._pos = 0
        return True

    def _eof(self, what: str) -> CorruptFileError:
        return CorruptFileError(
            f"the file ends in the middle of {what} (at byte {self.tell()}): it is truncated"
        )

    # reads
    def read_byte(self) -> int:
        """One byte, as an int."""
        if self._pos >= len(self._buf) and not self._refill():
            raise self._eof("the pickle stream")
        b = self._buf[self._pos]
        self._pos += 1
        return b

    def read(self, n: int, what: str = "a value") -> bytes:
        """Exactly ``n`` bytes."""
        self.check_available(n, what)
        end = self._pos + n
        if end <= len(self._buf):
            out = self._buf[self._pos : end]
            self._pos = end
            return out
        chunks = [self._buf[self._pos :]]
        got = len(chunks[0])
        offset = self._base + len(self._buf)
        self._buf, self._pos = b"", 0
        while got < n:
            data = self._stream.read(min(n - got, CHUNK * 64))
            if not data:
                self._base = offset
                raise self._eof(what)
            chunks.append(bytes(data))
            got += len(data)
            offset += len(data)
        self._base = offset
        return b"".join(chunks)

    def read_into(self, out: memoryview, what: str) -> None:
        """Fill ``out`` (a writable byte view) exactly."""
        n = out.nbytes
        self.check_available(n, what)
        take = min(n, len(self._buf) - self._pos)
        out[:take] = self._buf[self._pos : self._pos + take]
        self._pos += take
        if take == n:
            return
        offset = self._base + len(self._buf)
        self._buf, self._pos = b"", 0
        got = take
        while got < n:
            data = self._stream.read(min(n - got, CHUNK * 64))
            if not data:
                self._base = offset
                raise self._eof(what)
            out[got : got + len(data)] = data
            got += len(data)
            offset += len(data)
        self._base = offset

    def skip(self, n: int, what: str) -> None:
        """Consume ``n`` bytes without keeping them."""
        self.check_available(n, what)
        while n > 0:
            if self._pos >= len(self._buf) and not self._refill():
                raise self._eof(what)
            take = min(n, len(self._buf) - self._pos)
            self._pos += take
            n -= take

    def readline(self, what: str = "a text line", limit: int = 1 << 40) -> bytes:
        """Bytes up to and including the next newline (at most ``limit``)."""
        parts: list[bytes] = []
        total = 0
        while True:
            if self._pos >= len(self._buf) and not self._refill():
                raise self._eof(what)
            i = self._buf.find(b"\n", self._pos)
            if i >= 0:
                parts.append(self._buf[self._pos : i + 1])
                self._pos = i + 1
                return b"".join(parts)
            part = self._buf[self._pos :]
            parts.append(part)
            total += len(part)
            self._pos = len(self._buf)
            if total > limit:
                raise CorruptFileError(f"{what} is longer than {limit} bytes")


# -- opening -----------------------------------------------------------------
@dataclass
class Opened:
    """A legacy file ready to be read, possibly more than once.

    ``open()`` gives a fresh :class:`ByteSource` over the decompressed pickle
    stream each time it is called (the reader makes a checking pass, then a
    building pass). ``directory`` is where joblib's old sidecar array files
    live, when the input is a path.
    """

    compression: str
    open: Callable[[], ByteSource]
    directory: str | None


def _zfile_length(raw: IO[bytes]) -> int:
    """The declared decompressed length of an old joblib 'ZF' file; leaves raw at the data."""
    head = raw.read(len(ZFILE_PREFIX) + ZFILE_LENGTH_WIDTH)
    text = head[len(ZFILE_PREFIX) :].strip()
    try:
        length = int(text, 16)
    except ValueError:
        raise CorruptFileError(f"old joblib file: unreadable length field {text!r:.40}") from None
    nxt = raw.read(1)
    if nxt != b" ":
        raw.seek(raw.tell() - len(nxt))
    return length


@contextmanager
def open_legacy(src: Any) -> Iterator[Opened]:
    """Open a pickle/joblib file (a path or a binary file object) for safe reading.

    >>> import pickle, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "x.pkl")
    >>> with open(path, "wb") as f:
    ...     pickle.dump([1, 2], f)
    >>> with open_legacy(path) as opened:
    ...     opened.compression, opened.open().read_byte()
    ('none', 128)
    """
    directory: str | None = None
    owned: IO[bytes] | None = None
    if isinstance(src, (str, os.PathLike)):
        path = file_path(src)
        owned = open_to_read(path, "a pickle or joblib file")  # closed below
        fileobj: IO[bytes] = owned
        directory = os.path.dirname(os.path.abspath(path))
    elif hasattr(src, "read"):
        fileobj = src
    else:
        raise InvalidArgumentError(
            f"convert reads from a path or a binary file object, not {type(src).__name__}"
        )
    try:
        try:
            start = fileobj.tell()
            fileobj.seek(0, os.SEEK_END)
            end = fileobj.tell()
            fileobj.seek(start)
        except (OSError, AttributeError, io.UnsupportedOperation):
            data = fileobj.read()
            if not isinstance(data, bytes):
                raise InvalidArgumentError(
                    "the file object is in text mode: open it with 'rb'"
                ) from None
            fileobj, start, end = io.BytesIO(data), 0, len(data)
        head = fileobj.read(8)
        if not isinstance(head, bytes):
            raise InvalidArgumentError("the file object is in text mode: open it with 'rb'")
        if head.startswith(MAGIC):
            raise InvalidArgumentError("this is already a skjar file: load it with skjar.load")
        if not head:
            raise CorruptFileError("the file is empty: there is no pickle to convert")
        kind = compression_of(head)
        size = end - start
        limit = size * EXPANSION.get(kind, MAX_EXPANSION) + SLACK

        def fresh() -> ByteSource:
            fileobj.seek(start)
            if kind == "none":
                return ByteSource(fileobj, size)
            if kind == "compat":
                length = _zfile_length(fileobj)
                if length > limit:
                    raise CorruptFileError(
                        f"old joblib file declares {length} bytes of data, more than its "
                        "size allows: refused as a decompression bomb"
                    )
                return ByteSource(DecompressingReader(fileobj, "compat", length), length)
            return ByteSource(DecompressingReader(fileobj, kind, limit), None)

        yield Opened(kind, fresh, directory)
    finally:
        if owned is not None:
            owned.close()
