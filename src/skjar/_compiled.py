"""The optional compiled helpers (``_speedups.c``), or ``None``.

They are built by ``pip install`` when a C compiler is at hand. Each is a twin
of a Python loop that stays the reference: a helper answers "fine" (or returns
the built object) or "not fine", and on "not fine" the caller runs the Python
twin, which raises the precise error. ``SKJAR_PURE_PYTHON=1`` in the environment
turns them off (to compare, or to rule them out).
"""

from __future__ import annotations

import os
from types import ModuleType


def _load() -> ModuleType | None:
    if os.environ.get("SKJAR_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


speedups: ModuleType | None = _load()
