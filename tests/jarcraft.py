"""Take jars apart and put them back together, for tests that need crafted files.

A jar is decoded into a :class:`Jar`: the format version and flags of the
preamble, the JSON header as a dict, the object tree (decompressed msgpack
bytes) and the buffers (decompressed bytes). :func:`encode` writes it back with
a layout table recomputed from the sections and a valid XXH3-128 digest, so a
test can change the *meaning* of a file (a header field, a node, an index in
an array) while the file stays well-formed::

    jar = jarcraft.decode(skjar.dumps(model))
    jar.header["environment"]["packages"]["scikit-learn"] = "0.1"
    skjar.loads(jarcraft.encode(jar))          # passes the digest check

The object tree can be unpacked into plain Python values where every typed
node is an :class:`Ext` (code + unpacked payload), edited, and packed again
(:func:`unpack_tree`, :func:`pack_tree`). Arrays stored out of line are found
with :meth:`Jar.arrays` and edited as numpy arrays (:meth:`Jar.set_array`).

Nothing here imports skjar's reader or writer: it is an independent
implementation of docs/format.md (version 1.0), built only on the constants
of ``skjar.format.spec``, so a bug in skjar's own reader is not copied here.
"""

from __future__ import annotations

import copy
import json
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import xxhash

from skjar.codec import nodes
from skjar.format.spec import (
    ALIGNMENT,
    DIGEST_SIZE,
    END_MAGIC,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    INLINE_MAX,
    MAGIC,
    PREAMBLE_SIZE,
    TRAILER_SIZE,
)

__all__ = [
    "Ext",
    "Jar",
    "StoredArray",
    "align",
    "assemble",
    "build",
    "compressed",
    "decode",
    "encode",
    "minimal_header",
    "name_entry",
    "node_codes",
    "pack_tree",
    "preamble",
    "redigest",
    "section_spans",
    "stored_sections",
    "unpack_tree",
    "walk",
]


def align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


# -- the file level ------------------------------------------------------------
def preamble(header_length: int, version: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR),
             flags: int = 0) -> bytes:
    return MAGIC + struct.pack("<HHIQ", version[0], version[1], flags, header_length)


def assemble(
    header: dict[str, Any] | bytes,
    sections: list[bytes],
    *,
    version: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR),
    flags: int = 0,
    digest: bytes | None = None,
) -> bytes:
    """Preamble, header, each section 64-byte aligned with zero padding, trailer.

    ``header`` is written as given (a dict is JSON-encoded as skjar does); the
    layout inside it is not checked, so tests can make it lie. ``digest``
    overrides the computed one.
    """
    head = header if isinstance(header, bytes) else json.dumps(
        header, separators=(",", ":"), ensure_ascii=False
    ).encode()
    out = bytearray(preamble(len(head), version, flags))
    out += head
    structure = b""
    for data in sections:
        out += bytes(align(len(out)) - len(out))
        out += data
        if not structure:  # the tree is the first section
            structure = xxhash.xxh3_128(bytes(out)).digest()
    full = xxhash.xxh3_128(bytes(out)).digest()
    out += (structure + full) if digest is None else digest
    out += END_MAGIC
    return bytes(out)


def section_spans(data: bytes) -> dict[str, list[tuple[int, int]]]:
    """Byte ranges ``[start, end)`` of every part of a well-formed jar, by kind.

    Kinds: ``preamble``, ``header``, ``tree``, ``buffer``, ``padding``, ``trailer``.
    """
    header_length = struct.unpack_from("<Q", data, len(MAGIC) + 8)[0]
    header = json.loads(data[PREAMBLE_SIZE : PREAMBLE_SIZE + header_length])
    spans: dict[str, list[tuple[int, int]]] = {
        "preamble": [(0, PREAMBLE_SIZE)],
        "header": [(PREAMBLE_SIZE, PREAMBLE_SIZE + header_length)],
        "tree": [],
        "buffer": [],
        "padding": [],
        "trailer": [(len(data) - TRAILER_SIZE, len(data))],
    }
    pos = PREAMBLE_SIZE + header_length
    lengths = [("tree", header["layout"]["tree"]["length"])]
    lengths += [("buffer", entry[0]) for entry in header["layout"]["buffers"]]
    for kind, length in lengths:
        if align(pos) > pos:
            spans["padding"].append((pos, align(pos)))
        pos = align(pos)
        if length:
            spans[kind].append((pos, pos + length))
        pos += length
    assert pos == len(data) - TRAILER_SIZE, "not a well-formed jar"
    return spans


def redigest(data: bytes | bytearray) -> bytes:
    """An unsigned jar edited byte by byte, with its trailer's digests made valid again.

    The layout must still describe the file (same section lengths): this is for
    damage the digest alone would otherwise catch, e.g. non-zero padding.
    """
    data = bytes(data)
    header_length = struct.unpack_from("<Q", data, len(MAGIC) + 8)[0]
    header = json.loads(data[PREAMBLE_SIZE : PREAMBLE_SIZE + header_length])
    tree_end = align(PREAMBLE_SIZE + header_length) + header["layout"]["tree"]["length"]
    body = data[:-TRAILER_SIZE]
    structure = xxhash.xxh3_128(body[:tree_end]).digest()
    return body + structure + xxhash.xxh3_128(body).digest() + END_MAGIC


# -- the object tree -------------------------------------------------------------
class Ext:
    """A typed node of the object tree: its code and its (unpacked) payload.

    Hashed by identity, so it may stand as a map key (tuple keys are nodes).
    """

    __slots__ = ("code", "payload")

    def __init__(self, code: int, payload: Any) -> None:
        self.code = code
        self.payload = payload

    def __repr__(self) -> str:
        return f"Ext({self.code}, {self.payload!r:.200})"


def unpack_tree(data: bytes | memoryview, plain_dicts: bool = False) -> Any:
    """msgpack -> Python values, every extension value an :class:`Ext` (recursively).

    ``plain_dicts``: give ``ZIPDICT`` nodes back as plain maps (their key lists
    resolved), so a test can edit a state dict by key; written back, they are
    native maps, which every reader accepts just as well.
    """
    key_lists: dict[int, Any] = {}  # SHARED_DEF id -> key list, in document order

    def hook(code: int, payload: bytes) -> Any:
        value = _unpack(payload)
        if not plain_dicts:
            return Ext(code, value)
        if code == nodes.SHARED_DEF and isinstance(value, list) and len(value) == 2:
            key_lists[value[0]] = value[1]
        if code == nodes.ZIPDICT and isinstance(value, list) and len(value) == 2:
            keys = value[0]
            if isinstance(keys, Ext) and keys.code == nodes.SHARED_DEF:
                keys = keys.payload[1]
            elif isinstance(keys, Ext) and keys.code == nodes.SHARED_REF:
                keys = key_lists[keys.payload]
            return dict(zip(keys, value[1]))
        return Ext(code, value)

    def _unpack(payload: bytes | memoryview) -> Any:
        return msgpack.unpackb(bytes(payload), ext_hook=hook, raw=False, strict_map_key=False,
                               use_list=True)

    return _unpack(data)


def pack_tree(value: Any) -> bytes:
    """The inverse of :func:`unpack_tree` (byte-identical for skjar's own trees)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, Ext):
            return msgpack.ExtType(obj.code, pack_tree(obj.payload))
        raise TypeError(f"cannot pack {type(obj).__name__}")

    return msgpack.packb(value, default=default, use_bin_type=True, strict_types=True)


def walk(value: Any) -> Iterator[Any]:
    """Every value of an unpacked tree, depth first (nodes, containers and atoms)."""
    stack = [value]
    while stack:
        v = stack.pop()
        yield v
        if isinstance(v, Ext):
            stack.append(v.payload)
        elif isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, dict):
            for k, item in reversed(list(v.items())):
                stack.append(item)
                stack.append(k)


def node_codes(tree: bytes | memoryview) -> set[int]:
    """Every extension code used anywhere in a packed tree."""
    return {v.code for v in walk(unpack_tree(tree)) if isinstance(v, Ext)}


# -- whole jars --------------------------------------------------------------------
def _decompress(data: bytes, codec: str, size: int) -> bytes:
    if codec == "none":
        return data
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    import lz4.block

    return lz4.block.decompress(data, uncompressed_size=size)


@dataclass
class StoredArray:
    """An NDARRAY node of the tree and where its data is.

    ``buffer`` is the index of an out-of-line buffer, or the bytes themselves
    for a small array stored inline in the tree.
    """

    node: Ext
    buffer: int | bytes
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    fortran: bool


@dataclass
class Jar:
    """A decoded jar. ``tree`` and ``buffers`` are the decompressed sections."""

    header: dict[str, Any]
    tree: bytes
    buffers: list[bytes]
    version: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR)
    flags: int = 0
    _unpacked: Any = field(default=None, repr=False)

    # The tree, unpacked on first use; edits to it are packed again by encode().
    @property
    def root(self) -> Any:
        if self._unpacked is None:
            self._unpacked = unpack_tree(self.tree, plain_dicts=True)
        return self._unpacked

    @root.setter
    def root(self, value: Any) -> None:
        self._unpacked = value

    def nodes(self, code: int | None = None) -> list[Ext]:
        return [v for v in walk(self.root) if isinstance(v, Ext) and code in (None, v.code)]

    def resolve(self, value: Any) -> Any:
        """The value behind a shared definition or reference (the writer stores a repeated
        class name or structured dtype description once and refers to it after)."""
        if isinstance(value, Ext) and value.code == nodes.SHARED_DEF:
            return value.payload[1]
        if isinstance(value, Ext) and value.code == nodes.SHARED_REF:
            for node in self.nodes(nodes.SHARED_DEF):
                if node.payload[0] == value.payload:
                    return node.payload[1]
        return value

    def arrays(self, where: Callable[[StoredArray], bool] = lambda a: True) -> list[StoredArray]:
        """Out-of-line arrays (NDARRAY nodes), in tree order, filtered by ``where``."""
        out = []
        for node in self.nodes(nodes.NDARRAY):
            descr, shape, fortran, index = node.payload
            dtype = np.lib.format.descr_to_dtype(_tuplify(self.resolve(descr)))
            found = StoredArray(node, index, dtype, tuple(shape), fortran)
            if where(found):
                out.append(found)
        return out

    def array_with_field(self, name: str) -> StoredArray:
        """The only stored structured array that has a field called ``name``."""
        found = self.arrays(lambda a: name in (a.dtype.names or ()))
        assert len(found) == 1, f"{len(found)} arrays have a field {name!r}"
        return found[0]

    def objects(self, name: str) -> list[Ext]:
        """INSTANCE and RECONSTRUCT nodes of the class/callable ``name``, in tree order."""
        return [
            n for n in self.nodes()
            if n.code in (nodes.INSTANCE, nodes.RECONSTRUCT) and self.resolve(n.payload[0]) == name
        ]

    @staticmethod
    def state(node: Ext) -> Any:
        """The state of an INSTANCE or RECONSTRUCT node (a dict, or a TUPLE node's items)."""
        state = node.payload[2] if node.code == nodes.INSTANCE else node.payload[3]
        return state.payload if isinstance(state, Ext) and state.code == nodes.TUPLE else state

    def stored(self, value: Any) -> StoredArray:
        """The out-of-line array behind an NDARRAY node (possibly wrapped as shared)."""
        if isinstance(value, Ext) and value.code == nodes.SHARED_DEF:
            value = value.payload[1]
        assert isinstance(value, Ext) and value.code == nodes.NDARRAY, f"not an array: {value!r}"
        descr, shape, fortran, index = value.payload
        dtype = np.lib.format.descr_to_dtype(_tuplify(self.resolve(descr)))
        return StoredArray(value, index, dtype, tuple(shape), fortran)

    def edit(self, value: Any, change: Callable[[np.ndarray], np.ndarray | None]) -> None:
        """Apply ``change`` to a copy of a stored array and store the result.

        ``change`` edits its argument in place (returning None) or returns a new array.
        """
        stored = self.stored(value)
        arr = self.get_array(stored)
        out = change(arr)
        self.set_array(stored, arr if out is None else out)

    def get_array(self, stored: StoredArray) -> np.ndarray:
        """A writable copy of the array's data."""
        raw = stored.buffer if isinstance(stored.buffer, bytes) else self.buffers[stored.buffer]
        flat = np.frombuffer(raw, dtype=stored.dtype, count=math.prod(stored.shape))
        return flat.reshape(stored.shape, order="F" if stored.fortran else "C").copy()

    def set_array(self, stored: StoredArray, value: np.ndarray) -> None:
        """Replace the array's data (and its shape, when ``value`` has another one)."""
        value = np.asarray(value, dtype=stored.dtype)
        data = value.tobytes(order="F" if stored.fortran else "C")
        if isinstance(stored.buffer, int):
            self.buffers[stored.buffer] = data
        elif len(data) <= INLINE_MAX:
            stored.buffer = stored.node.payload[3] = data
        else:  # grown too large to stay inline: move it out of line
            self.buffers.append(data)
            stored.buffer = stored.node.payload[3] = len(self.buffers) - 1
        stored.node.payload[1] = list(value.shape)
        stored.shape = value.shape

    def names(self) -> dict[str, list[str]]:
        return {entry["name"]: entry["uses"] for entry in self.header["names"]}

    def copy(self) -> Jar:
        return copy.deepcopy(self)


def _tuplify(descr: Any) -> Any:
    """numpy's ``descr`` from its msgpack form (lists back to tuples)."""
    if isinstance(descr, str):
        return descr
    fields = []
    for name, sub, *shape in descr:
        name = tuple(name) if isinstance(name, list) else name
        fields.append((name, _tuplify(sub), *(tuple(s) for s in shape)))
    return fields


def decode(data: bytes | bytearray | memoryview) -> Jar:
    """Split a well-formed jar into its parts (asserting it is well-formed)."""
    data = bytes(data)
    assert data.startswith(MAGIC), "not a jar"
    major, minor, flags, header_length = struct.unpack_from("<HHIQ", data, len(MAGIC))
    header = json.loads(data[PREAMBLE_SIZE : PREAMBLE_SIZE + header_length])
    assert data.endswith(END_MAGIC), "no trailer"
    assert xxhash.xxh3_128(data[:-TRAILER_SIZE]).digest() == data[-TRAILER_SIZE:][
        DIGEST_SIZE : 2 * DIGEST_SIZE
    ]
    layout = header["layout"]
    pos = align(PREAMBLE_SIZE + header_length)
    t = layout["tree"]
    tree = _decompress(data[pos : pos + t["length"]], t["codec"], t["size"])
    pos += t["length"]
    buffers = []
    for length, size, codec, *members in layout["buffers"]:
        pos = align(pos)
        if members and isinstance(members[0], dict):  # chunks compressed apart (format 1.3)
            chunk, at, out = members[0]["chunk"], pos, []
            for k, n in enumerate(members[0]["lengths"]):
                out.append(_decompress(data[at : at + n], codec, min(chunk, size - k * chunk)))
                at += n
            assert at == pos + length, "the chunks do not fill the section"
            buffers.append(b"".join(out))
            pos += length
            continue
        section = _decompress(data[pos : pos + length], codec, size)
        pos += length
        if not members:
            buffers.append(section)
            continue
        at = 0  # a pack (format 1.2): its buffers, each starting at a multiple of 64
        for n in members[0]:
            at = align(at)
            buffers.append(section[at : at + n])
            at += n
        assert at == size, "the pack's members do not fill it"
    assert pos + TRAILER_SIZE == len(data), "sections do not cover the file"
    return Jar(header, tree, buffers, (major, minor), flags)


def stored_sections(data: bytes) -> list[bytes]:
    """The stored bytes of every section of a well-formed jar, the tree first: with
    :func:`assemble`, a jar whose header was edited can be rebuilt around them."""
    header_length = struct.unpack_from("<Q", data, len(MAGIC) + 8)[0]
    layout = json.loads(data[PREAMBLE_SIZE : PREAMBLE_SIZE + header_length])["layout"]
    pos, out = PREAMBLE_SIZE + header_length, []
    for length in [layout["tree"]["length"]] + [entry[0] for entry in layout["buffers"]]:
        pos = align(pos)
        out.append(data[pos : pos + length])
        pos += length
    return out


def encode(jar: Jar, *, layout: bool = True) -> bytes:
    """Write ``jar`` back, uncompressed, with a valid digest.

    With ``layout=True`` (default) the header's layout table and compression
    entry are recomputed from the sections; with ``False`` they are written
    as they are (to make the header lie about the sections).
    """
    tree = pack_tree(jar._unpacked) if jar._unpacked is not None else jar.tree
    header = copy.deepcopy(jar.header)
    if layout:
        header["compression"] = None
        header["layout"] = {
            "tree": {"length": len(tree), "size": len(tree), "codec": "none"},
            "buffers": [[len(b), len(b), "none"] for b in jar.buffers],
        }
    return assemble(header, [tree, *jar.buffers], version=jar.version, flags=jar.flags)


# -- jars from scratch ---------------------------------------------------------------
# Attack jars are written directly, not edited from a dumped model: the tree holds
# whatever nodes the test builds (REF "os.system", INSTANCE of a bit generator ...)
# and the header declares whatever names the test chooses, so the writer's refusals
# play no part and the loader is the only line of defence.
def name_entry(name: str, module: str | None = None, uses: Any = ("object",)) -> dict[str, Any]:
    """A header ``names`` entry; the module split defaults to everything before the last dot."""
    if module is None:
        module = name.rpartition(".")[0]
    return {"name": name, "module": module, "uses": sorted(uses) if not isinstance(uses, str) else [uses]}


def minimal_header(names: Any = ()) -> dict[str, Any]:
    """The smallest header the reader accepts (no environment: no version-skew warning)."""
    return {
        "producer": {"name": "jarcraft"},
        "environment": {},
        "object": {},
        "metadata": {},
        "names": [dict(n) for n in names],
        "layout": {},
    }


def build(
    root: Any,
    names: Any = (),
    buffers: Any = (),
    *,
    header: dict[str, Any] | None = None,
) -> bytes:
    """A jar whose tree is ``root`` (plain values and :class:`Ext` nodes), valid digests.

    ``names`` are header entries (see :func:`name_entry`); ``header`` replaces the
    minimal header (its layout is recomputed). Nothing is checked: the tree may use
    undeclared names and the header may declare anything.
    """
    jar = Jar(header if header is not None else minimal_header(names), b"", list(buffers))
    jar.root = root
    return encode(jar)


def compressed(
    tree: bytes,
    codec: str,
    *,
    stored: bytes | None = None,
    size: int | None = None,
    names: Any = (),
) -> bytes:
    """A jar whose object tree section is ``codec``-compressed (or ``stored`` as given).

    ``size`` is the decompressed size the layout declares (default: ``len(tree)``), so a
    test can make the header lie about what the compressed bytes produce.
    """
    if stored is None:
        if codec == "zstd":
            import zstandard

            stored = zstandard.ZstdCompressor(write_content_size=True).compress(tree)
        else:
            import lz4.block

            stored = lz4.block.compress(tree, store_size=False)
    header = minimal_header(names)
    header["layout"] = {
        "tree": {"length": len(stored), "size": len(tree) if size is None else size, "codec": codec},
        "buffers": [],
    }
    return assemble(header, [stored])

