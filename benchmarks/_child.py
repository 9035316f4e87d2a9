"""Child-process side of the persistence benchmark.

Modes (``python _child.py MODE REQUEST_JSON``):

``zygote``
    Import numpy, scikit-learn, every module the benchmarked pickles reference and every
    serializer library, ``gc.freeze()``, print ``ready``, then serve requests read from stdin
    (one JSON object per line): for each, ``os.fork()`` a child that performs one measurement
    (see ``measure``), writes its result JSON to ``result_path`` and exits. Replies on stdout:
    ``started PID`` and then ``done PID STATUS``.

    Each measurement therefore runs in a new process that has done all imports but has never
    seen a model -- the same state as a fresh ``python`` that imported everything first -- while
    paying the ~2-3 s scikit-learn import only once per run instead of once per measurement.
    (Run ``persistence.py --spawn`` to use a brand-new interpreter per measurement instead.)

``measure``
    The same measurement in this (freshly spawned) interpreter.

``hold``
    For the ``--processes`` figure: import, load, predict once, print ``ready JSON`` and block
    until stdin is closed, so the parent can read this process's PSS while it is alive.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pickle
import sys
import time
import traceback
from typing import Any

from _measure import PeakRSS, current_rss, read_status
from _serializers import Serializer, get_serializer


def import_everything(modules: list[str], serializers: list[str]) -> list[str]:
    """Import the modules needed before timing; returns import problems (non-fatal)."""
    problems: list[str] = []
    import numpy  # noqa: F401
    import sklearn  # noqa: F401

    for mod in modules:
        try:
            importlib.import_module(mod)
        except Exception as exc:
            problems.append(f"import {mod}: {exc}")
    for name in serializers:
        if name == "none":
            continue
        try:
            get_serializer(name).prepare()
        except Exception as exc:
            problems.append(f"serializer {name}: {exc}")
    return problems


def _load_x_test(meta_path: str) -> Any:
    with open(meta_path, "rb") as f:
        meta = pickle.load(f)
    return meta["X_test"]


def _jsonable(y: Any) -> list[Any]:
    import numpy as np

    out: list[Any] = np.asarray(y).tolist()
    return out


def measure(req: dict[str, Any]) -> dict[str, Any]:
    """Time one load of ``req['path']`` and check its predictions."""
    ser: Serializer = get_serializer(req["serializer"])
    ser.prepare()
    ser.prepare_load(req["path"])
    gc.collect()

    status_before = read_status()
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        model = ser.load(req["path"])
        load_s = time.perf_counter() - t0
    status_after = read_status()
    rss_after_load = status_after["VmRSS"]
    # The test data is a pickle: read only now, so that the timed load is the
    # process's first unpickling. (Read before, it ran pickle's and numpy's
    # reconstruction code once and made pickle's timed load a warm one:
    # iris-knn 0.75 ms warm against ~2 ms cold.)
    X_test = _load_x_test(req["meta_path"])

    t0 = time.perf_counter()
    y = model.predict(X_test)
    predict_s = time.perf_counter() - t0
    rss_after_predict = current_rss()
    return {
        "pid": os.getpid(),
        "load_s": load_s,
        "first_predict_s": predict_s,
        "rss_before_load": peak.before,
        "rss_peak_during_load": peak.peak,
        "load_peak_extra_rss": peak.extra,
        "rss_after_load_extra": rss_after_load - peak.before,
        # what the RSS after load is made of: private memory vs mapped file pages
        "rss_anon_after_load_extra": status_after["RssAnon"] - status_before["RssAnon"],
        "rss_file_after_load_extra": status_after["RssFile"] - status_before["RssFile"],
        "rss_after_predict_extra": rss_after_predict - peak.before,
        "rss_method": peak.method,
        "predictions": _jsonable(y),
    }


def _run_and_write(req: dict[str, Any]) -> int:
    try:
        result = measure(req)
        code = 0
    except BaseException as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        code = 1
    with open(req["result_path"], "w") as f:
        json.dump(result, f)
    return code


def zygote(setup: dict[str, Any]) -> None:
    problems = import_everything(setup["modules"], setup["serializers"])
    gc.collect()
    gc.freeze()  # keep the imported objects' pages shared with the forked children
    out = sys.stdout
    out.write("ready " + json.dumps({"problems": problems}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # child: one measurement, output to a log file, then exit hard
            code = 1
            try:
                fd = os.open(req["log_path"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                code = _run_and_write(req)
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        out.write(f"started {pid}\n")
        out.flush()
        _, status = os.waitpid(pid, 0)
        out.write(f"done {pid} {os.waitstatus_to_exitcode(status)}\n")
        out.flush()


def hold(req: dict[str, Any]) -> None:
    import_everything(req["modules"], [req["serializer"]])
    X_test = _load_x_test(req["meta_path"])
    info: dict[str, Any] = {"pid": os.getpid()}
    model = None
    if req["serializer"] != "none":
        ser = get_serializer(req["serializer"])
        ser.prepare_load(req["path"])
        t0 = time.perf_counter()
        model = ser.load(req["path"])
        info["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        info["predictions"] = _jsonable(model.predict(X_test))
        info["first_predict_s"] = time.perf_counter() - t0
    sys.stdout.write("ready " + json.dumps(info) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # block until the parent closes our stdin
    del model


def main(argv: list[str]) -> int:
    mode, req_path = argv[1], argv[2]
    with open(req_path) as f:
        req = json.load(f)
    if mode == "zygote":
        zygote(req)
        return 0
    if mode == "measure":
        problems = import_everything(req["modules"], [req["serializer"]])
        for p in problems:
            print(f"warning: {p}", file=sys.stderr)
        return _run_and_write(req)
    if mode == "hold":
        hold(req)
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
