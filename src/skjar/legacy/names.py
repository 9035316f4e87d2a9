"""The names a legacy file may mention, and how each may be used.

A pickle names callables and classes by ``module`` + ``qualname`` (GLOBAL,
STACK_GLOBAL, INST). The converter accepts a name when it is

- trusted by skjar's :class:`~skjar.trust.TrustPolicy` for some use (an object
  to create, a value to hold, a reconstructor to call) — the use is checked
  again, exactly, where the name is used;
- one of the **known-safe reductions** below, which the converter never
  imports or calls: it recognises the name and does a fixed, safe equivalent
  itself (e.g. numpy's ``_reconstruct`` + BUILD becomes "copy these validated
  bytes into a new array");
- an **argument-only** name that only makes sense as an argument of those
  reductions (``builtins.object`` for ``copyreg._reconstructor``,
  ``numpy.ma.MaskedArray`` for ``_mareconstruct``...). Used anywhere else it
  is refused, as it is not trusted;
- a Cython ``__pyx_unpickle_<Class>`` helper of a class trusted as an object.

>>> from skjar.trust import TrustPolicy
>>> acceptable(TrustPolicy(), "numpy._core.multiarray._reconstruct", "numpy._core.multiarray")
True
>>> acceptable(TrustPolicy(), "os.system", "os")
False
"""

from __future__ import annotations

import _compat_pickle

from ..trust import OBJECT, USES, TrustPolicy

__all__ = [
    "ARG_ONLY",
    "BIT_GENERATORS",
    "CONSTANTS",
    "JOBLIB_WRAPPERS",
    "NEWOBJ_BUILTINS",
    "PYX_PREFIX",
    "SAFE_CALLS",
    "acceptable",
    "fix_name",
    "pyx_class",
]

PYX_PREFIX = "__pyx_unpickle_"

# Known-safe reductions: exact name -> handler key (see reductions.py).
SAFE_CALLS: dict[str, str] = {
    "copyreg._reconstructor": "reconstructor",
    "copyreg.__newobj__": "newobj",
    "copyreg.__newobj_ex__": "newobj_ex",
    "numpy.core.multiarray._reconstruct": "ndarray",
    "numpy._core.multiarray._reconstruct": "ndarray",
    "numpy.dtype": "dtype",
    "numpy.core.multiarray.scalar": "scalar",
    "numpy._core.multiarray.scalar": "scalar",
    "numpy.core.numeric._frombuffer": "frombuffer",
    "numpy._core.numeric._frombuffer": "frombuffer",
    "numpy.ma.core._mareconstruct": "mareconstruct",
    "numpy.random._pickle.__randomstate_ctor": "randomstate",
    "numpy.random._pickle.__generator_ctor": "generator",
    "numpy.random._pickle.__bit_generator_ctor": "bit_generator",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence": "seed_sequence",
    "sklearn.neighbors._binary_tree.newObj": "newobj",
    "sklearn.neighbors._kd_tree.newObj": "newobj",
    "sklearn.neighbors._ball_tree.newObj": "newobj",
    "sklearn.metrics._dist_metrics.newObj": "newobj",
    "builtins.set": "set",
    "builtins.frozenset": "frozenset",
    "builtins.bytearray": "bytearray",
    "builtins.bytes": "bytes",
    "builtins.complex": "complex",
    "builtins.slice": "slice",
    "builtins.range": "range",
    "collections.OrderedDict": "ordereddict",
    "collections.defaultdict": "defaultdict",
    "_codecs.encode": "codecs_encode",
    "functools.partial": "partial",
}

# joblib's array placeholders: recognised by name, never imported.
JOBLIB_WRAPPERS: dict[str, str] = {
    "joblib.numpy_pickle.NumpyArrayWrapper": "numpy",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper": "numpy",
    "joblib.numpy_pickle.NDArrayWrapper": "nd",
    "joblib.numpy_pickle_compat.NDArrayWrapper": "nd",
    "sklearn.externals.joblib.numpy_pickle.NDArrayWrapper": "nd",
    "sklearn.externals.joblib.numpy_pickle_compat.NDArrayWrapper": "nd",
    "joblib.numpy_pickle.ZNDArrayWrapper": "znd",
    "joblib.numpy_pickle_compat.ZNDArrayWrapper": "znd",
    "sklearn.externals.joblib.numpy_pickle.ZNDArrayWrapper": "znd",
    "sklearn.externals.joblib.numpy_pickle_compat.ZNDArrayWrapper": "znd",
}

# numpy bit generators, by class name (the table numpy.random._pickle uses).
BIT_GENERATORS: dict[str, str] = {
    "MT19937": "numpy.random._mt19937.MT19937",
    "PCG64": "numpy.random._pcg64.PCG64",
    "PCG64DXSM": "numpy.random._pcg64.PCG64DXSM",
    "Philox": "numpy.random._philox.Philox",
    "SFC64": "numpy.random._sfc64.SFC64",
}

# Built-in constants pickle writes as a global: the value itself, nothing imported.
# (NotImplemented is left out: skjar's format has no node for it.)
CONSTANTS: dict[str, object] = {"builtins.Ellipsis": Ellipsis}

# Classes NEWOBJ may build with arguments, by a fixed safe equivalent.
NEWOBJ_BUILTINS = frozenset({"builtins.complex"})

# Names accepted only as arguments of the safe reductions above.
ARG_ONLY = frozenset(
    {
        "builtins.object",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "numpy.ndarray",
        "numpy.memmap",
        "numpy.ma.MaskedArray",
        "numpy.ma.core.MaskedArray",
        "numpy.random.bit_generator.SeedSequence",
        *BIT_GENERATORS.values(),
    }
)


# Extension modules that some builds name by their last part only, which is what
# pickle then writes (scikit-learn 1.7's losses: "_loss.CyHalfBinomialLoss"); the
# process that wrote the file had the module under both names.
SHORT_MODULE_NAMES = {"_loss": "sklearn._loss._loss"}


def fix_name(module: str, qualname: str, protocol: int) -> tuple[str, str]:
    """Map Python 2 names as pickle does for protocols < 3 (``fix_imports=True``), and
    extension modules' short names to their full ones.

    >>> fix_name("__builtin__", "set", 2), fix_name("copy_reg", "_reconstructor", 0)
    (('builtins', 'set'), ('copyreg', '_reconstructor'))
    >>> fix_name("_loss", "CyHalfBinomialLoss", 5)
    ('sklearn._loss._loss', 'CyHalfBinomialLoss')
    """
    module = SHORT_MODULE_NAMES.get(module, module)
    if protocol < 3:
        if (module, qualname) in _compat_pickle.NAME_MAPPING:
            module, qualname = _compat_pickle.NAME_MAPPING[(module, qualname)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return module, qualname


def pyx_class(name: str, module: str) -> str | None:
    """For a Cython ``module.__pyx_unpickle_Cls`` helper, the class name ``module.Cls``.

    >>> pyx_class("sklearn._loss._loss.__pyx_unpickle_CyHalfMultinomialLoss", "sklearn._loss._loss")
    'sklearn._loss._loss.CyHalfMultinomialLoss'
    """
    qualname = name[len(module) + 1 :]
    if not qualname.startswith(PYX_PREFIX) or "." in qualname:
        return None
    cls = qualname[len(PYX_PREFIX) :]
    return f"{module}.{cls}" if cls.isidentifier() else None


def acceptable(policy: TrustPolicy, name: str, module: str) -> bool:
    """Whether ``name`` may appear in a file at all (its use is checked later)."""
    if name in SAFE_CALLS or name in JOBLIB_WRAPPERS or name in ARG_ONLY or name in CONSTANTS:
        return True
    if any(policy.lookup(name, module, use) is not None for use in USES):
        return True
    cls = pyx_class(name, module)
    return cls is not None and policy.lookup(cls, module, OBJECT) is not None
