"""Structure-aware mutation of pickle and joblib streams, for fuzzing the converter.

A pickle is decoded into its opcodes (``pickletools.genops``) and edited as a
list: arguments set to boundary values (lengths, memo indices, protocol
numbers, integers), names swapped for trusted or hostile ones, payload bytes
edited, opcodes deleted, duplicated, moved, inserted or spliced in from another
seed, then encoded again. Edits that keep the stream well formed reach the
restricted pickle machine's semantics (``src/skjar/legacy/vm.py``) rather than
its tokenizer; a few raw byte edits keep the tokenizer honest too.

A joblib file is a pickle with array bytes spliced in after each
``NumpyArrayWrapper``'s BUILD: the opcodes up to the first such BUILD are
edited, the rest is kept as bytes (or edited as bytes). joblib's zlib files are
decompressed, edited and compressed again, so that edits are judged by the
machine, not by zlib.

    >>> import pickle, random
    >>> out = mutate(pickle.dumps({"a": [1, 2]}, protocol=4), random.Random(0))
    >>> isinstance(out, bytes)
    True
"""

from __future__ import annotations

import codecs
import pickle
import pickletools
import random
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

_BY_NAME = {op.name: op for op in pickletools.opcodes}
_ZLIB_PREFIXES = (b"x\x01", b"x^", b"x\x9c", b"x\xda")

INT_BOUNDARIES = (0, 1, -1, 2, 7, 8, 255, 256, 65535, 65536, 2**31 - 1, -(2**31), 2**32 - 1,
                  2**32, 2**62, 2**63 - 1, -(2**63), 2**63, 2**64, -(2**64), 10**20)

# Names a hostile file would reach for; the machine must refuse every one before use.
HOSTILE_NAMES = (
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
    ("builtins", "getattr"), ("builtins", "__import__"), ("builtins", "open"),
    ("subprocess", "Popen"), ("numpy", "load"), ("numpy.lib.npyio", "load"),
    ("numpy.testing._private.utils", "runstring"), ("joblib", "load"),
    ("sklearn.utils._testing", "set_random_state"), ("pickle", "loads"),
    ("copyreg", "_reconstructor"), ("functools", "partial"), ("operator", "attrgetter"),
    ("sklearn.pipeline", "Pipeline.__setstate__"), ("numpy", "ndarray.__setstate__"),
    ("scipy.sparse", "csr_matrix.__setstate__"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.random._pickle", "__bit_generator_ctor"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "bytearray"),
    ("codecs", "encode"), ("_codecs", "encode"), ("builtins", "type"), ("builtins", "object"),
)

# Opcodes inserted at random: the stack and memo machinery, with plausible arguments.
_INSERTABLE = (
    ("MARK", None), ("POP", None), ("POP_MARK", None), ("DUP", None), ("STOP", None),
    ("EMPTY_DICT", None), ("EMPTY_LIST", None), ("EMPTY_TUPLE", None), ("EMPTY_SET", None),
    ("APPEND", None), ("APPENDS", None), ("SETITEM", None), ("SETITEMS", None),
    ("ADDITEMS", None), ("FROZENSET", None), ("LIST", None), ("DICT", None), ("TUPLE", None),
    ("TUPLE1", None), ("TUPLE2", None), ("TUPLE3", None), ("BUILD", None), ("REDUCE", None),
    ("NEWOBJ", None), ("NEWOBJ_EX", None), ("OBJ", None), ("STACK_GLOBAL", None),
    ("MEMOIZE", None), ("NONE", None), ("NEWTRUE", None), ("NEWFALSE", None),
    ("BINGET", 0), ("BINPUT", 0), ("LONG_BINGET", 1), ("BININT1", 3), ("BININT", -1),
    ("SHORT_BINUNICODE", "x"), ("SHORT_BINBYTES", b"\x00" * 8), ("BINFLOAT", 1.5),
    ("NEXT_BUFFER", None), ("READONLY_BUFFER", None), ("PERSID", "0"), ("BINPERSID", None),
    ("EXT1", 1), ("INST", "builtins object"), ("GLOBAL", "builtins object"),
)


@dataclass
class Stream:
    """One pickle stream: its opcodes, opaque bytes after them, and how it was wrapped."""

    ops: list[tuple[str, Any]]
    tail: bytes = b""
    zlib_level: int | None = None  # joblib's zlib wrapping, redone after editing
    log: list[str] = field(default_factory=list)


# -- decoding and encoding -----------------------------------------------------------
def parse(data: bytes) -> Stream | None:
    """The opcodes of ``data`` (a pickle, or a raw or zlib-compressed joblib file)."""
    level = None
    if data.startswith(_ZLIB_PREFIXES):
        try:
            data = zlib.decompress(data)
        except zlib.error:
            return None
        level = 3
    ops: list[tuple[str, Any]] = []
    wrapper = False
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name == "FRAME":
                continue  # frame lengths would lie after an edit; unframed is valid
            ops.append((op.name, arg))
            if isinstance(arg, str) and "NumpyArrayWrapper" in arg:
                wrapper = True
            if op.name == "BUILD" and wrapper:
                # joblib writes the array's bytes here, outside the pickle's grammar.
                end = pos + 1
                return Stream(ops, data[end:], level)
    except ValueError:
        return None
    return Stream(ops, b"", level)


def _line(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass") + b"\n"


def encode_op(name: str, arg: Any) -> bytes:
    """One opcode with its argument, as ``pickle`` writes it."""
    op = _BY_NAME[name]
    code = op.code.encode("latin-1")
    kind = op.arg.name if op.arg is not None else None
    if kind is None:
        return code
    if kind == "uint1":
        return code + struct.pack("<B", arg)
    if kind == "uint2":
        return code + struct.pack("<H", arg)
    if kind == "uint4":
        return code + struct.pack("<I", arg)
    if kind == "uint8":
        return code + struct.pack("<Q", arg)
    if kind == "int4":
        return code + struct.pack("<i", arg)
    if kind == "long1":
        raw = pickle.encode_long(arg)
        return code + struct.pack("<B", len(raw)) + raw
    if kind == "long4":
        raw = pickle.encode_long(arg)
        return code + struct.pack("<i", len(raw)) + raw
    if kind in ("string1", "string4"):
        raw = arg.encode("latin-1") if isinstance(arg, str) else bytes(arg)
        return code + struct.pack("<B" if kind == "string1" else "<i", len(raw)) + raw
    if kind in ("bytes1", "bytes4", "bytes8", "bytearray8"):
        raw = bytes(arg)
        fmt = {"bytes1": "<B", "bytes4": "<I", "bytes8": "<Q", "bytearray8": "<Q"}[kind]
        return code + struct.pack(fmt, len(raw)) + raw
    if kind in ("unicodestring1", "unicodestring4", "unicodestring8"):
        raw = arg.encode("utf-8", "surrogatepass")
        fmt = {"unicodestring1": "<B", "unicodestring4": "<I", "unicodestring8": "<Q"}[kind]
        return code + struct.pack(fmt, len(raw)) + raw
    if kind == "stringnl":
        raw = arg.encode("latin-1") if isinstance(arg, str) else bytes(arg)
        return code + b"'" + codecs.escape_encode(raw)[0] + b"'\n"  # type: ignore[attr-defined]
    if kind == "stringnl_noescape":
        return code + _line(arg)
    if kind == "stringnl_noescape_pair":
        module, _, qual = str(arg).partition(" ")
        return code + _line(module) + _line(qual)
    if kind == "decimalnl_short":
        if arg is True or arg is False:
            return code + (b"01\n" if arg else b"00\n")
        return code + b"%d\n" % arg
    if kind == "decimalnl_long":
        return code + b"%dL\n" % arg
    if kind == "floatnl":
        return code + repr(float(arg)).encode() + b"\n"
    if kind == "float8":
        return code + struct.pack(">d", arg)
    if kind == "unicodestringnl":  # escaped as pickle's protocol 0 does
        for char in "\\\0\n\r\x1a":
            arg = arg.replace(char, f"\\u{ord(char):04x}")
        return code + arg.encode("raw-unicode-escape") + b"\n"
    raise ValueError(f"no encoder for {kind}")


def encode(stream: Stream) -> bytes:
    out = bytearray()
    for name, arg in stream.ops:
        try:
            out += encode_op(name, arg)
        except (struct.error, ValueError, UnicodeError, TypeError, OverflowError):
            out += _BY_NAME[name].code.encode("latin-1")  # an argument it cannot hold: bare
    out += stream.tail
    data = bytes(out)
    if stream.zlib_level is not None:
        data = zlib.compress(data, stream.zlib_level)
    return data


# -- edits ---------------------------------------------------------------------------
def _int_for(name: str, rng: random.Random, old: int) -> tuple[str, int]:
    """A boundary value for an integer argument, widening the opcode when it must."""
    value = rng.choice((*INT_BOUNDARIES, old + 1, old - 1, old * 2, rng.randrange(-999, 999)))
    arg = _BY_NAME[name].arg
    kind = arg.name if arg is not None else ""
    limits = {"uint1": (0, 255), "uint2": (0, 65535), "uint4": (0, 2**32 - 1),
              "int4": (-(2**31), 2**31 - 1), "uint8": (0, 2**64 - 1)}
    if kind in limits:
        lo, hi = limits[kind]
        if not lo <= value <= hi:
            if name in ("BININT1", "BININT2", "BININT"):
                return "LONG1", value
            if name in ("BINGET", "BINPUT"):
                value = value % (1 << 32)
                return ("LONG_BINGET" if name == "BINGET" else "LONG_BINPUT"), value
            value = min(hi, max(lo, value))
    return name, value


def _edit_bytes(raw: bytes, rng: random.Random) -> bytes:
    buf = bytearray(raw)
    choice = rng.randrange(5)
    if choice == 0 and buf:
        del buf[rng.randrange(len(buf)):]
    elif choice == 1:
        buf += bytes(rng.choice((1, 7, 8, 64)))
    elif choice == 2 and len(buf) >= 8:
        pos = rng.randrange(len(buf) // 8) * 8
        struct.pack_into("<q", buf, pos, rng.choice((0, -1, 1, 2**63 - 1, -(2**63), 2**31, 7)))
    elif choice == 3 and buf:
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    else:
        buf = bytearray(b"\x00" * rng.choice((0, 1, 8)))
    return bytes(buf)


def _name_for(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        return rng.choice(HOSTILE_NAMES)
    from mutator import trusted_pool

    name, module, _use = rng.choice(trusted_pool())
    return module, name[len(module) + 1:]


class _Editor:
    def __init__(self, stream: Stream, rng: random.Random, donors: list[Stream]) -> None:
        self.s, self.rng, self.donors = stream, rng, donors

    def _pick(self, predicate: Any) -> int | None:
        places = [i for i, (name, arg) in enumerate(self.s.ops) if predicate(name, arg)]
        return self.rng.choice(places) if places else None

    def _replace_arg(self, predicate: Any, new: Any, label: str) -> None:
        """One opcode whose argument passes ``predicate`` gets ``new(name, arg)``:
        a ``(name, arg)`` pair."""
        i = self._pick(predicate)
        if i is not None:
            self.s.ops[i] = new(*self.s.ops[i])
            self.s.log.append(f"{label} {self.s.ops[i][0]}")

    def op_int(self) -> None:
        self._replace_arg(lambda n, a: isinstance(a, int) and not isinstance(a, bool),
                          lambda n, a: _int_for(n, self.rng, a), "int")

    def op_name(self) -> None:
        """A global's module or name swapped: trusted elsewhere, hostile, or mangled."""
        ops = self.s.ops
        i = self._pick(lambda n, a: n in ("GLOBAL", "INST", "STACK_GLOBAL"))
        if i is None:
            return
        module, qual = _name_for(self.rng)
        if ops[i][0] == "STACK_GLOBAL":
            strings = [j for j in range(max(0, i - 6), i)
                       if isinstance(ops[j][1], str) and ops[j][0] != "STACK_GLOBAL"]
            if len(strings) >= 2:
                ops[strings[-2]] = (ops[strings[-2]][0], module)
                ops[strings[-1]] = (ops[strings[-1]][0], qual)
        else:
            ops[i] = (ops[i][0], f"{module} {qual}")
        self.s.log.append(f"name {module}.{qual}")

    def op_string(self) -> None:
        choices = ("", "__class__", "__reduce__", "_tree", "n_features_in_", "dtype", "shape",
                   "\udcff")
        self._replace_arg(
            lambda n, a: isinstance(a, str),
            lambda n, a: (n, self.rng.choice((a[:-1], a + a[-1:], a.upper(), a + "\x00",
                                              *choices))),
            "string")

    def op_bytes(self) -> None:
        self._replace_arg(lambda n, a: isinstance(a, (bytes, bytearray)),
                          lambda n, a: (n, _edit_bytes(bytes(a), self.rng)), "bytes")

    def op_float(self) -> None:
        specials = (float("nan"), float("inf"), -0.0, 1e308, -1.0)
        self._replace_arg(lambda n, a: isinstance(a, float),
                          lambda n, a: (n, self.rng.choice(specials)), "float")

    def op_structure(self) -> None:
        ops, rng = self.s.ops, self.rng
        if len(ops) < 3:
            return
        i = rng.randrange(len(ops) - 1)  # never the final STOP
        kind = rng.randrange(5)
        if kind == 0:
            del ops[i]
        elif kind == 1:
            ops.insert(i, ops[i])
        elif kind == 2:
            j = rng.randrange(len(ops) - 1)
            ops[i], ops[j] = ops[j], ops[i]
        elif kind == 3:
            ops.insert(i, rng.choice(_INSERTABLE))
        else:
            j = min(len(ops) - 1, i + rng.choice((2, 4, 8, 32)))
            del ops[i:j]
        self.s.log.append(f"structure {kind}")

    def op_splice(self) -> None:
        if not self.donors:
            return
        donor = self.rng.choice(self.donors).ops
        if len(donor) < 3:
            return
        a = self.rng.randrange(len(donor) - 1)
        b = min(len(donor) - 1, a + self.rng.choice((1, 3, 10, 40, 200)))
        at = self.rng.randrange(len(self.s.ops))
        self.s.ops[at:at] = donor[a:b]
        self.s.log.append("splice")


EDITS = (("op_int", 4.0), ("op_name", 1.5), ("op_string", 1.5), ("op_bytes", 2.0),
         ("op_float", 0.5), ("op_structure", 3.0), ("op_splice", 1.0))


def mutate_stream(stream: Stream, rng: random.Random, donors: list[Stream] | None = None,
                  edits: int | None = None) -> bytes:
    """``stream`` after 1-4 edits (in place), encoded."""
    editor = _Editor(stream, rng, donors or [])
    names = [n for n, _ in EDITS]
    weights = [w for _, w in EDITS]
    for _ in range(edits if edits is not None else rng.choice((1, 1, 1, 2, 2, 3, 4))):
        getattr(editor, rng.choices(names, weights)[0])()
    if stream.tail and rng.random() < 0.2:
        stream.tail = _edit_bytes(stream.tail, rng)
    return encode(stream)


def byte_mutate(data: bytes, rng: random.Random) -> bytes:
    from mutator import byte_mutate as raw

    if data.startswith(_ZLIB_PREFIXES):
        try:
            return zlib.compress(raw(zlib.decompress(data), 1 << 22, rng), 3)
        except zlib.error:
            pass
    return raw(data, 1 << 22, rng)


def mutate(data: bytes, rng: random.Random, donors: list[Stream] | None = None,
           max_size: int = 1 << 22) -> bytes:
    """One mutated input. Never raises; falls back to byte edits."""
    try:
        if rng.random() < 0.88:
            stream = parse(data)
            if stream is not None:
                out = mutate_stream(stream, rng, donors)
                if len(out) <= max_size:
                    return out
        return byte_mutate(data, rng)[:max_size]
    except Exception:
        return byte_mutate(data, rng)[:max_size]
