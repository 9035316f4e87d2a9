"""The handler registry: which function writes a type, which reads a node code.

Each type-family module (builtins, numpy, objects) registers its handlers at
import; ``codec/__init__`` imports them all. Tests iterate ``DECODERS`` and
``EXAMPLES`` so a new handler is exercised automatically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _compiled

if TYPE_CHECKING:
    from .decoder import Decoder
    from .encoder import Encoder, Path

EncodeFn = Callable[["Encoder", Any, "Path"], Any]
DecodeFn = Callable[["Decoder", Any], Any]

# Exact type -> encoder. Subclasses never match: they go through the generic
# object path and need trust of their own.
ENCODERS: dict[type, EncodeFn] = {}
# Node code -> decoder.
DECODERS: dict[int, DecodeFn] = {}
# Node code -> sample objects whose encoding uses it (for registry-wide tests).
EXAMPLES: dict[int, Callable[[], list[Any]]] = {}
# Meaning checks, by exact name of the class (INSTANCE) or callable (RECONSTRUCT):
# fn(args, state) raises CorruptFileError before state that compiled code will
# index into is handed over. args is () for INSTANCE.
VALIDATORS: dict[str, Callable[[Any, Any], None]] = {}
# The arrays a class's state holds by reference and its compiled code indexes with,
# by exact name: fn(args, state) -> those arrays. They must not be shared with any
# other part of the model (checked at the end of the load, Decoder.decode_root):
# another object's in-place update would change them after their check
# (docs/security.md, 12.13).
OWNED_INDEXES: dict[str, Callable[[Any, Any], tuple[Any, ...]]] = {}
# Exact types whose identity is preserved (shared references stay shared).
MEMOIZED: set[type] = set()
# The steps the compiled walker takes from the INSTANCE and RECONSTRUCT handlers to
# build those nodes itself ("plan", "setter", "validate", "finish"; codec/objects.py).
OBJECT_STEPS: dict[str, Callable[..., Any]] = {}


def encodes(*types: type, memoize: bool = False) -> Callable[[EncodeFn], EncodeFn]:
    """Register an encoder for exact ``types``."""

    def register(fn: EncodeFn) -> EncodeFn:
        for t in types:
            ENCODERS[t] = fn
            if memoize:
                MEMOIZED.add(t)
        return fn

    return register


def decodes(
    code: int, examples: Callable[[], list[Any]] | None = None
) -> Callable[[DecodeFn], DecodeFn]:
    """Register the decoder of node ``code`` (and sample objects that produce it)."""

    def register(fn: DecodeFn) -> DecodeFn:
        if code in DECODERS:
            raise RuntimeError(f"node code {code} registered twice")
        DECODERS[code] = fn
        if examples is not None:
            EXAMPLES[code] = examples
        return fn

    return register


def validates(
    *names: str,
    twin: str | None = None,
    extra: tuple[Any, ...] | Callable[[], tuple[Any, ...]] = (),
    with_args: bool = False,
) -> Callable[[Callable[[Any, Any], None]], Callable[[Any, Any], None]]:
    """Register a meaning check for the exact ``names``.

    ``twin``: the compiled whole-state check that ``fn`` tries first, as
    ``_compiled.speedups.<twin>(state, *extra)`` (``(args, state, *extra)`` with
    ``with_args``), saying True for a state it finds sound; ``extra`` may be a function
    giving that tuple, called once, on first use. With the compiled helpers the registry
    then holds a ``CompiledCheck``, which runs the twin with no Python step and ``fn``,
    the Python check alone, only when the twin does not say True (a fresh process's first
    call of a Python function costs page faults, and a forest's checks were a Python call
    per tree). The module-level name stays ``fn``.
    """

    def register(fn: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        make = getattr(_compiled.speedups, "CompiledCheck", None) if twin else None
        check = fn if make is None else make(_compiled, twin, extra, fn, with_args)
        for name in names:
            VALIDATORS[name] = check
        return fn

    return register


def owns_indexes(
    *names: str,
) -> Callable[[Callable[[Any, Any], tuple[Any, ...]]], Callable[[Any, Any], tuple[Any, ...]]]:
    """Register which arrays of the exact ``names``' state must be the object's own."""

    def register(fn: Callable[[Any, Any], tuple[Any, ...]]) -> Callable[[Any, Any], tuple[Any, ...]]:
        for name in names:
            OWNED_INDEXES[name] = fn
        return fn

    return register
