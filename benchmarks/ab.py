"""Two versions of skjar loading the same models, alternating: did a change make loads faster?

    python benchmarks/ab.py --base ../old-checkout/src [--models iris-knn,svc] [--rounds 8]
                            [--children 8] [--mmap | --bytes] [--compress zstd]
                            [--after-free] [--quick]

This machine's speed drifts by 20% and more within an hour (see RESULTS.md), more than most
changes move a small model's load, so two benchmark runs taken apart cannot tell a change
from a phase. Here each side is a zygote process that imports everything (its skjar from
its own source tree: ``--base``'s, or the one this script imports) and forks one child per
load, as the persistence benchmark does; the two sides alternate round by round, each
round forking ``--children`` children on one side, then on the other (the order flips
every round), so both sides see the same minutes of the machine. pickle runs as a third
side, a same-phase yardstick. Each side saves its own file from the cached model (a
format change then needs no compatible reader), so ``--base`` can be any checkout
whose ``src`` has skjar built (``python setup.py build_ext --inplace`` there); "new" is
this checkout's ``src``.

Printed per model and side: median, first quartile and minimum load time, median minor
page faults (in a forked child most of a first load's extra cost is copy-on-write and
fresh-page faults), and each side's ratio to pickle and new/base.

``--bytes`` loads from bytes already in memory (``skjar.loads`` against ``pickle.loads``:
a model fetched from a store or received over the network) instead of from the file;
``--file-object`` from the file opened by the caller (``skjar.load(f)``, as pickle's side
always loads), and ``--bytesio`` from an ``io.BytesIO`` of the bytes (both sides).
``--compress zstd`` (or lz4) has both skjar sides save their jar compressed; pickle's
stays raw. ``--after-free`` has each zygote load its file once and drop the result before
forking, as a server that checked a model and let it go would: the children's heaps then
start with that memory free and shared copy-on-write (docs/performance.md, "Forking after
a free").
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _models import ensure_model

NEW = Path(__file__).resolve().parent.parent / "src"  # this checkout's skjar


def zygote(args: list[str]) -> None:
    """Child mode: ``ab.py --zygote SIDE MODEL_PKL OUT MODULES COMPRESS``; serves ``N\\n``
    requests on stdin with N forked loads each, one JSON line of [seconds, faults] pairs
    back."""
    side, model_pkl, out, modules = args[0], args[1], args[2], args[3].split(",")
    # after-free: this process saves the file, then starts again as "after-free-saved",
    # which loads the file once and drops it (never having read the model) and serves.
    compress, after_free = args[4] or None, args[5]
    import gc

    saved = after_free == "after-free-saved"
    if saved and not side.startswith("pickle"):
        # skjar before the model's modules, as `import skjar, sklearn` has it: with this
        # heap layout the children's large allocations land on the pages the dropped load
        # left free (with the model's modules first they happened not to).
        import skjar
    for module in modules:
        importlib.import_module(module)
    if not side.startswith("pickle"):
        # Imported before the model is read, as the benchmark's zygote imports everything
        # first: imported after, skjar's objects pin the heap the model leaves free, and
        # a child's large allocations come from those shared pages (docs/performance.md,
        # "Forking after a free"; --after-free measures that case on purpose).
        import skjar
    model = None
    if not saved:
        with open(model_pkl, "rb") as f:
            model = pickle.load(f)
    mmap, in_memory = side.endswith("+mmap"), side.endswith("+bytes")
    file_object, bytesio = side.endswith("+file-object"), side.endswith("+bytesio")
    if side.startswith("pickle"):
        path = out + ".pkl"
        if not saved:
            with open(path, "wb") as out_file:
                pickle.dump(model, out_file, protocol=5)
        held = Path(path).read_bytes()

        def load() -> Any:
            if in_memory:
                return pickle.loads(held)
            if bytesio:
                return pickle.load(io.BytesIO(held))
            with open(path, "rb") as f:
                return pickle.load(f)

    else:
        import skjar

        path = out + ".skjar"
        if not saved:
            skjar.dump(model, path, compress=compress)
        held = Path(path).read_bytes()

        def load() -> Any:
            if in_memory:
                return skjar.loads(held)
            if bytesio:
                return skjar.load(io.BytesIO(held))
            if file_object:
                with open(path, "rb") as f:
                    return skjar.load(f)
            return skjar.load(path, mmap=True) if mmap else skjar.load(path)

    del model
    if after_free == "after-free":
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, __file__, "--zygote", *args[:5], "after-free-saved"])
    if saved:  # a load dropped: its memory stays free in the heap, shared with the children
        load()
    gc.collect()
    gc.freeze()  # the imported objects stay shared with the children, as in the benchmark
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        results = []
        for _ in range(int(line)):
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child: one first load
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                load()
                elapsed = time.perf_counter() - t0
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
                os.write(write, json.dumps([elapsed, faults]).encode())
                os._exit(0)
            os.close(write)
            data = os.read(read, 1000)
            os.close(read)
            _, status = os.waitpid(pid, 0)
            if status or not data:
                raise SystemExit(f"a {side} load failed (status {status})")
            results.append(json.loads(data))
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()


class Side:
    """One zygote: a label, its process, and the loads it has timed."""

    def __init__(self, label: str, src: str | None, model_pkl: Path, out: Path,
                 modules: list[str], compress: str, after_free: bool) -> None:
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        self.label = label
        self.loads: list[list[float]] = []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--zygote", label, str(model_pkl), str(out),
             ",".join(modules), compress, "after-free" if after_free else ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {label} side did not start (see its error above)")

    def run(self, children: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{children}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.label} side stopped (see its error above)")
        self.loads += json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--zygote":
        zygote(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the other version's src directory")
    parser.add_argument("--models", default="iris-knn,svc")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--children", type=int, default=8, help="forked loads per side per round")
    loading = parser.add_mutually_exclusive_group()
    loading.add_argument("--mmap", action="store_true", help="load with mmap=True")
    loading.add_argument("--bytes", action="store_true",
                         help="load from bytes in memory (skjar.loads, pickle.loads)")
    loading.add_argument("--file-object", action="store_true",
                         help="skjar loads from the file opened by the caller")
    loading.add_argument("--bytesio", action="store_true",
                         help="load from an io.BytesIO of the bytes (both sides)")
    parser.add_argument("--compress", choices=("zstd", "lz4"), default="",
                        help="skjar's jars saved with this codec (pickle's raw)")
    parser.add_argument("--after-free", action="store_true",
                        help="each zygote loads its file once and drops it before forking: "
                             "the children's heaps start with that memory free and shared")
    parser.add_argument("--quick", action="store_true", help="the suite's small models")
    parser.add_argument("--cache-dir", default=str(Path(__file__).parent / ".cache"))
    args = parser.parse_args()
    if not hasattr(os, "fork"):
        print("this probe forks pre-imported processes: it needs os.fork (Linux, macOS)")
        return 2
    base = Path(args.base).resolve()
    if not (base / "skjar" / "__init__.py").is_file():
        print(f"--base {args.base}: no skjar package there (give a checkout's src directory)")
        return 2
    mode = next(
        (f"+{m.replace('_', '-')}" for m in ("mmap", "bytes", "file_object", "bytesio")
         if getattr(args, m)), "",
    )
    work = Path(tempfile.mkdtemp(prefix="skjar-ab-"))
    print(f"new: {NEW}; base: {base}; {args.rounds} rounds x {args.children} children a side\n")
    print(f"{'model':16} {'side':12} {'median':>9} {'q1':>9} {'min':>9} {'faults':>7} "
          f"{'/pickle':>8} {'/base':>7}")
    for name in args.models.split(","):
        cached = ensure_model(name, args.quick, Path(args.cache_dir), lambda _: None)
        sides = [
            Side(label, src, cached.model_path, work / f"{name}-{i}", cached.modules,
                 args.compress, args.after_free)
            for i, (label, src) in enumerate(
                [("pickle" + (mode if args.bytes or args.bytesio else ""), None),
                 ("base" + mode, str(base)),
                 ("new" + mode, str(NEW))]
            )
        ]
        try:
            for r in range(args.rounds):
                for side in sides if r % 2 == 0 else sides[::-1]:
                    side.run(args.children)
        finally:
            for side in sides:
                side.close()
        medians = {s.label: statistics.median(t for t, _ in s.loads) for s in sides}
        medians["pickle"] = medians[sides[0].label]
        for side in sides:
            times = sorted(t for t, _ in side.loads)
            med = medians[side.label]
            vs_base = med / medians["base" + mode] if side.label.startswith("new") else None
            print(f"{name:16} {side.label:12} {med * 1e3:7.2f}ms {times[len(times) // 4] * 1e3:7.2f}ms "
                  f"{times[0] * 1e3:7.2f}ms {statistics.median(f for _, f in side.loads):7.0f} "
                  f"{med / medians['pickle']:7.2f}x "
                  + (f"{vs_base:6.3f}x" if vs_base is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
