"""Ed25519 keys for signed jars: generate, read and write them, name them.

A signed jar carries the signer's public key and an Ed25519 signature over
``b"skjar-signature-v1\\0" + BLAKE3-256(every byte before the signature)``.
A load with ``verify_with=`` (or the ``SKJAR_VERIFY_KEYS`` environment
variable) refuses unsigned jars, jars signed by another key, and tampered jars,
before any object is built::

    key = skjar.generate_key()
    skjar.save_key(key, "signer.pem")                 # private; public goes to signer.pub.pem
    skjar.dump(model, "model.skjar", sign_with=key)
    skjar.load("model.skjar", verify_with="signer.pub.pem")
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

from . import _compiled
from ._paths import file_path
from .errors import InvalidArgumentError, SignatureError
from .format.spec import SIGNATURE_DOMAIN

VERIFY_KEYS_ENV = "SKJAR_VERIFY_KEYS"

KeySource = Any  # a cryptography key object, raw key bytes, PEM bytes, or a path to a PEM file


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        return ed25519
    except ImportError:  # pragma: no cover - depends on the environment
        raise InvalidArgumentError(
            "signing needs the optional packages: pip install 'skjar[sign]'"
        ) from None


def _blake3() -> Any:
    try:
        import blake3

        return blake3.blake3
    except ImportError:  # pragma: no cover
        raise InvalidArgumentError(
            "signing needs the optional packages: pip install 'skjar[sign]'"
        ) from None


# The process whose BLAKE3 hashing started blake3's thread pool (rayon's, which has no
# fork handling): a process forked from it inherits the pool's state but none of its
# threads, and a multi-threaded hash there waits for them forever - a prefork server
# whose parent signed or verified a large jar hung in every worker's first signed load.
_POOL_PID: int | None = None


def new_message_hasher() -> Any:
    """The cryptographic hash of the signed bytes (BLAKE3-256): multi-threaded, but in
    one thread in a process forked after this one's hashing started the thread pool."""
    global _POOL_PID
    blake3 = _blake3()
    pid = os.getpid()
    if _POOL_PID is None:
        _POOL_PID = pid
    return blake3(max_threads=blake3.AUTO if pid == _POOL_PID else 1)


def generate_key() -> Any:
    """A new Ed25519 private key.

    >>> key = skjar.generate_key()  # doctest: +SKIP
    """
    return _crypto().Ed25519PrivateKey.generate()


def save_key(key: Any, path: str | os.PathLike[str]) -> str:
    """Write ``key`` (PEM, PKCS8, unencrypted, mode 0600) and its public half beside it.

    >>> skjar.save_key(skjar.generate_key(), "signer.pem")  # doctest: +SKIP
    'signer.pub.pem'

    Returns the public key's path (``name.pub.pem`` next to ``name.pem``).
    """
    from cryptography.hazmat.primitives import serialization

    path = file_path(path)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    pub_path = (path[:-4] if path.endswith(".pem") else path) + ".pub.pem"
    with open(pub_path, "wb") as f:
        f.write(public_pem(key.public_key()))
    return pub_path


def public_pem(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read_source(source: KeySource) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(file_path(source), "rb") as f:
                return f.read()
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot read key file {os.fspath(source)!r}: {exc.strerror}"
            ) from None
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    raise InvalidArgumentError(
        f"a key must be an Ed25519 key object, PEM bytes, raw 32 bytes or a PEM file path, "
        f"not {type(source).__name__}"
    )


def load_private_key(source: KeySource) -> Any:
    """An Ed25519 private key from a key object, raw 32-byte seed, PEM bytes or a PEM path.

    >>> key = skjar.load_private_key("signer.pem")  # doctest: +SKIP
    """
    ed = _crypto()
    if isinstance(source, ed.Ed25519PrivateKey):
        return source
    data = _read_source(source)
    if len(data) == 32:
        return ed.Ed25519PrivateKey.from_private_bytes(data)
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise InvalidArgumentError("sign_with= needs an Ed25519 private key")
    return key


def load_public_key(source: KeySource) -> Any:
    """An Ed25519 public key from a key object, raw 32 bytes, PEM bytes or a PEM path.

    >>> public = skjar.load_public_key("signer.pub.pem")  # doctest: +SKIP
    """
    ed = _crypto()
    if isinstance(source, ed.Ed25519PublicKey):
        return source
    if isinstance(source, ed.Ed25519PrivateKey):
        return source.public_key()
    data = _read_source(source)
    if len(data) == 32:
        return ed.Ed25519PublicKey.from_public_bytes(data)
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ed.Ed25519PublicKey):
        raise InvalidArgumentError("verify_with= needs Ed25519 public keys")
    return key


def raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def fingerprint(raw_public_key: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its BLAKE3 hash."""
    return str(_blake3()(raw_public_key).hexdigest()[:16])


def _keys_named_in_environment() -> bool:
    return bool(os.environ.get(VERIFY_KEYS_ENV, "").strip())


# A load's first question, "must it check a signature?", for the common answer (no
# verify_with=): the compiled getenv where built. os.environ's Python cost a forked
# process's first load ~35 page faults, ~0.1 ms (iris-knn: ~6%). True sends the load
# to verify_keys, which reads os.environ and decides.
keys_in_environment: Callable[[], bool] = (
    functools.partial(_compiled.speedups.env_set, VERIFY_KEYS_ENV)
    if _compiled.speedups is not None
    else _keys_named_in_environment
)


def verify_keys(verify_with: KeySource | Iterable[KeySource] | None) -> list[bytes] | None:
    """The raw public keys a load must check against, or None when no signature is required.

    ``verify_with`` wins; otherwise ``SKJAR_VERIFY_KEYS`` (PEM paths separated by
    ``os.pathsep``) makes signatures mandatory for every load in the process.
    """
    if verify_with is None:
        env = os.environ.get(VERIFY_KEYS_ENV, "").strip()
        if not env:
            return None
        sources: list[Any] = [p for p in env.split(os.pathsep) if p]
    elif isinstance(verify_with, (str, os.PathLike, bytes, bytearray)) or not isinstance(
        verify_with, Iterable
    ):
        sources = [verify_with]
    else:
        sources = list(verify_with)
    if not sources:
        raise InvalidArgumentError("verify_with= is empty: give at least one public key")
    return [raw_public(load_public_key(s)) for s in sources]


def sign_digest(key: Any, digest: bytes) -> bytes:
    """The 96-byte signature block: raw public key + Ed25519 signature."""
    return raw_public(key.public_key()) + key.sign(SIGNATURE_DOMAIN + digest)


def check_signature(block: bytes, digest: bytes, keys: list[bytes]) -> str:
    """Raise SignatureError unless ``block`` is a valid signature by one of ``keys``."""
    public, signature = block[:32], block[32:]
    if public not in keys:
        raise SignatureError(
            f"the jar is signed by key {fingerprint(public)}, which is not among the "
            f"{len(keys)} key(s) you trust ({', '.join(fingerprint(k) for k in keys)})"
        )
    from cryptography.exceptions import InvalidSignature

    try:
        _crypto().Ed25519PublicKey.from_public_bytes(public).verify(
            signature, SIGNATURE_DOMAIN + digest
        )
    except InvalidSignature:
        raise SignatureError(
            "the signature does not match the jar's content: it was modified after signing"
        ) from None
    return fingerprint(public)
