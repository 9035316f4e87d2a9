"""Where a load's time goes: parsing the object tree against building from it.

    python benchmarks/decode_profile.py [--models column-pipeline,hgb,iris-knn] [--quick]

Warm and in-process (imports and the first load excluded; minimum of --repeat
loads, since this machine is shared). For each model it prints the whole
``skjar.loads``, the object tree's parse alone - msgpack with a hook that only
recurses into each typed node, which is what any parser of this format must do -
and each node kind's own handler time. A handler runs after its payload is
decoded, so its time excludes its children's. This is the instrument behind
RESULTS.md's "where the time goes". The loader itself walks the tree with the compiled
walker (``_walk.c``), which parses and dispatches in one pass and builds common arrays
without calling their handler: those arrays are in no handler's time.
"""

from __future__ import annotations

import argparse
import collections
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).parent))
from _models import ensure_model

import skjar
from skjar.codec import nodes
from skjar.codec.registry import DECODERS
from skjar.format.header import declared_names
from skjar.format.reader import open_source

NODE_NAMES = {
    value: name
    for name, value in vars(nodes).items()
    if name.isupper() and type(value) is int and not name.startswith(("STATE_", "ITEMS_"))
}


def fastest(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def parse_only(tree: Any) -> tuple[Callable[[], Any], list[int]]:
    """A parse of ``tree`` that unpacks every typed node's payload and builds nothing."""
    count = [0]

    def hook(code: int, data: bytes) -> Any:
        count[0] += 1
        return msgpack.unpackb(data, ext_hook=hook, strict_map_key=False, raw=False)

    return lambda: msgpack.unpackb(tree, ext_hook=hook, strict_map_key=False, raw=False), count


def handler_times(
    data: bytes, repeat: int
) -> tuple[float, collections.Counter[int], collections.Counter[int]]:
    """The handlers' own time in the load where it was smallest (s), and total own
    time (ns) and calls per node code over ``repeat`` loads."""
    spent: collections.Counter[int] = collections.Counter()
    calls: collections.Counter[int] = collections.Counter()
    originals = dict(DECODERS)
    per_load = []

    def timed(code: int, fn: Any) -> Any:
        def run(dec: Any, payload: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return fn(dec, payload)
            finally:
                spent[code] += time.perf_counter_ns() - t0
                calls[code] += 1

        return run

    DECODERS.update({code: timed(code, fn) for code, fn in originals.items()})
    try:
        skjar.loads(data)
        spent.clear()
        calls.clear()
        for _ in range(repeat):
            before = sum(spent.values())
            skjar.loads(data)
            per_load.append((sum(spent.values()) - before) / 1e9)
    finally:
        DECODERS.update(originals)
    return min(per_load), spent, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="iris-knn,svc,hgb,column-pipeline,mlp,forest")
    parser.add_argument("--quick", action="store_true", help="the suite's small models")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--cache-dir", default=str(Path(__file__).parent / ".cache"))
    args = parser.parse_args()

    rows, kinds = [], {}
    for name in args.models.split(","):
        cached = ensure_model(
            name, args.quick, Path(args.cache_dir), lambda m: print(m, flush=True)
        )
        model = cached.load_model()
        data, pickled = skjar.dumps(model), pickle.dumps(model, protocol=5)
        tree = open_source(data, mmap=False, admit=declared_names).tree
        parse, count = parse_only(tree)
        load_s = fastest(lambda d=data: skjar.loads(d), args.repeat)
        parse_s = fastest(parse, args.repeat)
        pickle_s = fastest(lambda p=pickled: pickle.loads(p), args.repeat)
        handlers_s, spent, calls = handler_times(data, args.repeat)
        nodes_per_load = count[0] // (args.repeat + 1)
        rows.append((name, nodes_per_load, load_s, parse_s, handlers_s, pickle_s))
        kinds[name] = [
            (
                NODE_NAMES.get(code, str(code)),
                calls[code] // args.repeat,
                spent[code] / args.repeat / 1e3,
                spent[code] / max(calls[code], 1) / 1e3,
            )
            for code, _ in spent.most_common(5)
        ]

    print("\nWarm in-process loads, fastest of", args.repeat, "(ms)")
    print(f"{'model':16} {'nodes':>6} {'load':>8} {'parse':>14} {'handlers':>14} {'pickle':>8}")
    for name, n, load_s, parse_s, handlers_s, pickle_s in rows:
        print(
            f"{name:16} {n:6d} {load_s * 1e3:8.2f} {parse_s * 1e3:7.2f} ({parse_s / load_s:4.0%})"
            f" {handlers_s * 1e3:7.2f} ({handlers_s / load_s:4.0%}) {pickle_s * 1e3:8.2f}"
        )
    print("\nparse: msgpack's parse of the tree alone (a reference: the loader's compiled walker")
    print("parses as it dispatches); handlers: the node handlers' own time (timed per call, so")
    print("slightly inflated; fastest load; arrays the walker builds itself are in none). The")
    print("rest is the header, trust, the read, the digest and the walk. Per node kind (mean):\n")
    for name, top in kinds.items():
        print(
            f"{name}: "
            + "; ".join(f"{k} {n}x {us:.0f} us ({per:.1f} us each)" for k, n, us, per in top)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
