"""Object graph <-> object tree. Importing this package registers every handler."""

from __future__ import annotations

from . import builtins, numpy, objects, scipy, sklearn  # noqa: F401  (registration)
from .decoder import Decoder
from .encoder import Encoder

__all__ = ["Decoder", "Encoder"]
