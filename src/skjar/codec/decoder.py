"""Object tree -> object graph, building only what the header declared and trust allows.

Decoding is one pass: the compiled walker (``_walk.c``) or, as its twin, msgpack with
``_ext_hook`` reads the tree and builds each typed node, innermost first, so every
node's children exist before it is built.
Names were checked against the trust policy from the header before this runs;
each node re-checks that its name and use are declared there.
"""

from __future__ import annotations

import functools
import gc
import re
import reprlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from .. import _compiled
from ..errors import CorruptFileError, SkjarError
from ..format.spec import (
    EXPAND_PER_BYTE,
    EXPAND_SLACK,
    INLINE_MAX,
    MAX_NDIM,
    MAX_NESTING,
    MAX_NODES,
)
from ..trust import DEFAULT_USES, TrustPolicy
from .nodes import (
    INSTANCE,
    ITEMS_NONE,
    NDARRAY,
    NPSCALAR,
    RECONSTRUCT,
    ROOT,
    SHARED_DEF,
    SHARED_REF,
    STATE_CYTHON,
    STATE_DEFAULT,
    TUPLE,
    ZIPDICT,
)
from .registry import DECODERS, ENCODERS, OBJECT_STEPS, OWNED_INDEXES, VALIDATORS

# What the compiled walker enforces as _ext_hook does (see _walk.c).
_LIMITS = (MAX_NODES, MAX_NESTING, ROOT, SHARED_DEF, SHARED_REF)
# Dtypes without objects, of items of 1 byte or more, that the NDARRAY handler has
# validated: (dtype, itemsize) by descr_dtype's cache key (a descr string, or a
# structured descr's fields as tuples). The compiled walker builds arrays of these
# itself; codec/numpy.py fills it.
ARRAY_DTYPES: dict[Any, tuple[np.dtype[Any], int]] = {}


def walk_static() -> tuple[Any, ...]:
    """What the compiled walker takes that is the same for every load: the handler table,
    limits, the array fast path's constants and the object fast path's steps (set by
    codec/__init__ once every handler is registered). Built once: a tuple built per load
    touched each of its ~25 items, a page fault apiece in a forked process's first load."""
    global WALK_STATIC
    from .objects import NOT_STATEFUL  # (objects imports this module)

    steps = OBJECT_STEPS
    WALK_STATIC = (
        DECODERS, CorruptFileError, _LIMITS,
        (NDARRAY, MAX_NDIM, INLINE_MAX, np.ndarray, np.empty, ARRAY_DTYPES, NPSCALAR),
        (INSTANCE if steps else -1, RECONSTRUCT if steps else -1, STATE_DEFAULT, STATE_CYTHON,
         ITEMS_NONE, ZIPDICT, steps.get("plan"), steps.get("setter"), steps.get("validate"),
         steps.get("finish"), SkjarError, ENCODERS, VALIDATORS, OWNED_INDEXES, NOT_STATEFUL,
         TUPLE, _UNTRACKED_WORK),
    )
    return WALK_STATIC


WALK_STATIC: tuple[Any, ...] | None = None

# Typed-node depth up to which payloads are unpacked with msgpack.unpackb (fast,
# but ~40 KiB of C stack per level); deeper ones use a heap-allocated Unpacker.
_STACK_DEPTH = 8


class Decoder:
    """Per-load decoding state: buffers, declared names, trust, shared objects.

    It takes ``buffers`` over and empties each entry once used, so that whoever
    handed the list in holds no buffer past its use (a vocabulary's key text is
    freed as soon as its dict is built).
    """

    def __init__(
        self,
        buffers: list[Any],
        declared: dict[str, tuple[str, frozenset[str]]],
        policy: TrustPolicy,
    ) -> None:
        # uint8 arrays, or memoryviews (read_small's): the walker builds arrays on either.
        self._buffers: list[np.ndarray | memoryview | None] = buffers
        self._declared = declared
        self._policy = policy
        self._shared: dict[int, Any] = {}
        # Empty instances awaiting their state: id -> (object, name); holding the
        # object keeps its id from being reused.
        self.shells: dict[int, tuple[Any, str]] = {}
        self.depth = 0
        self.in_root = False
        self._nodes = 0
        self.taken = 0  # buffers taken (each at most once), by take_buffer and the walker
        # Values whose hash is costly (see track_tuple): id -> (value, depth, work).
        self._costly: dict[int, tuple[Any, int, int]] = {}
        self._hash_work = 0
        self._hash_budget = _HASH_SLACK
        self._expanded = 0
        self._expand_budget = EXPAND_SLACK
        # (name, arrays) its meaning check read as indices, which must be its own
        # (registry.OWNED_INDEXES): checked against the shared objects at the end.
        self.owned_indexes: list[tuple[str, tuple[Any, ...]]] = []

    def decode_root(self, tree: bytes | memoryview) -> Any:
        self._hash_budget = _HASH_SLACK + _HASH_PER_BYTE * len(tree)
        self._expand_budget = EXPAND_SLACK + EXPAND_PER_BYTE * len(tree)
        fast = _compiled.speedups
        try:
            if fast is not None:
                obj = fast.walk(
                    tree, self, self.safe_dict, self._shared, self._buffers, self.shells,
                    self._declared, None if self._policy.extra else DEFAULT_USES,
                    WALK_STATIC or walk_static(),
                )
            else:
                # The cyclic GC is paused while the model is built (as the walker does):
                # nothing decoded is garbage yet.
                collecting = gc.isenabled()
                gc.disable()
                try:
                    obj = self.unpack(tree)
                finally:
                    if collecting:
                        gc.enable()
                if _may_hold_timestamps(tree):
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
        if self.owned_indexes and self._shared:
            self._refuse_shared_indexes()
        # Each buffer is taken at most once (take_buffer, and the walker, which adds its own
        # count): as many taken as there are proves every one used, with no pass over them
        # (whose first run cost a forked process's first load ~10 page faults).
        if self.taken != len(self._buffers):
            unused = [i for i, b in enumerate(self._buffers) if b is not None]
            if unused:
                raise CorruptFileError(
                    f"buffers {unused[:10]} are declared but never used by the tree"
                )
        return obj

    def _refuse_shared_indexes(self) -> None:
        """An array a meaning check read as indices is held by reference (a KD tree's
        idx_array): if the file also placed it elsewhere, an in-place update there
        after the load (StandardScaler.partial_fit adds to its int64 n_samples_seen_)
        would change it past its check. Honest models never share these."""
        shared = set(map(id, self._shared.values()))
        for name, arrays in self.owned_indexes:
            if not shared.isdisjoint(map(id, arrays)):
                raise CorruptFileError(
                    f"{name}: an index array it holds is shared with another part of the "
                    "model, which could change it after its meaning check"
                )

    def unpack(self, data: bytes | memoryview) -> Any:
        if self.depth < _STACK_DEPTH:
            return msgpack.unpackb(
                data,
                ext_hook=self._ext_hook,
                object_pairs_hook=self.safe_dict,
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
            object_pairs_hook=self.safe_dict,
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
            if code in (SHARED_DEF, SHARED_REF):
                return self.shared_node(code, payload)
            decode = DECODERS.get(code)
            if decode is None:
                raise CorruptFileError(f"unknown node code {code}")
            return decode(self, payload)
        finally:
            self.depth -= 1

    def shared_node(self, code: int, payload: Any) -> Any:
        """A SHARED_DEF node's value, stored under its id, or the value a SHARED_REF names."""
        if code == SHARED_DEF:
            ident, value = expect_list(payload, 2, "shared object")
            if type(ident) is not int or ident in self._shared:
                raise CorruptFileError(f"shared object id {brief(ident)} is invalid or defined twice")
            self._shared[ident] = value
            return value
        if type(payload) is not int or payload not in self._shared:
            raise CorruptFileError(f"reference to undefined shared object {brief(payload)}")
        return self._shared[payload]

    # -- services for handlers ----------------------------------------------
    def take_buffer(self, index: Any) -> np.ndarray:
        """The decoded uint8 buffer ``index``; each buffer may be used exactly once."""
        if type(index) is not int or not 0 <= index < len(self._buffers):
            raise CorruptFileError(f"buffer index {brief(index)} is out of range")
        buf = self._buffers[index]
        if buf is None:
            raise CorruptFileError(f"buffer {index} is used twice")
        self._buffers[index] = None
        self.taken += 1
        return np.frombuffer(buf, np.uint8) if type(buf) is memoryview else buf

    def require(self, name: Any, use: str) -> Any:
        """The trusted object behind ``name`` for ``use``, if the header declared it so."""
        if type(name) is not str:
            raise CorruptFileError(f"a node names {brief(name)}, not a string")
        declared = self._declared.get(name)
        if declared is None or use not in declared[1]:
            raise CorruptFileError(
                f"the tree uses {name!r} as {use!r} but the header does not declare it: "
                "the file was tampered with"
            )
        return self._policy.resolve(name, declared[0], use)

    # -- building costs ----------------------------------------------------------
    def expand(self, items: Any, what: str) -> None:
        """Charge building a container from ``items`` (a decoded payload) to the load.

        A payload decoded from the bytes cost the file at least a byte per item, but
        a SHARED_REF costs a few bytes whatever it refers to: a 0.9 MB tree that fed
        one shared 200,000-item list to 100 TUPLE nodes kept the loader busy 25 s
        (with 1,000 references it did not finish in 120 s). So the items of
        every container built from a payload count against a budget linear in the
        size of the tree, which an honest tree never comes near.
        (tests/security/test_resource_bombs.py)
        """
        self._expanded += len(items)
        if self._expanded > self._expand_budget:
            raise CorruptFileError(
                f"{what}: the tree builds more container items than its size allows "
                "(one shared value expanded again and again)"
            )

    # -- hashing costs ---------------------------------------------------------
    def track_tuple(self, value: tuple[Any, ...]) -> tuple[Any, ...]:
        """Record a decoded tuple's nesting depth and hashing work; refuse deep ones."""
        depth, work = 1, len(value)
        for item in value:
            info = self._costly.get(id(item))
            if info is not None and info[0] is item:
                depth = max(depth, info[1] + 1)
                work += info[2]
            elif isinstance(item, tuple):  # an untracked tuple is flat and short
                depth = max(depth, 2)
                work += len(item)
        if depth > MAX_TUPLE_DEPTH:
            raise CorruptFileError(f"tuples nest more than {MAX_TUPLE_DEPTH} levels deep")
        # A tuple that expands to more items than the file holds is legitimate (the
        # writer keeps shared tuples shared), so ``work`` is only charged if it is hashed.
        if depth > 1 or work > _UNTRACKED_WORK:
            self._costly[id(value)] = (value, depth, work)
        return value

    def track_int(self, value: int, nbytes: int) -> int:
        """Record a big int (hashing it walks all its digits, every time)."""
        if nbytes > 8 * _UNTRACKED_WORK:
            self._costly[id(value)] = (value, 0, nbytes // 8)
        return value

    def check_keys(self, keys: list[Any], what: str) -> None:
        """Charge hashing ``keys`` against the load's budget, then check their spread.

        Called before a set, frozenset or dict is built from decoded keys.
        """
        if self._costly:
            work = 0
            for key in keys:
                info = self._costly.get(id(key))
                if info is not None and info[0] is key:
                    work += info[2]
            self._hash_work += work
            if self._hash_work > self._hash_budget:
                raise CorruptFileError(
                    f"{what}: hashing its keys takes more work than the file could honestly "
                    "ask for (shared references to large tuples or ints)"
                )
        check_hash_spread(keys, what)

    def safe_dict(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """msgpack's map builder: no duplicate keys, no hash flooding, bounded hashing."""
        if self._costly or len(pairs) >= _COLLISION_CHECK_MIN:
            self.check_keys([k for k, _ in pairs], "a map")
        out = dict(pairs)
        if len(out) != len(pairs):
            raise CorruptFileError("a map has duplicate keys")
        return out


def look_up_own_names(cls: type) -> frozenset[str]:
    """Look up on ``cls`` its own names and every name its methods use; return them all.

    The first use of a (class, name) pair in a process writes it into the interpreter's
    method cache. In a worker forked from one that never loaded (a prefork server, the
    benchmark's children) those writes land on pages shared with the parent: a
    copy-on-write fault each. Looked up here, at import, the pairs are there before any
    fork. A tiny model's first load then takes ~27 fewer faults and ~8% less time
    (``benchmarks/ab.py --models iris-knn``: 308 -> 281 faults, 1.06 -> 0.97 ms).
    """
    names = set(vars(cls))
    codes = [f.__code__ for f in vars(cls).values() if hasattr(f, "__code__")]
    while codes:  # methods, and the comprehensions inside them
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    for name in names:
        getattr(cls, name, None)
    return frozenset(names)


LOOKED_UP = look_up_own_names(Decoder)


def expect_list(payload: Any, length: int, what: str) -> list[Any]:
    """Check a node payload is a list of ``length`` items."""
    if type(payload) is not list or len(payload) != length:
        raise CorruptFileError(f"malformed {what} node")
    return payload


def expect(value: Any, check: Callable[[Any], bool], what: str) -> Any:
    if not check(value):
        raise CorruptFileError(f"malformed {what}: {brief(value)}")
    return value


class _BriefRepr(reprlib.Repr):
    """reprlib, but objects other than builtin containers and atoms show only their type."""

    def repr_instance(self, x: Any, level: int) -> str:
        return f"<{type(x).__name__}>"


_BRIEF = _BriefRepr()
_BRIEF.maxlevel = 3
_BRIEF.maxstring = 60
_BRIEF.maxother = 40
_ATOMS = (str, bytes, int, float, bool, type(None))


def brief(value: Any) -> str:
    """A short repr of a decoded value, for error messages, in bounded time.

    ``repr`` of a decoded value can take forever: with shared references a
    1 KB tree holds a list that expands to 2**40 items (l1 = [l0, l0], ...), and
    an estimator's repr runs its pretty-printer over its parameters.
    """
    if type(value) in _ATOMS and not (type(value) is int and value.bit_length() > 256):
        return repr(value)[:80]
    return _BRIEF.repr(value)[:80]


# -- inputs that would make building containers quadratic ----------------------
# Hashing a tuple walks all of it, every time (tuples do not cache their hash), and
# so does hashing a big int. Through shared references a few bytes make a tuple
# exponentially large (t1 = (t0, t0), t2 = (t1, t1), ...: 40 levels in 836 bytes
# hung the loader once put in a set), or so deep that hashing it overflows the C
# stack (200 000 nested 1-tuples, 4 MB: SIGSEGV). So the decoder records each
# tuple's depth and hashing work, refuses tuples deeper than MAX_TUPLE_DEPTH (the
# writer cannot nest them past MAX_NESTING), and charges every hash it does on
# decoded keys against a budget linear in the size of the tree.
# (tests/security/test_resource_bombs.py)
MAX_TUPLE_DEPTH = 1000
_HASH_SLACK = 10_000_000
_HASH_PER_BYTE = 16
_UNTRACKED_WORK = 64

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
# (A regex, not ``marker in tree``: the tree is usually a memoryview, for which
# ``in`` tests single bytes, so that check never fired on a real load:
# tests/security/test_published_bypasses.py::test_msgpack_timestamps_are_not_nodes.)
_TIMESTAMP_MARKERS = re.compile(b"\xd6\xff|\xd7\xff|\xc7\x0c\xff")


def _may_hold_timestamps(tree: bytes | memoryview) -> bool:
    """Whether the tree's bytes hold a timestamp marker (compiled: ~50x the regex's speed)."""
    fast = _compiled.speedups
    if fast is not None:
        return not fast.no_timestamps(tree)
    return _TIMESTAMP_MARKERS.search(tree) is not None


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
        elif isinstance(item, np.ndarray) and item.dtype.hasobject and id(item) not in seen:
            # object arrays and partials hold decoded items too (found by
            # tests/security/test_published_bypasses.py)
            seen.add(id(item))
            stack.extend(item.ravel(order="K").tolist() if item.dtype == object else [])
        elif isinstance(item, functools.partial) and id(item) not in seen:
            seen.add(id(item))
            stack.extend((item.func, item.args, item.keywords, vars(item)))
        elif hasattr(item, "__dict__") and id(item) not in seen and not isinstance(item, type):
            seen.add(id(item))
            stack.extend(vars(item).values())


# The first instance of a class fills the attribute keys its instances share (CPython's
# split dicts: the names, their hashes, the keys' layout). Made here, at import, that
# happens once in the parent of any forked worker, whose first Decoder then only reads
# those keys (a forked child's first Decoder: 36 -> 24 page faults, 94 -> 51 us).
Decoder([], {}, TrustPolicy())
