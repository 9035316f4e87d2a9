"""Does ``skjar predict`` keep memory flat on a CSV far larger than memory should allow?

Generates a large CSV (default 5 GB) of numeric features, streaming it to disk
block by block, trains a small pipeline (StandardScaler + LogisticRegression on
named columns) and saves it as a jar, then runs ``skjar predict`` on the file in
a subprocess while sampling the child's resident memory (RSS, via psutil or
/proc). Prints the peak RSS, RSS over time, and the throughput; compares with
the same command on a 1 MB file, so the memory that scales with the input (it
should be none) stands out.

    python benchmarks/predict_memory.py                  # 5 GB
    python benchmarks/predict_memory.py --size-gb 0.5    # quicker
    python benchmarks/predict_memory.py --size-gb 2 --chunksize 100000 --keep

The CSV and the predictions are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 20
BLOCK_ROWS = 25_000
N_BLOCKS = 4  # distinct blocks, cycled while writing


def make_model(path: Path) -> None:
    """A pipeline on named columns, saved as a jar."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import skjar

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(5000, N_FEATURES)), columns=_columns())
    y = (X.iloc[:, :5].sum(axis=1) > 0).astype(int)
    skjar.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), path)


def _columns() -> list[str]:
    return [f"f{i}" for i in range(N_FEATURES)]


def write_csv(path: Path, size_bytes: int) -> tuple[int, int]:
    """Stream a CSV of about ``size_bytes`` to ``path``; returns (bytes, rows)."""
    import pandas as pd

    rng = np.random.default_rng(1)
    blocks = []
    for _ in range(N_BLOCKS):
        df = pd.DataFrame(rng.normal(size=(BLOCK_ROWS, N_FEATURES)), columns=_columns())
        blocks.append(df.to_csv(index=False, header=False, float_format="%.5f").encode())
    header = (",".join(_columns()) + "\n").encode()
    written, rows, i = 0, 0, 0
    with open(path, "wb") as f:
        f.write(header)
        written += len(header)
        while written < size_bytes:
            block = blocks[i % N_BLOCKS]
            if written + len(block) > size_bytes:
                # Last, partial block: whole lines only.
                cut = block.rfind(b"\n", 0, size_bytes - written) + 1
                if cut <= 0:
                    break
                block = block[:cut]
            f.write(block)
            written += len(block)
            rows += block.count(b"\n")
            i += 1
    return written, rows


def rss_of(pid: int) -> int:
    """Resident memory of ``pid`` and its children, in bytes (psutil, else /proc)."""
    try:
        import psutil
    except ImportError:
        return _proc_rss(pid)
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return int(total)
    except psutil.Error:
        return 0


def _proc_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_predict(
    model: Path, data: Path, out: Path, chunksize: int, interval: float
) -> dict[str, Any]:
    """Run ``skjar predict`` in a child process, sampling its RSS every ``interval`` s."""
    cmd = [
        sys.executable,
        "-m",
        "skjar.cli.main",
        "predict",
        str(model),
        str(data),
        "-o",
        str(out),
        "--chunksize",
        str(chunksize),
        "--json",
        "--no-progress",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        rss = rss_of(proc.pid)
        if rss:
            samples.append((time.perf_counter() - t0, rss))
        time.sleep(interval)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"skjar predict failed ({proc.returncode}):\n{stderr.decode()}")
    return {
        "command": " ".join(cmd),
        "summary": json.loads(stdout),
        "seconds": seconds,
        "samples": samples,
        "peak_rss": max((r for _, r in samples), default=0),
    }


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _timeline(samples: list[tuple[float, int]]) -> str:
    """RSS at 10 %, 25 %, 50 %, 75 % and 90 % of the run."""
    if not samples:
        return "-"
    end = samples[-1][0]
    parts = []
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        t = end * q
        rss = min(samples, key=lambda s: abs(s[0] - t))[1]
        parts.append(f"{int(q * 100)}%: {_mib(rss)}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=5.0, help="CSV size in GB (10^9 bytes)")
    parser.add_argument("--chunksize", type=int, default=50_000, help="skjar predict --chunksize")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval (s)")
    parser.add_argument("--keep", action="store_true", help="keep the CSV and predictions")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="skjar-predict-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * 1e9)
    free = shutil.disk_usage(work).free
    if free < size * 1.2:
        raise SystemExit(
            f"not enough disk in {work}: {free / 1e9:.1f} GB free, need {size * 1.2 / 1e9:.1f}"
        )
    model = work / "model.skjar"
    small, big = work / "small.csv", work / "big.csv"
    out_small, out_big = work / "small-pred.csv", work / "big-pred.csv"
    try:
        make_model(model)
        write_csv(small, 1_000_000)
        t0 = time.perf_counter()
        nbytes, rows = write_csv(big, size)
        gen_s = time.perf_counter() - t0
        print(f"generated {big}: {nbytes / 1e9:.2f} GB, {rows:,} rows in {gen_s:.1f} s")

        base = run_predict(model, small, out_small, args.chunksize, args.interval)
        res = run_predict(model, big, out_big, args.chunksize, args.interval)
        s = res["summary"]
        steady = [r for t, r in res["samples"] if t > res["seconds"] * 0.1]
        print(f"command: {res['command']}")
        print(f"rows scored:        {s['rows']:,} (chunksize {args.chunksize:,})")
        print(f"wall time:          {res['seconds']:.1f} s")
        print(
            f"throughput:         {nbytes / 1e6 / res['seconds']:.0f} MB/s, "
            f"{s['rows'] / res['seconds']:,.0f} rows/s"
        )
        print(f"peak RSS, 1 MB CSV: {_mib(base['peak_rss'])}")
        print(f"peak RSS, {nbytes / 1e9:.2f} GB:   {_mib(res['peak_rss'])}")
        if steady:
            print(
                f"RSS after warm-up:  min {_mib(min(steady))}, median "
                f"{_mib(statistics.median(steady))}, max {_mib(max(steady))} "
                f"({len(res['samples'])} samples)"
            )
        print(f"RSS over the run:   {_timeline(res['samples'])}")
        growth = res["peak_rss"] - base["peak_rss"]
        print(
            f"peak RSS beyond the 1 MB run: {_mib(growth)} for {nbytes / base['summary']['input_bytes']:,.0f}x "
            "the input"
        )
    finally:
        if not args.keep:
            for p in (big, small, out_big, out_small, model):
                p.unlink(missing_ok=True)
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
