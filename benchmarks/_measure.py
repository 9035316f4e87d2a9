"""Low-level measurement helpers: RSS/PSS, physical bounds, machine info, statistics."""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

MiB = 1 << 20
GiB = 1 << 30


# --------------------------------------------------------------------------------------------
# Resident memory
# --------------------------------------------------------------------------------------------


def read_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon / RssFile of a process, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def current_rss() -> int:
    return read_status()["VmRSS"]


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0). False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class PeakRSS:
    """Peak resident set size reached inside a ``with`` block, as bytes above the RSS at entry.

    Why this method: we reset the kernel's RSS high-water mark (write "5" to
    /proc/self/clear_refs) and read VmHWM from /proc/self/status after the block. The kernel
    updates the high-water mark on every page it maps, so the peak is exact, including
    short-lived spikes (e.g. a temporary buffer that is freed before load returns), and costs
    nothing while the load runs. The alternatives are worse here:

    * ``resource.getrusage().ru_maxrss`` cannot be reset -- it is the peak since the process
      started (and, for a forked child, may include the parent's RSS at fork time), so a
      "delta" is only meaningful if the load happens to exceed every earlier peak;
    * a sampling thread misses spikes shorter than its period and, to sample while the loader
      holds the GIL, has to take the GIL itself, perturbing the very timing we measure.

    The sampling thread (1 ms period) is only used as a fallback when clear_refs is not
    writable (non-Linux, old kernels, some sandboxes); ``method`` records which one was used.

    Note that RSS counts file pages mapped into the process: for mmap loads, every page of the
    model file that the load (or a later predict) touches is counted, even though those pages
    live in the shared page cache and are shared between processes (see the PSS figure).
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.method = "vmhwm-reset"
        self.before = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, current_rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        if reset_peak_rss():
            self.method = "vmhwm-reset"
        else:
            self.method = "sampling-1ms"
            self._sampled = current_rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self.before = current_rss()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._sampled, current_rss())
        else:
            self.peak = read_status()["VmHWM"]

    @property
    def extra(self) -> int:
        return max(0, self.peak - self.before)


def read_pss(pid: int) -> dict[str, int]:
    """Proportional set size (and RSS) of a process in bytes, from smaps_rollup (or smaps)."""
    fields = {"Pss": 0, "Rss": 0, "Pss_Anon": 0, "Pss_File": 0}
    path = Path(f"/proc/{pid}/smaps_rollup")
    if not path.exists():
        path = Path(f"/proc/{pid}/smaps")
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in fields:
                fields[key] += int(rest.split()[0]) * 1024
    return fields


# --------------------------------------------------------------------------------------------
# Physical bounds
# --------------------------------------------------------------------------------------------


def memcpy_bandwidth(nbytes: int = GiB, repeat: int = 3) -> dict[str, float]:
    """Best-of-``repeat`` time of ``np.copyto`` between two touched ``nbytes`` arrays."""
    import numpy as np

    src = np.empty(nbytes // 8)
    src.fill(1.0)
    dst = np.empty_like(src)
    dst.fill(0.0)  # fault the pages in before timing
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    del src, dst
    best = min(times)
    return {"bytes": float(nbytes), "seconds": best, "bytes_per_s": nbytes / best}


def pagecache_read_bandwidth(
    directory: Path, nbytes: int = GiB, chunk: int = 8 * MiB, reads: int = 3
) -> dict[str, Any]:
    """Write ``nbytes`` to a file, read it ``reads`` times; the second read is the figure.

    The first read makes sure every page is cached; reads go through ``readinto`` into one
    reused buffer, so the figure is the kernel's page-cache-to-user copy rate.
    """
    import numpy as np

    path = directory / ".bounds-pagecache-test.bin"
    block = np.full(chunk // 8, 1.5).tobytes()
    view = memoryview(bytearray(chunk))
    times: list[float] = []
    total = 0
    try:
        with open(path, "wb") as f:
            for _ in range(nbytes // chunk):
                f.write(block)
        for _ in range(max(2, reads)):
            t0 = time.perf_counter()
            total = 0
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(view):
                    total += n
            times.append(time.perf_counter() - t0)
    finally:
        path.unlink(missing_ok=True)
    return {
        "bytes": float(total),
        "chunk_bytes": float(chunk),
        "seconds": times[1],
        "bytes_per_s": total / times[1],
        "all_read_seconds": times,
    }


# --------------------------------------------------------------------------------------------
# Machine info and statistics
# --------------------------------------------------------------------------------------------


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable", "SwapTotal"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(module: str) -> str | None:
    try:
        return str(getattr(importlib.import_module(module), "__version__", "?"))
    except Exception:
        return None


def _git_revision(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info(repo: Path) -> dict[str, Any]:
    mem = _meminfo()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "memory_total_bytes": mem.get("MemTotal"),
        "memory_available_bytes": mem.get("MemAvailable"),
        "swap_total_bytes": mem.get("SwapTotal"),
        "python": sys.version,
        "python_executable": sys.executable,
        "versions": {
            m: _version(m)
            for m in (
                "numpy",
                "scipy",
                "sklearn",
                "joblib",
                "cloudpickle",
                "skops",
                "pandas",
                "psutil",
                "zstandard",
                "lz4",
            )
        },
        "git_revision": _git_revision(repo),
        "command_line": [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def median(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None
