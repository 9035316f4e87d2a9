"""File paths given to the public functions: one check, one message."""

from __future__ import annotations

import os

from .errors import InvalidArgumentError


def file_path(source: str | os.PathLike[str]) -> str:
    """``os.fspath(source)``, refusing a name no file can have (a NUL character inside)
    with the library's error, where the OS layer raises a bare ``ValueError``.

    >>> file_path("models/spam.skjar")
    'models/spam.skjar'
    """
    path = os.fspath(source)
    if (b"\0" if isinstance(path, bytes) else "\0") in path:
        raise InvalidArgumentError(
            f"{path!r} cannot name a file: it contains a NUL character"
        )
    return path
