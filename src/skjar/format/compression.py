"""Compression codecs for the tree and buffers: none, zstd, lz4 (block)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from ..errors import CorruptFileError, InvalidArgumentError, ReadError
from .spec import MAX_RATIO, RATIO_SLACK

DEFAULT_LEVELS = {"zstd": 3, "lz4": 0}
LEVEL_RANGES = {"zstd": (-7, 22), "lz4": (0, 16)}
# Below this much work in all, sections are (de)compressed one after another: a thread
# pool costs ~0.2-0.5 ms to start (mlp, 2.4 MB of zstd: no gain).
PARALLEL_MIN = 4 << 20

T = TypeVar("T")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def run_parallel(jobs: Sequence[Callable[[], T]], work: int) -> list[T]:
    """The results of ``jobs``, in order; run on every core when there is ``work`` enough.

    The jobs are codec calls, which release the GIL, so threads compress or
    decompress sections side by side (a forest's 200 node arrays, each under zstd's
    own multi-threading threshold). The first failing job, in order, raises.
    """
    return list(iter_parallel(jobs, work))


def iter_parallel(jobs: Sequence[Callable[[], T]], work: int) -> Generator[T, None, None]:
    """``run_parallel``'s results one by one, each as soon as it and those before it are
    done: a caller can write one section while the threads compress the next ones.
    Closing the generator early cancels the jobs not started and waits for the others."""
    workers = min(len(jobs), _cores()) if work >= PARALLEL_MIN else 1
    pool = None
    if workers >= 2:
        with contextlib.suppress(RuntimeError):  # no thread to be had (a limit, shutdown)
            pool = ThreadPoolExecutor(workers, thread_name_prefix="skjar-codec")
    if pool is not None:
        with pool:
            try:  # (map submits every job at once, starting the threads)
                results = pool.map(lambda job: job(), jobs)
            except RuntimeError:
                pool.shutdown(cancel_futures=True)
            else:
                yield from results
                return
    yield from (job() for job in jobs)  # in turn


def parse_compress(compress: Any) -> tuple[str, int] | None:
    """Normalise the ``compress=`` argument to ``(codec, level)`` or ``None``.

    >>> parse_compress("zstd")
    ('zstd', 3)
    """
    if compress is None or compress is False:
        return None
    if isinstance(compress, str):
        name, level = compress, None
    elif (
        isinstance(compress, tuple)
        and len(compress) == 2
        and isinstance(compress[0], str)
        and isinstance(compress[1], int)
        and not isinstance(compress[1], bool)
    ):
        name, level = compress
    else:
        raise InvalidArgumentError(
            f"compress={compress!r} is not understood: use None, 'zstd', 'lz4', "
            "or a (name, level) pair such as ('zstd', 9)"
        )
    if name not in DEFAULT_LEVELS:
        raise InvalidArgumentError(
            f"unknown compression {name!r}: choose 'zstd' or 'lz4' (or None for no compression)"
        )
    _require(name)
    if level is None:
        level = DEFAULT_LEVELS[name]
    lo, hi = LEVEL_RANGES[name]
    if not lo <= level <= hi:
        raise InvalidArgumentError(f"{name} level must be between {lo} and {hi}, got {level}")
    return name, level


def _require(name: str) -> Any:
    try:
        if name == "zstd":
            import zstandard

            return zstandard
        import lz4.block

        return lz4.block
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidArgumentError(
            f"compression {name!r} needs an optional package: pip install 'skjar[compress]'"
        ) from exc


class Compressor:
    """One dump's compressor: the codec's contexts are made once and reused for every
    section (a zstd context takes ~10 us to make, and its tables - 45 KB to 1.9 MB with
    the input size - are fresh memory each time).

    >>> compressor = Compressor("zstd", 3)
    >>> [len(compressor.compress(memoryview(bytes(n)))) < 40 for n in (1000, 10_000)]
    [True, True]
    """

    def __init__(self, codec: str, level: int) -> None:
        self.codec, self.level = codec, level
        self._module = _require(codec)
        self._local = threading.local()  # a context serves one thread at a time

    def compress(self, data: memoryview) -> bytes:
        """``data`` compressed; the result carries no size prefix."""
        if self.codec == "zstd":
            # One thread per call: large buffers are compressed in chunks side by side
            # (writer.CHUNK), each chunk one frame with its content size.
            cctx = getattr(self._local, "zstd", None)
            if cctx is None:
                cctx = self._local.zstd = self._module.ZstdCompressor(
                    level=self.level, write_content_size=True
                )
            return bytes(cctx.compress(data))
        mode = "high_compression" if self.level > 0 else "default"
        return bytes(
            self._module.compress(data, mode=mode, compression=self.level, store_size=False)
        )


def check_ratio(codec: str, stored: int, size: int, what: str) -> None:
    """Refuse a declared decompressed size the codec cannot produce from ``stored`` bytes."""
    if size > stored * MAX_RATIO[codec] + RATIO_SLACK:
        raise CorruptFileError(
            f"{what} claims {size} bytes from {stored} {codec}-compressed bytes, more than "
            f"{codec} can produce: the file is damaged or a decompression bomb"
        )


class Decompressor:
    """One load's decompressor: a zstd context per thread, made on first use and reused.

    A section is first ``check``ed (the codec's own framing must agree with the
    header, before anything is allocated), then decompressed ``into`` an array of
    exactly its size. The caller allocates the arrays, in file order and in one
    thread, so that the allocator's reuse of freed memory (8.4 in docs/format.md)
    does not depend on which thread ran which section.
    """

    def __init__(self) -> None:
        self._local = threading.local()  # a context serves one thread at a time

    @staticmethod
    def check(data: memoryview, codec: str, size: int, what: str) -> None:
        if codec == "zstd":
            try:
                import zstandard

                declared = zstandard.frame_content_size(data)
            except ImportError:
                raise _missing(codec, what) from None
            except Exception as exc:
                raise CorruptFileError(
                    f"{what}: zstd data does not decompress (not a zstd frame: {exc})"
                ) from None
            if declared != size:
                raise CorruptFileError(f"{what}: zstd frame declares {declared} bytes, the header {size}")

    def into(self, data: memoryview, codec: str, out: np.ndarray, what: str) -> np.ndarray:
        """Decompress a ``check``ed section into ``out``, which it must fill exactly; the
        compressed data must be consumed exactly: no trailing bytes."""
        size = len(out)
        try:
            if codec == "zstd":
                import zstandard

                dctx = getattr(self._local, "zstd", None)
                if dctx is None:
                    dctx = self._local.zstd = zstandard.ZstdDecompressor()
                # Straight into the final array: no intermediate copy of a large section.
                reader = dctx.stream_reader(data, read_across_frames=True)
                view, got = memoryview(out), 0  # type: ignore[arg-type]
                while got < size:
                    n = reader.readinto(view[got:])
                    if not n:
                        break
                    got += n
                if got != size:
                    raise CorruptFileError(f"{what}: decompressed to {got} bytes, expected {size}")
                # One more byte must not exist: a second frame or junk after the first is
                # refused.
                if reader.read(1):
                    raise CorruptFileError(f"{what}: the zstd frame is followed by extra data")
                return out
            import lz4.block

            raw = lz4.block.decompress(data, uncompressed_size=size)
            if len(raw) != size:
                raise CorruptFileError(f"{what}: decompressed to {len(raw)} bytes, expected {size}")
        except CorruptFileError:
            raise
        except ImportError:
            raise _missing(codec, what) from None
        except MemoryError:
            raise CorruptFileError(f"{what}: {size} decompressed bytes do not fit in memory") from None
        except Exception as exc:
            raise CorruptFileError(f"{what}: {codec} data does not decompress ({exc})") from None
        out[:] = np.frombuffer(raw, dtype=np.uint8)
        return out


def _missing(codec: str, what: str) -> ReadError:
    return ReadError(
        f"{what} is {codec}-compressed and the {codec} package is not installed: "
        "pip install 'skjar[compress]'"
    )
