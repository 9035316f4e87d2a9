"""Re-run fuzz inputs one at a time, each in a fresh process, to triage findings.

    python fuzz/replay.py [--exercise] [--malloc-check] [--target convert] PATH...

Each input is loaded by ``target.check`` in its own subprocess; the outcome
(the error, "ok", a Finding, or the signal that killed the process) is printed
per input. ``--malloc-check`` runs the children with glibc's checking
allocator (``libc_malloc_debug.so`` + ``MALLOC_CHECK_=3``, freed memory
poisoned), so heap damage aborts at the input that did it rather than later.
Exit status 1 if any input crashed or broke the contract.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import sys, gc
sys.path.insert(0, sys.argv[1])
import target
data = open(sys.argv[2], "rb").read()
check = target.check_convert if sys.argv[4] == "convert" else target.check
try:
    result = check(data, exercise=sys.argv[3] == "1")
except target.Finding as exc:
    print("FINDING", exc)
    sys.exit(3)
gc.collect()
junk = [bytearray(n) for n in range(1, 20000, 7)]  # churn the heap: surface damage now
del junk
gc.collect()
print(result)
"""


def malloc_debug_env() -> dict[str, str]:
    env = dict(os.environ)
    libs = glob.glob("/lib/*/libc_malloc_debug.so.0") + glob.glob("/usr/lib/*/libc_malloc_debug.so.0")
    if libs:
        env["LD_PRELOAD"] = libs[0]
    env["MALLOC_CHECK_"] = "3"
    env["MALLOC_PERTURB_"] = "165"
    env["PYTHONMALLOC"] = "malloc"
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--exercise", action="store_true")
    ap.add_argument("--malloc-check", action="store_true")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--target", choices=("loads", "convert"), default="loads",
                    help="the inputs are jars (loads) or pickle/joblib files (convert)")
    args = ap.parse_args(argv)
    files: list[Path] = []
    for p in map(Path, args.paths):
        files += sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    env = malloc_debug_env() if args.malloc_check else dict(os.environ)
    src = HERE.parent / "src"  # replay against the skjar of this checkout
    if (src / "skjar").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "ignore"
    bad = 0
    for f in files:
        cmd = [sys.executable, "-c", CHILD, str(HERE), str(f), "1" if args.exercise else "0",
               args.target]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{f}: HANG (> {args.timeout:.0f} s)")
            bad += 1
            continue
        out = (proc.stdout.strip().splitlines() or [""])[-1]
        if proc.returncode < 0:
            err = proc.stderr.strip().splitlines()
            print(f"{f}: CRASH signal {-proc.returncode} {err[-1] if err else ''}")
            bad += 1
        elif proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            print(f"{f}: FAIL {out or (err[-1] if err else proc.returncode)}")
            bad += 1
        else:
            print(f"{f}: {out[:150]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
