"""Summaries of a loaded model's fitted state, for ``skjar diff``.

Every piece of fitted state — each instance attribute that is not a
constructor parameter (``coef_``, ``classes_``, but also private state such as
KNN's ``_fit_X``) — becomes one line of text — type, shape, dtype, a few statistics and a checksum — keyed by
its path in the model (``logisticregression.coef_``,
``columntransformer.cat.categories_``). Nested estimators are walked
recursively; long lists of estimators (a forest's trees) are summarised as one
line with a combined checksum plus the first member in full.

>>> import numpy as np
>>> summarize_value(np.arange(4.0))  # doctest: +ELLIPSIS
'ndarray float64 (4,) min=0 max=3 mean=1.5 xxh3=...'
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xxhash

MAX_DEPTH = 8
MAX_MEMBERS = 10
SKIP = {
    "_sklearn_version",
    "_sklearn_output_config",
    "_metadata_request",
}  # estimators in a list shown one by one; longer lists are summarised


def is_estimator(value: Any) -> bool:
    return hasattr(value, "get_params") and not isinstance(value, type)


def fitted_summary(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, str]:
    """``{path: summary}`` for every fitted attribute of ``obj`` and its nested estimators.

    >>> from sklearn.preprocessing import StandardScaler
    >>> s = fitted_summary(StandardScaler().fit([[0.0], [2.0]]))
    >>> s["mean_"]  # doctest: +ELLIPSIS
    'ndarray float64 (1,) min=1 max=1 mean=1 xxh3=...'
    """
    out: dict[str, str] = {}
    if depth > MAX_DEPTH:
        return out
    out[f"{prefix}<type>"] = _type_name(obj)
    state = vars(obj) if hasattr(obj, "__dict__") else {}
    try:
        params = set(obj.get_params(deep=False))
    except Exception:
        params = set()
    for name in sorted(state):
        value = state[name]
        if name == "steps" and isinstance(value, list):
            for item in value:
                if isinstance(item, tuple) and len(item) >= 2 and is_estimator(item[1]):
                    out.update(fitted_summary(item[1], f"{prefix}{item[0]}.", depth + 1))
            continue
        if name in params or name.startswith("__") or name in SKIP:
            continue
        out.update(_summarize_attr(value, f"{prefix}{name}", depth))
    return out


def _summarize_attr(value: Any, path: str, depth: int) -> dict[str, str]:
    if is_estimator(value):
        return fitted_summary(value, f"{path}.", depth + 1)
    if isinstance(value, dict) and value and all(is_estimator(v) for v in value.values()):
        out: dict[str, str] = {path: f"dict of {len(value)} estimators"}
        for k, v in list(value.items())[:MAX_MEMBERS]:
            out.update(fitted_summary(v, f"{path}[{k}].", depth + 1))
        return out
    members = _estimator_members(value)
    if members is not None:
        out = {}
        kinds = sorted({_type_name(m) for _, m in members})
        head = f"{type(value).__name__} of {len(members)} estimators ({', '.join(kinds)})"
        if len(members) > MAX_MEMBERS:
            out[path] = f"{head} xxh3={checksum([m for _, m in members])}"
            label, first = members[0]
            out.update(fitted_summary(first, f"{path}[{label}].", depth + 1))
        else:
            out[path] = head
            for label, member in members:
                out.update(fitted_summary(member, f"{path}[{label}].", depth + 1))
        return out
    return {path: summarize_value(value)}


def _estimator_members(value: Any) -> list[tuple[str, Any]] | None:
    """``[(label, estimator)]`` when ``value`` is a list/tuple/array of estimators (or of
    ``(name, estimator, ...)`` tuples), else None."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.size:
        flat = value.ravel()
        if all(is_estimator(v) for v in flat):
            return [(str(i), v) for i, v in enumerate(flat)]
        return None
    if not isinstance(value, (list, tuple)) or not value:
        return None
    if all(is_estimator(v) for v in value):
        return [(str(i), v) for i, v in enumerate(value)]
    if all(isinstance(v, (list, tuple)) and len(v) >= 2 and is_estimator(v[1]) for v in value):
        return [(str(v[0]), v[1]) for v in value]
    if all(isinstance(v, (list, tuple, np.ndarray)) and len(v) for v in value):
        inner = [x for v in value for x in v]
        if all(is_estimator(x) for x in inner):
            return [(str(i), x) for i, x in enumerate(inner)]
    return None


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def summarize_value(value: Any) -> str:
    """One line: type, shape/length, dtype, statistics and a checksum."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        text = repr(value)
        return text if len(text) <= 120 else text[:119] + "…"
    if isinstance(value, np.generic):
        return f"{type(value).__name__} {value.item()!r}"
    if isinstance(value, np.ndarray):
        return _array_summary(value)
    if _is_sparse(value):
        return (
            f"{type(value).__name__} {value.dtype} {tuple(value.shape)} nnz={value.nnz} "
            f"xxh3={checksum(value)}"
        )
    if isinstance(value, dict):
        return f"dict len={len(value)} xxh3={checksum(value)}"
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in value})
        return f"{type(value).__name__} len={len(value)} of {'/'.join(kinds) or '-'} xxh3={checksum(value)}"
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__} len={len(value)} xxh3={checksum(value)}"
    extra = ""
    for attr in ("node_count", "max_depth"):  # sklearn.tree._tree.Tree and friends
        n = getattr(value, attr, None)
        if isinstance(n, (int, np.integer)):
            extra += f" {attr}={int(n)}"
    return f"{_type_name(value)}{extra} xxh3={checksum(value)}"


def _is_sparse(value: Any) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False
    return bool(sp.issparse(value))


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.6g}"


def _array_summary(a: np.ndarray) -> str:
    head = f"ndarray {a.dtype} {tuple(a.shape)}"
    if a.dtype.kind in "biuf" and a.size:
        with np.errstate(all="ignore"):
            finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
            if finite.size:
                head += (
                    f" min={_fmt(float(finite.min()))} max={_fmt(float(finite.max()))}"
                    f" mean={_fmt(float(finite.astype(np.float64).mean()))}"
                )
            if finite.size != a.size:
                head += f" non-finite={a.size - finite.size}"
    elif a.dtype.kind in "OUS" and a.size:
        first = [str(v) for v in a.ravel()[:3]]
        head += f" first={first}{'…' if a.size > 3 else ''}"
    return f"{head} xxh3={checksum(a)}"


def checksum(value: Any) -> str:
    """A 16-hex-digit XXH3 checksum of a value's content (arrays by bytes, objects by state)."""
    h = xxhash.xxh3_64()
    _feed(h, value, 0, set())
    return h.hexdigest()


def _feed(h: Any, value: Any, depth: int, seen: set[int]) -> None:
    if depth > 50:
        h.update(b"<deep>")
        return
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        h.update(repr(value).encode())
        return
    if isinstance(value, np.ndarray):
        h.update(f"nd{value.dtype.str}{value.shape}".encode())
        if value.dtype.hasobject:
            for v in value.ravel():
                _feed(h, v, depth + 1, seen)
        else:
            h.update(np.ascontiguousarray(value).view(np.uint8).ravel().data)
        return
    if id(value) in seen:
        h.update(b"<shared>")
        return
    seen.add(id(value))
    if _is_sparse(value):
        csr = value.tocsr()
        for part in (csr.data, csr.indices, csr.indptr):
            _feed(h, part, depth + 1, seen)
        h.update(repr(value.shape).encode())
        return
    if isinstance(value, dict):
        h.update(b"{")
        try:
            items = sorted(value.items(), key=lambda kv: repr(kv[0]))
        except Exception:
            items = list(value.items())
        for k, v in items:
            _feed(h, k, depth + 1, seen)
            _feed(h, v, depth + 1, seen)
        return
    if isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _feed(h, v, depth + 1, seen)
        return
    if isinstance(value, (set, frozenset)):
        h.update(b"(")
        for text in sorted(repr(v) for v in value):
            h.update(text.encode())
        return
    h.update(_type_name(value).encode())
    state: Any = None
    getstate = getattr(value, "__getstate__", None)
    if callable(getstate):
        try:
            state = getstate()
        except Exception:
            state = None
    if state is None and hasattr(value, "__dict__"):
        state = vars(value)
    if state is not None:
        _feed(h, state, depth + 1, seen)
