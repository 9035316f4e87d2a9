"""Hostile names and the ways a crafted tree can try to use them.

A *target* is a callable an attacker wants the loader to reach (``os.system``,
``builtins.eval``, ``pickle.loads`` ...), with arguments that would leave a trace
(the canary) if it were ever called. A *form* is a way to put a name into a tree:
as a reconstructor call, a value, a class to instantiate, a partial's function, a
defaultdict factory ... Each form returns the tree and the header entries it needs,
so the name is declared exactly for the use the node makes of it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jarcraft import Ext, name_entry
from skjar.codec import nodes


class Touch:
    """Unpickling this runs ``os.system("touch <path>")``: the classic malicious pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {self.path}",))


def touch_pickle(path: Path, protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    return pickle.dumps(Touch(path), protocol=protocol)


@dataclass(frozen=True)
class Target:
    id: str
    name: str  # module.qualname, as the header declares it
    module: str
    args: Callable[[Path], list[Any]]  # arguments that would create the canary if called


def _cmd(c: Path) -> list[Any]:
    return [f"touch {c}"]


def _argv(c: Path) -> list[Any]:
    return [["touch", str(c)]]


def _src(c: Path) -> list[Any]:
    return [f"open({str(c)!r}, 'w').close()"]


TARGETS = [
    Target("os.system", "os.system", "os", _cmd),
    Target("posix.system", "posix.system", "posix", _cmd),
    Target("os.popen", "os.popen", "os", _cmd),
    Target("os.execv", "os.execv", "os", lambda c: ["/bin/touch", ["touch", str(c)]]),
    Target("subprocess.Popen", "subprocess.Popen", "subprocess", _argv),
    Target("subprocess.call", "subprocess.call", "subprocess", _argv),
    Target("subprocess.run", "subprocess.run", "subprocess", _argv),
    Target("subprocess.check_output", "subprocess.check_output", "subprocess", _argv),
    Target("builtins.eval", "builtins.eval", "builtins", _src),
    Target("builtins.exec", "builtins.exec", "builtins", _src),
    Target("builtins.compile", "builtins.compile", "builtins",
           lambda c: [*_src(c), "<jar>", "exec"]),
    Target("builtins.__import__", "builtins.__import__", "builtins", lambda c: ["os"]),
    Target("builtins.getattr", "builtins.getattr", "builtins", lambda c: ["os", "system"]),
    Target("builtins.setattr", "builtins.setattr", "builtins", lambda c: ["os", "x", 1]),
    Target("builtins.open", "builtins.open", "builtins", lambda c: [str(c), "w"]),
    Target("io.open", "io.open", "io", lambda c: [str(c), "w"]),
    Target("builtins.breakpoint", "builtins.breakpoint", "builtins", lambda c: []),
    Target("runpy.run_path", "runpy.run_path", "runpy", lambda c: [str(c)]),
    Target("runpy.run_module", "runpy.run_module", "runpy", lambda c: ["this"]),
    Target("pydoc.locate", "pydoc.locate", "pydoc", lambda c: ["os.system"]),
    Target("importlib.import_module", "importlib.import_module", "importlib", lambda c: ["os"]),
    Target("code.interact", "code.interact", "code", lambda c: []),
    Target("ctypes.CDLL", "ctypes.CDLL", "ctypes", lambda c: ["libc.so.6"]),
    Target("pickle.loads", "pickle.loads", "pickle", lambda c: [touch_pickle(c)]),
    Target("_pickle.loads", "_pickle.loads", "_pickle", lambda c: [touch_pickle(c)]),
    Target("shutil.rmtree", "shutil.rmtree", "shutil", lambda c: [str(c.parent)]),
    Target("webbrowser.open", "webbrowser.open", "webbrowser", lambda c: ["http://127.0.0.1:9/"]),
    Target("numpy.load", "numpy.load", "numpy", lambda c: [str(c), None, True]),
    Target("numpy.save", "numpy.save", "numpy", lambda c: [str(c), [1, 2]]),
    Target("numpy.memmap", "numpy.memmap", "numpy", lambda c: [str(c), "uint8", "w+", 0, 8]),
    Target("numpy.fromfile", "numpy.fromfile", "numpy", lambda c: [str(c)]),
    Target("numpy.loadtxt", "numpy.loadtxt", "numpy", lambda c: [str(c)]),
    Target("operator.attrgetter", "operator.attrgetter", "operator", lambda c: ["__globals__"]),
    Target("operator.methodcaller", "operator.methodcaller", "operator",
           lambda c: ["system", f"touch {c}"]),
    Target("operator.itemgetter", "operator.itemgetter", "operator", lambda c: ["__builtins__"]),
    Target("functools.reduce", "functools.reduce", "functools",
           lambda c: [Ext(nodes.REF, "os.system"), [f"touch {c}"]]),
    Target("skjar.loads", "skjar.loads", "skjar", lambda c: [b""]),
    Target("joblib.load", "joblib.load", "joblib", lambda c: [str(c)]),
]

FT = "sklearn.preprocessing._function_transformer.FunctionTransformer"
PARTIAL = "functools.partial"
LR = "sklearn.linear_model._base.LinearRegression"
Form = Callable[[Target, Path], tuple[Any, list[dict[str, Any]]]]


def _entry(t: Target, *uses: str) -> dict[str, Any]:
    return name_entry(t.name, t.module, uses)


def as_reconstruct(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``RECONSTRUCT``: call the target with the payload's arguments (pickle's REDUCE)."""
    return Ext(nodes.RECONSTRUCT, [t.name, t.args(c), 0, None, 0, None]), [_entry(t, "call")]


def as_reconstruct_with_state(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``RECONSTRUCT`` then state (pickle's REDUCE + BUILD)."""
    node = Ext(nodes.RECONSTRUCT, [t.name, t.args(c), 1, {"x": 1}, 0, None])
    return node, [_entry(t, "call")]


def as_value(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``REF``: the function itself as a value (a model would call it later)."""
    return Ext(nodes.REF, t.name), [_entry(t, "value")]


def as_estimator_param(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``FunctionTransformer(func=<target>, kw_args=<payload>)``."""
    state = {"func": Ext(nodes.REF, t.name), "inverse_func": None, "validate": False,
             "kw_args": None, "inv_kw_args": None, "accept_sparse": False,
             "check_inverse": True, "feature_names_out": None}
    node = Ext(nodes.INSTANCE, [FT, 1, state, 0, None])
    return node, [_entry(t, "value"), name_entry(FT, uses=("object",))]


def as_instance(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``INSTANCE``: ``cls.__new__(cls)`` of the target, no state."""
    return Ext(nodes.INSTANCE, [t.name, 0, None, 0, None]), [_entry(t, "object")]


def as_instance_with_state(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``INSTANCE`` with state (pickle's NEWOBJ + BUILD)."""
    return Ext(nodes.INSTANCE, [t.name, 1, {"x": t.args(c)}, 0, None]), [_entry(t, "object")]


def as_newobj(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``NEWOBJ`` shell completed by an ``INSTANCE`` (the cycle form)."""
    shell = Ext(nodes.SHARED_DEF, [0, Ext(nodes.NEWOBJ, t.name)])
    return Ext(nodes.INSTANCE, [shell, 1, {"me": Ext(nodes.SHARED_REF, 0)}, 0, None]), [
        _entry(t, "object")
    ]


def as_namedtuple(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``NAMEDTUPLE``: the target as a named-tuple class."""
    return Ext(nodes.NAMEDTUPLE, [t.name, t.args(c)]), [_entry(t, "object")]


def as_bit_generator(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``BITGENERATOR``: the target named where a numpy bit generator class goes."""
    return Ext(nodes.BITGENERATOR, [t.name, {"state": t.args(c)}]), [_entry(t, "object")]


def as_partial_func(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``PARTIAL``: ``functools.partial(<target>, *payload)``, a callable ready to fire."""
    node = Ext(nodes.PARTIAL, [Ext(nodes.REF, t.name), t.args(c), {}])
    return node, [_entry(t, "value"), name_entry(PARTIAL, uses=("object",))]


def as_partial_call(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``RECONSTRUCT functools.partial(<target>, ...)``: partial reached as a reconstructor."""
    node = Ext(nodes.RECONSTRUCT, [PARTIAL, [Ext(nodes.REF, t.name), *t.args(c)], 0, None, 0, None])
    return node, [_entry(t, "value"), name_entry(PARTIAL, uses=("call",))]


def as_defaultdict_factory(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``DEFAULTDICT``: the target as ``default_factory`` (called on a missing key)."""
    return Ext(nodes.DEFAULTDICT, [Ext(nodes.REF, t.name), [["k", 1]]]), [_entry(t, "value")]


def as_reduce_wrapper(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """``functools.reduce(<target>, payload)``: a trusted-looking wrapper that calls it."""
    node = Ext(nodes.RECONSTRUCT, ["functools.reduce", [Ext(nodes.REF, t.name), t.args(c)],
                                   0, None, 0, None])
    return node, [_entry(t, "value"), name_entry("functools.reduce", uses=("call",))]


def as_object_array_item(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """Inside a numpy object array, next to harmless items."""
    return Ext(nodes.OBJARRAY, [[3], False, [1, Ext(nodes.REF, t.name), "x"]]), [_entry(t, "value")]


def as_dict_key(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
    """As a dict key (hashing it must not matter: it is never even resolved)."""
    return {Ext(nodes.REF, t.name): 1}, [_entry(t, "value")]


def merge(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One header entry per name, with the union of the uses (the reader refuses duplicates)."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        seen = out.setdefault(e["name"], {**e, "uses": []})
        seen["uses"] = sorted(set(seen["uses"]) | set(e["uses"]))
    return list(out.values())


def _merged(form: Form) -> Form:
    def build(t: Target, c: Path) -> tuple[Any, list[dict[str, Any]]]:
        tree, entries = form(t, c)
        return tree, merge(entries)

    build.__doc__ = form.__doc__
    return build


FORMS: dict[str, Form] = {
    f.__name__.removeprefix("as_"): _merged(f)
    for f in (
        as_reconstruct,
        as_reconstruct_with_state,
        as_value,
        as_estimator_param,
        as_instance,
        as_instance_with_state,
        as_newobj,
        as_namedtuple,
        as_bit_generator,
        as_partial_func,
        as_partial_call,
        as_defaultdict_factory,
        as_reduce_wrapper,
        as_object_array_item,
        as_dict_key,
    )
}

# Names the header may declare that ARE trusted, for each use: a tree that uses a
# hostile name while the header declares only these is a "checked vs used" mismatch.
DECOYS = {
    "call": name_entry("sklearn.tree._tree.Tree", uses=("call",)),
    "value": name_entry("numpy.log1p", "numpy", ("value",)),
    "object": name_entry(LR, uses=("object",)),
}


def encode_state(value: Any, buffers: list[bytes]) -> Any:
    """A bit generator's ``.state`` as tree values (arrays past 128 bytes out of line)."""
    if isinstance(value, dict):
        return {k: encode_state(v, buffers) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        data: Any = value.tobytes()
        if len(data) > 128:
            buffers.append(data)
            data = len(buffers) - 1
        return Ext(nodes.NDARRAY, [value.dtype.str, list(value.shape), False, data])
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return Ext(nodes.BIGINT, value.to_bytes((value.bit_length() + 8) // 8, "little",
                                                signed=True))
    return value
