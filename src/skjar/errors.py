"""Every exception and warning skjar raises.

The hierarchy::

    SkjarError                      base of everything skjar raises
    ├── InvalidArgumentError        a public function was called with a bad argument
    │   └── TrustSpecError          a ``trusted=`` entry is not an exact name
    ├── UnsupportedObjectError      dump: the object graph holds something skjar cannot write
    ├── ReadError                   load/inspect: the input cannot be accepted
    │   ├── NotASkjarFileError      the input is not a jar (says when it looks like pickle/joblib)
    │   ├── FormatVersionError      a jar from a format version this reader does not know
    │   ├── CorruptFileError        damaged, truncated or inconsistent jar
    │   ├── SignatureError          a signature was required and is missing, invalid or by an unknown key
    │   ├── UnsupportedPickleError  convert: a legacy pickle uses a feature the safe reader cannot reproduce
    │   └── UntrustedTypeError      the jar references names that are not trusted
    └── VersionMismatchError        a jar made by other versions: strict_versions=True, or it
                                    names something this environment's versions do not have

    SkjarWarning (UserWarning)
    ├── VersionSkewWarning          load on a jar made by other library versions
    └── UnsafeLoadWarning           convert(unsafe=True) is about to run a pickle's code

Callers can catch ``SkjarError`` for "anything skjar refused"; nothing else
escapes a load, whatever the input bytes are.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "CorruptFileError",
    "FormatVersionError",
    "InvalidArgumentError",
    "NotASkjarFileError",
    "ReadError",
    "SignatureError",
    "SkjarError",
    "SkjarWarning",
    "TrustSpecError",
    "UnsafeLoadWarning",
    "UnsupportedObjectError",
    "UnsupportedPickleError",
    "UntrustedTypeError",
    "VersionMismatchError",
    "VersionSkewWarning",
]


class SkjarError(Exception):
    """Base class of every error skjar raises."""


class InvalidArgumentError(SkjarError, ValueError):
    """A public function was called with an argument it cannot use."""


class TrustSpecError(InvalidArgumentError):
    """An entry of ``trusted=`` is a module name, a prefix or not a name at all."""


class UnsupportedObjectError(SkjarError, TypeError):
    """``dump`` met an object it cannot write.

    ``path`` says where the object sits inside the model, e.g. ``steps[1][1].func``.
    """

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(f"{message} (at {path or '<root>'})")


class ReadError(SkjarError):
    """The input of a load/inspect/audit cannot be accepted."""


class NotASkjarFileError(ReadError):
    """The input is not a skjar file at all."""


class FormatVersionError(ReadError):
    """The jar was written in a format version this reader does not support."""


class CorruptFileError(ReadError):
    """The jar is damaged, truncated or internally inconsistent."""


class SignatureError(ReadError):
    """A signature was required (``verify_with=`` or ``SKJAR_VERIFY_KEYS``) and does not check out."""


class UntrustedTypeError(ReadError):
    """The jar references types or functions that are not trusted.

    ``names`` lists every offending exact ``module.qualname`` at once, so one
    review can settle them all.
    """

    def __init__(
        self, names: Iterable[str], detail: str = "", uses: dict[str, set[str]] | None = None
    ) -> None:
        self.names: list[str] = sorted(set(names))
        self.uses: dict[str, list[str]] = {n: sorted((uses or {}).get(n, ())) for n in self.names}
        listed = ", ".join(
            repr(n) + (f" (as {'/'.join(self.uses[n])})" if self.uses[n] else "")
            for n in self.names
        )
        # A reconstructor needs explicit ("name", "call") trust; classes and
        # functions are trusted for instances/values by their plain name.
        suggestion = [(n, "call") if self.uses[n] == ["call"] else n for n in self.names]
        hint = (
            "If you trust the source of this file and these names, pass them "
            f"explicitly: skjar.load(..., trusted={suggestion!r}). "
            "Run `skjar audit FILE` to review everything the file references."
        )
        super().__init__(
            f"the file references {len(self.names)} untrusted name(s): {listed}. "
            f"{detail + ' ' if detail else ''}{hint}"
        )


class VersionMismatchError(SkjarError):
    """A jar made with other library versions cannot be loaded here: ``load(...,
    strict_versions=True)``, or the jar names a trusted class or function that this
    environment's version of its library does not have."""


class SkjarWarning(UserWarning):
    """Base class of the warnings skjar emits."""


class VersionSkewWarning(SkjarWarning):
    """The jar was made with other versions of scikit-learn/numpy/scipy than this process runs."""


class UnsafeLoadWarning(SkjarWarning):
    """``convert(..., unsafe=True)`` is about to run the file's pickle code for real.

    >>> import warnings
    >>> issubclass(UnsafeLoadWarning, UserWarning)
    True
    """


class UnsupportedPickleError(ReadError):
    """The file uses a pickle feature the safe reader cannot reproduce without running code.

    Examples: persistent ids, out-of-band (protocol 5) buffers, an instance
    whose class needs arguments to ``__new__``, structured arrays with object
    fields, sidecar array files that are not next to the main file.

    >>> str(UnsupportedPickleError("persistent ids are not supported"))
    'persistent ids are not supported'
    """
