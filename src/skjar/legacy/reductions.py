"""REDUCE: the known-safe reductions, each mapped to a fixed safe equivalent.

``reduce_call(vm, func, args)`` handles every REDUCE. A name in
:data:`~skjar.legacy.names.SAFE_CALLS` is never imported or called: the
handler here checks the arguments and builds the value itself with ordinary
constructors (numpy arrays from validated bytes, bit generators from a fixed
table, ``cls.__new__(cls)`` for trusted classes...). Any other name must be
trusted for ``call`` (a reconstructor such as ``sklearn.tree._tree.Tree``),
and is called with decoded arguments once skjar's meaning validator has
checked them and the state that follows.

During the checking pass (``vm.scan``) handlers build nothing, except the
dtype and latin-1 bytes a joblib array wrapper needs to know how many bytes of
array data follow it.

>>> import pickle, io
>>> from skjar.trust import TrustPolicy
>>> from .source import ByteSource
>>> from .vm import run_vm
>>> data = pickle.dumps({1, 2}, protocol=2) + pickle.dumps(None)
>>> run_vm(lambda: ByteSource(io.BytesIO(data), len(data)), TrustPolicy())
{1, 2}
"""

from __future__ import annotations

import functools
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from ..codec.nodes import STATE_CYTHON, STATE_DEFAULT
from ..codec.numpy import STATE_AND_SEED, check_positions, seed_fields_ok
from ..errors import CorruptFileError, UnsupportedPickleError
from ..trust import OBJECT
from .arrays import (
    array_from_bytes,
    check_shape,
    make_dtype,
    ndarray_from_state,
    scalar_from_bytes,
)
from .names import ARG_ONLY, BIT_GENERATORS, SAFE_CALLS, pyx_class
from .vm import NO_STATE, OPAQUE, Pending, PickleVM, Ref, guarded

__all__ = ["make_complex", "reduce_call"]

Handler = Callable[[PickleVM, Ref, Any], Any]
_SIMPLE_FILL = (np.generic, int, float, str, bytes, bool, complex)


def reduce_call(vm: PickleVM, func: Ref, args: Any) -> Any:
    """The value of ``func(*args)`` as the safe reader builds it."""
    key = SAFE_CALLS.get(func.name)
    if key is not None:
        if vm.scan:
            if key in _SCAN_EVAL and type(args) is tuple:
                return _HANDLERS[key](vm, func, args)
            _scan_args(vm, args)
            return OPAQUE
        return _HANDLERS[key](vm, func, args)
    cls_name = pyx_class(func.name, func.module)
    if cls_name is not None and vm.ctx.policy.lookup(cls_name, func.module, OBJECT) is not None:
        if vm.scan:
            _scan_args(vm, args)
            return OPAQUE
        return _pyx_unpickle(vm, func, args, cls_name)
    return vm.call_pending(func, args)


def _scan_args(vm: PickleVM, args: Any) -> None:
    """Checking pass: names in a safe reduction's arguments must be usable there."""
    if type(args) is not tuple:
        return
    policy = vm.ctx.policy
    for a in args:
        if type(a) is Ref and (
            a.name in ARG_ONLY or policy.lookup(a.name, a.module, OBJECT) is not None
        ):
            continue
        vm.value(a)


def _arity(args: Any, low: int, high: int, what: str) -> tuple[Any, ...]:
    if type(args) is not tuple or not low <= len(args) <= high:
        raise CorruptFileError(f"{what}: expected {low}..{high} arguments")
    out: tuple[Any, ...] = args
    return out


def _class_arg(vm: PickleVM, x: Any, what: str) -> tuple[type, str]:
    """A class named by the file and trusted as ``object``: (class, name)."""
    if type(x) is not Ref:
        raise CorruptFileError(f"{what}: expected a class named by the file, got {x!r:.60}")
    policy = vm.ctx.policy
    if policy.lookup(x.name, x.module, OBJECT) is None:
        vm.ctx.refuse(x.name, "It is not trusted as a class to instantiate.")
    return policy.resolve(x.name, x.module, OBJECT), x.name


# -- copyreg -----------------------------------------------------------------
def _reconstructor(vm: PickleVM, func: Ref, args: Any) -> Any:
    """``copyreg._reconstructor(cls, base, state)`` (protocols 0 and 1)."""
    cls_ref, base, state = _arity(args, 3, 3, "copyreg._reconstructor")
    base_ref = vm.expect_ref(
        base,
        ("builtins.object", "builtins.dict", "builtins.list", "builtins.tuple"),
        "the base of a class",
    )
    cls, name = _class_arg(vm, cls_ref, "copyreg._reconstructor")
    if base_ref.name == "builtins.object":
        if state is not None:
            raise UnsupportedPickleError(f"{name}: object base with state is not supported")
        return vm.new_instance(cls_ref, (), "copyreg._reconstructor")
    if base_ref.name == "builtins.tuple":  # named tuples
        content = vm.value(state)
        if type(content) is not tuple:
            raise CorruptFileError(f"{name}: tuple content must be a tuple")
        return vm.new_instance(cls_ref, content, "copyreg._reconstructor")
    base_type: type = dict if base_ref.name == "builtins.dict" else list
    if not issubclass(cls, base_type):
        raise CorruptFileError(f"{name} is not a subclass of {base_type.__name__}")
    obj = guarded(name, "creating the instance", base_type.__new__, cls)
    content = vm.value(state)
    if base_type is dict:
        if type(content) is not dict:
            raise CorruptFileError(f"{name}: dict content must be a dict")
        dict.update(obj, content)
    else:
        if type(content) is not list:
            raise CorruptFileError(f"{name}: list content must be a list")
        list.extend(obj, content)
    vm.register_shell(obj, name, STATE_DEFAULT)
    return obj


def _newobj(vm: PickleVM, func: Ref, args: Any) -> Any:
    """``copyreg.__newobj__(cls, *args)`` and scikit-learn's ``newObj(cls)``."""
    args = _arity(args, 1, 1 << 16, func.name)
    if func.name != "copyreg.__newobj__" and len(args) != 1:
        raise CorruptFileError(f"{func.name} takes exactly one class")
    return vm.new_instance(args[0], vm._tuple(args[1:]), func.name)


def _newobj_ex(vm: PickleVM, func: Ref, args: Any) -> Any:
    cls_ref, cls_args, kwargs = _arity(args, 3, 3, func.name)
    kw = vm.value(kwargs)
    if kw is not None and not (type(kw) is dict and not kw):
        raise UnsupportedPickleError(f"{func.name} with keyword arguments to __new__")
    return vm.new_instance(cls_ref, cls_args, func.name)


def _pyx_unpickle(vm: PickleVM, func: Ref, args: Any, cls_name: str) -> Any:
    """Cython's ``__pyx_unpickle_Cls(cls, checksum, state)``: new + ``__setstate_cython__``."""
    cls_ref, checksum, state = _arity(args, 3, 3, func.name)
    if type(cls_ref) is not Ref or cls_ref.name != cls_name:
        raise CorruptFileError(f"{func.name} must be given the class {cls_name}")
    if type(checksum) is not int:
        raise CorruptFileError(f"{func.name}: the checksum must be an integer")
    cls, name = _class_arg(vm, cls_ref, func.name)
    obj = guarded(name, "creating the instance", cls.__new__, cls)
    if type(obj) is not cls:
        raise CorruptFileError(f"{name}.__new__ returned a {type(obj).__name__}")
    vm.register_shell(obj, name, STATE_CYTHON)
    if state is not None:
        vm.apply_shell_state(vm.ctx.shells[id(obj)], state)
    return obj


# -- numpy ---------------------------------------------------------------------
def _ndarray(vm: PickleVM, func: Ref, args: Any) -> Any:
    """``_reconstruct(ndarray, (0,), b'b')`` + BUILD (version, shape, dtype, fortran, data)."""
    cls, _, _ = _arity(args, 3, 3, func.name)
    vm.expect_ref(cls, ("numpy.ndarray", "numpy.memmap"), "an array class")

    def finish(state: Any) -> Any:
        if state is NO_STATE:
            return np.empty((0,), np.int8)
        return ndarray_from_state(vm.value(state))

    return Pending("numpy array", finish)


def _dtype(vm: PickleVM, func: Ref, args: Any) -> Any:
    values = tuple(vm.value(a) for a in _arity(args, 1, 3, "numpy.dtype"))

    def finish(state: Any) -> Any:
        return make_dtype(values, None if state is NO_STATE else vm.value(state))

    return Pending("numpy dtype", finish)


def _scalar(vm: PickleVM, func: Ref, args: Any) -> Any:
    values = vm.args_of(_arity(args, 1, 2, "numpy scalar"), "numpy scalar")
    if len(values) == 1:  # numpy: scalar(dtype) is the zero of that dtype
        values.append(b"\x00" * getattr(values[0], "itemsize", 0))
    return scalar_from_bytes(values[0], values[1])


def _frombuffer(vm: PickleVM, func: Ref, args: Any) -> Any:
    """Protocol 5 arrays: ``_frombuffer(buffer, dtype, shape, order[, axis_order])``."""
    values = vm.args_of(_arity(args, 4, 5, func.name), func.name)
    buf, dtype, shape_, order = values[:4]
    if not isinstance(dtype, np.dtype) or order not in ("C", "F", "A", "K"):
        raise CorruptFileError(f"{func.name}: malformed dtype or order")
    shape = check_shape(shape_, "numpy array")
    if dtype.hasobject:
        raise CorruptFileError("object arrays cannot come from a buffer")
    axis_order = values[4] if len(values) == 5 else None
    if order == "K" and axis_order is not None:
        if type(axis_order) is not tuple or sorted(axis_order) != list(range(len(shape))):
            raise CorruptFileError(f"{func.name}: malformed axis order")
        arr = array_from_bytes(buf, dtype, shape, False, "numpy array")
        return arr.transpose(axis_order)
    return array_from_bytes(buf, dtype, shape, order == "F", "numpy array")


def _mareconstruct(vm: PickleVM, func: Ref, args: Any) -> Any:
    """Masked arrays: ``_mareconstruct(MaskedArray, ndarray, (0,), 'b')`` + a 7-tuple state."""
    subtype, baseclass, _, _ = _arity(args, 4, 4, func.name)
    vm.expect_ref(subtype, ("numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray"), "a masked array")
    vm.expect_ref(baseclass, ("numpy.ndarray",), "a masked array's base class")

    def finish(state: Any) -> Any:
        if state is NO_STATE:
            raise CorruptFileError("a masked array without its data")
        st = vm.value(state)
        if type(st) is not tuple or len(st) != 7:
            raise CorruptFileError("masked array state must be a 7-tuple")
        version, shape, dtype, fortran, data, mask_data, fill = st
        data_arr = ndarray_from_state((version, shape, dtype, fortran, data), "masked array")
        mask_dtype = np.ma.make_mask_descr(data_arr.dtype)
        mask = ndarray_from_state((version, shape, mask_dtype, fortran, mask_data), "array mask")
        if isinstance(fill, np.ndarray) and fill.ndim == 0 and not fill.dtype.hasobject:
            fill = fill[()]  # numpy pickles the fill value as a 0-d array
        if fill is not None and not isinstance(fill, _SIMPLE_FILL):
            raise CorruptFileError("masked array: invalid fill value")
        if fill is not None and _is_default_fill(fill, data_arr):
            fill = None  # the default is recomputed on access: keep it unset
        return guarded(
            "numpy.ma.MaskedArray",
            "building the masked array",
            lambda: np.ma.MaskedArray(data_arr, mask=mask, fill_value=fill, copy=False),
        )

    return Pending("masked array", finish)


def _is_default_fill(fill: Any, data: np.ndarray) -> bool:
    try:
        default = np.ma.default_fill_value(data)
        return bool(type(fill) is type(default) and fill == default) or bool(
            isinstance(fill, np.generic)
            and fill.dtype == np.asarray(default).dtype
            and fill == default
        )
    except Exception:
        return False


# -- numpy random ----------------------------------------------------------------
def _bit_generator_class(vm: PickleVM, x: Any) -> type:
    if type(x) is str and x in BIT_GENERATORS:
        name = BIT_GENERATORS[x]
    elif type(x) is Ref and x.name in BIT_GENERATORS.values():
        name = x.name
    else:
        raise CorruptFileError(f"{x!r:.60} is not a known numpy bit generator")
    cls: type = {
        "numpy.random._mt19937.MT19937": np.random.MT19937,
        "numpy.random._pcg64.PCG64": np.random.PCG64,
        "numpy.random._pcg64.PCG64DXSM": np.random.PCG64DXSM,
        "numpy.random._philox.Philox": np.random.Philox,
        "numpy.random._sfc64.SFC64": np.random.SFC64,
    }[name]
    return cls


def _set_bitgen_state(bitgen: Any, state: Any) -> None:
    seed_seq: Any = NO_STATE
    if type(state) is tuple and len(state) == 2:  # numpy 2: (state dict, seed sequence)
        state, seed_seq = state
        if seed_seq is not None and type(seed_seq) is not np.random.SeedSequence:
            raise CorruptFileError("a bit generator's seed sequence must be a SeedSequence")
    if type(state) is not dict:
        raise CorruptFileError("a bit generator's state must be a dict")
    name = type(bitgen).__name__
    check_positions(state)  # numpy stores them unchecked, and its C code indexes with them
    if seed_seq is NO_STATE or not STATE_AND_SEED:
        guarded(name, "setting its state", setattr, bitgen, "state", state)
    else:  # kept, as pickle keeps it (None for a legacy-seeded RandomState's MT19937)
        guarded(name, "setting its state", bitgen.__setstate__, (state, seed_seq))


def _bit_generator(vm: PickleVM, func: Ref, args: Any) -> Any:
    """``__bit_generator_ctor(cls_or_name)``: a fresh generator of a fixed class, then state."""
    (which,) = _arity(args, 0, 1, func.name) or ("MT19937",)
    cls = _bit_generator_class(vm, which)

    def finish(state: Any) -> Any:
        bitgen = cls()
        if state is not NO_STATE:
            _set_bitgen_state(bitgen, vm.value(state))
        return bitgen

    return Pending(cls.__name__, finish)


def _legacy_ctor(vm: PickleVM, args: tuple[Any, ...], what: str) -> Any:
    """The bit generator argument of __randomstate_ctor / __generator_ctor."""
    if len(args) == 2:  # (name, ctor): the ctor is never called, it must be numpy's own
        ctor = args[1]
        if type(ctor) is not Ref or ctor.name != "numpy.random._pickle.__bit_generator_ctor":
            raise CorruptFileError(f"{what}: unexpected bit generator constructor {ctor!r:.60}")
    which = args[0] if args else "MT19937"
    if type(which) is str or type(which) is Ref:
        return _bit_generator_class(vm, which)()
    bitgen = vm.value(which)
    if type(bitgen) not in (
        np.random.MT19937,
        np.random.PCG64,
        np.random.PCG64DXSM,
        np.random.Philox,
        np.random.SFC64,
    ):
        raise CorruptFileError(f"{what} needs a numpy bit generator")
    return bitgen


def _randomstate(vm: PickleVM, func: Ref, args: Any) -> Any:
    bitgen = _legacy_ctor(vm, _arity(args, 0, 2, func.name), "RandomState")

    def finish(state: Any) -> Any:
        rs = np.random.RandomState(bitgen)
        if state is not NO_STATE:
            st = vm.value(state)
            if type(st) is tuple:  # numpy's legacy form: ("MT19937", key, pos[, has_gauss, gauss])
                if len(st) not in (3, 5):
                    raise CorruptFileError("RandomState's legacy state must have 3 or 5 items")
                check_positions({"bit_generator": st[0], "state": {"pos": st[2]}})
                has_gauss = st[3] if len(st) == 5 else 0
            elif type(st) is dict:
                check_positions(st)
                has_gauss = st.get("has_gauss", 0)
            else:
                raise CorruptFileError("RandomState state must be a dict or a tuple")
            if type(has_gauss) is not int or has_gauss not in (0, 1):  # as skjar's loader
                raise CorruptFileError(f"RandomState: has_gauss must be 0 or 1, not {has_gauss!r:.40}")
            guarded("RandomState", "setting its state", rs.set_state, st)
        return rs

    return Pending("RandomState", finish)


def _generator(vm: PickleVM, func: Ref, args: Any) -> Any:
    bitgen = _legacy_ctor(vm, _arity(args, 0, 2, func.name), "Generator")

    def finish(state: Any) -> Any:
        gen = np.random.Generator(bitgen)
        if state is not NO_STATE and state is not None:
            _set_bitgen_state(gen.bit_generator, vm.value(state))
        return gen

    return Pending("Generator", finish)


def _seed_sequence(vm: PickleVM, func: Ref, args: Any) -> Any:
    """numpy's SeedSequence, rebuilt from its checked entropy (not by its Cython helper)."""
    cls, checksum, state = _arity(args, 3, 3, func.name)
    vm.expect_ref(cls, ("numpy.random.bit_generator.SeedSequence",), "a seed sequence")
    if type(checksum) is not int:
        raise CorruptFileError("SeedSequence: malformed checksum")

    def finish(st: Any) -> Any:
        parts = vm.value(state if st is NO_STATE else st)
        if type(parts) is not tuple or len(parts) != 5:
            raise CorruptFileError("SeedSequence state must be a 5-tuple")
        entropy, n_children, pool, pool_size, spawn_key = parts
        if isinstance(entropy, np.integer):
            entropy = int(entropy)
        if isinstance(entropy, np.ndarray):
            if entropy.dtype.kind not in "iu" or entropy.ndim != 1 or len(entropy) > 1 << 16:
                raise CorruptFileError("SeedSequence: malformed entropy")
            entropy = [int(e) for e in entropy]
        # The loader's rules (sizes bounded: numpy's work is quadratic in them).
        if type(spawn_key) is not tuple or not seed_fields_ok(
            [entropy, list(spawn_key), pool_size, n_children]
        ):
            raise CorruptFileError(
                "SeedSequence: malformed or oversized entropy, spawn key, pool size or "
                "child count"
            )
        seq = guarded(
            "SeedSequence",
            "rebuilding it",
            lambda: np.random.SeedSequence(
                entropy,
                spawn_key=spawn_key,
                pool_size=pool_size,
                n_children_spawned=n_children,
            ),
        )
        if isinstance(pool, np.ndarray) and not np.array_equal(seq.pool, pool):
            raise CorruptFileError("SeedSequence: its pool does not match its entropy")
        return seq

    pending = Pending("SeedSequence", finish)
    if state is not None:
        pending.finish()
    return pending


# -- builtins, collections, codecs, functools -------------------------------------
def _iterable(vm: PickleVM, args: Any, what: str) -> list[Any]:
    values = vm.args_of(_arity(args, 0, 1, what), what)
    if not values:
        return []
    items = values[0]
    if type(items) not in (list, tuple, set, frozenset):
        raise CorruptFileError(f"{what}: expected a list of items")
    vm.expand(len(items), what)
    return list(items)


def _set(vm: PickleVM, func: Ref, args: Any) -> Any:
    return set(_iterable(vm, args, "set"))


def _frozenset(vm: PickleVM, func: Ref, args: Any) -> Any:
    return frozenset(_iterable(vm, args, "frozenset"))


def _latin1(vm: PickleVM, values: list[Any], what: str) -> bytes:
    if len(values) == 2 and type(values[0]) is str and values[1] in ("latin-1", "latin1"):
        return values[0].encode("latin-1")
    if len(values) == 1 and type(values[0]) in (bytes, bytearray):
        return bytes(values[0])
    if not values:
        return b""
    raise CorruptFileError(f"{what}: unsupported arguments")


def _bytearray(vm: PickleVM, func: Ref, args: Any) -> Any:
    return bytearray(
        _latin1(vm, vm.args_of(_arity(args, 0, 2, "bytearray"), "bytearray"), "bytearray")
    )


def _bytes(vm: PickleVM, func: Ref, args: Any) -> Any:
    return _latin1(vm, vm.args_of(_arity(args, 0, 2, "bytes"), "bytes"), "bytes")


def _codecs_encode(vm: PickleVM, func: Ref, args: Any) -> Any:
    """``_codecs.encode(text, 'latin1')``: how protocols 0-2 write bytes."""
    values = vm.args_of(_arity(args, 2, 2, "_codecs.encode"), "_codecs.encode")
    if vm.scan and (type(values[0]) is not str or len(values[0]) > 256):
        return OPAQUE  # only short ones matter while checking (a dtype's datetime unit)
    if type(values[0]) is not str or values[1] not in ("latin1", "latin-1"):
        raise CorruptFileError("_codecs.encode is only accepted for latin-1 text")
    return values[0].encode("latin-1")


def make_complex(vm: PickleVM, args: Any) -> complex:
    """``complex(real, imag)`` from two numbers."""
    values = vm.args_of(_arity(args, 0, 2, "complex"), "complex")
    if any(type(v) not in (int, float) for v in values):
        raise CorruptFileError("complex: parts must be numbers")
    return complex(*values)


def _complex(vm: PickleVM, func: Ref, args: Any) -> Any:
    return make_complex(vm, args)


def _bounds(vm: PickleVM, args: Any, what: str) -> list[Any]:
    values = vm.args_of(_arity(args, 1, 3, what), what)
    if any(v is not None and type(v) is not int for v in values):
        raise CorruptFileError(f"{what}: bounds must be integers or None")
    return values


def _slice(vm: PickleVM, func: Ref, args: Any) -> Any:
    return slice(*_bounds(vm, args, "slice"))


def _range(vm: PickleVM, func: Ref, args: Any) -> Any:
    values = _bounds(vm, args, "range")
    if None in values or (len(values) == 3 and values[2] == 0):
        raise CorruptFileError("range: malformed bounds")
    return range(*values)


def _ordereddict(vm: PickleVM, func: Ref, args: Any) -> Any:
    items = _iterable(vm, args, "OrderedDict")
    if any(type(p) not in (tuple, list) or len(p) != 2 for p in items):
        raise CorruptFileError("OrderedDict: items must be pairs")
    out: OrderedDict[Any, Any] = OrderedDict()
    for k, v in items:
        out[k] = v
    return out


def _defaultdict(vm: PickleVM, func: Ref, args: Any) -> Any:
    """``defaultdict(factory)``: the factory must be a trusted value; it is not called."""
    values = vm.args_of(_arity(args, 0, 2, "defaultdict"), "defaultdict")
    factory = values[0] if values else None
    if factory is not None and not callable(factory):
        raise CorruptFileError("defaultdict: the factory is not callable")
    out: defaultdict[Any, Any] = defaultdict(factory)
    if len(values) == 2:
        if type(values[1]) is not dict:
            raise CorruptFileError("defaultdict: initial content must be a dict")
        dict.update(out, values[1])
    return out


def _partial(vm: PickleVM, func: Ref, args: Any) -> Any:
    """``functools.partial(func)`` + BUILD (func, args, keywords, dict); func is a value."""
    values = vm.args_of(_arity(args, 1, 1 << 16, "functools.partial"), "functools.partial")

    def finish(state: Any) -> Any:
        fn, fargs = values[0], tuple(values[1:])
        kwargs: dict[str, Any] = {}
        if state is not NO_STATE:
            st = vm.value(state)
            if type(st) is not tuple or len(st) != 4:
                raise CorruptFileError("functools.partial state must be a 4-tuple")
            fn, fargs, kwargs, extra = st
            fargs = () if fargs is None else fargs
            kwargs = {} if kwargs is None else kwargs
            if type(fargs) is not tuple or type(kwargs) is not dict or extra not in (None, {}):
                raise CorruptFileError("functools.partial: malformed state")
            if any(type(k) is not str for k in kwargs):
                raise CorruptFileError("functools.partial: keywords must be strings")
        if not callable(fn):
            raise CorruptFileError("functools.partial of something not callable")
        return functools.partial(fn, *fargs, **kwargs)

    return Pending("functools.partial", finish)


_HANDLERS: dict[str, Handler] = {
    "reconstructor": _reconstructor,
    "newobj": _newobj,
    "newobj_ex": _newobj_ex,
    "ndarray": _ndarray,
    "dtype": _dtype,
    "scalar": _scalar,
    "frombuffer": _frombuffer,
    "mareconstruct": _mareconstruct,
    "randomstate": _randomstate,
    "generator": _generator,
    "bit_generator": _bit_generator,
    "seed_sequence": _seed_sequence,
    "set": _set,
    "frozenset": _frozenset,
    "bytearray": _bytearray,
    "bytes": _bytes,
    "complex": _complex,
    "slice": _slice,
    "range": _range,
    "ordereddict": _ordereddict,
    "defaultdict": _defaultdict,
    "codecs_encode": _codecs_encode,
    "partial": _partial,
}
# Evaluated during the checking pass too: a joblib array wrapper's dtype tells
# how many bytes of array data follow it (and a datetime dtype's unit is bytes).
_SCAN_EVAL = frozenset({"dtype", "codecs_encode"})
assert set(_HANDLERS) == set(SAFE_CALLS.values())
