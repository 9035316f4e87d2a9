"""The adversarial suite's shared machinery: the canary, the named defences, the summary.

Every attack test crafts a jar at the format level (``jarcraft``: valid digests, no
help from ``dump``), delivers it to the loader, and checks two things:

- the load is refused by the defence the test names (``refused(...)``: the
  exception type *and* the message that defence produces), and
- the payload did not run: ``canary`` is a path the payload would create, and it
  must not exist afterwards (checked again when the test ends).

Each test records the defence that held (``record_property("defence", ...)``); the
terminal summary prints the catalogue attack -> defence (xdist-safe, like
tests/conformance/conftest.py).
"""

from __future__ import annotations

import importlib
import re
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import skjar

# Defence name -> (exception it raises, regex its message matches). One name per
# mechanism in the loader, so the catalogue says *which* check stopped each attack.
DEFENCES: dict[str, tuple[type[BaseException], str]] = {
    "untrusted name (header check, before import)": (skjar.UntrustedTypeError, "untrusted name"),
    "header/tree use mismatch": (skjar.CorruptFileError, "header does not declare it"),
    "malformed name in header": (skjar.CorruptFileError, "malformed names entry|declared twice"),
    "per-use resolution (not a class / a module / not callable)": (
        skjar.UntrustedTypeError,
        "is not a class|is a module|is not callable",
    ),
    "state only on instances": (
        skjar.CorruptFileError,
        "not an empty instance|may only be given to instances",
    ),
    "handler-built types only by their node": (skjar.CorruptFileError, "built by its own node"),
    "state must map attribute names": (skjar.CorruptFileError, "must map attribute names"),
    "slots: only real __slots__ members": (skjar.CorruptFileError, "has no slot"),
    "meaning checks need plain state": (skjar.CorruptFileError, "must be a plain dict or tuple"),
    "meaning checks see no pending shells": (
        skjar.CorruptFileError,
        "refers to an instance that has not received its own state",
    ),
    "trusted code failure becomes CorruptFileError": (skjar.CorruptFileError, "failed: "),
    "node payload shape check": (
        skjar.CorruptFileError,
        "malformed|must be|mode 'none'|do not fit|no Cython state setter|unknown state mode"
        "|is not a named tuple|expected \\d+ fields|not a string|invalid fill value",
    ),
    "instances must be completed": (skjar.CorruptFileError, "never given its state"),
    "deferred states only at the root": (
        skjar.CorruptFileError,
        "root node may only be the outermost|malformed root node",
    ),
    "meaning check: Tree child/feature index": (skjar.CorruptFileError, "sklearn Tree.*crafted"),
    "meaning check: HGB predictor nodes": (
        skjar.CorruptFileError,
        "HistGradientBoosting.*crafted",
    ),
    "meaning check: KDTree/BallTree index arrays": (
        skjar.CorruptFileError,
        "KDTree/BallTree: .*crafted",
    ),
    "meaning check: SVC support counts": (skjar.CorruptFileError, "libsvm model: .*crafted"),
    "meaning check: sparse indices/indptr": (skjar.CorruptFileError, "sparse .* matrix: .*crafted"),
    "meaning check: BSpline knots": (skjar.CorruptFileError, "scipy BSpline: .*crafted"),
    "meaning check: k-means centers": (skjar.CorruptFileError, "k-means: .*crafted"),
    "meaning check: vocabulary / class-column maps": (
        skjar.CorruptFileError,
        "(vectorizer|MultiLabelBinarizer): .*crafted",
    ),
    "meaning check: one-hot encoder categories": (skjar.CorruptFileError, "OneHotEncoder.*crafted"),
    "meaning check: nearest neighbors data and metric": (
        skjar.CorruptFileError,
        "nearest neighbors.*crafted",
    ),
    "meaning check: bit generator positions": (skjar.CorruptFileError, "position .* is outside|has_uint32"),
    "meaning check: bit generator seed sequence": (
        skjar.CorruptFileError,
        "malformed seed sequence",
    ),
    "size check before allocation": (
        skjar.CorruptFileError,
        "needs \\d+ bytes|zero-size dtype|item count does not match|strings, the buffer holds"
        "|malformed array shape|larger than inline",
    ),
    "numpy's own shape checks (after the size check)": (
        skjar.CorruptFileError,
        "array is too big|Maximum allowed dimension",
    ),
    "dtype description checks": (
        skjar.CorruptFileError,
        "dtype description|dtype string too long|not allowed|nests too deeply|structured dtype",
    ),
    "layout must cover the file exactly": (
        skjar.CorruptFileError,
        "layout describes a|must be a non-negative integer|malformed buffer|malformed layout"
        "|has length \\d+ but size",
    ),
    "header length bounds": (
        skjar.CorruptFileError,
        "header length \\d+ is out of bounds|the header claims \\d+ bytes",
    ),
    "strict header JSON": (skjar.CorruptFileError, "not valid UTF-8 JSON|must be a JSON object|lacks a valid"),
    "pack members fill the pack exactly": (
        skjar.CorruptFileError,
        "packs buffers of \\d+ bytes into|malformed member list|member size of buffer entry"
        "|is a pack but not compressed|padding inside the pack|malformed buffer entry",
    ),
    "chunks cover the section exactly": (
        skjar.CorruptFileError,
        "chunk size must be|chunks' lengths add up|must be at least 2 and the number of chunk"
        "|chunk \\d+'s length must be|malformed chunk table|is chunked but not compressed",
    ),
    "decompression ratio cap": (skjar.CorruptFileError, "more than \\w+ can produce"),
    "codec framing must match the header": (
        skjar.CorruptFileError,
        "frame declares|decompressed to|does not decompress|incomplete or followed|unknown codec"
        "|followed by extra data",
    ),
    "tree parses exactly": (skjar.CorruptFileError, "ExtraData|extra data|incomplete"),
    "zero padding": (skjar.CorruptFileError, "non-zero padding"),
    "buffers used exactly once": (skjar.CorruptFileError, "used twice|never used|out of range"),
    "typed-node nesting cap": (skjar.CorruptFileError, "nest more than 100 levels"),
    "msgpack length limits": (skjar.CorruptFileError, "exceeds max_|incomplete input|incomplete msgpack"),
    "msgpack native depth limit": (skjar.CorruptFileError, "StackError|nested too deeply"),
    "tuple depth cap": (skjar.CorruptFileError, "tuples nest more than"),
    "hash-work budget": (skjar.CorruptFileError, "hashing its keys takes more work"),
    "container-building budget": (skjar.CorruptFileError, "builds more container items than"),
    "hash-flooding check": (skjar.CorruptFileError, "share one hash value"),
    "shared ids defined once, used after": (
        skjar.CorruptFileError,
        "undefined shared object|invalid or defined twice",
    ),
    "unknown node codes refused": (skjar.CorruptFileError, "unknown node code|msgpack timestamp"),
    "not a jar": (skjar.NotASkjarFileError, "not a skjar file"),
    "format version check": (skjar.FormatVersionError, "format version"),
    "integrity digest": (skjar.CorruptFileError, "integrity check failed"),
}

# Defences that are not a refusal: the attack's jar loads, and what it tried never happens.
OUTCOMES = (
    "values are never called while loading",
    "linear audit and load",
    "bounded error messages",
    "writer refuses (dump)",
)

_CATALOGUE: list[tuple[str, str]] = []  # (nodeid, defence), gathered from every worker


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    """A path that a payload would create; it must not exist when the test ends."""
    path = tmp_path / f"CANARY-{uuid.uuid4().hex[:8]}"
    yield path
    # np.save adds ".npy", np.memmap may leave a sibling: anything with the name counts.
    traces = list(tmp_path.glob(path.name + "*"))
    assert not traces, f"a payload ran: {traces} created"


@pytest.fixture
def refused(canary: Path, record_property: Callable[[str, Any], None]) -> Callable[..., BaseException]:
    """``refused(load, defence, match=None)``: ``load()`` is refused by exactly that defence.

    Asserts the exception type and message of the named defence (and ``match``, a
    regex, when given), that nothing ran (the canary is absent), and records the
    defence for the catalogue.
    """

    def check(load: Callable[[], Any], defence: str, match: str | None = None) -> BaseException:
        exc_type, pattern = DEFENCES[defence]
        with pytest.raises(skjar.SkjarError) as info:
            load()
        exc = info.value
        assert type(exc) is exc_type, f"{defence!r} raises {exc_type.__name__}, got {exc!r:.300}"
        assert re.search(pattern, str(exc)), f"not the {defence!r} defence: {exc}"
        if match is not None:
            assert re.search(match, str(exc)), f"{match!r} not in: {exc}"
        assert not list(canary.parent.glob(canary.name + "*")), "the payload ran"
        record_property("defence", defence)
        return exc

    return check


@pytest.fixture
def held(record_property: Callable[[str, Any], None]) -> Callable[[str], None]:
    """Record a defence that is an outcome, not an exception (see OUTCOMES)."""

    def record(defence: str) -> None:
        assert defence in OUTCOMES or defence in DEFENCES, defence
        record_property("defence", defence)

    return record


# -- the catalogue in the terminal summary ---------------------------------------------
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # user_properties travel back from xdist workers with the report.
    if report.when == "call" and report.passed and "tests/security/" in report.nodeid:
        for key, value in report.user_properties:
            if key == "defence":
                _CATALOGUE.append((report.nodeid, str(value)))


def _attack(nodeid: str) -> tuple[str, str]:
    """(family, attack) from a node id: the module's family and the test's name."""
    path, _, rest = nodeid.partition("::")
    family = Path(path).stem.removeprefix("test_").replace("_", " ")
    test = re.sub(r"\[.*\]$", "", rest).removeprefix("test_").replace("_", " ")
    return family, test


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _CATALOGUE:
        return
    table: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for nodeid, defence in _CATALOGUE:
        table[_attack(nodeid)][defence] += 1
    terminalreporter.section("skjar attack catalogue: attack -> defence that held (variants)")
    width = max(len(f"{f} / {a}") for f, a in table)
    for (family, attack), defences in sorted(table.items()):
        label = f"{family} / {attack}"
        for i, (defence, count) in enumerate(sorted(defences.items())):
            terminalreporter.write_line(
                f"{label if i == 0 else '':<{width}}  {count:>4}  {defence}"
            )
    terminalreporter.write_line(
        f"{len(_CATALOGUE)} attack variants defended, "
        f"{len({d for _, d in _CATALOGUE})} distinct defences"
    )


# -- a package whose import and whose calls leave traces -------------------------------
PACKAGE_SOURCE = '''
"""Importing this package writes {imported}; calling boom() writes the test's canary."""
import os
import pathlib

pathlib.Path({imported!r}).write_text("imported")
CANARY = pathlib.Path({canary!r})


def boom(*args, **kwargs):
    CANARY.write_text("called")
    return 0


class Model:
    def __init__(self, coef=None):
        self.coef = coef

    def __setstate__(self, state):
        CANARY.write_text("__setstate__ ran")
        self.__dict__.update(state)


def make_class(*args):
    return Model


def make_function(*args):
    return boom


def make_module(*args):
    return os


module_alias = pathlib  # an attribute that is a module (not a submodule: find_spec misses it)
'''

SUBCLASS_SOURCE = '''
from sklearn.linear_model import LinearRegression
from . import CANARY


class LinearRegression(LinearRegression):  # same qualname as the trusted class
    def __setstate__(self, state):
        CANARY.write_text("subclass __setstate__ ran")
        super().__setstate__(state)

    def predict(self, X):
        CANARY.write_text("subclass predict ran")
        return super().predict(X)
'''


class HostilePackage:
    """A throw-away package on sys.path: ``name``, its import trace, its module."""

    def __init__(self, name: str, imported: Path, canary: Path) -> None:
        self.name = name
        self.imported_trace = imported
        self.canary = canary

    @property
    def imported(self) -> bool:
        return self.imported_trace.exists() or any(
            m == self.name or m.startswith(self.name + ".") for m in sys.modules
        )

    def forget(self) -> None:
        """Unimport it and remove the trace, as in a fresh process."""
        for m in [m for m in sys.modules if m == self.name or m.startswith(self.name + ".")]:
            del sys.modules[m]
        self.imported_trace.unlink(missing_ok=True)

    def module(self, sub: str = "") -> Any:
        return importlib.import_module(self.name + (f".{sub}" if sub else ""))

    def qualified(self, attr: str) -> str:
        return f"{self.name}.{attr}"


@pytest.fixture
def package(tmp_path: Path, canary: Path) -> Iterator[HostilePackage]:
    name = f"skjar_hostile_{uuid.uuid4().hex[:10]}"
    root = tmp_path / "site"
    (root / name).mkdir(parents=True)
    imported = tmp_path / "IMPORTED"
    (root / name / "__init__.py").write_text(
        PACKAGE_SOURCE.format(imported=str(imported), canary=str(canary))
    )
    (root / name / "models.py").write_text(SUBCLASS_SOURCE)
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    pkg = HostilePackage(name, imported, canary)
    try:
        yield pkg
    finally:
        sys.path.remove(str(root))
        pkg.forget()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Crafted estimator states carry no "_sklearn_version": scikit-learn warns, as expected.
    for item in items:
        if "tests/security/" in item.nodeid:
            item.add_marker(pytest.mark.filterwarnings(
                "ignore::sklearn.exceptions.InconsistentVersionWarning"))
