"""The compiled tree packer (src/skjar/_pack.c) against its Python twin (msgpack with
Encoder._pack_default).

Every dump with the compiled helpers packs its tree in C; the whole suite writes on that
path. Here both pack the same trees - every registry sample, the models of the
benchmark's kinds, random trees, and trees at each limit - and must agree: the same
bytes, or both refuse with the same message.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skjar import _compiled
from skjar.codec import nodes
from skjar.codec.encoder import _CLASSES, Encoder
from skjar.codec.nodes import Node, Shared, SharedRef
from skjar.errors import UnsupportedObjectError
from skjar.format.spec import MAX_NESTING
from test_registry import SAMPLES
from test_speedups import needs_speedups, speedups

pytestmark = needs_speedups


def python_pack(tree: Any) -> bytes:
    return msgpack.packb(tree, default=Encoder()._pack_default, use_bin_type=True,
                         strict_types=True)


def encoded(obj: Any, compiled: bool) -> tuple[str, Any]:
    """("ok", tree bytes) or ("refused", message) from one whole encoding of ``obj``."""
    saved = _compiled.speedups
    _compiled.speedups = speedups if compiled else None
    try:
        return ("ok", Encoder().encode_root(obj))
    except UnsupportedObjectError as exc:
        return ("refused", str(exc))
    finally:
        _compiled.speedups = saved


@pytest.mark.parametrize(("id_", "code", "sample", "trusted"), SAMPLES,
                         ids=[s[0] for s in SAMPLES])
def test_every_registry_sample_packs_to_the_same_bytes(id_: str, code: int, sample: Any,
                                                       trusted: Any) -> None:
    compiled = encoded(sample, True)
    assert compiled[0] == "ok"
    assert compiled == encoded(sample, False)


def test_fitted_models_pack_to_the_same_bytes() -> None:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    X, y = load_iris(return_X_y=True)
    models = [
        KNeighborsClassifier(3).fit(X, y),
        RandomForestClassifier(5, random_state=0).fit(X, y),
        HistGradientBoostingClassifier(max_iter=5).fit(X, y),
        make_pipeline(StandardScaler(), SVC(probability=True, random_state=0)).fit(X, y),
    ]
    for model in models:
        packed = encoded(model, True)
        assert packed[0] == "ok" and packed == encoded(model, False)


# Native values msgpack writes, at each of its size boundaries.
INTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
        -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]
ATOMS = st.one_of(
    st.none(), st.booleans(), st.sampled_from(INTS),
    st.integers(min_value=-2**63, max_value=2**64 - 1),
    st.floats(allow_nan=True), st.text(max_size=40), st.binary(max_size=40),
    st.sampled_from(["x" * n for n in (31, 32, 255, 256, 65535, 65536)]),
    st.sampled_from([b"y" * n for n in (255, 256, 65535, 65536)]),
)


def trees() -> st.SearchStrategy[Any]:
    """Trees as the encoder builds them: natives, typed nodes, shared containers and
    references to either (a reference's target is given a share id, as share() does)."""
    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        def shared_ref(target: Any) -> Any:
            target.share_id = 7
            return SharedRef(target)

        def node(code: int, payload: Any, share: bool) -> Node:
            out = Node(code, payload)
            out.share_id = 3 if share else None
            return out

        def shared(value: Any, share: bool) -> Shared:
            out = Shared(value)
            out.share_id = 5 if share else None
            return out

        containers = st.one_of(
            st.lists(children, max_size=20),
            st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(INTS)), children, max_size=20),
        )
        typed = st.one_of(
            st.builds(node, st.sampled_from([0, 1, 20, 30, 127]), children, st.booleans()),
            st.builds(shared, containers, st.booleans()),
        )
        return st.one_of(containers, typed, typed.map(shared_ref))

    return st.recursive(ATOMS, extend, max_leaves=60)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees())
def test_random_trees_pack_to_the_same_bytes(tree: Any) -> None:
    assert speedups.pack_tree(tree, _CLASSES, MAX_NESTING) == python_pack(tree)


def test_extension_lengths_at_every_header_form() -> None:
    # Payload lengths that pick fixext 1/2/4/8/16, ext 8, ext 16 and ext 32.
    for n in (0, 1, 2, 3, 4, 7, 8, 14, 15, 16, 17, 200, 253, 254, 255, 256, 65532, 65533,
              65535, 65536, 70000):
        payload = b"z" * n if n < 2 else b"z" * (n - 2)  # bin 8 header: 2 bytes
        tree = [Node(20, payload), Node(21, [payload, Node(22, payload)])]
        assert speedups.pack_tree(tree, _CLASSES, MAX_NESTING) == python_pack(tree), n


def nested(depth: int, share_every: int = 0) -> Node:
    tree: Any = None
    for i in range(depth):
        tree = Node(3, [tree])
        if share_every and i % share_every == 0:
            tree.share_id = i
    return tree


@pytest.mark.parametrize(
    "tree",
    [
        nested(MAX_NESTING),
        nested(MAX_NESTING + 1),
        nested(MAX_NESTING - 1, share_every=1),  # each SHARED_DEF wrapper counts a level
        nested(MAX_NESTING // 2, share_every=1),
        nested(MAX_NESTING // 2 + 1, share_every=1),
        [1, "a\ud800b"],  # a lone surrogate: not UTF-8
        {"k": 1.5, "v": __import__("numpy").float64(2.0)},  # a float subclass
        (1, 2),  # strict types: a tuple is not a list
        Node(200, 1),  # an extension code out of range
        Shared(Node(3, [])),  # the hook's result is not handed to it again
        Node(3, [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]] * 30),
    ],
    ids=["at-limit", "over-limit", "shared-over-limit", "shared-at-half", "shared-over-half",
         "surrogate", "float64", "tuple", "code-200", "shared-node", "deep-lists"],
)
def test_trees_at_the_limits_agree(tree: Any) -> None:
    """The compiled packer declines (None) every tree the Python packer refuses, which the
    encoder then refuses through it; it may decline more (an extension code no node has),
    but what it packs, it packs to the same bytes."""
    try:
        expected: Any = python_pack(tree)
    except (UnsupportedObjectError, TypeError, ValueError, UnicodeEncodeError, OverflowError):
        expected = None
    packed = speedups.pack_tree(tree, _CLASSES, MAX_NESTING)
    assert packed == expected or (packed is None and type(tree) is Node and tree.code > 127)


def test_containers_nested_past_msgpacks_limit_are_declined() -> None:
    """msgpack refuses lists nested more than 511 deep in one pack (1.1; 1.2: 1024): the
    compiled packer declines past the lower limit, leaving the answer to the installed one."""
    deep: Any = []
    for _ in range(511):
        deep = [deep]
    assert speedups.pack_tree(deep, _CLASSES, MAX_NESTING) == python_pack(deep)
    assert speedups.pack_tree([deep], _CLASSES, MAX_NESTING) is None


def test_refusals_read_the_same_either_way() -> None:
    lone = {"name": "caf\udce9"}
    compiled = encoded(lone, True)
    assert compiled[0] == "refused" and "lone surrogate" in compiled[1]
    assert compiled == encoded(lone, False)


def test_a_node_code_is_a_signed_byte_on_both_sides() -> None:
    assert max(v for k, v in vars(nodes).items() if k.isupper() and isinstance(v, int)) < 128
