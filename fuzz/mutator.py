"""A structure-aware mutator for skjar jars.

A random byte flip almost never survives skjar's XXH3 integrity digests, so a
plain fuzzer spends its time on "the integrity check failed". This mutator
takes a jar apart (preamble, JSON header, msgpack object tree, buffers), edits
the *decoded* parts the way an attacker would - ints to boundary values, node
codes swapped, names and uses changed, shapes resized, dtype descrs changed,
shared ids duplicated or removed, lists and buffers truncated or extended,
deep nesting, values replaced by other node kinds, whole subtrees copied from
other jars - and writes it back with valid digests, so the input reaches the
decoder. Some edits are deliberately raw (bytes of the msgpack tree, of the
JSON header, of a buffer, of a compressed frame) and only the digests are
repaired afterwards.

    mutate(data, rng) -> bytes          one mutated jar (never raises)
    crossover(a, b, rng) -> bytes       a's jar with a subtree or buffer of b's
    parse(data) -> Jar | None           lenient: no digest check
    encode(jar) -> bytes                valid layout table and digests

Nothing here uses skjar's reader or writer; the file layout follows
docs/format.md with the constants of ``skjar.format.spec`` (a self-test,
``tests/fuzz/test_fuzz_structured.py::test_reencoded_seeds_load``, catches a
drift between this encoder and the format).
"""

from __future__ import annotations

import copy
import json
import math
import random
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import xxhash

from skjar.format.spec import (
    ALIGNMENT,
    DIGEST_SIZE,
    END_MAGIC,
    FLAG_SIGNED,
    MAGIC,
    PREAMBLE_SIZE,
    SIGNATURE_SIZE,
    TRAILER_SIZE,
)

RawMutate = Callable[[bytes, int], bytes]  # (data, max_size) -> data, e.g. atheris.Mutate

# Node codes (docs/format.md section 9.2); a few unknown ones on purpose.
SHARED_DEF, SHARED_REF, TUPLE, SET, FROZENSET, BYTEARRAY, COMPLEX, BIGINT = 1, 2, 3, 4, 5, 6, 7, 8
SLICE, ELLIPSIS, STRLIST, STRDICT, ORDEREDDICT, DEFAULTDICT, RANGE, PARTIAL = (
    9, 10, 11, 12, 13, 14, 15, 16,
)
ZIPDICT = 17
NDARRAY, OBJARRAY, DTYPE, NPSCALAR = 20, 21, 22, 23
RANDOMSTATE, BITGENERATOR, GENERATOR, MASKEDARRAY = 24, 25, 26, 27
INSTANCE, RECONSTRUCT, REF, NAMEDTUPLE, NEWOBJ = 30, 31, 32, 33, 34

def _known_codes() -> tuple[int, ...]:
    from skjar.codec.registry import DECODERS

    return tuple(sorted({SHARED_DEF, SHARED_REF, *DECODERS}))


KNOWN_CODES = _known_codes()  # every code the reader has a decoder for
ODD_CODES = tuple(c for c in (0, 17, 19, 28, 29, 37, 100, 127, -1, -2, -128)
                  if c not in KNOWN_CODES)

INT_BOUNDARIES = (
    0, 1, -1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 100, 101, 127, 128, 255, 256, 1023, 1024,
    4095, 4096, 65535, 65536, 2**31 - 1, 2**31, -(2**31), 2**32 - 1, 2**32, 2**53, 2**62,
    2**63 - 1, -(2**63), 2**64 - 1, -2, -128, -129, 10**6, 10**9,
)
FLOAT_SPECIALS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-308, 5e-324, 1e308, -1e308,
                  float("inf"), float("-inf"), float("nan"), 2.0**63, 3.0)
DESCRS = (
    "<f8", ">f8", "<f4", "<f2", "<i8", ">i8", "<i4", "|i1", "|u1", "<u2", "<u4", "<u8", "|b1",
    "<c8", "<c16", "<U1", "<U0", "|S0", "|S1", "|S8", "|V0", "|V1", "|V8", "|O", "O",
    "<M8[D]", "<M8[ns]", "<m8[s]", "<M8", "<f16", "<g", "x", "", "<f8" * 20, "|V4294967295",
    "<U2147483647", "|S2147483648", "<i8[3]", "(2,)f8", "f8,i4", "<M8[2147483647Y]", "|b8",
    ["a", "<f8"], [["a", "<f8"]], [["a", "<f8"], ["a", "<i4"]], [["", "|V7"]],
    [["x", "<f8", [2, 3]]], [["x", "|O"]], [["x", "<f8", [2**31 - 1, 2**31 - 1]]],
    [[["t", "n"], "<i4"]], [["y", [["z", [["w", "<i2"]]]]]],
)
HOSTILE_NAMES = (
    ("os.system", "os"), ("posix.system", "posix"), ("builtins.eval", "builtins"),
    ("builtins.exec", "builtins"), ("builtins.getattr", "builtins"),
    ("builtins.__import__", "builtins"), ("subprocess.Popen", "subprocess"),
    ("numpy.load", "numpy"), ("numpy.memmap", "numpy"), ("pickle.loads", "pickle"),
    ("operator.attrgetter", "operator"), ("functools.reduce", "functools"),
    ("sklearn_evil.Model", "sklearn_evil"),
    ("sklearn.pipeline.Pipeline.__init__.__globals__", "sklearn.pipeline"),
    ("sklearn.pipeline.Pipeline", "sklearn"), ("collections.defaultdict", "collections"),
    ("numpy.ndarray", "numpy"), ("builtins.type", "builtins"), ("builtins.object", "builtins"),
)
USES = ("object", "value", "call")


# -- the tree: msgpack values with typed nodes as Ext ----------------------------
class Ext:
    """A typed node: code + unpacked payload. Hashed by identity (may be a map key)."""

    __slots__ = ("code", "payload")

    def __init__(self, code: int, payload: Any) -> None:
        self.code = code
        self.payload = payload

    def __repr__(self) -> str:
        return f"Ext({self.code}, {self.payload!r:.80})"


# msgpack's unpacker keeps its parse stack on the C stack (tens of KiB per
# call), so nested ext payloads, each unpacked by a nested call, exhaust an
# 8 MiB stack at a few hundred levels - well before Python's recursion limit.
MAX_UNPACK_DEPTH = 150


def unpack_tree(data: bytes, _depth: int = 0) -> Any:
    if _depth > MAX_UNPACK_DEPTH:
        raise ValueError("typed nodes nest too deeply to unpack")

    def hook(code: int, payload: bytes) -> Ext:
        return Ext(code, unpack_tree(payload, _depth + 1))

    return msgpack.unpackb(bytes(data), ext_hook=hook, raw=False, strict_map_key=False,
                           use_list=True)


def pack_tree(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, Ext):
            return msgpack.ExtType(obj.code, pack_tree(obj.payload))
        raise TypeError(f"cannot pack {type(obj).__name__}")

    return msgpack.packb(value, default=default, use_bin_type=True, strict_types=True)


# -- the file -----------------------------------------------------------------------
def align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


@dataclass
class Jar:
    """A parsed jar: decompressed sections and the codec each was stored with."""

    header: dict[str, Any]
    tree: bytes
    buffers: list[bytes]
    tree_codec: str = "none"
    buffer_codecs: list[str] = field(default_factory=list)
    # Per buffer: the pack it was stored in (format 1.2), or -1. Consecutive buffers of
    # one pack id and one codec are written as one pack again.
    packs: list[int] = field(default_factory=list)
    # Per buffer: the chunk size it is stored in chunks of (format 1.3), or 0.
    chunks: list[int] = field(default_factory=list)
    version: tuple[int, int] = (1, 0)
    flags: int = 0
    signature: bytes = b""
    # Post-encoding edits: raw header JSON (without layout) and layout lies.
    header_prefix: bytes | None = None
    lies: list[tuple[str, Any]] = field(default_factory=list)


def _decompress(data: bytes, codec: str, size: int) -> bytes:
    if codec == "none":
        return data
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=max(size, 1))
    import lz4.block

    return lz4.block.decompress(data, uncompressed_size=size)


def parse(data: bytes) -> Jar | None:
    """Take a jar apart without checking digests (raw mutations are repaired on encode)."""
    try:
        if not data.startswith(MAGIC) or len(data) < PREAMBLE_SIZE + TRAILER_SIZE:
            return None
        major, minor, flags, hlen = struct.unpack_from("<HHIQ", data, len(MAGIC))
        if hlen > len(data):
            return None
        header = json.loads(data[PREAMBLE_SIZE : PREAMBLE_SIZE + hlen])
        layout = header["layout"]
        t = layout["tree"]
        pos = align(PREAMBLE_SIZE + hlen)
        sections = [(t["length"], t["size"], t["codec"])] + [
            (b[0], b[1], b[2]) for b in layout["buffers"]
        ]
        members = [None] + [b[3] if len(b) == 4 else None for b in layout["buffers"]]
        chunk_sizes = []
        if len(sections) > 100_000:
            return None
        tree, buffers, codecs, packs = b"", [], [], []
        for i, (length, size, codec) in enumerate(sections):
            if i:
                pos = align(pos)
            if pos + length > len(data) or size > 64 << 20:
                return None
            sizes = members[i]
            if isinstance(sizes, dict):  # a chunked section (1.3): chunks decoded apart
                step, at, pieces = sizes["chunk"], pos, []
                for k, n in enumerate(sizes["lengths"]):
                    pieces.append(_decompress(data[at : at + n], codec, min(step, size - k * step)))
                    at += n
                out, sizes = b"".join(pieces), None
                chunk_sizes.append(step)
            else:
                out = _decompress(data[pos : pos + length], codec, size)
                if i:
                    chunk_sizes += [0] * (1 if sizes is None else len(sizes))
            pos += length
            if i == 0:
                tree = out
                continue
            parts = [out] if sizes is None else [
                out[at : at + n] for at, n in zip(_pack_offsets(sizes), sizes)
            ]
            buffers += parts
            codecs += [codec] * len(parts)
            packs += [-1 if sizes is None else i] * len(parts)
        signature = b""
        if flags & FLAG_SIGNED:
            signature = data[pos : pos + SIGNATURE_SIZE].ljust(SIGNATURE_SIZE, b"\0")
        return Jar(
            header=header,
            tree=tree,
            buffers=buffers,
            tree_codec=sections[0][2],
            buffer_codecs=codecs,
            packs=packs,
            chunks=chunk_sizes,
            version=(major, minor),
            flags=flags,
            signature=signature,
        )
    except Exception:
        return None


def _pack_offsets(sizes: list[int]) -> list[int]:
    offsets, pos = [], 0
    for n in sizes:
        pos = align(pos)
        offsets.append(pos)
        pos += n
    return offsets


def _sections(jar: Jar) -> list[tuple[bytes, str, list[int] | None, int]]:
    """The jar's buffers grouped as they will be stored: (data, codec, pack member sizes,
    chunk size)."""
    n = len(jar.buffers)
    codecs = (jar.buffer_codecs + ["none"] * n)[:n]
    packs = (jar.packs + [-1] * n)[:n]
    chunks = (jar.chunks + [0] * n)[:n]
    out: list[tuple[bytes, str, list[int] | None, int]] = []
    i = 0
    while i < n:
        j = i + 1
        if packs[i] >= 0 and codecs[i] in ("zstd", "lz4"):
            while j < n and packs[j] == packs[i] and codecs[j] == codecs[i]:
                j += 1
        if j - i >= 2:
            sizes = [len(b) for b in jar.buffers[i:j]]
            joined = bytearray(_pack_offsets(sizes)[-1] + sizes[-1])
            for at, b in zip(_pack_offsets(sizes), jar.buffers[i:j]):
                joined[at : at + len(b)] = b
            out.append((bytes(joined), codecs[i], sizes, 0))
        else:
            chunk = chunks[i] if 0 < chunks[i] < len(jar.buffers[i]) else 0
            out.append((jar.buffers[i], codecs[i], None, chunk))
        i = j
    return out


def _compress(data: bytes, codec: str, rng: random.Random | None = None) -> bytes:
    if codec == "zstd":
        import zstandard

        level = rng.choice((1, 3, -5, 19)) if rng else 3
        return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(data)
    if codec == "lz4":
        import lz4.block

        return lz4.block.compress(data, store_size=False)
    return data


def encode(jar: Jar, rng: random.Random | None = None) -> bytes:
    """Write ``jar`` with a recomputed layout table and both digests valid.

    Sections keep the codec they were parsed with (an empty or tiny section is
    stored raw). ``jar.lies`` are applied to the layout table afterwards: they
    change sizes/codecs the reader will see, never the lengths (which place
    the sections), so the file still passes the size and digest checks.
    """
    stored: list[tuple[bytes, int, str]] = []
    entries: list[list[Any]] = []
    for data, codec, sizes, chunk in [(jar.tree, jar.tree_codec, None, 0), *_sections(jar)]:
        if codec not in ("zstd", "lz4") or not data:
            codec = "none"
        if chunk and codec != "none":  # chunks compressed apart (1.3)
            pieces = [_compress(data[at : at + chunk], codec, rng)
                      for at in range(0, len(data), chunk)]
            packed = b"".join(pieces)
            stored.append((packed, len(data), codec))
            table = {"chunk": chunk, "lengths": [len(p) for p in pieces]}
            entries.append([len(packed), len(data), codec, table])
            continue
        packed = _compress(data, codec, rng)
        stored.append((packed, len(data), codec))
        entries.append([len(packed), len(data), codec] + ([sizes] if sizes else []))
    layout: dict[str, Any] = {
        "tree": {"length": len(stored[0][0]), "size": stored[0][1], "codec": stored[0][2]},
        "buffers": entries[1:],
    }
    for kind, lie in jar.lies:
        _apply_lie(layout, stored, kind, lie)
    header = {k: v for k, v in jar.header.items() if k != "layout"}
    if jar.header_prefix is not None:
        head = jar.header_prefix
    else:
        head = json.dumps(header, separators=(",", ":"), ensure_ascii=False, skipkeys=True,
                          default=_json_default).encode("utf-8", "surrogatepass")
        head = head[:-1] if head.endswith(b"}") else head
    sep = b"," if head not in (b"{", b"") else b""
    layout_json = json.dumps(layout, separators=(",", ":")).encode()
    head = head + sep + b'"layout":' + layout_json + b"}"
    out = bytearray(MAGIC + struct.pack("<HHIQ", jar.version[0], jar.version[1], jar.flags,
                                        len(head)))
    out += head
    structure = b""
    for i, (packed, _, _) in enumerate(stored):
        out += bytes(align(len(out)) - len(out))
        out += packed
        if i == 0:
            structure = xxhash.xxh3_128(bytes(out)).digest()
    if jar.flags & FLAG_SIGNED:
        out += jar.signature[:SIGNATURE_SIZE].ljust(SIGNATURE_SIZE, b"\0")
    out += structure + xxhash.xxh3_128(bytes(out)).digest() + END_MAGIC
    return bytes(out)


def _json_default(obj: Any) -> Any:
    """Header edits may borrow tree values: write them as the nearest JSON value."""
    if isinstance(obj, Ext):
        return obj.payload
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    raise TypeError(type(obj).__name__)


def _apply_lie(layout: dict[str, Any], stored: list[Any], kind: str, lie: Any) -> None:
    n = len(stored)
    i = lie[0] % n if n else 0
    entry: Any = layout["tree"] if i == 0 else layout["buffers"][i - 1]
    keys = ("length", "size", "codec")

    def get(k: str) -> Any:
        return entry[k] if i == 0 else entry[keys.index(k)]

    def put(k: str, v: Any) -> None:
        if i == 0:
            entry[k] = v
        else:
            entry[keys.index(k)] = v

    if kind == "size":
        put("size", lie[1](get("size"), get("length")))
    elif kind == "codec":
        put("codec", lie[1])
    elif kind == "extra_key":
        if i == 0:
            entry[lie[1]] = lie[2]
        else:
            entry.append(lie[2])
    elif kind == "type":
        put(lie[1], lie[2])
    elif kind == "chunks" and i and len(entry) == 4 and isinstance(entry[3], dict):
        lie[1](entry[3])
    elif kind == "members" and i and not (len(entry) == 4 and isinstance(entry[3], dict)):
        if len(entry) == 4:
            entry[3] = lie[1](entry[3])
        else:
            entry.append(lie[1]([entry[1]]))


def repair(data: bytes) -> bytes | None:
    """Recompute both digests of a file whose layout matches its length (after a raw edit)."""
    try:
        if not data.startswith(MAGIC) or len(data) < PREAMBLE_SIZE + TRAILER_SIZE:
            return None
        flags, hlen = struct.unpack_from("<IQ", data, len(MAGIC) + 4)
        header = json.loads(data[PREAMBLE_SIZE : PREAMBLE_SIZE + hlen])
        layout = header["layout"]
        pos = align(PREAMBLE_SIZE + hlen) + int(layout["tree"]["length"])
        tree_end = pos
        for entry in layout["buffers"]:
            pos = align(pos) + int(entry[0])
        if flags & FLAG_SIGNED:
            pos += SIGNATURE_SIZE
        if pos + TRAILER_SIZE != len(data) or tree_end > pos:
            return None
        out = bytearray(data)
        out[pos : pos + DIGEST_SIZE] = xxhash.xxh3_128(data[:tree_end]).digest()
        out[pos + DIGEST_SIZE : pos + 2 * DIGEST_SIZE] = xxhash.xxh3_128(data[:pos]).digest()
        out[pos + 2 * DIGEST_SIZE :] = END_MAGIC
        return bytes(out)
    except Exception:
        return None


# -- raw byte mutation (the fallback when atheris is not there) ----------------------
def byte_mutate(data: bytes, max_size: int, rng: random.Random) -> bytes:
    """A small libFuzzer-like byte mutator."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            del buf[pos : pos + rng.choice((1, 2, 4, 8, 16, 64))]
        elif op == 3:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 8))))
        elif op == 4 and len(buf) >= 8:
            p = min(pos, len(buf) - 8)
            width, fmt = rng.choice(((1, "<B"), (2, "<H"), (4, "<I"), (8, "<Q"), (4, ">I"),
                                     (8, ">Q")))
            value = rng.choice(INT_BOUNDARIES) % (1 << (8 * width))
            buf[p : p + width] = struct.pack(fmt, value)
        elif op == 5 and buf:
            a = rng.randrange(len(buf))
            chunk = buf[a : a + rng.choice((1, 4, 16, 64, 256))]
            buf[pos:pos] = chunk
        elif op == 6:
            del buf[pos:]
        elif op == 7 and len(buf) > 1:
            a, b = sorted((rng.randrange(len(buf)), rng.randrange(len(buf))))
            buf[a:b] = buf[a:b][::-1]
    return bytes(buf[:max_size])


# -- picking places in the tree ----------------------------------------------------
@dataclass
class Slot:
    """Where a value sits: ``get()`` reads it, ``set(v)`` replaces it."""

    get: Callable[[], Any]
    set: Callable[[Any], None]
    depth: int


def _slots(root_box: list[Any], limit: int = 50_000) -> list[Slot]:
    out: list[Slot] = []
    stack: list[tuple[Any, Any, int]] = [(root_box, 0, 0)]
    seen: set[int] = set()
    while stack and len(out) < limit:
        container, key, depth = stack.pop()
        if isinstance(container, Ext):
            value = container.payload
            out.append(Slot(lambda c=container: c.payload,
                            lambda v, c=container: setattr(c, "payload", v), depth))
        elif isinstance(container, dict):
            value = container[key]
            out.append(Slot(lambda c=container, k=key: c[k],
                            lambda v, c=container, k=key: c.__setitem__(k, v), depth))
        else:
            value = container[key]
            out.append(Slot(lambda c=container, k=key: c[k],
                            lambda v, c=container, k=key: c.__setitem__(k, v), depth))
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Ext):
            stack.append((value, None, depth + 1))
        elif isinstance(value, list):
            stack.extend((value, i, depth + 1) for i in range(len(value)))
        elif isinstance(value, dict):
            stack.extend((value, k, depth + 1) for k in value)
    return out


def _nodes(root: Any, limit: int = 50_000) -> list[Ext]:
    out: list[Ext] = []
    stack = [root]
    seen: set[int] = set()
    while stack and len(out) < limit:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, Ext):
            out.append(v)
            stack.append(v.payload)
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
    return out


# -- the mutation engine ------------------------------------------------------------
_TRUSTED: list[tuple[str, str, str]] | None = None


def trusted_pool() -> list[tuple[str, str, str]]:
    """(name, module, use) for every default-trusted name."""
    global _TRUSTED
    if _TRUSTED is None:
        from skjar import _trusted_names as t

        pool = []
        for use, specs in (("object", t.OBJECTS), ("value", t.VALUES), ("call", t.CALLS)):
            for spec in specs:
                module, _, qual = spec.partition(":")
                pool.append((f"{module}.{qual}", module, use))
        _TRUSTED = pool
    return _TRUSTED


class Mutator:
    """One mutation session over one parsed jar."""

    def __init__(self, jar: Jar, rng: random.Random, raw: RawMutate | None,
                 donors: list[Jar] | None = None) -> None:
        self.jar = jar
        self.rng = rng
        self.raw = raw
        self.donors = donors or []
        self._root: list[Any] | None = None  # [tree] once unpacked
        self.log: list[str] = []

    # the unpacked tree, boxed so the root itself can be replaced
    @property
    def box(self) -> list[Any]:
        if self._root is None:
            self._root = [unpack_tree(self.jar.tree)]
        return self._root

    def flush(self) -> None:
        if self._root is not None:
            self.jar.tree = pack_tree(self._root[0])
            self._root = None

    def raw_bytes(self, data: bytes, max_size: int = 1 << 20) -> bytes:
        if self.raw is not None and self.rng.random() < 0.8:
            try:
                return self.raw(data, max(max_size, len(data) + 64))
            except Exception:
                pass
        return byte_mutate(data, max(max_size, len(data) + 64), self.rng)

    # -- random values -------------------------------------------------------
    def any_int(self, old: int | None = None) -> int:
        r = self.rng
        choice = r.randrange(6)
        if choice < 3 or old is None:
            return r.choice(INT_BOUNDARIES)
        if choice == 3:
            return max(-(2**63), min(2**64 - 1, old + r.choice((-1, 1, -2, 2, 64, -64))))
        if choice == 4:
            return max(-(2**63), min(2**64 - 1, -old if old else 1))
        return r.randrange(-1000, 1000)

    def any_str(self) -> str:
        r = self.rng
        choice = r.randrange(7)
        names = [e.get("name") for e in self.jar.header.get("names", []) if isinstance(e, dict)]
        if choice == 0 and names:
            return str(r.choice(names))
        if choice == 1:
            return r.choice(trusted_pool())[0]
        if choice == 2:
            return r.choice(HOSTILE_NAMES)[0]
        if choice == 3:
            d = r.choice(DESCRS)
            return d if isinstance(d, str) else "<f8"
        if choice == 4:
            return r.choice(("", "a" * r.choice((1, 64, 65, 1000)), "é", "\u2028", "__dict__",
                             "__class__", "tree_", "n_features_in_", "classes_", "_fit_X",
                             "__setstate__", "0"))
        if choice == 5:
            return "".join(r.choice("abc_.0 ") for _ in range(r.randrange(8)))
        return r.choice(("nodes", "values", "node_count", "max_depth", "support_", "indptr",
                         "indices", "data", "_shape", "coords", "_n_support", "_probA"))

    def any_value(self, depth: int = 0) -> Any:
        r = self.rng
        kind = r.randrange(14 if depth < 3 else 7)
        if kind == 0:
            return None
        if kind == 1:
            return r.choice((True, False))
        if kind == 2:
            return self.any_int()
        if kind == 3:
            return r.choice(FLOAT_SPECIALS)
        if kind == 4:
            return self.any_str()
        if kind == 5:
            return bytes(r.randrange(256) for _ in range(r.choice((0, 1, 8, 16, 129))))
        if kind == 6:
            return self.subtree()
        if kind == 7:
            return [self.any_value(depth + 1) for _ in range(r.randrange(4))]
        if kind == 8:
            return {self.any_str(): self.any_value(depth + 1) for _ in range(r.randrange(3))}
        if kind == 9:
            code = r.choice(KNOWN_CODES + ODD_CODES)
            return Ext(code, self.any_value(depth + 1))
        if kind == 10:
            return Ext(SHARED_REF, self.any_shared_id())
        if kind == 11:
            return Ext(NDARRAY, [r.choice(DESCRS), [r.choice((0, 1, 2, 3, 8))],
                                 r.choice((False, True)), bytes(r.choice((0, 8, 16, 24)))])
        if kind == 12:
            name, _module, use = self.declare_random()
            code = {"object": INSTANCE, "value": REF, "call": RECONSTRUCT}[use]
            if code == INSTANCE:
                return Ext(INSTANCE, [name, r.choice((0, 1, 2)),
                                      r.choice((None, {}, self.any_value(depth + 1))), 0, None])
            if code == RECONSTRUCT:
                return Ext(RECONSTRUCT, [name, [self.any_value(depth + 1)
                                                for _ in range(r.randrange(4))], 0, None, 0, None])
            return Ext(REF, name)
        return Ext(TUPLE, [self.any_value(depth + 1) for _ in range(r.randrange(4))])

    def subtree(self) -> Any:
        """A random existing subtree, from this jar or a donor jar (a copy)."""
        r = self.rng
        source: list[Any]
        if self.donors and r.random() < 0.5:
            donor = r.choice(self.donors)
            try:
                source = [unpack_tree(donor.tree)]
            except Exception:
                source = self.box
            else:
                self._merge_names(donor)
        else:
            source = self.box
        slots = _slots(source, 5000)
        if not slots:
            return None
        return copy.deepcopy(r.choice(slots).get())

    def _merge_names(self, donor: Jar) -> None:
        mine = self.jar.header.setdefault("names", [])
        if not isinstance(mine, list):
            return
        have = {e.get("name") for e in mine if isinstance(e, dict)}
        for entry in donor.header.get("names", []):
            if isinstance(entry, dict) and entry.get("name") not in have:
                mine.append(copy.deepcopy(entry))

    def any_shared_id(self) -> int:
        ids = [n.payload[0] for n in _nodes(self.box[0])
               if n.code == SHARED_DEF and isinstance(n.payload, list) and n.payload]
        if ids and self.rng.random() < 0.7:
            return self.rng.choice(ids)
        return self.any_int()

    def declare(self, name: str, module: str, use: str) -> None:
        names = self.jar.header.setdefault("names", [])
        if not isinstance(names, list):
            return
        for entry in names:
            if isinstance(entry, dict) and entry.get("name") == name:
                uses = entry.get("uses")
                if isinstance(uses, list) and use not in uses:
                    uses.append(use)
                    uses.sort()
                return
        names.append({"name": name, "module": module, "uses": [use]})

    def declare_random(self) -> tuple[str, str, str]:
        r = self.rng
        if r.random() < 0.9:
            name, module, use = r.choice(trusted_pool())
        else:
            name, module = r.choice(HOSTILE_NAMES)
            use = r.choice(USES)
        self.declare(name, module, use)
        return name, module, use

    # -- edits of one value ----------------------------------------------------
    def edit_value(self, v: Any) -> Any:
        r = self.rng
        if r.random() < 0.12:
            return self.any_value()
        if isinstance(v, bool):
            return r.choice((not v, int(v), None, 2))
        if isinstance(v, int):
            return self.any_int(v) if r.random() < 0.9 else Ext(BIGINT, self._bigint_bytes())
        if isinstance(v, float):
            return r.choice(FLOAT_SPECIALS) if r.random() < 0.8 else int(v) if math.isfinite(
                v) else 0
        if isinstance(v, str):
            return self.any_str() if r.random() < 0.8 else v.encode("utf-8", "surrogatepass")
        if isinstance(v, bytes):
            return self.edit_bytes(v)
        if isinstance(v, list):
            return self.edit_list(v)
        if isinstance(v, dict):
            return self.edit_dict(v)
        if isinstance(v, Ext):
            return self.edit_ext(v)
        return self.any_value()

    def _bigint_bytes(self) -> bytes:
        r = self.rng
        n = r.choice((0, 1, 8, 9, 16, 300, 5000))
        return bytes(r.randrange(256) for _ in range(min(n, 64))) + bytes(max(0, n - 64))

    def edit_bytes(self, v: bytes) -> bytes:
        r = self.rng
        op = r.randrange(6)
        if op == 0:
            return v[: r.randrange(len(v) + 1)]
        if op == 1:
            return v + bytes(r.choice((1, 7, 8, 64, 129)))
        if op == 2:
            return v * r.choice((2, 3))
        if op == 3 and v:
            return bytes(_set_boundary_ints(bytearray(v), r))
        if op == 4:
            return b""
        return self.raw_bytes(v, len(v) + 256)

    def edit_list(self, v: list[Any]) -> Any:
        r = self.rng
        op = r.randrange(11)
        v = list(v)
        if op == 0:
            return v[: r.randrange(len(v) + 1)]
        if op == 1 and v:
            i = r.randrange(len(v))
            return v[:i] + v[i + 1 :]
        if op == 2 and v:
            return v + [copy.deepcopy(r.choice(v)) for _ in range(r.choice((1, 1, 2, 100)))]
        if op == 3:
            v.insert(r.randrange(len(v) + 1), self.any_value())
            return v
        if op == 4 and len(v) > 1:
            i, j = r.randrange(len(v)), r.randrange(len(v))
            v[i], v[j] = v[j], v[i]
            return v
        if op == 5:
            return Ext(r.choice((TUPLE, SET, FROZENSET, STRLIST, OBJARRAY)), v)
        if op == 6:
            return [v]
        if op == 7:
            return {i: x for i, x in enumerate(v)} if r.random() < 0.5 else {"0": v}
        if op == 8 and v:
            i = r.randrange(len(v))
            v[i] = self.edit_value(v[i])
            return v
        if op == 9:
            return []
        return v * 2

    def edit_dict(self, v: dict[Any, Any]) -> Any:
        r = self.rng
        op = r.randrange(8)
        v = dict(v)
        keys = list(v)
        if op == 0 and keys:
            del v[r.choice(keys)]
            return v
        if op == 1:
            v[self.any_str()] = self.any_value()
            return v
        if op == 2 and keys:
            k = r.choice(keys)
            v[self.any_value(3) if r.random() < 0.3 else self.any_str()] = v.pop(k)
            return _hashable_keys(v)
        if op == 3 and keys:
            k = r.choice(keys)
            v[k] = self.edit_value(v[k])
            return v
        if op == 4:
            return [[k, x] for k, x in v.items()]
        if op == 5:
            return Ext(r.choice((ORDEREDDICT, TUPLE)), [[k, x] for k, x in v.items()])
        if op == 6 and len(keys) > 1:
            a, b = r.sample(keys, 2)
            v[a], v[b] = v[b], v[a]
            return v
        return {}

    def edit_ext(self, v: Ext) -> Any:
        r = self.rng
        op = r.randrange(12)
        if op == 0:
            return Ext(r.choice(KNOWN_CODES + ODD_CODES), v.payload)
        if op == 1:
            return Ext(v.code, self.any_value())
        if op == 2:
            return Ext(v.code, self.edit_value(v.payload))
        if op == 3:
            return Ext(SHARED_DEF, [self.any_shared_id() if r.random() < 0.3 else
                                    r.randrange(1 << 20), v])
        if op == 4:
            return Ext(SHARED_REF, self.any_shared_id())
        if op == 5:
            return v.payload  # unwrap
        if op == 6:
            node: Any = v
            for _ in range(r.choice((2, 10, 99, 100, 101, 200))):
                node = Ext(r.choice((TUPLE, SHARED_DEF, TUPLE)), [node] if r.random() < 0.9 else
                           [r.randrange(1 << 30), node])
            return node
        if op == 7:
            return Ext(v.code, [v.payload] if not isinstance(v.payload, list) else v.payload[:-1])
        if op == 8 and isinstance(v.payload, list):
            return Ext(v.code, v.payload + [self.any_value()])
        if op == 9:
            nested: Any = v
            for _ in range(r.choice((50, 500, 1000, 1100))):
                nested = [nested]
            return nested
        if op == 10:
            return self.subtree()
        return Ext(v.code, copy.deepcopy(v.payload))

    # -- targeted edits ---------------------------------------------------------
    def op_tree_value(self) -> None:
        slots = _slots(self.box)
        if not slots:
            return
        s = self.rng.choice(slots)
        s.set(self.edit_value(s.get()))
        self.log.append("tree-value")

    def op_node(self) -> None:
        """Edit a typed node, with per-code knowledge of its payload."""
        nodes = _nodes(self.box[0])
        if not nodes:
            return self.op_tree_value()
        r = self.rng
        n = r.choice(nodes)
        p = n.payload
        self.log.append(f"node-{n.code}")
        if n.code == NDARRAY and isinstance(p, list) and len(p) == 4:
            return self.edit_array(n)
        if n.code in (INSTANCE, RECONSTRUCT, NEWOBJ, REF, NAMEDTUPLE, BITGENERATOR):
            return self.edit_named(n)
        if n.code in (SHARED_DEF, SHARED_REF):
            return self.edit_shared(n)
        if n.code in (STRLIST, STRDICT) and isinstance(p, list) and p:
            i = r.randrange(len(p))
            p[i] = self.edit_value(p[i]) if r.random() < 0.7 else self.any_int(
                p[i] if isinstance(p[i], int) else None)
            return None
        if n.code in (DTYPE, NPSCALAR, OBJARRAY) and r.random() < 0.5:
            if n.code == DTYPE:
                n.payload = r.choice(DESCRS)
            elif n.code == NPSCALAR and isinstance(p, list) and p:
                p[0] = r.choice(DESCRS)
            elif isinstance(p, list) and p:
                p[0] = self.edit_shape(p[0])
            return None
        n.payload = self.edit_value(p)
        return None

    def edit_shape(self, shape: Any) -> Any:
        r = self.rng
        if not isinstance(shape, list):
            return [r.choice((0, 1, 2))]
        shape = list(shape)
        op = r.randrange(7)
        if op == 0 and shape:
            i = r.randrange(len(shape))
            shape[i] = r.choice((0, 1, 2, -1, 2**31, 2**32, 2**62, 2**63 - 1, shape[i] * 2,
                                 shape[i] + 1, max(shape[i] - 1, 0)))
        elif op == 1:
            shape.append(r.choice((0, 1, 2, 2**31)))
        elif op == 2 and shape:
            shape.pop()
        elif op == 3:
            shape = [1] * r.choice((63, 64, 65, 100))
        elif op == 4:
            shape = shape[::-1]
        elif op == 5 and shape:
            shape = [math.prod(shape)] if all(isinstance(x, int) for x in shape) else []
        else:
            shape = [0, 2**62] if r.random() < 0.5 else [2**33, 2**33]
        return shape

    def edit_array(self, n: Ext) -> None:
        r = self.rng
        descr, shape, fortran, _index = n.payload
        op = r.randrange(11)
        if op in (9, 10):
            self.resize_array(n)
        elif op in (0, 1, 2):
            self.edit_array_data(n)
        elif op == 3:
            n.payload[0] = r.choice(DESCRS) if r.random() < 0.6 else _edit_descr(descr, r)
        elif op == 4:
            n.payload[1] = self.edit_shape(shape)
        elif op == 5:
            n.payload[2] = r.choice((not fortran, 0, None, 1))
        elif op == 6:
            nbuf = len(self.jar.buffers)
            n.payload[3] = r.choice((-1, nbuf, nbuf + 1, 2**32, 0, max(nbuf - 1, 0), None, "0",
                                     b"", bytes(129), bytes(8)))
        elif op == 7:
            # Two arrays swap their data: dtype/shape confusion with matching sizes.
            others = [m for m in _nodes(self.box[0]) if m.code == NDARRAY and m is not n
                      and isinstance(m.payload, list) and len(m.payload) == 4]
            if others:
                m = r.choice(others)
                n.payload[3], m.payload[3] = m.payload[3], n.payload[3]
        else:
            # Keep the byte count, change the dtype (e.g. f8 -> i8, or a structured view).
            try:
                dt = _dtype(descr)
                new = r.choice(("<i8", "<u8", "<f8", "<i4", "|u1", ">i8", "<c16", "<f4"))
                ndt = np.dtype(new)
                total = math.prod(shape) * dt.itemsize
                if total % ndt.itemsize == 0:
                    n.payload[0] = new
                    n.payload[1] = [total // ndt.itemsize]
            except Exception:
                n.payload[0] = r.choice(DESCRS)

    def resize_array(self, n: Ext) -> None:
        """Change an array's shape *and* data consistently (rows dropped, repeated, ...).

        The check "the buffer holds prod(shape) x itemsize bytes" then passes, and
        what is tested is whether the meaning checks notice e.g. a KD-tree with one
        bounds plane, or an SVC without support-vector rows.
        """
        r = self.rng
        descr, shape, fortran, index = n.payload
        try:
            dt = _dtype(descr)
            if isinstance(index, bytes):
                raw = index
            elif isinstance(index, int) and 0 <= index < len(self.jar.buffers):
                raw = self.jar.buffers[index]
            else:
                return
            arr = np.frombuffer(raw, dtype=dt, count=math.prod(shape)).reshape(
                shape, order="F" if fortran else "C")
        except Exception:
            return
        ops: list[Callable[[np.ndarray], np.ndarray]] = [
            lambda a: a[:0], lambda a: a[:1], lambda a: a[:-1], lambda a: a[1:],
            lambda a: np.concatenate([a, a]), lambda a: a.reshape(-1),
            lambda a: a[..., :0], lambda a: a[..., :1], lambda a: a[..., :-1],
            lambda a: np.concatenate([a, a], axis=-1), lambda a: a.T,
            lambda a: a[None], lambda a: a.reshape(a.shape[:-1]) if a.ndim and a.shape[-1] == 1
            else a[..., 0],
        ]
        try:
            new = np.ascontiguousarray(r.choice(ops)(arr) if arr.ndim else arr.reshape(1))
        except Exception:
            return
        data = new.tobytes()
        n.payload[1] = list(new.shape)
        n.payload[2] = False
        if isinstance(index, bytes):
            if len(data) <= 128:
                n.payload[3] = data
            else:  # too large to stay inline: out of line, in a new buffer
                self.jar.buffers.append(data)
                n.payload[3] = len(self.jar.buffers) - 1
        else:
            self.jar.buffers[index] = data

    def edit_array_data(self, n: Ext) -> None:
        """Set elements (or fields of elements) of the array to boundary values."""
        r = self.rng
        descr, shape, _fortran, index = n.payload
        try:
            dt = _dtype(descr)
            count = math.prod(shape)
        except Exception:
            return
        if isinstance(index, bytes):
            raw = bytearray(index)
        elif isinstance(index, int) and 0 <= index < len(self.jar.buffers):
            raw = bytearray(self.jar.buffers[index])
        else:
            return
        if dt.itemsize == 0 or count == 0 or len(raw) != count * dt.itemsize or dt.hasobject:
            if raw:
                raw = bytearray(_set_boundary_ints(raw, r))
        else:
            arr = np.frombuffer(bytes(raw), dtype=dt).copy()
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _set_elements(arr, dt, count, r)
            raw = bytearray(arr.tobytes())
        if isinstance(index, bytes):
            n.payload[3] = bytes(raw)
        else:
            self.jar.buffers[index] = bytes(raw)

    def edit_named(self, n: Ext) -> None:
        r = self.rng
        p = n.payload
        op = r.randrange(8)
        if op <= 2:
            # Another name, declared for the use this node needs: class confusion
            # inside the trusted set (state of one class handed to another).
            use = {INSTANCE: "object", NEWOBJ: "object", NAMEDTUPLE: "object",
                   BITGENERATOR: "object", REF: "value", RECONSTRUCT: "call"}[n.code]
            if r.random() < 0.85:
                candidates = [t for t in trusted_pool() if t[2] == use]
                name, module, _ = r.choice(candidates)
            else:
                name, module = r.choice(HOSTILE_NAMES)
            self.declare(name, module, use)
            if n.code in (NEWOBJ, REF):
                n.payload = name
            elif isinstance(p, list) and p:
                p[0] = name
            return
        if op == 3 and isinstance(p, list) and len(p) >= 5:
            # mode / kind fields
            i = (1 if n.code == INSTANCE else 2) if r.random() < 0.5 else (
                3 if n.code == INSTANCE else 4)
            if i < len(p):
                p[i] = r.choice((0, 1, 2, 3, -1, None, True))
            return
        if op == 4 and isinstance(p, list) and len(p) >= 3:
            i = 2 if n.code == INSTANCE else 3
            if i < len(p):
                p[i] = self.edit_value(p[i])
            return
        if op == 5 and isinstance(p, list) and len(p) >= 5:
            # Items for list/dict subclasses.
            i = 3 if n.code == INSTANCE else 4
            if i + 1 < len(p):
                p[i] = r.choice((1, 2))
                p[i + 1] = [[self.any_value(2), self.any_value(2)]] if p[i] == 2 else [
                    self.any_value(2)]
            return
        if op == 6:
            # Drop the name from the header, or a use of it.
            self.edit_header_names(drop_only=True)
            return
        n.payload = self.edit_value(p)

    def edit_shared(self, n: Ext) -> None:
        r = self.rng
        defs = [m for m in _nodes(self.box[0]) if m.code == SHARED_DEF
                and isinstance(m.payload, list) and len(m.payload) == 2]
        op = r.randrange(5)
        if n.code == SHARED_DEF and isinstance(n.payload, list) and len(n.payload) == 2:
            if op == 0 and defs:
                n.payload[0] = r.choice(defs).payload[0]  # duplicate id
                return
            if op == 1:
                n.payload[0] = self.any_int(n.payload[0] if isinstance(n.payload[0], int) else 0)
                return
            if op == 2:
                # Remove the definition: its refs now dangle (the value stays in place).
                _replace_node(self.box, n, n.payload[1])
                return
        if n.code == SHARED_REF:
            if op <= 2 and defs:
                n.payload = r.choice(defs).payload[0]
                return
            n.payload = self.any_shared_id() if op == 3 else self.any_int()
            return
        n.payload = self.edit_value(n.payload)

    def op_state_attr(self) -> None:
        """Edit one attribute in an instance's state dict (where meaning bugs live:
        thread counts, depths, sizes, flags that compiled code trusts)."""
        r = self.rng
        states = []
        for n in _nodes(self.box[0]):
            if n.code in (INSTANCE, RECONSTRUCT) and isinstance(n.payload, list):
                i = 2 if n.code == INSTANCE else 3
                if len(n.payload) > i:
                    st = n.payload[i]
                    if isinstance(st, Ext) and st.code == TUPLE and isinstance(st.payload, list):
                        st = st.payload[0] if st.payload else None
                    if isinstance(st, Ext) and st.code == ZIPDICT and isinstance(st.payload, list):
                        # [keys, values]: edit by position (the keys may be a shared ref)
                        values = st.payload[1] if len(st.payload) == 2 else None
                        st = dict(enumerate(values)) if isinstance(values, list) else None
                        if st:
                            states.append((values, st))
                        continue
                    if isinstance(st, dict) and st:
                        states.append((st, st))
        if not states:
            return self.op_tree_value()
        target, st = r.choice(states)
        scalars = [k for k, v in st.items() if isinstance(v, (int, float, str, bool))
                   or v is None]
        key = r.choice(scalars) if scalars and r.random() < 0.7 else r.choice(list(st))
        target[key] = self.edit_value(st[key])
        self.log.append(f"state-{key}")
        return None

    def op_transplant(self) -> None:
        """Replace a subtree by another subtree (same jar or a donor)."""
        slots = _slots(self.box)
        if not slots:
            return
        s = self.rng.choice(slots)
        s.set(self.subtree())
        self.log.append("transplant")

    def op_tree_raw(self) -> None:
        self.flush()
        self.jar.tree = self.raw_bytes(self.jar.tree, len(self.jar.tree) + 256)
        self.log.append("tree-raw")

    def op_buffer(self) -> None:
        r = self.rng
        b = self.jar.buffers
        op = r.randrange(8)
        self.log.append(f"buffer-{op}")
        if not b or op == 0:
            self._align_lists()
            b.append(bytes(r.choice((0, 1, 8, 64, 1000))))  # an unused buffer
            self.jar.buffer_codecs.append(r.choice(("none", "zstd", "lz4")))
            self.jar.packs.append(r.choice((-1, self.jar.packs[-1] if self.jar.packs else -1)))
            return
        i = r.randrange(len(b))
        if op == 1:
            self._align_lists()
            del b[i], self.jar.buffer_codecs[i], self.jar.packs[i], self.jar.chunks[i]
        elif op == 2:
            b[i] = b[i][: r.randrange(len(b[i]) + 1)]
        elif op == 3:
            b[i] = b[i] + bytes(r.choice((1, 8, 64)))
        elif op == 4 and b[i]:
            b[i] = bytes(_set_boundary_ints(bytearray(b[i]), r))
        elif op == 5:
            j = r.randrange(len(b))
            b[i], b[j] = b[j], b[i]
            if r.random() < 0.5:  # the pack ids stay: buffers change packs
                self._align_lists()
                packs = self.jar.packs
                packs[i], packs[j] = packs[j], packs[i]
        elif op == 6:
            b[i] = self.raw_bytes(b[i], len(b[i]) + 256)
        else:
            self.flush()
            # Out of line -> inline or the reverse, via the array node using it.
            for node in _nodes(self.box[0]):
                if node.code == NDARRAY and isinstance(node.payload, list) and len(
                        node.payload) == 4 and node.payload[3] == i:
                    node.payload[3] = b[i][:129]
                    break

    def edit_header_names(self, drop_only: bool = False) -> None:
        r = self.rng
        names = self.jar.header.get("names")
        if not isinstance(names, list):
            self.jar.header["names"] = []
            return
        op = r.randrange(2 if drop_only else 10)
        if names and op == 0:
            del names[r.randrange(len(names))]
        elif names and op == 1:
            e = r.choice(names)
            if isinstance(e, dict) and isinstance(e.get("uses"), list) and e["uses"]:
                e["uses"].pop(r.randrange(len(e["uses"])))
        elif op == 2:
            self.declare_random()
        elif names and op == 3:
            e = r.choice(names)
            if isinstance(e, dict) and isinstance(e.get("name"), str):
                parts = e["name"].split(".")
                e["module"] = ".".join(parts[: r.randrange(1, max(len(parts), 2))])
        elif names and op == 4:
            names.append(copy.deepcopy(r.choice(names)))
        elif names and op == 5:
            e = r.choice(names)
            if isinstance(e, dict):
                key = r.choice(("name", "module", "uses"))
                e[key] = self.edit_value(e.get(key))
        elif op == 6:
            e = r.choice(names) if names else {}
            if isinstance(e, dict):
                e["uses"] = sorted(set(r.sample(USES, r.randrange(1, 4))))
        elif op == 7:
            names.append(self.any_value(1))
        elif op == 8:
            for e in names:  # every name for every use
                if isinstance(e, dict):
                    e["uses"] = list(USES)
        else:
            r.shuffle(names)

    def op_header(self) -> None:
        r = self.rng
        h = self.jar.header
        op = r.randrange(12)
        self.log.append(f"header-{op}")
        if op <= 3:
            self.edit_header_names()
        elif op == 4:
            env = h.get("environment")
            if isinstance(env, dict) and isinstance(env.get("packages"), dict):
                pk = env["packages"]
                key = r.choice(list(pk) + ["scikit-learn", "numpy"])
                pk[key] = r.choice(("0.1", "", "99.0", None, 3, ["x"], "1.9.1"))
            else:
                h["environment"] = self.any_value()
        elif op == 5:
            key = r.choice(("producer", "environment", "object", "metadata", "names",
                            "compression", "layout"))
            if r.random() < 0.5:
                h.pop(key, None)
            else:
                h[key] = self.any_value(2)
        elif op == 6:
            # Deeply nested JSON, written by hand (json.dumps would recurse).
            depth = r.choice((100, 1000, 5000, 20000))
            deep = "".join(r.choice(('{"a":', "[")) for _ in range(depth))
            deep += "".join("}" if c == "{" else "]" for c in reversed(deep) if c in "{[")
            body = {k: v for k, v in h.items() if k not in ("layout", "metadata")}
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, skipkeys=True,
                              default=_json_default)[:-1]
            text += ("," if len(text) > 1 else "") + '"metadata":{"deep":' + deep + "}"
            self.jar.header_prefix = text.encode("utf-8", "surrogatepass")
        elif op == 7:
            h[self.any_str()] = self.any_value(1)
        elif op == 8:
            # Raw JSON mutation of everything but the layout.
            body = {k: v for k, v in h.items() if k != "layout"}
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, skipkeys=True,
                              default=_json_default).encode("utf-8", "surrogatepass")
            self.jar.header_prefix = self.raw_bytes(text[:-1], len(text) + 128)
        elif op == 9:
            self.jar.lies.append(self.random_lie())
        elif op == 10:
            self.jar.version = r.choice(((1, 0), (1, 1), (1, 2), (0, 9), (2, 0), (1, 65535)))
            self.jar.flags = r.choice((0, 1, 2, 0x80000000, self.jar.flags))
        else:
            h["compression"] = r.choice((None, {"codec": "zstd", "level": 99}, "lz4", []))

    def random_lie(self) -> tuple[str, Any]:
        r = self.rng
        i = r.randrange(len(self.jar.buffers) + 1)
        kind = r.choice(("size", "size", "codec", "extra_key", "type", "members", "chunks"))
        if kind == "size":
            fn = r.choice((
                lambda s, n: s + 1, lambda s, n: max(s - 1, 0), lambda s, n: s * 2,
                lambda s, n: n * 65536 + 65536, lambda s, n: n * 256 + 65536,
                lambda s, n: n * 65536 + 65537, lambda s, n: 0, lambda s, n: 2**63,
            ))
            return ("size", (i, fn))
        if kind == "codec":
            return ("codec", (i, r.choice(("none", "zstd", "lz4", "gzip", "", None))))
        if kind == "extra_key":
            return ("extra_key", (i, "offset", r.choice((0, 64, 2**40))))
        if kind == "members":  # a pack's member sizes that do not fill it, or a plain one split
            fn = r.choice((
                lambda m: m[:-1], lambda m: m + [0], lambda m: [m[0] + 1] + m[1:],
                lambda m: [m[0] - 64] + m[1:] + [64], lambda m: [0] * len(m),
                lambda m: [1] + m[1:], lambda m: [2**63] + m[1:], lambda m: [-1] + m[1:],
                lambda m: m + [1.5], lambda m: "m", lambda m: [m[0] // 2, m[0] - m[0] // 2],
            ))
            return ("members", (i, fn))
        if kind == "chunks":  # a chunk table that does not cut the section as its frames do
            edit = r.choice((
                lambda t: t["lengths"].reverse(), lambda t: t["lengths"].pop(),
                lambda t: t["lengths"].append(1), lambda t: t.__setitem__("chunk", t["chunk"] + 64),
                lambda t: t.__setitem__("chunk", t["chunk"] * 2), lambda t: t.__setitem__("chunk", 1024),
                lambda t: t["lengths"].__setitem__(0, t["lengths"][0] + 1),
                lambda t: t["lengths"].__setitem__(0, 0), lambda t: t.__setitem__("chunk", 2**40),
                lambda t: t.__setitem__("lengths", "1,2"), lambda t: t.pop("chunk"),
            ))
            return ("chunks", (i, edit))
        return ("type", (i, r.choice(("length", "size")),
                         r.choice((1.0, True, "8", None, -1, [8]))))

    def _align_lists(self) -> None:
        """Codecs and pack ids: one per buffer."""
        n = len(self.jar.buffers)
        self.jar.buffer_codecs = (self.jar.buffer_codecs + ["none"] * n)[:n]
        self.jar.packs = (self.jar.packs + [-1] * n)[:n]
        self.jar.chunks = (self.jar.chunks + [0] * n)[:n]

    def op_codec(self) -> None:
        """Store sections compressed (or not), sometimes with a frame that lies."""
        r = self.rng
        n = len(self.jar.buffers) + 1
        i = r.randrange(n)
        codec = r.choice(("zstd", "lz4", "none"))
        if i and codec != "none" and r.random() < 0.15:  # store a buffer in chunks, or not
            self._align_lists()
            self.jar.packs[i - 1] = -1
            self.jar.buffer_codecs[i - 1] = codec
            self.jar.chunks[i - 1] = r.choice((0, 65536, 65600, 1 << 17, 4096, 64))
            self.log.append(f"chunk-{i}-{self.jar.chunks[i - 1]}")
            return
        if i and r.random() < 0.3:  # pack a run of buffers together, or unpack one
            self._align_lists()
            j = r.randrange(i - 1, n - 1) + 1
            pack = r.choice((-1, 10**6 + i))
            for k in range(i - 1, j):
                self.jar.packs[k] = pack
                self.jar.buffer_codecs[k] = codec
            self.log.append(f"pack-{i}-{j}-{pack}")
            return
        if i == 0:
            self.jar.tree_codec = codec
        else:
            codecs = self.jar.buffer_codecs
            codecs.extend(["none"] * (len(self.jar.buffers) - len(codecs)))
            codecs[i - 1] = codec
        if codec != "none" and r.random() < 0.5:
            self.jar.lies.append(("size", (i, r.choice((
                lambda s, n: s + 1, lambda s, n: max(s - 1, 0), lambda s, n: n * 65536,
                lambda s, n: n * 255 + 65536, lambda s, n: 0)))))
        self.log.append(f"codec-{codec}")

    def op_crossover(self) -> None:
        if not self.donors:
            return self.op_transplant()
        donor = self.rng.choice(self.donors)
        if donor.buffers and self.rng.random() < 0.3:
            self.jar.buffers.append(self.rng.choice(donor.buffers))
            return None
        self.op_transplant()
        return None


def _replace_node(box: list[Any], old: Ext, new: Any) -> None:
    for s in _slots(box):
        if s.get() is old:
            s.set(new)
            return


def _hashable_keys(v: dict[Any, Any]) -> dict[Any, Any]:
    return {k: x for k, x in v.items() if not isinstance(k, (list, dict))}


def _dtype(descr: Any) -> np.dtype[Any]:
    def tup(d: Any) -> Any:
        if isinstance(d, str):
            return d
        return [(tuple(f[0]) if isinstance(f[0], list) else f[0], tup(f[1]),
                 *(tuple(s) for s in f[2:])) for f in d]

    return np.lib.format.descr_to_dtype(tup(descr))


def _edit_descr(descr: Any, r: random.Random) -> Any:
    if isinstance(descr, list) and descr:
        d = copy.deepcopy(descr)
        f = r.choice(d)
        if isinstance(f, list) and len(f) >= 2:
            op = r.randrange(4)
            if op == 0:
                f[1] = r.choice(DESCRS)
            elif op == 1:
                f[0] = r.choice(("", "a", ["t", "n"], 1))
            elif op == 2:
                f.append([r.choice((0, 1, 2, 2**31 - 1))])
            else:
                d.append(copy.deepcopy(f))  # duplicate field name
        return d
    return r.choice(DESCRS)


def _boundary_for(dt: np.dtype[Any], r: random.Random, old: Any) -> Any:
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return r.choice((info.min, info.max, 0, -1 if dt.kind == "i" else 0, 1,
                         int(old) + 1 if int(old) < info.max else 0,
                         int(old) - 1 if int(old) > info.min else 0, 2, 3, 100, 10**6
                         if info.max > 10**6 else 1))
    if dt.kind == "f":
        return r.choice((np.inf, -np.inf, np.nan, 0.0, -1.0, 1e300, -1e300))
    if dt.kind == "b":
        return r.choice((True, False))
    if dt.kind == "c":
        return complex(r.choice((np.nan, np.inf, 0.0)), 0)
    return old


def _set_elements(arr: np.ndarray, dt: np.dtype[Any], count: int, r: random.Random) -> None:
    for _ in range(r.choice((1, 1, 2, 4))):
        i = r.randrange(count)
        if dt.names:
            name = r.choice(dt.names)
            sub = dt.fields[name][0]  # type: ignore[index]
            arr[name][i] = _boundary_for(sub, r, arr[name][i])
        else:
            arr[i] = _boundary_for(dt, r, arr[i])
    if r.random() < 0.1 and not dt.names:
        arr[:] = _boundary_for(dt, r, arr[0])


def _set_boundary_ints(buf: bytearray, r: random.Random) -> bytearray:
    """Overwrite an aligned 1/2/4/8-byte little-endian integer with a boundary value."""
    for _ in range(r.choice((1, 1, 2, 3))):
        width, fmt = r.choice(((8, "<q"), (8, "<q"), (4, "<i"), (2, "<h"), (1, "<b"), (8, "<d")))
        if len(buf) < width:
            return buf
        pos = r.randrange(len(buf) // width) * width
        if fmt == "<d":
            struct.pack_into(fmt, buf, pos, r.choice(FLOAT_SPECIALS))
        else:
            lim = 1 << (8 * width - 1)
            value = r.choice((0, -1, 1, lim - 1, -lim, 2, 3, 7, 64, 1000))
            struct.pack_into(fmt, buf, pos, max(-lim, min(lim - 1, value)))
    return buf


# -- entry points ----------------------------------------------------------------------
OPS: tuple[tuple[str, float], ...] = (
    ("op_node", 5.0),
    ("op_tree_value", 3.0),
    ("op_state_attr", 2.5),
    ("op_transplant", 1.0),
    ("op_tree_raw", 1.5),
    ("op_buffer", 1.5),
    ("op_header", 2.0),
    ("op_codec", 0.7),
    ("op_crossover", 0.7),
)


def mutate_jar(jar: Jar, rng: random.Random, raw: RawMutate | None = None,
               donors: list[Jar] | None = None, edits: int | None = None) -> tuple[bytes, list[str]]:
    """Apply 1-4 structured edits to ``jar`` (modified in place) and encode it."""
    original_header = copy.deepcopy(jar.header)
    m = Mutator(jar, rng, raw, donors)
    names = [n for n, _ in OPS]
    weights = [w for _, w in OPS]
    for _ in range(edits if edits is not None else rng.choice((1, 1, 1, 2, 2, 3, 4))):
        op = rng.choices(names, weights)[0]
        try:
            getattr(m, op)()
        except RecursionError:
            m._root = None  # a too-deep edit: drop the unpacked tree, keep the bytes
        except (ValueError, TypeError, OverflowError, KeyError, IndexError,
                msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
                msgpack.exceptions.StackError):
            # The tree no longer unpacks as msgpack (after a raw edit): edit its bytes.
            m._root = None
            m.op_tree_raw()
    try:
        m.flush()
    except (ValueError, TypeError, OverflowError, RecursionError):
        pass  # unpackable edit: keep the last packed tree
    try:
        return encode(jar, rng), m.log
    except (ValueError, TypeError, OverflowError, RecursionError):
        # A header edit JSON cannot write: keep the tree and buffer edits only.
        jar.header, jar.header_prefix = original_header, None
        return encode(jar, rng), [*m.log, "header-edit-dropped"]


def mutate(data: bytes, rng: random.Random, raw: RawMutate | None = None,
           donors: list[Jar] | None = None, max_size: int = 1 << 22) -> bytes:
    """One mutated input. Never raises; falls back to a raw (byte-level) mutation."""
    try:
        if rng.random() < 0.9:
            jar = parse(data)
            if jar is not None:
                out, _ = mutate_jar(jar, rng, raw, donors)
                if len(out) <= max_size:
                    return out
        # Raw mutation of the whole file, then (usually) repair the digests so
        # the edit is judged by the decoder, not the integrity check.
        out = (raw(data, max_size) if raw is not None and rng.random() < 0.8
               else byte_mutate(data, max_size, rng))
        if rng.random() < 0.85:
            out = repair(out) or out
        return out[:max_size]
    except Exception:
        return byte_mutate(data, max_size, rng)


def crossover(a: bytes, b: bytes, rng: random.Random, max_size: int = 1 << 22) -> bytes:
    """``a`` with a subtree, name or buffer taken from ``b``."""
    try:
        ja, jb = parse(a), parse(b)
        if ja is None or jb is None:
            cut = rng.randrange(len(a) + 1)
            return (a[:cut] + b[rng.randrange(len(b) + 1):])[:max_size]
        m = Mutator(ja, rng, None, [jb])
        m.op_crossover()
        m.flush()
        out = encode(ja, rng)
        return out if len(out) <= max_size else a
    except Exception:
        return a
