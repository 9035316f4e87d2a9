"""skjar: save trained scikit-learn models and get them back anywhere, safely and fast.

>>> import skjar
>>> skjar.dump(model, "model.skjar")          # doctest: +SKIP
>>> model = skjar.load("model.skjar")         # doctest: +SKIP
>>> skjar.inspect("model.skjar").schema       # doctest: +SKIP

Loading never runs code outside an explicit trusted set (see docs/security.md).
"""

from __future__ import annotations

from ._version import __version__
from .api import Info, NameInfo, audit, dump, dumps, inspect, load, loads
from .errors import (
    CorruptFileError,
    FormatVersionError,
    InvalidArgumentError,
    NotASkjarFileError,
    ReadError,
    SkjarError,
    SkjarWarning,
    TrustSpecError,
    UnsupportedObjectError,
    UntrustedTypeError,
    VersionMismatchError,
    VersionSkewWarning,
)
from .trust import is_trusted

__all__ = [
    "CorruptFileError",
    "FormatVersionError",
    "Info",
    "InvalidArgumentError",
    "NameInfo",
    "NotASkjarFileError",
    "ReadError",
    "SkjarError",
    "SkjarWarning",
    "TrustSpecError",
    "UnsupportedObjectError",
    "UntrustedTypeError",
    "VersionMismatchError",
    "VersionSkewWarning",
    "__version__",
    "audit",
    "dump",
    "dumps",
    "inspect",
    "is_trusted",
    "load",
    "loads",
]
