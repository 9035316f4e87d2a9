"""Foreign input: classic malicious pickles and joblib files fed to ``load``/``loads``.

skjar never unpickles, on any path (no fallback on error): a pickle or joblib file is
refused as not-a-jar from its first bytes, and its payload (``os.system("touch
<canary>")`` by ``__reduce__``) never runs. The control at the end shows the same bytes
*do* create the canary when unpickled, in a separate process.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jarcraft
import skjar
from skjar.format.spec import MAGIC

from .hostile import Touch, touch_pickle

NOT_A_JAR = "not a skjar file"


def _joblib(compress: Any) -> Callable[[Path, Path], bytes]:
    def make(canary: Path, folder: Path) -> bytes:
        import joblib

        path = folder / f"model-{compress}.joblib"
        joblib.dump({"model": Touch(canary), "w": np.arange(10.0)}, path, compress=compress)
        return path.read_bytes()

    return make


def _npy(canary: Path, folder: Path) -> bytes:
    out = io.BytesIO()
    np.save(out, np.array([Touch(canary)], dtype=object), allow_pickle=True)
    return out.getvalue()


FOREIGN: dict[str, Callable[[Path, Path], bytes]] = {
    **{f"pickle protocol {p}": (lambda c, f, p=p: touch_pickle(c, p)) for p in range(6)},
    "joblib raw": _joblib(0),
    "joblib zlib": _joblib(("zlib", 3)),
    "joblib gzip": _joblib(("gzip", 3)),
    "joblib bz2": _joblib(("bz2", 3)),
    "joblib lzma": _joblib(("lzma", 3)),
    "joblib xz": _joblib(("xz", 3)),
    "joblib lz4": _joblib(("lz4", 3)),
    "numpy .npy with a pickled object array": _npy,
    "pickle behind 8 junk bytes": lambda c, f: b"JUNKJUNK" + touch_pickle(c),
    "empty": lambda c, f: b"",
}


@pytest.mark.parametrize("via", ["loads", "load(path)", "load(mmap)", "load(file object)"])
@pytest.mark.parametrize("kind", list(FOREIGN))
def test_foreign_files_are_not_jars(
    kind: str, via: str, canary: Path, tmp_path: Path, refused: Any
) -> None:
    data = FOREIGN[kind](canary, tmp_path)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    loaders = {
        "loads": lambda: skjar.loads(data),
        "load(path)": lambda: skjar.load(path),
        "load(mmap)": lambda: skjar.load(path, mmap=True),
        "load(file object)": lambda: skjar.load(io.BytesIO(data)),
    }
    exc = refused(loaders[via], "not a jar")
    if kind.startswith(("pickle protocol", "joblib")):
        # named as a pickle/joblib file, with the way forward (protocols 0 and 1 were not
        # recognised before: they start with GLOBAL "cposix\nsystem", not with 0x80)
        assert "never unpickles" in str(exc)
    assert NOT_A_JAR in str(exc)


POLYGLOTS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    # a pickle appended to a valid jar: the layout accounts for every byte
    "jar + pickle appended": (
        lambda c: skjar.dumps({"a": 1}) + touch_pickle(c), "layout must cover the file exactly"),
    # the skjar magic in front of a pickle: what follows is not a preamble
    "magic + pickle": (lambda c: MAGIC + touch_pickle(c), "format version check"),
    "magic + version + pickle": (
        lambda c: MAGIC + b"\x01\x00\x00\x00\x00\x00\x00\x00" + touch_pickle(c),
        "header length bounds"),
    # a pickle as the header, with a plausible length
    "pickle as the header": (
        lambda c: jarcraft.preamble(len(touch_pickle(c))) + touch_pickle(c) + bytes(64),
        "strict header JSON"),
    # a pickle as the object tree, with valid digests
    "pickle as the object tree": (
        lambda c: jarcraft.assemble(
            {**jarcraft.minimal_header(), "layout": {
                "tree": {"length": len(touch_pickle(c)), "size": len(touch_pickle(c)),
                         "codec": "none"}, "buffers": []}},
            [touch_pickle(c)]),
        "tree parses exactly"),
    # a pickle as an array buffer: just bytes, never interpreted
    "pickle as an object array's buffer": (
        lambda c: jarcraft.build(
            jarcraft.Ext(20, ["|O", [1], False, 0]), buffers=[touch_pickle(c)]),
        "node payload shape check"),
}


@pytest.mark.parametrize("kind", list(POLYGLOTS))
def test_pickles_inside_jar_structures_are_never_unpickled(
    kind: str, canary: Path, refused: Any
) -> None:
    make, defence = POLYGLOTS[kind]
    data = make(canary)
    refused(lambda: skjar.loads(data), defence)


def test_a_pickled_array_buffer_stays_bytes(canary: Path, held: Any) -> None:
    """A pickle stored as the bytes of a uint8 array comes back as those bytes."""
    payload = touch_pickle(canary)
    data = jarcraft.build(jarcraft.Ext(20, ["|u1", [len(payload)], False, 0]),
                          buffers=[payload])
    assert skjar.loads(data).tobytes() == payload
    assert not canary.exists()
    held("values are never called while loading")


UNPICKLE = textwrap.dedent(
    """
    import sys
    kind, path = sys.argv[1], sys.argv[2]
    if kind == "pickle":
        import pickle
        pickle.loads(open(path, "rb").read())
    else:
        import joblib
        joblib.load(path)
    """
)


@pytest.mark.parametrize("kind", ["pickle", "joblib"])
def test_the_payloads_are_live(kind: str, tmp_path: Path) -> None:
    """Control: unpickling the same bytes (pickle.loads / joblib.load, in a separate
    process) runs the payload and creates the canary. So "canary absent" above means
    the loader refused a working exploit."""
    trace = tmp_path / "LIVE"
    path = tmp_path / "payload"
    path.write_bytes(touch_pickle(trace, 2) if kind == "pickle"
                     else _joblib(("zlib", 3))(trace, tmp_path))
    proc = subprocess.run([sys.executable, "-c", UNPICKLE, kind, str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert trace.exists(), "the malicious pickle did not run: the canary proves nothing"


def test_skjar_has_no_unpickling_fallback(canary: Path, refused: Any, monkeypatch: Any) -> None:
    """Even with pickle.loads/Unpickler patched to shout, a refused pickle never reaches them."""
    calls: list[str] = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: calls.append("loads"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append("load"))
    monkeypatch.setattr(pickle, "Unpickler", lambda *a, **k: calls.append("Unpickler"))
    for protocol in range(6):
        refused(lambda p=protocol: skjar.loads(touch_pickle(canary, p)), "not a jar")
    assert calls == []
