"""Trust confusion: names that look trusted, split differently, or reach through attributes.

Trust is by exact ``module.qualname`` *and* module split, per use, never by prefix
or inheritance; a name is checked before its module is imported. The throw-away
package (``package`` fixture) leaves a trace when imported, so "not imported" is
observed, not assumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import jarcraft
import skjar
from jarcraft import Ext, name_entry
from skjar.codec import nodes

UNTRUSTED = "untrusted name (header check, before import)"
LR = "sklearn.linear_model._base.LinearRegression"
PIPELINE = "sklearn.pipeline.Pipeline"


def _lr_jar() -> jarcraft.Jar:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])
    return jarcraft.decode(skjar.dumps(model))


def _rename(jar: jarcraft.Jar, name: str, module: str) -> bytes:
    """The LinearRegression jar with its class renamed in the tree and the header."""
    for node in jar.objects(LR):
        node.payload[0] = name
    jar.header["names"] = [name_entry(name, module, ("object",))]
    return jarcraft.encode(jar)


# -- subclasses of trusted classes ----------------------------------------------------
def test_subclass_of_a_trusted_estimator_is_refused_before_import(
    package: Any, refused: Any
) -> None:
    """The attacker's LinearRegression subclass (same qualname!) writes the canary in
    __setstate__ and predict. Saved honestly, it is refused by its exact name."""
    sub = package.module("models").LinearRegression
    model = sub().fit([[0.0], [1.0]], [0.0, 1.0])
    package.canary.unlink(missing_ok=True)  # only loading is under test
    data = skjar.dumps(model)
    package.forget()
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    assert exc.names == [f"{package.name}.models.LinearRegression"]  # type: ignore[attr-defined]
    assert not package.imported
    # Trusting the base class does not trust the subclass.
    refused(lambda: skjar.loads(data, trusted=[sub.__mro__[1]]), UNTRUSTED)
    assert not package.imported


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("sklearn.linear_model._base.LinearRegression", "sklearn"),  # a split of its own
        ("sklearn.linear_model._base.LinearRegression", "sklearn.linear_model"),
        ("sklearn.pipeline.Pipeline", "sklearn"),  # "sklearn" + "pipeline.Pipeline"
        ("sklearn.tree._tree.Tree", "sklearn.tree"),
    ],
)
def test_trusted_text_with_another_module_split(
    name: str, module: str, refused: Any
) -> None:
    """Same dotted text, other split: resolution would import ``module`` and walk the rest
    by attribute, which can reach another object. It is another name, and untrusted."""
    data = _rename(_lr_jar(), name, module)
    refused(lambda: skjar.loads(data), UNTRUSTED)


LOOKALIKES = [
    "sklearn_evil.LinearRegression",
    "sklearn.linear_model._base_evil.LinearRegression",
    "sklearn.linear_model._base.LinearRegressionX",
    "Sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._base.LinearRegression.__init__.__globals__",
    "sklearn.pipeline.Pipeline.__init__.__globals__",
    "sklearn.linear_model._base.LinearRegression.__class__",
    "sklearn.linear_model._base.LinearRegression.__subclasses__",
    "sklearn.linear_model._base.LinearRegression.fit",
    "sklearn.base.BaseEstimator",  # every estimator's base, never trusted itself
    "sklearn.linear_model._base.np.load",  # a trusted module's import of numpy
    "sklearn.utils.validation.np.load",
    "numpy.log1p.__self__",
    "builtins.len.__self__",
    "sklearn.linear_model._base.LinearR\u0435gression",  # Cyrillic small ie
    "sklearn.linear_model._base.\uff2cinearRegression",  # fullwidth capital L
]


@pytest.mark.parametrize("name", LOOKALIKES)
@pytest.mark.parametrize("use", ["object", "value", "call"])
def test_names_that_look_trusted_are_not(name: str, use: str, canary: Path, refused: Any) -> None:
    module = name.split(".")[0]
    tree = {
        "object": Ext(nodes.INSTANCE, [name, 0, None, 0, None]),
        "value": Ext(nodes.REF, name),
        "call": Ext(nodes.RECONSTRUCT, [name, [], 0, None, 0, None]),
    }[use]
    data = jarcraft.build(tree, [name_entry(name, module, (use,))])
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    assert exc.names == [name]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("sklearn.pipeline.Pipeline ", "sklearn.pipeline"),  # trailing space
        ("sklearn..pipeline.Pipeline", "sklearn"),  # empty part
        ("sklearn/pipeline.Pipeline", "sklearn/pipeline"),
        ("sklearn.pipeline:Pipeline", "sklearn"),
        ("sklearn.pipeline.Pipeline", "sklearn.pipeline.Pipeline"),  # module = whole name
        ("sklearn.pipeline.Pipeline", "sklearn.pipe"),  # not a prefix at a dot
        ("sklearn.pipeline.Pipeline", ""),
        ("sklearn.pipeline.<locals>.Pipeline", "sklearn.pipeline"),
        ("", ""),
    ],
)
def test_malformed_names_are_refused(name: str, module: str, refused: Any) -> None:
    data = jarcraft.build(Ext(nodes.REF, name), [name_entry(name, module, ("value",))])
    refused(lambda: skjar.loads(data), "malformed name in header")
    with pytest.raises(skjar.CorruptFileError):
        skjar.audit(data)  # the scanner refuses the same header


@pytest.mark.parametrize(
    "entry",
    [
        {"name": LR, "module": "sklearn.linear_model._base", "uses": ["object", "exec"]},
        {"name": LR, "module": "sklearn.linear_model._base", "uses": []},
        {"name": LR, "module": "sklearn.linear_model._base", "uses": "object"},
        {"name": LR, "module": ["sklearn"], "uses": ["object"]},
        {"name": [LR], "module": "sklearn", "uses": ["object"]},
        [LR, "sklearn.linear_model._base", ["object"]],
    ],
    ids=["unknown use", "no use", "uses not a list", "module not a str", "name not a str",
         "entry not an object"],
)
def test_malformed_name_entries_are_refused(entry: Any, refused: Any) -> None:
    jar = _lr_jar()
    jar.header["names"] = [entry]
    data = jarcraft.encode(jar)
    refused(lambda: skjar.loads(data), "malformed name in header")


def test_a_name_declared_twice_with_two_splits(refused: Any) -> None:
    """Declared once with the trusted split (for audit) and once with another (for use)."""
    jar = _lr_jar()
    jar.header["names"] = [
        name_entry(LR, "sklearn.linear_model._base", ("object",)),
        name_entry(LR, "sklearn", ("object",)),
    ]
    data = jarcraft.encode(jar)
    refused(lambda: skjar.loads(data), "malformed name in header")


# -- per-use trust --------------------------------------------------------------------------
PER_USE = [
    # (name, use the tree makes of it, why it is not trusted for that use)
    ("numpy.log1p", "object", "a trusted value is not a class to instantiate"),
    ("numpy.log1p", "call", "a trusted value is never called"),
    ("builtins.len", "call", "a trusted value is never called"),
    ("builtins.dict", "object", "a trusted value is not a class to instantiate"),
    (LR, "call", "a trusted class is not a reconstructor: no __init__/fit at load"),
    ("sklearn.tree._tree.Tree", "object", "a reconstructor is not an empty class"),
    ("sklearn.tree._tree.Tree", "value", "a reconstructor is not a value"),
    ("sklearn.neighbors._kd_tree.KDTree", "value", "a trusted object is not a value"),
    ("numpy.random._pcg64.PCG64", "value", "a trusted object is not a value"),
    ("functools.partial", "call", "partial is rebuilt by its node, never called"),
]


@pytest.mark.parametrize(("name", "use", "why"), PER_USE, ids=[f"{n}-{u}" for n, u, _ in PER_USE])
def test_trust_is_per_use(name: str, use: str, why: str, refused: Any) -> None:
    module = name.rpartition(".")[0]
    tree = {
        "object": Ext(nodes.INSTANCE, [name, 0, None, 0, None]),
        "value": Ext(nodes.REF, name),
        "call": Ext(nodes.RECONSTRUCT, [name, [1, 2, 3], 0, None, 0, None]),
    }[use]
    data = jarcraft.build(tree, [name_entry(name, module, (use,))])
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    assert exc.uses == {name: [use]}, why  # type: ignore[attr-defined]


# -- import side effects -----------------------------------------------------------------------
@pytest.mark.parametrize("use", ["object", "value", "call"])
def test_untrusted_module_is_never_imported(use: str, package: Any, refused: Any) -> None:
    """The package writes a trace when imported: loading, auditing or inspecting a jar
    that names it (declared, even unused, next to trusted names) never imports it."""
    package.forget()
    names = [name_entry(package.qualified("Model"), package.name, (use,)),
             name_entry("numpy.log1p", "numpy", ("value",))]
    data = jarcraft.build(Ext(nodes.REF, "numpy.log1p"), names)  # the tree does not even use it
    exc = refused(lambda: skjar.loads(data), UNTRUSTED)
    assert exc.names == [package.qualified("Model")]  # type: ignore[attr-defined]
    skjar.audit(data)
    skjar.inspect(data)
    assert not package.imported


def test_a_trusted_name_is_imported_only_when_trusted(package: Any, held: Any) -> None:
    """Control: the same package, trusted by the caller, is imported (the trace is live)."""
    package.forget()
    name = package.qualified("make_class")
    data = jarcraft.build(Ext(nodes.REF, name), [name_entry(name, package.name, ("value",))])
    with pytest.raises(skjar.UntrustedTypeError):
        skjar.loads(data)
    assert not package.imported
    loaded = skjar.loads(data, trusted=[name])
    assert package.imported and loaded is package.module().make_class
    held("untrusted name (header check, before import)")


def test_prefix_trust_does_not_exist(package: Any, refused: Any) -> None:
    """Trusting ``pkg.Model`` trusts neither ``pkg.Model.x``, ``pkg.ModelX`` nor ``pkg``'s
    other names."""
    for trusted in ([package.qualified("Model")], [package.module().Model]):
        for name in ("Model.__init__", "Model.__setstate__", "ModelX", "boom", "make_class"):
            full = package.qualified(name)
            data = jarcraft.build(
                Ext(nodes.REF, full), [name_entry(full, package.name, ("value",))]
            )
            refused(lambda data=data, t=trusted: skjar.loads(data, trusted=t), UNTRUSTED)


def test_the_file_cannot_declare_its_own_trust(refused: Any) -> None:
    """Extra header keys (a 'trusted' list, a policy, a loader version) are ignored."""
    name = "os.system"
    data = jarcraft.build(
        Ext(nodes.RECONSTRUCT, [name, ["true"], 0, None, 0, None]),
        header={
            **jarcraft.minimal_header([name_entry(name, "os", ("call",))]),
            "trusted": [name, [name, "call"]],
            "trust": {"policy": "all"},
            "loader": {"version": "0.0.1"},
        },
    )
    refused(lambda: skjar.loads(data), UNTRUSTED)
