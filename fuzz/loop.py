"""A pure-Python fuzz loop around the structure-aware mutator (no atheris needed).

    python fuzz/loop.py --seconds N --seeds DIR --findings DIR --current FILE [--seed S]
                        [--target loads|convert]

``--target loads`` (the default) mutates jars (``mutator.py``) and checks
``target.check``; ``--target convert`` mutates pickle and joblib files
(``pickle_mutator.py``) and checks the converter (``target.check_convert``).

Not coverage-guided: it keeps a mutated input as a new parent when its outcome
(``target.outcome``: the error class and message shape) was not seen before, a
cheap stand-in for coverage that steers it through the decoder's checks. It is
the second engine of ``fuzz/run.py`` and its fallback when atheris is missing.

Before each input it writes the input to ``--current`` (and to a ring of the
last 64 inputs in ``CURRENT.recent/``): the supervising ``run.py`` keeps them
as the finding when this process dies (a crash - heap damage may abort only a
few inputs later, hence the ring), is stuck (a hang) or grows past the memory
limit. ``fuzz/replay.py`` re-runs such inputs one by one to find the culprit. A ``Finding`` (the property
broken in Python) is saved here, as ``finding-<sha1>.skjar`` plus a ``.txt``
with the traceback, and ends the process with status 3.

The last line of output is a JSON summary: executions, seconds, outcomes seen.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
import traceback

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.pop("SKJAR_VERIFY_KEYS", None)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mutator  # noqa: E402
import pickle_mutator  # noqa: E402
import target  # noqa: E402

FINDING_STATUS = 3
# Recent inputs kept in CURRENT.recent/ for triage after a crash.
RING = int(os.environ.get("SKJAR_FUZZ_RING", "64"))


def save_finding(findings: str, data: bytes, kind: str, text: str, suffix: str = ".skjar") -> str:
    os.makedirs(findings, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()
    path = os.path.join(findings, f"{kind}-{digest}{suffix}")
    with open(path, "wb") as f:
        f.write(data)
    with open(path[: -len(suffix)] + ".txt", "w") as f:
        f.write(text)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--findings", required=True)
    ap.add_argument("--current", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-exercise", action="store_true")
    ap.add_argument("--as-mb", type=int, default=3072)
    ap.add_argument("--target", choices=("loads", "convert"), default="loads")
    args = ap.parse_args(argv)

    exercise = not args.no_exercise
    target.preimport_trusted()
    seeds = []
    for name in sorted(os.listdir(args.seeds)):
        with open(os.path.join(args.seeds, name), "rb") as f:
            seeds.append(f.read())
    if args.target == "convert":
        check, suffix = target.check_convert, ".pkl"
        streams = [p for p in (pickle_mutator.parse(s) for s in seeds) if p is not None]

        def mutate(data: bytes, rng: random.Random) -> bytes:
            return pickle_mutator.mutate(data, rng, donors=streams, max_size=1 << 20)
    else:
        check, suffix = target.check, ".skjar"
        jars = [j for j in (mutator.parse(s) for s in seeds) if j is not None]

        def mutate(data: bytes, rng: random.Random) -> bytes:
            return mutator.mutate(data, rng, donors=jars, max_size=1 << 20)
    for s in seeds:  # warm up (lazy imports), and the seeds must load
        check(s, exercise=exercise)
    target.limit_memory(args.as_mb)
    mutator.trusted_pool()

    ring = args.current + ".recent"
    os.makedirs(ring, exist_ok=True)
    rng = random.Random(args.seed)
    corpus: list[bytes] = []
    seen: dict[str, int] = {}
    execs = 0
    start = time.monotonic()
    deadline = start + args.seconds
    while time.monotonic() < deadline:
        parent = rng.choice(corpus) if corpus and rng.random() < 0.6 else rng.choice(seeds)
        data = mutate(parent, rng)
        with open(args.current, "wb") as f:
            f.write(data)
        if ring:
            # Heap damage may be detected (abort) only inputs later: keep the recent ones.
            with open(os.path.join(ring, f"{execs % RING:05d}"), "wb") as f:
                f.write(data)
        execs += 1
        if execs % 50 == 0:  # progress, for run.py's count if this process is killed
            with open(args.current + ".count", "w") as f:
                f.write(str(execs))
        try:
            result = check(data, exercise=exercise)
        except target.Finding:
            kind = "loop-finding" if args.target == "loads" else "loop-convert-finding"
            path = save_finding(args.findings, data, kind, traceback.format_exc(), suffix)
            print(f"FINDING {path}", flush=True)
            print(traceback.format_exc(), flush=True)
            _summary(execs, start, seen)
            return FINDING_STATUS
        if result not in seen:
            seen[result] = 0
            if len(corpus) < 5000:
                corpus.append(data)
        seen[result] += 1
    _summary(execs, start, seen)
    return 0


def _summary(execs: int, start: float, seen: dict[str, int]) -> None:
    seconds = time.monotonic() - start
    print(json.dumps({"executions": execs, "seconds": round(seconds, 1),
                      "exec_per_sec": round(execs / max(seconds, 1e-9), 1),
                      "outcomes": len(seen)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
