"""Registry-wide checks: every node code has samples, every sample round-trips
through the node it is meant to exercise, and every decoder refuses malformed
payloads with a ``SkjarError``.

New handlers registered with ``@decodes(code, examples)`` are picked up here
automatically; a code without examples must be listed in ``COVERED_HERE`` with
samples (or in ``NO_SAMPLES`` with the reason none can exist).
"""

from __future__ import annotations

import functools
import warnings
from collections import defaultdict, namedtuple
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jarcraft
import skjar
from exact import assert_same
from skjar.codec import nodes
from skjar.codec.registry import DECODERS, EXAMPLES

CODE_NAMES = {
    value: name
    for name, value in vars(nodes).items()
    if name.isupper() and isinstance(value, int) and not name.startswith(("STATE_", "ITEMS_"))
}

# Module-level, so they have importable names (trusted explicitly where used).
Point = namedtuple("Point", ["x", "y"])


class Linked:
    """An instance that refers to itself: written as NEWOBJ, then its state."""

    def __init__(self) -> None:
        self.me = self
        self.items = [1, 2]


class Chain:
    """A linked list of instances: deep enough that the writer defers states (STATE, ROOT)."""

    def __init__(self, value: int, next: Chain | None = None) -> None:
        self.value = value
        self.next = next


def _chain_samples() -> list[Any]:
    head = None
    for i in range(80):
        head = Chain(i, head)
    return [head]


def _instance_samples() -> list[Any]:
    from sklearn.preprocessing import StandardScaler

    return [StandardScaler(), StandardScaler().fit(np.arange(6.0).reshape(3, 2))]


def _reconstruct_samples() -> list[Any]:
    from sklearn.linear_model._sgd_fast import Hinge
    from sklearn.tree import DecisionTreeRegressor

    return [Hinge(1.0), DecisionTreeRegressor(max_depth=1).fit([[0.0], [1.0]], [0.0, 1.0]).tree_]


# Codes whose handler registers no examples: samples that exercise them, and the
# names a load must trust for them (beyond the defaults).
COVERED_HERE: dict[int, tuple[Any, list[Any]]] = {
    nodes.INSTANCE: (_instance_samples, []),
    nodes.RECONSTRUCT: (_reconstruct_samples, []),
    nodes.NEWOBJ: (lambda: [Linked()], [Linked]),
    nodes.NAMEDTUPLE: (lambda: [Point(1, [2]), Point("a", None)], [Point]),
    nodes.STATE: (_chain_samples, [Chain]),
    nodes.ROOT: (_chain_samples, [Chain]),
}
# Codes that need no decoder of their own, with the reason.
NO_SAMPLES = {
    nodes.SHARED_DEF: "decoded by the Decoder itself; covered by every shared-reference test",
    nodes.SHARED_REF: "decoded by the Decoder itself; covered by every shared-reference test",
}


def _samples() -> list[tuple[str, int, Any, list[Any]]]:
    out = []
    for code, make in sorted(EXAMPLES.items()):
        for i, sample in enumerate(make()):
            out.append((f"{CODE_NAMES[code]}-{i}", code, sample, []))
    for code, (make, trusted) in sorted(COVERED_HERE.items()):
        for i, sample in enumerate(make()):
            out.append((f"{CODE_NAMES[code]}-{i}", code, sample, trusted))
    return out


SAMPLES = _samples()


def test_every_decoder_has_samples() -> None:
    missing = sorted(CODE_NAMES.get(c, c) for c in DECODERS if c not in EXAMPLES
                     and c not in COVERED_HERE)
    assert not missing, f"node codes without samples: {missing}"
    both = sorted(CODE_NAMES[c] for c in COVERED_HERE if c in EXAMPLES)
    assert not both, f"{both} now register examples: drop them from COVERED_HERE"


def test_every_node_code_is_decodable() -> None:
    orphans = sorted(name for code, name in CODE_NAMES.items()
                     if code not in DECODERS and code not in NO_SAMPLES)
    assert not orphans, f"node codes nothing decodes: {orphans}"
    assert not set(NO_SAMPLES) & set(DECODERS)


def test_node_codes_are_unique_and_fit_msgpack() -> None:
    assert len(CODE_NAMES) == len(
        [v for k, v in vars(nodes).items() if k.isupper() and isinstance(v, int)
         and not k.startswith(("STATE_", "ITEMS_"))]
    ), "two node names share a code"
    assert all(0 <= code <= 127 for code in CODE_NAMES)


def same_sample(a: Any, b: Any) -> None:
    """Equality for the sample types, including those plain ``==`` cannot judge."""
    assert type(a) is type(b), f"{type(a).__name__} became {type(b).__name__}"
    if isinstance(a, functools.partial):
        assert a.func is b.func and a.keywords == b.keywords
        assert_same(a.args, b.args)
    elif isinstance(a, np.random.RandomState):
        sa, sb = a.get_state(legacy=False), b.get_state(legacy=False)
        assert str(sa) == str(sb)
        assert a.random() == b.random()
    elif isinstance(a, np.random.Generator):
        assert a.bit_generator.state == b.bit_generator.state
        assert a.random() == b.random()
    elif isinstance(a, np.random.BitGenerator):
        assert str(a.state) == str(b.state)
    elif isinstance(a, np.ma.MaskedArray):
        assert_same(np.asarray(a.data), np.asarray(b.data))
        assert_same(np.ma.getmaskarray(a), np.ma.getmaskarray(b))
        assert a.fill_value == b.fill_value and a.hardmask == b.hardmask
    elif isinstance(a, defaultdict):
        assert a.default_factory is b.default_factory
        assert_same(dict(a), dict(b))
    elif isinstance(a, (type, np.ufunc)) or (callable(a) and not hasattr(a, "__dict__")):
        assert a is b
    elif isinstance(a, Linked):
        assert b.me is b and b.items == [1, 2]
    elif isinstance(a, Chain):
        while a is not None:
            assert type(b) is Chain and b.value == a.value
            a, b = a.next, b.next
        assert b is None
    elif type(a).__module__.startswith("sklearn"):
        from conformance.compare import assert_same_estimator

        assert_same_estimator(a, b)
    else:
        assert_same(a, b)


@pytest.mark.parametrize(("id_", "code", "sample", "trusted"), SAMPLES,
                         ids=[s[0] for s in SAMPLES])
def test_sample_round_trips_through_its_node(id_: str, code: int, sample: Any,
                                             trusted: list[Any]) -> None:
    data = skjar.dumps(sample)
    codes = jarcraft.node_codes(jarcraft.decode(data).tree)
    assert code in codes, f"{id_} is written without a {CODE_NAMES[code]} node: {codes}"
    if trusted:
        with pytest.raises(skjar.UntrustedTypeError):
            skjar.loads(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = skjar.loads(data, trusted=trusted)
    same_sample(sample, loaded)
    # Twice in one container: identity of mutable values is kept, immutable ones equal.
    pair = skjar.loads(skjar.dumps([sample, sample]), trusted=trusted)
    same_sample(sample, pair[0])
    if isinstance(sample, (list, dict, set, bytearray, np.ndarray, np.random.RandomState)):
        assert pair[0] is pair[1]


# -- malformed payloads, for every decoder ---------------------------------------------------------
# Names a fuzzed payload may mention; all declared in the header with every use, so
# decoders get past the "declared?" check and meet their own validation.
FUZZ_NAMES = {
    "numpy.log1p": ("numpy", ["value"]),
    "builtins.len": ("builtins", ["value"]),
    "functools.partial": ("functools", ["object"]),
    "numpy.random.mtrand.RandomState": ("numpy.random.mtrand", ["object"]),
    "numpy.random._pcg64.PCG64": ("numpy.random._pcg64", ["object"]),
    "numpy.random._generator.Generator": ("numpy.random._generator", ["object"]),
    "numpy.ma.core.MaskedArray": ("numpy.ma.core", ["object"]),
    "sklearn.tree._tree.Tree": ("sklearn.tree._tree", ["call"]),
    "sklearn.preprocessing._data.StandardScaler": ("sklearn.preprocessing._data",
                                                   ["object", "value"]),
    "sklearn.linear_model._sgd_fast.Hinge": ("sklearn.linear_model._sgd_fast", ["call"]),
    "scipy.sparse._csr.csr_matrix": ("scipy.sparse._csr", ["object"]),
}

ATOMS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.integers(-(2**63), 2**64 - 1), st.floats(),
    st.sampled_from(sorted(FUZZ_NAMES)), st.text(max_size=6), st.binary(max_size=16),
    st.sampled_from(["<f8", "|u1", "<U3", "O", "|V0", "<M8[s]", "|S0"]),
)
PAYLOADS = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers(0, 3)), inner, max_size=4),
        st.builds(lambda code, payload: jarcraft.Ext(code, payload),
                  st.sampled_from(sorted(DECODERS)), inner),
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def template() -> jarcraft.Jar:
    jar = jarcraft.decode(skjar.dumps(None))
    jar.header["names"] = [
        {"name": name, "module": module, "uses": uses}
        for name, (module, uses) in FUZZ_NAMES.items()
    ]
    return jar


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(code=st.sampled_from(sorted(DECODERS)), payload=PAYLOADS,
       buffers=st.lists(st.binary(max_size=64), max_size=2))
def test_malformed_payloads_are_refused_cleanly(template: jarcraft.Jar, code: int, payload: Any,
                                                buffers: list[bytes]) -> None:
    jar = jarcraft.Jar(template.header, b"", list(buffers))
    jar.root = jarcraft.Ext(code, payload)
    data = jarcraft.encode(jar)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            skjar.loads(data)
    except skjar.ReadError:
        pass


@pytest.mark.parametrize("code", sorted(DECODERS), ids=lambda c: CODE_NAMES[c])
@pytest.mark.parametrize(
    "payload",
    [None, 0, -1, 2**64 - 1, 1.5, "", "x", b"", b"\x00" * 8, [], [None] * 3, [[]] * 6,
     {"a": 1}, [0, 0], ["numpy.log1p", 1, {}, 0, None], ["<f8", [2**40, 2**40], False, 0],
     ["<f8", [-1], False, b""], ["|S0", [2**62], False, b""], ["O", [1], False, b"x"]],
    ids=repr,
)
def test_fixed_malformed_payloads_are_refused_cleanly(template: jarcraft.Jar, code: int,
                                                      payload: Any) -> None:
    jar = jarcraft.Jar(template.header, b"", [])
    jar.root = jarcraft.Ext(code, payload)
    try:
        skjar.loads(jarcraft.encode(jar))
    except skjar.ReadError:
        pass
