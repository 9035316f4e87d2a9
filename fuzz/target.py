"""The property every fuzz driver checks: what ``skjar.loads`` may do with any bytes.

- it returns an object, or raises a ``SkjarError`` subclass - nothing else
  escapes (any other exception is a finding);
- it runs no foreign code: an audit hook turns process, shell, network,
  ctypes and file-writing events during a load into findings, and records
  imports of modules outside numpy/scipy/scikit-learn/the standard library;
- it does not hang or crash the interpreter (the drivers enforce this: atheris
  with libFuzzer's ``-timeout``, the loop driver with a watchdog process);
- its memory stays bounded: ``limit_memory`` caps the address space, so an
  allocation a small file should never cause fails with MemoryError, which is
  a finding unless skjar turned it into a SkjarError first.

``check_convert`` is the same property for the pickle/joblib converter
(``skjar.legacy.load_legacy``), plus one of its own: what it returns dumps to a
jar that loads, or ``dump`` refuses it with a ``SkjarError``.

Optionally (``exercise=True``) a loaded estimator is also used - predict,
transform, query on a small input - because the meaning checks exist so that
compiled code cannot read out of bounds later: a segfault there is a finding,
a Python exception is not (the model is nonsense, and says so).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import signal
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

import skjar
from skjar import api as skjar_api
from skjar.errors import SkjarError


class Finding(Exception):
    """``loads`` broke its contract on this input."""


# -- the audit hook ---------------------------------------------------------------
_DANGEROUS_PREFIXES = (
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
    "os.killpg", "os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown",
    "os.putenv", "os.unsetenv", "os.symlink", "os.link", "os.mkdir",
    "subprocess.Popen", "pty.spawn", "shutil.", "socket.", "ctypes.", "webbrowser.open",
    "urllib.Request", "pickle.find_class", "code.__new__",
    "function.__new__", "object.__setattr__", "object.__delattr__", "sys.setrecursionlimit",
    "resource.setrlimit", "sqlite3.", "ftplib.", "smtplib.", "http.", "tempfile.mkstemp",
    "tempfile.mkdtemp",
)
_ALLOWED_TOP = {"numpy", "scipy", "sklearn", "skjar", "joblib", "threadpoolctl", "narwhals",
                "msgpack", "xxhash", "zstandard", "lz4", "blake3", "cryptography", "_cffi_backend",
                "atheris", "hypothesis", "pytest", "_pytest", "packaging",
                *sys.stdlib_module_names}

_active = False
_phase = "load"  # or "use": the loaded object is being exercised
_events: list[str] = []
_imports: set[str] = set()
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _active:
        return
    if args and "__pycache__" in str(args[0]):
        return  # the import system writing bytecode caches of a (trusted) module
    if event == "import":
        top = str(args[0]).split(".")[0]
        if top not in _ALLOWED_TOP and top not in _imports:
            _imports.add(top)
            _events.append(f"import of {args[0]!r}")
        return
    if event == "open":
        mode = args[1] if len(args) > 1 else "r"
        flags = args[2] if len(args) > 2 else 0
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing:
            _events.append(f"open({args[0]!r}, {mode!r})")
        return
    if event.startswith(_DANGEROUS_PREFIXES):
        if _phase == "use" and event.startswith("ctypes."):
            return  # threadpoolctl inspecting BLAS libraries at predict time
        if _phase == "use" and event == "subprocess.Popen" and "lscpu" in repr(args)[:40]:
            return  # joblib/loky counting physical cores
        if event.startswith("object.") and _importing():
            return  # module code setting class attributes (e.g. namedtuple's __module__)
        _events.append(f"{event}{args!r:.200}")


def _importing() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def preimport_trusted() -> None:
    """Import every module the default trust table names, so loads import nothing new."""
    import importlib

    from skjar import _trusted_names as t

    for spec in (*t.OBJECTS, *t.VALUES, *t.CALLS):
        try:
            importlib.import_module(spec.partition(":")[0])
        except Exception:
            pass


def install_guard() -> None:
    """Install the audit hook once (it is inert outside ``check``).

    Every module the trust table names is imported first: what importing a
    trusted module does (sklearn sets an environment variable, some modules
    import helpers) is not the loader's doing and is not watched.
    """
    global _installed
    if not _installed:
        preimport_trusted()
        sys.addaudithook(_hook)
        _installed = True


def limit_memory(extra_mb: int = 3072) -> None:
    """Cap the address space at what the process uses now plus ``extra_mb``."""
    try:
        with open("/proc/self/status") as f:
            size_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize"))
    except (OSError, StopIteration, ValueError):
        return
    cap = (size_kb * 1024) + extra_mb * (1 << 20)
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


# -- the property -------------------------------------------------------------------
_DIGITS = re.compile(r"\d+")


def outcome(exc: BaseException | None) -> str:
    """A coarse signature of how a load ended (feedback for the loop driver)."""
    if exc is None:
        return "ok"
    text = _DIGITS.sub("N", str(exc))[:70]
    return f"{type(exc).__name__}: {text}"


# skjar.loads and skjar.load(path) read small jars through a compiled front
# (src/skjar/_front.c), whose twin is the Python reader (open_source): loaded with the
# front turned away, every input must give loads' outcome. Inputs up to this size are
# also loaded from a file, which must agree too;
# mapped (mmap=True, through the same front) with verify="full" it must agree too, and
# with the default structure check it may load what loads refuses for damaged data
# bytes, but must still raise nothing but SkjarError and do nothing forbidden.
_FILE_MAX = 4 << 20
_folder: str | None = None


def _as_file(data: bytes, name: str) -> str:
    """``data`` written to ``name`` in this process's own folder (an old joblib file names
    sidecar files beside it: nothing else is there)."""
    global _folder
    if _folder is None:
        import atexit
        import shutil
        import tempfile

        _folder = tempfile.mkdtemp(prefix="skjar-fuzz-")
        atexit.register(shutil.rmtree, _folder, True)
    path = os.path.join(_folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _attempt(what: str, fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, str]:
    """``fn(...)``'s result and "ok", or ``None`` and the ``SkjarError``'s outcome; any other
    exception breaks the contract (only a ``SkjarError`` may escape)."""
    try:
        return fn(*args, **kwargs), "ok"
    except SkjarError as exc:
        return None, outcome(exc)
    except Exception as exc:
        raise Finding(f"{what} raised {type(exc).__name__}: {exc!s:.300}") from exc


def _same_kind(a: str, b: str) -> bool:
    return a.split(":")[0] == b.split(":")[0]


def _no_events(during: str) -> None:
    if _events:
        raise Finding(f"forbidden action while {during}: {_events[:3]}")


@contextlib.contextmanager
def _watched() -> Iterator[None]:
    """The audit hook on (events cleared), warnings off, for one input."""
    global _active, _phase
    install_guard()
    del _events[:]
    _active = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _active, _phase = False, "load"


def _use_watched(obj: Any, exercise: bool, what: str) -> None:
    global _phase
    if obj is not None and exercise:
        _phase = "use"
        use(obj)
    _no_events(f"using the {what} object")


def _loads_in_python(data: bytes) -> Any:
    """``skjar.loads(data)`` read by the Python reader: the front steps aside for every jar."""
    real = skjar_api.read_small
    skjar_api.read_small = lambda *args, **kwargs: None
    try:
        return skjar.loads(data)
    finally:
        skjar_api.read_small = real


def check(data: bytes, exercise: bool = False) -> str:
    """Load ``data``; raise ``Finding`` if the contract is broken, else describe the outcome."""
    path = _as_file(data, "input.skjar") if len(data) <= _FILE_MAX else None
    with _watched():
        obj, result = _attempt("loads", skjar.loads, data)
        _, twin = _attempt("loads without the front", _loads_in_python, data)
        if not _same_kind(twin, result):
            raise Finding(f"loads gave {result!r:.200}, the Python reader {twin!r:.200}")
        if path is not None:
            _, from_file = _attempt("load(path)", skjar.load, path)
            if not _same_kind(from_file, result):
                raise Finding(f"loads gave {result!r:.200}, load(path) {from_file!r:.200}")
            for verify in ("full", "structure"):
                _, mapped = _attempt(f"load(path, mmap=True, verify={verify!r})", skjar.load,
                                     path, mmap=True, verify=verify)
                if verify == "full" and not _same_kind(mapped, result):
                    raise Finding(f"loads gave {result!r:.200}, mapped {mapped!r:.200}")
        _no_events("loading")
        _use_watched(obj, exercise, "loaded")
    return result


# -- the converter's property -------------------------------------------------------------
def check_convert(data: bytes, exercise: bool = False) -> str:
    """Read ``data`` as a legacy pickle or joblib file; raise ``Finding`` on a broken contract.

    The converter's contract (docs/convert.md): whatever the bytes, ``load_legacy``
    returns an object or raises a ``SkjarError``, takes no foreign action, neither
    hangs nor crashes; from a path it agrees with a file object; and what it
    returns, ``skjar.dumps`` either writes or refuses with a ``SkjarError`` - and
    what it writes, ``skjar.loads`` takes (``convert`` never writes a jar that
    does not load).
    """
    from skjar.legacy import load_legacy

    path = _as_file(data, "input.pkl") if len(data) <= _FILE_MAX else None
    with _watched():
        obj, result = _attempt("load_legacy", load_legacy, io.BytesIO(data))
        if path is not None:
            _, from_file = _attempt("load_legacy(path)", load_legacy, path)
            if not _same_kind(from_file, result):
                raise Finding(f"from bytes {result!r:.200}, from a path {from_file!r:.200}")
        _no_events("converting")
        if obj is not None:
            _same_encoding_either_way(obj)
            jar, dumped = _attempt("dumps of the converted object", skjar.dumps, obj)
            if jar is None:
                result = "dump refused: " + dumped
            else:
                try:
                    skjar.loads(jar)
                except Exception as exc:
                    raise Finding(
                        f"the converted object dumps, but its jar does not load: "
                        f"{type(exc).__name__}: {exc!s:.300}") from exc
        _no_events("saving the converted object")
        _use_watched(obj, exercise, "converted")
    return result


def _same_encoding_either_way(obj: Any) -> None:
    """The compiled encoder walk and packer (_encode.c, _pack.c) against their Python
    twins on a converted object - shapes no test wrote by hand: the same tree and buffers,
    or the same refusal."""
    from skjar import _compiled
    from skjar.codec import Encoder

    fast = _compiled.speedups
    if fast is None:
        return

    def encode() -> tuple[Any, ...]:
        try:
            enc = Encoder()
            return ("ok", enc.encode_root(obj), [bytes(b) for b in enc.buffers])
        except Exception as exc:  # either side's refusal, compared below
            return ("refused", type(exc).__name__, str(exc))

    compiled = encode()
    _compiled.speedups = None
    try:
        twin = encode()
    finally:
        _compiled.speedups = fast
    if compiled != twin:
        raise Finding(f"the compiled encoder gives {compiled!r:.300}, its Python twin "
                      f"{twin!r:.300}")


# -- memory ------------------------------------------------------------------------------
# Decompression may expand a section (within the ratio caps), and a loaded or converted
# model holds copies of its arrays (and the jar a converted one dumps to): anything far
# beyond the input is an allocation the file's own size did not pay for.
MEMORY_SLACK = 32 << 20
MEMORY_FACTOR = 300


def memory_peak(check: Any, data: bytes) -> int:
    """Peak bytes Python allocates while ``check(data)`` runs, imports and caches warm."""
    import tracemalloc

    check(data)  # warm-up, outside the measurement
    tracemalloc.start()
    try:
        check(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- using a loaded object ---------------------------------------------------------------
_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform",
            "score_samples", "apply", "kneighbors", "decision_path")


def _single_job(obj: Any) -> None:
    """n_jobs=1 everywhere: a crafted n_jobs (10**4 threads) tests joblib, not skjar."""
    get_params = getattr(obj, "get_params", None)
    if not callable(get_params):
        return
    try:
        keys = [k for k in get_params(deep=True) if k == "n_jobs" or k.endswith("__n_jobs")]
        obj.set_params(**{k: 1 for k in keys})
    except Exception:
        pass
    for fitted in getattr(obj, "estimators_", ()) if isinstance(
            getattr(obj, "estimators_", None), list) else ():
        if hasattr(fitted, "n_jobs"):
            try:
                fitted.n_jobs = 1
            except Exception:
                pass


def _n_features(obj: Any) -> int:
    n = getattr(obj, "n_features_in_", None)
    if isinstance(n, (int, np.integer)) and 0 < n < 10_000:
        return int(n)
    data = getattr(obj, "data", None)
    shape = getattr(data, "shape", None)
    if isinstance(shape, tuple) and len(shape) == 2 and 0 < shape[1] < 10_000:
        return int(shape[1])
    return 4


def use(obj: Any, depth: int = 0) -> None:
    """Call the usual inference methods on a small input; Python errors are fine.

    (A crafted model is nonsense and may fail in any way Python can report,
    even on attribute access: only a crash or a forbidden action counts. Slow use is
    not: heavy computation from a crafted parameter - an ``ngram_range`` of (-10**9, 2)
    - is outside skjar's guarantees (docs/security.md, section 11), so Python-level
    use stops after ``USE_SECONDS``; a hang while loading is still a finding.)
    """
    if depth:
        try:
            _use(obj, depth)
        except Exception:
            pass
        return
    # A crafted n_jobs on a fitted sub-estimator that get_params cannot reach
    # (HistGradientBoosting's _preprocessor) started loky workers: that tests
    # joblib, not skjar, and took 30 s. Every Parallel runs in this process.
    from joblib import parallel_config

    # CPU time, on SIGVTALRM: libFuzzer's own -timeout keeps ITIMER_REAL and SIGALRM.
    previous = signal.signal(signal.SIGVTALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_VIRTUAL, USE_SECONDS)
    try:
        with parallel_config(backend="sequential"):
            _use(obj, depth)
    except (Exception, _OutOfTime):
        pass
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous if previous is not None else signal.SIG_DFL)


USE_SECONDS = 3.0


class _OutOfTime(BaseException):  # (not Exception: the model's own except clauses pass it)
    pass


def _out_of_time(signum: int, frame: Any) -> None:
    raise _OutOfTime


def _use(obj: Any, depth: int = 0) -> None:
    if depth > 3:
        return
    if isinstance(obj, dict):
        for v in list(obj.values())[:20]:
            use(v, depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for v in list(obj)[:20]:
            use(v, depth + 1)
        return
    try:
        import scipy.sparse as sp

        if sp.issparse(obj):
            shape = obj.shape
            if len(shape) == 2 and shape[0] * shape[1] <= 1 << 20:
                obj.toarray()
                obj @ np.ones(shape[1])
                obj.T @ np.ones(shape[0])
                obj.sum(axis=0)
            return
    except Exception:
        return
    if not hasattr(obj, "get_params"):  # (sklearn's pretty-printer is exponential on shared DAGs)
        repr(obj)
    module = type(obj).__module__ or ""
    if module.startswith("numpy.random"):
        state = getattr(obj, "state", None)  # bit generators (and their C state)
        for meth in ("random_raw", "random", "random_sample"):
            fn = getattr(obj, meth, None)
            if callable(fn):
                try:
                    fn(2)
                except Exception:
                    pass
        del state
        return
    if type(obj).__name__ in ("KDTree", "BallTree"):
        try:
            d = obj.data.shape[1]
            x = np.linspace(0, 1, 3 * d).reshape(3, d)
            obj.query(x, k=1)
            obj.query_radius(x, r=0.5)
            obj.kernel_density(x, h=0.5)
        except Exception:
            pass
        return
    _single_job(obj)
    n = _n_features(obj)
    inputs: list[Any] = [np.linspace(-1, 1, 4 * n).reshape(4, n)]
    if hasattr(obj, "steps") or hasattr(obj, "vocabulary_"):
        inputs.append(["w1 w2 w7", "w3"])
    for meth in _METHODS:
        fn = getattr(obj, meth, None)
        if not callable(fn):
            continue
        for x in inputs:
            try:
                fn(x)
            except Exception:
                pass
