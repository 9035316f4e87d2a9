"""Safe conversion of legacy pickle and joblib files into skjar files.

>>> import skjar.legacy
>>> skjar.legacy.convert("model.joblib", "model.skjar")     # doctest: +SKIP

Modules, one responsibility each:

- ``api``: :func:`convert` and :func:`load_legacy` (and the ``unsafe=True`` path);
- ``source``: opening files, joblib's compression detection by magic bytes,
  bounded streaming decompression, exact reads that check lengths first;
- ``vm``: the restricted pickle machine (all opcodes of protocols 0-5) and its
  checking pass, which lists every untrusted name before anything is imported;
- ``names``: which names a file may mention (trusted, known-safe, argument-only);
- ``reductions``: the known-safe reductions and their safe equivalents;
- ``arrays``: numpy dtypes, arrays and scalars rebuilt from validated parts;
- ``wrappers``: joblib's array placeholders (NumpyArrayWrapper, old sidecars);
"""

from __future__ import annotations

from ..errors import UnsafeLoadWarning, UnsupportedPickleError
from .api import convert, load_legacy

__all__ = ["UnsafeLoadWarning", "UnsupportedPickleError", "convert", "load_legacy"]
