"""Instances of classes, reconstructor calls and functions/classes as values.

This is the generic path for everything without a handler of its own. At dump
time it follows the object's ``__reduce_ex__(4)``, as pickle would, but only
in the few shapes the loader can rebuild safely:

- ``copyreg.__newobj__(cls)`` + state  -> INSTANCE (``cls.__new__(cls)``, then state)
- scikit-learn's ``newObj(cls)`` / Cython's ``__pyx_unpickle_*`` -> INSTANCE as well
- any other ``callable(*args)`` + state -> RECONSTRUCT (needs ``call`` trust)
- classes and functions -> REF (a value, never called)
"""

from __future__ import annotations

import copyreg
import types
from typing import Any

import numpy as np

from ..errors import CorruptFileError, SkjarError, UnsupportedObjectError
from ..trust import CALL, OBJECT, VALUE, name_of
from .decoder import Decoder, brief, expect_list
from .encoder import DEFER_DEPTH, Encoder, Path, render_path
from .nodes import (
    INSTANCE,
    ITEMS_DICT,
    ITEMS_LIST,
    ITEMS_NONE,
    NAMEDTUPLE,
    NEWOBJ,
    RECONSTRUCT,
    REF,
    ROOT,
    STATE,
    STATE_CYTHON,
    STATE_DEFAULT,
    STATE_NONE,
    TUPLE,
    Node,
    SharedRef,
)
from .registry import ENCODERS, OBJECT_STEPS, OWNED_INDEXES, VALIDATORS, decodes

NEWOBJ_FUNC = copyreg.__newobj__  # type: ignore[attr-defined]
FUNCTION_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    np.ufunc,
)
NOT_STATEFUL = (type, types.ModuleType, *FUNCTION_TYPES)


def _is_function_like(obj: Any) -> bool:
    return isinstance(obj, (type, *FUNCTION_TYPES)) or type(obj).__name__ in (
        "cython_function_or_method",
        "fused_cython_function",
    )


def _class_name(enc: Encoder, cls: type, use: str, path: Path) -> tuple[str, Any]:
    """``cls``'s name as the registry knows it, and as the tree writes it (interned)."""
    named = name_of(cls)
    if named is None:
        raise UnsupportedObjectError(
            f"class {cls!r} has no importable name (defined in a function?)", render_path(path)
        )
    enc.verify_importable(cls, *named, path)
    name = enc.declare(*named, use)
    return name, enc.intern(name)


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def ref_node(enc: Encoder, obj: Any, path: Path) -> Node:
    """A class or function referred to as a value."""
    named = name_of(obj)
    if named is None:
        raise UnsupportedObjectError(
            f"{obj!r} cannot be referred to by name (a lambda or a local function?); "
            "use a function defined at the top level of an importable module",
            render_path(path),
        )
    enc.verify_importable(obj, *named, path)
    return Node(REF, enc.intern(enc.declare(*named, VALUE)))


def _encode_state(enc: Encoder, state: Any, path: Path) -> Any:
    # A state dict is a fresh copy made by __getstate__: encode its contents
    # without memoizing the dict itself.
    if type(state) is dict:
        return enc.encode_dict(state, path)
    if (
        type(state) is tuple
        and len(state) == 2
        and all(s is None or type(s) is dict for s in state)
    ):
        return Node(TUPLE, [None if s is None else enc.encode_dict(s, path) for s in state])
    return enc.encode(state, path)


def _encode_items(enc: Encoder, listitems: Any, dictitems: Any, path: Path) -> tuple[int, Any]:
    """An instance's list or dict items, which no meaning check reads (a check reads its
    class's arguments and state, and its holder's check does not look inside it)."""
    saved, enc.under_check = enc.under_check, None
    try:
        return _encode_item_nodes(enc, listitems, dictitems, path)
    finally:
        enc.under_check = saved


def _encode_item_nodes(enc: Encoder, listitems: Any, dictitems: Any, path: Path) -> tuple[int, Any]:
    if listitems is not None:
        return ITEMS_LIST, enc.encode_items(list(listitems), path)
    if dictitems is not None:
        return ITEMS_DICT, [
            [enc.encode(k, (path, "<key>")), enc.encode(v, (path, k))] for k, v in dictitems
        ]
    return ITEMS_NONE, None


# Classes whose instances are none of a function, a dtype, a numpy scalar with a handler
# or a module: each of those tests depends on the class alone, so a class that passed them
# once skips them (a forest's 400 instances are of two classes).
_PLAIN_CLASSES: set[type] = set()


def encode_object(enc: Encoder, obj: Any, path: Path) -> Node:
    """Encode an object no handler claimed (see the module docstring)."""
    cls = type(obj)
    if cls not in _PLAIN_CLASSES:
        if _is_function_like(obj):
            return ref_node(enc, obj, path)
        if isinstance(obj, np.dtype):  # numpy 2 dtypes are instances of np.dtype subclasses
            return ENCODERS[np.dtype](enc, obj, path)
        if isinstance(obj, np.generic) and cls in ENCODERS:
            return ENCODERS[cls](enc, obj, path)
        if isinstance(obj, types.ModuleType):
            raise UnsupportedObjectError(
                f"module {obj.__name__!r} cannot be stored", render_path(path)
            )
        if len(_PLAIN_CLASSES) < 4096:
            _PLAIN_CLASSES.add(cls)
    try:
        rv = obj.__reduce_ex__(4)
    except Exception as exc:
        raise UnsupportedObjectError(
            f"{_dotted(cls)} cannot be serialized: {exc}", render_path(path)
        ) from None
    return encode_reduced(enc, obj, rv, path)


def encode_reduced(enc: Encoder, obj: Any, rv: Any, path: Path) -> Node:
    """Encode ``obj`` from what its ``__reduce_ex__(4)`` returned (``rv``).

    The compiled walk (_encode.c: encode_object) writes the common shapes itself - an
    instance rebuilt by ``cls.__new__`` with a dict state or none, a call to a
    reconstructor this dump has already declared - and hands every other one here.
    """
    cls = type(obj)
    if isinstance(rv, str):
        return ref_node(enc, obj, path)
    if not isinstance(rv, tuple) or not 2 <= len(rv) <= 6:
        raise UnsupportedObjectError(
            f"{_dotted(cls)}.__reduce_ex__ returned {rv!r:.80}", render_path(path)
        )
    func, args, state, listitems, dictitems, setter = (*rv, None, None, None, None)[:6]
    if setter is not None:
        raise UnsupportedObjectError(
            f"{_dotted(cls)} uses a custom state setter", render_path(path)
        )
    func_name = getattr(func, "__name__", "")
    args = tuple(args or ())

    if func is NEWOBJ_FUNC and args and args[0] is cls and len(args) > 1:
        if issubclass(cls, tuple) and hasattr(cls, "_fields") and state is None:
            _, name = _class_name(enc, cls, OBJECT, path)
            return Node(NAMEDTUPLE, [name, enc.encode_items(list(obj), path)])
        raise UnsupportedObjectError(
            f"{_dotted(cls)} needs arguments to __new__, which skjar does not call",
            render_path(path),
        )
    if (func is NEWOBJ_FUNC or func_name == "newObj") and args == (cls,):
        mode = STATE_NONE if state is None else STATE_DEFAULT
    elif func_name.startswith("__pyx_unpickle_") and len(args) == 3 and args[0] is cls:
        # Cython auto-pickling: rebuild with cls.__new__ and __setstate_cython__.
        state = args[2] if state is None else state
        mode = STATE_CYTHON
    else:
        return _reconstruct_node(enc, obj, func, args, state, listitems, dictitems, path)
    plain = enc.object_classes.get(cls)
    if plain is None:  # the class's first instance in this dump: name it, check, declare
        plain, name = _class_name(enc, cls, OBJECT, path)
        enc.object_classes[cls] = plain
    else:
        name = enc.intern(plain)
    # An instance whose holder has a meaning check is never deferred: the check runs
    # when the holder gets its state, before a deferred instance would get its own,
    # and refuses to judge an empty shell (_refuse_pending).
    if enc.depth > DEFER_DEPTH and not enc.under_check:
        shell = Node(NEWOBJ, name)
        enc.share(shell)
        enc.deferred.append((obj, shell, (plain, mode, state, listitems, dictitems, path)))
        enc.pending[id(obj)] = path
        return shell
    shell = enc.shells[id(obj)] = Node(NEWOBJ, name)
    saved = enc.under_check
    try:
        kind, items = _encode_items(enc, listitems, dictitems, path)
        enc.under_check = _checked(plain)
        enc_state = None if mode == STATE_NONE else _encode_state(enc, state, path)
    finally:
        del enc.shells[id(obj)]
        enc.under_check = saved
    # Only an object its own state refers back to needs the two-step form.
    first = shell if shell.share_id is not None else name
    return Node(INSTANCE, [first, mode, enc_state, kind, items])


def _checked(name: str) -> str | None:
    """``name`` if the loader runs a meaning check on it, else None (Encoder.under_check)."""
    return name if name in VALIDATORS else None


def encode_deferred(enc: Encoder, obj: Any, shell: Node, rest: Any) -> Node:
    """The STATE node giving a deferred instance its state, encoded from the top level."""
    plain, mode, state, listitems, dictitems, path = rest
    saved = enc.depth, enc.under_check
    enc.depth = 0
    enc.shells[id(obj)] = shell
    try:
        kind, items = _encode_items(enc, listitems, dictitems, path)
        enc.under_check = _checked(plain)
        enc_state = None if mode == STATE_NONE else _encode_state(enc, state, path)
    finally:
        del enc.shells[id(obj)]
        enc.depth, enc.under_check = saved
    enc.pending.pop(id(obj), None)
    return Node(STATE, [SharedRef(shell), mode, enc_state, kind, items])


def _reconstruct_node(
    enc: Encoder,
    obj: Any,
    func: Any,
    args: tuple[Any, ...],
    state: Any,
    listitems: Any,
    dictitems: Any,
    path: Path,
) -> Node:
    known = enc.reconstructors.get(id(func))
    if known is not None and known[0] is func:
        plain = known[1]
    else:  # the callable's first use in this dump: name it, check, declare
        named = name_of(func)
        if named is None or not callable(func):
            raise UnsupportedObjectError(
                f"{type(obj).__qualname__} is rebuilt by {func!r}, which has no importable name",
                render_path(path),
            )
        enc.verify_importable(func, *named, path)
        plain = enc.declare(*named, CALL)
        enc.reconstructors[id(func)] = (func, plain)
    name = enc.intern(plain)
    saved, enc.under_check = enc.under_check, _checked(plain)
    try:
        enc_args = [enc.encode(a, (path, f"<arg {i}>")) for i, a in enumerate(args)]
        kind, items = _encode_items(enc, listitems, dictitems, path)
        enc_state = None if state is None else _encode_state(enc, state, path)
    finally:
        enc.under_check = saved
    mode = STATE_NONE if state is None else STATE_DEFAULT
    return Node(RECONSTRUCT, [name, enc_args, mode, enc_state, kind, items])


# -- decoding --------------------------------------------------------------
def _apart(state: Any) -> Any:
    """The state a setter is given: a dict or list state as a copy of its own.

    A setter may change the container it is given - BaseEstimator.__setstate__ pops
    ``_sklearn_version`` - and a file can place one container in several spots: a
    vectorizer's checked vocabulary_ that is also a later estimator's whole state lost
    a key after its check, leaving a column index past the vocabulary's end
    (tests/security/test_state_tampering.py). The twin is the walker's (_walk.c).
    """
    if type(state) is dict:
        return dict(state)
    if type(state) is list:
        return list(state)
    return state


def _apply_state(obj: Any, mode: Any, state: Any, name: str) -> None:
    if mode == STATE_NONE:
        if state is not None:
            raise CorruptFileError(f"{name}: state given with mode 'none'")
        return
    if isinstance(obj, NOT_STATEFUL):
        raise CorruptFileError(f"{name}: state may only be given to instances, not to {obj!r:.60}")
    cls = type(obj)
    if mode == STATE_CYTHON:
        setter = getattr(cls, "__setstate_cython__", None)
        if setter is None:
            raise CorruptFileError(f"{name} has no Cython state setter")
        setter(obj, _apart(state))
        return
    if mode != STATE_DEFAULT:
        raise CorruptFileError(f"{name}: unknown state mode {brief(mode)}")
    setstate = getattr(cls, "__setstate__", None)
    if setstate is not None:
        if _updates_dict(setstate):
            # BaseEstimator.__setstate__ ends in __dict__.update(state): hold its state
            # to the same rule as the plain path below (a plain dict of attribute names).
            _check_attribute_map(state, name)
        setstate(obj, _apart(state))
        return
    slots = None
    if type(state) is tuple and len(state) == 2:
        state, slots = state
    _check_attribute_map(state, name)
    _check_attribute_map(slots, name)
    if state:
        try:
            obj.__dict__.update(state)
        except AttributeError:
            raise CorruptFileError(f"{name} instances have no __dict__ to hold state") from None
    for key, value in (slots or {}).items():
        # Only the class's own __slots__ members. A plain setattr would also reach
        # __class__ (turning the object into an instance of any compatible class, past
        # that class's meaning check), __dict__, and property setters (trusted code
        # run on file-chosen values): tests/security/test_state_tampering.py.
        slot = _slot_descriptor(cls, key)
        if slot is None:
            raise CorruptFileError(f"{name} has no slot {key!r} to hold state")
        slot.__set__(obj, value)


def _check_attribute_map(part: Any, name: str) -> None:
    if part is not None and (type(part) is not dict or any(type(k) is not str for k in part)):
        raise CorruptFileError(f"{name}: state must map attribute names to values")


def _updates_dict(setstate: Any) -> bool:
    """Whether ``setstate`` is scikit-learn's BaseEstimator.__setstate__ (a __dict__ update)."""
    known = _UPDATES_DICT.get(setstate)
    if known is None:
        known = _UPDATES_DICT[setstate] = (
            getattr(setstate, "__module__", None) == "sklearn.base"
            and getattr(setstate, "__qualname__", None) == "BaseEstimator.__setstate__"
        )
    return known


# setstate function -> _updates_dict's answer (asked once per instance loaded).
_UPDATES_DICT: dict[Any, bool] = {}


def _slot_descriptor(cls: type, key: str) -> Any:
    """The member descriptor (what ``__slots__`` creates) ``key`` of ``cls``, or None."""
    if key.startswith("__") and key.endswith("__"):
        return None
    for klass in cls.__mro__:
        if key in klass.__dict__:
            descr = klass.__dict__[key]
            return descr if isinstance(descr, types.MemberDescriptorType) else None
    return None


def _apply_items(dec: Decoder, obj: Any, kind: Any, items: Any, name: str) -> None:
    if kind == ITEMS_NONE and items is None:
        return
    if type(items) is list:
        dec.expand(items, name)
    if kind == ITEMS_LIST and isinstance(obj, list) and type(items) is list:
        list.extend(obj, items)
        return
    if kind == ITEMS_DICT and isinstance(obj, dict) and type(items) is list:
        dec.check_keys([p[0] if type(p) is list and p else None for p in items], name)
        for pair in items:
            if type(pair) is not list or len(pair) != 2:
                raise CorruptFileError(f"{name}: malformed dict items")
            dict.__setitem__(obj, pair[0], pair[1])
        return
    raise CorruptFileError(f"{name}: items of kind {brief(kind)} do not fit a {type(obj).__name__}")


def _guarded(name: str, step: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except SkjarError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{name}: {step} failed: {type(exc).__name__}: {exc}") from None


@decodes(INSTANCE)
def _dec_instance(dec: Decoder, payload: Any) -> Any:
    first, mode, state, kind, items = expect_list(payload, 5, "instance")
    if type(first) is str:
        name = first
        obj = _new(dec.require(name, OBJECT), name)
    else:
        obj, name = dec.shells.pop(id(first), (None, ""))
        if obj is not first:
            raise CorruptFileError("state is given to an object that is not an empty instance")
    _validate(dec, name, (), state)
    _guarded(name, "setting its state", _apply_state, obj, mode, state, name)
    _apply_items(dec, obj, kind, items, name)
    return obj


def _validate(dec: Decoder, name: str, args: Any, state: Any) -> None:
    """Run the meaning check registered for ``name``, if any, on plain state only.

    (First, the state is charged to the load: setting it copies every entry.)
    """
    if type(state) is dict:
        dec.expand(state, name)
    elif type(state) is tuple:
        for part in state:
            if type(part) is dict:
                dec.expand(part, name)
    validator = _check_for(dec, name)
    if validator is None:
        return
    # Checks read state as a dict or tuple, and treat anything else as "unfitted"
    # or refuse it. A dict subclass (OrderedDict, defaultdict, Bunch) would pass as
    # "unfitted" yet still reach __dict__.update: tests/security/test_meaning_tampering.py.
    if state is not None and type(state) not in (dict, tuple):
        raise CorruptFileError(
            f"{name}: state must be a plain dict or tuple, not {type(state).__name__}"
        )
    if dec.shells:
        _refuse_pending(dec, name, (args, state))
    validator(args, state)


def _check_for(dec: Decoder, name: str) -> Any:
    """``name``'s meaning check, or None; for a class whose state holds index arrays by
    reference (registry.OWNED_INDEXES), followed by noting them, for the end of the
    load to check they are its own. The one source of the check for ``_validate`` and
    for the walker, which runs it itself on a plain state."""
    check = VALIDATORS.get(name)
    owned = OWNED_INDEXES.get(name)
    if check is None or owned is None:
        return check

    def check_and_note(args: Any, state: Any) -> None:
        check(args, state)
        dec.owned_indexes.append((name, owned(args, state)))

    return check_and_note


def _refuse_pending(dec: Decoder, name: str, value: Any) -> None:
    """A check must not judge an object that gets its state only later.

    A check that reads another object (a KD/Ball tree its distance metric, HGB its
    predictors) would see an empty NEWOBJ shell, which a later INSTANCE or STATE
    node then fills unchecked: a BallTree passed with an empty Mahalanobis metric
    that was then given a 0 x 0 matrix (docs/security.md 12.12). The walk covers
    the containers in the state, not other instances' own state.
    """
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if id(item) in dec.shells and dec.shells[id(item)][0] is item:
            raise CorruptFileError(
                f"{name}: its state refers to an instance that has not received its own "
                "state yet, which its meaning check cannot judge"
            )
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, np.ndarray) and item.dtype == object:
            stack.extend(item.ravel(order="K").tolist())


def _new(cls: type, name: str) -> Any:
    if cls in ENCODERS:
        # Types with a node of their own (bit generators, RandomState, Generator,
        # MaskedArray, partial) are only built by their handler, which checks its
        # input. cls.__new__ alone leaves e.g. PCG64's C state unset: using it (or
        # giving it state) segfaults. tests/security/test_state_tampering.py.
        raise CorruptFileError(f"{name} is built by its own node, never as a generic instance")
    obj = _guarded(name, "creating the instance", cls.__new__, cls)
    if type(obj) is not cls:
        raise CorruptFileError(f"{name}.__new__ returned a {type(obj).__name__}")
    return obj


@decodes(NEWOBJ)
def _dec_newobj(dec: Decoder, payload: Any) -> Any:
    obj = _new(dec.require(payload, OBJECT), payload)
    dec.shells[id(obj)] = (obj, payload)
    return obj


@decodes(STATE)
def _dec_state(dec: Decoder, payload: Any) -> None:
    shell, mode, state, kind, items = expect_list(payload, 5, "state")
    obj, name = dec.shells.pop(id(shell), (None, ""))
    if obj is not shell or not dec.in_root or dec.depth != 2:
        raise CorruptFileError("state is given to an object that is not an empty instance")
    _validate(dec, name, (), state)
    _guarded(name, "setting its state", _apply_state, obj, mode, state, name)
    _apply_items(dec, obj, kind, items, name)
    return None


@decodes(ROOT)
def _dec_root(dec: Decoder, payload: Any) -> Any:
    value, states = expect_list(payload, 2, "root")
    if type(states) is not list or not states or any(s is not None for s in states):
        raise CorruptFileError("malformed root node")
    return value


@decodes(RECONSTRUCT)
def _dec_reconstruct(dec: Decoder, payload: Any) -> Any:
    name, args, mode, state, kind, items = expect_list(payload, 6, "reconstruct")
    fn = dec.require(name, CALL)
    if type(args) is not list:
        raise CorruptFileError(f"{name}: arguments must be a list")
    _validate(dec, name, args, state)
    obj = _guarded(name, "the call", fn, *args)
    _guarded(name, "setting its state", _apply_state, obj, mode, state, name)
    _apply_items(dec, obj, kind, items, name)
    return obj


# -- the compiled walker's share (_walk.c: fast_object) ------------------------
# The walker builds INSTANCE and RECONSTRUCT nodes in the handlers' order with these
# steps, and the handlers stay its twin (tests/test_walk.py runs both).
def _plan(dec: Decoder, code: int, name: str) -> tuple[Any, Any, Any] | None:
    """How the walker makes the objects of node ``code`` naming ``name`` - (callable,
    its argument for INSTANCE, the meaning check) - or None: the handler builds them.
    Asked once per name and load; resolving ``name`` raises as the handler would."""
    if code == INSTANCE:
        cls = dec.require(name, OBJECT)
        if cls in ENCODERS:
            return None  # _new refuses it, in the handler
        return (cls.__new__, cls, _check_for(dec, name))
    return (dec.require(name, CALL), None, _check_for(dec, name))


def _setter(cls: type) -> tuple[Any, bool, Any] | None:
    """How the walker may set the state of ``cls``'s instances itself: (``__setstate__``,
    whether it is BaseEstimator's, ``__setstate_cython__``), None where the class has
    none; or None for a type that takes no state (_apply_state refuses it)."""
    if issubclass(cls, NOT_STATEFUL):
        return None
    setstate = getattr(cls, "__setstate__", None)
    cython = getattr(cls, "__setstate_cython__", None)
    return (setstate, setstate is not None and _updates_dict(setstate), cython)


def _finish(dec: Decoder, obj: Any, name: str, mode: Any, state: Any, kind: Any, items: Any) -> Any:
    """The handlers' last steps, for an object the walker made but whose state or items
    are not of the common form."""
    _guarded(name, "setting its state", _apply_state, obj, mode, state, name)
    _apply_items(dec, obj, kind, items, name)
    return obj


OBJECT_STEPS.update(plan=_plan, setter=_setter, validate=_validate, finish=_finish)


@decodes(REF, lambda: [np.log1p, len, np.float64, dict])
def _dec_ref(dec: Decoder, payload: Any) -> Any:
    return dec.require(payload, VALUE)


@decodes(NAMEDTUPLE)
def _dec_namedtuple(dec: Decoder, payload: Any) -> Any:
    name, items = expect_list(payload, 2, "named tuple")
    cls = dec.require(name, OBJECT)
    fields = getattr(cls, "_fields", None)
    if not issubclass(cls, tuple) or type(fields) is not tuple:
        raise CorruptFileError(f"{name} is not a named tuple")
    if type(items) is not list or len(items) != len(fields):
        raise CorruptFileError(f"{name}: expected {len(fields)} fields")
    return dec.track_tuple(tuple.__new__(cls, items))
