"""The public surface: ``skjar.__all__``, documented functions, the error hierarchy."""

from __future__ import annotations
import __future__

import inspect
import re
import types
import warnings

import pytest

import skjar
import skjar.errors


def _public_attributes(module: types.ModuleType) -> set[str]:
    """Non-underscore attributes that are not submodules nor ``from __future__`` flags."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)
    }


def test_all_lists_every_public_name() -> None:
    missing = _public_attributes(skjar) - set(skjar.__all__)
    assert not missing, f"public names missing from skjar.__all__: {sorted(missing)}"


def test_all_entries_exist_and_are_unique() -> None:
    absent = [name for name in skjar.__all__ if not hasattr(skjar, name)]
    assert not absent, f"skjar.__all__ lists names the package lacks: {absent}"
    assert len(skjar.__all__) == len(set(skjar.__all__)), "duplicate entries in skjar.__all__"
    assert "__version__" in skjar.__all__ and isinstance(skjar.__version__, str)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from skjar import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(skjar.__all__)


def test_core_functions_are_public() -> None:
    for name in ("dump", "dumps", "load", "loads", "inspect", "audit"):
        assert name in skjar.__all__ and callable(getattr(skjar, name))


PUBLIC_FUNCTIONS = sorted(
    name for name in skjar.__all__ if inspect.isfunction(getattr(skjar, name, None))
)


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_public_function_has_docstring_with_example(name: str) -> None:
    doc = inspect.getdoc(getattr(skjar, name))
    assert doc, f"skjar.{name} has no docstring"
    summary = doc.strip().splitlines()[0]
    assert len(summary) > 10, f"skjar.{name}: the docstring's first line says too little"
    assert ">>>" in doc, f"skjar.{name}: the docstring has no example (a '>>>' line)"
    example = [line for line in doc.splitlines() if line.lstrip().startswith(">>>")]
    assert any(name in line for line in example), (
        f"skjar.{name}: the example does not call {name}"
    )


def _error_classes() -> list[type[BaseException]]:
    return [
        value
        for value in vars(skjar.errors).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == skjar.errors.__name__
    ]


def test_errors_module_defines_the_documented_classes() -> None:
    classes = {cls.__name__ for cls in _error_classes()}
    assert {"SkjarError", "SkjarWarning"} <= classes
    assert set(skjar.errors.__all__) == classes
    not_exported = classes - set(skjar.__all__)
    assert not not_exported, f"error classes not re-exported by skjar: {sorted(not_exported)}"
    for name in classes:
        assert getattr(skjar, name) is getattr(skjar.errors, name)


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_error_class_belongs_to_the_hierarchy(cls: type[BaseException]) -> None:
    if issubclass(cls, Warning):
        assert issubclass(cls, skjar.SkjarWarning)
        assert issubclass(cls, UserWarning)
        assert not issubclass(cls, skjar.SkjarError)
    else:
        assert issubclass(cls, skjar.SkjarError), f"{cls.__name__} does not subclass SkjarError"
        assert issubclass(cls, Exception)
    assert inspect.getdoc(cls), f"{cls.__name__} has no docstring"


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_errors_docstring_mentions_class(cls: type[BaseException]) -> None:
    doc = skjar.errors.__doc__ or ""
    assert re.search(rf"\b{cls.__name__}\b", doc), (
        f"the skjar.errors docstring does not mention {cls.__name__}"
    )


def test_errors_docstring_tree_matches_the_classes() -> None:
    """The drawn hierarchy gives every class its real parent (parsed by indentation)."""
    doc = skjar.errors.__doc__ or ""
    known = {cls.__name__: cls for cls in _error_classes()}
    stack: list[str] = []
    seen = set()
    for line in doc.splitlines():
        match = re.match(r"^(\s*)((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)(?:\s|$)", line)
        if not match or match.group(3) not in known:
            continue
        depth = len(match.group(2)) // 4 + (1 if "── " in line[: match.start(3)] else 0)
        name = match.group(3)
        del stack[depth:]
        cls = known[name]
        if depth:
            parent = known[stack[depth - 1]]
            assert parent in cls.__bases__, f"drawn under {parent.__name__}, but {cls.__bases__}"
        else:
            skjar_bases = [b for b in cls.__bases__ if b.__module__ == skjar.errors.__name__]
            assert not skjar_bases, f"{name} drawn as a root but subclasses {skjar_bases}"
        stack.append(name)
        seen.add(name)
    assert seen == set(known), f"classes missing from the drawn tree: {set(known) - seen}"


def test_errors_are_catchable_as_their_builtin_counterparts() -> None:
    # Callers used to pickle's ValueError/TypeError keep working.
    assert issubclass(skjar.InvalidArgumentError, ValueError)
    assert issubclass(skjar.UnsupportedObjectError, TypeError)
    with pytest.raises(ValueError):
        skjar.dumps(1, compress="gzip")


def test_untrusted_type_error_lists_names_sorted_and_unique() -> None:
    err = skjar.UntrustedTypeError(["b.B", "a.A", "b.B"])
    assert err.names == ["a.A", "b.B"]
    assert "'a.A'" in str(err) and "'b.B'" in str(err)
    assert "trusted=" in str(err)


def test_unsupported_object_error_carries_its_path() -> None:
    err = skjar.UnsupportedObjectError("no", "steps[0][1].func")
    assert err.path == "steps[0][1].func"
    assert "steps[0][1].func" in str(err)


def test_version_skew_warning_is_a_user_warning() -> None:
    with pytest.warns(UserWarning), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("x", skjar.VersionSkewWarning, stacklevel=1)
