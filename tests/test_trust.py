"""Trust: nothing outside the trusted set is imported, created, called or returned.

Untrusted code lives in a throw-away package whose import leaves a visible trace
(a canary file), so "not imported" is checked, not assumed. Trust is by exact
``module.qualname`` and per use (object / value / call); the header's list of
names binds the tree.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import jarcraft
import skjar
from skjar.codec import nodes

PACKAGE_SOURCE = '''
"""A package whose import is visible: it writes {canary}."""
import pathlib

pathlib.Path({canary!r}).write_text("imported")


class Model:
    def __init__(self, coef=None):
        self.coef = coef


class Child(Model):
    pass


def helper(x):
    return x
'''


@dataclass
class Canary:
    """A freshly imported package ``name`` that writes ``canary`` when imported."""

    name: str
    module: ModuleType
    canary: Path

    def forget(self) -> None:
        """Unimport the package and remove its trace, as in a fresh process."""
        sys.modules.pop(self.name, None)
        self.canary.unlink(missing_ok=True)

    @property
    def imported(self) -> bool:
        return self.canary.exists() or self.name in sys.modules

    def qualified(self, attr: str) -> str:
        return f"{self.name}.{attr}"


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Canary]:
    name = f"skjar_canary_{uuid.uuid4().hex[:12]}"
    root = tmp_path / "site"
    (root / name).mkdir(parents=True)
    trace = tmp_path / "CANARY"
    (root / name / "__init__.py").write_text(PACKAGE_SOURCE.format(canary=str(trace)))
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(name)
        assert trace.exists()
        yield Canary(name, module, trace)
    finally:
        sys.path.remove(str(root))
        sys.modules.pop(name, None)


def _jar_of(canary: Canary) -> bytes:
    """A dict holding an instance, a subclass instance and a function of the package."""
    m = canary.module
    value = {
        "model": m.Model(coef=np.arange(3.0)),
        "child": m.Child(coef=[1, 2]),
        "func": m.helper,
        "trusted": np.log1p,
    }
    return skjar.dumps(value)


# -- untrusted names ---------------------------------------------------------------------
def test_untrusted_names_are_refused_before_import(canary: Canary, tmp_path: Path) -> None:
    data = _jar_of(canary)
    path = tmp_path / "m.skjar"
    path.write_bytes(data)
    expected = sorted(canary.qualified(n) for n in ("Child", "Model", "helper"))
    canary.forget()
    for load in (lambda: skjar.loads(data), lambda: skjar.load(path),
                 lambda: skjar.load(path, mmap=True), lambda: skjar.load(io.BytesIO(data))):
        with pytest.raises(skjar.UntrustedTypeError) as info:
            load()
        assert info.value.names == expected
        for name in expected:
            assert repr(name) in str(info.value)
        assert f"trusted={expected!r}" in str(info.value)  # says how to proceed
        assert "skjar audit" in str(info.value)
        assert not canary.imported, "refusing the file imported its module"


def test_explicit_trust_by_name_loads(canary: Canary) -> None:
    data = _jar_of(canary)
    canary.forget()
    names = [canary.qualified(n) for n in ("Model", "Child", "helper")]
    loaded = skjar.loads(data, trusted=names)
    assert canary.imported  # expected: the caller trusted it
    module = sys.modules[canary.name]
    assert type(loaded["model"]) is module.Model
    assert type(loaded["child"]) is module.Child
    assert loaded["func"] is module.helper
    assert loaded["trusted"] is np.log1p
    np.testing.assert_array_equal(loaded["model"].coef, np.arange(3.0))
    assert loaded["child"].coef == [1, 2]


def test_explicit_trust_by_object_loads(canary: Canary) -> None:
    m = canary.module
    loaded = skjar.loads(_jar_of(canary), trusted=[m.Model, m.Child, m.helper])
    assert type(loaded["child"]) is m.Child and loaded["func"] is m.helper


def test_partial_trust_lists_only_the_rest(canary: Canary) -> None:
    data = _jar_of(canary)
    with pytest.raises(skjar.UntrustedTypeError) as info:
        skjar.loads(data, trusted=[canary.module.Model])
    assert info.value.names == sorted([canary.qualified("Child"), canary.qualified("helper")])


def test_trusting_a_base_class_does_not_trust_a_subclass(canary: Canary) -> None:
    m = canary.module
    data = skjar.dumps(m.Child(coef=1))
    with pytest.raises(skjar.UntrustedTypeError) as info:
        skjar.loads(data, trusted=[m.Model, canary.qualified("Model")])
    assert info.value.names == [canary.qualified("Child")]


def test_subclass_of_a_trusted_estimator_is_not_trusted(canary: Canary, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    source = "from sklearn.linear_model import LogisticRegression\n" \
             "class MyLR(LogisticRegression):\n    pass\n"
    path = Path(canary.module.__file__).with_name("models.py")  # type: ignore[arg-type]
    path.write_text(source)
    importlib.invalidate_caches()
    sub = importlib.import_module(f"{canary.name}.models")
    try:
        model = sub.MyLR().fit([[0.0], [1.0]], [0, 1])
        data = skjar.dumps(model)
        with pytest.raises(skjar.UntrustedTypeError) as info:
            skjar.loads(data, trusted=[LogisticRegression])
        assert info.value.names == [f"{canary.name}.models.MyLR"]
    finally:
        sys.modules.pop(f"{canary.name}.models", None)


def test_trust_is_by_exact_module_path() -> None:
    lr = "sklearn.linear_model._logistic.LogisticRegression"
    assert skjar.is_trusted(lr, "object")
    assert skjar.is_trusted(lr, "value")
    assert not skjar.is_trusted(lr, "call")
    assert not skjar.is_trusted("sklearn.linear_model.LogisticRegression", "object")  # re-export
    assert not skjar.is_trusted("sklearn.linear_model._logistic", "object")
    assert not skjar.is_trusted("sklearn.linear_model._logistic.LogisticRegressionCV.x", "object")
    assert skjar.is_trusted("numpy.log1p", "value")
    assert not skjar.is_trusted("numpy.log1p", "call")
    assert not skjar.is_trusted("numpy.log1p", "object")
    assert skjar.is_trusted("sklearn.tree._tree.Tree", "call")
    assert not skjar.is_trusted("sklearn.tree._tree.Tree", "value")
    for dangerous in ("builtins.eval", "builtins.exec", "builtins.getattr", "builtins.open",
                      "os.system", "subprocess.Popen", "pickle.loads", "builtins.__import__",
                      "importlib.import_module", "numpy.load", "numpy.fromfile", "joblib.load"):
        for use in ("object", "value", "call"):
            assert not skjar.is_trusted(dangerous, use), (dangerous, use)


def test_trusted_pairs_grant_exactly_one_use(canary: Canary) -> None:
    m = canary.module
    data = skjar.dumps(m.Model(coef=1))
    with pytest.raises(skjar.UntrustedTypeError):
        skjar.loads(data, trusted=[(m.Model, "value")])  # a value is not instantiable
    with pytest.raises(skjar.UntrustedTypeError):
        skjar.loads(data, trusted=[(m.Model, "call")])
    assert skjar.loads(data, trusted=[(m.Model, "object")]).coef == 1
    assert skjar.is_trusted(canary.qualified("Model"), "object", [(m.Model, "object")])
    assert not skjar.is_trusted(canary.qualified("Model"), "call", [m.Model])
    assert not skjar.is_trusted(canary.qualified("helper"), "call", [m.helper])
    assert skjar.is_trusted(canary.qualified("helper"), "value", [m.helper])


# -- crafted files: per-use trust and the binding header ---------------------------------------
def _names(crafted: jarcraft.Jar) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in crafted.header["names"]}


def _declare(crafted: jarcraft.Jar, name: str, module: str, uses: list[str]) -> None:
    crafted.header["names"] = [e for e in crafted.header["names"] if e["name"] != name]
    crafted.header["names"].append({"name": name, "module": module, "uses": uses})


@pytest.fixture(scope="module")
def lr_jar() -> bytes:
    from sklearn.linear_model import LogisticRegression

    return skjar.dumps(LogisticRegression().fit([[0.0], [1.0], [2.0]], [0, 1, 1]))


LR = "sklearn.linear_model._logistic.LogisticRegression"


def _as_reconstruct(crafted: jarcraft.Jar, name: str, args: list[Any]) -> None:
    """Turn the root INSTANCE node into a call of ``name`` with ``args``, keeping the state."""
    root = crafted.root
    assert isinstance(root, jarcraft.Ext) and root.code == nodes.INSTANCE
    _, mode, state, kind, items = root.payload
    crafted.root = jarcraft.Ext(nodes.RECONSTRUCT, [name, args, mode, state, kind, items])


def test_a_class_trusted_as_object_is_not_callable(lr_jar: bytes) -> None:
    crafted = jarcraft.decode(lr_jar)
    _as_reconstruct(crafted, LR, [])
    _declare(crafted, LR, "sklearn.linear_model._logistic", ["call"])
    with pytest.raises(skjar.UntrustedTypeError) as info:
        skjar.loads(jarcraft.encode(crafted))
    assert info.value.names == [LR]


def test_a_value_is_never_instantiated_nor_called(lr_jar: bytes) -> None:
    for name, module in (("builtins.dict", "builtins"), ("numpy.float64", "numpy"),
                         ("numpy.log1p", "numpy")):
        for use in ("object", "call"):
            crafted = jarcraft.decode(lr_jar)
            crafted.header["names"] = []
            if use == "object":
                crafted.root.payload[0] = name
            else:
                _as_reconstruct(crafted, name, [])
            _declare(crafted, name, module, [use])
            with pytest.raises(skjar.UntrustedTypeError) as info:
                skjar.loads(jarcraft.encode(crafted))
            assert info.value.names == [name], (name, use)


def test_a_reconstructor_is_not_instantiable(lr_jar: bytes) -> None:
    tree = "sklearn.tree._tree.Tree"
    crafted = jarcraft.decode(lr_jar)
    crafted.root.payload[0] = tree
    crafted.header["names"] = []
    _declare(crafted, tree, "sklearn.tree._tree", ["object"])
    with pytest.raises(skjar.UntrustedTypeError) as info:
        skjar.loads(jarcraft.encode(crafted))
    assert info.value.names == [tree]


def test_user_trust_as_call_allows_the_call(canary: Canary) -> None:
    crafted = jarcraft.decode(skjar.dumps(canary.module.Model(coef=7)))
    name = canary.qualified("Model")
    _as_reconstruct(crafted, name, [])
    _declare(crafted, name, canary.name, ["call"])
    data = jarcraft.encode(crafted)
    with pytest.raises(skjar.UntrustedTypeError):
        skjar.loads(data, trusted=[canary.module.Model])  # object + value, not call
    assert skjar.loads(data, trusted=[(canary.module.Model, "call")]).coef == 7


@pytest.mark.parametrize(
    "name, module",
    [
        ("sklearn.linear_model._logistic.LogisticRegressionOfTomorrow",
         "sklearn.linear_model._logistic"),
        ("skjar_no_such_package.Model", "skjar_no_such_package"),
    ],
)
def test_a_trusted_name_missing_here_is_a_version_mismatch(
    lr_jar: bytes, name: str, module: str
) -> None:
    """A trusted name this environment lacks (a class of another version of its library,
    as scipy 1.18's _BSpline is under scipy 1.17) is named in a VersionMismatchError, not
    reported as a damaged file."""
    crafted = jarcraft.decode(lr_jar)
    crafted.root.payload[0] = name
    _declare(crafted, name, module, ["object"])
    with pytest.raises(skjar.VersionMismatchError, match=re.escape(f"{name!r} is trusted, but")):
        skjar.loads(jarcraft.encode(crafted), trusted=[name])


def test_a_class_named_by_its_modules_short_name_is_written_by_the_full_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Some extension builds name their module by its last part and register it under
    both names (scikit-learn 1.7's losses: "_loss.CyHalfBinomialLoss"): a jar names the
    module's own, importable name, which the default trust knows."""
    import sklearn.preprocessing._data as real
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.arange(6.0).reshape(3, 2))
    monkeypatch.setitem(sys.modules, "_data", real)
    monkeypatch.setattr(StandardScaler, "__module__", "_data")
    data = skjar.dumps(scaler)
    names = [n.name for n in skjar.inspect(data).names]
    assert names == ["sklearn.preprocessing._data.StandardScaler"]
    assert type(skjar.loads(data)) is StandardScaler


def test_the_tree_may_not_use_an_undeclared_use(lr_jar: bytes) -> None:
    crafted = jarcraft.decode(lr_jar)
    _declare(crafted, LR, "sklearn.linear_model._logistic", ["value"])  # trusted as value too
    with pytest.raises(skjar.CorruptFileError, match="does not declare"):
        skjar.loads(jarcraft.encode(crafted))


def test_the_tree_may_not_use_an_undeclared_name(lr_jar: bytes) -> None:
    crafted = jarcraft.decode(lr_jar)
    crafted.root.payload[0] = "sklearn.linear_model._base.LinearRegression"  # trusted, undeclared
    with pytest.raises(skjar.CorruptFileError, match="does not declare"):
        skjar.loads(jarcraft.encode(crafted))


def test_the_tree_may_not_use_a_ref_the_header_does_not_declare(canary: Canary) -> None:
    crafted = jarcraft.decode(skjar.dumps({"f": np.log1p, "g": canary.module.helper}))
    refs = crafted.nodes(nodes.REF)
    assert sorted(r.payload for r in refs) == sorted(["numpy.log1p", canary.qualified("helper")])
    for ref in refs:
        ref.payload = "numpy.log1p"
    crafted.header["names"] = [e for e in crafted.header["names"] if e["name"] == "numpy.log1p"]
    assert len(crafted.header["names"]) == 1
    loaded = skjar.loads(jarcraft.encode(crafted))  # the header now tells the truth
    assert loaded == {"f": np.log1p, "g": np.log1p}
    for ref in refs:
        ref.payload = "numpy.expm1"  # trusted as a value, but not declared
    with pytest.raises(skjar.CorruptFileError, match="does not declare"):
        skjar.loads(jarcraft.encode(crafted))


def test_names_split_differently_are_other_names(lr_jar: bytes) -> None:
    crafted = jarcraft.decode(lr_jar)
    _declare(crafted, LR, "sklearn.linear_model", ["object"])  # module path differs from the table
    with pytest.raises(skjar.UntrustedTypeError) as info:
        skjar.loads(jarcraft.encode(crafted))
    assert info.value.names == [LR]


@pytest.mark.parametrize(
    "entry",
    [
        {"name": LR, "module": "sklearn.linear_model._logistic.LogisticRegression", "uses": ["object"]},
        {"name": LR, "module": "", "uses": ["object"]},
        {"name": LR, "module": "sklearn.linear_model._logistic", "uses": []},
        {"name": LR, "module": "sklearn.linear_model._logistic", "uses": ["execute"]},
        {"name": "sklearn.x-y.Z", "module": "sklearn", "uses": ["object"]},
        {"name": LR, "module": "sklearn.linear_model._logistic"},
        ["not", "a", "dict"],
    ],
)
def test_malformed_name_entries_are_corrupt(lr_jar: bytes, entry: Any) -> None:
    crafted = jarcraft.decode(lr_jar)
    crafted.header["names"] = [entry]
    with pytest.raises(skjar.CorruptFileError, match="names entry"):
        skjar.loads(jarcraft.encode(crafted))


def test_a_file_cannot_widen_its_own_trust(canary: Canary) -> None:
    crafted = jarcraft.decode(_jar_of(canary))
    names = sorted(canary.qualified(n) for n in ("Child", "Model", "helper"))
    crafted.header["trusted"] = names
    crafted.header["metadata"]["trusted"] = names
    crafted.header["environment"]["packages"][canary.name] = "1.0"
    canary.forget()
    with pytest.raises(skjar.UntrustedTypeError) as info:
        skjar.loads(jarcraft.encode(crafted))
    assert info.value.names == names
    assert not canary.imported


def test_a_name_declared_twice_is_corrupt(lr_jar: bytes) -> None:
    crafted = jarcraft.decode(lr_jar)
    crafted.header["names"] = crafted.header["names"] * 2
    with pytest.raises(skjar.CorruptFileError):
        skjar.loads(jarcraft.encode(crafted))


# -- looking without loading -------------------------------------------------------------------
def test_audit_lists_every_name_with_its_trust(canary: Canary, tmp_path: Path) -> None:
    data = _jar_of(canary)
    path = tmp_path / "m.skjar"
    path.write_bytes(data)
    canary.forget()
    for source in (data, path, io.BytesIO(data)):
        report = {n.name: n for n in skjar.audit(source)}
        assert set(report) == {canary.qualified(n) for n in ("Model", "Child", "helper")} | {
            "numpy.log1p"
        }
        model = report[canary.qualified("Model")]
        assert (model.module, model.uses, model.trusted, model.untrusted_uses) == (
            canary.name, ("object",), False, ("object",))
        helper = report[canary.qualified("helper")]
        assert (helper.uses, helper.trusted) == (("value",), False)
        log1p = report["numpy.log1p"]
        assert (log1p.module, log1p.uses, log1p.trusted, log1p.untrusted_uses) == (
            "numpy", ("value",), True, ())
        assert not canary.imported, "audit imported the module"
    report = {n.name: n for n in skjar.audit(data, trusted=[(canary.qualified("Model"), "object")])}
    assert report[canary.qualified("Model")].trusted
    assert not report[canary.qualified("Child")].trusted


def test_audit_shows_exactly_what_the_tree_uses() -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    pipe = make_pipeline(StandardScaler(), FunctionTransformer(np.log1p)).fit(np.ones((3, 2)))
    data = skjar.dumps(pipe)
    declared = {n.name: set(n.uses) for n in skjar.audit(data)}
    used: dict[str, set[str]] = {}
    use_of = {nodes.INSTANCE: "object", nodes.NEWOBJ: "object", nodes.REF: "value",
              nodes.RECONSTRUCT: "call", nodes.NAMEDTUPLE: "object"}
    for node in jarcraft.decode(data).nodes():
        if node.code in use_of:
            name = node.payload if isinstance(node.payload, str) else node.payload[0]
            if isinstance(name, str):
                used.setdefault(name, set()).add(use_of[node.code])
    assert declared == used
    assert all(n.trusted for n in skjar.audit(data))


def test_inspect_reads_the_header_only(canary: Canary) -> None:
    data = skjar.dumps(canary.module.Model(coef=1), metadata={"owner": "me"})
    canary.forget()
    info = skjar.inspect(data)
    assert info.type == canary.qualified("Model")
    assert info.metadata == {"owner": "me"}
    assert [n.name for n in info.names] == [canary.qualified("Model")]
    assert not info.names[0].trusted
    assert not canary.imported, "inspect imported the module"


def test_inspect_describes_a_model() -> None:
    pd = pytest.importorskip("pandas")
    import sklearn
    from sklearn.linear_model import LogisticRegression

    X = pd.DataFrame({"height": [1.0, 2.0, 3.0, 4.0], "width": [0.5, 0.1, 0.9, 0.3]})
    model = LogisticRegression(C=0.5).fit(X, ["no", "yes", "yes", "no"])
    data = skjar.dumps(model, metadata={"auc": 0.9})
    info = skjar.inspect(data)
    assert info.type == LR
    assert info.params["C"] == 0.5 and info.params["max_iter"] == 100
    assert info.schema["n_features_in"] == 2
    assert info.schema["feature_names_in"] == ["height", "width"]
    assert info.schema["classes"] == ["no", "yes"]
    assert info.metadata == {"auc": 0.9}
    assert info.format_version == "1.1"
    assert info.environment["packages"]["scikit-learn"] == sklearn.__version__
    assert info.environment["packages"]["numpy"] == np.__version__
    assert info.producer["name"] == "skjar" and info.producer["version"] == skjar.__version__
    assert info.version_skew == {}
    assert info.compression is None
    crafted = jarcraft.decode(data)
    assert info.sizes["file"] == len(data)
    assert info.sizes["tree"] == len(crafted.tree)
    assert info.sizes["buffers"] == len(crafted.buffers)
    assert info.sizes["data"] == sum(len(b) for b in crafted.buffers)
    assert 0 < info.sizes["header"] < len(data)
    json.dumps(info.to_dict())  # printable as JSON


def test_inspect_from_path_and_file_object_agree(tmp_path: Path, lr_jar: bytes) -> None:
    path = tmp_path / "m.skjar"
    path.write_bytes(lr_jar)
    a = skjar.inspect(lr_jar)
    b = skjar.inspect(path)
    with open(path, "rb") as f:
        c = skjar.inspect(f)
    assert a == b == c
    compressed = skjar.inspect(skjar.dumps(np.zeros(10_000), compress="zstd"))
    assert compressed.compression == {"codec": "zstd", "level": 3}
    assert compressed.sizes["data"] == 80_000 > compressed.sizes["data_stored"]


def test_inspect_does_not_check_the_digest_but_load_does(lr_jar: bytes) -> None:
    damaged = bytearray(lr_jar)
    damaged[-30] ^= 0xFF  # inside the last buffer or its padding
    assert skjar.inspect(bytes(damaged)).type == LR
    with pytest.raises(skjar.CorruptFileError):
        skjar.loads(bytes(damaged))


def test_trusted_names_table_is_well_formed() -> None:
    from skjar import _trusted_names
    from skjar.trust import DEFAULT_TRUST

    for table in (_trusted_names.OBJECTS, _trusted_names.VALUES, _trusted_names.CALLS):
        for spec in table:
            module, sep, qualname = spec.partition(":")
            assert sep and module and qualname, spec
            assert all(p.isidentifier() for p in f"{module}.{qualname}".split(".")), spec
            assert not any(p.startswith("__") for p in qualname.split(".")), spec
    assert "builtins.eval" not in DEFAULT_TRUST and "builtins.getattr" not in DEFAULT_TRUST
    tables = {*_trusted_names.OBJECTS, *_trusted_names.VALUES, *_trusted_names.CALLS}
    assert tables >= _trusted_names.ONLY_IN_SOME_VERSIONS


def test_default_object_names_resolve_to_classes() -> None:
    """Every class trusted for instantiation exists and is a class (spot-check of the table)."""
    from skjar import _trusted_names

    missing = []
    for spec in _trusted_names.OBJECTS:
        module, _, qualname = spec.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            missing.append(spec)
            continue
        assert isinstance(obj, type), f"{spec} is trusted as an object but is not a class"
    unexpected = sorted(set(missing) - _trusted_names.ONLY_IN_SOME_VERSIONS)
    assert not unexpected, f"trusted names that do not exist here: {unexpected[:10]}"


def test_canary_fixture_detects_imports(canary: Canary) -> None:
    """The canary itself works: importing the package is seen."""
    canary.forget()
    assert not canary.imported
    importlib.import_module(canary.name)
    assert canary.imported
