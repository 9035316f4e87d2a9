"""The JSON header: what it must contain, and the layout it implies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from .. import _compiled
from ..errors import CorruptFileError
from .compression import check_ratio
from .spec import (
    ALIGNMENT,
    CHUNKS_SINCE,
    CODECS,
    MAX_BUFFERS,
    MIN_CHUNK,
    PACKS_SINCE,
    PREAMBLE_SIZE,
    TRAILER_SIZE,
    align,
)

USES = ("object", "value", "call")


class Section(NamedTuple):
    """One stored section: where it is, how long, how it is coded, its decoded size.

    (A tuple, not a frozen dataclass: a forest's layout builds 400 of them per load.)
    """

    offset: int
    length: int
    codec: str
    size: int
    members: tuple[int, ...] = ()  # a pack's buffer sizes (format 1.2); () for one buffer
    chunk: int = 0  # a chunked section's chunk size (format 1.3), else 0
    chunks: tuple[int, ...] = ()  # and each chunk's stored length, in order

    def pieces(self) -> list[tuple[int, int, int, int]]:
        """(offset, length, start, size) of each independently compressed piece: where its
        stored bytes lie from the section's start, and where its decoded bytes go.

        >>> Section(0, 30, "zstd", 150_000, chunk=65_536, chunks=(10, 12, 8)).pieces()
        [(0, 10, 0, 65536), (10, 12, 65536, 65536), (22, 8, 131072, 18928)]
        """
        if not self.chunks:
            return [(0, self.length, 0, self.size)]
        out, at = [], 0
        for k, length in enumerate(self.chunks):
            start = k * self.chunk
            out.append((at, length, start, min(self.chunk, self.size - start)))
            at += length
        return out

    @property
    def buffer_count(self) -> int:
        return len(self.members) or 1


class Layout(NamedTuple):
    """Where the tree and every buffer section lie (a tuple, as Section, for speed)."""

    tree: Section
    buffers: tuple[Section, ...]
    data_end: int

    @property
    def file_size(self) -> int:
        return self.data_end + TRAILER_SIZE


def encode_header(header: Any) -> bytes:
    """The header as UTF-8 JSON. A lone surrogate in the summary (a class label held in
    a numpy str array, which stores any code point) is written as the text of its escape,
    since UTF-8 cannot hold it; the user's metadata is checked for them before.

    >>> json.loads(encode_header({"c": ["a" + chr(0xDCFF)]}))["c"] == ["a" + chr(92) + "udcff"]
    True
    """
    fast = _compiled.speedups
    if fast is not None:
        written = fast.json_dump(header)  # (None: anything unusual, written below)
        if written is not None:
            return written
    try:
        return _json_text(header).encode()
    except UnicodeEncodeError:
        return _json_text(_escaped_surrogates(header)).encode()


def _json_text(header: Any) -> str:
    return _ENCODER.encode(header)


# Made once: json.dumps with these options builds an encoder per call (mlp's 2 KB header,
# cold: 88 us by json.dumps, 74 by this one). Without the compiled helpers, or for a header
# they leave to it, this writes the header.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _escaped_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {_escaped_surrogates(k): _escaped_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped_surrogates(v) for v in value]
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise CorruptFileError(f"header: {what} must be a non-negative integer, got {value!r:.40}")
    return value


def _section(offset: int, length: Any, size: Any, codec: Any, what: str | int) -> Section:
    """``what``: the section's name for errors, or a buffer's index."""
    if codec == "none" and type(length) is int and length >= 0 and size == length and (
        type(size) is int
    ):
        return Section(offset, length, "none", length)  # the common case, checked at once
    name = f"buffer {what}" if type(what) is int else str(what)
    length = _int(length, f"{name} length")
    size = _int(size, f"{name} size")
    if codec not in CODECS:
        raise CorruptFileError(f"header: {name} uses unknown codec {codec!r:.40}")
    if codec == "none" and size != length:
        raise CorruptFileError(f"header: uncompressed {name} has length {length} but size {size}")
    if codec != "none":
        check_ratio(codec, length, size, name)
    return Section(offset, length, codec, size)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate keys in a JSON object")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every header (json.loads with hooks builds a decoder and its scanner
# per call).
_HEADER_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)


def parse_header(raw: bytes | memoryview) -> dict[str, Any]:
    """Decode and check the header's shape (not yet its layout)."""
    fast = _compiled.speedups
    # The compiled parser answers None for anything unusual; the json module decides then.
    header = fast.json(raw) if fast is not None else None
    if header is None:
        try:
            header = _HEADER_JSON.decode(bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CorruptFileError(f"the header is not valid UTF-8 JSON: {exc}") from None
    if type(header) is not dict:
        raise CorruptFileError("the header must be a JSON object")
    for key, kind in (
        ("producer", dict),
        ("environment", dict),
        ("object", dict),
        ("metadata", dict),
        ("names", list),
        ("layout", dict),
    ):
        if type(header.get(key)) is not kind:
            raise CorruptFileError(f"the header lacks a valid {key!r} entry")
    return header


# (name, module) pairs already found well-formed: the same few dozen recur in every
# header, and this check is most of an audit's Python (bounded against odd streams).
_WELL_FORMED: set[tuple[str, str]] = set()
_USE_SET = frozenset(USES)


def declared_names(header: dict[str, Any]) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (module, uses), checked: exact dotted names, module a prefix of name."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for entry in header["names"]:
        if type(entry) is not dict:
            raise CorruptFileError("header: malformed names entry")
        name, module, uses = entry.get("name"), entry.get("module"), entry.get("uses")
        try:
            kinds = frozenset(uses) if type(uses) is list else None
        except TypeError:  # an unhashable item: not a use
            kinds = None
        if (
            type(name) is not str
            or type(module) is not str
            or not kinds
            or not kinds <= _USE_SET
            or name in out
        ):
            raise CorruptFileError(f"header: malformed names entry {entry!r:.120}")
        if (name, module) not in _WELL_FORMED:
            if (
                not module
                or not name.startswith(module + ".")
                or not all(p.isidentifier() for p in name.split("."))
            ):
                raise CorruptFileError(f"header: malformed names entry {entry!r:.120}")
            if len(_WELL_FORMED) < 4096:
                _WELL_FORMED.add((name, module))
        out[name] = (module, kinds)
    return out


def section_totals(sections: Sequence[Section]) -> tuple[int, int, int]:
    """(buffers, stored, decoded) over sections: the buffers they hold (a pack's members,
    else one), their stored lengths' sum and their decoded sizes' sum. (The compiled twin,
    ``section_totals`` in _front.c, takes a layout's tuple with no Python step apiece.)

    >>> section_totals([Section(0, 10, "none", 10), Section(64, 5, "zstd", 90, (40, 50))])
    (3, 15, 100)
    """
    fast = _compiled.speedups
    got = fast.section_totals(sections) if fast is not None else None
    if got is not None:
        return got
    return (
        sum(len(s.members) or 1 for s in sections),
        sum(s.length for s in sections),
        sum(s.size for s in sections),
    )


def pack_offsets(members: Sequence[int]) -> list[int]:
    """Where each of a pack's buffers starts in the decompressed pack: every one aligned.

    >>> pack_offsets((10, 70, 0, 5))
    [0, 64, 192, 192]
    """
    offsets, pos = [], 0
    for size in members:
        pos = align(pos)
        offsets.append(pos)
        pos += size
    return offsets


def _pack(section: Section, members: Any, what: int) -> Section:
    """A pack entry's fourth item: the sizes of the buffers it holds, which must fill it."""
    if type(members) is not list or not 2 <= len(members) <= MAX_BUFFERS:
        raise CorruptFileError(f"header: buffer entry {what} has a malformed member list")
    for size in members:
        _int(size, f"a member size of buffer entry {what}")
    if section.codec == "none":
        raise CorruptFileError(f"header: buffer entry {what} is a pack but not compressed")
    end = pack_offsets(members)[-1] + members[-1]
    if end != section.size:
        raise CorruptFileError(
            f"header: buffer entry {what} packs buffers of {end} bytes into a {section.size}-byte "
            "section"
        )
    return section._replace(members=tuple(members))


def _chunked(section: Section, table: Any, what: int) -> Section:
    """A chunked entry's fourth item (format 1.3): the section's chunk size and the stored
    length of each chunk, which must cover the section exactly."""
    name = f"header: buffer entry {what}"
    if type(table) is not dict:
        raise CorruptFileError(f"{name} has a malformed chunk table")
    chunk, lengths = table.get("chunk"), table.get("lengths")
    if section.codec == "none":
        raise CorruptFileError(f"{name} is chunked but not compressed")
    if type(chunk) is not int or chunk < MIN_CHUNK or chunk % ALIGNMENT:
        raise CorruptFileError(
            f"{name}: a chunk size must be a multiple of {ALIGNMENT} of at least {MIN_CHUNK} "
            f"bytes, got {chunk!r:.40}"
        )
    count = -(-section.size // chunk)
    if type(lengths) is not list or count < 2 or len(lengths) != count:
        raise CorruptFileError(
            f"{name}: {section.size} bytes in chunks of {chunk} make {count}, which must be "
            f"at least 2 and the number of chunk lengths listed"
        )
    for k, length in enumerate(lengths):
        if type(length) is not int or length < 1:
            raise CorruptFileError(f"{name}: chunk {k}'s length must be a positive integer")
    if sum(lengths) != section.length:
        raise CorruptFileError(
            f"{name}: its chunks' lengths add up to {sum(lengths)}, not its {section.length} bytes"
        )
    chunked = section._replace(chunk=chunk, chunks=tuple(lengths))
    for k, (_, length, _, size) in enumerate(chunked.pieces()):
        check_ratio(section.codec, length, size, f"chunk {k} of buffer entry {what}")
    return chunked


def plan_layout(header_length: int, layout: Any, version: tuple[int, int]) -> Layout:
    """Where every section lies, computed from lengths alone (offsets are never stored).

    A buffer entry is ``[length, size, codec]``; from format 1.2 on a pack of several
    buffers compressed together, ``[length, size, codec, [size, ...]]``; from 1.3 on a
    section in chunks compressed apart, ``[length, size, codec, {"chunk": n,
    "lengths": [length, ...]}]``.
    """
    if type(layout) is not dict or type(layout.get("tree")) is not dict:
        raise CorruptFileError("header: malformed layout")
    buffers = layout.get("buffers")
    if type(buffers) is not list or len(buffers) > MAX_BUFFERS:
        raise CorruptFileError("header: malformed buffer table")
    pos = align(PREAMBLE_SIZE + header_length)
    t = layout["tree"]
    tree = _section(pos, t.get("length"), t.get("size"), t.get("codec"), "tree")
    pos += tree.length
    sections = []
    packs = version >= PACKS_SINCE
    count = 0
    for i, entry in enumerate(buffers):
        if type(entry) is not list or not (len(entry) == 3 or (packs and len(entry) == 4)):
            raise CorruptFileError(f"header: malformed buffer entry {i}")
        pos = align(pos)
        section = _section(pos, entry[0], entry[1], entry[2], i)
        if len(entry) == 4:
            if type(entry[3]) is dict and version >= CHUNKS_SINCE:
                section = _chunked(section, entry[3], i)
            else:
                section = _pack(section, entry[3], i)
        count += section.buffer_count
        sections.append(section)
        pos += section.length
    if count > MAX_BUFFERS:
        raise CorruptFileError(f"header: {count} buffers, more than the {MAX_BUFFERS} allowed")
    return Layout(tree, tuple(sections), pos)
