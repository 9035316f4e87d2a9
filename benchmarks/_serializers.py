"""Serializers compared by ``persistence.py``.

Every serializer is an object with ``name``, ``save(model, path)`` and ``load(path) -> model``.
Third-party libraries are imported lazily (``prepare()``), so this module itself only needs the
standard library; a serializer whose library is missing reports a reason from ``unavailable()``
and is skipped by the harness.

Some serializers have extra, optional hooks used by the harness:

* ``prepare_load(path)`` runs in the child *before* the timed ``load`` call (skops computes the
  list of types to trust there; that cost is reported separately as the audit figure),
* ``audit_steps()`` returns the named inspect/audit calls whose time is the "inspect/audit" figure.
"""

from __future__ import annotations

import importlib
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SKJAR_API = ("dump", "load", "inspect", "audit")

# (label, call taking the artifact path) -- one timed step of the inspect/audit figure
AuditStep = tuple[str, Callable[[str], Any]]


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` via a temp file in the same directory: flush, fsync, os.replace, then
    fsync the directory (so the rename itself survives a crash).

    This is the same durability guarantee as skjar's atomic write, so the pickle save figure is
    comparable with skjar's.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def import_skjar() -> Any:
    """Import skjar, falling back to the repository's ``src/`` directory when not installed.

    Raises ImportError (with a readable reason) when skjar is missing or does not yet expose the
    API the benchmark needs.
    """
    src = str(REPO_ROOT / "src")
    try:
        mod = importlib.import_module("skjar")
    except ImportError:
        mod = None
    incomplete = mod is None or not all(hasattr(mod, a) for a in SKJAR_API)
    if incomplete and (REPO_ROOT / "src" / "skjar").is_dir() and src not in sys.path:
        # Not installed (or a namespace-package shadow): try the in-repo source tree.
        sys.path.insert(0, src)
        for key in [k for k in sys.modules if k == "skjar" or k.startswith("skjar.")]:
            del sys.modules[key]
        try:
            mod = importlib.import_module("skjar")
        except Exception as exc:
            raise ImportError(f"import skjar failed: {type(exc).__name__}: {exc}") from exc
    if mod is None:
        raise ImportError("skjar is not installed and src/skjar was not found")
    missing = [a for a in SKJAR_API if not hasattr(mod, a)]
    if missing:
        raise ImportError(f"skjar has no {', '.join(missing)} yet")
    return mod


class Serializer:
    """Base class: pickle-like serializers override ``save``/``load``."""

    name: str = ""
    extension: str = ".bin"
    libraries: tuple[str, ...] = ()  # modules imported by prepare()
    description: str = ""

    def unavailable(self) -> str | None:
        """None when usable, otherwise the reason it must be skipped."""
        try:
            self.prepare()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def prepare(self) -> None:
        """Import the library (done before any timing, in parent and child)."""
        for lib in self.libraries:
            importlib.import_module(lib)

    def save(self, model: Any, path: str) -> None:
        raise NotImplementedError

    def load(self, path: str) -> Any:
        raise NotImplementedError

    def prepare_load(self, path: str) -> None:
        """Untimed work the child does right before the timed ``load``."""

    def audit_steps(self) -> list[AuditStep]:
        """Named calls that make up the inspect/audit figure (empty: not applicable)."""
        return []

    def version(self) -> str | None:
        for lib in self.libraries:
            top = importlib.import_module(lib.split(".")[0])
            return str(getattr(top, "__version__", None))
        return None


class PickleSerializer(Serializer):
    name = "pickle"
    extension = ".pkl"
    description = "pickle protocol 5, atomic write (temp file, flush, fsync, os.replace, dir fsync)"

    def save(self, model: Any, path: str) -> None:
        atomic_write(path, lambda f: pickle.dump(model, f, protocol=5))

    def load(self, path: str) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)

    def version(self) -> str | None:
        return f"protocol {pickle.HIGHEST_PROTOCOL} max (5 used)"


class CloudpickleSerializer(PickleSerializer):
    name = "cloudpickle"
    libraries = ("cloudpickle",)
    description = "cloudpickle.dump protocol 5 with the same atomic write as pickle"

    def save(self, model: Any, path: str) -> None:
        import cloudpickle

        atomic_write(path, lambda f: cloudpickle.dump(model, f, protocol=5))

    def load(self, path: str) -> Any:
        import cloudpickle

        with open(path, "rb") as f:
            return cloudpickle.load(f)

    def version(self) -> str | None:
        return Serializer.version(self)


class JoblibSerializer(Serializer):
    extension = ".joblib"
    libraries = ("joblib",)

    def __init__(
        self, name: str, compress: int | str = 0, mmap_mode: str | None = None, desc: str = ""
    ) -> None:
        self.name = name
        self.compress = compress
        self.mmap_mode = mmap_mode
        self.description = desc

    def prepare(self) -> None:
        super().prepare()
        if self.compress == "lz4":
            importlib.import_module("lz4.frame")

    def save(self, model: Any, path: str) -> None:
        import joblib

        joblib.dump(model, path, compress=self.compress)

    def load(self, path: str) -> Any:
        import joblib

        return joblib.load(path, mmap_mode=self.mmap_mode)


class SkopsSerializer(Serializer):
    name = "skops"
    extension = ".skops"
    libraries = ("skops.io",)
    description = "skops.io.dump / skops.io.load(trusted=get_untrusted_types(file=path))"

    def __init__(self) -> None:
        self._trusted: dict[str, list[str]] = {}

    def save(self, model: Any, path: str) -> None:
        import skops.io as sio

        sio.dump(model, path)

    def prepare_load(self, path: str) -> None:
        import skops.io as sio

        # The audit (get_untrusted_types) is timed separately; load() itself still checks
        # every type against this list, so the timed load is a safe load.
        self._trusted[path] = sio.get_untrusted_types(file=path)

    def load(self, path: str) -> Any:
        import skops.io as sio

        trusted = self._trusted.get(path)
        if trusted is None:
            trusted = sio.get_untrusted_types(file=path)
        return sio.load(path, trusted=trusted)

    def audit_steps(self) -> list[AuditStep]:
        import skops.io as sio

        return [("get_untrusted_types", lambda p: sio.get_untrusted_types(file=p))]


class SkjarSerializer(Serializer):
    extension = ".skjar"

    def __init__(
        self, name: str, compress: str | None = None, mmap: bool = False, desc: str = ""
    ) -> None:
        self.name = name
        self.compress = compress
        self.mmap = mmap
        self.description = desc
        self._skjar: Any = None

    def _module(self) -> Any:
        """skjar, resolved once (by ``prepare``, untimed). ``import_skjar`` in the timed
        load cost a forked child's first load ~0.3 ms and ~90 page faults of importlib's
        and pathlib's Python steps, where pickle's side pays nothing of the kind."""
        if self._skjar is None:
            self._skjar = import_skjar()
        return self._skjar

    def unavailable(self) -> str | None:
        try:
            self._module()
        except Exception as exc:
            return f"skjar not importable ({exc})"
        return super().unavailable()

    def prepare(self) -> None:
        self._module()
        if self.compress == "zstd":
            importlib.import_module("zstandard")
        elif self.compress == "lz4":
            # skjar's codec is lz4's block format (joblib's is the frame format): left to
            # the timed load, importing it cost a tiny model's load ~2 ms.
            importlib.import_module("lz4.block")

    def save(self, model: Any, path: str) -> None:
        skjar = self._module()
        if self.compress is None:
            skjar.dump(model, path)
        else:
            skjar.dump(model, path, compress=self.compress)

    def load(self, path: str) -> Any:
        skjar = self._module()
        if self.mmap:
            return skjar.load(path, mmap=True)
        return skjar.load(path)

    def audit_steps(self) -> list[AuditStep]:
        skjar = self._module()
        return [("inspect", skjar.inspect), ("audit", skjar.audit)]

    def version(self) -> str | None:
        return str(getattr(self._module(), "__version__", None))


def all_serializers() -> dict[str, Serializer]:
    """Every serializer the benchmark knows, in display order."""
    sers: list[Serializer] = [
        PickleSerializer(),
        JoblibSerializer("joblib", desc="joblib.dump (raw) / joblib.load"),
        JoblibSerializer("joblib-z3", compress=3, desc="joblib.dump(compress=3) (zlib)"),
        JoblibSerializer("joblib-lz4", compress="lz4", desc='joblib.dump(compress="lz4")'),
        JoblibSerializer(
            "joblib-mmap", mmap_mode="r", desc='joblib raw, loaded with mmap_mode="r"'
        ),
        CloudpickleSerializer(),
        SkopsSerializer(),
        SkjarSerializer("skjar", desc="skjar.dump / skjar.load"),
        SkjarSerializer("skjar-mmap", mmap=True, desc="skjar.dump / skjar.load(mmap=True)"),
        SkjarSerializer("skjar-zstd", compress="zstd", desc='skjar.dump(compress="zstd")'),
        SkjarSerializer("skjar-lz4", compress="lz4", desc='skjar.dump(compress="lz4")'),
    ]
    return {s.name: s for s in sers}


def get_serializer(name: str) -> Serializer:
    return all_serializers()[name]


def path_size(path: str) -> int:
    """Size in bytes of a file, or of all files below a directory."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size
