"""Seed corpus for the skjar fuzzers: small valid jars of many shapes.

Each seed is a jar written by ``skjar.dumps`` from a small fitted model or a
container of builtins/arrays, chosen so that together they use every node code
and every section kind (inline and out-of-line arrays, STRLIST/STRDICT key
buffers, shared references and cycles, Cython state, compressed and signed
jars). The models are tiny so that one load costs about a millisecond.

    python fuzz/seeds.py [OUT_DIR]        # default: fuzz/corpus/seeds

``build_seeds()`` returns ``{name: jar bytes}`` for in-process use (the
hypothesis driver in tests/fuzz uses it).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "corpus" / "seeds"

# A fixed signing key, so the signed seed is reproducible (it signs nothing real).
_SIGNING_SEED = bytes(range(32))


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X, y


def _models() -> dict[str, Any]:
    """name -> object to dump. Small fits only: seeds should load in ~1 ms."""
    import scipy.sparse as sp
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neighbors import BallTree, KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    X, y = _iris()
    rng = np.random.RandomState(0)
    out: dict[str, Any] = {}

    out["knn_kdtree"] = KNeighborsClassifier(n_neighbors=3, algorithm="kd_tree").fit(X, y)
    out["balltree_minkowski"] = BallTree(X[::3], leaf_size=8, metric="minkowski", p=3)
    out["random_forest"] = RandomForestClassifier(
        n_estimators=3, max_depth=3, random_state=0
    ).fit(X, y)
    out["decision_tree_reg"] = DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, X[:, 0])
    out["gradient_boosting"] = GradientBoostingClassifier(
        n_estimators=2, max_depth=2, random_state=0
    ).fit(X, y)

    # HistGradientBoosting with categorical features (bitsets, bin mapper).
    Xc = np.column_stack([X[:, :2], rng.randint(0, 5, size=len(X)), rng.randint(0, 3, size=len(X))])
    out["hgb_categorical"] = HistGradientBoostingClassifier(
        max_iter=3, max_depth=3, categorical_features=[2, 3], random_state=0
    ).fit(Xc, y)

    # TF-IDF + logistic regression: a vocabulary of >= 256 words is a STRDICT.
    words = [f"w{i}" for i in range(300)]
    docs = [" ".join(words[(i * 7 + k) % 300] for k in range(12)) for i in range(60)]
    labels = np.arange(60) % 2
    out["tfidf_logreg"] = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=200)).fit(
        docs, labels
    )

    out["svc_probability"] = SVC(probability=True, random_state=0).fit(X[::2], y[::2])

    # ColumnTransformer on a mixed object array (numeric scaled, categorical one-hot).
    mixed = np.empty((40, 3), dtype=object)
    mixed[:, 0] = rng.normal(size=40)
    mixed[:, 1] = rng.normal(size=40)
    mixed[:, 2] = np.array(["a", "b", "c", "d"], dtype=object)[rng.randint(0, 4, size=40)]
    ct = ColumnTransformer(
        [
            ("num", StandardScaler(), [0, 1]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [2]),
        ]
    )
    out["column_transformer"] = make_pipeline(ct, LogisticRegression(max_iter=200)).fit(
        mixed, rng.randint(0, 2, size=40)
    )
    out["spline"] = SplineTransformer(n_knots=4, degree=2).fit(X[:, :2])

    # Sparse matrices.
    dense = np.where(rng.uniform(size=(8, 6)) < 0.3, rng.normal(size=(8, 6)), 0.0)
    out["sparse_csr"] = sp.csr_matrix(dense)
    out["sparse_mixed"] = {
        "csc": sp.csc_array(dense),
        "coo": sp.coo_matrix(dense),
        "bsr": sp.bsr_matrix(np.kron(dense[:4, :4], np.ones((2, 2)))),
    }

    # Instances nested deeper than the encoder's deferral depth: ROOT/STATE nodes.
    head = None
    for _ in range(40):
        link = LinearRegression()
        link.next = head  # type: ignore[attr-defined]
        head = link
    out["deep_chain"] = head
    from sklearn.cluster import Birch, KMeans

    out["kmeans"] = KMeans(n_clusters=3, n_init=1, random_state=0).fit(X)
    out["balltree_seuclidean"] = BallTree(X[::4], leaf_size=6, metric="seuclidean",
                                          V=X.var(axis=0))
    out["birch"] = Birch(n_clusters=2, threshold=0.3, branching_factor=4).fit(X[::5, :2])

    # Builtins and arrays of many dtypes.
    shared = [1, 2, 3]
    cyc = LinearRegression()
    cyc.me = cyc  # type: ignore[attr-defined]  # a cycle: NEWOBJ + SHARED_DEF/REF
    out["builtins_and_dtypes"] = {
        "none": None,
        "bools": [True, False],
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**70, -(2**100)],
        "floats": [0.0, -0.0, 1.5, float("inf"), float("nan")],
        "str": "héllo \U0001f600",
        "bytes": b"\x00\x01\xff",
        "bytearray": bytearray(b"abc"),
        "tuple": (1, "a", (2.5, None)),
        "set": {1, 2, "x"},
        "frozenset": frozenset({(1, 2), "y"}),
        "complex": 1 + 2j,
        "slice": slice(1, None, 2),
        "range": range(10, 0, -3),
        "ellipsis": Ellipsis,
        "ordered": OrderedDict([("b", 1), ("a", [2])]),
        "defaultdict": defaultdict(list, {"k": [1]}),
        "partial": functools.partial(max, 3),
        "shared": {"a": shared, "b": shared},
        "tuple_key": {(1, 2): "t", 3: "int"},
        "strlist": [f"s{i}" for i in range(260)],
        "strdict": {f"k{i}": i for i in range(260)},
        "strdict_np": {f"n{i}": np.int32(i) for i in range(256)},
        "f8": np.arange(40.0).reshape(5, 8),
        "f4_big": np.linspace(0, 1, 50, dtype=">f4"),
        "f2": np.ones(3, dtype="<f2"),
        "i1": np.arange(-3, 3, dtype="i1"),
        "u8": np.arange(20, dtype="<u8"),
        "i2_be": np.arange(6, dtype=">i2").reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(60.0).reshape(6, 10)),
        "c16": np.array([1 + 1j, 2 - 3j]),
        "bool": np.array([True, False, True]),
        "str_arr": np.array(["ab", "cde"]),
        "bytes_arr": np.array([b"x", b"yz"]),
        "datetime": np.array(["2020-01-01", "2021-06-30"], dtype="M8[D]"),
        "timedelta": np.array([1, 2], dtype="m8[ns]"),
        "void": np.zeros(2, dtype="V4"),
        "structured": np.zeros(3, dtype=[("x", "<f4"), ("y", "u1", (2,)), ("z", [("a", "<i8")])]),
        "empty": np.zeros((0, 3)),
        "zero_d": np.array(3.5),
        "objarr": np.array(["a", None, 3, (1, 2)], dtype=object),
        "masked": np.ma.MaskedArray([1.0, 2.0, 3.0], mask=[True, False, False]),
        "dtype": np.dtype([("a", "<u4"), ("b", "O")]),
        "scalars": [np.float64(1.5), np.int8(-3), np.bool_(True), np.str_("hé"),
                    np.datetime64("2021-02-03")],
        "random_state": np.random.RandomState(0),
        "generator": np.random.default_rng(5),
        "mt19937": np.random.MT19937(3),
        "ref": np.log1p,
        "cycle": cyc,
    }
    return out


def _signing_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(_SIGNING_SEED)


def build_seeds() -> dict[str, bytes]:
    """{seed name: jar bytes}: every model plain, a few compressed, one signed, two
    chunked."""
    import skjar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = _models()
        seeds = {name: skjar.dumps(obj) for name, obj in models.items()}
        for name in ("random_forest", "tfidf_logreg", "builtins_and_dtypes", "hgb_categorical"):
            seeds[f"{name}.zstd"] = skjar.dumps(models[name], compress="zstd")
            seeds[f"{name}.lz4"] = skjar.dumps(models[name], compress="lz4")
        for name in ("knn_kdtree", "builtins_and_dtypes"):
            seeds[f"{name}.signed"] = skjar.dumps(models[name], sign_with=_signing_key())
        seeds["tiny"] = skjar.dumps({"a": [1, 2]})
        seeds.update(_chunked_seeds())
    return seeds


def _chunked_seeds() -> dict[str, bytes]:
    """Jars with chunked sections (format 1.3), cut at the smallest chunk a reader accepts
    so that they stay small (the writer's own chunk is 4 MiB)."""
    import numpy as np

    import skjar
    from skjar.format import spec, writer

    value = {"floats": np.tile(np.arange(100.0), 400), "ints": np.arange(70_000, dtype=np.int32) % 50}
    default, writer.CHUNK = writer.CHUNK, spec.MIN_CHUNK
    try:
        return {f"chunked.{codec}": skjar.dumps(value, compress=codec) for codec in ("zstd", "lz4")}
    finally:
        writer.CHUNK = default


@functools.lru_cache(maxsize=1)
def cached_seeds() -> dict[str, bytes]:
    return build_seeds()


def write_seeds(out: Path = DEFAULT_OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in build_seeds().items():
        path = out / f"{name}.skjar"
        path.write_bytes(data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else DEFAULT_OUT
    paths = write_seeds(out)
    total = sum(os.path.getsize(p) for p in paths)
    print(f"wrote {len(paths)} seeds ({total} bytes) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
