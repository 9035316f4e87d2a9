"""Object graph <-> object tree. Importing this package registers every handler."""

from __future__ import annotations

from . import builtins, numpy, objects, scipy, sklearn  # noqa: F401  (registration)
from .decoder import Decoder, walk_static
from .encoder import Encoder

walk_static()  # every handler is registered: the walker's constants are final

__all__ = ["Decoder", "Encoder"]
