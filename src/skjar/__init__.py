"""skjar: save trained scikit-learn models and get them back anywhere, safely and fast.

>>> import skjar
>>> skjar.dump(model, "model.skjar")          # doctest: +SKIP
>>> model = skjar.load("model.skjar")         # doctest: +SKIP
>>> skjar.inspect("model.skjar").schema       # doctest: +SKIP

Loading never runs code outside an explicit trusted set (see docs/security.md).
"""

from __future__ import annotations

from ._version import __version__
from .api import Info, NameInfo, Verified, audit, dump, dumps, inspect, load, loads, sign, verify
from .errors import (
    CorruptFileError,
    FormatVersionError,
    InvalidArgumentError,
    NotASkjarFileError,
    ReadError,
    SignatureError,
    SkjarError,
    SkjarWarning,
    TrustSpecError,
    UnsafeLoadWarning,
    UnsupportedObjectError,
    UnsupportedPickleError,
    UntrustedTypeError,
    VersionMismatchError,
    VersionSkewWarning,
)
from .legacy import convert, load_legacy
from .signing import generate_key, load_private_key, load_public_key, save_key
from .trust import is_trusted

__all__ = [
    "CorruptFileError",
    "FormatVersionError",
    "Info",
    "InvalidArgumentError",
    "NameInfo",
    "NotASkjarFileError",
    "ReadError",
    "SignatureError",
    "SkjarError",
    "SkjarWarning",
    "TrustSpecError",
    "UnsafeLoadWarning",
    "UnsupportedObjectError",
    "UnsupportedPickleError",
    "UntrustedTypeError",
    "Verified",
    "VersionMismatchError",
    "VersionSkewWarning",
    "__version__",
    "audit",
    "convert",
    "dump",
    "dumps",
    "generate_key",
    "inspect",
    "is_trusted",
    "load",
    "load_legacy",
    "load_private_key",
    "load_public_key",
    "loads",
    "save_key",
    "sign",
    "verify",
]
