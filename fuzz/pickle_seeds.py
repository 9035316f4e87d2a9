"""Seed corpus for the converter fuzzer: pickles and joblib files of the fuzz models.

The same small models and values as ``fuzz/seeds.py``, written by ``pickle``
(protocols 0, 2, 4 and 5) and by ``joblib`` (raw, and zlib-compressed), so
that mutants start from every reduction the converter knows (numpy's
``_reconstruct`` and ``_frombuffer``, joblib's array wrappers, Cython
``__pyx_unpickle_*``, the random-state constructors, ``copyreg``).

    python fuzz/pickle_seeds.py [OUT_DIR]      # default: fuzz/corpus/pickle-seeds
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "corpus" / "pickle-seeds"

# Protocol 0 is text and slow to parse: only for the small values.
_PROTOCOL_0 = ("builtins_and_dtypes", "knn_kdtree", "sparse_csr", "decision_tree_reg")
_JOBLIB = ("knn_kdtree", "random_forest", "builtins_and_dtypes", "hgb_categorical",
           "tfidf_logreg", "svc_probability")


def build_seeds() -> dict[str, bytes]:
    """{seed name: file bytes}."""
    import joblib
    from seeds import _models

    out: dict[str, bytes] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = _models()
        for name, obj in models.items():
            for protocol in (2, 4, 5):
                out[f"{name}.p{protocol}"] = pickle.dumps(obj, protocol=protocol)
            if name in _PROTOCOL_0:
                out[f"{name}.p0"] = pickle.dumps(obj, protocol=0)
            if name in _JOBLIB:
                for compress in (0, 3):
                    buf = io.BytesIO()
                    joblib.dump(obj, buf, compress=compress)
                    out[f"{name}.joblib{'-z' if compress else ''}"] = buf.getvalue()
    return out


@functools.lru_cache(maxsize=1)
def cached_seeds() -> dict[str, bytes]:
    return build_seeds()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    seeds = build_seeds()
    for name, data in seeds.items():
        (out / f"{name}.bin").write_bytes(data)
    total = sum(os.path.getsize(out / f"{n}.bin") for n in seeds)
    print(f"wrote {len(seeds)} seeds ({total} bytes) to {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
