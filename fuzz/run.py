"""Run the skjar fuzzers for a bounded time; exit non-zero on any finding.

    python fuzz/run.py --seconds 60                    # CI: atheris if installed, else the loop
    python fuzz/run.py --seconds 600 --engine both --keep-going   # a longer campaign
    python fuzz/run.py --seconds 60 --target convert   # the pickle/joblib converter (loop)

Engines:

- ``atheris``: coverage-guided libFuzzer over ``fuzz/fuzz_loads.py`` with the
  structure-aware custom mutator (``fuzz/mutator.py``) and libFuzzer's byte
  mutations as the fallback; hangs are ``-timeout``, memory ``-rss_limit_mb``.
- ``loop``: ``fuzz/loop.py``, the same mutator in a plain Python loop,
  supervised from here: a crash, a hang (no progress for ``--timeout``
  seconds) or an RSS above the limit is a finding too.
- ``auto`` (default): atheris if it can be imported, else loop.
- ``both``: the two side by side, each for ``--seconds``.

Seeds (valid jars of many models, ``fuzz/seeds.py``) are written to
``fuzz/corpus/seeds`` when missing or when they no longer load; the growing
corpus is kept in ``fuzz/corpus/<engine>``. Findings (the crashing input, and
for the loop a ``.txt`` with the traceback) go to ``fuzz/findings/``. Prints
executions and executions/second per engine; exit status 1 if anything was
found, 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "corpus" / "seeds"
PICKLE_SEEDS = HERE / "corpus" / "pickle-seeds"
FINDINGS = HERE / "findings"
MAX_LEN = 1 << 18


MALLOC_CHECK = False  # set by --malloc-check


def _env(exercise: bool) -> dict[str, str]:
    if MALLOC_CHECK:
        sys.path.insert(0, str(HERE))
        from replay import malloc_debug_env

        env = malloc_debug_env()
    else:
        env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.pop("SKJAR_VERIFY_KEYS", None)
    # Fuzz the skjar of this checkout, whichever one is installed.
    src = HERE.parent / "src"
    if (src / "skjar").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    env["SKJAR_FUZZ_EXERCISE"] = "1" if exercise else "0"
    env["SKJAR_FUZZ_SEEDS"] = str(SEEDS)
    env["PYTHONWARNINGS"] = "ignore"
    return env


def ensure_seeds(regenerate: bool, convert: bool = False) -> None:
    """Write the seed corpus unless it is there and every seed still loads."""
    if convert:
        seeds, script = PICKLE_SEEDS, "pickle_seeds.py"
        check = (
            "import sys, warnings, pathlib, io\n"
            "from skjar.legacy import load_legacy\n"
            "warnings.simplefilter('ignore')\n"
            "files = sorted(pathlib.Path(sys.argv[1]).glob('*.bin'))\n"
            "assert files\n"
            "for p in files: load_legacy(io.BytesIO(p.read_bytes()))\n"
        )
    else:
        seeds, script = SEEDS, "seeds.py"
        check = (
            "import sys, warnings, pathlib, skjar\n"
            "warnings.simplefilter('ignore')\n"
            "files = sorted(pathlib.Path(sys.argv[1]).glob('*.skjar'))\n"
            "assert files\n"
            "for p in files: skjar.loads(p.read_bytes())\n"
        )
    env = _env(exercise=False)
    if not regenerate and seeds.is_dir():
        ok = subprocess.run([sys.executable, "-c", check, str(seeds)], capture_output=True,
                            env=env)
        if ok.returncode == 0:
            return
    shutil.rmtree(seeds, ignore_errors=True)
    subprocess.run([sys.executable, str(HERE / script), str(seeds)], check=True, env=env)


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


class Result:
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.executions = 0
        self.seconds = 0.0
        self.findings: list[str] = []
        self.reasons: dict[str, str] = {}  # finding -> what went wrong, for the summary

    def line(self) -> str:
        rate = self.executions / self.seconds if self.seconds else 0.0
        return (f"{self.engine}: {self.executions} executions in {self.seconds:.0f} s "
                f"({rate:.0f} exec/s), {len(self.findings)} finding(s)")


# -- atheris -------------------------------------------------------------------------
_STAT = re.compile(r"stat::(\w+):\s+(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s", re.M)


def run_atheris(seconds: float, args: argparse.Namespace, log: Path) -> Result:
    result = Result("atheris")
    work = HERE / "corpus" / "atheris"
    work.mkdir(parents=True, exist_ok=True)
    FINDINGS.mkdir(parents=True, exist_ok=True)
    current = FINDINGS / f".current-atheris-{os.getpid()}"
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        if left < 5:
            break
        before = set(os.listdir(FINDINGS))
        cmd = [
            sys.executable, str(HERE / "fuzz_loads.py"),
            f"-max_total_time={int(left)}", f"-timeout={args.timeout}",
            f"-rss_limit_mb={args.rss_limit_mb}", f"-max_len={MAX_LEN}",
            f"-artifact_prefix={FINDINGS}/atheris-", "-print_final_stats=1",
            str(work), str(SEEDS),
        ]
        if args.seed is not None:
            # libFuzzer reads -seed=0 as "pick one at random": shift by one so that
            # every --seed, 0 included, replays the same mutations.
            cmd.insert(2, f"-seed={args.seed + attempt + 1}")
        env = _env(not args.no_exercise)
        env["SKJAR_FUZZ_CURRENT"] = str(current)
        started = time.monotonic()
        with open(log, "a") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        elapsed = time.monotonic() - started
        text = log.read_text(errors="replace")
        run_text = text[text.rfind("INFO: Seed:"):] if "INFO: Seed:" in text else text
        stats = {k: int(v) for k, v in _STAT.findall(run_text)}
        progress = [int(n) for n in _PROGRESS.findall(run_text)]
        result.executions += stats.get("number_of_executed_units", max(progress, default=0))
        result.seconds += elapsed
        new = sorted(n for n in set(os.listdir(FINDINGS)) - before if n.startswith("atheris-"))
        if proc.returncode != 0 and not new and current.exists():
            # Killed in a way libFuzzer could not report (e.g. a C stack overflow).
            data = current.read_bytes()
            name = f"atheris-crash-{hashlib.sha1(data).hexdigest()}"
            (FINDINGS / name).write_bytes(data)
            new = [name]
        result.findings += [str(FINDINGS / n) for n in new]
        for name in new:
            result.reasons[str(FINDINGS / name)] = _atheris_reason(run_text)
        if not new and (proc.returncode != 0 or elapsed < left - 10):
            # Stopped early with nothing on record (killed from outside, or an exit code
            # libFuzzer did not explain): say so, and fuzz on for the time left, so that
            # a pass never ends quietly short.
            print(f"atheris stopped after {elapsed:.0f} s of {left:.0f} (exit code "
                  f"{proc.returncode}) with no input on record; restarting (log: {log})")
            attempt += 1
            continue
        if proc.returncode == 0 or not args.keep_going:
            break
        attempt += 1
    current.unlink(missing_ok=True)
    return result


_REASON_START = re.compile(r"^(=== Uncaught Python exception|==\d+== ?ERROR|ERROR: libFuzzer)",
                           re.M)


def _atheris_reason(run_text: str, lines: int = 25) -> str:
    """The exception or crash report libFuzzer logged for a finding, trimmed.

    Printed with the summary so that a CI log, where the findings directory is
    gone, still says what broke.
    """
    match = _REASON_START.search(run_text)
    if match is None:
        return ""
    # A few lines before it too: glibc's "corrupted double-linked list" and the like
    # come just before libFuzzer's "deadly signal".
    before = run_text[: match.start()].splitlines()[-6:]
    return "\n".join(before + run_text[match.start():].splitlines()[:lines])


def _input_note(path: str, limit: int = 12288) -> str:
    """A small finding's bytes as base64, to rebuild it from a log alone."""
    import base64

    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    if len(data) > limit:
        return f"({len(data)} bytes: too large to print)"
    return f"({len(data)} bytes, base64) " + base64.b64encode(data).decode()


# -- the loop -------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_loop(seconds: float, args: argparse.Namespace, log: Path) -> Result:
    import json

    result = Result("loop")
    FINDINGS.mkdir(parents=True, exist_ok=True)
    current = FINDINGS / f".current-loop-{os.getpid()}"
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        if left < 5:
            break
        convert = args.target == "convert"
        cmd = [
            sys.executable, str(HERE / "loop.py"), "--seconds", str(left),
            "--seeds", str(PICKLE_SEEDS if convert else SEEDS), "--findings", str(FINDINGS),
            "--current", str(current), "--target", args.target,
        ]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed + attempt)]
        if args.no_exercise:
            cmd.append("--no-exercise")
        started = time.monotonic()
        current.unlink(missing_ok=True)
        with open(log, "a") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    env=_env(not args.no_exercise), start_new_session=True)
            kind = None
            last_change = time.monotonic()
            last_mtime = 0.0
            while proc.poll() is None:
                time.sleep(0.5)
                try:
                    mtime = current.stat().st_mtime
                except FileNotFoundError:
                    mtime = 0.0
                now = time.monotonic()
                if mtime != last_mtime:
                    last_mtime, last_change = mtime, now
                elif mtime and now - last_change > args.timeout:
                    kind = "timeout"
                elif _rss_mb(proc.pid) > args.rss_limit_mb:
                    kind = "oom"
                if kind:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
        elapsed = time.monotonic() - started
        result.seconds += elapsed
        text = log.read_text(errors="replace").strip().splitlines()[-200:]
        summary = next((json.loads(x) for x in reversed(text) if x.startswith('{"executions"')),
                       None)
        count = Path(str(current) + ".count")
        if summary and kind is None and proc.returncode in (0, 3):
            result.executions += summary["executions"]
        elif count.exists():  # killed (crash, hang, memory): its last progress note
            result.executions += int(count.read_text() or 0)
        count.unlink(missing_ok=True)
        if proc.returncode == 3:
            found = [x.split(" ", 1)[1] for x in text if x.startswith("FINDING ")]
            result.findings.append(found[-1] if found else "finding (see log)")
        elif kind or proc.returncode != 0:
            kind = kind or ("crash" if proc.returncode < 0 else "error")
            data = current.read_bytes() if current.exists() else b""
            suffix = ".pkl" if convert else ".skjar"
            prefix = "loop-convert" if convert else "loop"
            path = FINDINGS / f"{prefix}-{kind}-{hashlib.sha1(data).hexdigest()}{suffix}"
            path.write_bytes(data)
            recent = Path(str(current) + ".recent")
            if recent.is_dir():  # the inputs before it (heap damage shows up late)
                shutil.copytree(recent, str(path)[: -len(suffix)] + ".recent",
                                dirs_exist_ok=True)
            result.findings.append(str(path))
        else:
            break
        if not args.keep_going:
            break
        attempt += 1
    current.unlink(missing_ok=True)
    shutil.rmtree(str(current) + ".recent", ignore_errors=True)
    return result


def _loop_reason(path: str) -> str:
    """The traceback the loop driver wrote beside its finding, if any."""
    text = Path(path).with_suffix(".txt")
    try:
        return "\n".join(text.read_text(errors="replace").splitlines()[-25:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Fuzz skjar.loads (or the pickle/joblib converter) for a bounded time.")
    ap.add_argument("--seconds", type=float, default=60, help="fuzzing time per engine")
    ap.add_argument("--engine", choices=("auto", "atheris", "loop", "both"), default="auto")
    ap.add_argument("--timeout", type=int, default=20, help="seconds per input before a hang")
    ap.add_argument("--rss-limit-mb", type=int, default=3072)
    ap.add_argument("--keep-going", action="store_true",
                    help="restart after a finding instead of stopping")
    ap.add_argument("--no-exercise", action="store_true",
                    help="only load, do not call predict/transform on loaded models")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--malloc-check", action="store_true",
                    help="glibc's checking allocator: heap damage aborts at the input that did it")
    ap.add_argument("--fresh-seeds", action="store_true", help="rewrite the seed corpus")
    ap.add_argument("--target", choices=("loads", "convert"), default="loads",
                    help="skjar.loads on jars, or skjar.legacy.load_legacy on pickles "
                         "and joblib files (loop engine only)")
    args = ap.parse_args(argv)

    global MALLOC_CHECK
    MALLOC_CHECK = args.malloc_check
    began = time.monotonic()
    engines = {"auto": ["atheris" if have_atheris() else "loop"], "both": ["atheris", "loop"]}.get(
        args.engine, [args.engine])
    if args.target == "convert":
        if args.engine in ("atheris", "both"):
            print("--target convert runs with the loop engine only")
            return 2
        engines = ["loop"]
    if "atheris" in engines and not have_atheris():
        print("atheris is not installed: pip install atheris (or use --engine loop)")
        return 2
    ensure_seeds(args.fresh_seeds, convert=args.target == "convert")
    FINDINGS.mkdir(parents=True, exist_ok=True)
    tag = "-convert" if args.target == "convert" else ""  # two campaigns may run at once
    logs = {e: FINDINGS.parent / f"{e}{tag}.log" for e in engines}
    for path in logs.values():
        path.write_text("")
    what = "skjar.legacy.load_legacy" if args.target == "convert" else "skjar.loads"
    print(f"fuzzing {what} with {', '.join(engines)} for {args.seconds:.0f} s"
          f" (logs: {', '.join(str(p) for p in logs.values())})", flush=True)

    results: list[Result] = []
    if len(engines) == 2:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(run_atheris, args.seconds, args, logs["atheris"]),
                       pool.submit(run_loop, args.seconds, args, logs["loop"])]
            results = [f.result() for f in futures]
    elif engines == ["atheris"]:
        results = [run_atheris(args.seconds, args, logs["atheris"])]
    else:
        results = [run_loop(args.seconds, args, logs["loop"])]

    for r in results:
        print(r.line())
        for path in r.findings:
            print(f"  FINDING: {path}")
            reason = r.reasons.get(path) or _loop_reason(path)
            for line in reason.splitlines():
                print(f"    | {line}")
            note = _input_note(path)
            if note:
                print(f"    input {note}")
    total = sum(r.executions for r in results)
    print(f"total: {total} executions, wall time {time.monotonic() - began:.0f} s")
    return 1 if any(r.findings for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
