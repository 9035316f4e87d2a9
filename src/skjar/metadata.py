"""What the header says about a model: environment, object summary, input schema.

Everything here runs at dump time on the live object, and produces plain JSON
so that ``inspect`` can show it later without constructing anything.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import operator
import os
import platform
import re
import sys
import time
from typing import Any

import numpy as np

from ._version import __version__
from .errors import InvalidArgumentError, VersionMismatchError

MAX_LIST = 1000  # feature names, classes, parameter lists: enough to read, bounded size
MAX_REPR = 200
MAX_CHILDREN = 50
SKEW_PACKAGES = ("scikit-learn", "numpy", "scipy")
# The modules whose versions those are (module, distribution), in the header's order.
SKEW_MODULES = (("numpy", "numpy"), ("scipy", "scipy"), ("sklearn", "scikit-learn"))


def _version_of(module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) else None


def _package_version(module: str, distribution: str) -> str:
    """The running module's version if it is imported, else the installed one.

    Reading the installed version avoids importing scikit-learn (seconds) just
    to inspect a file or dump a plain dict.
    """
    return _version_of(module) or _installed_version(distribution)


@functools.cache
def _installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def here_packages() -> dict[str, str]:
    """This process's numpy/scipy/scikit-learn versions: an imported module's own, else the
    installed one (read once). The compiled front reads them the same way (SKEW_MODULES)."""
    return dict(_here_packages())


def _here_packages() -> dict[str, str]:
    """here_packages, kept while the same three modules are imported: every inspect asks,
    and its nine Python steps were a large part of a cold inspect's time (the benchmark's
    inspect follows a load in another process)."""
    global _HERE
    modules = tuple(map(sys.modules.get, _SKEW_MODULE_NAMES))
    if _HERE is not None and _HERE[0] == modules:  # (a module compares by identity)
        return _HERE[1]
    here = {package: _package_version(module, package) for module, package in SKEW_MODULES}
    if None not in modules:
        _HERE = (modules, here)
    return here


_SKEW_MODULE_NAMES = tuple(module for module, _ in SKEW_MODULES)
# (the modules, their versions): never handed out, here_packages copies it
_HERE: tuple[tuple[Any, ...], dict[str, str]] | None = None


def environment(names: dict[str, tuple[str, set[str]]] | None = None) -> dict[str, Any]:
    """The versions that made a jar: Python, platform, and every package it references."""
    packages = here_packages()
    for module, _ in (names or {}).values():
        top = module.split(".")[0]
        if top in ("numpy", "scipy", "sklearn", "builtins", "collections"):
            continue
        version = _version_of(top)
        if version:
            packages[top] = version
    return {**_this_python(), "packages": packages}


@functools.cache
def _this_python() -> dict[str, str]:
    """The environment's fixed part, asked once: four platform calls were ~8 us of a
    small model's save with cold caches. (Never handed out: environment copies it.)"""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "byteorder": sys.byteorder,
    }


def producer() -> dict[str, Any]:
    return {"name": "skjar", "version": __version__, "created": _created()}


def _created() -> str:
    """Now, in UTC - or SOURCE_DATE_EPOCH, as reproducible builds set it: the same model
    saved twice is then the same bytes (the one other difference between two dumps).

    The text is datetime's ``isoformat()`` of the second, made by ``time.strftime``: the
    same text in half the time of a save's first datetime call (~20 -> ~9 us).
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return time.strftime(_ISO_UTC, time.gmtime())
    when = time.gmtime(int(epoch)) if _EPOCH.fullmatch(epoch.strip()) else None
    if when is None or when.tm_year > 9999:  # (ISO 8601 and datetime stop at 9999)
        raise InvalidArgumentError(
            f"SOURCE_DATE_EPOCH={epoch[:40]!r} is not a number of seconds since 1970 "
            "before the year 10000: set it to one (e.g. the last commit's time) or unset it"
        )
    return time.strftime(_ISO_UTC, when)


_ISO_UTC = "%Y-%m-%dT%H:%M:%S+00:00"


# -- JSON-safe summaries ---------------------------------------------------
def _name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def jsonable(value: Any, depth: int = 0) -> Any:
    """A bounded, JSON-safe rendering of a parameter value for humans."""
    # The usual parameter values first, as they are (most estimators' are all short text,
    # numbers, None and booleans): a save's summary asks ~20 times for mlp, with cold caches.
    kind = type(value)
    if kind in _AS_THEY_ARE or (kind is str and len(value) <= MAX_REPR):
        return value
    if kind is float and math.isfinite(value):
        return value
    if value is None or isinstance(value, (bool, str)):
        return (
            value
            if not isinstance(value, str) or len(value) <= MAX_REPR
            else value[:MAX_REPR] + "…"
        )
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else repr(f)
    if depth > 4:
        return "…"
    if isinstance(value, (list, tuple)):
        out = [jsonable(v, depth + 1) for v in value[:MAX_LIST]]
        return out + ["…"] if len(value) > MAX_LIST else out
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in list(value.items())[:MAX_LIST]}
    if hasattr(value, "get_params") and not isinstance(value, type):
        return {"estimator": _name(value)}
    if isinstance(value, type) or callable(value):
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", None) or getattr(value, "__name__", "?")
        return {"ref": f"{module}.{qualname}" if module else str(qualname)}
    if isinstance(value, np.ndarray):
        return {"array": {"shape": list(value.shape), "dtype": str(value.dtype)}}
    text = _ADDRESS.sub("", repr(value))  # an address would differ from dump to dump
    return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "…"


# Values jsonable gives back as they are, whatever they hold.
_AS_THEY_ARE = frozenset({type(None), bool, int})
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_EPOCH = re.compile("[0-9]{1,12}")  # (ASCII: str.isdigit also takes "²", which int refuses)


def _array_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist()) if value.ndim == 1 else jsonable(value.ravel().tolist())
    return jsonable(value)


def input_schema(obj: Any) -> dict[str, Any]:
    """n_features_in_, feature names (with dtypes where known), classes."""
    schema: dict[str, Any] = {}
    n = getattr(obj, "n_features_in_", None)
    if isinstance(n, (int, np.integer)):
        schema["n_features_in"] = int(n)
    names = getattr(obj, "feature_names_in_", None)
    if isinstance(names, np.ndarray):
        schema["feature_names_in"] = _array_list(names)
        dtypes = feature_dtypes(obj)
        if dtypes:
            schema["feature_dtypes"] = dtypes
    classes = getattr(obj, "classes_", None)
    if isinstance(classes, np.ndarray):
        schema["classes"] = _array_list(classes)
        schema["n_classes"] = len(classes)
    elif isinstance(classes, list):
        schema["classes"] = [_array_list(c) for c in classes[:MAX_LIST]]
    n_out = getattr(obj, "n_outputs_", None)
    if isinstance(n_out, (int, np.integer)):
        schema["n_outputs"] = int(n_out)
    return schema


def feature_dtypes(obj: Any) -> dict[str, str]:
    """What each input column must hold, where the fitted model knows it.

    A ColumnTransformer knows which columns feed which transformer; an encoder
    of categories knows the categories' dtype; numeric scalers need numbers.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    while isinstance(obj, Pipeline) and obj.steps:
        obj = obj.steps[0][1]
    if not isinstance(obj, ColumnTransformer) or not hasattr(obj, "transformers_"):
        return {}
    names = list(getattr(obj, "feature_names_in_", []))
    out: dict[str, str] = {}
    for _, trans, cols in obj.transformers_:
        if isinstance(trans, str):
            continue
        inner = trans
        while isinstance(inner, Pipeline) and inner.steps:
            inner = inner.steps[0][1]
        kind = "number"
        categories = getattr(inner, "categories_", None)
        for i, col in enumerate(_column_names(cols, names)):
            if categories is not None and i < len(categories):
                cats = categories[i]
                kind = "category[str]" if cats.dtype == object else f"category[{cats.dtype}]"
            out[col] = kind
    return out


def _column_names(cols: Any, names: list[Any]) -> list[str]:
    if isinstance(cols, str):
        return [cols]
    if isinstance(cols, slice):
        return [str(c) for c in names[cols]]
    cols = np.asarray(cols)
    if cols.dtype == bool:
        return [str(c) for c, keep in zip(names, cols) if keep]
    if cols.dtype.kind in "iu":
        return [str(names[i]) for i in cols if 0 <= i < len(names)]
    return [str(c) for c in cols]


def summarize(obj: Any, depth: int = 0) -> dict[str, Any]:
    """The estimator tree: type, parameters, schema and nested estimators.

    A description for people, read from the object's own attributes and properties:
    an object whose attributes are not what scikit-learn's are (a hand-built one, or
    a converted file's) is described by its type alone rather than failing the save.
    """
    try:
        return _summarize(obj, depth)
    except Exception as exc:
        text = _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")  # (reproducible saves)
        return {"type": _name(obj), "not_described": text[:MAX_REPR]}


def _summarize(obj: Any, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _name(obj)}
    if not hasattr(obj, "get_params") or isinstance(obj, type):
        if isinstance(obj, np.ndarray):
            out["shape"] = list(obj.shape)
            out["dtype"] = str(obj.dtype)
        elif isinstance(obj, (list, tuple, dict)):
            out["length"] = len(obj)
        return out
    try:
        params = _shallow_params(obj)
    except Exception:
        params = {}
    out["params"] = {str(k): jsonable(v) for k, v in params.items()}
    schema = input_schema(obj)
    if schema:
        out["schema"] = schema
    out["fitted"] = any(map(_FITTED_NAME, vars(obj)))  # (sklearn's check_is_fitted's test)
    if depth < 6:
        children = _children(obj)
        if children:
            out["children"] = {str(k): summarize(v, depth + 1) for k, v in children.items()}
    return out


# An attribute name a fit sets: ends with "_", does not start with "__".
_FITTED_NAME = re.compile(r"(?!__).*_", re.DOTALL).fullmatch


def _shallow_params(obj: Any) -> dict[str, Any]:
    """``obj.get_params(deep=False)``. For scikit-learn's own implementation, the
    parameter names are looked up once per class: it reads them from the
    ``__init__`` signature on every call (~0.2 ms per estimator, per dump)."""
    cls: Any = type(obj)
    if not _plain_get_params(cls):
        return dict(obj.get_params(deep=False))
    names, read_all = _param_names(cls)
    if not names:
        return {}
    values = read_all(obj)  # (one C call for all of them; a lone one's value is not a tuple)
    return dict(zip(names, values if len(names) > 1 else (values,)))


@functools.lru_cache(maxsize=1024)
def _param_names(cls: type) -> tuple[tuple[str, ...], Any]:
    """The class's parameter names, and an attrgetter of them all."""
    names = tuple(cls._get_param_names())  # type: ignore[attr-defined]
    return names, operator.attrgetter(*names) if names else None


@functools.lru_cache(maxsize=1024)
def _plain_get_params(cls: type) -> bool:
    """Whether ``cls`` uses BaseEstimator's get_params and _get_param_names as they are."""
    estimator = getattr(sys.modules.get("sklearn.base"), "BaseEstimator", None)
    if estimator is None or getattr(cls, "get_params", None) is not estimator.get_params:
        return False
    names = getattr(cls, "_get_param_names", None)
    return getattr(names, "__func__", None) is estimator._get_param_names.__func__


def _children(obj: Any) -> dict[str, Any]:
    """Nested estimators worth showing: pipeline steps, transformers, fitted sub-models."""
    kids: dict[str, Any] = {}
    steps = getattr(obj, "steps", None)
    if isinstance(steps, list):
        kids.update({name: est for name, est, *_ in steps if hasattr(est, "get_params")})
    for attr in ("transformers_", "transformer_list"):
        items = getattr(obj, attr, None)
        if isinstance(items, list):
            kids.update({t[0]: t[1] for t in items if hasattr(t[1], "get_params")})
    for attr in (
        "best_estimator_",
        "estimator_",
        "final_estimator_",
        "regressor_",
        "base_estimator_",
    ):
        sub = getattr(obj, attr, None)
        if hasattr(sub, "get_params") and not isinstance(sub, type):
            kids[attr] = sub
    named = getattr(obj, "named_estimators_", None)
    if isinstance(named, dict):
        kids.update({k: v for k, v in named.items() if hasattr(v, "get_params")})
    ests = getattr(obj, "estimators_", None)
    if isinstance(ests, list) and ests and not named:
        first = ests[0][0] if isinstance(ests[0], (list, np.ndarray)) and len(ests[0]) else ests[0]
        if hasattr(first, "get_params"):
            kids[f"estimators_[0] (of {len(ests)})"] = first
    return dict(list(kids.items())[:MAX_CHILDREN])


def _check_keys(value: Any, where: str) -> None:
    # json.dumps would quietly turn 1 into "1"; what comes back must be what went in.
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidArgumentError(
                    f"{where} has the non-string key {k!r}: metadata must use string keys (it is stored as JSON)"
                )
            _check_keys(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_keys(v, f"{where}[{i}]")


def check_metadata(metadata: Any) -> dict[str, Any]:
    """The user's metadata must be a JSON object (dict with str keys)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidArgumentError("metadata= must be a dict with string keys (JSON-serialisable)")
    _check_keys(metadata, "metadata")
    try:
        # Encoded as the header will be: UTF-8, where a lone surrogate cannot go.
        return json.loads(json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode())
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise InvalidArgumentError(
            f"metadata= holds text that is not valid Unicode ({bad!r}, a lone surrogate, in "
            f"{exc.object[:60]!r}): the header is UTF-8; replace it, e.g. "
            "text.encode('utf-8', 'replace').decode()"
        ) from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"metadata= must be JSON-serialisable (str, numbers, bools, None, lists, dicts): {exc}"
        ) from None


def version_skew(env: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Packages whose version differs between the jar and this process: name -> (jar, here)."""
    here = _here_packages()  # exactly the SKEW_PACKAGES (read here, never changed)
    theirs = env.get("packages", {}) if isinstance(env.get("packages"), dict) else {}
    if here.items() <= theirs.items():
        return {}  # the usual answer, from one comparison
    return {
        pkg: (str(theirs[pkg]), here[pkg])
        for pkg in SKEW_PACKAGES
        if pkg in theirs and str(theirs[pkg]) != here[pkg]
    }


def check_versions(env: dict[str, Any], strict: bool) -> str | None:
    """Raise on skew when ``strict``; otherwise return the warning to give (or None)."""
    skew = version_skew(env)
    if not skew:
        return None
    detail = "; ".join(f"{pkg} {jar} in the file, {here} here" for pkg, (jar, here) in skew.items())
    if strict:
        raise VersionMismatchError(
            f"the jar was made with other library versions ({detail}). Load it in a matching "
            "environment, or pass strict_versions=False to load it with a warning."
        )
    return (
        f"the jar was made with other library versions ({detail}); predictions may differ. "
        "Pass strict_versions=True to refuse such jars."
    )
