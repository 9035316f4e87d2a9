"""joblib's array placeholders: NumpyArrayWrapper (joblib >= 0.10) and the older sidecars.

``joblib.dump`` replaces each numpy array by a ``NumpyArrayWrapper`` whose
state (subclass, shape, order, dtype, alignment) is pickled normally; the
array's raw bytes follow the wrapper's BUILD opcode directly in the stream
(after one padding-length byte and that much padding, since joblib 1.2).
Object arrays are written as a nested pickle stream instead. joblib < 0.10
(``NDArrayWrapper``/``ZNDArrayWrapper``) kept each array in a sidecar ``.npy``
or zlib file next to the main one.

The converter never imports these classes: it recognises their names,
validates the state, checks ``shape x itemsize`` against what is left to
read, and builds the array itself. Object arrays are read by a nested
restricted pickle machine sharing the same trust.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import CorruptFileError, UnsupportedPickleError
from .arrays import (
    array_from_bytes,
    check_shape,
    exact_copy,
    native_byte_order,
    ndarray_from_state,
)
from .source import MAX_EXPANSION, SLACK, ByteSource, DecompressingReader, _zfile_length
from .vm import OPAQUE, Marker, PickleVM, Ref, WrapperShell

__all__ = ["read_wrapper"]

SMALL = 1 << 26  # arrays up to this size are allocated before their bytes are read
_WRAPPER_KEYS = frozenset(
    {"subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"}
)
_ARRAY_CLASSES = ("numpy.ndarray", "numpy.memmap")


def _subclass_ok(vm: PickleVM, state: dict[Any, Any], what: str) -> None:
    sub = state.pop("subclass", np.ndarray)
    name = sub.name if type(sub) in (Marker, Ref) else None
    if sub is np.ndarray or sub is OPAQUE or name in _ARRAY_CLASSES:
        return
    if name is not None:
        vm.ctx.refuse(name, f"it is not accepted as {what}'s array class.")
        return
    raise CorruptFileError(f"{what}: unexpected array class {sub!r:.60}")


def read_wrapper(vm: PickleVM, shell: WrapperShell, state: Any) -> Any:
    """BUILD of a joblib wrapper: read the array it stands for."""
    st = vm.value(state)
    if type(st) is not dict:
        raise CorruptFileError(f"{shell.name}: state must be a dict")
    vm.ctx.marker_dicts.pop(id(st), None)
    if shell.kind == "numpy":
        return _read_numpy_wrapper(vm, st)
    return _read_sidecar(vm, shell, st)


def _read_numpy_wrapper(vm: PickleVM, st: dict[Any, Any]) -> Any:
    what = "joblib array"
    if not set(st) <= _WRAPPER_KEYS or not {"shape", "order", "dtype"} <= set(st):
        raise CorruptFileError(f"{what}: unexpected wrapper fields {sorted(map(str, st))}")
    _subclass_ok(vm, st, what)
    shape = check_shape(st["shape"], what)
    order, dtype = st["order"], st["dtype"]
    if order not in ("C", "F") or not isinstance(dtype, np.dtype):
        raise CorruptFileError(f"{what}: malformed order or dtype")
    src = vm.src
    if dtype.hasobject:
        # A nested pickle stream holds the object array; read it with a fresh
        # restricted machine (joblib uses a fresh Unpickler with the same rules).
        nested = PickleVM(src, vm.ctx, joblib=False).run()
        if vm.scan:
            return OPAQUE
        if not isinstance(nested, np.ndarray) or nested.dtype != np.dtype(object):
            raise CorruptFileError(f"{what}: the nested stream is not an object array")
        if nested.shape != shape:
            raise CorruptFileError(f"{what}: the nested array does not have shape {shape}")
        return nested
    alignment = st.get("numpy_array_alignment_bytes")
    if alignment is not None:
        if type(alignment) is not int or not 0 < alignment <= 4096:
            raise CorruptFileError(f"{what}: malformed alignment {alignment!r:.20}")
        padding = src.read_byte()
        src.skip(padding, "array padding")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    src.check_available(nbytes, what)
    if vm.scan:
        src.skip(nbytes, what)
        return OPAQUE
    if nbytes == 0:
        flat = np.empty(count, dtype=dtype)
    elif nbytes <= SMALL or src.remaining() is not None:
        flat = np.empty(count, dtype=dtype)  # size already checked against the file
        src.read_into(memoryview(flat.view(np.uint8).data).cast("B"), what)
    else:  # unknown size (compressed stream): grow only as real data arrives
        data = src.read(nbytes, what)
        flat = exact_copy(data, dtype, count)
    array = flat.reshape(shape[::-1]).transpose() if order == "F" else flat.reshape(shape)
    return native_byte_order(array)


# -- joblib < 0.10: arrays in sidecar files ---------------------------------------
def _sidecar_path(vm: PickleVM, filename: Any, what: str) -> str:
    directory = vm.ctx.directory
    if directory is None:
        raise UnsupportedPickleError(
            f"{what}: this old joblib file keeps its arrays in separate files; "
            "convert it from its path, not from a file object"
        )
    if (
        type(filename) is not str
        or not filename
        or os.path.basename(filename) != filename
        or filename in (".", "..")
        or "\x00" in filename
    ):
        raise CorruptFileError(f"{what}: sidecar file name {filename!r:.80} is not a plain name")
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        raise UnsupportedPickleError(f"{what}: its array file {filename!r} is missing")
    return path


def _read_sidecar(vm: PickleVM, shell: WrapperShell, st: dict[Any, Any]) -> Any:
    what = f"old joblib array ({shell.name})"
    path = _sidecar_path(vm, st.get("filename"), what)
    if shell.kind == "nd":
        if not set(st) <= {"filename", "subclass", "allow_mmap"}:
            raise CorruptFileError(f"{what}: unexpected fields")
        _subclass_ok(vm, st, what)
        array = _read_npy(vm, path, what)
        return array if vm.scan else native_byte_order(array)
    if not set(st) <= {"filename", "init_args", "state"}:
        raise CorruptFileError(f"{what}: unexpected fields")
    init_args = st.get("init_args")
    meta = st.get("state")
    if type(init_args) is not tuple or len(init_args) != 3:
        raise CorruptFileError(f"{what}: malformed init_args")
    cls = init_args[0]
    if cls is not np.ndarray and not (type(cls) is Ref and cls.name == "numpy.ndarray"):
        raise CorruptFileError(f"{what}: unexpected array class {cls!r:.60}")
    if vm.scan:
        return OPAQUE
    if type(meta) is not tuple or len(meta) != 4:
        raise CorruptFileError(f"{what}: malformed array state")
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head != b"ZF":
            raise CorruptFileError(f"{what}: the sidecar is not a joblib z-file")
        length = _zfile_length(f)
        size = os.fstat(f.fileno()).st_size
        if length > size * MAX_EXPANSION + SLACK:
            raise CorruptFileError(f"{what}: the sidecar declares an implausible size")
        src = ByteSource(DecompressingReader(f, "compat", length), length)
        data = src.read(length, what)
    return ndarray_from_state((*meta, data), what)


def _read_npy(vm: PickleVM, path: str, what: str) -> np.ndarray:
    """A .npy file, header parsed by numpy, size checked before reading, no pickle."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape_, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape_, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, SyntaxError, TypeError) as exc:
            raise CorruptFileError(f"{what}: unreadable .npy header: {exc}") from None
        shape = check_shape(shape_, what)
        src = ByteSource(f, os.fstat(f.fileno()).st_size - f.tell())
        if dtype.hasobject:
            # numpy pickles object arrays inside the .npy: read it restrictedly.
            sub = PickleVM(src, vm.ctx, joblib=False).run()
            if vm.scan:
                return OPAQUE  # type: ignore[return-value]
            if not isinstance(sub, np.ndarray) or sub.shape != shape:
                raise CorruptFileError(f"{what}: the embedded object array is malformed")
            return sub
        if vm.scan:
            return OPAQUE  # type: ignore[return-value]
        nbytes = math.prod(shape) * dtype.itemsize
        data = src.read(nbytes, what)
        if src.remaining():
            raise CorruptFileError(f"{what}: trailing bytes after the array data")
        return array_from_bytes(data, dtype, shape, bool(fortran), what)  # as np.load: no swap
