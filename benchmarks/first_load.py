"""A process's first load, taken apart: what a fresh process pays that a warm one does not.

    python benchmarks/first_load.py [--models iris-knn,svc] [--children 9] [--top 15] [--quick]
                                    [--faults]

Like the persistence benchmark, a zygote imports everything once and forks one child per
load, so each load is the child's first. For each model it prints the first load's time
and minor page faults (median over the children) for pickle and skjar, then where
skjar's first load spends its time: each function's own time (``sys.setprofile``; C
functions by name), summed per function and taken as the median over the children.
The profiler adds ~1 us per call, so the total is inflated; the ranking is what to read.
With ``--faults`` it counts each function's own minor page faults instead of its time
(``ru_minflt`` read at every profiler event): in a forked child most of a first load's
extra cost is copy-on-write and fresh-page faults, at 2.5-4 us each on this machine.
This is the instrument behind RESULTS.md's "a load's cost is mostly its first time".
"""

from __future__ import annotations

import argparse
import collections
import gc
import importlib
import json
import os
import pickle
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _models import ensure_model

import skjar


def in_child(job: Callable[[], Any]) -> Any:
    """Run ``job`` in a forked child and return what it returns (JSON-able)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            out = json.dumps(job()).encode()
        except BaseException as exc:
            out = json.dumps({"error": repr(exc)}).encode()
        os.write(write, out)
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 20):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks))
    if isinstance(result, dict) and "error" in result:
        raise RuntimeError(f"child failed: {result['error']}")
    return result


def timed_load(load: Callable[[], Any]) -> Callable[[], list[float]]:
    def job() -> list[float]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        load()
        elapsed = time.perf_counter() - t0
        return [elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults]

    return job


def _faults() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def profiled_load(
    load: Callable[[], Any], clock: Callable[[], float] = time.perf_counter
) -> Callable[[], dict[str, list[float]]]:
    """The load under a profiler recording each function's own ``clock`` (time, or page
    faults) and call count."""

    def job() -> dict[str, list[float]]:
        own: collections.Counter[str] = collections.Counter()
        calls: collections.Counter[str] = collections.Counter()
        stack: list[list[Any]] = []  # [name, own clock so far, resumed at]

        def profile(frame: Any, event: str, arg: Any) -> None:
            now = clock()
            if event in ("call", "c_call"):
                if stack:
                    stack[-1][1] += now - stack[-1][2]
                if event == "call":
                    code = frame.f_code
                    name = f"{Path(code.co_filename).name}:{code.co_name}"
                else:
                    name = "C " + getattr(arg, "__qualname__", repr(arg))
                stack.append([name, 0.0, clock()])
            elif event in ("return", "c_return", "c_exception") and stack:
                name, spent, resumed = stack.pop()
                own[name] += spent + now - resumed
                calls[name] += 1
                if stack:
                    stack[-1][2] = clock()

        sys.setprofile(profile)
        try:
            load()
        finally:
            sys.setprofile(None)
        return {name: [own[name], calls[name]] for name in own}

    return job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="iris-knn,svc,mlp")
    parser.add_argument("--quick", action="store_true", help="the suite's small models")
    parser.add_argument("--children", type=int, default=9)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--cache-dir", default=str(Path(__file__).parent / ".cache"))
    parser.add_argument(
        "--faults", action="store_true", help="own minor page faults per function, not time"
    )
    args = parser.parse_args()
    if not hasattr(os, "fork"):
        print("this probe forks a pre-imported process: it needs os.fork (Linux, macOS)")
        return 2

    work = Path(tempfile.mkdtemp(prefix="skjar-first-load-"))
    for name in args.models.split(","):
        cached = ensure_model(name, args.quick, Path(args.cache_dir), print)
        for module in cached.modules:  # everything pickle's load imports, as the zygote does
            importlib.import_module(module)
        model = cached.load_model()
        skjar.dump(model, work / f"{name}.skjar")
        with open(work / f"{name}.pkl", "wb") as f:
            pickle.dump(model, f, protocol=5)
        del model
    gc.collect()
    gc.freeze()  # as the benchmark's zygote: the children start from these pages

    for name in args.models.split(","):
        skjar_path, pickle_path = work / f"{name}.skjar", work / f"{name}.pkl"

        # str paths, as the persistence benchmark's children are given
        def load_pickle(p: str = str(pickle_path)) -> Any:
            with open(p, "rb") as f:
                return pickle.load(f)

        def load_skjar(p: str = str(skjar_path)) -> Any:
            return skjar.load(p)

        firsts: dict[str, list[list[float]]] = {"pickle": [], "skjar": []}
        for _ in range(args.children):  # alternating, so both see the same machine
            firsts["pickle"].append(in_child(timed_load(load_pickle)))
            firsts["skjar"].append(in_child(timed_load(load_skjar)))
        print(f"\n{name}: first load in a forked child, median of {args.children}")
        for who, rows in firsts.items():
            ms = statistics.median(r[0] for r in rows) * 1e3
            faults = statistics.median(r[1] for r in rows)
            print(f"  {who:7} {ms:8.2f} ms  {faults:6.0f} minor faults")

        clock, scale, unit = (_faults, 1, "faults") if args.faults else (time.perf_counter, 1e3, "ms")
        samples = [in_child(profiled_load(load_skjar, clock)) for _ in range(args.children)]
        names = set().union(*samples)
        own = {n: statistics.median(s.get(n, [0, 0])[0] for s in samples) for n in names}
        calls = {n: max(s.get(n, [0, 0])[1] for s in samples) for n in names}
        what = "page faults" if args.faults else "time"
        print(f"  skjar's first load, own {what} per function (profiled: "
              f"{sum(own.values()) * scale:.2f} {unit} over {len(names)} functions)")
        for n in sorted(own, key=own.__getitem__, reverse=True)[: args.top]:
            print(f"    {own[n] * scale:7.{0 if args.faults else 3}f} {unit} {calls[n]:6.0f}x  {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
