"""File paths given to the public functions: one check, one message per way they fail.

A path that cannot be opened, or that names something a save must not replace, is a
bad argument (``InvalidArgumentError``, saying what to do); an I/O error while reading or
writing an opened file stays the ``OSError`` it is.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import IO

from .errors import InvalidArgumentError

# Why a path cannot be written, when the path itself is the reason (not the disk).
_PATH_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENAMETOOLONG", "ENOTDIR", "ELOOP", "EACCES", "EPERM", "EROFS", "ENOENT",
                 "EISDIR", "EXDEV")
    if hasattr(errno, name)
)


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


def open_to_read(path: str, what: str = "a skjar file") -> IO[bytes]:
    """``open(path, "rb")``; any reason it cannot be opened is an InvalidArgumentError."""
    try:
        return open(path, "rb")
    except IsADirectoryError:
        raise InvalidArgumentError(f"{path!r} is a directory, not {what}") from None
    except FileNotFoundError:
        raise InvalidArgumentError(f"no such file: {path!r}") from None
    except PermissionError:
        raise InvalidArgumentError(f"permission denied reading {path!r}") from None
    except OSError as exc:  # a name too long, a file where a folder should be, a loop...
        raise InvalidArgumentError(f"cannot read {path!r}: {exc.strerror or exc}") from None


def check_save_target(path: str) -> None:
    """Refuse a target a save must not replace: a directory, or an existing special file
    (a device, a pipe, a socket), which the temporary file renamed over it would destroy,
    or a symbolic link to one (``/dev/stdout``). A link to a regular file, or to nothing,
    is replaced itself, as a rename does; the file it points to is untouched.
    """
    try:
        mode = os.stat(path).st_mode  # through links: what a write to the path would reach
    except FileNotFoundError:
        mode = None  # nothing there, or a link to nothing
    except OSError as exc:
        raise InvalidArgumentError(f"cannot write {path!r}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise InvalidArgumentError(f"{path!r} is a directory: give a file name to dump to")
    if mode is not None and not stat.S_ISREG(mode):
        kind = (
            "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode)
            else "a named pipe" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise InvalidArgumentError(
            f"{path!r} is {kind}: a save to a path replaces it with a new file. To write "
            f"into it instead, pass it open: skjar.dump(obj, open({path!r}, 'wb'))"
        )
    if mode is None:  # (a file there means its folder is there)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise InvalidArgumentError(
                f"cannot write {path!r}: folder {directory!r} does not exist"
            )


def cannot_write(path: str, exc: OSError) -> Exception:
    """The error to raise when creating or renaming a save's file failed: an
    InvalidArgumentError when the path is at fault (too long, a file where a folder
    should be, no permission, a read-only file system...), else the OSError itself (a
    full disk is not a bad argument)."""
    if exc.errno in _PATH_ERRNOS:
        return InvalidArgumentError(f"cannot write {path!r}: {exc.strerror or exc}")
    return exc
