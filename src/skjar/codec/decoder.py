"""Object tree -> object graph, building only what the header declared and trust allows.

Decoding is one pass: msgpack reads the tree and calls ``_ext_hook`` for each
typed node, innermost first, so every node's children exist before it is built.
Names were checked against the trust policy from the header before this runs;
each node re-checks that its name and use are declared there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from ..errors import CorruptFileError, SkjarError
from ..format.spec import MAX_NESTING, MAX_NODES
from ..trust import TrustPolicy
from .nodes import ROOT, SHARED_DEF, SHARED_REF
from .registry import DECODERS

# Typed-node depth up to which payloads are unpacked with msgpack.unpackb (fast,
# but ~40 KiB of C stack per level); deeper ones use a heap-allocated Unpacker.
_STACK_DEPTH = 8


class Decoder:
    """Per-load decoding state: buffers, declared names, trust, shared objects."""

    def __init__(
        self,
        buffers: list[np.ndarray],
        declared: dict[str, tuple[str, frozenset[str]]],
        policy: TrustPolicy,
    ) -> None:
        self._buffers: list[np.ndarray | None] = list(buffers)
        self._declared = declared
        self._policy = policy
        self._shared: dict[int, Any] = {}
        # Empty instances awaiting their state: id -> (object, name); holding the
        # object keeps its id from being reused.
        self.shells: dict[int, tuple[Any, str]] = {}
        self.depth = 0
        self.in_root = False
        self._nodes = 0

    def decode_root(self, tree: bytes | memoryview) -> Any:
        try:
            obj = self.unpack(tree)
            if any(marker in tree for marker in _TIMESTAMP_MARKERS):
                _refuse_timestamps(obj)
        except SkjarError:
            raise
        except RecursionError:
            raise CorruptFileError("the object tree is nested too deeply") from None
        except MemoryError:
            raise CorruptFileError(
                "the object tree asks for more memory than is available"
            ) from None
        except Exception as exc:
            raise CorruptFileError(
                f"the object tree is malformed: {type(exc).__name__}: {exc}"
            ) from None
        if self.shells:
            raise CorruptFileError("an instance was created but never given its state")
        unused = [i for i, b in enumerate(self._buffers) if b is not None]
        if unused:
            raise CorruptFileError(f"buffers {unused[:10]} are declared but never used by the tree")
        return obj

    def unpack(self, data: bytes | memoryview) -> Any:
        if self.depth < _STACK_DEPTH:
            return msgpack.unpackb(
                data,
                ext_hook=self._ext_hook,
                object_pairs_hook=safe_dict,
                strict_map_key=False,
                raw=False,
                use_list=True,
            )
        # Deeper payloads: msgpack.unpackb keeps its parse stack (~40 KiB) on the
        # C stack, and each typed node's payload is unpacked by a nested call, so
        # MAX_NESTING levels took ~4.5 MiB of C stack: a 600-byte jar nesting 100
        # TUPLE nodes crashed the interpreter (SIGSEGV) in a thread with a 4 MiB
        # stack, 50 levels with 1 MiB (found by fuzzing). An Unpacker keeps that
        # stack on the heap; it is slower to set up, so it is used past a few levels.
        n = len(data)
        unpacker = msgpack.Unpacker(
            ext_hook=self._ext_hook,
            object_pairs_hook=safe_dict,
            strict_map_key=False,
            raw=False,
            use_list=True,
            max_buffer_size=max(n, 1),  # as unpackb: no str/bin/array longer than the data
        )
        unpacker.feed(data)
        try:
            obj = unpacker.unpack()
        except msgpack.OutOfData:
            raise ValueError("incomplete msgpack document") from None
        if unpacker.tell() != n:
            raise msgpack.ExtraData(obj, b"")
        return obj

    def _ext_hook(self, code: int, data: bytes) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise CorruptFileError(f"the object tree has more than {MAX_NODES} typed nodes")
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise CorruptFileError(f"typed nodes nest more than {MAX_NESTING} levels deep")
            if code == ROOT:
                # Deferred states (STATE nodes) are only valid directly inside the
                # outermost node.
                if self.depth != 1 or self.in_root:
                    raise CorruptFileError("a root node may only be the outermost node")
                self.in_root = True
            payload = self.unpack(data)
            if code == SHARED_DEF:
                ident, value = expect_list(payload, 2, "shared object")
                if type(ident) is not int or ident in self._shared:
                    raise CorruptFileError(
                        f"shared object id {ident!r} is invalid or defined twice"
                    )
                self._shared[ident] = value
                return value
            if code == SHARED_REF:
                if type(payload) is not int or payload not in self._shared:
                    raise CorruptFileError(f"reference to undefined shared object {payload!r}")
                return self._shared[payload]
            decode = DECODERS.get(code)
            if decode is None:
                raise CorruptFileError(f"unknown node code {code}")
            return decode(self, payload)
        finally:
            self.depth -= 1

    # -- services for handlers ----------------------------------------------
    def take_buffer(self, index: Any) -> np.ndarray:
        """The decoded uint8 buffer ``index``; each buffer may be used exactly once."""
        if type(index) is not int or not 0 <= index < len(self._buffers):
            raise CorruptFileError(f"buffer index {index!r} is out of range")
        buf = self._buffers[index]
        if buf is None:
            raise CorruptFileError(f"buffer {index} is used twice")
        self._buffers[index] = None
        return buf

    def require(self, name: Any, use: str) -> Any:
        """The trusted object behind ``name`` for ``use``, if the header declared it so."""
        if type(name) is not str:
            raise CorruptFileError(f"a node names {name!r}, not a string")
        declared = self._declared.get(name)
        if declared is None or use not in declared[1]:
            raise CorruptFileError(
                f"the tree uses {name!r} as {use!r} but the header does not declare it: "
                "the file was tampered with"
            )
        return self._policy.resolve(name, declared[0], use)


def expect_list(payload: Any, length: int, what: str) -> list[Any]:
    """Check a node payload is a list of ``length`` items."""
    if type(payload) is not list or len(payload) != length:
        raise CorruptFileError(f"malformed {what} node")
    return payload


def expect(value: Any, check: Callable[[Any], bool], what: str) -> Any:
    if not check(value):
        raise CorruptFileError(f"malformed {what}: {value!r:.80}")
    return value


# -- inputs that would make building containers quadratic ----------------------
# Only strings hash with a per-process secret; ints, floats and tuples hash
# predictably, so a file could fill a dict or set with colliding keys and make
# each insert walk all the others. Containers that large are refused when one
# hash value repeats too often.
_COLLISION_CHECK_MIN = 64
_MAX_SAME_HASH = 32


def check_hash_spread(keys: Any, what: str) -> None:
    """Refuse ``keys`` (a list) if too many non-string keys share a hash value."""
    if len(keys) < _COLLISION_CHECK_MIN or all(type(k) is str for k in keys):
        return
    try:
        counts = Counter(map(hash, keys))
    except TypeError:
        raise CorruptFileError(f"{what}: unhashable key") from None
    if counts and max(counts.values()) > _MAX_SAME_HASH:
        raise CorruptFileError(f"{what}: many keys share one hash value (a hash-flooding attack?)")


def safe_dict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """msgpack's map builder: no duplicate keys, no hash flooding."""
    if len(pairs) >= _COLLISION_CHECK_MIN:
        check_hash_spread([k for k, _ in pairs], "a map")
    out = dict(pairs)
    if len(out) != len(pairs):
        raise CorruptFileError("a map has duplicate keys")
    return out


# msgpack decodes extension type -1 as a Timestamp by itself, without our hook.
# skjar never writes one; these are its three encodings (fixext4/8, ext8).
_TIMESTAMP_MARKERS = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")


def _refuse_timestamps(obj: Any) -> None:
    """Walk the decoded tree (only when the bytes hint at one) looking for a Timestamp."""
    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if isinstance(item, msgpack.Timestamp):
            raise CorruptFileError("the tree holds a msgpack timestamp, which skjar never writes")
        if isinstance(item, (list, tuple, set, frozenset)) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item)
        elif isinstance(item, dict) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.keys())
            stack.extend(item.values())
        elif hasattr(item, "__dict__") and id(item) not in seen and not isinstance(item, type):
            seen.add(id(item))
            stack.extend(vars(item).values())
