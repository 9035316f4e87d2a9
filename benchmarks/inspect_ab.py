"""Two versions of skjar's inspect and audit with cold caches, alternating.

    python benchmarks/inspect_ab.py --base ../old-checkout/src [--models mlp,iris-knn]
                                    [--rounds 50] [--alternations 4]

The persistence benchmark times ``inspect(path)`` + ``audit(path)`` in its parent process
right after a load in another process, as a model registry's does: the first call's cache
and TLB misses, not its instructions, are most of the time (mlp: ~60 us warm, ~250 us
there). This reproduces that state: per round, the side saves the model (pickle with
fsync, then skjar), another process loads the jar, and then one inspect and one audit are
timed. Each side is a process whose skjar comes from its own source tree (``--base``'s,
or this checkout's ``src``), and the sides alternate ``--alternations`` times, so both see
the same minutes of the machine; per side the median of its runs' medians is printed,
and new/base.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
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

_LOADER = "import sys, skjar\nfor line in sys.stdin:\n    skjar.load(line.strip()); print('ok', flush=True)"


def side(model_pkl: str, rounds: int, workdir: str) -> dict[str, float]:
    """Child mode: ``rounds`` cold inspects and audits; their medians, in seconds."""
    import skjar

    with open(model_pkl, "rb") as f:
        model = pickle.load(f)
    jar, pkl = os.path.join(workdir, "m.skjar"), os.path.join(workdir, "m.pkl")
    loader = subprocess.Popen([sys.executable, "-c", _LOADER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert loader.stdin is not None and loader.stdout is not None
    inspects, audits = [], []
    for _ in range(rounds):
        with open(pkl, "wb") as f:  # as the benchmark's parent saves before the load
            pickle.dump(model, f, protocol=5)
            f.flush()
            os.fsync(f.fileno())
        skjar.dump(model, jar)
        loader.stdin.write(jar + "\n")
        loader.stdin.flush()
        loader.stdout.readline()
        t0 = time.perf_counter()
        skjar.inspect(jar)
        t1 = time.perf_counter()
        skjar.audit(jar)
        t2 = time.perf_counter()
        inspects.append(t1 - t0)
        audits.append(t2 - t1)
    loader.stdin.close()
    loader.wait()
    return {"inspect": statistics.median(inspects), "audit": statistics.median(audits),
            "skjar": skjar.__file__}


def run_side(src: Path, model_pkl: Path, rounds: int, workdir: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, __file__, "--side", str(model_pkl), str(rounds), workdir],
                         env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--side":
        print(json.dumps(side(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other skjar's src")
    parser.add_argument("--models", default="mlp")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--alternations", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, default=Path(__file__).parent / ".cache")
    args = parser.parse_args()
    sides = {"base": args.base.resolve(), "new": NEW}
    print(f"{'model':10} {'side':5} {'inspect':>9} {'audit':>9} {'pair':>9}")
    for name in args.models.split(","):
        cached = ensure_model(name, False, args.cache_dir.resolve(), lambda msg: print(msg, file=sys.stderr))
        runs: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
        with tempfile.TemporaryDirectory() as workdir:
            for k in range(args.alternations):
                order = ["base", "new"] if k % 2 == 0 else ["new", "base"]
                for label in order:
                    runs[label].append(run_side(sides[label], cached.model_path, args.rounds, workdir))
                    print(f"  {name}: {label} run {k + 1}/{args.alternations}", file=sys.stderr)
        pairs = {}
        for label in ("base", "new"):
            inspect = statistics.median(r["inspect"] for r in runs[label])
            audit = statistics.median(r["audit"] for r in runs[label])
            pairs[label] = inspect + audit
            print(f"{name:10} {label:5} {inspect * 1e6:7.1f}us {audit * 1e6:7.1f}us "
                  f"{pairs[label] * 1e6:7.1f}us")
        print(f"{name:10} new/base pair: {pairs['new'] / pairs['base']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
