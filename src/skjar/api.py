"""The public functions: dump, dumps, load, loads, inspect, audit."""

from __future__ import annotations

import functools
import gc
import io
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from . import _compiled
from ._paths import check_save_target, file_path
from .codec import Decoder, Encoder
from .errors import InvalidArgumentError, VersionSkewWarning
from .format.compression import parse_compress
from .format.header import declared_names, section_totals
from .format.reader import (
    FRONT_SOURCES,
    SMALL_SPEC,
    Source,
    decompressed,
    open_source,
    read_header_fields,
    read_small,
    stream_source,
)
from .format.spec import FLAG_SIGNED, SIGNATURE_SIZE, TRAILER_SIZE
from .format.writer import (
    Sections,
    plan_sections,
    write_atomic,
    write_jar,
    write_sections,
    writer_for,
)
from .metadata import (
    SKEW_MODULES,
    check_metadata,
    check_versions,
    environment,
    producer,
    summarize,
    version_skew,
)
from .signing import keys_in_environment, verify_keys
from .trust import DEFAULT_USES, TrustedItem, TrustPolicy

PathLike = str | os.PathLike[str]


# -- writing ---------------------------------------------------------------
def _signer(sign_with: Any) -> Any:
    if sign_with is None:
        return None
    from .signing import load_private_key

    return load_private_key(sign_with)


def _serialize(obj: Any, compress: Any, metadata: Any) -> tuple[dict[str, Any], Sections]:
    """The header, without its layout, and the planned sections (``plan_sections``)."""
    codec = parse_compress(compress)
    meta = check_metadata(metadata)
    enc = Encoder()
    # The cyclic GC is paused while the model is walked: the walk allocates a node, a
    # list or a path per value, none of them garbage yet, and its collections were 7-9%
    # of a compiled walk (forest 7.9 -> 7.2 ms, hgb 1.53 -> 1.41 ms, warm).
    collecting = gc.isenabled()
    gc.disable()
    try:
        tree = enc.encode_root(obj)
    finally:
        if collecting:
            gc.enable()
    sections = plan_sections(tree, enc.buffers, codec)
    summary = summarize(obj)  # (a courtesy: it never fails a dump)
    header = {
        "producer": producer(),
        "environment": environment(enc.names),
        "object": summary,
        "metadata": meta,
        "names": [
            {"name": name, "module": module, "uses": sorted(uses)}
            for name, (module, uses) in sorted(enc.names.items())
        ],
        "compression": None if codec is None else {"codec": codec[0], "level": codec[1]},
    }
    return header, sections


def _finished(header: dict[str, Any], sections: Sections) -> tuple[dict[str, Any], list[Any]]:
    """The whole header and the payloads in file order, compressed."""
    layout, payloads = sections.finish()
    return {**header, "layout": layout}, payloads


def dump(
    obj: Any,
    target: PathLike | IO[bytes],
    *,
    compress: str | tuple[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
    sign_with: Any = None,
) -> None:
    """Save ``obj`` to a path (atomically) or a writable binary file object.

    >>> skjar.dump(model, "model.skjar", compress="zstd", metadata={"auc": 0.93})  # doctest: +SKIP

    The object graph is fully encoded before anything is written, so an
    unsupported object raises ``UnsupportedObjectError`` (naming its path in
    the model) and leaves ``target`` untouched. A path is written through a
    temporary file in the same folder, fsynced and renamed over the target (on
    Linux its pages start going to disk while it is written, so the fsync is short).
    ``sign_with`` (an Ed25519 private key, or its PEM path) signs the jar.
    """
    signer = _signer(sign_with)
    if isinstance(target, (str, os.PathLike)):
        path = file_path(target)
        check_save_target(path)
        header, sections = _serialize(obj, compress, metadata)
        write_atomic(path, lambda f: write_sections(f, header, sections, signer))
        return
    if not hasattr(target, "write"):
        raise InvalidArgumentError(
            f"cannot dump to {type(target).__name__}: pass a path or a binary file object"
        )
    try:
        target.write(b"")
    except TypeError:
        raise InvalidArgumentError("the file object is in text mode: open it with 'wb'") from None
    except (OSError, ValueError) as exc:  # io.UnsupportedOperation, a closed file
        raise InvalidArgumentError(
            f"cannot write to this file object ({exc}): open it with 'wb'"
        ) from None
    header, payloads = _finished(*_serialize(obj, compress, metadata))
    write_jar(writer_for(target), header, payloads, signer)


def dumps(
    obj: Any,
    *,
    compress: str | tuple[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
    sign_with: Any = None,
) -> bytes:
    """Serialize ``obj`` to bytes.

    >>> data = skjar.dumps(model)  # doctest: +SKIP
    """
    signer = _signer(sign_with)
    header, payloads = _finished(*_serialize(obj, compress, metadata))
    out = io.BytesIO()
    write_jar(out.write, header, payloads, signer)
    return out.getvalue()


# -- reading ---------------------------------------------------------------
# A load that trusts only the defaults needs no policy of its own: what it resolves,
# every such load resolves the same way.
_DEFAULT_POLICY = TrustPolicy()
# Built once: a tuple built per load touches each item (a page fault apiece in a forked
# process's first load).
_DEFAULT_KNOWN = (DEFAULT_USES, SKEW_MODULES)


def _admit(
    header: dict[str, Any], policy: TrustPolicy, strict_versions: bool, skew: list[str] | None
) -> dict[str, tuple[str, frozenset[str]]]:
    """The header's names, once ``policy`` trusts every one of them and their uses. A
    version skew is raised (``strict_versions``), put in ``skew``, or, with ``skew`` None,
    warned about at once: ``load``'s caller is then two frames up."""
    declared = declared_names(header)
    policy.check((name, module, use) for name, (module, uses) in declared.items() for use in uses)
    message = check_versions(header["environment"], strict_versions)
    if message:
        if skew is None:
            warnings.warn(message, VersionSkewWarning, stacklevel=3)
        else:
            skew.append(message)
    return declared


# The compiled front calls this only for a name outside the defaults or a version skew.
_ADMIT_DEFAULT = functools.partial(
    _admit, policy=_DEFAULT_POLICY, strict_versions=False, skew=None
)


def _check_flag(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name}= must be True or False, got {value!r}")


def load(
    source: Source,
    *,
    trusted: Iterable[TrustedItem] = (),
    mmap: bool = False,
    strict_versions: bool = False,
    verify_with: Any = None,
    verify: str | None = None,
    _stacklevel: int = 2,
) -> Any:
    """Load an object from a path, bytes or a readable binary file object.

    >>> model = skjar.load("model.skjar")  # doctest: +SKIP
    >>> model = skjar.load("model.skjar", mmap=True, trusted=[MyScaler])  # doctest: +SKIP

    Nothing outside the trusted set is imported or called: untrusted names
    raise ``UntrustedTypeError`` listing them all, before any import. The
    digest is verified before any object is built. With ``mmap=True`` the
    arrays are copy-on-write views of the file's pages: shared between
    processes, writable by the model, never written back to the file. A mapped file
    must only be replaced by renaming a new one over it, as ``dump`` does: one rewritten
    or truncated in place changes or faults (SIGBUS) the arrays of models already
    loaded from it (docs/security.md, section 10).
    ``verify_with`` (public keys, or PEM paths; default: the ``SKJAR_VERIFY_KEYS``
    environment variable) requires a valid signature by one of them, checked
    before anything is built.

    ``verify`` picks the integrity check: ``"full"`` hashes every byte;
    ``"structure"`` hashes the header and object tree only, leaving array
    bytes unread until used (memory safety does not depend on them: every array
    compiled code indexes into is checked for meaning). The default is
    ``"structure"`` with ``mmap=True`` - that is what makes it O(1) - and
    ``"full"`` otherwise, or whenever a signature is checked.
    """
    # The common call - a path, every option left alone - in as few Python steps as can
    # be: in a fresh process each step's first run costs page faults (a tiny model's first
    # load: ~0.13 of ~1.3 ms went to the general path's steps below).
    fast = _compiled.speedups
    if (
        type(source) is str
        and mmap is False
        and verify is None
        and verify_with is None
        and strict_versions is False
        and type(trusted) is tuple
        and not trusted
        and fast is not None
        and not keys_in_environment()
    ):
        small = fast.read_small(source, _ADMIT_DEFAULT, SMALL_SPEC, _DEFAULT_KNOWN, None, True, None)
        if small is not None:
            tree, buffers, declared = small if len(small) == 3 else decompressed(small)
            return Decoder(buffers, declared, _DEFAULT_POLICY).decode_root(tree)
    policy = _DEFAULT_POLICY if type(trusted) is tuple and not trusted else TrustPolicy(trusted)
    keys = verify_keys(verify_with) if verify_with is not None or keys_in_environment() else None
    if verify not in (None, "full", "structure"):
        raise InvalidArgumentError(f"verify={verify!r}: use 'full', 'structure' or None (default)")
    check = (
        "full"
        if keys is not None or (verify or ("structure" if mmap else "full")) == "full"
        else "structure"
    )
    if mmap is not False and mmap is not True:  # (no call in the common case)
        _check_flag(mmap, "mmap")
    if strict_versions is not False and strict_versions is not True:
        _check_flag(strict_versions, "strict_versions")

    skew: list[str] = []
    admit = functools.partial(_admit, policy=policy, strict_versions=strict_versions, skew=skew)

    front = source  # what the compiled front reads; the Python reader reads `source`
    if not isinstance(source, FRONT_SOURCES) and not mmap:  # a file object (else an error)
        front = stream_source(source)
        if type(front) is memoryview:  # read whole: the Python reader takes these bytes
            source = front
    # The compiled front reads (or maps) the common jar in one call.
    small = read_small(front, admit, _DEFAULT_KNOWN if not policy.extra else None, mmap=mmap,
                       verify=check, keys=keys)
    if small is not None:
        tree, buffers, declared = small
    else:
        raw = open_source(source, mmap=mmap, admit=admit, keys=keys, verify=check)
        tree, buffers, declared = raw.tree, raw.buffers, raw.declared
        del raw
    if skew:
        warnings.warn(skew[0], VersionSkewWarning, stacklevel=_stacklevel)
    del small
    # The decoder takes `buffers` over and empties each entry once used: a string buffer
    # is freed early though this frame still holds the list.
    return Decoder(buffers, declared, policy).decode_root(tree)


def loads(
    data: bytes | bytearray | memoryview,
    *,
    trusted: Iterable[TrustedItem] = (),
    strict_versions: bool = False,
    verify_with: Any = None,
) -> Any:
    """Load an object from bytes made by ``dumps``.

    >>> model = skjar.loads(data)  # doctest: +SKIP
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(
            f"loads() takes bytes, bytearray or memoryview, not {type(data).__name__}; "
            "use load() for paths and file objects"
        )
    return load(
        data,
        trusted=trusted,
        strict_versions=strict_versions,
        verify_with=verify_with,
        _stacklevel=3,
    )


# -- looking without loading -----------------------------------------------
@dataclass(frozen=True)
class NameInfo:
    """One name a jar references, the uses it asks for, and whether each is trusted."""

    name: str
    module: str
    uses: tuple[str, ...]
    trusted: bool
    untrusted_uses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Info:
    """What ``inspect`` reads from a jar's header; nothing is constructed."""

    format_version: str
    producer: dict[str, Any]
    environment: dict[str, Any]
    object: dict[str, Any]
    metadata: dict[str, Any]
    names: tuple[NameInfo, ...]
    compression: dict[str, Any] | None
    sizes: dict[str, int]
    version_skew: dict[str, tuple[str, str]] = field(default_factory=dict)
    signed: bool = False  # the jar carries a signature (checked only by load(verify_with=...))

    @property
    def type(self) -> str:
        """``module.qualname`` of the saved object."""
        return str(self.object.get("type", ""))

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.object.get("params", {}))

    @property
    def schema(self) -> dict[str, Any]:
        return dict(self.object.get("schema", {}))

    @classmethod
    def _of(cls, fields: dict[str, Any]) -> Info:
        """``Info(**fields)``, every field given, adopting ``fields`` as its ``__dict__``:
        a frozen dataclass's __init__ makes ten ``object.__setattr__`` calls, a tenth of a
        cold inspect's Python time."""
        info = object.__new__(cls)
        object.__setattr__(info, "__dict__", fields)
        return info

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``skjar inspect --json`` prints)."""
        from dataclasses import asdict

        out = asdict(self)
        out["names"] = [asdict(n) for n in self.names]
        return out


# What the default trust says of a name under a module and uses: it never changes in a
# process, and the same few dozen names recur in every jar (bounded against a stream of
# odd ones). name -> (module, uses, trusted, NameInfo), the uses a sorted tuple: a plain
# dict and tuples, which the compiled default_infos reads with no lookup but the name's.
_DEFAULT_INFOS: dict[str, tuple[str, tuple[str, ...], bool, NameInfo]] = {}


def _default_infos(header: dict[str, Any]) -> tuple[NameInfo, ...] | None:
    """The common jar's names, compiled: every one trusted by default for all its uses
    and in the memo already, and no version skew; else None. (A cold inspect's Python
    steps were most of its time.)"""
    fast = _compiled.speedups
    if fast is None:
        return None
    return fast.default_infos(header, _DEFAULT_KNOWN, _DEFAULT_INFOS)


def _name_infos(header: dict[str, Any], policy: TrustPolicy) -> tuple[NameInfo, ...]:
    if not policy.extra and (known := _default_infos(header)) is not None:
        return known
    return _name_infos_python(header, policy)


def _name_infos_python(header: dict[str, Any], policy: TrustPolicy) -> tuple[NameInfo, ...]:
    memo = _DEFAULT_INFOS if not policy.extra else None
    out = []
    for name, (module, uses) in sorted(declared_names(header).items()):
        known = memo.get(name) if memo is not None else None
        if known is not None and known[0] == module and frozenset(known[1]) == uses:
            info = known[3]
        else:
            bad = tuple(u for u in sorted(uses) if policy.lookup(name, module, u) is None)
            info = NameInfo(name, module, tuple(sorted(uses)), not bad, bad)
            if memo is not None and (name in memo or len(memo) < 4096):
                memo[name] = (module, info.uses, info.trusted, info)
        out.append(info)
    return tuple(out)


def _read_info(source: Source, describe: bool) -> tuple[Any, ...] | None:
    """The compiled read_info's (header, names, fields) for inspect (``describe``) or
    audit, or None: then the Python reader reads the header (a cold inspect's Python
    steps, the Sections it made and their sums were most of its time)."""
    fast = _compiled.speedups
    if fast is None or not isinstance(source, FRONT_SOURCES):
        return None
    got: tuple[Any, ...] | None = fast.read_info(
        source, SMALL_SPEC, _DEFAULT_KNOWN, _DEFAULT_INFOS, describe
    )
    return got


def inspect(source: Source) -> Info:
    """Read a jar's header: object type, parameters, schema, versions, names, sizes.

    >>> info = skjar.inspect("model.skjar")  # doctest: +SKIP
    >>> info.type, info.schema["n_features_in"]  # doctest: +SKIP
    ('sklearn.neighbors._classification.KNeighborsClassifier', 4)

    Only the preamble and header are read; nothing is imported or built, and the
    digest is not checked (use ``load`` or ``skjar verify`` for that).
    """
    got = _read_info(source, True)
    if got is None:
        return Info._of(_info_fields(source))
    header, _, fields = got
    if fields["names"] is None:  # a name outside the defaults, or other versions
        fields["names"] = _name_infos_python(header, _DEFAULT_POLICY)
        fields["version_skew"] = version_skew(header["environment"])
    return Info._of(fields)


def _info_fields(source: Source) -> dict[str, Any]:
    """inspect's Info fields, read by the Python reader (what read_info makes in C)."""
    version, flags, header, tree, buffers, data_end, size = read_header_fields(
        source, compiled=False
    )
    if size is None:  # read from a stream: the size the header implies
        size = data_end + TRAILER_SIZE + (SIGNATURE_SIZE if flags & FLAG_SIGNED else 0)
    pieces, stored, decoded = section_totals(buffers)
    names = _default_infos(header)  # when it answers, the versions are those here too
    return {
        "format_version": f"{version[0]}.{version[1]}",
        "producer": header["producer"],
        "environment": header["environment"],
        "object": header["object"],
        "metadata": header["metadata"],
        "names": names if names is not None else _name_infos_python(header, _DEFAULT_POLICY),
        "compression": header.get("compression"),
        "sizes": {
            "file": size,
            "header": tree.offset,
            "tree_stored": tree.length,
            "tree": tree.size,
            "buffers": pieces,
            "data_stored": stored,
            "data": decoded,
        },
        "version_skew": version_skew(header["environment"]) if names is None else {},
        "signed": bool(flags & FLAG_SIGNED),
    }


def audit(source: Source, *, trusted: Iterable[TrustedItem] = ()) -> list[NameInfo]:
    """Every name the jar references, with its uses and whether each is trusted.

    >>> [n.name for n in skjar.audit("model.skjar") if not n.trusted]  # doctest: +SKIP
    []

    Reads the header only (the tree may use no name the header does not declare,
    so this list is exactly what loading may touch).
    """
    policy = _DEFAULT_POLICY if type(trusted) is tuple and not trusted else TrustPolicy(trusted)
    got = _read_info(source, False)
    if got is None:
        header = read_header_fields(source, compiled=False)[2]
        return list(_name_infos(header, policy))
    header, names, _ = got
    if names is None or policy.extra:
        return list(_name_infos_python(header, policy))
    return list(names)


# -- integrity and signatures without loading ---------------------------------
@dataclass(frozen=True)
class Verified:
    """What ``verify`` established about a jar."""

    size: int
    signed: bool
    signer: str | None  # fingerprint of the key whose signature was checked


def verify(source: Source, *, verify_with: Any = None) -> Verified:
    """Check a jar's layout and digest (and signature, with keys) without building anything.

    >>> skjar.verify("model.skjar", verify_with="team.pub.pem").signer  # doctest: +SKIP
    '3f9a0c2b7d41e8a5'

    Raises ``CorruptFileError`` for any damaged byte, ``SignatureError`` when a
    required signature is missing, by another key, or does not match.
    """
    keys = verify_keys(verify_with)
    raw = open_source(source, mmap=False, admit=declared_names, keys=keys)
    signed = bool(raw.flags & FLAG_SIGNED)
    return Verified(raw.layout.file_size + (SIGNATURE_SIZE if signed else 0), signed, raw.signer)


def sign(source: PathLike, key: Any, *, output: PathLike | None = None) -> str:
    """Sign an existing jar (in place, or into ``output``); returns the signer's fingerprint.

    >>> skjar.sign("model.skjar", "signer.pem")  # doctest: +SKIP

    The jar's integrity is verified first; a jar already signed is re-signed.
    """
    from .format.writer import sign_existing
    from .signing import fingerprint, load_private_key, raw_public

    signer = load_private_key(key)
    path = file_path(source)
    target = file_path(output) if output is not None else path
    check_save_target(target)  # before reading a large jar for nothing
    raw = open_source(path, mmap=True, admit=declared_names)
    tree_end = raw.layout.tree.offset + raw.layout.tree.length
    sign_existing(path, target, tree_end, raw.layout.data_end, signer)
    return fingerprint(raw_public(signer.public_key()))
