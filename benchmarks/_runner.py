"""Parent-side process management: the measurement runners and the ``--processes`` groups."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from _measure import read_pss

BENCH_DIR = Path(__file__).resolve().parent
CHILD = str(BENCH_DIR / "_child.py")


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def child_env(threads: int) -> dict[str, str]:
    """Environment for child processes; ``threads > 0`` caps OpenMP/BLAS thread pools.

    On a small shared machine, OpenMP/BLAS pools that spin-wait for busy cores can make a
    256-row predict take a second instead of milliseconds, which would swamp the "first
    predict" figure; persistence itself does not use these pools.
    """
    env = dict(os.environ)
    if threads > 0:
        for var in THREAD_VARS:
            env[var] = str(threads)
    return env


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _read_result(req: dict[str, Any], status: str) -> dict[str, Any]:
    result_path = Path(req["result_path"])
    log_path = Path(req["log_path"])
    try:
        result: dict[str, Any] = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = {"error": f"child produced no result ({status})"}
    if "error" in result:
        result["log_tail"] = _tail(log_path)
    for p in (result_path, log_path):
        p.unlink(missing_ok=True)
    return result


class ZygoteRunner:
    """Runs each measurement in a process forked from a pre-imported "zygote" interpreter."""

    def __init__(
        self,
        modules: list[str],
        serializers: list[str],
        work_dir: Path,
        timeout: float,
        threads: int,
    ) -> None:
        self.work_dir = work_dir
        self.timeout = timeout
        self._n = 0
        setup = work_dir / "zygote-setup.json"
        setup.write_text(json.dumps({"modules": modules, "serializers": serializers}))
        self._stderr = open(work_dir / "zygote.log", "wb")  # noqa: SIM115 -- closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, "zygote", str(setup)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            cwd=BENCH_DIR,
            env=child_env(threads),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()
        line = self._next_line(600.0)
        if not line.startswith("ready"):
            raise RuntimeError(f"zygote failed to start: {_tail(work_dir / 'zygote.log')}")
        self.import_problems: list[str] = json.loads(line.split(" ", 1)[1])["problems"]

    def _pump(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty as exc:
            raise TimeoutError from exc
        if line is None:
            raise RuntimeError(f"zygote exited: {_tail(self.work_dir / 'zygote.log')}")
        return line

    def run(self, req: dict[str, Any]) -> dict[str, Any]:
        self._n += 1
        req = dict(req)
        req["result_path"] = str(self.work_dir / f"result-{self._n}.json")
        req["log_path"] = str(self.work_dir / f"child-{self._n}.log")
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        pid = int(self._next_line(60.0).split()[1])
        try:
            done = self._next_line(self.timeout)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)  # the measurement child we asked the zygote to fork
            self._next_line(60.0)  # the zygote's "done" line for the killed child
            return {"error": f"timed out after {self.timeout:.0f}s"}
        return _read_result(req, f"exit status {done.split()[2]}")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


class SpawnRunner:
    """Runs each measurement in a brand-new ``python`` interpreter (slower, no fork)."""

    def __init__(self, work_dir: Path, timeout: float, threads: int) -> None:
        self.env = child_env(threads)
        self.work_dir = work_dir
        self.timeout = timeout
        self._n = 0
        self.import_problems: list[str] = []

    def run(self, req: dict[str, Any]) -> dict[str, Any]:
        self._n += 1
        req = dict(req)
        req["result_path"] = str(self.work_dir / f"result-{self._n}.json")
        req["log_path"] = str(self.work_dir / f"child-{self._n}.log")
        req_path = self.work_dir / f"request-{self._n}.json"
        req_path.write_text(json.dumps(req))
        try:
            with open(req["log_path"], "wb") as log:
                proc = subprocess.run(
                    [sys.executable, CHILD, "measure", str(req_path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=BENCH_DIR,
                    timeout=self.timeout,
                    check=False,
                    env=self.env,
                )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {self.timeout:.0f}s"}
        finally:
            req_path.unlink(missing_ok=True)
        return _read_result(req, f"exit status {proc.returncode}")

    def close(self) -> None:
        pass


def hold_group(
    n: int,
    serializer: str,
    path: str | None,
    meta_path: str,
    modules: list[str],
    work_dir: Path,
    timeout: float,
    threads: int,
) -> dict[str, Any]:
    """Start ``n`` processes that each load ``path`` and predict once; sum their PSS."""
    req = {"serializer": serializer, "path": path, "meta_path": meta_path, "modules": modules}
    req_path = work_dir / f"hold-{serializer}.json"
    req_path.write_text(json.dumps(req))
    procs: list[subprocess.Popen[str]] = []
    logs = []
    env = child_env(threads)
    infos: list[dict[str, Any]] = []
    try:
        for i in range(n):
            log = open(work_dir / f"hold-{serializer}-{i}.log", "wb")  # noqa: SIM115
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [sys.executable, CHILD, "hold", str(req_path)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    cwd=BENCH_DIR,
                    env=env,
                )
            )
        deadline = time.monotonic() + timeout
        for i, proc in enumerate(procs):
            assert proc.stdout is not None
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, remaining))
            line = proc.stdout.readline() if ready else ""
            if not line.startswith("ready"):
                tail = _tail(work_dir / f"hold-{serializer}-{i}.log")
                raise RuntimeError(f"process {i} did not get ready: {line!r} {tail}")
            infos.append(json.loads(line.split(" ", 1)[1]))
        # Everyone has loaded and predicted once and is now idle: read their memory.
        mem = [read_pss(p.pid) for p in procs]
    finally:
        for proc in procs:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
        for i in range(n):
            (work_dir / f"hold-{serializer}-{i}.log").unlink(missing_ok=True)
        req_path.unlink(missing_ok=True)
    return {
        "serializer": serializer,
        "processes": n,
        "pss_total": sum(m["Pss"] for m in mem),
        "rss_total": sum(m["Rss"] for m in mem),
        "pss_anon_total": sum(m["Pss_Anon"] for m in mem),
        "pss_file_total": sum(m["Pss_File"] for m in mem),
        "per_process": mem,
        "children": infos,
    }
