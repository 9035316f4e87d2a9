"""Resource bombs: small files that ask for huge memory, time or stack.

Every size in a jar is checked before memory is allocated for it: array shapes
against their buffer, decompressed sizes against the codec's possible ratio and the
codec's own framing, section lengths against the file, nesting against fixed caps,
and hashing work against a budget linear in the file. Each refusal must also be
quick; the timing assertions are generous (a loaded CI machine), but far below what
the attacks would cost if they were not refused.
"""

from __future__ import annotations

import gc
import json
import struct
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

import jarcraft
import skjar
from jarcraft import Ext, name_entry
from skjar.codec import nodes
from skjar.format.spec import MAGIC, PREAMBLE_SIZE

SIZE = "size check before allocation"
NUMPY_SHAPE = "numpy's own shape checks (after the size check)"
LAYOUT = "layout must cover the file exactly"
RATIO = "decompression ratio cap"
FRAMING = "codec framing must match the header"
P61 = 2**61 - 1  # CPython's hash modulus for ints


def raw_tree(tree: bytes, buffers: list[bytes] = (), layout: Any = None) -> bytes:  # type: ignore[assignment]
    """A jar whose tree section is exactly ``tree`` (msgpack bytes written by hand)."""
    header = jarcraft.minimal_header()
    header["layout"] = layout or {
        "tree": {"length": len(tree), "size": len(tree), "codec": "none"},
        "buffers": [[len(b), len(b), "none"] for b in buffers],
    }
    return jarcraft.assemble(header, [tree, *buffers])


def quickly(refused: Callable[..., Any], load: Callable[[], Any], defence: str,
            seconds: float = 5.0, match: str | None = None) -> BaseException:
    start = time.perf_counter()
    exc = refused(load, defence, match)
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"refused, but only after {elapsed:.1f} s"
    return exc


# -- declared shapes far larger than the file ---------------------------------------------------
def _nd(descr: Any, shape: list[int], data: Any = b"\x00" * 8) -> Ext:
    return Ext(nodes.NDARRAY, [descr, shape, False, data])


SHAPES: dict[str, tuple[Ext, str]] = {
    "1 TiB of float64 from 8 bytes": (_nd("<f8", [2**40]), SIZE),
    "2**31 x 2**31": (_nd("<f8", [2**31, 2**31]), SIZE),
    "product overflows int64 (2**62 x 4)": (_nd("<f8", [2**62, 4]), SIZE),
    "product overflows uint64 (3 x 2**63)": (_nd("<i8", [3, 2**63]), SIZE),
    "a dimension of 2**64-1": (_nd("<f8", [2**64 - 1]), SIZE),
    "zero rows times 2**63 (empty buffer)": (_nd("<f8", [0, 2**63], b""), NUMPY_SHAPE),
    "zero rows times 2**62 x 2**62": (_nd("<f8", [0, 2**62, 2**62], b""), NUMPY_SHAPE),
    "zero-size dtype S0, 2**40 items": (_nd("|S0", [2**40], b""), SIZE),
    "zero-size dtype U0, 2**40 items": (_nd("<U0", [2**40], b""), SIZE),
    "zero-size struct, 2**62 items": (_nd([["a", "<f8", [0]]], [2**62], b""), SIZE),
    "65 dimensions": (_nd("<f8", [1] * 65), SIZE),
    "negative dimension": (_nd("<f8", [-1]), SIZE),
    "inline data larger than inline arrays": (_nd("<f8", [32], bytes(256)), SIZE),
    "buffer index past the table": (_nd("<f8", [2**20], 7), "buffers used exactly once"),
    "object array of 2**40 items, none given": (
        Ext(nodes.OBJARRAY, [[2**40], False, []]), SIZE),
    "object array of 0 x 2**62 x 2**62": (
        Ext(nodes.OBJARRAY, [[0, 2**62, 2**62], False, []]), NUMPY_SHAPE),
    "string list of 2**40 strings from 1 byte": (Ext(nodes.STRLIST, [2**40, 0]), SIZE),
    "dtype with a 2**60-byte sub-array": (
        _nd([["a", "<f8", [2**30, 2**30]]], [1], b""), "dtype description checks"),
    "dtype string of 100 000 characters": (_nd("<" + "f" * 100_000, [1]), "dtype description checks"),
    "dtype nested 50 deep": (
        _nd(json.loads('[["a", ' * 50 + '"<f8"' + "]]" * 50), [1]), "dtype description checks"),
    "dtype <U2**40": (_nd("<U1099511627776", [1]), "dtype description checks"),
    "numpy scalar of a 2**60-byte dtype": (
        Ext(nodes.NPSCALAR, [[["a", "<f8", [2**30, 2**30]]], b""]), "dtype description checks"),
}


@pytest.mark.parametrize("case", list(SHAPES))
def test_declared_sizes_far_beyond_the_file(case: str, refused: Any) -> None:
    node, defence = SHAPES[case]
    buffers = [b"x"] if case.startswith("string list") else []
    data = jarcraft.build(node, buffers=buffers)
    assert len(data) < 200_000
    quickly(refused, lambda: skjar.loads(data), defence)


# -- decompression bombs ------------------------------------------------------------------------------
def _zstd(payload: bytes, content_size: bool = True) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(write_content_size=content_size).compress(payload)


def _lz4(payload: bytes) -> bytes:
    import lz4.block

    return lz4.block.compress(payload, store_size=False)


TREE = msgpack.packb(list(range(300)))  # a valid tree of ~700 bytes


def _frame_claims(frame: bytes, size: int) -> bytes:
    """The zstd frame with its Frame_Content_Size field (2 bytes, +256) rewritten."""
    assert frame[4] == 0x60  # single segment, 2-byte content size
    return frame[:5] + struct.pack("<H", size - 256) + frame[7:]


BOMBS: dict[str, tuple[Callable[[], bytes], str]] = {
    "zstd: 2**40 bytes declared": (
        lambda: jarcraft.compressed(TREE, "zstd", size=2**40), RATIO),
    "zstd: 2**64-1 bytes declared": (
        lambda: jarcraft.compressed(TREE, "zstd", size=2**64 - 1), RATIO),
    "lz4: 2**32 bytes declared": (
        lambda: jarcraft.compressed(TREE, "lz4", size=2**32), RATIO),
    "lz4: 2**64-1 bytes declared": (
        lambda: jarcraft.compressed(TREE, "lz4", size=2**64 - 1), RATIO),
    "zstd: header and frame disagree": (
        lambda: jarcraft.compressed(TREE, "zstd", size=600_000), FRAMING),
    "zstd: frame and header lie together": (
        lambda: jarcraft.compressed(TREE, "zstd", stored=_frame_claims(_zstd(TREE), 65_000),
                                    size=65_000), FRAMING),
    "zstd: frame without a content size": (
        lambda: jarcraft.compressed(TREE, "zstd", stored=_zstd(TREE, content_size=False)),
        FRAMING),
    "zstd: a second frame after the first": (
        lambda: jarcraft.compressed(TREE, "zstd", stored=_zstd(TREE) + _zstd(b"x" * 10_000)),
        FRAMING),
    "zstd: garbage after the frame": (
        lambda: jarcraft.compressed(TREE, "zstd", stored=_zstd(TREE) + b"\x00" * 64), FRAMING),
    "zstd: truncated frame": (
        lambda: jarcraft.compressed(TREE, "zstd", stored=_zstd(TREE)[:-3]), FRAMING),
    "zstd: not zstd at all": (
        lambda: jarcraft.compressed(TREE, "zstd", stored=b"\x00" * 64), FRAMING),
    "lz4: header claims more than the block holds": (
        lambda: jarcraft.compressed(TREE, "lz4", size=60_000), FRAMING),
    "lz4: header claims less than the block holds": (
        lambda: jarcraft.compressed(TREE, "lz4", size=50), FRAMING),
    "lz4: garbage": (lambda: jarcraft.compressed(TREE, "lz4", stored=b"\xff" * 64), FRAMING),
    "an unknown codec (gzip)": (
        lambda: jarcraft.compressed(TREE, "gzip", stored=b"\x1f\x8b" + bytes(30)), FRAMING),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_decompression_bombs(case: str, refused: Any) -> None:
    make, defence = BOMBS[case]
    data = make()
    quickly(refused, lambda: skjar.loads(data), defence)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_buffer_bombs(codec: str, refused: Any) -> None:
    """The same caps apply to every buffer, not only the tree."""
    arr = np.zeros(1000)
    jar = jarcraft.decode(skjar.dumps({"a": arr}))
    stored = _zstd(jar.buffers[0]) if codec == "zstd" else _lz4(jar.buffers[0])
    tree = jar.tree
    header = jarcraft.minimal_header()
    header["layout"] = {"tree": {"length": len(tree), "size": len(tree), "codec": "none"},
                        "buffers": [[len(stored), 2**40, codec]]}
    data = jarcraft.assemble(header, [tree, stored])
    quickly(refused, lambda: skjar.loads(data), RATIO)


def test_honest_compression_still_loads() -> None:
    """Control: real zstd/lz4 sections within the caps load."""
    for codec in ("zstd", "lz4"):
        assert skjar.loads(jarcraft.compressed(TREE, codec)) == list(range(300))
        value = {"a": np.zeros(100_000)}
        np.testing.assert_array_equal(skjar.loads(skjar.dumps(value, compress=codec))["a"],
                                      value["a"])


# -- nesting --------------------------------------------------------------------------------------------
def _typed_nest(depth: int) -> bytes:
    value = msgpack.packb(None)
    for _ in range(depth):
        value = msgpack.packb(msgpack.ExtType(nodes.TUPLE, b"\x91" + value))
    return value


NESTING: dict[str, tuple[bytes, str]] = {
    "typed nodes 101 deep": (_typed_nest(101), "typed-node nesting cap"),
    "typed nodes 20 000 deep": (_typed_nest(20_000), "typed-node nesting cap"),
    "native arrays 1 030 deep": (b"\x91" * 1030 + b"\xc0", "msgpack native depth limit"),
    "native arrays 1 000 000 deep": (b"\x91" * 1_000_000 + b"\xc0", "msgpack native depth limit"),
    "native maps 5 000 deep": (b"\x81\xa1k" * 5000 + b"\xc0", "msgpack native depth limit"),
}


@pytest.mark.parametrize("case", list(NESTING))
def test_deeply_nested_trees(case: str, refused: Any) -> None:
    tree, defence = NESTING[case]
    data = raw_tree(tree)
    quickly(refused, lambda: skjar.loads(data), defence)


def test_deep_but_allowed_nesting_loads_without_crashing() -> None:
    """Control: 99 typed levels each holding 1 000 native levels (a 99 000-deep value)
    is within both caps: it loads, and freeing it does not overflow the C stack."""
    inner = msgpack.packb(None)
    for _ in range(99):
        inner = msgpack.packb(msgpack.ExtType(nodes.TUPLE, b"\x91" + b"\x91" * 1000 + inner))
    value = skjar.loads(raw_tree(inner))
    assert isinstance(value, tuple)
    del value


# -- enormous element counts -------------------------------------------------------------------------
COUNTS = {
    "array32 header claiming 2**32-1 items": b"\xdd\xff\xff\xff\xff",
    "map32 header claiming 2**32-1 pairs": b"\xdf\xff\xff\xff\xff",
    "str32 header claiming 4 GiB": b"\xdb\xff\xff\xff\xff",
    "bin32 header claiming 4 GiB": b"\xc6\xff\xff\xff\xff",
    "ext32 header claiming 4 GiB": b"\xc9\xff\xff\xff\xff\x03",
    "array32 inside a typed node": b"\xc7\x05\x03\xdd\xff\xff\xff\xff",
    "many small arrays claiming 2**16 items each": b"\x9f" + b"\xdc\xff\xff" * 15,
}


@pytest.mark.parametrize("case", list(COUNTS))
def test_enormous_element_counts(case: str, refused: Any) -> None:
    data = raw_tree(COUNTS[case])
    quickly(refused, lambda: skjar.loads(data), "msgpack length limits")


# -- the layout: offsets cannot be stored, lengths must add up ---------------------------------------
def _two_buffers() -> bytes:
    jar = jarcraft.decode(skjar.dumps({"a": np.arange(40.0), "b": np.arange(50.0)}))
    return jarcraft.encode(jar)


def _with_layout(edit: Callable[[dict[str, Any]], None]) -> bytes:
    """A valid two-buffer jar whose layout table is edited (sections left as they were)."""
    jar = jarcraft.decode(_two_buffers())
    edit(jar.header["layout"])
    data = jarcraft.encode(jar, layout=False)
    try:
        return jarcraft.redigest(data)  # digests an attacker would compute for this layout
    except (TypeError, KeyError, ValueError, OverflowError):
        return data  # a layout too broken to say where the tree ends: digest left as is


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(layout: dict[str, Any]) -> None:
        target = layout
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


LAYOUTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    # the tree claims a byte of padding: the tree no longer parses exactly
    "tree one byte longer (into the padding)": (
        lambda lay: lay["tree"].update(length=lay["tree"]["length"] + 1,
                                       size=lay["tree"]["size"] + 1), "tree parses exactly"),
    # the tree's last byte becomes padding, which must be zero
    "tree one byte shorter": (
        lambda lay: lay["tree"].update(length=lay["tree"]["length"] - 1,
                                       size=lay["tree"]["size"] - 1), "zero padding"),
    "buffer overlapping the next (longer)": (
        lambda lay: lay["buffers"][0].__setitem__(slice(0, 2), [lay["buffers"][0][0] + 64] * 2),
        LAYOUT),
    "buffers swapped lengths": (lambda lay: lay["buffers"].reverse(), LAYOUT),
    "a buffer of 2**64-1 bytes": (_set(("buffers", 0), [2**64 - 1, 2**64 - 1, "none"]), LAYOUT),
    "a tree of 2**64-1 bytes": (
        _set(("tree",), {"length": 2**64 - 1, "size": 2**64 - 1, "codec": "none"}), LAYOUT),
    "buffer lengths summing to 2**64 + 320": (
        lambda lay: lay["buffers"].insert(0, [2**64, 2**64, "none"]), LAYOUT),
    "a negative length": (_set(("buffers", 1, 0), -64), LAYOUT),
    "a float length": (_set(("buffers", 1, 0), 400.0), LAYOUT),
    "a boolean length": (_set(("tree", "length"), True), LAYOUT),
    "a string length": (_set(("tree", "length"), "100"), LAYOUT),
    "size differs from length without a codec": (_set(("buffers", 0, 1), 10**12), LAYOUT),
    "a buffer entry of two items": (_set(("buffers", 0), [320, 320]), LAYOUT),
    "buffers not a list": (_set(("buffers",), {"0": [320, 320, "none"]}), LAYOUT),
    "no tree entry": (lambda lay: lay.pop("tree"), LAYOUT),
    "an extra buffer entry": (lambda lay: lay["buffers"].append([0, 0, "none"]), LAYOUT),
    "a buffer entry missing": (lambda lay: lay["buffers"].pop(), LAYOUT),
}


@pytest.mark.parametrize("case", list(LAYOUTS))
def test_lengths_that_do_not_add_up(case: str, refused: Any) -> None:
    """The layout stores no offsets, only lengths: every byte of the file is accounted
    for, so overlapping or out-of-range sections cannot even be expressed; lengths that
    disagree with the file are refused before any section is read."""
    edit, defence = LAYOUTS[case]
    data = _with_layout(edit)
    quickly(refused, lambda: skjar.loads(data), defence)


PACK = "pack members fill the pack exactly"


def _packed(edit: Callable[[list[Any]], None], version: tuple[int, int] | None = None) -> bytes:
    """A zstd jar whose one pack entry (three small arrays) is edited; digests recomputed."""
    data = skjar.dumps([np.arange(100.0), np.arange(70.0), np.arange(50.0)], compress="zstd")
    header_length = struct.unpack_from("<Q", data, 16)[0]
    header = json.loads(data[24 : 24 + header_length])
    (entry,) = [e for e in header["layout"]["buffers"] if len(e) == 4]
    edit(entry)
    stored = jarcraft.stored_sections(data)
    return jarcraft.assemble(header, stored, version=version or (1, 2))


PACKS: dict[str, tuple[bytes, str]] = {
    # members that claim more than the pack holds: a bomb through the member list
    "a member of 2**40 bytes": (_packed(lambda e: e[3].__setitem__(0, 2**40)), PACK),
    "members summing past 2**64": (_packed(lambda e: e[3].extend([2**64 - 1, 2**64 - 1])), PACK),
    "a pack and its last member both 2**40": (
        _packed(lambda e: (e.__setitem__(1, 2**40), e[3].__setitem__(-1, 2**40 - 1280))), RATIO),
    "a negative member": (_packed(lambda e: e[3].__setitem__(1, -560)), PACK),
    "a float member": (_packed(lambda e: e[3].__setitem__(1, 560.0)), PACK),
    "one member fewer": (_packed(lambda e: e[3].pop()), PACK),
    "a member list of one": (_packed(lambda e: e.__setitem__(3, [e[1]])), PACK),
    "a member list that is a string": (_packed(lambda e: e.__setitem__(3, "800,560,400")), PACK),
    "an uncompressed pack": (_packed(lambda e: e.__setitem__(2, "none")), LAYOUT),
    "a pack in a version 1.1 file": (_packed(lambda e: None, version=(1, 1)), PACK),
}


@pytest.mark.parametrize("case", list(PACKS))
def test_packs_cannot_claim_what_they_do_not_hold(case: str, refused: Any) -> None:
    """A pack (format 1.2) lists the sizes of the buffers compressed together; they must
    fill its declared size exactly, which the ratio cap bounds: all checked from the
    header, before a byte is decompressed or allocated."""
    data, defence = PACKS[case]
    quickly(refused, lambda: skjar.loads(data), defence)
    quickly(refused, lambda: skjar.inspect(data), defence)


CHUNKS = "chunks cover the section exactly"
CODEC = "codec framing must match the header"


def _chunked(
    edit: Callable[[list[Any]], None], version: tuple[int, int] | None = None, codec: str = "zstd"
) -> bytes:
    """A jar whose one chunked entry (5 MB in two chunks, format 1.3) is edited; digests
    recomputed."""
    value = np.tile(np.arange(1000.0), 655)  # 5,240,000 bytes: chunks of 4 MiB and 1 MB
    data = skjar.dumps(value, compress=codec)
    header_length = struct.unpack_from("<Q", data, 16)[0]
    header = json.loads(data[24 : 24 + header_length])
    (entry,) = [e for e in header["layout"]["buffers"] if len(e) == 4]
    assert len(entry[3]["lengths"]) == 2
    edit(entry)
    stored = jarcraft.stored_sections(data)
    return jarcraft.assemble(header, stored, version=version or (1, 3))


def _lengths(edit: Callable[[list[int]], None]) -> Callable[[list[Any]], None]:
    return lambda e: edit(e[3]["lengths"])


def _rechunk(chunk: Any) -> Callable[[list[Any]], None]:
    return lambda e: e[3].__setitem__("chunk", chunk)


CHUNKED: dict[str, tuple[bytes, str]] = {
    "a chunk size below the minimum": (_chunked(_rechunk(1024)), CHUNKS),
    "a chunk size not a multiple of 64": (_chunked(_rechunk((3 << 20) + 1)), CHUNKS),
    "a chunk size that is a float": (_chunked(_rechunk(4194304.0)), CHUNKS),
    "one chunk for the whole section": (_chunked(_rechunk(8 << 20)), CHUNKS),
    "a chunk size that leaves a chunk unlisted": (_chunked(_rechunk(2 << 20)), CHUNKS),
    "a chunk length missing": (_chunked(_lengths(lambda n: n.pop())), CHUNKS),
    "an extra chunk length": (_chunked(_lengths(lambda n: n.append(1))), CHUNKS),
    "a zero chunk length": (
        _chunked(_lengths(lambda n: (n.__setitem__(1, n[1] + n[0]), n.__setitem__(0, 0)))), CHUNKS),
    "a negative chunk length": (_chunked(_lengths(lambda n: n.__setitem__(0, -n[0]))), CHUNKS),
    "a boolean chunk length": (_chunked(_lengths(lambda n: n.__setitem__(0, True))), CHUNKS),
    "chunk lengths that do not add up": (
        _chunked(_lengths(lambda n: n.__setitem__(0, n[0] + 64))), CHUNKS),
    "a chunk table without lengths": (_chunked(lambda e: e[3].pop("lengths")), CHUNKS),
    "a chunk table that is a list of dicts": (
        _chunked(lambda e: e.__setitem__(3, [e[3], e[3]])), PACK),
    "an uncompressed chunked section": (_chunked(lambda e: e.__setitem__(2, "none")), LAYOUT),
    "chunks in a version 1.2 file": (_chunked(lambda e: None, version=(1, 2)), PACK),
    # a bomb through the chunk table: the section and its chunk size both 2**40
    "a chunk that claims 2**40 bytes": (
        _chunked(lambda e: (e.__setitem__(1, 2**40 + 2**20), e[3].__setitem__("chunk", 2**40))),
        RATIO),
    # well-formed tables that lie about where the frames are: each chunk's frame is
    # checked against its share of the section before anything is allocated
    "the chunks' lengths swapped": (_chunked(_lengths(lambda n: n.reverse())), CODEC),
    "a chunk size that moves the cut": (_chunked(_rechunk(3 << 20)), CODEC),
    "lz4: a chunk size that moves the cut": (_chunked(_rechunk(3 << 20), codec="lz4"), CODEC),
    # (lz4 packs this array near its 255x limit: the short chunk now claims too much)
    "lz4: the chunks' lengths swapped": (
        _chunked(_lengths(lambda n: n.reverse()), codec="lz4"), RATIO),
}


@pytest.mark.parametrize("case", list(CHUNKED))
def test_chunks_cannot_claim_what_they_do_not_hold(case: str, refused: Any) -> None:
    """A chunked section (format 1.3) lists its chunk size and each chunk's stored length:
    they must cut the section into exactly the chunks listed, each within the ratio cap,
    all checked from the header; each chunk's codec framing must then agree with its
    share, before anything is allocated."""
    data, defence = CHUNKED[case]
    quickly(refused, lambda: skjar.loads(data), defence)
    if defence != CODEC:  # the header alone says so
        quickly(refused, lambda: skjar.inspect(data), defence)


def test_buffers_are_used_exactly_once(refused: Any) -> None:
    arr = Ext(nodes.NDARRAY, ["<f8", [20], False, 0])
    buf = np.arange(20.0).tobytes()
    twice = jarcraft.build([arr, Ext(nodes.NDARRAY, ["<f8", [20], False, 0])], buffers=[buf])
    unused = jarcraft.build([arr], buffers=[buf, buf])
    refused(lambda: skjar.loads(twice), "buffers used exactly once", match="used twice")
    refused(lambda: skjar.loads(unused), "buffers used exactly once", match="never used")


# -- the header ----------------------------------------------------------------------------------------------
def _preamble_with(length: int, tail: bytes = b"") -> bytes:
    return MAGIC + struct.pack("<HHIQ", 1, 0, 0, length) + tail


def _header_bytes(raw: bytes) -> bytes:
    return jarcraft.assemble(raw, [msgpack.packb(1)])


def _many_buffers() -> bytes:
    """A header listing 1 500 000 buffers (~18 MB): the 16 MiB header cap binds long
    before the 10 000 000-buffer cap, and before the header is even read."""
    head = b'{"layout":{"tree":{"length":0,"size":0,"codec":"none"},"buffers":['
    head += b'[0,0,"none"],' * 1_500_000 + b'[0,0,"none"]]}}'
    return _preamble_with(len(head), head)


HEADERS: dict[str, tuple[Callable[[], bytes], str]] = {
    "1 500 000 buffer entries": (_many_buffers, "header length bounds"),
    "header length 2**64-1": (lambda: _preamble_with(2**64 - 1, b"{}" * 10), "header length bounds"),
    "header length 2**63": (lambda: _preamble_with(2**63, b"{}"), "header length bounds"),
    "header length 16 MiB + 1": (lambda: _preamble_with(16 * 2**20 + 1, b"{}"),
                                 "header length bounds"),
    "header length 0": (lambda: _preamble_with(0, b"{}"), "header length bounds"),
    "header larger than the file": (lambda: _preamble_with(10_000, b'{"a":1}' * 10),
                                    "header length bounds"),
    "header JSON nested 100 000 deep": (
        lambda: _header_bytes(b"[" * 100_000 + b"]" * 100_000), "strict header JSON"),
    "header with a 100 000-digit number": (
        lambda: _header_bytes(b'{"x": ' + b"9" * 100_000 + b"}"), "strict header JSON"),
    "header with NaN": (lambda: _header_bytes(b'{"x": NaN}'), "strict header JSON"),
    "header with duplicate keys": (
        lambda: _header_bytes(b'{"names": [], "names": []}'), "strict header JSON"),
    "header not UTF-8": (lambda: _header_bytes(b'{"\xff": 1}'), "strict header JSON"),
    "header an array": (lambda: _header_bytes(b"[]"), "strict header JSON"),
    "header without names": (
        lambda: _header_bytes(json.dumps({k: v for k, v in jarcraft.minimal_header().items()
                                          if k != "names"}).encode()), "strict header JSON"),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_hostile_headers(case: str, refused: Any) -> None:
    make, defence = HEADERS[case]
    data = make()
    quickly(refused, lambda: skjar.loads(data), defence)
    # the header-only readers (the scanner) refuse it the same way
    with pytest.raises(skjar.CorruptFileError):
        skjar.audit(data)


def test_a_large_valid_header_is_fine(held: Any) -> None:
    """Control for the cap: 100 000 metadata entries (a 2 MB header) load."""
    header = jarcraft.minimal_header()
    header["metadata"] = {f"k{i}": i for i in range(100_000)}
    data = jarcraft.build([1], header=header)
    assert len(data) > PREAMBLE_SIZE + 1_000_000 and skjar.loads(data) == [1]


# -- shared references: linear, and no exponential walks --------------------------------------------
def _shared_refs(n: int, kind: str) -> tuple[bytes, list[dict[str, Any]]]:
    lr = "sklearn.linear_model._base.LinearRegression"
    if kind == "list":
        first: Any = [1, 2, 3]
    elif kind == "instance":
        first = Ext(nodes.INSTANCE, [lr, 1, {"fit_intercept": True}, 0, None])
    elif kind == "tuple":
        first = Ext(nodes.TUPLE, [1, 2, 3])
    else:
        first = Ext(nodes.REF, "numpy.log1p")
    if kind == "REF nodes to one name":
        items: Any = [Ext(nodes.REF, "numpy.log1p")] * n
    else:
        items = [Ext(nodes.SHARED_DEF, [0, first]), *([Ext(nodes.SHARED_REF, 0)] * n)]
    names = [name_entry(lr), name_entry("numpy.log1p", "numpy", ("value",))]
    return jarcraft.build(items, names), names


def _best(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of `repeat` calls, with the cyclic collector off while timing: these
    tests measure how a walk grows with its input, and a full collection landing in one
    call costs in proportion to the whole test process's heap, not to the input."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return min(times)


@pytest.mark.parametrize("kind", ["list", "instance", "tuple", "REF nodes to one name"])
def test_many_references_to_one_node_stay_linear(kind: str, held: Any) -> None:
    """10**3 vs 10**5 references: audit (header only) and load grow at most linearly
    (ratio ~100; a quadratic walk would give ~10 000; the bound is generous)."""
    small, _ = _shared_refs(1_000, kind)
    large, _ = _shared_refs(100_000, kind)
    skjar.loads(small)
    t_small = max(_best(lambda: skjar.loads(small), 5), 2e-4)
    t_large = _best(lambda: skjar.loads(large), 2)
    assert t_large / t_small < 1500, f"load: {t_small:.5f} s -> {t_large:.5f} s"
    a_small = max(_best(lambda: skjar.audit(small), 5), 1e-4)
    a_large = _best(lambda: skjar.audit(large), 3)
    assert a_large / a_small < 1500, f"audit: {a_small:.5f} s -> {a_large:.5f} s"
    held("linear audit and load")


def test_audit_is_linear_in_the_names_declared(held: Any, refused: Any) -> None:
    """10**3 vs 2 * 10**4 declared (untrusted) names: audit and refusal stay linear
    (ratio ~20; quadratic would be ~400)."""

    def jar(n: int) -> bytes:
        return jarcraft.build(1, [name_entry(f"evil{i}.f", uses=("value",)) for i in range(n)])

    def audit_cold(data: bytes) -> None:
        # The name checks remember up to 4,096 names a process has seen: warm, the
        # small jar's names would all be remembered and the large one's mostly not,
        # which is no measure of how the work grows (it made the ratio ~85, and 157
        # on a busy machine).
        from skjar import api
        from skjar.format import header

        header._WELL_FORMED.clear()
        api._DEFAULT_INFOS.clear()
        skjar.audit(data)

    small, large = jar(1_000), jar(20_000)
    t_small = max(_best(lambda: audit_cold(small), 3), 1e-3)
    t_large = _best(lambda: audit_cold(large), 3)
    assert t_large / t_small < 150, f"audit: {t_small:.4f} s -> {t_large:.4f} s"
    exc = quickly(refused, lambda: skjar.loads(large), "untrusted name (header check, before import)",
                  seconds=20)
    assert len(exc.names) == 20_000  # type: ignore[attr-defined]
    held("linear audit and load")
    from skjar import api

    api._DEFAULT_INFOS.clear()  # (full of these names, it would leave later tests no room)


def _exponential_tuple(levels: int) -> tuple[list[Any], Ext]:
    """t0 = (1, 2); t_i = (t_{i-1}, t_{i-1}): 2**levels leaves in ~20 bytes per level."""
    defs = [Ext(nodes.SHARED_DEF, [0, Ext(nodes.TUPLE, [1, 2])])]
    for i in range(1, levels):
        defs.append(Ext(nodes.SHARED_DEF, [i, Ext(nodes.TUPLE, [Ext(nodes.SHARED_REF, i - 1)] * 2)]))
    return defs, Ext(nodes.SHARED_REF, levels - 1)


def _deep_tuple(levels: int) -> tuple[list[Any], Ext]:
    defs = [Ext(nodes.SHARED_DEF, [0, Ext(nodes.TUPLE, [1])])]
    for i in range(1, levels):
        defs.append(Ext(nodes.SHARED_DEF, [i, Ext(nodes.TUPLE, [Ext(nodes.SHARED_REF, i - 1)])]))
    return defs, Ext(nodes.SHARED_REF, levels - 1)


BUNCH = "sklearn.utils._bunch.Bunch"
HASHED: dict[str, Callable[[Ext], Any]] = {
    "set item": lambda key: Ext(nodes.SET, [key]),
    "frozenset item": lambda key: Ext(nodes.FROZENSET, [key]),
    "dict key": lambda key: {key: 1},
    "OrderedDict key": lambda key: Ext(nodes.ORDEREDDICT, [[key, 1]]),
    "defaultdict key": lambda key: Ext(nodes.DEFAULTDICT, [None, [[key, 1]]]),
    "dict-subclass item (Bunch)": lambda key: Ext(nodes.INSTANCE, [BUNCH, 0, None, 2, [[key, 1]]]),
}


@pytest.mark.parametrize("where", list(HASHED))
def test_exponential_tuple_used_as_a_key(where: str, refused: Any) -> None:
    """40 levels of (t, t): 2**40 leaves from ~1 KB; hashing it would never finish."""
    defs, bomb = _exponential_tuple(40)
    data = jarcraft.build([defs, HASHED[where](bomb)], [name_entry(BUNCH)])
    assert len(data) < 3000
    quickly(refused, lambda: skjar.loads(data), "hash-work budget")


@pytest.mark.parametrize("where", ["set item", "dict key"])
def test_deep_tuple_chain(where: str, refused: Any) -> None:
    """1 500 nested 1-tuples through shared references (200 000 crashed the interpreter:
    hashing a tuple recurses in C without a depth check)."""
    defs, bomb = _deep_tuple(1_500)
    data = jarcraft.build([defs, HASHED[where](bomb)])
    quickly(refused, lambda: skjar.loads(data), "tuple depth cap")


def test_big_int_hashed_many_times(refused: Any) -> None:
    """A 1 MB int (hashing walks every digit, uncached) used as 20 000 set items."""
    big = Ext(nodes.BIGINT, b"\x01" * 1_000_000)
    data = jarcraft.build([Ext(nodes.SHARED_DEF, [0, big]),
                           Ext(nodes.SET, [Ext(nodes.SHARED_REF, 0)] * 20_000)])
    quickly(refused, lambda: skjar.loads(data), "hash-work budget")


def test_exponential_tuple_as_a_plain_value_loads() -> None:
    """Control: the same DAG not used as a key is a legitimate object (the writer keeps
    shared tuples shared), and loads in linear time."""
    defs, bomb = _exponential_tuple(40)
    start = time.perf_counter()
    value = skjar.loads(jarcraft.build([defs, bomb]))[1]
    assert time.perf_counter() - start < 5
    assert value[0] is value[1]


# -- hash flooding ----------------------------------------------------------------------------------------
def _colliding(n: int) -> list[Ext]:
    """n distinct ints with one hash value: c + k * (2**61 - 1)."""
    out = []
    for k in range(n):
        v = 12345 + k * P61
        out.append(Ext(nodes.BIGINT, v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)))
    return out


FLOODS: dict[str, Callable[[list[Any]], Any]] = {
    "set": lambda keys: Ext(nodes.SET, keys),
    "frozenset": lambda keys: Ext(nodes.FROZENSET, keys),
    "dict": lambda keys: {k: 0 for k in keys},
    "OrderedDict": lambda keys: Ext(nodes.ORDEREDDICT, [[k, 0] for k in keys]),
    "defaultdict": lambda keys: Ext(nodes.DEFAULTDICT, [None, [[k, 0] for k in keys]]),
    "Bunch items": lambda keys: Ext(nodes.INSTANCE, [BUNCH, 0, None, 2, [[k, 0] for k in keys]]),
    "tuple keys": lambda keys: Ext(nodes.SET, [Ext(nodes.TUPLE, [k]) for k in keys]),
}


@pytest.mark.parametrize("container", list(FLOODS))
def test_hash_flooding_keys(container: str, refused: Any) -> None:
    """20 000 keys with one hash: building the container would take ~2*10**8 probes."""
    keys = _colliding(20_000)
    data = jarcraft.build(FLOODS[container](keys), [name_entry(BUNCH)])
    quickly(refused, lambda: skjar.loads(data), "hash-flooding check", seconds=10)


# -- shared ids ------------------------------------------------------------------------------------------------
SHARED_IDS = {
    "a reference before its definition": [Ext(nodes.SHARED_REF, 0), Ext(nodes.SHARED_DEF, [0, 1])],
    "an id defined twice": [Ext(nodes.SHARED_DEF, [0, 1]), Ext(nodes.SHARED_DEF, [0, 2])],
    "a reference inside its own definition": Ext(nodes.SHARED_DEF, [0, [Ext(nodes.SHARED_REF, 0)]]),
    "an id that is not an int": [Ext(nodes.SHARED_DEF, ["a", 1])],
    "a reference to 2**64-1": Ext(nodes.SHARED_REF, 2**64 - 1),
}


@pytest.mark.parametrize("case", list(SHARED_IDS))
def test_shared_ids(case: str, refused: Any) -> None:
    data = jarcraft.build(SHARED_IDS[case])
    refused(lambda: skjar.loads(data), "shared ids defined once, used after")


# -- error messages that would print a bomb ------------------------------------------------------------------
def _list_bomb(levels: int) -> tuple[list[Any], Ext]:
    defs = [Ext(nodes.SHARED_DEF, [0, [1, 2]])]
    for i in range(1, levels):
        defs.append(Ext(nodes.SHARED_DEF, [i, [Ext(nodes.SHARED_REF, i - 1)] * 2]))
    return defs, Ext(nodes.SHARED_REF, levels - 1)


MESSAGE_SITES: dict[str, tuple[Callable[[Ext], Any], str]] = {
    "array shape": (lambda b: Ext(nodes.NDARRAY, ["<f8", [b], False, b""]), SIZE),
    "array dtype": (lambda b: Ext(nodes.NDARRAY, [[["a", b]], [1], False, b""]),
                    "dtype description checks"),
    "buffer index": (lambda b: Ext(nodes.NDARRAY, ["<f8", [0], False, b]),
                     "buffers used exactly once"),
    "shared reference id": (lambda b: Ext(nodes.SHARED_REF, b), "shared ids defined once, used after"),
    "shared definition id": (lambda b: Ext(nodes.SHARED_DEF, [b, 1]),
                             "shared ids defined once, used after"),
    "a node's name": (lambda b: Ext(nodes.REF, b), "node payload shape check"),
    "state mode": (lambda b: Ext(nodes.INSTANCE, [BUNCH, b, None, 0, None]),
                   "node payload shape check"),
    "items kind": (lambda b: Ext(nodes.INSTANCE, [BUNCH, 0, None, b, None]),
                   "node payload shape check"),
    "Tree arguments": (lambda b: Ext(nodes.RECONSTRUCT, ["sklearn.tree._tree.Tree", [b, b, b],
                                                         0, None, 0, None]),
                       "meaning check: Tree child/feature index"),
    "sparse shape": (lambda b: Ext(nodes.INSTANCE, ["scipy.sparse._csr.csr_matrix", 1,
                                                    {"_shape": b}, 0, None]),
                     "meaning check: sparse indices/indptr"),
}


@pytest.mark.parametrize("site", list(MESSAGE_SITES))
def test_error_messages_do_not_print_a_bomb(site: str, refused: Any, held: Any) -> None:
    """A list of 2**40 elements (1 KB, shared references) where an error message shows
    the value: the message is bounded, the refusal immediate. (Found here: ``repr`` in
    the messages walked the whole expansion and hung the loader.)"""
    defs, bomb = _list_bomb(40)
    make, defence = MESSAGE_SITES[site]
    names = [name_entry(BUNCH), name_entry("sklearn.tree._tree.Tree", uses=("call",)),
             name_entry("scipy.sparse._csr.csr_matrix")]
    data = jarcraft.build([defs, make(bomb)], names)
    exc = quickly(refused, lambda: skjar.loads(data), defence)
    assert len(str(exc)) < 1000
    held("bounded error messages")


# -- one shared value expanded by many nodes ---------------------------------------------------
# A SHARED_REF costs a few bytes whatever it refers to; a node that *builds* a container
# from its payload (tuple, set, keyed dict, object array, instance state, ...) copies
# every item. 100 TUPLE nodes over one shared 200,000-item list (a 0.9 MB file) kept
# the loader busy 25 s before the building budget (found while adding ZIPDICT).
_BIG = list(range(50_000))
_LR = "sklearn.linear_model._base.LinearRegression"


def _expanders() -> dict[str, tuple[Any, Any]]:
    ref, keys = Ext(nodes.SHARED_REF, 0), [f"k{i}" for i in range(len(_BIG))]
    return {
        "tuple": (_BIG, Ext(nodes.TUPLE, ref)),
        "set": (_BIG, Ext(nodes.SET, ref)),
        "frozenset": (_BIG, Ext(nodes.FROZENSET, ref)),
        "object array": (_BIG, Ext(nodes.OBJARRAY, [[len(_BIG)], False, ref])),
        "keyed dict": (keys, Ext(nodes.ZIPDICT, [ref, list(range(4))])),  # keys shared
        "instance state": (dict(zip(keys, _BIG)), Ext(nodes.INSTANCE, [_LR, 1, ref, 0, None])),
        "dict items": ([[k, 1] for k in keys], Ext(nodes.INSTANCE, [
            "sklearn.utils._bunch.Bunch", 0, None, 2, ref])),
    }


@pytest.mark.parametrize("case", list(_expanders()))
def test_a_shared_value_expanded_by_many_nodes(case: str, refused: Any) -> None:
    shared, node = _expanders()[case]
    if case == "keyed dict":  # values must match the shared keys' length to get that far
        node = Ext(nodes.ZIPDICT, [node.payload[0], Ext(nodes.SHARED_REF, 1)])
        items = [Ext(nodes.SHARED_DEF, [0, shared]), Ext(nodes.SHARED_DEF, [1, _BIG])]
    else:
        items = [Ext(nodes.SHARED_DEF, [0, shared])]
    names = [name_entry(_LR), name_entry("sklearn.utils._bunch.Bunch")]
    data = jarcraft.build(items + [node] * 200, names)
    start = time.perf_counter()
    refused(lambda: skjar.loads(data), "container-building budget")
    # Refused after a bounded amount of building: linear in the file, not in 200 x 50,000.
    assert time.perf_counter() - start < 30


def test_honest_large_containers_stay_within_the_budget() -> None:
    value = {"tuple": tuple(range(300_000)), "set": set(range(300_000)),
             "states": [{f"a{j}": j for j in range(20)} for _ in range(20_000)]}
    assert skjar.loads(skjar.dumps(value)) == value


def test_a_memoized_list_expanded_by_many_reductions_in_a_pickle(refused: Any) -> None:
    """The same in skjar.load_legacy/convert: BINGET costs two bytes whatever it names.
    2,000 x frozenset(<one 50,000-item list>) in 164 KB loaded in 2.9 s before the budget,
    and every further 63 KB added another 3 s."""
    import io
    import pickle

    big = pickle.dumps(list(range(50_000)), protocol=2)[2:-1]  # the list's opcodes only
    head = b"\x80\x02cbuiltins\nfrozenset\nq\x64" + big + b"q\x65"
    again = b"h\x64h\x65\x85R0"  # BINGET 100, BINGET 101, TUPLE1, REDUCE, POP
    data = head + again * 2000 + b"N."
    refused(lambda: skjar.load_legacy(io.BytesIO(data)), "container-building budget")
    honest = pickle.dumps({"s": frozenset(range(300_000)), "t": tuple(range(300_000))})
    assert skjar.load_legacy(io.BytesIO(honest))["s"] == frozenset(range(300_000))
