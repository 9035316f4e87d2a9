"""Write the golden jars of the current format version into ``tests/golden/v<major>.<minor>/``.

Golden files are frozen once committed: ``tests/test_format.py`` checks that every
version's files keep loading, forever, to the values recorded next to them in
``expected.json``. So this script refuses to overwrite an existing folder; run it
only when the format version changes (a new folder appears beside the old ones)::

    python tests/golden/make_golden.py            # writes tests/golden/v1.3/ if absent
    python tests/golden/make_golden.py --force    # rewrite (only before a version ships)
    python tests/golden/make_golden.py --writer   # new writer reference, same format version

A jar is stamped with the oldest version that can hold it (docs/format.md 2.1), so a
version's folder holds the files that use what it added: 1.0 and 1.1 plain files,
1.2 compressed ones (packs, which only compressed files have), written ``name-zstd``
and ``name-lz4``, 1.3 compressed ones with arrays larger than a chunk. A file that the writer stamps with an older version is not kept
there (``logreg-zstd.skjar``: its one small array makes no pack).

A writer may improve how it encodes a value without changing the format (the
files stay readable by every reader of that version: say, storing a
vocabulary's column numbers in 4 bytes instead of 8). Such a change is made on
purpose with ``--writer``, which writes ``v<version>/writer/builtins.skjar``: the
bytes the current writer must produce (tests/test_format.py). The frozen
``builtins.skjar`` beside it, from the version's first writer, keeps loading.

The files:

- ``builtins[-codec].skjar``: :func:`builtins_value`, a deterministic mix of builtin values
  and arrays that touches most node codes (no scikit-learn, so its bytes do not
  depend on the estimators' library version).
- ``logreg[-codec].skjar``: a LogisticRegression fitted on iris.
- ``tree[-codec].skjar``: a depth-3 DecisionTreeClassifier fitted on iris.
- ``chunked-<codec>.skjar`` (1.3): :func:`chunked_value`, arrays stored in chunks.
- ``knn-<codec>.skjar`` (1.3): a brute-force KNeighborsClassifier fitted on iris repeated
  900 times.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def builtins_value() -> dict[str, Any]:
    """The deterministic object stored in ``builtins.skjar`` (never change it)."""
    shared = [1, "shared"]
    return {
        "none": None,
        "bools": [True, False],
        "ints": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**100, -(2**70)],
        "floats": [0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 5e-324],
        "complex": [1 + 2j, complex(-0.0, float("nan"))],
        "text": ["", "plain", "\u00e9\u2603\U0001f600", "nul\x00inside"],
        "bytes": [b"", b"\x00\xff", bytearray(b"mutable")],
        "tuple": (1, (2, (3,)), ()),
        "set": {1, 2, 3},
        # (no sets of str: their order, and so the bytes, changes with PYTHONHASHSEED)
        "frozenset": frozenset({(1, 2), 3}),
        "int keys": {1: "one", -2: "minus two", (3, 4): "tuple key"},
        "ordered": OrderedDict([("z", 1), ("a", 2)]),
        "slice/range": [slice(1, None, 2), range(10, 0, -3), Ellipsis],
        "shared": [shared, shared],
        "strings": [f"word {i} \u00e9" for i in range(300)],
        "vocabulary": {f"token{i}": i for i in range(300)},
        "small array": np.arange(6, dtype="<i4").reshape(2, 3),
        "large array": np.linspace(0.0, 1.0, 200).reshape(20, 10),
        "fortran": np.asfortranarray(np.arange(60.0).reshape(6, 10)),
        "big-endian": np.arange(40, dtype=">u8"),
        "strings array": np.array(["a", "bc", "\u2603"], dtype="<U2"),
        "bytes array": np.array([b"x", b"yz"], dtype="S3"),
        "datetime": np.array(["2020-01-02T03:04", "NaT"], dtype="M8[m]"),
        "structured": np.array(
            [(1, 2.5, b"ab"), (-3, np.nan, b"")],
            dtype=[("i", "<i2"), ("f", ">f8"), ("s", "S2")],
        ),
        "objects": np.array([1, "two", None, [3]], dtype=object),
        "scalars": [np.float32(1.25), np.int8(-7), np.bool_(True), np.str_("s"), np.float64("nan")],
        "dtype": np.dtype([("a", "<f4"), ("b", "u1", (2,))]),
        "function": np.log1p,
    }


def _models() -> dict[str, Any]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_iris(return_X_y=True)
    return {
        "logreg": LogisticRegression(max_iter=1000).fit(X, y),
        "tree": DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y),
    }


def chunked_value() -> dict[str, Any]:
    """The deterministic object stored in ``chunked-<codec>.skjar`` (1.3): arrays larger
    than the writer's 4 MiB chunk, and small ones that make a pack (never change it)."""
    return {
        "floats": np.tile(np.linspace(0.0, 1.0, 4096), 160),  # 5 MiB: two chunks
        "ints": np.tile(np.arange(1000, dtype=np.int32), 3000).reshape(1000, 3000),  # 12 MB
        "fortran": np.asfortranarray(np.tile(np.arange(1000.0), 600).reshape(600, 1000)),
        "small": [np.arange(100, dtype=np.int16), np.ones(300, dtype=np.float32)],
        "text": "chunked",
    }


def _chunked_models() -> dict[str, Any]:
    """A model whose training data is larger than a chunk: iris repeated 900 times (brute
    force: a KD tree's index array would not compress)."""
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier

    X, y = load_iris(return_X_y=True)
    knn = KNeighborsClassifier(3, algorithm="brute")
    return {"knn": knn.fit(np.tile(X, (900, 1)), np.tile(y, 900))}


# What each version's folder holds: (file suffix, compress=) pairs.
VARIANTS = {
    (1, 0): [("", None)],
    (1, 1): [("", None)],
    (1, 2): [("-zstd", "zstd"), ("-lz4", "lz4")],
    (1, 3): [("-zstd", "zstd"), ("-lz4", "lz4")],
}
# The values that are not models, by file name: compared whole by tests/test_format.py.
VALUES = {"builtins": builtins_value, "chunked": chunked_value}


def _values(version: tuple[int, int]) -> dict[str, Any]:
    """What a version's folder stores: from 1.3 on, what uses chunks."""
    if version >= (1, 3):
        return {"chunked": chunked_value(), **_chunked_models()}
    return {"builtins": builtins_value(), **_models()}


def main(argv: list[str] | None = None) -> int:
    import skjar
    from skjar.format.spec import FORMAT_MAJOR, FORMAT_MINOR, WITHOUT_PACKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite an existing version")
    parser.add_argument(
        "--writer", action="store_true", help="only write the current writer's reference"
    )
    args = parser.parse_args(argv)
    version = f"{FORMAT_MAJOR}.{FORMAT_MINOR}"
    folder = HERE / f"v{version}"
    if args.writer:  # the plain writer's reference: plain files are stamped WITHOUT_PACKS
        folder = HERE / "v{}.{}".format(*WITHOUT_PACKS)
        (folder / "writer").mkdir(parents=True, exist_ok=True)
        skjar.dump(builtins_value(), folder / "writer" / "builtins.skjar")
        print(f"wrote {folder / 'writer' / 'builtins.skjar'}")
        return 0
    if folder.exists() and not args.force:
        print(f"{folder} exists: golden files are frozen (use --force before a release only)")
        return 1
    folder.mkdir(exist_ok=True)

    from sklearn.datasets import load_iris

    X, _ = load_iris(return_X_y=True)
    expected: dict[str, Any] = {}
    for suffix, compress in VARIANTS[(FORMAT_MAJOR, FORMAT_MINOR)]:
        for name, value in _values((FORMAT_MAJOR, FORMAT_MINOR)).items():
            path = folder / f"{name}{suffix}.skjar"
            metadata = {} if name in VALUES else {"golden": path.name}
            skjar.dump(value, path, compress=compress, metadata=metadata)
            if skjar.inspect(path).format_version != version:
                print(f"{path.name}: stamped with an older version, not kept")
                path.unlink()
            elif name not in VALUES:
                expected[path.name] = {
                    "type": f"{type(value).__module__}.{type(value).__qualname__}",
                    "predict": value.predict(X).tolist(),
                    "predict_proba": value.predict_proba(X).tolist(),
                }
    (folder / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {sorted(p.name for p in folder.iterdir())} to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
