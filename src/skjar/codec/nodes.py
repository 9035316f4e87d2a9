"""The typed nodes of the object tree: msgpack extension codes and their payloads.

Native msgpack values (nil, bool, int, float, str, bin, array, map) stand for
None, bool, int, float, str, bytes, list and dict. Everything else is an
extension value whose payload is itself a msgpack document; the code says how
to read it. docs/format.md lists every code and its payload.
"""

from __future__ import annotations

from typing import Any

# Names are stable: they are part of the file format.
SHARED_DEF = 1  # [id, value]          first occurrence of an object referenced again later
SHARED_REF = 2  # id                   a later reference to SHARED_DEF id
TUPLE = 3  # [items...]
SET = 4  # [items...]
FROZENSET = 5  # [items...]
BYTEARRAY = 6  # bin
COMPLEX = 7  # [real, imag]
BIGINT = 8  # bin: signed little-endian two's complement
SLICE = 9  # [start, stop, step]
ELLIPSIS = 10  # nil
STRLIST = 11  # [count, buffer]       list of str stored as one NUL-joined UTF-8 buffer
STRDICT = 12  # [count, buffer, values, kind] dict str -> int stored column-wise
ORDEREDDICT = 13  # [[key, value]...]
DEFAULTDICT = 14  # [factory, [[key, value]...]]
RANGE = 15  # [start, stop, step]
PARTIAL = 16  # [func, args, keywords]           functools.partial of a trusted value
ZIPDICT = 17  # [keys, values]  dict(zip(keys, values)): str keys apart, shared when they repeat (1.1)

NDARRAY = 20  # [descr, shape, fortran, buffer]   array data out of line
OBJARRAY = 21  # [shape, fortran, items]          object arrays, items inline
DTYPE = 22  # descr
NPSCALAR = 23  # [descr, bin]
RANDOMSTATE = 24  # [bitgenerator, has_gauss, gauss]  numpy legacy RandomState
BITGENERATOR = 25  # [name, state]                  numpy BitGenerator subclasses
GENERATOR = 26  # [name, bitgenerator]              numpy Generator
MASKEDARRAY = 27  # [data, mask, fill_value, hard_mask]

INSTANCE = 30  # [name, mode, state, items]  cls.__new__(cls), then state
RECONSTRUCT = 31  # [name, args, mode, state, items] trusted callable(*args), then state
REF = 32  # name                                a trusted function/class as a value
NAMEDTUPLE = 33  # [name, items]
NEWOBJ = 34  # name                              an empty instance, given state by the
#                                                  INSTANCE node that holds it (cycles)
#                                                  or by a STATE node (deep chains)
STATE = 35  # [shell, mode, state, kind, items]  state for an empty instance made deeper down
ROOT = 36  # [value, [STATE...]]                 the outermost node when states were deferred

# State modes for INSTANCE / RECONSTRUCT.
STATE_NONE = 0
STATE_DEFAULT = 1  # __setstate__(state) if the class has one, else __dict__.update(state)
STATE_CYTHON = 2  # Cython auto-pickling: __setstate_cython__(state)

# Item kinds for INSTANCE / RECONSTRUCT (list and dict subclasses).
ITEMS_NONE = 0
ITEMS_LIST = 1
ITEMS_DICT = 2


class Node:
    """An extension value under construction: code + payload (packed lazily)."""

    __slots__ = ("code", "payload", "share_id")

    def __init__(self, code: int, payload: Any) -> None:
        self.code = code
        self.payload = payload
        self.share_id: int | None = None


class Shared:
    """A native container that may turn out to be referenced more than once."""

    __slots__ = ("share_id", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.share_id: int | None = None


class SharedRef:
    """A later reference to an object already written."""

    __slots__ = ("target",)

    def __init__(self, target: Node | Shared) -> None:
        self.target = target
