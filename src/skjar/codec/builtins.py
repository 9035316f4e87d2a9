"""Python builtin values and containers."""

from __future__ import annotations

import functools
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np

from .. import _compiled
from ..errors import CorruptFileError
from ..trust import OBJECT
from .decoder import Decoder, expect_list
from .encoder import Encoder, Path
from .nodes import (
    BIGINT,
    BYTEARRAY,
    COMPLEX,
    DEFAULTDICT,
    ELLIPSIS,
    FROZENSET,
    ORDEREDDICT,
    PARTIAL,
    RANGE,
    SET,
    SLICE,
    STRDICT,
    STRLIST,
    TUPLE,
    ZIPDICT,
    Node,
)
from .registry import decodes, encodes


@encodes(list, memoize=True)
def _enc_list(enc: Encoder, obj: list[Any], path: Path) -> Any:
    return enc.encode_items(obj, path)


@encodes(dict, memoize=True)
def _enc_dict(enc: Encoder, obj: dict[Any, Any], path: Path) -> Any:
    return enc.encode_dict(obj, path)


@encodes(tuple, memoize=True)
def _enc_tuple(enc: Encoder, obj: tuple[Any, ...], path: Path) -> Node:
    return Node(TUPLE, [enc.encode(v, (path, i)) for i, v in enumerate(obj)])


@decodes(TUPLE, lambda: [(), (1, "a", None), ((1, 2), [3])])
def _dec_tuple(dec: Decoder, payload: Any) -> tuple[Any, ...]:
    if type(payload) is not list:
        raise CorruptFileError("malformed tuple node")
    dec.expand(payload, "a tuple")
    return dec.track_tuple(tuple(payload))


@encodes(set, memoize=True)
def _enc_set(enc: Encoder, obj: set[Any], path: Path) -> Node:
    return Node(SET, [enc.encode(v, (path, "<item>")) for v in obj])


@decodes(SET, lambda: [set(), {1, 2, "x"}])
def _dec_set(dec: Decoder, payload: Any) -> set[Any]:
    if type(payload) is not list:
        raise CorruptFileError("malformed set node")
    dec.expand(payload, "a set")
    dec.check_keys(payload, "a set")
    return set(payload)


@encodes(frozenset, memoize=True)
def _enc_frozenset(enc: Encoder, obj: frozenset[Any], path: Path) -> Node:
    return Node(FROZENSET, [enc.encode(v, (path, "<item>")) for v in obj])


@decodes(FROZENSET, lambda: [frozenset(), frozenset({(1, 2), "y"})])
def _dec_frozenset(dec: Decoder, payload: Any) -> frozenset[Any]:
    if type(payload) is not list:
        raise CorruptFileError("malformed frozenset node")
    dec.expand(payload, "a frozenset")
    dec.check_keys(payload, "a frozenset")
    return frozenset(payload)


@encodes(bytearray, memoize=True)
def _enc_bytearray(enc: Encoder, obj: bytearray, path: Path) -> Node:
    return Node(BYTEARRAY, bytes(obj))


@decodes(BYTEARRAY, lambda: [bytearray(b"ab\x00")])
def _dec_bytearray(dec: Decoder, payload: Any) -> bytearray:
    if type(payload) is not bytes:
        raise CorruptFileError("malformed bytearray node")
    return bytearray(payload)


@encodes(complex)
def _enc_complex(enc: Encoder, obj: complex, path: Path) -> Node:
    return Node(COMPLEX, [obj.real, obj.imag])


@decodes(COMPLEX, lambda: [1 + 2j, complex("nan+infj")])
def _dec_complex(dec: Decoder, payload: Any) -> complex:
    real, imag = expect_list(payload, 2, "complex")
    if type(real) is not float or type(imag) is not float:
        raise CorruptFileError("malformed complex node")
    return complex(real, imag)


@decodes(BIGINT, lambda: [1 << 70, -(1 << 100)])
def _dec_bigint(dec: Decoder, payload: Any) -> int:
    if type(payload) is not bytes or not payload:
        raise CorruptFileError("malformed big integer node")
    return dec.track_int(int.from_bytes(payload, "little", signed=True), len(payload))


def _slice_part(v: Any) -> Any:
    if v is not None and type(v) is not int:
        raise CorruptFileError("slice/range bounds must be integers or None")
    return v


@encodes(slice)
def _enc_slice(enc: Encoder, obj: slice, path: Path) -> Node:
    return Node(
        SLICE, [enc.encode(v, (path, i)) for i, v in enumerate((obj.start, obj.stop, obj.step))]
    )


@decodes(SLICE, lambda: [slice(1, None, 2), slice(None)])
def _dec_slice(dec: Decoder, payload: Any) -> slice:
    start, stop, step = expect_list(payload, 3, "slice")
    return slice(_slice_part(start), _slice_part(stop), _slice_part(step))


@encodes(range)
def _enc_range(enc: Encoder, obj: range, path: Path) -> Node:
    return Node(
        RANGE, [enc.encode(v, (path, i)) for i, v in enumerate((obj.start, obj.stop, obj.step))]
    )


@decodes(RANGE, lambda: [range(3), range(10, 0, -3)])
def _dec_range(dec: Decoder, payload: Any) -> range:
    start, stop, step = expect_list(payload, 3, "range")
    if None in (start, stop, step) or step == 0:
        raise CorruptFileError("malformed range node")
    return range(_slice_part(start), _slice_part(stop), _slice_part(step))


@encodes(type(Ellipsis))
def _enc_ellipsis(enc: Encoder, obj: Any, path: Path) -> Node:
    return Node(ELLIPSIS, None)


@decodes(ELLIPSIS, lambda: [Ellipsis])
def _dec_ellipsis(dec: Decoder, payload: Any) -> Any:
    return Ellipsis


def _pairs(dec: Decoder, payload: Any, what: str) -> list[Any]:
    if type(payload) is not list:
        raise CorruptFileError(f"malformed {what} node")
    dec.expand(payload, what)
    if any(type(p) is not list or len(p) != 2 for p in payload):
        raise CorruptFileError(f"malformed {what} node")
    dec.check_keys([p[0] for p in payload], what)
    return payload


@encodes(OrderedDict, memoize=True)
def _enc_ordereddict(enc: Encoder, obj: OrderedDict[Any, Any], path: Path) -> Node:
    items = [[enc.encode(k, (path, "<key>")), enc.encode(v, (path, k))] for k, v in obj.items()]
    return Node(ORDEREDDICT, items)


@decodes(ORDEREDDICT, lambda: [OrderedDict([("b", 1), ("a", [2])])])
def _dec_ordereddict(dec: Decoder, payload: Any) -> OrderedDict[Any, Any]:
    return OrderedDict((k, v) for k, v in _pairs(dec, payload, "OrderedDict"))


@decodes(
    ZIPDICT,
    lambda: [
        {"alpha": 1, "beta": [2.5], "gamma": None, "delta": "d"},
        [{"w": 1, "x": 2, "y": 3, "z": i} for i in range(3)],  # one shared key list
    ],
)
def _dec_zipdict(dec: Decoder, payload: Any) -> dict[str, Any]:
    keys, values = expect_list(payload, 2, "keyed dict")
    if type(keys) is not list or type(values) is not list or len(keys) != len(values):
        raise CorruptFileError("keyed dict: keys and values must be lists of one length")
    dec.expand(keys, "a keyed dict")
    if keys and set(map(type, keys)) != {str}:
        raise CorruptFileError("keyed dict: keys must be strings")
    out = dict(zip(keys, values))
    if len(out) != len(keys):
        raise CorruptFileError("keyed dict: keys must be distinct (duplicate keys)")
    return out


@encodes(defaultdict, memoize=True)
def _enc_defaultdict(enc: Encoder, obj: defaultdict[Any, Any], path: Path) -> Node:
    # The factory is only ever a value here (a trusted REF); it is called later,
    # by the user's code, never while loading.
    items = [[enc.encode(k, (path, "<key>")), enc.encode(v, (path, k))] for k, v in obj.items()]
    return Node(DEFAULTDICT, [enc.encode(obj.default_factory, (path, "default_factory")), items])


@decodes(DEFAULTDICT, lambda: [defaultdict(list, {"a": [1]}), defaultdict(None)])
def _dec_defaultdict(dec: Decoder, payload: Any) -> defaultdict[Any, Any]:
    factory, items = expect_list(payload, 2, "defaultdict")
    if factory is not None and not callable(factory):
        raise CorruptFileError("defaultdict factory is not callable")
    out: defaultdict[Any, Any] = defaultdict(factory)
    for k, v in _pairs(dec, items, "defaultdict"):
        out[k] = v
    return out


def _string_buffer(dec: Decoder, count: Any, index: Any, what: str) -> np.ndarray:
    if type(count) is not int or count < 0:
        raise CorruptFileError(f"malformed {what} node")
    return dec.take_buffer(index)


def _strings(buf: np.ndarray, count: int, what: str) -> list[str]:
    try:
        text = str(memoryview(buf), "utf-8", "surrogatepass")  # type: ignore[arg-type]
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{what}: keys are not valid UTF-8 ({exc})") from None
    items = text.split("\x00") if count else []
    if len(items) != count or (count == 0 and text):
        raise CorruptFileError(f"{what}: declares {count} strings, the buffer holds {len(items)}")
    return items


@decodes(STRLIST, lambda: [[f"word{i}" for i in range(300)]])
def _dec_strlist(dec: Decoder, payload: Any) -> list[str]:
    count, index = expect_list(payload, 2, "string list")
    return _strings(_string_buffer(dec, count, index, "string list"), count, "string list")


@decodes(
    STRDICT,
    lambda: [
        {f"w{i}": i for i in range(300)},
        {f"w{i}": np.int64(i) for i in range(300)},
    ],
)
def _dec_strdict(dec: Decoder, payload: Any) -> dict[str, Any]:
    count, index, values, kind = expect_list(payload, 4, "string dict")
    text = _string_buffer(dec, count, index, "string dict")
    if (
        not isinstance(values, np.ndarray)
        or values.shape != (count,)
        or values.dtype.kind not in "iu"
        or kind not in (0, 1)
    ):
        raise CorruptFileError("string dict: values must be an integer array as long as the keys")
    fast = _compiled.speedups
    compiled = fast is not None and kind == 0 and values.dtype != np.uint64
    if compiled:
        # Straight from the buffers: no str of the whole text, no key or value list, and
        # no widened copy of the values (a 1.1M-term vocabulary's int32 column: 9 MB).
        native = values if values.dtype.isnative else values.astype(values.dtype.newbyteorder("="))
        # The key buffer is used by this node only, so the pages of keys already built are
        # given back as the build goes on (a 1.1M-term vocabulary's 18 MB of keys).
        built = fast.strdict(  # type: ignore[union-attr]
            text, count, native, native.dtype.itemsize, native.dtype.kind == "i", True
        )
        if type(built) is dict:
            return built
        if type(built) is str:  # refused after releasing keys: the twin cannot reread them
            raise CorruptFileError(f"string dict: {built}")
        # Not fine: the Python twin below finds what is wrong and says so.
    keys = _strings(text, count, "string dict")
    out = dict(zip(keys, values.tolist() if kind == 0 else values))
    if len(out) != count:
        raise CorruptFileError("string dict: duplicate keys")
    if compiled:
        raise CorruptFileError("string dict: the compiled check rejected it")  # twins disagree: a bug
    return out


@encodes(functools.partial, memoize=True)
def _enc_partial(enc: Encoder, obj: functools.partial[Any], path: Path) -> Node:
    # A partial's function must itself be a trusted value; building the partial
    # never calls it.
    enc.declare("functools", "partial", OBJECT)
    return Node(
        PARTIAL,
        [
            enc.encode(obj.func, (path, "func")),
            enc.encode_items(list(obj.args), (path, "args")),
            enc.encode_dict(dict(obj.keywords), (path, "keywords")),
        ],
    )


@decodes(PARTIAL, lambda: [functools.partial(max, 3), functools.partial(round, ndigits=2)])
def _dec_partial(dec: Decoder, payload: Any) -> functools.partial[Any]:
    func, args, keywords = expect_list(payload, 3, "partial")
    cls = dec.require("functools.partial", OBJECT)
    if not callable(func) or type(args) is not list or type(keywords) is not dict:
        raise CorruptFileError("malformed partial node")
    dec.expand(args, "a partial's arguments")
    dec.expand(keywords, "a partial's keywords")
    if any(type(k) is not str for k in keywords):
        raise CorruptFileError("partial keywords must be strings")
    return cls(func, *args, **keywords)
