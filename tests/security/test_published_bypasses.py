"""The patterns behind published bypasses of safe loaders, replayed against skjar.

- skops: the type a scanner checked differs from the one the loader used
  (a node's ``__module__``/``__class__`` vs what gets imported), and allowed
  operator/method nodes reached attributes by name;
- PyTorch ``weights_only``: trusted types whose ``__setstate__``/``__reduce__``
  reached further; state applied to things that are not plain instances;
- pickle scanners (picklescan, modelscan ...): the scanner's view differs from the
  loader's (an import the scanner did not see, a nested file it did not open,
  a loader that imports before it audits).

In skjar the scanner (``audit``) and the loader read the same header list, the
tree may use only what it declares, and nothing is imported before the whole list
is judged.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import jarcraft
import skjar
from jarcraft import Ext, name_entry
from skjar.codec import nodes

from .hostile import FORMS, TARGETS, encode_state, touch_pickle

UNTRUSTED = "untrusted name (header check, before import)"
MISMATCH = "header/tree use mismatch"
LR = "sklearn.linear_model._base.LinearRegression"
FT = "sklearn.preprocessing._function_transformer.FunctionTransformer"


# -- the name checked is not the name used ------------------------------------------------------
CHECKED_VS_USED = {
    # (tree, header entries): the header shows only trusted names
    "declared a value, used as a call": (
        Ext(nodes.RECONSTRUCT, ["numpy.log1p", [1.0], 0, None, 0, None]),
        [name_entry("numpy.log1p", "numpy", ("value",))]),
    "declared an object, used as a call": (
        Ext(nodes.RECONSTRUCT, [LR, [], 0, None, 0, None]), [name_entry(LR, uses=("object",))]),
    "declared a call, used as an object": (
        Ext(nodes.INSTANCE, ["sklearn.tree._tree.Tree", 0, None, 0, None]),
        [name_entry("sklearn.tree._tree.Tree", uses=("call",))]),
    "declared LR, the tree names os.system": (
        Ext(nodes.INSTANCE, ["os.system", 0, None, 0, None]), [name_entry(LR, uses=("object",))]),
    "trailing space in the tree's name": (
        Ext(nodes.REF, "numpy.log1p "), [name_entry("numpy.log1p", "numpy", ("value",))]),
    "case differs in the tree's name": (
        Ext(nodes.REF, "numpy.Log1p"), [name_entry("numpy.log1p", "numpy", ("value",))]),
    "the name is built from a shared string": (
        [Ext(nodes.SHARED_DEF, [0, "os.system"]), Ext(nodes.REF, Ext(nodes.SHARED_REF, 0))],
        [name_entry("numpy.log1p", "numpy", ("value",))]),
    "a partial's implied name undeclared": (
        Ext(nodes.PARTIAL, [Ext(nodes.REF, "numpy.log1p"), [], {}]),
        [name_entry("numpy.log1p", "numpy", ("value",))]),
    "a RandomState's implied name undeclared": (
        Ext(nodes.RANDOMSTATE, [Ext(nodes.BITGENERATOR, [
            "numpy.random._pcg64.PCG64", encode_state(__import__("numpy").random.PCG64(1).state,
                                                      [])]), 0, 0.0]),
        [name_entry("numpy.random._pcg64.PCG64", uses=("object",))]),
    "a cycle's shell of an undeclared class": (
        Ext(nodes.INSTANCE, [Ext(nodes.SHARED_DEF, [0, Ext(nodes.NEWOBJ, "os.system")]), 1, {},
                             0, None]),
        [name_entry(LR, uses=("object",))]),
}


@pytest.mark.parametrize("case", list(CHECKED_VS_USED))
def test_the_checked_name_is_the_used_name(case: str, refused: Any) -> None:
    tree, names = CHECKED_VS_USED[case]
    data = jarcraft.build(tree, names)
    assert all(n.trusted for n in skjar.audit(data)), "the scanner sees only trusted names"
    refused(lambda: skjar.loads(data), MISMATCH)


def test_the_inspect_label_is_not_the_contract(refused: Any) -> None:
    """The header's ``object`` summary says LinearRegression; the tree holds os.system.
    inspect shows the label; audit and load go by the names."""
    header = jarcraft.minimal_header([name_entry("os.system", "os", ("call",))])
    header["object"] = {"type": LR, "params": {"fit_intercept": True}}
    data = jarcraft.build(Ext(nodes.RECONSTRUCT, ["os.system", ["true"], 0, None, 0, None]),
                          header=header)
    assert skjar.inspect(data).type == LR
    assert [n.name for n in skjar.audit(data) if not n.trusted] == ["os.system"]
    refused(lambda: skjar.loads(data), UNTRUSTED)


# -- attributes of trusted objects that lead to builtins -------------------------------------
REACHES = [
    "sklearn.pipeline.Pipeline.__init__.__globals__",
    "sklearn.pipeline.Pipeline.fit.__globals__",
    "numpy.log1p.__class__",
    "sklearn.utils._bunch.Bunch.__getattr__",
    "sklearn.linear_model._base.LinearRegression.__reduce_ex__",
    "sklearn.linear_model._base.LinearRegression.__init_subclass__",
    "functools.partial.__new__",
    "builtins.len.__self__",
    "numpy.ndarray.__reduce__",
    "numpy.ma.core.MaskedArray.__setstate__",
    "sklearn.utils.validation.check_array.__globals__",
]


@pytest.mark.parametrize("name", REACHES)
@pytest.mark.parametrize("use", ["value", "call"])
def test_attributes_of_trusted_objects_are_not_trusted(name: str, use: str, refused: Any) -> None:
    """Trust is by exact name: resolution never walks a path the file chose from a trusted
    object (``x.__init__.__globals__['os']`` style)."""
    module = name.split(".")[0] if name.startswith("builtins") else name.rsplit(".", 2)[0]
    tree = Ext(nodes.REF, name) if use == "value" else Ext(
        nodes.RECONSTRUCT, [name, ["os"], 0, None, 0, None])
    data = jarcraft.build(tree, [name_entry(name, module, (use,))])
    refused(lambda: skjar.loads(data), UNTRUSTED)


def test_operator_nodes_do_not_exist(refused: Any) -> None:
    """skops had nodes for operator/method calls; skjar has none: every code is refused
    unless it is one of the documented nodes."""
    for code in (0, 18, 19, 28, 29, 37, 50, 99, 127):
        data = jarcraft.build(Ext(code, ["os.system", ["true"]]))
        refused(lambda data=data: skjar.loads(data), "unknown node codes refused")


TIMESTAMP_POSITIONS = ["list", "object array", "partial args", "partial keywords",
                       "masked array data", "instance state", "dict key"]


@pytest.mark.parametrize("where", TIMESTAMP_POSITIONS)
def test_msgpack_timestamps_are_not_nodes(where: str, refused: Any, tmp_path: Path) -> None:
    """Ext type -1 is decoded by msgpack itself, not by skjar's hook: refused anyway.
    (Found here: the check searched a memoryview with ``in``, which never matched, and
    did not look into object arrays or partials.)"""
    import msgpack

    ts = msgpack.Timestamp(1, 2)
    log1p = Ext(nodes.REF, "numpy.log1p")
    tree = {
        "list": [ts, 1],
        "object array": Ext(nodes.OBJARRAY, [[1], False, [ts]]),
        "partial args": Ext(nodes.PARTIAL, [log1p, [ts], {}]),
        "partial keywords": Ext(nodes.PARTIAL, [log1p, [], {"out": ts}]),
        "masked array data": Ext(nodes.MASKEDARRAY, [Ext(nodes.OBJARRAY, [[1], False, [ts]]),
                                                     False, None, False]),
        "instance state": Ext(nodes.INSTANCE, [FT, 1, {"func": ts}, 0, None]),
        "dict key": {ts: 1},
    }[where]
    names = [name_entry("numpy.log1p", "numpy", ("value",)), name_entry(FT),
             name_entry("functools.partial"), name_entry("numpy.ma.core.MaskedArray")]
    data = jarcraft.build(tree, names)
    path = tmp_path / "ts.skjar"
    path.write_bytes(data)
    refused(lambda: skjar.loads(data), "unknown node codes refused")
    refused(lambda: skjar.load(path, mmap=True), "unknown node codes refused")


# -- trusted code that calls a stored callable at load time ------------------------------------
def _boom_positions(boom: str) -> dict[str, Any]:
    ref = Ext(nodes.REF, boom)
    return {
        "defaultdict factory, with items": Ext(nodes.DEFAULTDICT, [ref, [["a", 1], ["b", 2]]]),
        "partial func": Ext(nodes.PARTIAL, [ref, [1, 2], {"k": 3}]),
        "partial of a partial": Ext(nodes.PARTIAL, [Ext(nodes.PARTIAL, [ref, [], {}]), [], {}]),
        "estimator func (FunctionTransformer)": Ext(nodes.INSTANCE, [FT, 1, {"func": ref}, 0,
                                                                     None]),
        "object array item": Ext(nodes.OBJARRAY, [[2], False, [ref, ref]]),
        "dict key and value": {ref: ref},
        "set item": Ext(nodes.SET, [ref]),
        "state of a Bunch": Ext(nodes.INSTANCE, ["sklearn.utils._bunch.Bunch", 0, None, 2,
                                                 [["__getattr__", ref], ["__call__", ref]]]),
        "a scorer's score function": Ext(nodes.INSTANCE, [
            "sklearn.metrics._scorer._Scorer", 1,
            {"_score_func": ref, "_sign": 1, "_kwargs": {}, "_response_method": "predict"}, 0,
            None]),
        "masked array fill value": Ext(nodes.MASKEDARRAY, [
            Ext(nodes.NDARRAY, ["<f8", [1], False, bytes(8)]), False, ref, False]),
    }


POSITIONS = list(_boom_positions("x"))


@pytest.mark.parametrize("position", POSITIONS)
def test_stored_callables_are_never_called_while_loading(
    position: str, package: Any, canary: Path, held: Any, refused: Any
) -> None:
    """``boom`` (trusted by the caller as a value) writes the canary when called."""
    boom = package.qualified("boom")
    tree = _boom_positions(boom)[position]
    names = [name_entry(boom, package.name, ("value",)),
             name_entry("functools.partial", uses=("object",)),
             name_entry(FT, uses=("object",)),
             name_entry("sklearn.utils._bunch.Bunch", uses=("object",)),
             name_entry("sklearn.metrics._scorer._Scorer", uses=("object",)),
             name_entry("numpy.ma.core.MaskedArray", uses=("object",))]
    data = jarcraft.build(tree, names)
    if position == "masked array fill value":  # a callable is no fill value
        refused(lambda: skjar.loads(data, trusted=[boom]), "node payload shape check")
        return
    skjar.loads(data, trusted=[boom])
    assert not canary.exists()
    held("values are never called while loading")


def test_a_value_trusted_by_the_caller_is_still_not_a_call(package: Any, refused: Any) -> None:
    boom = package.qualified("boom")
    tree = Ext(nodes.RECONSTRUCT, [boom, [], 0, None, 0, None])
    data = jarcraft.build(tree, [name_entry(boom, package.name, ("call",))])
    refused(lambda: skjar.loads(data, trusted=[boom]), UNTRUSTED)


# -- nested loaders ----------------------------------------------------------------------------
NESTED_LOADERS = [
    ("skjar.loads", "skjar"), ("skjar.load", "skjar"), ("skjar.api.load", "skjar.api"),
    ("skjar.load_legacy", "skjar"), ("skjar.convert", "skjar"),
    ("pickle.loads", "pickle"), ("_pickle.loads", "_pickle"), ("pickle.Unpickler", "pickle"),
    ("numpy.load", "numpy"), ("numpy.lib.format.read_array", "numpy.lib.format"),
    ("joblib.load", "joblib"), ("marshal.loads", "marshal"), ("dill.loads", "dill"),
    ("cloudpickle.loads", "cloudpickle"), ("torch.load", "torch"),
]


@pytest.mark.parametrize("form", ["reconstruct", "value", "partial_func", "estimator_param"])
@pytest.mark.parametrize(("name", "module"), NESTED_LOADERS, ids=[n for n, _ in NESTED_LOADERS])
def test_nested_loaders_are_refused(
    name: str, module: str, form: str, canary: Path, refused: Any
) -> None:
    """A file that would call (or hand back) another loader on an embedded payload."""
    target = next((t for t in TARGETS if t.name == name), None)
    if target is None:
        from .hostile import Target

        target = Target(name, name, module, lambda c: [touch_pickle(c)])
    tree, names = FORMS[form](target, canary)
    data = jarcraft.build(tree, names)
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    assert name in exc.names  # type: ignore[attr-defined]


def test_embedded_files_are_inert_bytes(canary: Path, tmp_path: Path, held: Any) -> None:
    """A malicious pickle and a hostile jar stored *as data* come back as bytes, unopened."""
    inner_jar = jarcraft.build(*FORMS["reconstruct"](TARGETS[0], canary))
    data = jarcraft.build({"pickle": touch_pickle(canary), "jar": inner_jar,
                           "nested": [bytearray(touch_pickle(canary))]})
    loaded = skjar.loads(data)
    assert loaded["pickle"] == touch_pickle(canary) and loaded["jar"] == inner_jar
    assert not canary.exists()
    held("values are never called while loading")


# -- import before audit ------------------------------------------------------------------------
IMPORT_PROBE = textwrap.dedent(
    """
    import json, sys
    import skjar
    paths = json.loads(sys.argv[1])
    skjar.loads(skjar.dumps({"warm": 1}))  # what an ordinary load imports
    before = set(sys.modules)
    outcomes = []
    for path in paths:
        skjar.audit(path)
        skjar.inspect(path)
        try:
            skjar.load(path)
            outcomes.append("LOADED")
        except skjar.SkjarError as exc:
            outcomes.append(type(exc).__name__)
    print(json.dumps({"new": sorted(set(sys.modules) - before), "outcomes": outcomes}))
    """
)


def test_nothing_is_imported_before_the_audit(tmp_path: Path, package: Any, canary: Path,
                                              held: Any) -> None:
    """In a fresh interpreter: auditing, inspecting and refusing every hostile jar (and
    one naming the side-effect package) imports no module at all."""
    paths = []
    for target in TARGETS:
        for form in ("reconstruct", "instance", "value", "partial_func"):
            path = tmp_path / f"{target.id}-{form}.skjar"
            path.write_bytes(jarcraft.build(*FORMS[form](target, canary)))
            paths.append(str(path))
    name = package.qualified("Model")
    path = tmp_path / "package.skjar"
    path.write_bytes(jarcraft.build(Ext(nodes.INSTANCE, [name, 1, {"coef": 1}, 0, None]),
                                    [name_entry(name, package.name, ("object",))]))
    paths.append(str(path))
    package.forget()
    env_path = str(package.imported_trace.parent / "site")
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, json.dumps(paths)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**__import__("os").environ, "PYTHONPATH": env_path + ":" + ":".join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert set(report["outcomes"]) == {"UntrustedTypeError"}
    assert report["new"] == [], f"refused loads imported {report['new']}"
    assert not package.imported and not canary.exists()
    held(UNTRUSTED)
