"""Hostile functions stored as values: a model that would call them later, on your data.

``dump`` writes any importable function as a ``REF`` (it is the loader's job to
refuse it), and refuses what has no name (lambdas, local functions, modules, bound
methods). For every case the loader gets the attack: the dumped jar when dump
writes one, a crafted one when it refuses. A value the *caller* trusts is handed
back but never called while loading.
"""

from __future__ import annotations

import builtins
import functools
import os
import subprocess
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jarcraft
import skjar
from jarcraft import Ext, name_entry
from skjar.codec import nodes

UNTRUSTED = "untrusted name (header check, before import)"


def _fitted_lr() -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])


def _scorer(func: Callable[..., Any]) -> Any:
    from sklearn.metrics import make_scorer

    return make_scorer(func)


def _deep_in_dict(func: Callable[..., Any]) -> Any:
    model = _fitted_lr()
    model.extra_ = {"levels": [{"deeper": (1, [func])}]}
    return model


def _pipeline(func: Callable[..., Any]) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(StandardScaler(), FunctionTransformer(func=func))


# Each makes an object holding ``func`` somewhere a model would call it.
HOLDERS: dict[str, Callable[[Callable[..., Any]], Any]] = {
    "FunctionTransformer(func=)": lambda f: __import__("sklearn.preprocessing").preprocessing
    .FunctionTransformer(func=f),
    "FunctionTransformer(inverse_func=)": lambda f: __import__("sklearn.preprocessing")
    .preprocessing.FunctionTransformer(inverse_func=f),
    "SelectKBest(score_func=)": lambda f: __import__("sklearn.feature_selection")
    .feature_selection.SelectKBest(score_func=f),
    "make_scorer()": _scorer,
    "pipeline step": _pipeline,
    "deep in a fitted estimator's __dict__": _deep_in_dict,
    "list": lambda f: [1, [2, [f]]],
    "dict value": lambda f: {"a": {"b": f}},
    "dict key": lambda f: {f: 1},
    "tuple": lambda f: (1, (f,)),
    "set": lambda f: {f},
    "OrderedDict": lambda f: OrderedDict(a=f),
    "defaultdict factory": lambda f: defaultdict(f, a=1),
    "object ndarray": lambda f: np.array([1, f, "x"], dtype=object),
    "2-d object ndarray": lambda f: np.array([[f, 1], [2, 3]], dtype=object),
    "partial func": lambda f: functools.partial(f, "payload"),
    "partial keyword": lambda f: functools.partial(np.add, out=f),
}

HOSTILE: dict[str, Callable[..., Any]] = {
    "os.system": os.system,
    "builtins.eval": builtins.eval,
    "builtins.exec": builtins.exec,
    "subprocess.check_output": subprocess.check_output,
    "numpy.load": np.load,
    "functools.reduce": functools.reduce,
}


@pytest.mark.parametrize("func", list(HOSTILE))
@pytest.mark.parametrize("holder", list(HOLDERS))
def test_dumped_hostile_value_is_refused(holder: str, func: str, refused: Any) -> None:
    """dump writes the REF (not its job to judge), the loader refuses it by name."""
    data = skjar.dumps(HOLDERS[holder](HOSTILE[func]))
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    module, qualname = HOSTILE[func].__module__, HOSTILE[func].__qualname__
    assert f"{module}.{qualname}" in exc.names  # type: ignore[attr-defined]


def _local_function() -> Callable[..., Any]:
    def inner(x: Any) -> Any:
        return x

    return inner


UNNAMED: dict[str, Any] = {
    "lambda": lambda x: x,
    "local function": _local_function(),
    "bound builtin method": "abc".upper,
    "module": os,
}

# What an attacker writes instead of what dump refuses: the same position, a name.
CRAFTED_NAMES = {
    "lambda": ("__main__.<lambda>", "__main__", "malformed name in header"),
    "local function": ("tests.inner.<locals>.inner", "tests", "malformed name in header"),
    "bound builtin method": ("builtins.str.upper", "builtins", UNTRUSTED),
    "module": ("os.path", "os", UNTRUSTED),
}


@pytest.mark.parametrize("what", list(UNNAMED))
def test_unnamed_callables_are_refused_by_dump_and_by_the_loader(
    what: str, refused: Any, held: Any
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(skjar.UnsupportedObjectError):
        skjar.dumps(FunctionTransformer(func=UNNAMED[what]))
    held("writer refuses (dump)")
    name, module, defence = CRAFTED_NAMES[what]
    ft = "sklearn.preprocessing._function_transformer.FunctionTransformer"
    tree = Ext(nodes.INSTANCE, [ft, 1, {"func": Ext(nodes.REF, name)}, 0, None])
    data = jarcraft.build(tree, [name_entry(ft), name_entry(name, module, ("value",))])
    refused(lambda: skjar.loads(data), defence)


def test_custom_scorer_class_is_refused(package: Any, refused: Any) -> None:
    """A scorer object of the attacker's own class, holding a hostile function."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    mod = package.module()
    search = GridSearchCV(LogisticRegression(), {"C": [1.0]}, scoring=mod.Model(coef=os.system))
    data = skjar.dumps(search)
    package.forget()
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    assert set(exc.names) == {package.qualified("Model"), "posix.system"}  # type: ignore[attr-defined]
    assert not package.imported


# -- a value the caller trusts is returned, never called ----------------------------------
@pytest.mark.parametrize("holder", list(HOLDERS))
def test_trusted_values_are_never_called_while_loading(
    holder: str, package: Any, canary: Path, held: Any
) -> None:
    """``boom`` writes the canary when called; trusted as a value, it is loaded, not run."""
    boom = package.module().boom
    data = skjar.dumps(HOLDERS[holder](boom))
    loaded = skjar.loads(data, trusted=[boom, ("functools.partial", "object")])
    assert not canary.exists(), f"{holder}: boom() was called while loading"
    held("values are never called while loading")
    assert loaded is not None
    # Control: the loaded value is the live function: calling it does write the canary.
    boom()
    assert canary.exists()
    canary.unlink()
