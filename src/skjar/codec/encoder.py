"""Object graph -> object tree (msgpack with typed nodes) + out-of-line buffers."""

from __future__ import annotations

import functools
import importlib
import sys
from collections import deque
from typing import Any

import msgpack
import numpy as np

from .. import _compiled
from ..errors import UnsupportedObjectError
from ..format.spec import INLINE_MAX, MAX_NESTING
from .nodes import (
    BIGINT,
    NDARRAY,
    NPSCALAR,
    ROOT,
    SHARED_DEF,
    SHARED_REF,
    STRDICT,
    STRLIST,
    TUPLE,
    ZIPDICT,
    Node,
    Shared,
    SharedRef,
)
from .registry import ENCODERS, MEMOIZED

_CLASSES = (Node, Shared, SharedRef)  # what the compiled packer packs as typed values

# A path inside the model, built lazily: (parent, step) pairs, rendered on error.
Path = tuple[Any, Any] | None

ATOMS = frozenset({str, float, bool, type(None), bytes})
INT64_MIN, UINT64_MAX = -(1 << 63), (1 << 64) - 1
# Walk depth beyond which instances are deferred to the top level (see Encoder).
DEFER_DEPTH = 32
# Containers at least this large with homogeneous str keys/items are stored
# column-wise, so neither side takes a Python step per element.
COLUMNAR_MIN = 256
# str-keyed dicts with at least this many keys are written as ZIPDICT (below
# that, a shared key list saves too little to pay for its node).
ZIPDICT_MIN = 4


def render_path(path: Path) -> str:
    """``steps[1][1].func`` from the lazy (parent, step) chain."""
    steps: list[Any] = []
    while path is not None:
        path, step = path
        steps.append(step)
    out = ""
    for step in reversed(steps):
        if isinstance(step, str) and step.isidentifier():
            out += f".{step}" if out else step
        elif isinstance(step, int):
            out += f"[{step}]"
        else:
            out += f"[{step!r}]"
    return out


def _where_is(root: Any, text: str, limit: int = 100_000) -> Path:
    """Where ``text`` first sits in ``root`` (containers and instance attributes,
    breadth first): for an error message only, so bounded, and ``None`` if not found."""
    queue: deque[tuple[Any, Path]] = deque([(root, None)])
    seen: set[int] = set()
    while queue and len(seen) < limit:
        value, path = queue.popleft()
        if value is text or (type(value) is str and value == text):
            return path
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, dict):
            for k, v in value.items():
                queue.append((k, (path, "<key>")))
                queue.append((v, (path, k)))
        elif isinstance(value, (list, tuple)):
            queue.extend((v, (path, i)) for i, v in enumerate(value))
        elif isinstance(value, (set, frozenset)):
            queue.extend((v, (path, "<item>")) for v in value)
        elif isinstance(getattr(value, "__dict__", None), dict):
            queue.extend((v, (path, k)) for k, v in vars(value).items())
    return None


def _atoms_only(values: Any) -> bool:
    """True when every value is an atom msgpack writes natively and losslessly."""
    kinds = set(map(type, values))
    if kinds <= ATOMS:
        return True
    if kinds == {int} or kinds == {int, type(None)}:
        ints = values if kinds == {int} else [v for v in values if v is not None]
        return not ints or (min(ints) >= INT64_MIN and max(ints) <= UINT64_MAX)
    return False


def _narrowest(values: np.ndarray) -> np.ndarray:
    """``values`` (int64) in the narrowest integer dtype that holds them all.

    A vocabulary's column numbers fit in 4 bytes: storing them in 8 made a
    1.1M-term TF-IDF model 3% larger than its pickle.
    """
    if not len(values):
        return values
    low, high = int(values.min()), int(values.max())
    for dtype in (np.uint8, np.uint16, np.uint32) if low >= 0 else (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values


def _ext_type(code: int, data: bytes) -> msgpack.ExtType:
    """``msgpack.ExtType(code, data)`` without its argument checks (in Python, per node):
    ``code`` is a node code and ``data`` packed bytes by construction."""
    return tuple.__new__(msgpack.ExtType, (code, data))


@functools.cache
def _static() -> tuple[Any, ...]:
    """The registry and constants the compiled walk reads (_encode.c), built once."""
    from .builtins import _enc_dict, _enc_list, _enc_tuple
    from .nodes import INSTANCE, ITEMS_NONE, NEWOBJ, RECONSTRUCT, STATE_DEFAULT, STATE_NONE
    from .numpy import NUMBER_SCALARS, _enc_ndarray, dtype_descr
    from .objects import _PLAIN_CLASSES, NEWOBJ_FUNC, encode_object, encode_reduced
    from .registry import VALIDATORS

    return (
        ENCODERS, MEMOIZED, encode_object, _enc_list, _enc_dict, _enc_tuple, Node, Shared,
        SharedRef, TUPLE, ZIPDICT, COLUMNAR_MIN, ZIPDICT_MIN, MAX_NESTING, np.ndarray,
        _enc_ndarray, dtype_descr, NDARRAY, np.dtype(np.uint8), INLINE_MAX, {},
        NUMBER_SCALARS, NPSCALAR, encode_reduced, _PLAIN_CLASSES, NEWOBJ_FUNC, VALIDATORS,
        DEFER_DEPTH, INSTANCE, RECONSTRUCT, NEWOBJ, STATE_NONE, STATE_DEFAULT, ITEMS_NONE,
    )


class Encoder:
    """Walks an object graph once, producing the tree, the buffers and the names used."""

    def __init__(self) -> None:
        self.buffers: list[np.ndarray] = []  # uint8 views, in file order
        self.names: dict[str, tuple[str, set[str]]] = {}  # name -> (module, uses)
        self._memo: dict[int, Node | Shared] = {}
        self._keepalive: list[Any] = []  # ids are only unique while objects live
        self._in_progress: set[int] = set()
        self.shells: dict[int, Node] = {}  # instances being encoded, for cycles
        self._next_share = 0
        self.depth = 0
        self._ext_depth = 0
        self._verified: dict[int, str] = {}
        # Classes whose instances this dump has written (INSTANCE), by the name declared
        # for them: named, checked and declared once, not once per instance.
        self.object_classes: dict[type, str] = {}
        # The same for the callables that rebuild objects (RECONSTRUCT: a forest's Tree
        # class, 200 times), by id, with the callable kept alive beside its name.
        self.reconstructors: dict[int, tuple[Any, str]] = {}
        self._interned: dict[Any, Shared] = {}
        self._packers: list[msgpack.Packer] = []  # idle ones; see _pack
        # A bit generator's state already read by its holder (id -> numpy's state dict):
        # MT19937's state getter copies its key a word at a time, ~30 us a read.
        self.bitgen_states: dict[int, dict[str, Any]] = {}
        # Instances met deeper than DEFER_DEPTH are written as empty shells whose
        # state follows at the top level (a linked list of 10,000 instances, as in
        # Birch's leaves, would otherwise nest 10,000 levels deep).
        self.deferred: deque[tuple[Any, Node, Any]] = deque()
        # The class with a meaning check whose state (or arguments) is being encoded,
        # through containers only, or None. Its instances are written in place, never
        # deferred (objects.py), and it must not refer to an instance that is still
        # waiting for its state when it is loaded (objects._refuse_pending refuses that).
        self.under_check: str | None = None
        # Deferred instances whose STATE node is not written yet: id -> where first met.
        self.pending: dict[int, Path] = {}
        self._root: Any = None  # what encode_root was given (to place an error)
        # What the compiled walk reads (_encode.c): these containers are never replaced.
        self._fast = (
            self._memo, self._in_progress, self._keepalive, self._interned, self.pending,
            self.buffers, _static(), self.object_classes, self.reconstructors, self.shells,
        )

    # -- entry points -------------------------------------------------------
    def encode_root(self, obj: Any) -> bytes:
        self._root = obj
        tree = self.encode(obj, None)
        if self.deferred:
            from .objects import encode_deferred

            states = []
            while self.deferred:  # encoding one state may defer more
                states.append(encode_deferred(self, *self.deferred.popleft()))
            tree = Node(ROOT, [tree, states])
        fast = _compiled.speedups
        if fast is not None:
            packed = fast.pack_tree(tree, _CLASSES, MAX_NESTING)
            if packed is not None:
                return packed
        # The reference packer (and, when the compiled one declines, the precise error).
        try:
            return msgpack.packb(
                tree, default=self._pack_default, use_bin_type=True, strict_types=True
            )
        except UnsupportedObjectError:
            raise
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise UnsupportedObjectError(
                f"a str holds {bad!r}, a lone surrogate, in {exc.object[:60]!r}: it is not "
                "valid Unicode text, and the file stores text as UTF-8; replace it, e.g. "
                "text.encode('utf-8', 'replace').decode() (a numpy str array holds any "
                "code point and is stored as it is)",
                render_path(_where_is(self._root, exc.object)),
            ) from None
        except (
            TypeError,
            ValueError,
            OverflowError,
        ) as exc:  # pragma: no cover - encoder bug guard
            raise UnsupportedObjectError(f"internal encoding error: {exc}") from exc

    def intern(self, value: Any, key: Any = None) -> Any:
        """``value`` - a class name, a structured dtype's description, a dict's key
        list - written once.

        Later occurrences refer to the first (SHARED_REF), as pickle's memo does: a
        100-tree ensemble otherwise spells out each class name and its 8-field node
        dtype 100 times (a quarter of a small model's file). Strings are matched by
        value, descriptions by identity (dtype_descr returns one cached list per
        dtype), key lists by ``key`` (their tuple).
        """
        if key is None:
            key = value if type(value) is str else id(value)
        seen = self._interned.get(key)
        if seen is None:
            self._interned[key] = Shared(value)
            self._keepalive.append(value)
            return self._interned[key]
        self.share(seen)
        return SharedRef(seen)

    def share(self, node: Node | Shared) -> None:
        """Give ``node`` a shared-object id, so later references can point to it."""
        if node.share_id is None:
            node.share_id = self._next_share
            self._next_share += 1

    def _pack_default(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is Node:
            if obj.share_id is None:
                return self._ext(obj.code, obj.payload)
            self._ext_depth += 1  # the SHARED_DEF wrapper; the node inside checks the depth
            try:
                ext = self._ext(obj.code, obj.payload)
            finally:
                self._ext_depth -= 1
            return _ext_type(SHARED_DEF, self._pack([obj.share_id, ext]))
        if kind is Shared:
            if obj.share_id is None:
                return obj.value
            return self._ext(SHARED_DEF, [obj.share_id, obj.value])
        if kind is SharedRef:
            return self._ext(SHARED_REF, obj.target.share_id)
        raise TypeError(f"unexpected {kind!r} in the tree")

    def _ext(self, code: int, payload: Any) -> msgpack.ExtType:
        """An extension value, counting its nesting exactly as the decoder will.

        Shared-object wrappers and references are typed nodes too, so the tree
        can nest deeper than the walk did; refusing here keeps ``dump`` from
        writing a file that ``load`` refuses as nested too deeply.
        """
        self._ext_depth += 1
        try:
            if self._ext_depth > MAX_NESTING:
                raise UnsupportedObjectError(
                    f"the model nests objects more than {MAX_NESTING} levels deep "
                    "(counting shared references)"
                )
            return _ext_type(code, self._pack(payload))
        finally:
            self._ext_depth -= 1

    def _pack(self, value: Any) -> bytes:
        # One Packer per nesting level, reused: a node's payload is packed while its
        # parent's packer is mid-way (through the default hook), so a packer in use is
        # never shared, and building a new one per node (msgpack.packb) cost ~0.5 us.
        packer = self._packers.pop() if self._packers else msgpack.Packer(
            default=self._pack_default, use_bin_type=True, strict_types=True
        )
        data = packer.pack(value)  # raises: the packer is dropped, its buffer unknown
        self._packers.append(packer)
        return data

    # -- the walk -----------------------------------------------------------
    # encode, encode_items and encode_dict run compiled (_encode.c) when they can: their
    # Python twins below stay the reference, and take every case the compiled walk
    # hands back (cycles, refusals, limits, subclasses, column-wise containers).
    def encode(self, obj: Any, path: Path) -> Any:
        """Encode one value; ``path`` locates it for error messages."""
        fast = _compiled.speedups
        if fast is not None:
            return fast.encode(self, obj, path)
        return self._encode_value(obj, path)

    def encode_items(self, items: Any, path: Path) -> Any:
        """Encode a sequence into a list, element by element (fast path: all atoms)."""
        fast = _compiled.speedups
        if fast is not None:
            return fast.encode_items(self, items, path)
        return self._encode_items_py(items, path)

    def encode_dict(self, d: dict[Any, Any], path: Path) -> Any:
        """Encode a dict's contents (the dict object itself is memoized by the caller)."""
        fast = _compiled.speedups
        if fast is not None:
            return fast.encode_dict(self, d, path)
        return self._encode_dict_py(d, path)

    def _encode_value(self, obj: Any, path: Path) -> Any:
        kind = type(obj)
        if kind in ATOMS:
            return obj
        if kind is int:
            if INT64_MIN <= obj <= UINT64_MAX:
                return obj
            nbytes = (obj.bit_length() + 8) // 8
            return Node(BIGINT, obj.to_bytes(nbytes, "little", signed=True))
        oid = id(obj)
        seen = self._memo.get(oid)
        if seen is not None:
            if self.under_check and oid in self.pending:
                raise UnsupportedObjectError(
                    f"{self.under_check} refers to a {kind.__qualname__} that is also stored "
                    f"more than {DEFER_DEPTH} levels deep (at {render_path(self.pending[oid])}"
                    "), whose state skjar writes at the end of the file, after this class's "
                    "meaning check needs it when loading. Store a copy in one of the two places",
                    render_path(path),
                )
            if seen.share_id is None:
                seen.share_id = self._next_share
                self._next_share += 1
            return SharedRef(seen)
        if oid in self._in_progress:
            shell = self.shells.get(oid)
            if shell is not None:  # a cycle through an instance: refer to its empty shell
                if self.under_check:
                    raise UnsupportedObjectError(
                        f"{self.under_check} refers back to a {kind.__qualname__} that contains "
                        "it: when loading, its meaning check would run before that object is "
                        "complete. Remove the back-reference before saving",
                        render_path(path),
                    )
                if shell.share_id is None:
                    shell.share_id = self._next_share
                    self._next_share += 1
                return SharedRef(shell)
            raise UnsupportedObjectError(
                f"{kind.__name__} object refers back to itself (a reference cycle); "
                "skjar files hold acyclic object graphs",
                render_path(path),
            )
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.depth -= 1
            raise UnsupportedObjectError(
                f"the model nests objects more than {MAX_NESTING} levels deep", render_path(path)
            )
        self._in_progress.add(oid)
        try:
            fn = ENCODERS.get(kind)
            memoize = kind in MEMOIZED
            if fn is None:
                from .objects import encode_object

                fn, memoize = encode_object, True
            out = fn(self, obj, path)
        finally:
            self._in_progress.discard(oid)
            self.depth -= 1
        if memoize:
            if type(out) is not Node:
                out = Shared(out)
            self._memo[oid] = out
            self._keepalive.append(obj)
        return out

    def _encode_items_py(self, items: Any, path: Path) -> Any:
        if isinstance(items, list) and _atoms_only(items):
            if len(items) >= COLUMNAR_MIN and set(map(type, items)) == {str}:
                return self.strlist(items) or items
            return items
        return [self.encode(v, (path, i)) for i, v in enumerate(items)]

    def _encode_dict_py(self, d: dict[Any, Any], path: Path) -> Any:
        if len(d) >= COLUMNAR_MIN:
            columnar = self.strdict(d)
            if columnar is not None:
                return columnar
        str_keys = set(map(type, d)) <= {str}
        if str_keys and len(d) >= ZIPDICT_MIN:
            # Keys apart from values, the key list written once per distinct list:
            # a 100-tree ensemble has 100 state dicts with the same 20 keys.
            # (Keys before values: a nested dict with the same keys must refer to
            # these, which come first in the file.)
            keys = self.intern(list(d), key=tuple(d))
            values = list(d.values())
            if not _atoms_only(values):
                values = [self.encode(v, (path, k)) for k, v in d.items()]
            return Node(ZIPDICT, [keys, values])
        if str_keys and _atoms_only(d.values()):
            return d
        return {self.encode(k, (path, "<key>")): self.encode(v, (path, k)) for k, v in d.items()}

    # -- column-wise containers ---------------------------------------------
    def _str_buffer(self, strings: Any, count: int) -> int | None:
        joined = "\x00".join(strings)
        if joined.count("\x00") != max(count - 1, 0):
            return None  # a string holds NUL: cannot use the separator
        data = joined.encode("utf-8", "surrogatepass")
        return self.add_buffer(np.frombuffer(data, dtype=np.uint8))

    def strlist(self, items: list[str]) -> Node | None:
        index = self._str_buffer(items, len(items))
        return None if index is None else Node(STRLIST, [len(items), index])

    def strdict(self, d: dict[Any, Any]) -> Node | None:
        if set(map(type, d)) != {str}:
            return None
        value_types = set(map(type, d.values()))
        if value_types == {int}:
            try:
                values = np.fromiter(d.values(), dtype=np.int64, count=len(d))
            except OverflowError:
                return None
            values = _narrowest(values)  # they come back as Python ints whatever the width
            kind = 0
        elif len(value_types) == 1 and issubclass(next(iter(value_types)), np.integer):
            values = np.fromiter(d.values(), dtype=next(iter(value_types)), count=len(d))
            kind = 1
        else:
            return None
        index = self._str_buffer(d.keys(), len(d))
        if index is None:
            return None
        from .numpy import array_node

        return Node(STRDICT, [len(d), index, array_node(self, values), kind])

    # -- buffers and names --------------------------------------------------
    def add_buffer(self, data: np.ndarray) -> int:
        """Register a contiguous uint8 array as the next buffer; returns its index."""
        self.buffers.append(data)
        self._keepalive.append(data)
        return len(self.buffers) - 1

    def declare(self, module: str, qualname: str, use: str) -> str:
        """Record that the tree uses ``module.qualname`` for ``use``; returns the name."""
        name = f"{module}.{qualname}"
        entry = self.names.get(name)
        if entry is None:
            self.names[name] = (module, {use})
        else:
            entry[1].add(use)
        return name

    def verify_importable(self, obj: Any, module: str, qualname: str, path: Path) -> None:
        """Refuse to write a name that would not resolve to ``obj`` when loading."""
        if self._verified.get(id(obj)) == f"{module}.{qualname}":
            return
        try:
            # (sys.modules first: what import_module returns for an imported module,
            # without its four Python frames per class, per save)
            found: Any = sys.modules.get(module) or importlib.import_module(module)
            for part in qualname.split("."):
                found = getattr(found, part)
        except Exception:
            found = None
        if found is not obj:
            raise UnsupportedObjectError(
                f"{obj!r} cannot be found again as {module}.{qualname}: define it at the top "
                "level of an importable module (not a lambda, a local or __main__ redefinition)",
                render_path(path),
            )
        self._verified[id(obj)] = f"{module}.{qualname}"
        self._keepalive.append(obj)
