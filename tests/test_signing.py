"""Signed jars: round trip, and every way a signature can fail is refused before loading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xxhash
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import skjar
from skjar.format.spec import SIGNATURE_SIZE, TRAILER_SIZE


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[str, str, object]:
    key = skjar.generate_key()
    pub = skjar.save_key(key, tmp_path / "signer.pem")
    return str(tmp_path / "signer.pem"), pub, key


def _refix_digest(data: bytearray) -> bytes:
    """What an attacker does after editing: recompute both integrity digests."""
    info = skjar.inspect(bytes(data))
    tree_end = info.sizes["header"] + info.sizes["tree_stored"]
    end = len(data) - TRAILER_SIZE
    data[end : end + 16] = xxhash.xxh3_128(bytes(data[:tree_end])).digest()
    data[end + 16 : end + 32] = xxhash.xxh3_128(bytes(data[:end])).digest()
    return bytes(data)


def test_round_trip_with_key_object_pem_bytes_and_path(model, keys, tmp_path: Path) -> None:
    priv_path, pub_path, key = keys
    X, _ = load_iris(return_X_y=True)
    path = tmp_path / "m.skjar"
    skjar.dump(model, path, sign_with=priv_path)
    assert skjar.inspect(path).signed
    for verifier in (pub_path, key.public_key(), Path(pub_path).read_bytes(), [pub_path]):
        loaded = skjar.load(path, verify_with=verifier)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert skjar.verify(path, verify_with=pub_path).signer is not None
    # Unsigned loads of a signed jar still work (the signature is simply not checked).
    skjar.load(path)


def test_unsigned_jar_refused_when_a_key_is_given(model, keys) -> None:
    _, pub, _ = keys
    with pytest.raises(skjar.SignatureError, match="not signed"):
        skjar.loads(skjar.dumps(model), verify_with=pub)


def test_jar_signed_by_someone_else_is_refused(model, keys) -> None:
    _, pub, _ = keys
    data = skjar.dumps(model, sign_with=skjar.generate_key())
    with pytest.raises(skjar.SignatureError, match="not among"):
        skjar.loads(data, verify_with=pub)


@pytest.mark.parametrize("where", ["header", "tree", "buffer", "signature"])
def test_tampered_jar_with_recomputed_digest_is_refused(model, keys, where: str) -> None:
    _, pub, key = keys
    data = bytearray(skjar.dumps(model, sign_with=key))
    view = skjar.inspect(bytes(data))
    end = len(data) - TRAILER_SIZE - SIGNATURE_SIZE
    pos = {
        "header": 40,
        "tree": view.sizes["header"] + 3,
        "buffer": end - 3,
        "signature": end + 40,
    }[where]
    data[pos] ^= 0x01
    tampered = _refix_digest(data)
    with pytest.raises((skjar.SignatureError, skjar.CorruptFileError)) as info:
        skjar.loads(tampered, verify_with=pub)
    if where in ("buffer", "signature"):
        assert isinstance(info.value, skjar.SignatureError)


def test_stripping_the_signature_is_refused(model, keys) -> None:
    _, pub, key = keys
    data = bytearray(skjar.dumps(model, sign_with=key))
    end = len(data) - TRAILER_SIZE - SIGNATURE_SIZE
    data[12] &= ~1  # clear the signed flag, drop the block, recompute the digest
    stripped = bytearray(data[:end]) + bytearray(TRAILER_SIZE)
    stripped[end + 32 :] = b"SKJAREND"
    with pytest.raises(skjar.SignatureError, match="not signed"):
        skjar.loads(_refix_digest(stripped), verify_with=pub)


def test_environment_requires_signatures_for_every_load(model, keys, monkeypatch, tmp_path: Path) -> None:
    priv, pub, _ = keys
    monkeypatch.setenv("SKJAR_VERIFY_KEYS", pub)
    with pytest.raises(skjar.SignatureError):
        skjar.loads(skjar.dumps(model))
    path = tmp_path / "m.skjar"
    skjar.dump(model, path)
    skjar.sign(path, priv)
    skjar.load(path)  # signed by the trusted key: accepted
    skjar.load(str(path))
    unsigned = tmp_path / "u.skjar"
    skjar.dump(model, unsigned)
    for source in (unsigned, str(unsigned)):  # a str with no option: load's shortest way
        with pytest.raises(skjar.SignatureError):
            skjar.load(source)
    monkeypatch.setenv("SKJAR_VERIFY_KEYS", os.pathsep.join([pub, pub]))
    skjar.load(path, mmap=True)


def test_sign_existing_jar_into_output_and_resign(model, keys, tmp_path: Path) -> None:
    priv, pub, _ = keys
    src, dst = tmp_path / "a.skjar", tmp_path / "b.skjar"
    skjar.dump(model, src, compress="zstd")
    skjar.sign(src, priv, output=dst)
    assert not skjar.inspect(src).signed and skjar.inspect(dst).signed
    other = skjar.generate_key()
    skjar.sign(dst, other)  # re-signing replaces the signature
    with pytest.raises(skjar.SignatureError):
        skjar.load(dst, verify_with=pub)
    skjar.load(dst, verify_with=other.public_key())


def test_bad_key_arguments_are_clear_errors(model, tmp_path: Path) -> None:
    with pytest.raises(skjar.InvalidArgumentError, match="cannot read key file"):
        skjar.dumps(model, sign_with=tmp_path / "missing.pem")
    with pytest.raises(skjar.InvalidArgumentError):
        skjar.dumps(model, sign_with=b"not a key")
    with pytest.raises(skjar.InvalidArgumentError, match="empty"):
        skjar.loads(skjar.dumps(model), verify_with=[])
    with pytest.raises(skjar.InvalidArgumentError):
        skjar.loads(skjar.dumps(model), verify_with=12)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks a child: POSIX")
def test_a_process_forked_after_signing_loads_signed_jars(tmp_path: Path) -> None:
    """A prefork server: the parent signs and verifies a large jar (BLAKE3 hashes it on
    its thread pool), then forks workers that load signed jars. blake3's pool does not
    survive a fork, and a worker's multi-threaded hash used to wait for its threads
    forever; each worker must load, and sign, as the parent did. Run in a subprocess so
    that a hang is a timeout, not a stuck test run."""
    import subprocess
    import sys

    script = """
import os, sys
import numpy as np
import skjar
key = skjar.generate_key()
value = {"a": np.arange(1 << 20, dtype=np.float64)}  # 8 MB: hashed on several threads
data = skjar.dumps(value, sign_with=key)
skjar.loads(data, verify_with=[key.public_key()])
pid = os.fork()
if pid == 0:
    loaded = skjar.loads(data, verify_with=[key.public_key()])
    again = skjar.dumps(value, sign_with=key)
    ok = (loaded["a"] == value["a"]).all() and skjar.loads(again, verify_with=[key.public_key()])
    os._exit(0 if ok is not None else 1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""
    import signal

    run = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE,
                           start_new_session=True)
    try:
        _, err = run.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)  # the hung worker too
        run.communicate()
        pytest.fail("a process forked after a signed load hung in its own signed load")
    assert run.returncode == 0, err.decode()[-2000:]
