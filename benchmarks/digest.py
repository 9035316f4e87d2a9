"""Digest speed against the physical bounds: memcpy and page-cache reads.

    python benchmarks/digest.py [--mib 512] [--repeat 5]

skjar checks XXH3-128 on every load and BLAKE3-256 when a signature is
verified; both must run well above the speed data arrives at, or they would
dominate a load. Prints GiB/s (median of --repeat) and each as a ratio to memcpy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np


def rate(fn: Callable[[], object], nbytes: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return nbytes / statistics.median(times) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import blake3
    import xxhash

    from skjar.format.digest import new_hasher

    def _hash(data: memoryview) -> bytes:
        hasher = new_hasher()
        hasher.update(data)
        return hasher.digest()

    data = np.random.default_rng(0).random(args.mib * 2**20 // 8)
    view = memoryview(data).cast("B")
    n = data.nbytes
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(view)
        path = f.name
    buf = bytearray(n)
    dst = np.empty_like(data)

    def page_cache_read() -> None:
        with open(path, "rb", buffering=0) as g:
            g.readinto(buf)

    page_cache_read()  # warm the page cache
    rows = [
        ("memcpy (into allocated memory)", rate(lambda: np.copyto(dst, data), n, args.repeat)),
        ("page-cache read", rate(page_cache_read, n, args.repeat)),
        ("xxh3-128, python-xxhash", rate(lambda: xxhash.xxh3_128(view).digest(), n, args.repeat)),
        ("xxh3-128, skjar's (integrity)", rate(lambda: _hash(view), n, args.repeat)),
        ("blake3, 1 thread", rate(lambda: blake3.blake3(view).digest(), n, args.repeat)),
        ("blake3, all cores (signatures)", rate(lambda: blake3.blake3(view, max_threads=blake3.blake3.AUTO).digest(), n, args.repeat)),
        ("sha256 (for reference)", rate(lambda: hashlib.sha256(view).digest(), n, max(1, args.repeat // 2))),
    ]
    os.unlink(path)
    base = rows[0][1]
    print(f"{args.mib} MiB, median of {args.repeat}, {os.cpu_count()} cores")
    print(f"{'':<32}{'GiB/s':>8}{'x memcpy':>10}")
    for name, r in rows:
        print(f"{name:<32}{r:>8.2f}{r / base:>10.2f}")


if __name__ == "__main__":
    main()
