"""Compression codecs for the tree and buffers: none, zstd, lz4 (block)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CorruptFileError, InvalidArgumentError
from .spec import MAX_RATIO, RATIO_SLACK

DEFAULT_LEVELS = {"zstd": 3, "lz4": 0}
LEVEL_RANGES = {"zstd": (-7, 22), "lz4": (0, 16)}


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


def compress_bytes(data: memoryview, codec: str, level: int) -> bytes:
    """Compress ``data`` with ``codec``; the result carries no size prefix."""
    mod = _require(codec)
    if codec == "zstd":
        cctx = mod.ZstdCompressor(level=level, write_content_size=True)
        return bytes(cctx.compress(data))
    mode = "high_compression" if level > 0 else "default"
    return bytes(mod.compress(data, mode=mode, compression=level, store_size=False))


def check_ratio(codec: str, stored: int, size: int, what: str) -> None:
    """Refuse a declared decompressed size the codec cannot produce from ``stored`` bytes."""
    if size > stored * MAX_RATIO[codec] + RATIO_SLACK:
        raise CorruptFileError(
            f"{what} claims {size} bytes from {stored} {codec}-compressed bytes, more than "
            f"{codec} can produce: the file is damaged or a decompression bomb"
        )


def decompress_into(data: memoryview, codec: str, out: np.ndarray, what: str) -> None:
    """Decompress ``data`` into the preallocated uint8 array ``out``, exactly filling it."""
    size = out.nbytes
    try:
        if codec == "zstd":
            import zstandard

            declared = zstandard.frame_content_size(data)
            if declared != size:
                raise CorruptFileError(
                    f"{what}: zstd frame declares {declared} bytes, the header {size}"
                )
            raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        else:
            import lz4.block

            raw = lz4.block.decompress(data, uncompressed_size=size)
    except CorruptFileError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{what}: {codec} data does not decompress ({exc})") from None
    if len(raw) != size:
        raise CorruptFileError(f"{what}: decompressed to {len(raw)} bytes, expected {size}")
    out[:] = np.frombuffer(raw, dtype=np.uint8)
