"""Persistence benchmark: skjar vs pickle, joblib, cloudpickle and skops on scikit-learn models.

Usage::

    python benchmarks/persistence.py [--quick] [--models a,b] [--serializers x,y] [--repeat N]
                                     [--samples N]
                                     [--processes 8] [--out results.json]

See benchmarks/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _measure import (
    GiB,
    machine_info,
    median,
    memcpy_bandwidth,
    pagecache_read_bandwidth,
)
from _models import BUILDERS, CachedModel, ensure_model
from _runner import BENCH_DIR, SpawnRunner, ZygoteRunner, hold_group
from _serializers import REPO_ROOT, Serializer, all_serializers, path_size

PROCESS_SERIALIZERS = ("pickle", "joblib-mmap", "skjar-mmap")
BASELINE = "pickle"
MAX_TABLE_WIDTH = 150


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def fmt_seconds(v: float) -> str:
    if v < 1e-3:
        return f"{v * 1e6:.0f}us"
    if v < 0.01:
        return f"{v * 1e3:.2f}ms"
    if v < 1:
        return f"{v * 1e3:.1f}ms"
    if v < 100:
        return f"{v:.2f}s"
    return f"{v:.0f}s"


def fmt_bytes(v: float) -> str:
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v < 1024:
        return f"{sign}{v:.0f}B"
    for unit, scale in (("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)):
        if v < scale * 1024 or unit == "GiB":
            x = v / scale
            return f"{sign}{x:.1f}{unit}" if x < 100 else f"{sign}{x:.0f}{unit}"
    raise AssertionError


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return ""
    if r < 10:
        return f"{r:.2f}x"
    if r < 100:
        return f"{r:.1f}x"
    return f"{r:.0f}x"


def fmt_bandwidth(bytes_per_s: float) -> str:
    return f"{bytes_per_s / GiB:.2f} GiB/s"


def render_table(
    title: str,
    rows: list[str],
    cols: list[str],
    cells: dict[tuple[str, str], str],
    note: str = "",
) -> str:
    """Plain-text table, split into several column blocks if it would be too wide."""
    row_w = max([len(r) for r in rows] + [5])
    widths = {c: max([len(c)] + [len(cells.get((r, c), "")) for r in rows]) for c in cols}
    blocks: list[list[str]] = [[]]
    width = row_w
    for c in cols:
        if blocks[-1] and width + 3 + widths[c] > MAX_TABLE_WIDTH:
            blocks.append([])
            width = row_w
        blocks[-1].append(c)
        width += 3 + widths[c]
    out = [title, "=" * len(title)]
    for block in blocks:
        header = "model".ljust(row_w) + "".join(" | " + c.rjust(widths[c]) for c in block)
        out.append(header)
        out.append("-" * len(header))
        for r in rows:
            out.append(
                r.ljust(row_w)
                + "".join(" | " + cells.get((r, c), "-").rjust(widths[c]) for c in block)
            )
        out.append("")
    if note:
        out.append(note)
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

# key -> (title, formatter, note)
FIGURES: dict[str, tuple[str, Callable[[float], str], str]] = {
    "save_s": (
        "Save time (parent process)",
        fmt_seconds,
        "pickle/cloudpickle write a temp file + fsync + os.replace + directory fsync, as skjar "
        "does; joblib and skops use their own dump (no fsync).",
    ),
    "size_bytes": ("File size", fmt_bytes, ""),
    "load_s": (
        "Load time (fresh process after imports, warm page cache)",
        fmt_seconds,
        "skops: excluding get_untrusted_types (see the inspect/audit table).",
    ),
    "load_predict_s": (
        "Load + first predict time (fresh process)",
        fmt_seconds,
        "mmap loads are lazy: their cost partly moves into the first predict.",
    ),
    "load_peak_extra_rss": (
        "Peak extra RSS during load (fresh process)",
        fmt_bytes,
        "RSS includes mapped file pages touched during load (shared page cache for mmap).",
    ),
    "rss_anon_after_load_extra": (
        "Private memory after load (fresh process): new anonymous RSS",
        fmt_bytes,
        "The peak above also counts the code and file pages a load touches, which the page "
        "cache shares between processes; this counts only the process's own new memory "
        "(0B: none beyond pages it already had).",
    ),
    "audit_s": (
        "Inspect/audit time (parent process)",
        fmt_seconds,
        "skops: get_untrusted_types(file=...); skjar: inspect(path) + audit(path).",
    ),
}


def new_cell(model: str, ser: str) -> dict[str, Any]:
    return {
        "model": model,
        "serializer": ser,
        "save_s": [],
        "size_bytes": [],
        "load_s": [],
        "first_predict_s": [],
        "load_predict_s": [],
        "load_peak_extra_rss": [],
        "rss_after_load_extra": [],
        "rss_anon_after_load_extra": [],
        "rss_file_after_load_extra": [],
        "rss_after_predict_extra": [],
        "audit_s": [],
        "audit_steps_s": {},
        "rss_method": None,
        "predictions_match": None,
        "prediction_mismatches": 0,
        "errors": [],
    }


def compare_predictions(pred: list[Any], ref: np.ndarray) -> int:
    """Number of differing predictions (len(ref) if the shapes differ)."""
    got = np.asarray(pred)
    if got.shape != ref.shape:
        return int(ref.size) if ref.size else 1
    return int(np.sum(got != ref))



def settle() -> None:
    """Untimed, before every save and load: write back every dirty page and collect.

    Serializers that do not fsync (joblib, skops) leave up to a gigabyte of dirty
    pages (knn-big) that the kernel would otherwise write back while the next
    serializer is timed. Every figure starts from a quiet disk.
    """
    if hasattr(os, "sync"):
        os.sync()
    gc.collect()

def run_round(
    cell: dict[str, Any],
    cm: CachedModel,
    model: Any,
    ser: Serializer,
    runner: ZygoteRunner | SpawnRunner,
    work_dir: Path,
) -> None:
    """One save, one load in a fresh process and one inspect/audit, added to ``cell``.

    The artifact is removed at the end: one serializer's file exists at a time (knn-big's
    run a gigabyte each). A failed save or load is recorded in the cell's errors, and the
    cell takes no further rounds.
    """
    path = work_dir / f"{cm.name}{ser.extension}"

    def remove_artifact() -> None:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    try:
        remove_artifact()
        settle()
        t0 = time.perf_counter()
        ser.save(model, str(path))
        cell["save_s"].append(time.perf_counter() - t0)
        cell["size_bytes"].append(path_size(str(path)))
    except Exception as exc:
        cell["errors"].append(f"save: {type(exc).__name__}: {exc}")
        remove_artifact()
        return
    try:
        settle()
        res = runner.run(
            {
                "serializer": ser.name,
                "path": str(path),
                "meta_path": str(cm.meta_path),
                "modules": cm.modules,
            }
        )
        if "error" in res:
            msg = f"load: {res['error']}"
            if res.get("log_tail"):
                msg += "\n" + res["log_tail"]
            cell["errors"].append(msg)
            return
        for key in (
            "load_s",
            "first_predict_s",
            "load_peak_extra_rss",
            "rss_after_load_extra",
            "rss_anon_after_load_extra",
            "rss_file_after_load_extra",
            "rss_after_predict_extra",
        ):
            cell[key].append(res[key])
        cell["load_predict_s"].append(res["load_s"] + res["first_predict_s"])
        cell["rss_method"] = res["rss_method"]
        mismatches = compare_predictions(res["predictions"], cm.meta["y_ref"])
        cell["prediction_mismatches"] = max(cell["prediction_mismatches"], mismatches)
        cell["predictions_match"] = mismatches == 0 and cell["predictions_match"] is not False
        try:
            steps = ser.audit_steps()
            if steps:
                total = 0.0
                for label, call in steps:
                    t0 = time.perf_counter()
                    call(str(path))
                    dt = time.perf_counter() - t0
                    cell["audit_steps_s"].setdefault(label, []).append(dt)
                    total += dt
                cell["audit_s"].append(total)
        except Exception as exc:
            cell["errors"].append(f"audit: {type(exc).__name__}: {exc}")
    finally:
        remove_artifact()


# A model whose pickle is smaller than this takes --samples times as many rounds: its
# millisecond figures one shared-machine hiccup would otherwise decide. Each round visits
# every serializer once (one save, one load, one audit), in alternating order, so every
# serializer's samples are spread over the same minutes: five samples in a row per
# serializer let one slow phase of the machine land on one serializer's samples only.
SAMPLED_BELOW = 16 << 20


def round_order(names: list[str], round_index: int) -> list[str]:
    """The serializers' order in one round: forward, then backward, and so on, so that a
    drift in the machine's speed during a model's rounds hits every serializer alike.

    >>> round_order(["a", "b", "c"], 0), round_order(["a", "b", "c"], 1)
    (['a', 'b', 'c'], ['c', 'b', 'a'])
    """
    return list(names) if round_index % 2 == 0 else list(reversed(names))


def summarize(cells: list[dict[str, Any]]) -> None:
    """Add medians and ratios to pickle (same model) to every cell, in place."""
    for cell in cells:
        cell["median"] = {k: median(cell[k]) for k in FIGURES}
        for extra in (
            "first_predict_s",
            "rss_after_load_extra",
            "rss_file_after_load_extra",
            "rss_after_predict_extra",
        ):
            cell["median"][extra] = median(cell[extra])
        cell["median"]["audit_steps_s"] = {k: median(v) for k, v in cell["audit_steps_s"].items()}
    base = {c["model"]: c for c in cells if c["serializer"] == BASELINE}
    for cell in cells:
        ref = base.get(cell["model"])
        ratios: dict[str, float | None] = {}
        for k in FIGURES:
            v = cell["median"][k]
            b = ref["median"][k] if ref else None
            ratios[k] = (v / b) if (v is not None and b) else None
        cell["ratio_to_pickle"] = ratios


def figure_table(key: str, models: list[str], sers: list[str], cells: list[dict[str, Any]]) -> str:
    title, fmt, note = FIGURES[key]
    table: dict[tuple[str, str], str] = {}
    for cell in cells:
        v = cell["median"][key]
        if cell["errors"] and v is None:
            text = "ERR"
        elif v is None:
            text = "-"
        else:
            text = fmt(v)
            r = cell["ratio_to_pickle"][key]
            if r is not None:
                text += f" {fmt_ratio(r)}"
        if cell["predictions_match"] is False:
            text += " !"
        table[(cell["model"], cell["serializer"])] = text
    suffix = f" -- value and ratio to {BASELINE}" if BASELINE in sers else ""
    notes = [note] if note else []
    if any(c["predictions_match"] is False for c in cells):
        notes.append("'!' = predictions differ from the original model.")
    return render_table(title + suffix, models, sers, table, "\n".join(notes))


def predictions_table(models: list[str], sers: list[str], cells: list[dict[str, Any]]) -> str:
    table: dict[tuple[str, str], str] = {}
    for cell in cells:
        if cell["predictions_match"] is True:
            text = "ok"
        elif cell["predictions_match"] is False:
            text = f"DIFF({cell['prediction_mismatches']})"
        else:
            text = "ERR" if cell["errors"] else "-"
        table[(cell["model"], cell["serializer"])] = text
    return render_table(
        "Predictions vs the original model (held-out X)",
        models,
        sers,
        table,
        "DIFF(n) = n of the held-out predictions differ; ERR = save/load failed.",
    )


# --------------------------------------------------------------------------------------------
# --processes
# --------------------------------------------------------------------------------------------


def run_processes(
    n: int,
    cm: CachedModel,
    sers: dict[str, Serializer],
    work_dir: Path,
    timeout: float,
    threads: int,
) -> dict[str, Any]:
    log(f"\n[processes] {n} processes loading {cm.name} at once")
    model = cm.load_model()
    paths: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    for name in PROCESS_SERIALIZERS:
        ser = sers.get(name)
        if ser is None:
            log(f"  {name}: skipped (serializer unavailable)")
            continue
        path = work_dir / f"{cm.name}-processes-{name}{ser.extension}"
        ser.save(model, str(path))
        paths[name] = path
        sizes[name] = path_size(str(path))
    del model
    gc.collect()

    out: dict[str, Any] = {"model": cm.name, "processes": n, "groups": {}}
    log(f"  baseline: {n} processes that import everything but load no model ...")
    baseline = hold_group(
        n, "none", None, str(cm.meta_path), cm.modules, work_dir, timeout, threads
    )
    out["baseline"] = baseline
    log(f"  baseline: total PSS {fmt_bytes(baseline['pss_total'])}")
    ref = cm.meta["y_ref"]
    for name, path in paths.items():
        log(f"  {name}: starting {n} processes ...")
        try:
            group = hold_group(
                n, name, str(path), str(cm.meta_path), cm.modules, work_dir, timeout, threads
            )
        except Exception as exc:
            log(f"  {name}: FAILED {exc}")
            out["groups"][name] = {"error": str(exc)}
            continue
        finally:
            path.unlink(missing_ok=True)
        group["file_size"] = sizes[name]
        group["model_pss"] = group["pss_total"] - baseline["pss_total"]
        group["model_pss_per_file_size"] = group["model_pss"] / sizes[name]
        group["predictions_match"] = all(
            compare_predictions(c["predictions"], ref) == 0 for c in group["children"]
        )
        group["load_s_median"] = median([c["load_s"] for c in group["children"]])
        out["groups"][name] = group
        log(
            f"  {name}: total PSS {fmt_bytes(group['pss_total'])}, "
            f"above baseline {fmt_bytes(group['model_pss'])} = "
            f"{group['model_pss_per_file_size']:.2f} x file size ({fmt_bytes(sizes[name])})"
        )
    return out


def processes_table(res: dict[str, Any]) -> str:
    n = res["processes"]
    title = f"{n} processes loading {res['model']} at once, each predicting once (sum of PSS)"
    lines = [title, "=" * len(title)]
    header = (
        f"{'serializer':<12} | {'total PSS':>10} | {'PSS - baseline':>14} | "
        f"{'file size':>10} | {'(PSS-base)/size':>15} | {'median load':>11} | predictions"
    )
    lines += [header, "-" * len(header)]
    base = res["baseline"]
    lines.append(
        f"{'(baseline)':<12} | {fmt_bytes(base['pss_total']):>10} | {'':>14} | {'':>10} | "
        f"{'':>15} | {'':>11} | {n} processes, imports only"
    )
    for name, g in res["groups"].items():
        if "error" in g:
            lines.append(f"{name:<12} | ERROR: {g['error']}")
            continue
        lines.append(
            f"{name:<12} | {fmt_bytes(g['pss_total']):>10} | {fmt_bytes(g['model_pss']):>14} | "
            f"{fmt_bytes(g['file_size']):>10} | {g['model_pss_per_file_size']:>14.2f}x | "
            f"{fmt_seconds(g['load_s_median']):>11} | "
            f"{'ok' if g['predictions_match'] else 'DIFF'}"
        )
    lines.append("")
    lines.append(
        "PSS splits shared pages (page cache of an mmap'd file, shared libraries) between the "
        "processes using them;\n'(PSS-base)/size' ~ processes for private copies, ~1 when the "
        "model's pages are shared."
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_list(
    text: str | None, known: list[str], what: str, parser: argparse.ArgumentParser
) -> list[str]:
    if not text:
        return list(known)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark saving/loading scikit-learn models with skjar and alternatives.",
    )
    p.add_argument("--quick", action="store_true", help="small models, 1 repeat (< 2 min)")
    p.add_argument("--models", help=f"comma-separated subset of: {', '.join(BUILDERS)}")
    p.add_argument(
        "--serializers", help=f"comma-separated subset of: {', '.join(all_serializers())}"
    )
    p.add_argument("--repeat", type=int, help="repetitions per figure (default 3, quick 1)")
    p.add_argument(
        "--samples",
        type=int,
        help="a model under 16 MiB takes this many times --repeat rounds (default 5, quick 1)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="N",
        help="also load knn-big in N processes at once and report total PSS (default: off)",
    )
    p.add_argument("--out", type=Path, help="write all raw numbers as JSON here")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=BENCH_DIR / ".cache",
        help="fitted-model cache and scratch space (default: benchmarks/.cache)",
    )
    p.add_argument(
        "--spawn",
        action="store_true",
        help="start a new interpreter for every load instead of forking a pre-imported one",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP/OPENBLAS/MKL_NUM_THREADS for the child processes; 0 = leave the "
        "environment alone (default: 1)",
    )
    p.add_argument(
        "--build-only", action="store_true", help="build/cache the selected models and exit"
    )
    p.add_argument("--no-bounds", action="store_true", help="skip the physical-bounds probes")
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds allowed per child process"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    known_sers = all_serializers()
    model_names = parse_list(args.models, list(BUILDERS), "model", parser)
    ser_names = parse_list(args.serializers, list(known_sers), "serializer", parser)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be >= 1")
    samples = args.samples if args.samples is not None else (1 if args.quick else 5)
    if samples < 1:
        parser.error("--samples must be >= 1")
    cache_dir: Path = args.cache_dir.resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="work-", dir=cache_dir))
    t_start = time.perf_counter()

    info = machine_info(REPO_ROOT)
    log(
        f"skjar persistence benchmark ({'quick' if args.quick else 'full'} sizes, "
        f"repeat={repeat}, samples={samples})"
    )
    mem = info["memory_total_bytes"]
    log(
        f"machine: {info['cpu_model']}, {info['cpu_count']} CPUs, "
        f"{fmt_bytes(mem) if mem else '?'} RAM; python {sys.version.split()[0]}, "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    )

    # --- serializers ------------------------------------------------------------------------
    sers: dict[str, Serializer] = {}
    skipped: dict[str, str] = {}
    for name in dict.fromkeys([*ser_names, *(PROCESS_SERIALIZERS if args.processes else ())]):
        reason = known_sers[name].unavailable()
        if reason is None:
            sers[name] = known_sers[name]
        else:
            skipped[name] = reason
            if name in ser_names:
                log(f"skipped: {name}: {reason}")
    active = [s for s in ser_names if s in sers]
    if not active:
        log("no usable serializer selected")
        return 2

    # --- models -----------------------------------------------------------------------------
    log("\nmodels (cache: " + str(cache_dir / "models") + ")")
    cached: dict[str, CachedModel] = {}
    for name in model_names:
        cached[name] = ensure_model(name, args.quick, cache_dir, log)
        gc.collect()
    if args.processes and "knn-big" not in cached:
        cached["knn-big"] = ensure_model("knn-big", args.quick, cache_dir, log)
    if args.build_only:
        shutil.rmtree(work_dir, ignore_errors=True)
        log(f"models cached in {cache_dir / 'models'}")
        return 0

    # --- physical bounds --------------------------------------------------------------------
    bounds: dict[str, Any] = {}
    if not args.no_bounds:
        log("\nphysical bounds")
        bounds["memcpy"] = memcpy_bandwidth(GiB)
        log(
            f"  memcpy (numpy copy of a 1 GiB array): {fmt_bandwidth(bounds['memcpy']['bytes_per_s'])}"
        )
        bounds["page_cache_read"] = pagecache_read_bandwidth(work_dir, GiB)
        log(
            "  page-cache read (2nd read of a just-written 1 GiB file): "
            f"{fmt_bandwidth(bounds['page_cache_read']['bytes_per_s'])}"
        )
        gc.collect()

    # --- measurements -----------------------------------------------------------------------
    modules = sorted({m for cm in cached.values() for m in cm.modules})
    log(f"\nstarting {'spawn' if args.spawn else 'zygote'} runner ...")
    runner: ZygoteRunner | SpawnRunner
    if args.spawn:
        runner = SpawnRunner(work_dir, args.timeout, args.threads)
    else:
        runner = ZygoteRunner(modules, list(sers), work_dir, args.timeout, args.threads)
    for problem in runner.import_problems:
        log(f"  warning: {problem}")

    cells: list[dict[str, Any]] = []
    total = len(model_names) * len(active)
    k = 0
    processes_result: dict[str, Any] | None = None
    try:
        for mname in model_names:
            cm = cached[mname]
            model = cm.load_model()
            # Rounds interleave the serializers (one save + one load each per round), so
            # that every ratio to pickle compares figures taken minutes apart at most.
            model_cells = {sname: new_cell(cm.name, sname) for sname in active}
            spent = dict.fromkeys(active, 0.0)
            rounds = repeat * (samples if cm.model_path.stat().st_size < SAMPLED_BELOW else 1)
            for r in range(rounds):
                started = time.perf_counter()
                for sname in round_order(active, r):
                    cell = model_cells[sname]
                    if cell["errors"]:
                        continue
                    t0 = time.perf_counter()
                    run_round(cell, cm, model, sers[sname], runner, work_dir)
                    spent[sname] += time.perf_counter() - t0
                log(f"  {mname}: round {r + 1}/{rounds} done ({time.perf_counter() - started:.1f}s)")
            for sname in active:
                k += 1
                cells.append(model_cells[sname])
                log(progress_line(k, total, model_cells[sname], spent[sname]))
            del model
            gc.collect()
        if args.processes:
            processes_result = run_processes(
                args.processes, cached["knn-big"], sers, work_dir, args.timeout, args.threads
            )
    finally:
        runner.close()
        shutil.rmtree(work_dir, ignore_errors=True)

    # --- report -----------------------------------------------------------------------------
    summarize(cells)
    log("")
    log("models:")
    for mname in model_names:
        log(f"  {mname:<16} {cached[mname].meta['description']}")
    log("serializers:")
    for sname in active:
        log(f"  {sname:<16} {sers[sname].description}")
    for sname, reason in skipped.items():
        if sname in ser_names:
            log(f"  {sname:<16} skipped: {reason}")
    log("")
    if bounds:
        log("physical bounds on this machine:")
        log(
            f"  memcpy bandwidth (numpy copy of 1 GiB):       {fmt_bandwidth(bounds['memcpy']['bytes_per_s'])}"
        )
        log(
            "  page-cache read bandwidth (1 GiB, 2nd read): "
            f"{fmt_bandwidth(bounds['page_cache_read']['bytes_per_s'])}"
        )
        log("")
    for key in FIGURES:
        if key == "audit_s" and not any(c["audit_s"] for c in cells):
            continue
        log(figure_table(key, model_names, active, cells))
    log(predictions_table(model_names, active, cells))
    if processes_result is not None:
        log(processes_table(processes_result))
    errors = [c for c in cells if c["errors"]]
    if errors:
        log("errors:")
        for c in errors:
            for e in c["errors"]:
                log(f"  {c['model']} x {c['serializer']}: {e.splitlines()[0]}")
        log("")
    elapsed = time.perf_counter() - t_start
    log(f"done in {elapsed:.0f}s")

    if args.out:
        doc = {
            "schema": 1,
            "quick": args.quick,
            "repeat": repeat,
            "samples": samples,
            "spawn": args.spawn,
            "child_threads": args.threads,
            "elapsed_s": elapsed,
            "machine": info,
            "bounds": bounds,
            "models": {
                m: {k2: v for k2, v in cached[m].meta.items() if k2 not in ("X_test", "y_ref")}
                | {"n_test": len(cached[m].meta["y_ref"])}
                for m in cached
            },
            "serializers": {
                s: {
                    "available": s in sers,
                    "description": known_sers[s].description,
                    "version": sers[s].version() if s in sers else None,
                    "skipped_reason": skipped.get(s),
                }
                for s in dict.fromkeys([*ser_names, *skipped])
            },
            "baseline": BASELINE,
            "results": cells,
            "processes": processes_result,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1, default=_json_default))
        log(f"wrote {args.out}")
    return 1 if errors else 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def progress_line(k: int, total: int, cell: dict[str, Any], seconds: float) -> str:
    head = f"[{k}/{total}] {cell['model']} x {cell['serializer']}"
    parts: list[str] = []
    save = median(cell["save_s"])
    if save is not None:
        parts.append(f"save {fmt_seconds(save)}")
    size = median(cell["size_bytes"])
    if size is not None:
        parts.append(fmt_bytes(size))
    load = median(cell["load_s"])
    if load is not None:
        parts.append(f"load {fmt_seconds(load)}")
    peak = median(cell["load_peak_extra_rss"])
    if peak is not None:
        parts.append(f"peak +{fmt_bytes(peak)}")
    audit = median(cell["audit_s"])
    if audit is not None:
        parts.append(f"audit {fmt_seconds(audit)}")
    if cell["predictions_match"] is not None:
        parts.append("predictions ok" if cell["predictions_match"] else "PREDICTIONS DIFFER")
    for e in cell["errors"]:
        parts.append("ERROR " + e.splitlines()[0][:200])
    return f"{head}: {', '.join(parts)} ({seconds:.1f}s)"


if __name__ == "__main__":
    sys.exit(main())
