"""Deep equality checks between an estimator and its round-tripped copy.

``assert_same_estimator`` compares parameters and *every* entry of ``__dict__``
recursively; ``assert_same_outputs`` compares what the prediction/transform methods
return. Both raise ``AssertionError`` naming the first differing location, e.g.
``steps[1][1].coef_[0, 3]``.
"""

from __future__ import annotations

import collections
import copy
import functools
import math
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

__all__ = ["OUTPUT_METHODS", "assert_same_estimator", "assert_same_outputs"]

OUTPUT_METHODS: tuple[str, ...] = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score_samples",
)

# Compared by identity: pickle (and any sane serializer) restores them by reference.
_REFERENCE_TYPES = (
    type,
    types.FunctionType,
    types.ModuleType,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
    np.ufunc,
)
_SCALAR_TYPES = (type(None), bool, int, float, complex, str, bytes, np.generic)
# Immutable values: sharing them or not is unobservable, so aliasing is not checked.
_IMMUTABLE_TYPES = (*_SCALAR_TYPES, tuple, frozenset, range, slice, np.dtype)
# A restored copy holding one of these *same* objects as the original is a bug: mutating
# one would silently mutate the other.
_MUST_BE_COPIED = (list, dict, set, np.ndarray)


def assert_same_estimator(a: Any, b: Any, *, check_aliasing: bool = True) -> None:
    """Assert ``b`` is a faithful copy of estimator ``a``: same class, params and state.

    With ``check_aliasing`` (default), objects shared inside ``a`` (e.g. the same
    fitted model in ``estimators_`` and ``named_estimators_``) must be shared at the
    same places in ``b`` and nowhere else, as ``pickle`` guarantees.
    """
    _Comparer(check_aliasing).compare(a, b, "")


def assert_same_outputs(a: Any, b: Any, X: Any, *, methods: Sequence[str] = OUTPUT_METHODS) -> None:
    """Assert ``a`` and ``b`` return identical results (or raise alike) for each method.

    Methods ``a`` does not expose (``hasattr`` respects ``available_if``) are skipped;
    ``b`` must expose exactly the same ones. Each call gets a fresh copy of ``X``, ``a``
    first, so that an estimator mutating its input cannot affect the other call.
    """
    for name in methods:
        has_a, has_b = hasattr(a, name), hasattr(b, name)
        if has_a != has_b:
            raise AssertionError(f"{name}: available on original={has_a}, on copy={has_b}")
        if not has_a:
            continue
        out_a, exc_a = _call(a, name, X)
        out_b, exc_b = _call(b, name, X)
        if exc_a is not None or exc_b is not None:
            if exc_a is None or exc_b is None or type(exc_a) is not type(exc_b):
                raise AssertionError(f"{name}(X): original raised {exc_a!r}, copy raised {exc_b!r}")
            continue
        _assert_same_output(out_a, out_b, f"{name}(X)")


@functools.cache
def _threadpools() -> ThreadpoolController:
    # Built once: each threadpool_limits() call rescans the loaded libraries (~10 ms).
    return ThreadpoolController()


def _call(est: Any, name: str, X: Any) -> tuple[Any, BaseException | None]:
    X = copy.deepcopy(X)
    # One thread: test inputs are tiny, and OpenMP threads oversubscribe under xdist.
    with warnings.catch_warnings(), _threadpools().limit(limits=1):
        # Outputs are compared, not the warnings emitted on the way.
        warnings.simplefilter("ignore")
        try:
            return getattr(est, name)(X), None
        except Exception as exc:
            return None, exc


def _assert_same_output(a: Any, b: Any, where: str) -> None:
    if type(a) is not type(b):
        raise AssertionError(f"{where}: type {type(a).__name__} != {type(b).__name__}")
    pd = sys.modules.get("pandas")
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    elif sp.issparse(a):
        if (a.format, a.dtype, a.shape) != (b.format, b.dtype, b.shape):
            raise AssertionError(
                f"{where}: sparse {a.format}/{a.dtype}/{a.shape} != {b.format}/{b.dtype}/{b.shape}"
            )
        # Canonical CSR parts, never densified: hashing vectorizers output 2**20 columns.
        canon_a, canon_b = a.tocsr(copy=True), b.tocsr(copy=True)
        for canon in (canon_a, canon_b):
            canon.sum_duplicates()
        for part in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(
                getattr(canon_a, part),
                getattr(canon_b, part),
                err_msg=f"{where}.{part}",
                strict=True,
            )
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            raise AssertionError(f"{where}: length {len(a)} != {len(b)}")
        for i, (item_a, item_b) in enumerate(zip(a, b)):
            _assert_same_output(item_a, item_b, f"{where}[{i}]")
    elif pd is not None and isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
    elif pd is not None and isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, obj=where)
    else:
        _Comparer(check_aliasing=False).compare(a, b, where)


def _attr(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _index(path: str, index: tuple[int, ...]) -> str:
    return f"{path}[{', '.join(map(str, index))}]" if index else path


def _is_ref_type(obj: Any) -> bool:
    if isinstance(obj, types.BuiltinFunctionType):
        # A builtin *bound* to an object (e.g. ``rng.random``) carries state via __self__.
        owner = getattr(obj, "__self__", None)
        return owner is None or isinstance(owner, types.ModuleType)
    return isinstance(obj, _REFERENCE_TYPES)


def _overrides_pickling(cls: type) -> bool:
    """Whether some class below ``object`` customizes what pickle saves."""
    hooks = ("__reduce_ex__", "__reduce__", "__getstate__")
    return any(hook in vars(klass) for klass in cls.__mro__[:-1] for hook in hooks)


class _Comparer:
    """Recursive comparison with cycle guard and aliasing check; fails on first difference."""

    def __init__(self, check_aliasing: bool) -> None:
        self._check_aliasing = check_aliasing
        # id(a part) -> (id(b part), path first seen at); id(b part) -> id(a part).
        self._a_to_b: dict[int, tuple[int, str]] = {}
        self._b_to_a: dict[int, int] = {}
        # (id(a part), id(b part)) already compared or being compared: the cycle guard.
        self._pairs: set[tuple[int, int]] = set()
        # Temporaries (get_params() dicts, __getstate__() results...) must stay alive
        # until the end, or their ids could be reused and confuse the memo.
        self._keepalive: list[Any] = []

    @staticmethod
    def fail(path: str, message: str) -> NoReturn:
        raise AssertionError(f"mismatch at {path or '<root>'}: {message}")

    def compare(self, a: Any, b: Any, path: str) -> None:
        if a is b:
            if isinstance(a, _MUST_BE_COPIED) or _is_estimator(a):
                self.fail(path, f"copy shares this {type(a).__name__} object with the original")
            return
        if type(a) is not type(b):
            self.fail(path, f"type {_qualname(a)} != {_qualname(b)}")
        if _is_ref_type(a):
            self.fail(path, f"{a!r} and {b!r} are not the same object")
        if isinstance(a, _SCALAR_TYPES):
            if not _scalars_equal(a, b):
                self.fail(path, f"{a!r} != {b!r}")
            return
        if isinstance(a, np.dtype) or _is_pandas_dtype(a):
            if a != b:
                self.fail(path, f"dtype {a!r} != {b!r}")
            return
        if not isinstance(a, _IMMUTABLE_TYPES) and self._already_seen(a, b, path):
            return
        self._dispatch(a, b, path)

    def _already_seen(self, a: Any, b: Any, path: str) -> bool:
        """Record the pair; True if it was already compared (cycle or shared object)."""
        if (id(a), id(b)) in self._pairs:
            return True
        if self._check_aliasing:
            seen = self._a_to_b.get(id(a))
            if seen is not None:
                self.fail(
                    path,
                    f"original shares this object with {seen[1] or '<root>'}, the copy does not",
                )
            if id(b) in self._b_to_a:
                self.fail(
                    path, "copy shares this object with another location, the original does not"
                )
            self._a_to_b[id(a)] = (id(b), path)
            self._b_to_a[id(b)] = id(a)
        self._pairs.add((id(a), id(b)))
        self._keepalive.append((a, b))
        return False

    def _dispatch(self, a: Any, b: Any, path: str) -> None:
        pd = sys.modules.get("pandas")
        if isinstance(a, np.ndarray):
            self._compare_array(a, b, path)
        elif sp.issparse(a):
            self._compare_sparse(a, b, path)
        elif pd is not None and isinstance(a, (pd.DataFrame, pd.Series, pd.Index)):
            self._compare_pandas(a, b, path, pd)
        elif isinstance(a, dict):
            self._compare_dict(a, b, path)
        elif isinstance(a, (list, tuple)):
            self._compare_sequence(a, b, path)
        elif isinstance(a, (set, frozenset)):
            if a != b:
                self.fail(path, f"set items differ: {sorted(map(repr, a ^ b))}")
        elif isinstance(a, np.random.RandomState):
            self.compare(a.get_state(), b.get_state(), _attr(path, "get_state()"))
        elif isinstance(a, np.random.Generator):
            self.compare(a.bit_generator, b.bit_generator, _attr(path, "bit_generator"))
        elif isinstance(a, np.random.BitGenerator):
            self.compare(a.state, b.state, _attr(path, "state"))
        elif _is_sklearn_tree(a):
            # Constructor arguments (n_features, n_classes, n_outputs), then node arrays.
            self.compare(a.__reduce__()[1], b.__reduce__()[1], _attr(path, "__reduce__()[1]"))
            self.compare(a.__getstate__(), b.__getstate__(), _attr(path, "__getstate__()"))
        elif _is_binary_tree(a):
            self.compare(a.get_arrays(), b.get_arrays(), _attr(path, "get_arrays()"))
            self.compare(a.__getstate__(), b.__getstate__(), _attr(path, "__getstate__()"))
        elif _is_estimator(a):
            self._compare_estimator(a, b, path)
        elif isinstance(a, types.MethodType):
            self.compare(a.__func__, b.__func__, _attr(path, "__func__"))
            self.compare(a.__self__, b.__self__, _attr(path, "__self__"))
        elif isinstance(a, types.BuiltinFunctionType):  # bound builtin, see _is_ref_type
            self.compare(a.__name__, b.__name__, _attr(path, "__name__"))
            self.compare(a.__self__, b.__self__, _attr(path, "__self__"))
        else:
            self._compare_object(a, b, path)

    # -- numpy ---------------------------------------------------------------

    def _compare_array(self, a: np.ndarray, b: np.ndarray, path: str) -> None:
        if a.dtype != b.dtype:
            self.fail(path, f"dtype {a.dtype!r} != {b.dtype!r}")
        if a.shape != b.shape:
            self.fail(path, f"shape {a.shape} != {b.shape}")
        # Compiled code may require a memory layout; pickle keeps C or F order.
        for order in ("C_CONTIGUOUS", "F_CONTIGUOUS"):
            if a.flags[order] and not b.flags[order]:
                self.fail(path, f"original is {order}, the copy is not")
        if isinstance(a, np.ma.MaskedArray):
            masked_b: np.ma.MaskedArray[Any, Any] = b  # type: ignore[assignment]
            self._compare_array(np.ma.getmaskarray(a), np.ma.getmaskarray(b), _attr(path, "mask"))
            self._compare_array(a.data, masked_b.data, _attr(path, "data"))
            self.compare(a.fill_value, masked_b.fill_value, _attr(path, "fill_value"))
            return
        if a.dtype.names is not None:
            for field in a.dtype.names:
                self._compare_values(a[field], b[field], f"{path}[{field!r}]")
            return
        self._compare_values(a, b, path)

    def _compare_values(self, a: np.ndarray, b: np.ndarray, path: str) -> None:
        """Element values of same-dtype, same-shape arrays (NaN equals NaN)."""
        a, b = np.asarray(a), np.asarray(b)  # drop subclasses (matrix would stay 2-d)
        if a.dtype.names is not None:  # nested structured field
            for field in a.dtype.names:
                self._compare_values(a[field], b[field], f"{path}[{field!r}]")
            return
        if a.dtype.hasobject:
            for index in np.ndindex(a.shape):
                self.compare(a[index], b[index], _index(path, index))
            return
        if a.dtype.kind == "V":  # raw bytes without fields
            if a.tobytes() != b.tobytes():
                self.fail(path, "raw void data differs")
            return
        equal = a == b
        if a.dtype.kind in "fc":
            equal |= np.isnan(a) & np.isnan(b)
        elif a.dtype.kind in "mM":
            equal |= np.isnat(a) & np.isnat(b)
        if not np.all(equal):
            index = tuple(int(i) for i in np.argwhere(~np.asarray(equal))[0]) if a.ndim else ()
            self.fail(_index(path, index), f"{a[index]!r} != {b[index]!r}")

    def _compare_sparse(self, a: Any, b: Any, path: str) -> None:
        for attr in ("format", "dtype", "shape"):
            if getattr(a, attr) != getattr(b, attr):
                self.fail(path, f"sparse {attr} {getattr(a, attr)!r} != {getattr(b, attr)!r}")
        # Canonical CSR so that equal matrices stored differently compare equal.
        canon_a, canon_b = a.tocsr(copy=True), b.tocsr(copy=True)
        for canon in (canon_a, canon_b):
            canon.sum_duplicates()
        for attr in ("indptr", "indices", "data"):
            self.compare(
                getattr(canon_a, attr), getattr(canon_b, attr), _attr(path, f"tocsr().{attr}")
            )

    # -- pandas --------------------------------------------------------------

    def _compare_pandas(self, a: Any, b: Any, path: str, pd: Any) -> None:
        where = path or "<root>"
        try:
            if isinstance(a, pd.DataFrame):
                pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
            elif isinstance(a, pd.Series):
                pd.testing.assert_series_equal(a, b, check_exact=True, obj=where)
            else:
                pd.testing.assert_index_equal(a, b, exact=True, check_exact=True, obj=where)
        except AssertionError as exc:
            self.fail(path, str(exc))

    # -- containers ----------------------------------------------------------

    def _compare_dict(self, a: dict[Any, Any], b: dict[Any, Any], path: str) -> None:
        keys_a, keys_b = list(a), list(b)
        if keys_a != keys_b:
            missing = [k for k in keys_a if k not in b]
            extra = [k for k in keys_b if k not in a]
            detail = f"missing {missing}, extra {extra}" if missing or extra else "order differs"
            self.fail(path, f"dict keys differ: {detail}")
        for key_a, key_b in zip(keys_a, keys_b):
            self.compare(key_a, key_b, f"{path}<key {key_a!r}>")
            self.compare(a[key_a], b[key_b], f"{path}[{key_a!r}]")
        if isinstance(a, collections.defaultdict) and isinstance(b, collections.defaultdict):
            self.compare(a.default_factory, b.default_factory, _attr(path, "default_factory"))
        self._compare_extra_dict(a, b, path)

    def _compare_sequence(self, a: Sequence[Any], b: Sequence[Any], path: str) -> None:
        if len(a) != len(b):
            self.fail(path, f"length {len(a)} != {len(b)}")
        for i, (item_a, item_b) in enumerate(zip(a, b)):
            self.compare(item_a, item_b, f"{path}[{i}]")
        self._compare_extra_dict(a, b, path)

    def _compare_extra_dict(self, a: Any, b: Any, path: str) -> None:
        """Attributes set on instances of container subclasses (rare, but state)."""
        # A custom __setstate__ decides what survives: sklearn's Bunch deliberately drops
        # its instance attributes (deprecation bookkeeping) when unpickled.
        if getattr(type(a), "__setstate__", None) is not None:
            return
        if hasattr(a, "__dict__") and (vars(a) or vars(b)):
            self._compare_attributes(vars(a), vars(b), path)

    # -- objects -------------------------------------------------------------

    def _compare_estimator(self, a: Any, b: Any, path: str) -> None:
        # Attributes first: parameters are usually attributes too, and the memo then
        # skips them, so differences get reported by their attribute path.
        self._compare_attributes(vars(a), vars(b), path)
        params_a, params_b = a.get_params(deep=False), b.get_params(deep=False)
        self._keepalive.append((params_a, params_b))
        if sorted(params_a) != sorted(params_b):
            self.fail(path, f"parameter names {sorted(params_a)} != {sorted(params_b)}")
        for name in params_a:
            self.compare(params_a[name], params_b[name], _attr(path, f"get_params()[{name!r}]"))

    def _compare_attributes(self, a: dict[str, Any], b: dict[str, Any], path: str) -> None:
        missing, extra = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        if missing or extra:
            self.fail(path, f"attributes missing from copy {missing}, only in copy {extra}")
        for name in a:
            self.compare(a[name], b[name], _attr(path, name))

    def _compare_reduced(self, a: Any, b: Any, path: str) -> None:
        """Compare what pickle would store: ``__reduce_ex__`` output (class, args, state...)."""
        try:
            reduced_a = a.__reduce_ex__(4)
        except Exception as exc:
            if a != b:  # cannot look inside: equality is all that is left
                self.fail(path, f"objects differ (and cannot be reduced: {exc})")
            return
        reduced_b = b.__reduce_ex__(4)
        self._keepalive.append((reduced_a, reduced_b))
        if isinstance(reduced_a, str) or isinstance(reduced_b, str):  # globals, by reference
            self.compare(reduced_a, reduced_b, _attr(path, "__reduce_ex__(4)"))
            return
        if len(reduced_a) != len(reduced_b):
            self.fail(path, f"__reduce_ex__(4) lengths {len(reduced_a)} != {len(reduced_b)}")
        for i, (part_a, part_b) in enumerate(zip(reduced_a, reduced_b)):
            # Parts 3 and 4 are iterators over list items / dict items.
            if i >= 3 and part_a is not None and part_b is not None:
                part_a, part_b = list(part_a), list(part_b)
            self.compare(part_a, part_b, _attr(path, f"__reduce_ex__(4)[{i}]"))

    def _compare_object(self, a: Any, b: Any, path: str) -> None:
        has_dict = hasattr(a, "__dict__")
        if has_dict:
            self._compare_attributes(vars(a), vars(b), path)
        # Extension types keep state outside __dict__; look at what pickle would save.
        if not has_dict or _overrides_pickling(type(a)):
            self._compare_reduced(a, b, path)


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _scalars_equal(a: Any, b: Any) -> bool:
    if isinstance(a, (float, complex, np.floating, np.complexfloating)):
        return bool(a == b) or (_isnan(a) and _isnan(b))
    if isinstance(a, (np.datetime64, np.timedelta64)):
        return bool(a == b) or (bool(np.isnat(a)) and bool(np.isnat(b)))
    if isinstance(a, np.generic) and a.dtype.names is not None:  # structured scalar
        return np.array(a).tobytes() == np.array(b).tobytes()
    return bool(a == b)


def _isnan(x: Any) -> bool:
    if isinstance(x, (complex, np.complexfloating)):
        return math.isnan(x.real) or math.isnan(x.imag)
    return math.isnan(x)


def _is_estimator(obj: Any) -> bool:
    """Duck-typed: sklearn estimators and kernels both expose get_params and __dict__."""
    return (
        not isinstance(obj, type)
        and hasattr(obj, "__dict__")
        and callable(getattr(obj, "get_params", None))
    )


def _is_pandas_dtype(obj: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.api.extensions.ExtensionDtype)


def _is_sklearn_tree(obj: Any) -> bool:
    from sklearn.tree._tree import Tree

    return isinstance(obj, Tree)


def _is_binary_tree(obj: Any) -> bool:
    """KDTree / BallTree (and their 32/64-bit bases)."""
    module = type(obj).__module__
    return module.startswith("sklearn.neighbors") and callable(getattr(obj, "get_arrays", None))
