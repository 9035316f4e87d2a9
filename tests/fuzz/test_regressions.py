"""Regressions found by fuzzing ``loads`` (fuzz/run.py), each with its minimized input.

Inputs are built here from a tiny jar with ``tests/jarcraft.py`` (so they keep
reaching the code they target when the format evolves), and also kept as raw
files in ``tests/fuzz/corpus/`` (``*.bin``), which seed the fuzzer and are
replayed as-is below. Anything that crashed the interpreter runs in a
subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

import jarcraft
import skjar
from jarcraft import Ext
from skjar.codec import nodes
from skjar.format.spec import MAX_NESTING

CORPUS = Path(__file__).resolve().parent / "corpus"
TESTS = Path(__file__).resolve().parents[1]


def _run_in_thread(data: bytes, stack_size: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``skjar.loads(data)`` in a fresh interpreter, on a thread with a small C stack."""
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    code = textwrap.dedent(
        f"""
        import threading, warnings
        import skjar
        warnings.simplefilter("ignore")
        data = open({str(path)!r}, "rb").read()
        out = []
        def run():
            try:
                out.append(repr(skjar.loads(data))[:60])
            except skjar.SkjarError as exc:
                out.append(type(exc).__name__ + ": " + str(exc)[:80])
        threading.stack_size({stack_size})
        t = threading.Thread(target=run)
        t.start()
        t.join()
        print(out[0])
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def nested_tuples(depth: int) -> bytes:
    """A jar whose tree is ``depth`` TUPLE nodes, each holding the next: ((((1,),),),)."""
    jar = jarcraft.decode(skjar.dumps([1]))
    node: object = 1
    for _ in range(depth):
        node = Ext(nodes.TUPLE, [node])
    jar.root = node
    return jarcraft.encode(jar)


# -- 1. C stack exhaustion by nested typed nodes -------------------------------------
# Each typed node's payload was unpacked by a nested msgpack.unpackb call, which
# keeps its ~40 KiB parse stack on the C stack: 100 nested nodes (the format's
# own MAX_NESTING) needed ~4.5 MiB of C stack, so a 600-byte jar killed the
# process with SIGSEGV in a thread with a 4 MiB stack (50 levels: 1 MiB).
# Fix: codec/decoder.py unpacks payloads deeper than a few levels with a
# heap-allocated msgpack.Unpacker.
def test_max_nesting_loads_in_a_thread_with_a_small_stack(tmp_path: Path) -> None:
    data = nested_tuples(MAX_NESTING)  # also tests/fuzz/corpus/nested-tuples-100.bin
    proc = _run_in_thread(data, 1 << 20, tmp_path)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("((((((((((")


def test_nesting_past_the_cap_is_refused_in_a_small_stack(tmp_path: Path) -> None:
    proc = _run_in_thread(nested_tuples(MAX_NESTING + 1), 1 << 20, tmp_path)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert "CorruptFileError" in proc.stdout and "nest" in proc.stdout


class RawExt:
    """A typed node whose payload bytes are given as they are (possibly malformed)."""

    def __init__(self, code: int, raw: bytes) -> None:
        self.code, self.raw = code, raw


def _pack(value: object) -> bytes:
    def default(obj: object) -> object:
        if isinstance(obj, RawExt):
            return msgpack.ExtType(obj.code, obj.raw)
        if isinstance(obj, Ext):
            return msgpack.ExtType(obj.code, _pack(obj.payload))
        raise TypeError(type(obj).__name__)

    return msgpack.packb(value, default=default, use_bin_type=True, strict_types=True)


@pytest.mark.parametrize("depth", [1, 20])
@pytest.mark.parametrize(
    "payload", [b"\x91\x01\x01", b"", b"\x92\x01"], ids=["trailing", "empty", "truncated"]
)
def test_malformed_payloads_are_refused_at_any_depth(depth: int, payload: bytes) -> None:
    """Payloads past the switch to the heap unpacker keep unpackb's checks."""
    jar = jarcraft.decode(skjar.dumps([1]))
    node: object = RawExt(nodes.TUPLE, payload)
    for _ in range(depth):
        node = Ext(nodes.TUPLE, [node])
    jar.tree = _pack(node)
    with pytest.raises(skjar.CorruptFileError, match="malformed"):
        skjar.loads(jarcraft.encode(jar))


# -- 2-4. Ball/KD-tree state that compiled queries read out of bounds ---------------
# Found while fuzzing with the loaded trees exercised (query): the meaning check
# accepted node_bounds of 1 or 2 planes for either tree (a KDTree reads two:
# lower and upper corners), an SEuclidean weight vector of length 0 (its rdist
# reads vec[j] for every j < d), and the haversine metric on 1-d data (it reads
# x[1]). Each query then read past an array: the loaded KDTree answered with
# distances computed from whatever memory followed its bounds. Fix:
# codec/sklearn.py check_binary_tree (planes per tree kind; SEuclidean and
# haversine widths, as their own _validate_data demands).
def _tree_jar(tree: object) -> jarcraft.Jar:
    return jarcraft.decode(skjar.dumps(tree))


def kdtree_one_plane() -> bytes:
    from sklearn.neighbors import KDTree

    X = np.random.RandomState(0).normal(size=(40, 3))
    jar = _tree_jar(KDTree(X, leaf_size=4))
    state = jar.state(jar.objects("sklearn.neighbors._kd_tree.KDTree")[0])
    jar.edit(state[3], lambda bounds: bounds[:1].copy())
    return jarcraft.encode(jar)


def balltree_two_planes() -> bytes:
    from sklearn.neighbors import BallTree

    X = np.random.RandomState(0).normal(size=(40, 3))
    jar = _tree_jar(BallTree(X, leaf_size=4))
    state = jar.state(jar.objects("sklearn.neighbors._ball_tree.BallTree")[0])
    jar.edit(state[3], lambda bounds: np.concatenate([bounds, bounds]))
    return jarcraft.encode(jar)


def seuclidean_without_weights() -> bytes:
    from sklearn.neighbors import BallTree

    X = np.random.RandomState(0).normal(size=(40, 3))
    jar = _tree_jar(BallTree(X, leaf_size=4, metric="seuclidean", V=np.ones(3)))
    metric = jar.objects("sklearn.metrics._dist_metrics.SEuclideanDistance64")[0]
    jar.edit(jar.state(metric)[1], lambda vec: vec[:0].copy())
    return jarcraft.encode(jar)


def haversine_on_1d_data() -> bytes:
    from sklearn.neighbors import BallTree

    X = np.random.RandomState(0).uniform(-1, 1, size=(40, 2))
    jar = _tree_jar(BallTree(X, leaf_size=4, metric="haversine"))
    state = jar.state(jar.objects("sklearn.neighbors._ball_tree.BallTree")[0])
    jar.edit(state[0], lambda data: np.ascontiguousarray(data[:, :1]))
    jar.edit(state[3], lambda bounds: np.ascontiguousarray(bounds[:, :, :1]))
    return jarcraft.encode(jar)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (kdtree_one_plane, "node_bounds shape"),
        (balltree_two_planes, "node_bounds shape"),
        (seuclidean_without_weights, "weight vector"),
        (haversine_on_1d_data, "haversine"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_binary_tree_state_read_out_of_bounds_is_refused(make: Any, message: str) -> None:
    with pytest.raises(skjar.CorruptFileError, match=message):
        skjar.loads(make())


def test_untampered_trees_still_load_and_answer() -> None:
    from sklearn.neighbors import BallTree, KDTree

    X = np.random.RandomState(1).normal(size=(60, 3))
    for tree in (KDTree(X, leaf_size=4), BallTree(X, leaf_size=4),
                 BallTree(X, metric="seuclidean", V=np.arange(1.0, 4.0)),
                 BallTree(X[:, :2], metric="haversine"),
                 KDTree(X, metric="minkowski", p=3)):
        back = skjar.loads(skjar.dumps(tree))
        q = X[:5, : back.data.shape[1]]
        np.testing.assert_array_equal(back.query(q, k=3)[1], tree.query(q, k=3)[1])


# -- 5. k-means thread count ------------------------------------------------------------
# KMeans/MiniBatchKMeans/BisectingKMeans hand the stored _n_threads to an OpenMP
# prange in predict/transform/score: -1 or 2**31 made libgomp exit the process
# ("out of memory allocating 927712937064 bytes"), 100000 made it segfault.
# Fix: codec/sklearn.py check_kmeans refuses values < 1 and caps the rest at the
# loading machine's effective thread count.
def kmeans_with_threads(n_threads: int) -> bytes:
    from sklearn.cluster import KMeans

    X = np.random.RandomState(0).normal(size=(30, 2))
    jar = jarcraft.decode(skjar.dumps(KMeans(n_clusters=2, n_init=1, random_state=0).fit(X)))
    jar.state(jar.objects("sklearn.cluster._kmeans.KMeans")[0])["_n_threads"] = n_threads
    return jarcraft.encode(jar)


@pytest.mark.parametrize("n_threads", [0, -1])
def test_kmeans_thread_count_below_one_is_refused(n_threads: int) -> None:
    with pytest.raises(skjar.CorruptFileError, match="_n_threads"):
        skjar.loads(kmeans_with_threads(n_threads))


@pytest.mark.parametrize("n_threads", [100_000, 2**31])
def test_kmeans_thread_count_is_capped(n_threads: int, tmp_path: Path) -> None:
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    model = skjar.loads(kmeans_with_threads(n_threads))
    assert 1 <= model._n_threads <= _openmp_effective_n_threads()
    # And predicting with it does not take the process down (run apart, in case it would).
    path = tmp_path / "km.bin"
    path.write_bytes(kmeans_with_threads(n_threads))
    code = (
        "import numpy as np, skjar, warnings; warnings.simplefilter('ignore');"
        f"m = skjar.loads(open({str(path)!r}, 'rb').read());"
        "X = np.zeros((64, 2)); print(m.predict(X).sum(), m.transform(X).shape, m.score(X))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


# -- 6. libsvm support vectors -------------------------------------------------------------
# check_libsvm allowed a model with no support-vector rows whatever its kernel
# (meant for precomputed kernels, where libsvm indexes X by support_ instead):
# an rbf SVC with 0 rows and 60 support indices loaded, and predict segfaulted.
# Fix: codec/sklearn.py check_libsvm allows 0 rows only for kernel="precomputed".
def svc_without_support_vector_rows() -> bytes:
    from sklearn.svm import SVC

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(30, 3)), np.arange(30) % 2
    jar = jarcraft.decode(skjar.dumps(SVC().fit(X, y)))
    state = jar.state(jar.objects("sklearn.svm._classes.SVC")[0])
    jar.edit(state["support_vectors_"], lambda sv: sv[:0].copy())
    return jarcraft.encode(jar)


def test_svc_without_support_vector_rows_is_refused() -> None:
    with pytest.raises(skjar.CorruptFileError, match="support vectors"):
        skjar.loads(svc_without_support_vector_rows())


def test_precomputed_kernel_svc_still_loads() -> None:
    from sklearn.svm import SVC

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(30, 3)), np.arange(30) % 2
    K = X @ X.T
    model = SVC(kernel="precomputed").fit(K, y)
    back = skjar.loads(skjar.dumps(model))
    np.testing.assert_array_equal(back.predict(K[:7]), model.predict(K[:7]))


# -- 7. decision trees whose max_depth understates their depth, or that are DAGs ---------
# Tree.decision_path allocates n_samples * (1 + max_depth) entries and writes one
# per node on each sample's path; check_tree only checked that max_depth was an
# int >= 0. A DecisionTreeClassifier of depth 5 stored with max_depth=0 loaded,
# and decision_path(X) wrote past its array: glibc aborted ("malloc assertion
# failure in sysmalloc"). Likewise partial dependence ("recursion") pushes
# children on a stack of node_count entries, which a node with two parents
# overflows. Fix: codec/sklearn.py check_tree (_depth_ok: one parent per node,
# depth <= max_depth).
def tree_with_max_depth(max_depth: int) -> bytes:
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(80, 3)), np.arange(80) % 3
    jar = jarcraft.decode(skjar.dumps(DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y)))
    jar.state(jar.objects("sklearn.tree._tree.Tree")[0])["max_depth"] = max_depth
    return jarcraft.encode(jar)


def tree_with_shared_child() -> bytes:
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(80, 3)), np.arange(80) % 3
    jar = jarcraft.decode(skjar.dumps(DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y)))
    state = jar.state(jar.objects("sklearn.tree._tree.Tree")[0])

    def share(nodes: np.ndarray) -> None:
        # Node 0's right subtree is replaced by its left child: one node, two parents.
        nodes["right_child"][0] = nodes["left_child"][0]

    jar.edit(state["nodes"], share)
    return jarcraft.encode(jar)


def test_tree_max_depth_below_its_depth_is_refused() -> None:
    with pytest.raises(skjar.CorruptFileError, match="max_depth 0 is below"):
        skjar.loads(tree_with_max_depth(0))
    with pytest.raises(skjar.CorruptFileError, match="max_depth 4 is below"):
        skjar.loads(tree_with_max_depth(4))
    assert skjar.loads(tree_with_max_depth(5)).tree_.max_depth == 5
    # An overstatement is safe up to what the nodes could reach; past it, refused: a
    # max_depth of 2**63 - 1 wrapped decision_path's n_samples * (1 + max_depth)
    # allocation to a few entries (heap overflow, found while fuzzing, 2026-12-05).
    nodes = skjar.loads(tree_with_max_depth(5)).tree_.node_count
    assert skjar.loads(tree_with_max_depth(nodes - 1)).tree_.max_depth == nodes - 1
    for too_deep in (nodes, 2**63 - 1):
        with pytest.raises(skjar.CorruptFileError, match=f"max_depth {too_deep} is more than"):
            skjar.loads(tree_with_max_depth(too_deep))


def test_tree_node_with_two_parents_is_refused() -> None:
    with pytest.raises(skjar.CorruptFileError, match="two parents"):
        skjar.loads(tree_with_shared_child())


def test_tree_depth_check_accepts_real_trees() -> None:
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 4))
    for model in (DecisionTreeRegressor(random_state=0).fit(X, X[:, 0]),
                  DecisionTreeRegressor(max_leaf_nodes=7, random_state=0).fit(X, X[:, 1]),
                  RandomForestClassifier(n_estimators=5, random_state=0).fit(X, X[:, 0] > 0),
                  ExtraTreesRegressor(n_estimators=5, random_state=0).fit(X, X[:, 2])):
        back = skjar.loads(skjar.dumps(model))
        np.testing.assert_array_equal(back.decision_path(X)[0].toarray(),
                                      model.decision_path(X)[0].toarray())


# -- replay of every committed input ----------------------------------------------------
def test_corpus_inputs_are_refused_or_loaded_without_crashing() -> None:
    """Every ``corpus/*.bin`` through ``loads`` in one fresh interpreter, on a 1 MiB thread."""
    files = sorted(CORPUS.glob("*.bin"))
    assert files
    code = textwrap.dedent(
        f"""
        import sys, threading, warnings
        import skjar
        warnings.simplefilter("ignore")
        def run(path):
            data = open(path, "rb").read()
            print(path, "...", end=" ", flush=True)
            try:
                skjar.loads(data)
                print("loaded", flush=True)
            except skjar.SkjarError as exc:
                print(type(exc).__name__, flush=True)
        threading.stack_size(1 << 20)
        for path in {[str(f) for f in files]!r}:
            t = threading.Thread(target=run, args=(path,))
            t.start()
            t.join()
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.stdout.count("\n") == len(files), proc.stdout
