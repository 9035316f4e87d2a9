"""A restricted pickle machine: the opcodes of protocols 0-5, written over the bytes.

This is not ``pickle.Unpickler`` with a ``find_class`` hook (that design still
lets REDUCE call whatever the hook returns and BUILD set attributes on
anything). Every opcode is implemented here, and the three that can run code
are reduced to what skjar's own loader allows:

- **GLOBAL / STACK_GLOBAL / INST** push a :class:`Ref` — a name, not an
  object. Nothing is imported until the name is *used*, and then only if it is
  trusted for that exact use: as a value (``value``), as a class to create
  with ``cls.__new__(cls)`` (``object``), as a reconstructor to call
  (``call``).
- **REDUCE** calls only trusted reconstructors, or recognises one of the
  known-safe reductions (numpy arrays, dtypes, scalars, random generators,
  sets, OrderedDict, partial...) and does a fixed safe equivalent itself
  (``reductions.py``): a callable from the file is never called.
- **BUILD** gives state only to an instance this stream created, once, after
  skjar's meaning validators have checked it — never to a class, a function, a
  module or a value named by GLOBAL.

The file is read twice. A *checking* pass runs the same machine without
importing, creating or calling anything and collects every name that is not
acceptable, so :class:`~skjar.errors.UntrustedTypeError` lists them all at
once before any import. The *building* pass then makes the objects.

>>> import io, pickle
>>> from skjar.trust import TrustPolicy
>>> from .source import ByteSource
>>> data = pickle.dumps({"a": (1, 2.5, "x"), "b": [None, True]}, protocol=5)
>>> run_vm(lambda: ByteSource(io.BytesIO(data), len(data)), TrustPolicy())
{'a': (1, 2.5, 'x'), 'b': [None, True]}
"""

from __future__ import annotations

import codecs
import copyreg
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..codec.nodes import STATE_DEFAULT
from ..codec.objects import _apply_state
from ..codec.registry import VALIDATORS
from ..errors import CorruptFileError, SkjarError, UnsupportedPickleError, UntrustedTypeError
from ..format.spec import EXPAND_PER_BYTE, EXPAND_SLACK
from ..trust import CALL, OBJECT, VALUE, TrustPolicy
from .names import (
    ARG_ONLY,
    CONSTANTS,
    JOBLIB_WRAPPERS,
    NEWOBJ_BUILTINS,
    acceptable,
    fix_name,
)
from .source import ByteSource

__all__ = ["NO_STATE", "Context", "Pending", "PickleVM", "Ref", "run_vm"]

HIGHEST_PROTOCOL = 5
MAX_NAME = 1024


class _NoState:
    def __repr__(self) -> str:
        return "NO_STATE"


NO_STATE: Any = _NoState()


class Ref:
    """A name pushed by GLOBAL/STACK_GLOBAL/INST: resolved only when used, per use."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.name = f"{module}.{qualname}"

    def __repr__(self) -> str:
        return f"<global {self.name}>"


class Pending:
    """A value built by a reduction that may still receive state from BUILD.

    ``finish(state)`` builds it (once); using it as a value first builds it
    without state.
    """

    __slots__ = ("_finish", "busy", "done", "label", "result")

    def __init__(self, label: str, finish: Callable[[Any], Any]) -> None:
        self.label = label
        self._finish = finish
        self.done = False
        self.busy = False
        self.result: Any = None

    def finish(self, state: Any = NO_STATE) -> Any:
        if self.done:
            if state is not NO_STATE:
                raise CorruptFileError(f"{self.label}: state is given twice")
            return self.result
        if self.busy:
            raise CorruptFileError(f"{self.label} refers to itself before it is built")
        self.busy = True
        try:
            self.result = self._finish(state)
        finally:
            self.busy = False
        self.done = True
        return self.result


class Opaque:
    """What the checking pass pushes in place of an object it does not build."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<opaque>"


OPAQUE = Opaque()


class WrapperShell:
    """A joblib array placeholder awaiting the BUILD that reads its array."""

    __slots__ = ("kind", "name", "result")

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self.result: Any = None


class Marker:
    """An argument-only name kept as a joblib wrapper's ``subclass`` until the wrapper reads it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def describe(x: Any) -> str:
    """What a stack item is, in the file's terms (for messages; never the VM's own classes).

    >>> describe(Ref("os", "system")), describe([1]), describe(Pending("numpy array", None))
    ("the name 'os.system'", 'a list', 'numpy array (a value being built)')
    """
    t = type(x)
    if t is Ref:
        return f"the name {x.name!r}"
    if t is Pending:
        return f"{x.label} (a value being built)"
    if t is WrapperShell:
        return f"a joblib array wrapper ({x.name})"
    if t is Marker:
        return f"the name {x.name!r}"
    return f"a {t.__name__}"


@dataclass
class Shell:
    """An instance created by ``cls.__new__(cls)`` in this stream, awaiting its state."""

    obj: Any
    name: str
    mode: int
    built: bool = False


@dataclass
class Context:
    """What the passes over one file share: trust, findings, where sidecar files live."""

    policy: TrustPolicy
    scan: bool
    directory: str | None = None
    offending: set[str] = field(default_factory=set)
    # dicts holding a Marker (a joblib wrapper's state before its BUILD): id -> dict
    marker_dicts: dict[int, dict[Any, Any]] = field(default_factory=dict)
    shells: dict[int, Shell] = field(default_factory=dict)

    def refuse(self, name: str, detail: str = "") -> None:
        """Record (checking pass) or raise (building pass) an untrusted name."""
        if self.scan:
            self.offending.add(name)
            return
        raise UntrustedTypeError([name], detail=detail)


def guarded(name: str, step: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run trusted code, turning its failures into CorruptFileError."""
    try:
        return fn(*args)
    except SkjarError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{name}: {step} failed: {type(exc).__name__}: {exc}") from None


_I4 = struct.Struct("<i")
_U4 = struct.Struct("<I")
_U8 = struct.Struct("<Q")
_U2 = struct.Struct("<H")
_F8 = struct.Struct(">d")


class PickleVM:
    """One pass over one pickle stream (see the module docstring)."""

    def __init__(self, src: ByteSource, ctx: Context, *, joblib: bool = True) -> None:
        self.src = src
        self.ctx = ctx
        self.scan = ctx.scan
        self.joblib = joblib
        self.proto = 0
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self._raw: dict[int, list[Any]] = {}  # tuples holding unresolved items: id -> [t, built]
        self._expanded = 0
        self._op = ""
        self._ops: dict[int, Callable[[], bool | None]] = {
            code: getattr(self, "op_" + name) for code, name in _OPCODES.items()
        }

    # -- costs -----------------------------------------------------------
    def expand(self, items: int, what: str) -> None:
        """Charge building a container of ``items`` items from an existing value.

        A memo reference (BINGET) costs two bytes whatever it names: 7 bytes of
        ``frozenset(<the same 50,000-item list>)`` repeated would build 50,000 items
        each. Building counts against a budget linear in the bytes read so far,
        as in the jar decoder (tests/security/test_resource_bombs.py).
        """
        self._expanded += items
        if self._expanded > EXPAND_SLACK + EXPAND_PER_BYTE * self.src.tell():
            raise CorruptFileError(
                f"{what}: the pickle builds more container items than its size allows "
                "(one memoized value expanded again and again)"
            )

    # -- driving ---------------------------------------------------------
    def run(self) -> Any:
        """Execute the stream up to STOP and return the (built) result."""
        src, ops = self.src, self._ops
        pos = 0
        try:
            while True:
                pos = src.tell()
                code = src.read_byte()
                op = ops.get(code)
                if op is None:
                    raise CorruptFileError(
                        f"byte {pos}: {code:#04x} is not a pickle opcode: "
                        "this is not a pickle or joblib file, or it is damaged"
                    )
                self._op = _OPCODES[code]
                if op():
                    break
            result = self.value(self.stack.pop())
        except SkjarError:
            raise
        except RecursionError:
            raise CorruptFileError("the pickle nests objects too deeply") from None
        except MemoryError:
            raise CorruptFileError("the pickle asks for more memory than is available") from None
        except IndexError:
            raise CorruptFileError(
                f"malformed pickle stream at byte {pos} ({self._op}): "
                "the stack or its marks are inconsistent"
            ) from None
        except Exception as exc:
            raise CorruptFileError(
                f"malformed pickle stream at byte {pos} ({self._op}): {type(exc).__name__}: {exc}"
            ) from None
        if self.joblib and not self.scan and self.ctx.marker_dicts:
            names = {
                m.name
                for d in self.ctx.marker_dicts.values()
                for m in d.values()
                if type(m) is Marker
            }
            raise UntrustedTypeError(names, detail="used outside a joblib array wrapper.")
        return result

    # -- values ----------------------------------------------------------
    def value(self, x: Any) -> Any:
        """``x`` as a value stored in the result: names resolved for ``value``, pendings built."""
        t = type(x)
        if t is Ref:
            return self._ref_value(x)
        if t is Pending:
            return x.finish()
        if t is tuple:
            entry = self._raw.get(id(x))
            return x if entry is None else self._materialize(entry)
        if t is WrapperShell:
            if x.result is None:
                raise CorruptFileError("a joblib array wrapper is used before its array is read")
            return x.result
        if t is Marker:
            self.ctx.refuse(x.name, "it may only name a joblib array's class.")
        return x

    def _ref_value(self, ref: Ref) -> Any:
        if ref.name in CONSTANTS:
            return CONSTANTS[ref.name]
        policy = self.ctx.policy
        if policy.lookup(ref.name, ref.module, VALUE) is None:
            self.ctx.refuse(
                ref.name,
                f"The file uses {ref.name!r} as a value, which it is not trusted for.",
            )
            return ref
        if self.scan:
            return ref
        return policy.resolve(ref.name, ref.module, VALUE)

    def _materialize(self, entry: list[Any]) -> Any:
        if entry[1] is None:
            entry[1] = tuple(self.value(v) for v in entry[0])
        return entry[1]

    def _tuple(self, items: list[Any] | tuple[Any, ...]) -> tuple[Any, ...]:
        t = tuple(items)
        for v in t:
            tv = type(v)
            if tv is Ref or tv is Pending or tv is Marker or (tv is tuple and id(v) in self._raw):
                self._raw[id(t)] = [t, None]
                break
        return t

    def args_of(self, args: Any, what: str) -> list[Any]:
        """The items of an argument tuple, as values."""
        if type(args) is not tuple:
            raise CorruptFileError(f"{what}: arguments must be a tuple")
        return [self.value(a) for a in args]

    def expect_ref(self, x: Any, names: Any, what: str) -> Ref:
        """``x`` must be a Ref to one of ``names`` (a container of exact names)."""
        if type(x) is not Ref:
            raise CorruptFileError(f"{what}: expected a class named by the file, got {x!r:.60}")
        if x.name not in names:
            self.ctx.refuse(x.name, f"it is not accepted as {what}.")
        return x

    # -- instances ---------------------------------------------------------
    def new_instance(self, cls_ref: Any, args: Any, how: str) -> Any:
        """``cls.__new__(cls)`` for a class trusted as ``object`` (NEWOBJ and its kin)."""
        if type(cls_ref) is not Ref:
            if self.scan:
                return OPAQUE
            raise CorruptFileError(f"{how}: the class is not named by the file: {cls_ref!r:.60}")
        name = cls_ref.name
        if self.joblib and name in JOBLIB_WRAPPERS:
            if type(args) is not tuple or args:
                raise CorruptFileError(f"{name} takes no arguments")
            return WrapperShell(JOBLIB_WRAPPERS[name], name)
        if name in NEWOBJ_BUILTINS:  # complex(real, imag)
            if self.scan:
                return OPAQUE
            from .reductions import make_complex

            return make_complex(self, args)
        policy = self.ctx.policy
        if policy.lookup(name, cls_ref.module, OBJECT) is None:
            self.ctx.refuse(name, "It is not trusted as a class to instantiate.")
            return OPAQUE
        if self.scan:
            if type(args) is tuple:
                for a in args:
                    self.value(a)
            return OPAQUE
        cls = policy.resolve(name, cls_ref.module, OBJECT)
        values = self.args_of(args, how)
        if not values:
            obj = guarded(name, "creating the instance", cls.__new__, cls)
            if type(obj) is not cls:
                raise CorruptFileError(f"{name}.__new__ returned a {type(obj).__name__}")
            self.ctx.shells[id(obj)] = Shell(obj, name, STATE_DEFAULT)
            return obj
        fields = getattr(cls, "_fields", None)
        if issubclass(cls, tuple) and type(fields) is tuple and len(fields) == len(values):
            return tuple.__new__(cls, values)
        raise UnsupportedPickleError(
            f"{name} is created with arguments to __new__, which the converter never calls "
            "(skjar creates instances with cls.__new__(cls) only)"
        )

    def register_shell(self, obj: Any, name: str, mode: int) -> None:
        """Declare ``obj`` an instance of this stream that may receive state once."""
        self.ctx.shells[id(obj)] = Shell(obj, name, mode)

    def apply_shell_state(self, shell: Shell, state: Any) -> None:
        """Validate ``state`` and hand it to the instance (``__setstate__`` or ``__dict__``)."""
        if shell.built:
            raise CorruptFileError(f"{shell.name}: state is given twice")
        shell.built = True
        st = self.value(state)
        validator = VALIDATORS.get(shell.name)
        if validator is not None:
            validator((), st)
        if st is None:
            return
        guarded(
            shell.name, "setting its state", _apply_state, shell.obj, shell.mode, st, shell.name
        )

    def call_pending(self, ref: Ref, args: Any) -> Any:
        """A trusted reconstructor call, made once its state (if any) is known and checked."""
        policy = self.ctx.policy
        if policy.lookup(ref.name, ref.module, CALL) is None:
            self.ctx.refuse(
                ref.name,
                "The file calls it while loading, and it is not trusted as a reconstructor.",
            )
            return OPAQUE
        if self.scan:
            if type(args) is tuple:
                for a in args:
                    self.value(a)
            return OPAQUE
        if type(args) is not tuple:
            raise CorruptFileError(f"{ref.name}: arguments must be a tuple")

        def finish(state: Any) -> Any:
            values = [self.value(a) for a in args]
            st = None if state is NO_STATE else self.value(state)
            validator = VALIDATORS.get(ref.name)
            if validator is not None:
                validator(values, st)
            fn = policy.resolve(ref.name, ref.module, CALL)
            obj = guarded(ref.name, "the call", fn, *values)
            if st is not None:
                guarded(
                    ref.name, "setting its state", _apply_state, obj, STATE_DEFAULT, st, ref.name
                )
            return obj

        return Pending(ref.name, finish)

    # -- names -------------------------------------------------------------
    def _push_global(self, module: Any, qualname: Any) -> None:
        if type(module) is not str or type(qualname) is not str:
            raise CorruptFileError("a global name must be given as two strings")
        if not module or not qualname or len(module) + len(qualname) > MAX_NAME:
            raise CorruptFileError(f"malformed global name {module!r:.60} {qualname!r:.60}")
        module, qualname = fix_name(module, qualname, self.proto)
        ref = Ref(module, qualname)
        if self.scan and not acceptable(self.ctx.policy, ref.name, module):
            self.ctx.offending.add(ref.name)
        self.stack.append(ref)

    def _text_line(self, what: str) -> str:
        line = self.src.readline(what)
        try:
            return line[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptFileError(f"{what} is not valid UTF-8") from None

    # -- opcodes: framing and control ----------------------------------------
    def op_PROTO(self) -> None:
        proto = self.src.read_byte()
        if proto > HIGHEST_PROTOCOL:
            raise CorruptFileError(f"unsupported pickle protocol {proto}")
        self.proto = proto

    def op_FRAME(self) -> None:
        (n,) = _U8.unpack(self.src.read(8, "a frame header"))
        self.src.check_available(n, "a frame")

    def op_STOP(self) -> bool:
        return True

    def op_MARK(self) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def _pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def op_POP(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark()

    def op_POP_MARK(self) -> None:
        self._pop_mark()

    def op_DUP(self) -> None:
        self.stack.append(self.stack[-1])

    # -- opcodes: memo ---------------------------------------------------
    def _get(self, i: int) -> None:
        try:
            self.stack.append(self.memo[i])
        except KeyError:
            raise CorruptFileError(f"memo entry {i} is read before it is written") from None

    def _put(self, i: int) -> None:
        if i < 0:
            raise CorruptFileError("negative memo index")
        self.memo[i] = self.stack[-1]

    def op_GET(self) -> None:
        self._get(int(self._text_line("a GET index")))

    def op_BINGET(self) -> None:
        self._get(self.src.read_byte())

    def op_LONG_BINGET(self) -> None:
        self._get(_U4.unpack(self.src.read(4))[0])

    def op_PUT(self) -> None:
        self._put(int(self._text_line("a PUT index")))

    def op_BINPUT(self) -> None:
        self._put(self.src.read_byte())

    def op_LONG_BINPUT(self) -> None:
        self._put(_U4.unpack(self.src.read(4))[0])

    def op_MEMOIZE(self) -> None:
        self.memo[len(self.memo)] = self.stack[-1]

    # -- opcodes: scalars ------------------------------------------------
    def op_NONE(self) -> None:
        self.stack.append(None)

    def op_NEWTRUE(self) -> None:
        self.stack.append(True)

    def op_NEWFALSE(self) -> None:
        self.stack.append(False)

    def op_INT(self) -> None:
        text = self._text_line("an INT")
        if text == "00":
            self.stack.append(False)
        elif text == "01":
            self.stack.append(True)
        else:
            self.stack.append(int(text))

    def op_BININT(self) -> None:
        self.stack.append(_I4.unpack(self.src.read(4))[0])

    def op_BININT1(self) -> None:
        self.stack.append(self.src.read_byte())

    def op_BININT2(self) -> None:
        self.stack.append(_U2.unpack(self.src.read(2))[0])

    def op_LONG(self) -> None:
        text = self._text_line("a LONG")
        self.stack.append(int(text[:-1] if text.endswith("L") else text))

    def op_LONG1(self) -> None:
        n = self.src.read_byte()
        self.stack.append(int.from_bytes(self.src.read(n, "a LONG1"), "little", signed=True))

    def op_LONG4(self) -> None:
        (n,) = _I4.unpack(self.src.read(4))
        if n < 0:
            raise CorruptFileError("LONG4 with a negative length")
        self.stack.append(int.from_bytes(self.src.read(n, "a LONG4"), "little", signed=True))

    def op_FLOAT(self) -> None:
        self.stack.append(float(self._text_line("a FLOAT")))

    def op_BINFLOAT(self) -> None:
        self.stack.append(_F8.unpack(self.src.read(8))[0])

    # -- opcodes: strings and bytes ----------------------------------------
    @staticmethod
    def _py2_str(data: bytes) -> str:
        # pickle's default encoding is ASCII; Python 2 binary strings (numpy
        # array data) are read as latin-1 as pickle.load(encoding="latin1") does.
        try:
            return data.decode("ascii")
        except UnicodeDecodeError:
            return data.decode("latin-1")

    def op_STRING(self) -> None:
        data = self.src.readline("a STRING")[:-1]
        if len(data) < 2 or data[0] != data[-1] or data[:1] not in (b'"', b"'"):
            raise CorruptFileError("the STRING opcode argument must be quoted")
        raw = codecs.escape_decode(data[1:-1])[0]
        self.stack.append(self._py2_str(raw))

    def op_BINSTRING(self) -> None:
        (n,) = _I4.unpack(self.src.read(4))
        if n < 0:
            raise CorruptFileError("BINSTRING with a negative length")
        self.stack.append(self._py2_str(self.src.read(n, "a BINSTRING")))

    def op_SHORT_BINSTRING(self) -> None:
        n = self.src.read_byte()
        self.stack.append(self._py2_str(self.src.read(n, "a SHORT_BINSTRING")))

    def op_UNICODE(self) -> None:
        line = self.src.readline("a UNICODE string")[:-1]
        self.stack.append(str(line, "raw-unicode-escape"))

    def _unicode(self, n: int) -> None:
        data = self.src.read(n, "a string")
        self.stack.append(str(data, "utf-8", "surrogatepass"))

    def op_SHORT_BINUNICODE(self) -> None:
        self._unicode(self.src.read_byte())

    def op_BINUNICODE(self) -> None:
        self._unicode(_U4.unpack(self.src.read(4))[0])

    def op_BINUNICODE8(self) -> None:
        self._unicode(_U8.unpack(self.src.read(8))[0])

    def _bytes(self, n: int, kind: type = bytes) -> None:
        if self.scan and n > 256:  # short ones may be a dtype's datetime unit
            self.src.skip(n, "a bytes value")
            self.stack.append(OPAQUE)
            return
        data = self.src.read(n, "a bytes value")
        self.stack.append(data if kind is bytes else bytearray(data))

    def op_SHORT_BINBYTES(self) -> None:
        self._bytes(self.src.read_byte())

    def op_BINBYTES(self) -> None:
        self._bytes(_U4.unpack(self.src.read(4))[0])

    def op_BINBYTES8(self) -> None:
        self._bytes(_U8.unpack(self.src.read(8))[0])

    def op_BYTEARRAY8(self) -> None:
        self._bytes(_U8.unpack(self.src.read(8))[0], bytearray)

    def op_NEXT_BUFFER(self) -> None:
        raise UnsupportedPickleError(
            "the pickle uses out-of-band buffers (protocol 5 buffer_callback), "
            "which a file cannot carry"
        )

    op_READONLY_BUFFER = op_NEXT_BUFFER

    # -- opcodes: containers ---------------------------------------------
    def op_EMPTY_TUPLE(self) -> None:
        self.stack.append(())

    def op_TUPLE(self) -> None:
        items = self._pop_mark()
        self.stack.append(self._tuple(items))

    def op_TUPLE1(self) -> None:
        self.stack[-1] = self._tuple((self.stack[-1],))

    def op_TUPLE2(self) -> None:
        self.stack[-2:] = [self._tuple(self.stack[-2:])]

    def op_TUPLE3(self) -> None:
        self.stack[-3:] = [self._tuple(self.stack[-3:])]

    def op_EMPTY_LIST(self) -> None:
        self.stack.append([])

    def op_LIST(self) -> None:
        items = [self.value(v) for v in self._pop_mark()]
        self.stack.append(items)

    def op_EMPTY_DICT(self) -> None:
        self.stack.append({})

    def op_EMPTY_SET(self) -> None:
        self.stack.append(set())

    def op_FROZENSET(self) -> None:
        items = [self.value(v) for v in self._pop_mark()]
        self.stack.append(OPAQUE if self.scan else frozenset(items))

    def _target(self, kind: type, what: str) -> Any:
        target = self.stack[-1]
        if target is OPAQUE and self.scan:
            return None
        if not isinstance(target, kind):
            raise CorruptFileError(f"{what} applied to {describe(target)}")
        return target

    def op_APPEND(self) -> None:
        v = self.value(self.stack.pop())
        target = self._target(list, "APPEND")
        if target is not None:
            list.append(target, v)

    def op_APPENDS(self) -> None:
        items = [self.value(v) for v in self._pop_mark()]
        target = self._target(list, "APPENDS")
        if target is not None:
            list.extend(target, items)

    def op_ADDITEMS(self) -> None:
        items = [self.value(v) for v in self._pop_mark()]
        target = self._target(set, "ADDITEMS")
        if target is not None and not self.scan:
            for v in items:
                set.add(target, v)

    def _setitem(self, d: dict[Any, Any], key: Any, val: Any) -> None:
        if (
            type(val) is Ref
            and val.name in ARG_ONLY
            and key == "subclass"
            and self.ctx.policy.lookup(val.name, val.module, VALUE) is None
        ):
            # numpy.memmap as a joblib wrapper's array class: kept as a marker
            # that only the wrapper may consume (checked at STOP).
            val = Marker(val.name)
            self.ctx.marker_dicts[id(d)] = d
        else:
            val = self.value(val)
        key = self.value(key)
        if self.scan and (type(key) is Opaque or type(key) is Ref):
            return
        if isinstance(d, OrderedDict):
            OrderedDict.__setitem__(d, key, val)
        else:
            dict.__setitem__(d, key, val)

    def op_DICT(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise CorruptFileError("DICT with an odd number of items")
        d: dict[Any, Any] = {}
        for i in range(0, len(items), 2):
            self._setitem(d, items[i], items[i + 1])
        self.stack.append(d)

    def op_SETITEM(self) -> None:
        val = self.stack.pop()
        key = self.stack.pop()
        target = self._target(dict, "SETITEM")
        if target is not None:
            self._setitem(target, key, val)
        else:
            self.value(key)
            self.value(val)

    def op_SETITEMS(self) -> None:
        items = self._pop_mark()
        if len(items) % 2:
            raise CorruptFileError("SETITEMS with an odd number of items")
        target = self._target(dict, "SETITEMS")
        for i in range(0, len(items), 2):
            if target is not None:
                self._setitem(target, items[i], items[i + 1])
            else:
                self.value(items[i])
                self.value(items[i + 1])

    # -- opcodes: names --------------------------------------------------
    def op_GLOBAL(self) -> None:
        module = self._text_line("a GLOBAL module")
        qualname = self._text_line("a GLOBAL name")
        self._push_global(module, qualname)

    def op_STACK_GLOBAL(self) -> None:
        qualname = self.stack.pop()
        module = self.stack.pop()
        self._push_global(module, qualname)

    def _ext(self, code: int) -> None:
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if key is None:
            raise CorruptFileError(f"unregistered pickle extension code {code}")
        self._push_global(*key)

    def op_EXT1(self) -> None:
        self._ext(self.src.read_byte())

    def op_EXT2(self) -> None:
        self._ext(_U2.unpack(self.src.read(2))[0])

    def op_EXT4(self) -> None:
        self._ext(_I4.unpack(self.src.read(4))[0])

    def op_PERSID(self) -> None:
        raise UnsupportedPickleError(
            "the pickle uses persistent ids, which refer to objects outside the file"
        )

    op_BINPERSID = op_PERSID

    # -- opcodes: the ones that build objects ------------------------------
    def _instantiate(self, cls_ref: Any, args: list[Any], how: str) -> None:
        if not args:
            self.stack.append(self.new_instance(cls_ref, (), how))
        elif type(cls_ref) is Ref:
            self.stack.append(self.call_pending(cls_ref, self._tuple(args)))
        elif self.scan:
            self.stack.append(OPAQUE)
        else:
            raise CorruptFileError(f"{how}: the class is not named by the file")

    def op_INST(self) -> None:
        module = self._text_line("an INST module")
        qualname = self._text_line("an INST name")
        args = self._pop_mark()
        self._push_global(module, qualname)
        self._instantiate(self.stack.pop(), args, "INST")

    def op_OBJ(self) -> None:
        args = self._pop_mark()
        cls_ref = args.pop(0)
        self._instantiate(cls_ref, args, "OBJ")

    def op_NEWOBJ(self) -> None:
        args = self.stack.pop()
        cls_ref = self.stack.pop()
        self.stack.append(self.new_instance(cls_ref, args, "NEWOBJ"))

    def op_NEWOBJ_EX(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls_ref = self.stack.pop()
        if not (type(kwargs) is dict and not kwargs) and kwargs is not OPAQUE:
            raise UnsupportedPickleError("NEWOBJ_EX with keyword arguments to __new__")
        self.stack.append(self.new_instance(cls_ref, args, "NEWOBJ_EX"))

    def op_REDUCE(self) -> None:
        args = self.stack.pop()
        func = self.stack.pop()
        if type(func) is not Ref:
            if self.scan and func is OPAQUE:
                self.stack.append(OPAQUE)
                return
            # Not a name trust could allow: calling what the file built is never allowed.
            raise CorruptFileError(
                f"REDUCE calls {describe(func)}: only a reconstructor the file names may "
                "be called; the file is damaged or crafted"
            )
        if type(args) is not tuple and not (self.scan and args is OPAQUE):
            raise CorruptFileError(f"REDUCE of {func.name}: arguments must be a tuple")
        from .reductions import reduce_call

        self.stack.append(reduce_call(self, func, args))

    def op_BUILD(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        t = type(target)
        if t is Pending:
            target.finish(state)
            return
        if t is WrapperShell:
            from .wrappers import read_wrapper

            self.stack[-1] = target.result = read_wrapper(self, target, state)
            return
        if t is Ref:
            self.ctx.refuse(
                target.name,
                "The file gives state to a class or function (monkey-patching); state "
                "may only be given to instances created by the file.",
            )
            return
        if target is OPAQUE and self.scan:
            self.value(state)
            return
        shell = self.ctx.shells.get(id(target))
        if shell is None or shell.obj is not target:
            raise CorruptFileError(
                f"BUILD gives state to {describe(target)}, which is not an instance "
                "created by this file"
            )
        self.apply_shell_state(shell, state)


_OPCODES: dict[int, str] = {
    ord("("): "MARK",
    ord("."): "STOP",
    ord("0"): "POP",
    ord("1"): "POP_MARK",
    ord("2"): "DUP",
    ord("F"): "FLOAT",
    ord("I"): "INT",
    ord("J"): "BININT",
    ord("K"): "BININT1",
    ord("L"): "LONG",
    ord("M"): "BININT2",
    ord("N"): "NONE",
    ord("P"): "PERSID",
    ord("Q"): "BINPERSID",
    ord("R"): "REDUCE",
    ord("S"): "STRING",
    ord("T"): "BINSTRING",
    ord("U"): "SHORT_BINSTRING",
    ord("V"): "UNICODE",
    ord("X"): "BINUNICODE",
    ord("a"): "APPEND",
    ord("b"): "BUILD",
    ord("c"): "GLOBAL",
    ord("d"): "DICT",
    ord("}"): "EMPTY_DICT",
    ord("e"): "APPENDS",
    ord("g"): "GET",
    ord("h"): "BINGET",
    ord("i"): "INST",
    ord("j"): "LONG_BINGET",
    ord("l"): "LIST",
    ord("]"): "EMPTY_LIST",
    ord("o"): "OBJ",
    ord("p"): "PUT",
    ord("q"): "BINPUT",
    ord("r"): "LONG_BINPUT",
    ord("s"): "SETITEM",
    ord("t"): "TUPLE",
    ord(")"): "EMPTY_TUPLE",
    ord("u"): "SETITEMS",
    ord("G"): "BINFLOAT",
    0x80: "PROTO",
    0x81: "NEWOBJ",
    0x82: "EXT1",
    0x83: "EXT2",
    0x84: "EXT4",
    0x85: "TUPLE1",
    0x86: "TUPLE2",
    0x87: "TUPLE3",
    0x88: "NEWTRUE",
    0x89: "NEWFALSE",
    0x8A: "LONG1",
    0x8B: "LONG4",
    ord("B"): "BINBYTES",
    ord("C"): "SHORT_BINBYTES",
    0x8C: "SHORT_BINUNICODE",
    0x8D: "BINUNICODE8",
    0x8E: "BINBYTES8",
    0x8F: "EMPTY_SET",
    0x90: "ADDITEMS",
    0x91: "FROZENSET",
    0x92: "NEWOBJ_EX",
    0x93: "STACK_GLOBAL",
    0x94: "MEMOIZE",
    0x95: "FRAME",
    0x96: "BYTEARRAY8",
    0x97: "NEXT_BUFFER",
    0x98: "READONLY_BUFFER",
}


def run_vm(
    open_source: Callable[[], ByteSource],
    policy: TrustPolicy,
    directory: str | None = None,
) -> Any:
    """Check, then build, the object in a pickle/joblib stream (two passes).

    Raises UntrustedTypeError listing every unacceptable name found by the
    checking pass, before anything is imported.
    """
    scan = Context(policy, scan=True, directory=directory)
    try:
        PickleVM(open_source(), scan).run()
    except SkjarError:
        if scan.offending:
            raise UntrustedTypeError(scan.offending) from None
        raise
    if scan.offending:
        raise UntrustedTypeError(scan.offending)
    build = Context(policy, scan=False, directory=directory)
    result = PickleVM(open_source(), build).run()
    for shell in build.shells.values():
        # An instance the stream created but never gave state: its meaning check still
        # runs (on no state, as skjar's loader would), so an unchecked empty spline or
        # tree is refused here rather than handed over.
        validator = VALIDATORS.get(shell.name)
        if not shell.built and validator is not None:
            validator((), None)
    return result
