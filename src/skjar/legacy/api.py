"""``convert`` and ``load_legacy``: pickle/joblib files in, objects or jars out.

>>> import skjar.legacy as sc
>>> sc.convert("model.joblib", "model.skjar")                      # doctest: +SKIP
>>> sc.convert("model.pkl", "model.skjar", trusted=["mypkg.MyEstimator"])  # doctest: +SKIP
>>> model = sc.load_legacy("model.pkl")                             # doctest: +SKIP

By default nothing in the file runs: a restricted pickle machine (``vm.py``)
builds only what skjar's own loader could build, and refuses the rest with
``UntrustedTypeError`` naming every offending name. ``unsafe=True`` unpickles
the file for real, for files whose origin you vouch for, after an
``UnsafeLoadWarning``.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from collections.abc import Iterable
from typing import IO, Any

from ..api import dump
from ..errors import InvalidArgumentError, ReadError, SkjarError, UnsafeLoadWarning
from ..trust import TrustedItem, TrustPolicy
from .source import open_legacy
from .vm import run_vm

__all__ = ["convert", "load_legacy"]

PathLike = str | os.PathLike[str]


def load_legacy(
    src: PathLike | IO[bytes],
    *,
    trusted: Iterable[TrustedItem] = (),
    unsafe: bool = False,
) -> Any:
    """Read the object in a pickle or joblib file without running untrusted code.

    ``src`` is a path or a binary file object holding a pickle (protocols
    0-5) or a joblib file (raw, or compressed with zlib, gzip, bz2, lzma, xz
    or lz4, detected from its first bytes; old joblib files with sidecar
    array files are read from a path). ``trusted`` extends skjar's trusted
    names exactly as for :func:`skjar.load`.

    >>> import io, pickle
    >>> from sklearn.linear_model import LinearRegression
    >>> model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])
    >>> restored = load_legacy(io.BytesIO(pickle.dumps(model)))
    >>> restored.predict([[2.0]]).round(6).tolist()
    [4.0]

    Raises:
        UntrustedTypeError: the file names classes or functions that are not
            trusted (for the way it uses them); all of them are listed.
        CorruptFileError: the stream is malformed, truncated, or its state
            fails skjar's meaning checks.
        UnsupportedPickleError: the file uses a pickle feature that cannot be
            reproduced safely (persistent ids, out-of-band buffers...).
    """
    policy = TrustPolicy(trusted)
    if unsafe:
        return _unsafe_load(src)
    with open_legacy(src) as opened:
        return run_vm(opened.open, policy, opened.directory)


def convert(
    src: PathLike | IO[bytes],
    dst: PathLike | IO[bytes],
    *,
    trusted: Iterable[TrustedItem] = (),
    unsafe: bool = False,
    compress: str | tuple[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Convert a pickle or joblib file into a skjar file, without running untrusted code.

    Reads ``src`` with :func:`load_legacy` (same ``trusted``/``unsafe``), then
    writes the object with :func:`skjar.dump` (same ``compress``/``metadata``).
    Nothing is written when reading fails.

    >>> import io, pickle, skjar
    >>> from sklearn.preprocessing import StandardScaler
    >>> scaler = StandardScaler().fit([[1.0], [3.0]])
    >>> out = io.BytesIO()
    >>> convert(io.BytesIO(pickle.dumps(scaler)), out)
    >>> skjar.loads(out.getvalue()).mean_.tolist()
    [2.0]
    """
    obj = load_legacy(src, trusted=trusted, unsafe=unsafe)
    dump(obj, dst, compress=compress, metadata=metadata)


def _unsafe_load(src: PathLike | IO[bytes]) -> Any:
    """Unpickle for real (joblib when it is installed, else pickle), after a loud warning."""
    where = os.fspath(src) if isinstance(src, (str, os.PathLike)) else "the given file object"
    warnings.warn(
        f"unsafe=True: unpickling {where!r} for real. This RUNS WHATEVER CODE THE FILE "
        "CONTAINS, with your permissions. Only do this for a file whose origin you "
        "trust completely (e.g. one you made yourself).",
        UnsafeLoadWarning,
        stacklevel=3,
    )
    try:
        import joblib
    except ImportError:  # pragma: no cover - joblib ships with scikit-learn
        joblib = None
    try:
        if joblib is not None:
            return joblib.load(src)
        if isinstance(src, (str, os.PathLike)):
            with open(src, "rb") as f:
                return pickle.load(f)
        return pickle.load(src)
    except SkjarError:
        raise
    except (OSError, io.UnsupportedOperation) as exc:
        raise InvalidArgumentError(f"cannot read {where!r}: {exc}") from None
    except Exception as exc:
        raise ReadError(f"unpickling {where!r} failed: {type(exc).__name__}: {exc}") from exc
