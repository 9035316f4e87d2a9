"""``skjar keygen``, ``sign``, ``verify --key`` and ``convert``, through the real command."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import skjar


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "skjar.cli.main", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(X, y)


def test_keygen_sign_verify(model, tmp_path: Path) -> None:
    jar, key = tmp_path / "m.skjar", tmp_path / "ci.pem"
    skjar.dump(model, jar)
    r = run("keygen", str(key))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ci.pub.pem").exists() and oct(key.stat().st_mode)[-3:] == "600"
    assert run("keygen", str(key)).returncode == 2  # refuses to overwrite
    r = run("verify", str(jar), "--key", str(tmp_path / "ci.pub.pem"))
    assert r.returncode == 1 and "not signed" in r.stderr + r.stdout
    r = run("sign", str(jar), "--key", str(key))
    assert r.returncode == 0, r.stderr
    r = run("verify", str(jar), "--key", str(tmp_path / "ci.pub.pem"), "--json")
    assert r.returncode == 0, r.stderr
    assert "valid, by key" in r.stdout
    other = tmp_path / "other.pem"
    assert run("keygen", str(other)).returncode == 0
    r = run("verify", str(jar), "--key", str(tmp_path / "other.pub.pem"))
    assert r.returncode == 1 and "not among" in r.stderr + r.stdout


@pytest.mark.parametrize("kind", ["pickle", "joblib", "joblib-z3"])
def test_convert_legacy_files(model, kind: str, tmp_path: Path) -> None:
    src, dst = tmp_path / "m.legacy", tmp_path / "m.skjar"
    if kind == "pickle":
        src.write_bytes(pickle.dumps(model, protocol=5))
    else:
        joblib.dump(model, src, compress=3 if kind == "joblib-z3" else 0)
    r = run("convert", str(src), str(dst))
    assert r.returncode == 0, r.stderr
    X, _ = load_iris(return_X_y=True)
    np.testing.assert_array_equal(skjar.load(dst).predict_proba(X), model.predict_proba(X))


def test_convert_refuses_a_malicious_pickle_without_running_it(tmp_path: Path) -> None:
    canary = tmp_path / "canary"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (__import__("os").system, (f"touch {canary}",))

    src = tmp_path / "evil.pkl"
    src.write_bytes(pickle.dumps(Evil()))
    r = run("convert", str(src), str(tmp_path / "out.skjar"))
    assert r.returncode == 1
    assert "untrusted" in r.stderr and ("posix.system" in r.stderr or "os.system" in r.stderr)
    assert not canary.exists() and not (tmp_path / "out.skjar").exists()
