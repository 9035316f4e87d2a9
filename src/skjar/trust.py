"""The trusted set: which exact names a load may touch, and for which use.

A name is an exact ``module.qualname``. Each trusted name carries the uses it
is trusted for:

- ``object``: instances of this class may be created (``cls.__new__(cls)``,
  then state by ``__setstate__`` or ``__dict__.update``, or by the class's
  registered handler);
- ``value``: the function or class may appear as a value (never called);
- ``call``: the callable may be called with decoded arguments (a reconstructor).

Trust never follows prefixes, modules or inheritance, and nothing in a file
can widen it. The defaults live in ``_trusted_names``; callers extend them per
load with ``trusted=[...]``::

    skjar.load("model.skjar", trusted=[MyEstimator, "mypkg.features.log_ratio"])
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import _trusted_names
from .errors import TrustSpecError, UntrustedTypeError, VersionMismatchError

OBJECT = "object"
VALUE = "value"
CALL = "call"
USES = (OBJECT, VALUE, CALL)

TrustedItem = Any  # a class, a function, an exact "module.qualname" str, or (name, use)


@dataclass(frozen=True)
class TrustEntry:
    """One trusted name: where it lives and what it may be used for."""

    name: str
    module: str | None  # None: a user string whose module split is taken from the file
    uses: frozenset[str]
    obj: Any = None  # set when the caller handed us the object itself


def _table() -> dict[str, TrustEntry]:
    table: dict[str, TrustEntry] = {}
    for use, specs in (
        (OBJECT, _trusted_names.OBJECTS),
        (VALUE, _trusted_names.VALUES),
        (CALL, _trusted_names.CALLS),
    ):
        for spec in specs:
            module, _, qualname = spec.partition(":")
            name = f"{module}.{qualname}"
            old = table.get(name)
            uses = frozenset({use}) | (old.uses if old else frozenset())
            table[name] = TrustEntry(name, module, uses)
    return table


DEFAULT_TRUST: dict[str, TrustEntry] = _table()
# The same, as the compiled front reads it (read_small's `known`): name -> (module, uses).
DEFAULT_USES: dict[str, tuple[str, frozenset[str]]] = {
    name: (entry.module, entry.uses) for name, entry in DEFAULT_TRUST.items() if entry.module
}
_DEFAULT_RESOLVED: dict[tuple[str, str, str], Any] = {}


def name_of(obj: Any) -> tuple[str, str] | None:
    """``(module, qualname)`` of a class or function, or None when it has no importable name."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if isinstance(obj, types.BuiltinMethodType) and module is None:
        module = getattr(getattr(obj, "__self__", None), "__name__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if "<" in qualname:  # <lambda>, <locals>: not importable by name
        return None
    # Some Cython builds name an extension module by its last part only (scikit-learn
    # 1.7's sklearn._loss._loss calls its classes "_loss.CyHalfBinomialLoss") and
    # register it under both names: the module's own name is the one to write.
    real = getattr(sys.modules.get(module), "__name__", module)
    return (real if isinstance(real, str) else module), qualname


def _is_identifier_path(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _entry_for_object(obj: Any, uses: frozenset[str] | None) -> TrustEntry:
    if isinstance(obj, types.ModuleType):
        raise TrustSpecError(
            f"trusted= got the module {obj.__name__!r}: trust is by exact class or function, "
            "never a whole module; list the names you need instead"
        )
    named = name_of(obj)
    if named is None or not callable(obj):
        raise TrustSpecError(
            f"trusted= entries must be classes, functions or 'module.qualname' strings; "
            f"{obj!r} has no importable name"
        )
    module, qualname = named
    if uses is None:
        uses = frozenset({OBJECT, VALUE}) if isinstance(obj, type) else frozenset({VALUE})
    return TrustEntry(f"{module}.{qualname}", module, uses, obj)


def _entry_for_string(text: str, uses: frozenset[str] | None) -> TrustEntry:
    if text.endswith((".", "*")) or "*" in text or not _is_identifier_path(text) or "." not in text:
        raise TrustSpecError(
            f"trusted={text!r} is not an exact 'module.qualname' name: trust is by exact name, "
            "never by prefix or wildcard (e.g. 'mypkg.models.MyEstimator')"
        )
    if any(part.startswith("__") for part in text.split(".")):
        raise TrustSpecError(f"trusted={text!r}: dunder attributes cannot be trusted")
    try:
        is_module = importlib.util.find_spec(text) is not None
    except (ImportError, ValueError, AttributeError):
        is_module = False
    if is_module:
        raise TrustSpecError(
            f"trusted={text!r} names a module; a module trusts nothing: "
            "list the exact classes or functions you need, e.g. "
            f"{text + '.SomeClass'!r}"
        )
    return TrustEntry(text, None, uses or frozenset({OBJECT, VALUE}), None)


class TrustPolicy:
    """The defaults plus a caller's explicit extensions, for one load."""

    def __init__(self, extra: Iterable[TrustedItem] = ()) -> None:
        self._resolved: dict[tuple[str, str, str], Any] = {}
        self.extra: dict[str, TrustEntry] = {}
        if type(extra) is tuple and not extra:
            return  # the default, every load: no ABC check needed
        if isinstance(extra, (str, bytes)) or not isinstance(extra, Iterable):
            raise TrustSpecError(
                "trusted= must be a list (or tuple) of classes, functions or "
                f"'module.qualname' strings, got {type(extra).__name__}"
            )
        for item in extra:
            uses = None
            if isinstance(item, tuple):
                if len(item) != 2 or item[1] not in USES:
                    raise TrustSpecError(
                        f"trusted= pair {item!r} must be (name_or_object, use) "
                        f"with use one of {USES}"
                    )
                item, uses = item[0], frozenset({item[1]})
            entry = (
                _entry_for_string(item, uses)
                if isinstance(item, str)
                else _entry_for_object(item, uses)
            )
            old = self.extra.get(entry.name)
            if old is not None:
                entry = TrustEntry(entry.name, entry.module, entry.uses | old.uses, entry.obj)
            self.extra[entry.name] = entry

    def lookup(self, name: str, module: str, use: str) -> TrustEntry | None:
        """The entry trusting ``name`` (declared in ``module``) for ``use``, or None."""
        for entry in (self.extra.get(name), DEFAULT_TRUST.get(name)):
            if entry is None or use not in entry.uses:
                continue
            if entry.module is not None and entry.module != module:
                continue  # the same dotted text split differently is another name
            if entry.module is None and not (
                name.startswith(module + ".") and module and _is_identifier_path(module)
            ):
                continue
            return entry
        return None

    def check(self, names: Iterable[tuple[str, str, str]]) -> None:
        """Raise UntrustedTypeError listing every (name, module, use) not trusted."""
        bad: dict[str, set[str]] = {}
        for name, module, use in names:
            if self.lookup(name, module, use) is None:
                bad.setdefault(name, set()).add(use)
        if bad:
            raise UntrustedTypeError(bad, uses=bad)

    def resolve(self, name: str, module: str, use: str) -> Any:
        """Import and return the object behind a trusted name (after ``check``)."""
        key = (use, module, name)
        found = self._resolved.get(key)
        if found is not None:  # asked once per node: the hit path stays short
            return found
        entry = self.lookup(name, module, use)
        if entry is None:
            raise UntrustedTypeError([name])
        obj = entry.obj
        if obj is None:
            obj = _DEFAULT_RESOLVED.get(key) if entry.module is not None else None
        if obj is None:
            # sys.modules first: import_module would return the same module, through
            # ~10 Python-level importlib steps (most of a cold first lookup).
            try:
                obj = sys.modules.get(module) or importlib.import_module(module)
                for part in name[len(module) + 1 :].split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as exc:
                raise _not_here(name, module, exc) from None
        if isinstance(obj, types.ModuleType):
            raise UntrustedTypeError(
                [name], detail=f"{name!r} is a module, not a class or function."
            )
        if use == OBJECT and not isinstance(obj, type):
            raise UntrustedTypeError(
                [name], detail=f"{name!r} is not a class, so nothing can be instantiated from it."
            )
        if use == CALL and not callable(obj):
            raise UntrustedTypeError([name], detail=f"{name!r} is not callable.")
        self._resolved[key] = obj
        if entry.obj is None and entry.module is not None and entry is DEFAULT_TRUST.get(name):
            _DEFAULT_RESOLVED[key] = obj  # the defaults resolve the same way in every load
        return obj


def _not_here(name: str, module: str, exc: Exception) -> VersionMismatchError:
    """A trusted name this environment does not have: most often the file was made with
    another version of the library (scipy 1.18 added scipy.interpolate._bsplines._BSpline)."""
    package = module.partition(".")[0]
    version = getattr(sys.modules.get(package), "__version__", None)
    here = f"{package} {version}" if isinstance(version, str) else package
    return VersionMismatchError(
        f"{name!r} is trusted, but this environment ({here}) does not have it "
        f"({type(exc).__name__}: {exc}). The file was most likely made with another version "
        f"of {package}: `skjar inspect FILE` shows the versions that made it; load it where "
        "those are installed."
    )


def is_trusted(name: str, use: str, trusted: Iterable[TrustedItem] = ()) -> bool:
    """Whether the exact ``name`` is trusted for ``use`` (defaults plus ``trusted``).

    >>> is_trusted("sklearn.linear_model._logistic.LogisticRegression", "object")
    True
    """
    policy = TrustPolicy(trusted)
    for entry in (policy.extra.get(name), DEFAULT_TRUST.get(name)):
        if entry is not None and use in entry.uses:
            return True
    return False
