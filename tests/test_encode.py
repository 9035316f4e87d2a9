"""The compiled encoder walk (src/skjar/_encode.c) against its Python twin
(Encoder._encode_value, _encode_items_py, _encode_dict_py).

Every dump with the compiled helpers walks the model in C; the whole suite writes on
that path. Here both walk the same objects - every registry sample, fitted models,
random nested containers with shared parts, and the cases the compiled walk hands back
(cycles, refusals, limits, subclasses) - and must agree: the same tree bytes, buffers
and declared names, or the same refusal.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skjar import _compiled
from skjar.codec import Encoder
from skjar.codec.numpy import NUMBER_SCALARS
from skjar.errors import UnsupportedObjectError
from skjar.format.spec import MAX_NESTING
from test_registry import SAMPLES
from test_speedups import needs_speedups, speedups

pytestmark = needs_speedups


def encoded(obj: Any, compiled: bool) -> tuple[Any, ...]:
    """What one whole encoding of ``obj`` gives: ("ok", tree, buffers, names) or
    ("refused", exception type, message)."""
    saved = _compiled.speedups
    _compiled.speedups = speedups if compiled else None
    try:
        enc = Encoder()
        tree = enc.encode_root(obj)
        names = sorted((name, module, sorted(uses)) for name, (module, uses) in enc.names.items())
        return ("ok", tree, [bytes(b) for b in enc.buffers], names)
    except (UnsupportedObjectError, RuntimeError, RecursionError) as exc:
        return ("refused", type(exc).__name__, str(exc))
    finally:
        _compiled.speedups = saved


def agree(obj: Any) -> tuple[Any, ...]:
    compiled = encoded(obj, True)
    assert compiled == encoded(obj, False)
    return compiled


@pytest.mark.parametrize(("id_", "code", "sample", "trusted"), SAMPLES,
                         ids=[s[0] for s in SAMPLES])
def test_every_registry_sample_encodes_alike(id_: str, code: int, sample: Any,
                                            trusted: Any) -> None:
    assert agree(sample)[0] == "ok"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fitted_models_encode_alike() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = load_iris(return_X_y=True)
    words = [" ".join(f"w{(i * j) % 300}" for j in range(12)) for i in range(150)]
    models = [
        KNeighborsClassifier(3).fit(X, y),
        RandomForestClassifier(5, random_state=0).fit(X, y),
        HistGradientBoostingClassifier(max_iter=5).fit(X, y),
        MLPClassifier((8,), max_iter=20, random_state=0).fit(X, y),
        make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(words, y),
        ColumnTransformer([("s", StandardScaler(), [0, 1]), ("o", OneHotEncoder(), [2])]).fit(
            np.round(X)
        ),
    ]
    for model in models:
        assert agree(model)[0] == "ok"


ATOMS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True), st.text(max_size=6), st.binary(max_size=6),
)
KEYS = st.one_of(st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.integers(-3, 3))


def values() -> st.SearchStrategy[Any]:
    """Nested lists, tuples, str- and mixed-keyed dicts, sets and arrays: small dicts and
    large, all-atom containers and mixed ones - each branch of the walk."""
    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=8),
            st.lists(children, max_size=8).map(tuple),
            st.dictionaries(KEYS, children, max_size=8),
            st.dictionaries(st.sampled_from("abcdef"), children, min_size=4, max_size=6),
            st.frozensets(st.integers(0, 9), max_size=4),
            st.lists(st.floats(allow_nan=False), max_size=20).map(np.array),
        )

    return st.recursive(ATOMS, extend, max_leaves=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values(), shares=st.lists(st.integers(0, 50), max_size=6))
def test_random_values_encode_alike(value: Any, shares: list[int]) -> None:
    # Some parts placed again elsewhere: shared references, numbered in walk order.
    parts: list[Any] = []
    stack = [value]
    while stack and len(parts) < 60:
        v = stack.pop()
        parts.append(v)
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    again = [parts[i % len(parts)] for i in shares]
    assert agree([value, again, {"x": again, "y": value, "z": 1, "w": 2}])[0] == "ok"


def test_key_lists_repeat_and_columns_form_alike() -> None:
    keys = [f"k{i}" for i in range(6)]
    states = [dict(zip(keys, [i, [i], (i,), {"n": i}, None, float(i)])) for i in range(5)]
    vocabulary = {f"term{i}": i for i in range(600)}
    words = [f"w{i}" for i in range(300)]
    assert agree([states, vocabulary, words, words, {"v": vocabulary}])[0] == "ok"


DTYPES = st.one_of(
    hnp.scalar_dtypes(),
    hnp.byte_string_dtypes(max_len=5),
    hnp.unicode_string_dtypes(max_len=5),
    st.sampled_from([np.dtype([("x", "<f4"), ("y", "u1", (2,))]),
                     np.dtype({"names": ["a", "b"], "formats": ["<i2", "<f8"], "offsets": [0, 8],
                               "itemsize": 24}),
                     np.dtype("S0")]),
)


@st.composite
def arrays(draw: Any) -> np.ndarray:
    """Arrays of every fixed-size kind, in C order, Fortran order, strided, reversed or
    transposed, around the inline size limit."""
    dtype = draw(DTYPES)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7))
    arr = draw(hnp.arrays(dtype, shape, elements=st.just(b"") if dtype.itemsize == 0 else None))
    layout = draw(st.sampled_from(["c", "f", "step", "reverse", "transpose"]))
    if layout == "f":
        arr = np.asfortranarray(arr)
    elif layout == "step" and arr.ndim:
        arr = arr[::2]
    elif layout == "reverse" and arr.ndim:
        arr = arr[::-1]
    elif layout == "transpose":
        arr = arr.T
    return arr


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(arrays(), min_size=1, max_size=4), again=st.booleans())
def test_random_arrays_encode_alike(items: list[np.ndarray], again: bool) -> None:
    value = [items, items[0]] if again else items
    assert encoded(value, True) == encoded(value, False)


@pytest.mark.parametrize("kind", sorted(NUMBER_SCALARS, key=lambda t: t.__name__),
                         ids=lambda t: t.__name__)
def test_every_number_scalar_encodes_alike(kind: type) -> None:
    """Each type the compiled walk writes itself: alone, beside an array of its dtype
    (its description then cached), shared, and next to the kinds it leaves to Python."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, np.dtype(kind).itemsize, dtype=np.uint8).tobytes()
    value = np.frombuffer(raw, dtype=kind)[0]  # any bit pattern: NaNs, negative zero
    one = kind(1)
    assert agree(value)[0] == "ok"
    assert agree([one, np.zeros(3, kind), value, value, [one]])[0] == "ok"
    assert agree({"x": one, "text": np.str_("é"), "when": np.datetime64(0, "s")})[0] == "ok"


def test_arrays_share_dtypes_and_structured_descriptions_alike() -> None:
    record = np.dtype([("a", "<i4"), ("b", "<f8")])
    same_record = np.dtype([("a", "<i4"), ("b", "<f8")])  # equal, another object
    arrays = [np.zeros(3, record), np.ones(40, same_record), np.zeros((2, 2), ">f8"),
              np.zeros(50, np.dtype(">f8")), np.array([1, 2], dtype=object),
              np.zeros(3, "M8[D]"), np.arange(64.0).reshape(8, 8).T, np.zeros(0, "S0"),
              np.zeros(3, "V6"), np.zeros(2, "S0")]
    assert agree(arrays * 2)[0] == "ok"


class Holder:
    """A plain instance: its state is encoded through encode_object and encode_dict."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def rebuild(*args: Any) -> Any:
    """A reconstructor: what Rebuilt's reduction calls."""
    return Rebuilt(*args)


class Rebuilt:
    """Reduced to a call of ``rebuild``, with a dict state or none, and maybe items."""

    def __init__(self, *args: Any, state: Any = None, items: Any = None) -> None:
        self.args, self.state, self.items = args, state, items

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (rebuild, self.args, self.state, self.items)


class Shaped:
    """Whatever reduction it is given: the shapes the compiled walk hands to Python."""

    def __init__(self, rv: Any) -> None:
        self.rv = rv

    def __reduce_ex__(self, protocol: Any) -> Any:
        if isinstance(self.rv, Exception):
            raise self.rv
        return self.rv


class Slotted:
    __slots__ = ("__dict__", "a")


def _slotted() -> Any:
    out = []
    for i in range(3):
        s = Slotted()
        s.a, s.b = i, [i]  # type: ignore[attr-defined]
        out.append(s)
    return out


def _chain(depth: int) -> Any:
    """Instances nested deeper than the walk defers them, then referred to again."""
    head = Holder(at=0)
    node = head
    for i in range(1, depth):
        node.next = Holder(at=i)
        node = node.next
    return [head, node, Holder(tail=node)]


def _self_referring() -> Any:
    out = [Holder(a=1) for _ in range(3)]
    for h in out:
        h.me = h
    out[1].other = out[2]
    return out


def _cycle() -> Any:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value, "x"]
    return value


_LAMBDA = lambda: 1  # noqa: E731 - one object, so both sides' messages show one address


class ListSub(list):  # type: ignore[type-arg]
    pass


class Mutating:
    """A state whose reduction changes the dict that holds it, mid-walk."""

    def __init__(self, owner: dict[str, Any]) -> None:
        self.owner = owner

    def __reduce_ex__(self, protocol: Any) -> Any:
        self.owner["added"] = 1
        return (Holder, ())


def _mutating() -> Any:
    owner: dict[str, Any] = {}
    owner["m"] = Mutating(owner)
    owner["after"] = 2
    return owner


@pytest.mark.parametrize(
    "make",
    [
        _cycle,
        lambda: _deep(MAX_NESTING - 2),
        lambda: _deep(MAX_NESTING + 5),
        lambda: [1 << 80, -(1 << 70), [1 << 65] * 3],
        lambda: {(1, 2): "tuple key", 3: [1, 2], None: {"a": 1}},
        lambda: OrderedDict(a=1, b=[2]),
        lambda: ListSub([1, [2]]),
        lambda: [Holder(a=[1, 2], b={"c": np.arange(3)}) for _ in range(3)],
        lambda: [math.nan, -0.0, float("inf")] * 2,
        lambda: {"text": "caf\udce9"},
        lambda: [_LAMBDA],
        _mutating,
        lambda: [_chain(60), _chain(5)],
        _self_referring,
        lambda: [Rebuilt(i, [i], state={"s": i}) for i in range(3)] + [Rebuilt(), Rebuilt(1.5)],
        lambda: [Rebuilt(1, items=iter([i])) for i in range(2)],
        lambda: [Rebuilt(1, state=(None, {"a": 1})) for _ in range(2)],
        lambda: [Rebuilt(1, state={"f": 1}), Rebuilt(1, state={"f": math}), Holder(a=[math])],
        lambda: [Rebuilt(0), Rebuilt(0, 1, [math])],
        _slotted,
        lambda: [Holder(a=1), Shaped(ValueError("no state today"))],
        lambda: [Shaped((Holder, ())), Shaped(("not", "a", "call")), Shaped("rebuild")],
        lambda: [Shaped((Holder, ())), Shaped((rebuild, (1,), None, None, None, print))],
    ],
    ids=["cycle", "deep-ok", "too-deep", "bigints", "mixed-keys", "ordereddict", "list-subclass",
         "instances", "floats", "surrogate", "lambda", "mutating", "deferred-instances",
         "self-referring", "reconstructed", "reconstructed-items", "slots-state",
         "refused-state", "refused-argument", "slots", "reduce-raises", "odd-reductions",
         "state-setter"],
)
def test_cases_handed_back_to_python_agree(make: Any) -> None:
    # A fresh object per side: the mutating one is changed by being encoded.
    assert encoded(make(), True) == encoded(make(), False)


def test_state_for_the_walk_is_checked() -> None:
    enc = Encoder()
    enc._fast = ()  # type: ignore[assignment]
    with pytest.raises(TypeError, match="walk's state"):
        speedups.encode(enc, [1, [2]], None)


def test_a_save_leaves_the_collector_as_it_found_it() -> None:
    import gc

    import skjar

    assert gc.isenabled()
    skjar.dumps({"a": [1, 2]})
    assert gc.isenabled()
    with pytest.raises(UnsupportedObjectError):
        skjar.dumps([_LAMBDA])
    assert gc.isenabled()
    gc.disable()
    try:
        skjar.dumps({"a": [1, 2]})
        assert not gc.isenabled()
    finally:
        gc.enable()
