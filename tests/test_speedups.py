"""The compiled helpers (src/skjar/_speedups.c): built, equal to their Python twins, robust.

Each helper answers "fine" (or returns what it built) or "not fine"; on "not
fine" the loader runs the Python twin, which names the fault. The tree check's
twin comparison lives in test_meaning_paths.py; the string dict's is here.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jarcraft
import skjar
from skjar import _compiled
from skjar.codec.builtins import _strings
from skjar.errors import CorruptFileError
from skjar.format.header import declared_names
from skjar.format.reader import open_source

speedups = _compiled.speedups
needs_speedups = pytest.mark.skipif(
    speedups is None and os.environ.get("SKJAR_ALLOW_PURE_PYTHON") == "1",
    reason="SKJAR_ALLOW_PURE_PYTHON=1: the compiled helpers are not built here",
)


def test_the_compiled_helpers_are_built() -> None:
    """`pip install` builds them where a C compiler exists (CI has one); without them
    loads are correct but slower. SKJAR_ALLOW_PURE_PYTHON=1 accepts their absence."""
    if os.environ.get("SKJAR_ALLOW_PURE_PYTHON") == "1":
        return
    assert speedups is not None, (
        "skjar._speedups is not built: reinstall with a C compiler and Python headers "
        "(pip install -e .), or set SKJAR_ALLOW_PURE_PYTHON=1"
    )


def test_every_compiled_helper_is_listed_and_built() -> None:
    """_compiled.HELPERS is what the loader calls: a build lacking one is not used."""
    import re
    from pathlib import Path

    here = Path(_compiled.__file__).parent
    source = (here / "_speedups.c").read_text()
    defined = set(re.findall(r'\{"(\w+)", [^,]+, METH_', source))
    for name in ("_digest.c", "_speedups.c"):  # types: the Hasher, CompiledCheck
        defined |= set(re.findall(r"PyModule_AddType\(module, &(\w+)Type\)", (here / name).read_text()))
    assert defined == set(_compiled.HELPERS)
    (api,) = re.findall(r"#define SKJAR_SPEEDUPS_API (\d+)", source)
    assert int(api) == _compiled.API
    if speedups is not None:
        assert speedups.API == _compiled.API


def test_a_stale_build_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    stale = types.ModuleType("skjar._speedups")
    stale.tree_ok = lambda *args: True  # type: ignore[attr-defined]  # the rest is missing
    monkeypatch.setitem(sys.modules, "skjar._speedups", stale)
    monkeypatch.setattr(skjar, "_speedups", stale, raising=False)
    monkeypatch.delenv("SKJAR_PURE_PYTHON", raising=False)
    assert _compiled._load() is None
    for name in _compiled.HELPERS:  # every helper, but another calling convention
        setattr(stale, name, lambda *args: True)
    assert _compiled._load() is None
    stale.API = _compiled.API  # type: ignore[attr-defined]
    assert _compiled._load() is stale


def _python_strdict(text: bytes, count: int, values: list[int]) -> dict[str, int] | None:
    try:
        keys = _strings(np.frombuffer(text, np.uint8), count, "t")
    except CorruptFileError:
        return None
    out = dict(zip(keys, values))
    return out if len(out) == count else None


keys = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)


@needs_speedups
@settings(max_examples=500, deadline=None)
@given(
    st.lists(keys, max_size=20),
    st.integers(-2, 2),
    st.sampled_from(["", "\x00", "\xff", "\xed\xa0\x80", "\xc3", "a\x00\x00"]),
)
def test_strdict_equals_its_python_twin(words: list[str], skew: int, tail: str) -> None:
    """Honest and damaged inputs: wrong counts, stray separators, invalid or
    truncated UTF-8, lone surrogates (allowed, as in the Python path), duplicates."""
    text = "\x00".join(words).encode("utf-8", "surrogatepass") + tail.encode("latin-1")
    count = max(len(words) + skew, 0)
    values = list(range(-count, count * 3, 3))[:count]
    for dtype in ("i8", "i4", "i2", "i1"):
        column = np.array(values, dtype=dtype)
        compiled = speedups.strdict(  # type: ignore[union-attr]
            text, count, column, column.itemsize, True, True  # bytes: never released
        )
        assert compiled == _python_strdict(text, count, values)
        if compiled is not None:
            assert list(compiled) == list(_python_strdict(text, count, values) or {})  # same order


@needs_speedups
@pytest.mark.parametrize("length", range(21))
def test_strdict_finds_every_key_end_and_wide_byte_as_its_twin(length: int) -> None:
    """strdict scans a key eight bytes a step for its NUL and for a byte over 0x7f (an
    ASCII key is made without the UTF-8 decoder): keys of every length across those steps,
    each with a wide character, a lone continuation byte or a NUL-free tail at every
    place, are judged and built as the twin builds them."""
    plain = bytes(97 + i % 26 for i in range(length))
    variants = [plain]
    for at in range(length):
        variants.append(plain[:at] + "é".encode() + plain[at + 1 :])  # valid UTF-8
        variants.append(plain[:at] + b"\x80" + plain[at + 1 :])  # not UTF-8
    for key in variants:
        for before in (b"", b"x", b"1234567"):  # the key at every alignment
            for text in (before + b"\x00" + key + b"\x00z", before + b"\x00" + key):
                count = text.count(b"\x00") + 1
                values = list(range(count))
                built = speedups.strdict(text, count, np.array(values), 8, True, False)  # type: ignore[union-attr]
                expected = _python_strdict(text, count, values)
                assert built == expected, (key, text)
                assert [type(k) for k in built or {}] == [str] * len(built or {})


# strdict makes and inserts its keys 32 at a time (STRDICT_BATCH): damage on either
# side of a batch's edge, and counts that end a batch exactly, must be judged alike.
_EDGES = [0, 1, 30, 31, 32, 33, 63, 64, 65]


@needs_speedups
@pytest.mark.parametrize("n", [31, 32, 33, 64, 65, 97])
def test_strdict_judges_damage_at_every_batch_edge_as_its_twin(n: int) -> None:
    words = [f"w{i}".encode() for i in range(n)]
    cases: list[tuple[list[bytes], int]] = [(words, n), (words, n - 1), (words, n + 1)]
    for at in (p for p in _EDGES if p < n):
        for earlier in {0, at - 1, at - 32} - {at}:
            if earlier >= 0:  # a duplicate of an earlier key, in this batch or the last
                cases.append((words[:at] + [words[earlier]] + words[at + 1 :], n))
        cases.append((words[:at] + [b"\xff" + words[at]] + words[at + 1 :], n))  # not UTF-8
    for keys_, count in cases:
        text = b"\x00".join(keys_)
        values = list(range(count))
        built = speedups.strdict(text, count, np.array(values), 8, True, False)  # type: ignore[union-attr]
        expected = _python_strdict(text, count, values)
        assert built == expected, (n, count, keys_[:3])
        assert list(built or {}) == list(expected or {})  # in the same order


@needs_speedups
def test_strdict_prefetches_on_the_cpythons_whose_dict_layout_it_knows() -> None:
    """The prefetch (and the speed it gives a vocabulary's load) must not be lost to a
    layout check that silently fails: CPython 3.11 to 3.13 lay dicts out as it reads them."""
    import sysconfig

    known = (3, 11) <= sys.version_info[:2] <= (3, 13) and not sysconfig.get_config_var(
        "Py_GIL_DISABLED"
    )
    prefetching = speedups.dict_prefetching()  # type: ignore[union-attr]
    assert prefetching == known


def _big_vocabulary(n: int = 300_000) -> tuple[np.ndarray, list[str]]:
    """A writable, page-aligned text of ~3 MB of keys, like the reader's own buffers."""
    words = [f"term{i:07d}" for i in range(n)]
    raw = "\x00".join(words).encode()
    text = np.empty(len(raw), np.uint8)  # anonymous memory: released pages read back zero
    text[:] = np.frombuffer(raw, np.uint8)
    return text, words


@needs_speedups
def test_strdict_releases_the_keys_it_has_built() -> None:
    text, words = _big_vocabulary()
    values = np.arange(len(words), dtype=np.int32)
    built = speedups.strdict(text, len(words), values, 4, True, True)  # type: ignore[union-attr]
    assert built == dict(zip(words, range(len(words))))
    assert not text[8192 : (1 << 20) - 8192].any()  # given back: the kernel's zero pages
    kept, _ = _big_vocabulary()
    speedups.strdict(kept, len(words), values, 4, True, False)  # type: ignore[union-attr]
    assert kept[8192 : (1 << 20) - 8192].any()  # without release: the keys are still there


@needs_speedups
def test_a_released_vocabulary_leaves_the_callers_data_and_the_file_alone(tmp_path: Any) -> None:
    """Pages are given back only from the load's own buffers or its private mapping:
    the caller's bytes and the file keep every byte; every way in loads the same dict."""
    import hashlib

    vocab = {f"term{i:07d}": i for i in range(300_000)}  # 3.6 MB of keys: released in steps
    data = skjar.dumps({"vocabulary": vocab})
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "vocab.skjar"
    path.write_bytes(data)
    for mmap in (False, True):
        assert skjar.load(path, mmap=mmap)["vocabulary"] == vocab
    assert skjar.loads(data)["vocabulary"] == vocab
    writable = bytearray(data)  # a writable input: still copied, never released
    assert skjar.loads(memoryview(writable))["vocabulary"] == vocab
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(writable).hexdigest() == digest
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert skjar.load(path, mmap=True)["vocabulary"] == vocab  # the page cache is intact too


@needs_speedups
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda t: t.__setitem__(slice(-11, None), np.frombuffer(b"term0000000", np.uint8)),
         "duplicate keys"),
        (lambda t: t.__setitem__(-1, 0xFF), "not valid UTF-8"),
        (lambda t: t.__setitem__(-5, 0), "more keys than declared"),
    ],
)
def test_strdict_says_why_once_it_has_released_keys(damage: Any, reason: str) -> None:
    """Damage near the end is found after keys were released: the compiled path then
    names the reason itself (the Python twin could no longer read the keys)."""
    text, words = _big_vocabulary()
    damage(text)
    values = np.arange(len(words), dtype=np.int64)
    built = speedups.strdict(text, len(words), values, 8, True, True)  # type: ignore[union-attr]
    assert isinstance(built, str) and reason in built
    early, _ = _big_vocabulary()
    damage(early)
    early[:4] = np.frombuffer(b"\xff\xff\xff\xff", np.uint8)  # refused before any release
    assert speedups.strdict(early, len(words), values, 8, True, True) is None  # type: ignore[union-attr]


needs_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the object pool (_objpool.c) is Linux-only"
)


def _run(code: str, **env: str) -> str:
    """``code`` run in a fresh interpreter (its allocator chosen by ``env``): its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_speedups
@needs_linux
def test_a_large_strdict_takes_its_objects_memory_from_the_pool() -> None:
    """From OBJPOOL_MIN_KEYS keys on, the keys' and values' arenas come from the pool and
    a helper maps their pages in as they are handed out; a small build leaves the pool
    alone. In a fresh interpreter: one that has freed large dicts before (a test worker)
    has arenas to spare, and hands the build fewer from the pool."""
    out = _run(
        "import numpy as np; from skjar import _compiled as c\n"
        "n = 300_000; words = [f'term{i:07d}' for i in range(n)]\n"
        "raw = '\\0'.join(words).encode(); text = np.empty(len(raw), np.uint8)\n"
        "text[:] = np.frombuffer(raw, np.uint8)\n"
        "built = c.speedups.strdict(text, n, np.arange(n, dtype=np.int32), 4, True, False)\n"
        "assert built == dict(zip(words, range(n)))\n"
        "first = c.speedups.objpool_last()\n"
        "small = c.speedups.strdict(b'a\\x00b', 2, np.arange(2), 8, True, False)\n"
        "assert small == {'a': 0, 'b': 1}\n"
        "print(*first, *c.speedups.objpool_last())",
    )
    handed, mapped, handed_after, mapped_after = map(int, out.split())
    objects = 300_000 * (64 + 32)  # an 11-character str takes 64 bytes, an int 32
    assert objects // 2 <= handed <= objects * 2  # (some come from arenas already there)
    assert mapped > 0
    assert (handed_after, mapped_after) == (handed, mapped)  # not engaged: below the threshold


@needs_speedups
@needs_linux
def test_the_pool_maps_nothing_where_no_arena_is_asked_for() -> None:
    """Under PYTHONMALLOC=malloc objects never come from arenas: the build is the same
    and the helper, which starts at the first arena, maps nothing in."""
    out = _run(
        "import numpy as np; from skjar import _compiled as c\n"
        "n = 200_000; words = [f'k{i}' for i in range(n)]\n"
        "d = c.speedups.strdict('\\0'.join(words).encode(), n, np.arange(n), 8, True, False)\n"
        "assert d == dict(zip(words, range(n)))\n"
        "print(c.speedups.objpool_last())",
        PYTHONMALLOC="malloc",
    )
    assert out.strip() == "(0, 0)"


@needs_speedups
@needs_linux
def test_repeated_large_builds_give_their_memory_back() -> None:
    """Twenty builds of 300,000 keys, each dropped: the address space and resident memory
    end where the first left them (the unused rest of a range kept per build would add
    ~20 MB of address space a time)."""
    out = _run(
        "import numpy as np, gc; from skjar import _compiled as c\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key): return int(line.split()[1]) * 1024\n"
        "n = 300_000; text = '\\0'.join(f'term{i:07d}' for i in range(n)).encode()\n"
        "values = np.arange(n, dtype=np.int32)\n"
        "def build():\n"
        "    d = c.speedups.strdict(text, n, values, 4, True, False); assert len(d) == n\n"
        "build(); gc.collect(); size, rss = status('VmSize'), status('VmRSS')\n"
        "for _ in range(20): build()\n"
        "gc.collect(); print(status('VmSize') - size, status('VmRSS') - rss)"
    )
    grown_size, grown_rss = map(int, out.split())
    assert grown_size < 32 << 20 and grown_rss < 32 << 20, (grown_size, grown_rss)


@needs_speedups
def test_a_large_strdict_of_every_width_equals_its_python_twin() -> None:
    """Keys of one-, two- and four-byte characters and lone surrogates, past the pool's
    threshold (their objects are larger than the pool's estimate allows for ASCII)."""
    pieces = ["a", "\xe9", "\u20ac", "\U0001f600", "\udc80"]
    words = [pieces[i % 5] * (1 + i % 7) + str(i) for i in range(100_000)]
    text = "\x00".join(words).encode("utf-8", "surrogatepass")
    values = list(range(len(words)))
    built = speedups.strdict(text, len(words), np.array(values), 8, True, False)  # type: ignore[union-attr]
    assert built == _python_strdict(text, len(words), values)
    assert list(built) == words


@needs_speedups
@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"\xd6", b"\xd7", b"\xc7", b"\x0c", b"\xff", b"\x00", b"a"]),
                max_size=12))
def test_no_timestamps_equals_its_python_twin(pieces: list[bytes]) -> None:
    from skjar.codec.decoder import _TIMESTAMP_MARKERS

    data = b"".join(pieces)
    expected = _TIMESTAMP_MARKERS.search(data) is None
    assert speedups.no_timestamps(data) is expected  # type: ignore[union-attr]
    assert speedups.no_timestamps(memoryview(data)) is expected  # type: ignore[union-attr]
    assert speedups.no_timestamps(bytearray(b"x" * 100) + data) is expected  # type: ignore[union-attr]


@needs_speedups
def test_strdict_keeps_values_exact() -> None:
    values = np.array([0, -1, 2**63 - 1, -(2**63)], dtype=np.int64)
    assert speedups.strdict(b"a\x00b\x00c\x00d", 4, values, 8, True, False) == {  # type: ignore[union-attr]
        "a": 0, "b": -1, "c": 2**63 - 1, "d": -(2**63)
    }
    for dtype in ("u1", "u2", "u4", "i1", "i2", "i4"):
        info = np.iinfo(dtype)
        column = np.array([info.min, info.max, 0, 1], dtype=dtype)
        built = speedups.strdict(  # type: ignore[union-attr]
            b"a\x00b\x00c\x00d", 4, column, column.itemsize, info.min < 0, False
        )
        assert built == dict(zip("abcd", column.tolist())), dtype


@needs_speedups
@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.strdict(b"a\x00b", 2, np.zeros(3, np.int64), 8, True, False),  # values too long
        lambda s: s.strdict(b"a", -1, np.zeros(0, np.int64), 8, True, False),
        lambda s: s.strdict(b"a\x00b", 2, np.zeros(6, np.uint8), 3, True, False),  # no such width
        lambda s: s.strdict(b"a\x00b", 2, np.zeros(5, np.uint8), 2, True, False),  # 2.5 values
        lambda s: s.strdict(b"a\x00b", 2, np.zeros(2, np.uint64), 8, False, False),  # uint64
        lambda s: s.tree_ok(b"\x00" * 64, 0, 0, 8, 16, 1, 1),  # itemsize 0
        lambda s: s.tree_ok(b"\x00" * 65, 64, 0, 8, 16, 1, 1),  # not whole records
        lambda s: s.tree_ok(b"\x00" * 64, 64, 0, 8, 57, 1, 1),  # field past the record
        lambda s: s.tree_ok(b"\x00" * 64, 64, -8, 8, 16, 1, 1),
        lambda s: s.below(b"\x00" * 6, 4, True, 1),  # 1.5 values
        lambda s: s.below(b"\x00" * 6, 3, True, 1),  # no such width
        lambda s: s.below(b"\x00" * 8, 8, True, -1),
        lambda s: s.binary_tree_ok(b"\x00" * 32, 1, 0, 0, 8, 16),  # itemsize 0
        lambda s: s.binary_tree_ok(b"\x00" * 33, 1, 32, 0, 8, 16),  # not whole records
        lambda s: s.binary_tree_ok(b"\x00" * 32, 1, 32, 0, 8, 25),  # field past the record
        lambda s: s.binary_tree_ok(b"\x00" * 32, -1, 32, 0, 8, 16),
        lambda s: s.predictor_ok(b"\x00" * 56, 56, 0, 4, 52, 12, 13, 14, 1, -1, b""),
        lambda s: s.predictor_ok(b"\x00" * 56, 56, 0, 4, 8, 55, 13, 53, 1, -1, b""),
        lambda s: s.predictor_ok(b"\x00" * 56, 56, 0, 4, 8, 12, 13, 14, 1, 3, b"\x01"),
        lambda s: s.predictors_ok([], np.ndarray, None, 56, 0, 4, 52, 12, 13, 14, 1, b""),
        lambda s: s.predictors_ok([], np.ndarray, None, 56, 0, 4, 8, 55, 13, 53, 1, b""),
        lambda s: s.predictors_ok([], np.ndarray, None, 56, 0, 4, 8, 12, 13, 14, 3, b"\x01"),
        lambda s: s.predictors_ok([], np.ndarray, None, 56, 0, 4, 8, 12, 13, 14, -1, b""),
    ],
)
def test_bad_arguments_are_refused_not_read(call: Any) -> None:
    with pytest.raises(ValueError):
        call(speedups)


@needs_speedups
def test_a_damaged_vocabulary_gets_the_python_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A duplicate key: the compiled path says "not fine", the Python twin names it."""
    vocab = {f"w{i:03}": i for i in range(300)}
    jar = jarcraft.decode(skjar.dumps(vocab))
    (index,) = [i for i, b in enumerate(jar.buffers) if b.startswith(b"w000\x00")]
    jar.buffers[index] = jar.buffers[index].replace(b"w001", b"w000")  # same length
    data = jarcraft.encode(jar)
    messages = []
    for mode in ("compiled", "python"):
        if mode == "python":
            monkeypatch.setattr(_compiled, "speedups", None)
        with pytest.raises(CorruptFileError) as info:
            skjar.loads(data)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "duplicate keys" in messages[0]


def test_large_models_load_the_same_with_and_without(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.RandomState(0)
    X, y = rng.rand(2000, 5), rng.randint(0, 3, 2000)
    forest = RandomForestClassifier(3, random_state=0).fit(X, y)  # trees > SMALL_TREE nodes
    assert forest.estimators_[0].tree_.node_count > 256
    vocab = {f"w{i}\u00e9": i for i in range(5000)}
    data = skjar.dumps({"forest": forest, "vocab": vocab})
    compiled = skjar.loads(data)
    monkeypatch.setattr(_compiled, "speedups", None)
    python = skjar.loads(data)
    for got in (compiled, python):
        assert got["vocab"] == vocab and list(got["vocab"]) == list(vocab)
        assert (got["forest"].predict_proba(X) == forest.predict_proba(X)).all()


class _Counting:
    """The compiled helpers, counting each call (to see which ones a real load uses)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        helper = getattr(self.real, name)

        def counted(*args: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return helper(*args)

        return counted


@needs_speedups
@pytest.mark.parametrize("categorical", [False, True])
def test_real_models_take_every_compiled_path(
    monkeypatch: pytest.MonkeyPatch, categorical: bool
) -> None:
    """A twin that quietly steps aside costs only speed, so no other test notices: a
    dtype test once sent every real HistGradientBoosting model (scikit-learn keeps
    is_categorical_ as uint8) down the Python path. Real fits, real loads, every twin."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(300, 3)).astype(float)
    y = (X[:, 0] + rng.random(300) > 2).astype(int)
    words = [f"w{i} w{i + 1}" for i in range(400)]
    models = [
        RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y),
        HistGradientBoostingClassifier(
            max_iter=3, categorical_features=[0] if categorical else None
        ).fit(X, y),
        TfidfVectorizer().fit(words),  # a vocabulary large enough to be stored column-wise
        np.arange(20_000.0),  # a body large enough to be prefaulted
        KNeighborsClassifier(algorithm="kd_tree").fit(X, y),
        KNeighborsClassifier(algorithm="ball_tree").fit(X, y),
        SVC(probability=True, random_state=0).fit(X, y),
    ]
    counting = _Counting(speedups)
    monkeypatch.setattr(_compiled, "speedups", counting)
    for model in models:
        skjar.loads(skjar.dumps(model))
    assert counting.calls.get("read_small", 0) == len(models)  # bytes take the front too
    # The Python reader (open_source) prefaults a large body itself.
    open_source(io.BytesIO(skjar.dumps(models[3])), mmap=False, admit=declared_names)
    # Whole states are checked at once, so the per-array twins never run for a tree or a
    # predictor; the estimator's check reads all its predictors in one call.
    assert counting.calls.get("tree_state_ok", 0) >= 2
    assert counting.calls.get("tree_ok", 0) == 0
    assert counting.calls.get("predictor_state_ok", 0) == 3
    assert counting.calls.get("predictor_ok", 0) == 0
    assert counting.calls.get("predictors_ok", 0) == 1
    assert counting.calls.get("strdict", 0) == 1
    assert counting.calls.get("prefault", 0) == 1
    assert counting.calls.get("binary_tree_state_ok", 0) == 2  # a KD tree, a ball tree
    assert counting.calls.get("binary_tree_ok", 0) == 0
    assert counting.calls.get("below", 0) == 0  # their index arrays: checked with them
    assert counting.calls.get("distance_metric_state_ok", 0) == 2
    assert counting.calls.get("neighbors_state_ok", 0) == 2
    assert counting.calls.get("libsvm_state_ok", 0) == 1


@needs_speedups
@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8"]),
    st.lists(st.integers(-(2**63), 2**64 - 1), max_size=40),
    st.integers(0, 2**63 - 1) | st.integers(0, 300),
)
def test_below_equals_its_numpy_twin(dtype: str, values: list[int], n: int) -> None:
    info = np.iinfo(dtype)
    arr = np.array([min(max(v, info.min), info.max) for v in values], dtype=dtype)
    from skjar.codec.numpy import indices_below

    want = bool(len(arr) == 0 or (arr.astype(object).min() >= 0 and arr.astype(object).max() < n))
    assert speedups.below(arr, arr.itemsize, dtype[0] == "i", n) is want
    assert indices_below(arr, n) is want
    swapped = arr.astype(arr.dtype.newbyteorder())  # not native: numpy's path
    assert indices_below(swapped, n) is want


@needs_speedups
def test_address_is_numpys() -> None:
    arr = np.arange(100, dtype=np.uint8)
    for view in (arr, arr[7:], arr[::1][3:50]):
        assert speedups.address(view) == view.__array_interface__["data"][0]
    with pytest.raises((BufferError, ValueError)):
        speedups.address(arr[::2])  # not contiguous: no single address to give


@needs_speedups
def test_prefault_maps_pages_without_changing_bytes() -> None:
    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8)
    before = data.copy()
    done = speedups.prefault(data[1:])  # an unaligned start: only whole pages inside
    assert done is (os.uname().sysname == "Linux")  # CI's kernels have MADV_POPULATE_WRITE
    np.testing.assert_array_equal(data, before)
    with pytest.raises(TypeError):
        speedups.prefault(b"read-only bytes")


@needs_speedups
def test_discard_gives_back_only_the_whole_pages_inside() -> None:
    """A decompressed chunk's stored bytes are discarded: the pages entirely inside it read
    back as zeros (anonymous memory), the bytes of partial pages at its ends are kept."""
    import mmap as _mmap

    page = _mmap.PAGESIZE
    memory = _mmap.mmap(-1, 8 * page, flags=_mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS)  # as the reader's
    data = np.frombuffer(memory, dtype=np.uint8)
    data[:] = 0xAB
    start, end = page // 2, 5 * page + 100  # whole pages 1-4 inside
    assert speedups.discard(data[start:end]) is None
    if os.uname().sysname == "Linux":
        assert not data[page : 5 * page].any()
        assert (data[: page] == 0xAB).all() and (data[5 * page :] == 0xAB).all()
    speedups.discard(data[10:20])  # no whole page inside: nothing happens
    assert (data[:page] == 0xAB).all()
    speedups.discard(b"read-only bytes are fine too: nothing inside a page")


@needs_speedups
def test_start_writeback_is_a_hint_that_never_raises(tmp_path: Any) -> None:
    with open(tmp_path / "f", "wb") as f:
        f.write(b"x" * 10_000)
        f.flush()
        assert speedups.start_writeback(f.fileno(), 0, 10_000) is (os.uname().sysname == "Linux")
        assert speedups.start_writeback(f.fileno(), -1, 10) is False
    read, write = os.pipe()
    assert speedups.start_writeback(read, 0, 1) is False  # not a file: nothing to start
    os.close(read)
    os.close(write)
    assert speedups.start_writeback(read, 0, 1) is False  # a closed descriptor


@needs_speedups
@pytest.mark.parametrize("body", ["python", "compiled"])
def test_a_large_save_starts_its_writeback_early_and_writes_the_same_bytes(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    """Each WRITEBACK_CHUNK is handed to the kernel as soon as it is written, in order,
    without a gap, by writes of about WRITE_CHUNK each (one 8 MiB write at a time is
    where forest's saves stalled); the file is byte for byte what ``dumps`` makes. The
    Python loop is watched call by call; the compiled ``write_jar`` says where its
    writeback got to."""
    from skjar.format import writer
    from skjar.format.writer import WRITE_CHUNK, WRITEBACK_CHUNK

    ranges: list[tuple[int, int]] = []
    writes: list[int] = []
    bodies: list[tuple[int, int]] = []  # the compiled writer's (position, started)
    writev = os.writev

    def recording_writev(fd: int, buffers: Any) -> int:
        writes.append(sum(memoryview(b).nbytes for b in buffers))
        return writev(fd, buffers)

    monkeypatch.setattr(os, "writev", recording_writev)

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(speedups, name)

        def start_writeback(self, fd: int, offset: int, nbytes: int) -> bool:
            ranges.append((offset, nbytes))
            assert os.fstat(fd).st_size >= offset + nbytes  # flushed before it is asked
            return speedups.start_writeback(fd, offset, nbytes)

        def write_jar(self, *args: Any) -> Any:
            position, started = speedups.write_jar(*args)
            bodies.append((position, started))
            return position, started

    model = {"weights": np.arange(3 * WRITEBACK_CHUNK // 8 + 1000, dtype=np.float64)}
    made = skjar.api.producer()  # one creation time for both jars (it has a second's grain)
    monkeypatch.setattr(skjar.api, "producer", lambda: made)
    monkeypatch.setattr(_compiled, "speedups", Recording())
    if body == "python":
        monkeypatch.setattr(writer._FileWriter, "jar_writer", lambda self: None)
    skjar.dump(model, tmp_path / "big.skjar")
    size = (tmp_path / "big.skjar").stat().st_size
    if body == "python":
        assert not bodies and len(ranges) == 3
        assert [offset for offset, _ in ranges] == [0, *np.cumsum([n for _, n in ranges])[:-1]]
        assert all(n >= WRITEBACK_CHUNK for _, n in ranges)
        # (a write gathers the pieces pending under one WRITE_CHUNK and the one that fills it)
        assert WRITE_CHUNK < WRITEBACK_CHUNK and max(writes) < 2 * WRITE_CHUNK
        assert sum(writes) == size
    else:  # one call writes it all, three writebacks started
        ((position, started),) = bodies
        assert position == size and 3 * WRITEBACK_CHUNK <= started < size
        assert not ranges and not writes
    monkeypatch.setattr(_compiled, "speedups", speedups)  # (the creation time stays fixed)
    assert (tmp_path / "big.skjar").read_bytes() == skjar.dumps(model)


# -- write_jar: an unsigned jar written whole, hashed on a helper thread -------------
def _python_jar(front: bytes, payloads: list[Any]) -> bytes:
    """The bytes writer.py's Python loop writes."""
    from skjar.format.writer import _write_whole

    out = io.BytesIO()
    assert _write_whole(out.write, front, payloads, None) == len(out.getvalue())
    return out.getvalue()


def _write_jar(fd: int, front: bytes, payloads: list[Any], chunks: tuple[int, int]) -> Any:
    from skjar.format.spec import END_MAGIC

    return speedups.write_jar(fd, front, payloads, END_MAGIC, 64, 0, 0, *chunks)


def _compiled_jar(
    path: Any, front: bytes, payloads: list[Any], chunks: tuple[int, int] = (1 << 20, 8 << 20)
) -> bytes:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        position, started = _write_jar(fd, front, payloads, chunks)
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        data = f.read()
    assert position == len(data) and 0 <= started <= position
    return data


# (front, payloads): hashed inline and on the helper thread (from 1.5 MiB: the last
# two), pads and none, chunk lists
_JARS = {
    "tree only": (b"F" * 40, [b"tree"]),
    "aligned": (b"F" * 64, [b"t" * 64, np.arange(8.0)]),
    "empty pieces": (b"F", [b"", b"", memoryview(b"x"), [b"", b"ab"]]),
    "chunked": (b"F" * 7, [b"tree" * 9, [b"a" * 100, b"b" * 3, b""], np.ones(5, np.uint8)]),
    "threaded": (b"F" * 100, [b"t" * 1000, np.arange(300_000.0), b"z" * 3, [b"c" * 70_000] * 3]),
    "large tree": (b"F" * 3, [np.arange(500_000, dtype=np.int32), b"tail"]),
}


@needs_speedups
@pytest.mark.parametrize("name", sorted(_JARS))
def test_write_jar_writes_what_the_python_loop_writes(tmp_path: Any, name: str) -> None:
    """Bytes, pads, both digests and the end magic, for every way of gathering writes."""
    front, payloads = _JARS[name]
    want = _python_jar(front, payloads)
    small = len(want) < 100_000  # (a byte a write: a million calls for a large jar)
    for chunks in ((1 << 20, 8 << 20), (1000, 5000), (1, 1) if small else (7, 100_000)):
        assert _compiled_jar(tmp_path / "jar", front, payloads, chunks) == want, chunks


@needs_speedups
def test_write_jar_survives_short_and_interrupted_writes(tmp_path: Any) -> None:
    """A pipe with a one-page buffer read slowly, while a timer's signal keeps interrupting
    the write: writev returns part of a gather, or EINTR (the handler then runs, as
    PEP 475 has it, in the middle of the call); every byte arrives once, in order."""
    import fcntl
    import signal
    import threading

    front, payloads = b"F" * 100, [b"t" * 999, np.arange(100_000.0), b"end"]
    want = _python_jar(front, payloads)
    read, write = os.pipe()
    fcntl.fcntl(write, 1031, 4096)  # F_SETPIPE_SZ: one page
    got = bytearray()

    def reader() -> None:
        while chunk := os.read(read, 3000):
            got.extend(chunk)

    handled: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda *_: handled.append(1))
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
        _write_jar(write, front, payloads, (1 << 20, 8 << 20))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(write)
        thread.join()
        os.close(read)
    assert bytes(got) == want
    assert handled  # (the timer did fire during the write)


@needs_speedups
def test_write_jar_stops_when_a_signal_handler_raises() -> None:
    """Ctrl-C during a save to a pipe nobody reads: the handler's exception ends the call."""
    import signal

    read, write = os.pipe()

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            _write_jar(write, b"F", [np.ones(1 << 20)], (1 << 20, 1 << 30))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(write)
        os.close(read)


@needs_speedups
def test_write_jar_refuses_bad_arguments(tmp_path: Any) -> None:
    from skjar.format.spec import END_MAGIC

    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    good = (fd, b"F", [b"tree"], END_MAGIC, 64, 0, 0, 1 << 20, 8 << 20)

    def call(index: int, value: Any) -> Any:
        return speedups.write_jar(*good[:index], value, *good[index + 1 :])

    try:
        with pytest.raises(TypeError):
            call(2, (b"tree",))  # a tuple of payloads
        with pytest.raises(TypeError):
            call(2, [b"tree", 5])  # a payload that is no buffer
        with pytest.raises(TypeError):
            call(3, "END")  # an end magic that is no bytes
        with pytest.raises(ValueError, match="first payload"):
            call(2, [])
        for index, value in ((4, 0), (4, 48), (4, 128), (5, -1), (6, 7), (7, 0), (8, 0)):
            with pytest.raises(ValueError, match="out of range"):
                call(index, value)
        with pytest.raises(OSError) as closed:
            call(0, -1)
        assert closed.value.errno == 9  # EBADF
        assert os.fstat(fd).st_size == 0  # nothing written by a refused call
    finally:
        os.close(fd)


@needs_speedups
def test_a_save_that_hits_the_file_size_limit_fails_and_keeps_the_old_file(tmp_path: Any) -> None:
    """A real failure half-way through the compiled write (RLIMIT_FSIZE: the kernel writes
    up to the limit, then refuses): the OSError reaches the caller, the old jar stays,
    no temporary file is left. In a child process, whose limit it is."""
    code = f"""
import os, resource, signal, numpy as np, skjar
path = {str(tmp_path / "m.skjar")!r}
skjar.dump({{"version": "old"}}, path)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    skjar.dump({{"data": np.ones(1 << 18)}}, path)  # 2 MiB
except OSError as exc:
    print("errno", exc.errno)
print(skjar.load(path), sorted(os.listdir(os.path.dirname(path))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["errno 27", "{'version': 'old'} ['m.skjar']"]


# -- the header's JSON, parsed and written -----------------------------------------
def _exact(a: Any, b: Any) -> bool:
    """Equal values of equal types (1 is not 1.0 or True; -0.0 is not 0.0), order kept."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_exact, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(map(_exact, a.values(), b.values()))
    return bool(a == b)


def _twin(raw: bytes) -> Any:
    """What the json module makes of ``raw``, as parse_header reads it, or an exception."""

    from skjar.format.header import _HEADER_JSON

    try:
        return _HEADER_JSON.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return exc


JSON_TEXT = st.text(st.characters(exclude_categories=()), max_size=8)  # surrogates too
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False,
                                                                         allow_infinity=False)
    | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(JSON_TEXT, inner, max_size=5),
    max_leaves=20,
)


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(map(_has_surrogate, value)) or any(map(_has_surrogate, value.values()))
    return isinstance(value, (list, tuple)) and any(map(_has_surrogate, value))


@needs_speedups
@settings(max_examples=500, deadline=None)
@given(value=JSON_VALUES, tuples=st.booleans())
def test_the_json_writer_writes_its_twins_bytes(value: Any, tuples: bool) -> None:
    """json_dump writes what encode_header's json module writes, byte for byte, for every
    header-like value; it steps aside (None) only for text UTF-8 cannot hold."""
    import json

    from skjar.format.header import encode_header

    def as_tuples(v: Any) -> Any:  # (tuples are written as arrays, as json writes them)
        if isinstance(v, list):
            return tuple(map(as_tuples, v))
        if isinstance(v, dict):
            return {k: as_tuples(x) for k, x in v.items()}
        return v

    value = as_tuples(value) if tuples else value
    written = speedups.json_dump(value)  # type: ignore[union-attr]
    if _has_surrogate(value):
        assert written is None
        return
    twin = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert written == twin.encode()
    assert encode_header(value) == written


@needs_speedups
def test_the_json_writer_steps_aside_for_the_unusual() -> None:
    """What the twin writes otherwise (a key that is no str, a subclass) or refuses (NaN,
    a cycle): None, so encode_header's json module decides."""
    import enum

    class Text(str):
        pass

    class Number(enum.IntEnum):
        ONE = 1

    deep: Any = []
    for _ in range(100):
        deep = [deep]
    looped: list[Any] = []
    looped.append(looped)
    for value in ({1: "a"}, {None: 1}, Text("a"), {"a": Number.ONE}, float("nan"),
                  [float("-inf")], {"a": {1, 2}}, np.float64(1.0), deep, looped, b"bytes"):
        assert speedups.json_dump(value) is None, value  # type: ignore[union-attr]
    from skjar.format.header import encode_header

    assert encode_header({"k": {1: Number.ONE}}) == b'{"k":{"1":1}}'
    with pytest.raises(ValueError, match="not JSON compliant"):
        encode_header({"x": float("nan")})


@needs_speedups
@settings(max_examples=500, deadline=None)
@given(value=JSON_VALUES, ascii=st.booleans(), indent=st.sampled_from([None, 0, 2, "\t"]))
def test_the_json_parser_equals_its_twin(value: Any, ascii: bool, indent: Any) -> None:
    import json

    try:
        raw = json.dumps(value, ensure_ascii=ascii, indent=indent).encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be written as UTF-8
        raw = json.dumps(value, ensure_ascii=True, indent=indent).encode()
    parsed = speedups.json(raw)  # type: ignore[union-attr]
    twin = _twin(raw)
    assert not isinstance(twin, Exception)
    assert parsed is None or _exact(parsed, twin), (parsed, twin)


@needs_speedups
@settings(max_examples=1000, deadline=None)
@given(value=JSON_VALUES, data=st.data())
def test_the_json_parser_accepts_nothing_its_twin_refuses(value: Any, data: st.DataObject) -> None:
    """Damaged JSON: the compiled parser either steps aside (None) or agrees exactly."""
    import json

    raw = bytearray(json.dumps(value, ensure_ascii=data.draw(st.booleans())).encode(
        "utf-8", "surrogatepass"))  # lone surrogates as their (invalid) UTF-8 bytes
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        how = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if how == "flip" and at < len(raw):
            raw[at] = data.draw(st.sampled_from(b'{}[]",:\\-+.0123456789eEtfnulru \t\n\x00\x1f\xc3\xa9\xed\xff'))
        elif how == "cut":
            del raw[at:]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    parsed = speedups.json(bytes(raw))  # type: ignore[union-attr]
    if parsed is not None:
        twin = _twin(bytes(raw))
        assert not isinstance(twin, Exception), f"{bytes(raw)!r}: compiled {parsed!r}, twin {twin}"
        assert _exact(parsed, twin), (bytes(raw), parsed, twin)


@needs_speedups
@settings(max_examples=2000, deadline=None)
@given(
    sign=st.sampled_from(["", "-"]),
    whole=st.text("0123456789", min_size=1, max_size=21).map(lambda t: t.lstrip("0") or "0"),
    fraction=st.text("0123456789", max_size=21),
    exponent=st.one_of(st.none(), st.integers(-340, 340)),
    e=st.sampled_from(["e", "E", "e+"]),
)
def test_the_json_parsers_decimals_are_the_nearest_double(
    sign: str, whole: str, fraction: str, exponent: int | None, e: str
) -> None:
    """Decimals of every digit count around the exact fast path's limits (19 digits, 2**53,
    exponents to +-22) and far beyond it: the compiled parser's double is float()'s."""
    text = sign + whole + ("." + fraction if fraction else "")
    if exponent is not None:
        text += (e if exponent >= 0 else "e") + str(exponent)
    if "." not in text and exponent is None:
        return  # an int: the twin tests cover those
    parsed = speedups.json(text.encode())  # type: ignore[union-attr]
    assert type(parsed) is float and repr(parsed) == repr(float(text)), (text, parsed)


@needs_speedups
def test_the_json_parsers_string_cache_returns_only_equal_strings() -> None:
    """Short ASCII strings are reused across parses from a cache of 256 slots: thousands
    of them, of every length to its limit and beyond, many colliding, parsed twice in
    other orders and as keys, must come back exactly as written."""
    import json
    import random

    rng = random.Random(5)
    alphabet = "ab\\\"/ \x7fnone"  # few letters: many strings alike, escapes in some
    words = sorted({"".join(rng.choices(alphabet, k=rng.randint(0, 34))) for _ in range(3000)})
    for order in (words, words[::-1], rng.sample(words, len(words))):
        raw = json.dumps([order, {w: i for i, w in enumerate(order)}]).encode()
        assert speedups.json(raw) == _twin(raw)  # type: ignore[union-attr]


@needs_speedups
@pytest.mark.parametrize(
    "raw",
    [b'{"a":1,"a":2}', b"NaN", b"[Infinity]", b"-Infinity", b"[1,]", b"{,}", b"01", b"-", b"1.",
     b".5", b"1e", b"[1 2]", b'"\x01"', b'"\\x41"', b'"\\u12"', b'"\xed\xa0\x80"', b"\xef\xbb\xbf1",
     b"", b" ", b"tru", b"nul", b'{"a" 1}', b'{1:2}', b"[" * 100 + b"]" * 100,
     b"123456789012345678901234567890", b"1" * 5000],
    ids=repr,
)
def test_the_json_parser_steps_aside_for_the_unusual(raw: bytes) -> None:
    """Refused or unusual JSON goes to the twin, which accepts it or names the fault."""
    assert speedups.json(raw) is None  # type: ignore[union-attr]


UNREAD = ("producer", "object", "metadata")


def _unbuilt(full: Any) -> Any:
    """``full`` as a parse leaving UNREAD's object entries unbuilt gives it."""
    if type(full) is not dict:
        return full
    return {k: {} if k in UNREAD and type(v) is dict else v for k, v in full.items()}


@needs_speedups
@settings(max_examples=1000, deadline=None)
@given(
    entries=st.dictionaries(st.sampled_from([*UNREAD, "names", "layout", "x"]),
                            JSON_VALUES | st.dictionaries(JSON_TEXT, JSON_VALUES, max_size=4),
                            max_size=6),
    ascii=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
    data=st.data(),
)
def test_a_header_read_unbuilt_is_the_built_one_but_for_its_unread_entries(
    entries: dict[str, Any], ascii: bool, indent: Any, data: st.DataObject
) -> None:
    """json(text, unread) scans the unread entries instead of building them: it is stricter
    than the builder, never looser (None sends the reader to the builder), and otherwise
    gives exactly what the builder gives, with those entries empty - damaged or not."""
    import json

    raw = bytearray(json.dumps(entries, ensure_ascii=ascii, indent=indent).encode(
        "utf-8", "surrogatepass"))
    for _ in range(data.draw(st.integers(0, 2))):
        at = data.draw(st.integers(0, len(raw)))
        if at < len(raw):
            raw[at] = data.draw(st.sampled_from(b'{}[]",:\\-.019eEtfnu \x00\x1f\xc3\xa9\xed\xff'))
        else:
            raw += data.draw(st.binary(min_size=1, max_size=2))
    full = speedups.json(bytes(raw))  # type: ignore[union-attr]
    unbuilt = speedups.json(bytes(raw), UNREAD)  # type: ignore[union-attr]
    if unbuilt is not None:
        assert full is not None, bytes(raw)
        assert _exact(unbuilt, _unbuilt(full)), (bytes(raw), unbuilt, full)


@needs_speedups
@pytest.mark.parametrize(
    "inside, builder_takes",
    [(b'{"a":1,"a":2}', False), (b'{"a":"\\u0041"}', True), (b'{"\\u0061":1,"a":2}', False),
     ('{"k":"\u00e9"}'.encode(), True), (b'{"k":"\x01"}', False), (b'{"x":NaN}', False),
     (b'{"n":123456789012345678901}', False), (b'[' * 70 + b']' * 70, False),
     (b'{' + b",".join(b'"k%d":%d' % (i, i) for i in range(65)) + b'}', True),
     (b'{"a":[1,2.5e-3,true,false,null,{"b":{}}]}', True), (b'{"a":1,}', False)],
    ids=repr,
)
def test_an_unread_entry_that_is_not_plain_is_left_to_the_builder(
    inside: bytes, builder_takes: bool
) -> None:
    """Repeated keys, escapes, non-ASCII text, control characters, NaN, long ints, deep
    nesting, more keys than it tracks: the scan steps aside (None), and the builder takes
    the header or refuses it as it always has. Plain values are scanned."""
    raw = b'{"names":[],"object":' + inside + b',"layout":{}}'
    full = speedups.json(raw)  # type: ignore[union-attr]
    unbuilt = speedups.json(raw, UNREAD)  # type: ignore[union-attr]
    assert (full is not None) == builder_takes, full
    plain = inside.startswith(b"{") and builder_takes and inside.isascii() and b"\\" not in inside
    plain = plain and inside.count(b":") <= 64
    assert (unbuilt is not None) == plain, unbuilt
    if unbuilt is not None:
        assert unbuilt == {"names": [], "object": {}, "layout": {}}


@needs_speedups
def test_an_unread_entry_nested_to_the_limit_is_scanned_in_a_small_stack() -> None:
    """The scan keeps each object's keys on the C stack: 63 objects deep, each with 64
    keys, in a thread with a 256 KiB stack, it answers as the builder does."""
    import threading

    inner = b"{}"
    for _ in range(62):
        inner = b"{" + b",".join(b'"k%d":0' % i for i in range(63)) + b',"z":' + inner + b"}"
    raw = b'{"object":' + inner + b"}"
    answers: list[Any] = []
    threading.stack_size(256 << 10)
    try:
        thread = threading.Thread(target=lambda: answers.append(speedups.json(raw, UNREAD)))  # type: ignore[union-attr]
        thread.start()
        thread.join()
    finally:
        threading.stack_size(0)
    assert answers == [{"object": {}}] and speedups.json(raw) is not None  # type: ignore[union-attr]
    deeper = b'{"object":{"z":' + inner + b"}}"
    assert speedups.json(deeper, UNREAD) is None and speedups.json(deeper) is None  # type: ignore[union-attr]


@needs_speedups
def test_an_audit_and_a_load_read_the_header_unbuilt_and_an_inspect_built(tmp_path: Any) -> None:
    """read_head without describe leaves the summary, producer and metadata empty and gives
    the same names, versions and layout; audit takes it, and gives what the Python reader
    gives. Metadata the scan steps aside for (non-ASCII, escapes) is read by the builder."""
    from sklearn.linear_model import LogisticRegression

    from skjar.format.header import Section
    from skjar.format.reader import SMALL_SPEC

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    for metadata in ({"team": "fraud"}, {"note": "ünïcode \"quoted\"\n"}):
        path = tmp_path / "m.skjar"
        skjar.dump(model, path, metadata=metadata)
        built = speedups.read_head(str(path), Section, SMALL_SPEC)  # type: ignore[union-attr]
        unbuilt = speedups.read_head(str(path), Section, SMALL_SPEC, False)  # type: ignore[union-attr]
        assert built is not None and unbuilt is not None
        assert built[1]["metadata"] == metadata and built[1]["object"]["type"].endswith("LogisticRegression")
        plain = metadata == {"team": "fraud"}
        assert unbuilt[1] == (_unbuilt(built[1]) if plain else built[1])
        assert unbuilt[:1] + unbuilt[2:] == built[:1] + built[2:]
        with mock.patch.object(_compiled, "speedups", None):
            python = skjar.audit(path)
        assert skjar.audit(path) == python
        assert skjar.inspect(path).metadata == metadata
        assert (skjar.load(path).coef_ == model.coef_).all()


@needs_speedups
def test_real_headers_take_the_compiled_path() -> None:
    from sklearn.linear_model import LogisticRegression

    from skjar.format.reader import PREAMBLE_SIZE, parse_preamble

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    for value in (model, {"x": [1.5, None]}, "é"):
        data = skjar.dumps(value, metadata={"note": "ünïcode \"quoted\"\n", "n": 2**40})
        _, _, n = parse_preamble(data[:PREAMBLE_SIZE])
        raw = data[PREAMBLE_SIZE : PREAMBLE_SIZE + n]
        parsed = speedups.json(raw)  # type: ignore[union-attr]
        assert parsed is not None and _exact(parsed, _twin(raw))


# -- the digest (_digest.c) ------------------------------------------------
@needs_speedups
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000), st.lists(st.integers(0, 5000), max_size=6))
def test_the_compiled_digest_equals_python_xxhash(data: bytes, cuts: list[int]) -> None:
    """Any split of any bytes, with a copy taken midway: python-xxhash's xxh3_128 is the
    twin (and the fallback without the compiled helpers)."""
    import xxhash

    assert speedups is not None
    hasher, twin = speedups.Hasher(), xxhash.xxh3_128()
    copies = []
    at = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        hasher.update(data[at:cut])
        twin.update(data[at:cut])
        copies.append((hasher.copy(), twin.copy()))
        at = cut
    assert hasher.digest() == twin.digest() == xxhash.xxh3_128(data).digest()
    for mine, theirs in copies:
        assert mine.digest() == theirs.digest()


@needs_speedups
@pytest.mark.parametrize("size", [0, 1, 16, 17, 128, 129, 240, 241, 1023, 1024, 65535,
                                  65536, (1 << 20) + 7])
def test_the_compiled_digest_equals_python_xxhash_at_its_boundaries(size: int) -> None:
    """XXH3 switches code paths at 16, 128 and 240 bytes and per 1 KiB stripe block;
    updates from 64 KiB run without the GIL."""
    import xxhash

    assert speedups is not None
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    hasher = speedups.Hasher()
    hasher.update(data)  # any buffer: numpy, memoryview, bytearray, bytes
    hasher.update(memoryview(bytearray(b"tail")))
    assert hasher.digest() == xxhash.xxh3_128(data.tobytes() + b"tail").digest()
    assert hasher.digest() == hasher.digest()  # digest() does not end the hash


@needs_speedups
@pytest.mark.parametrize(
    "sizes",
    [
        [100, 70_000, 5, 65_536, 65_535, (1 << 20) + 3, 3],
        [65_536, 1, 65_535, 240, 200_000],
        [1023, 1025, 64_513, 65_537, 17],
    ],
)
def test_small_and_large_updates_share_one_hash_state(sizes: list[int]) -> None:
    """Updates under 64 KiB run xxHash's inlined update, larger ones the dispatched
    (AVX2/AVX-512) one, on the same state: any mix of the two gives python-xxhash's
    digest, at every step."""
    import xxhash

    assert speedups is not None
    data = np.random.default_rng(len(sizes)).integers(0, 256, sum(sizes), dtype=np.uint8)
    hasher, twin = speedups.Hasher(), xxhash.xxh3_128()
    at = 0
    for size in sizes:
        hasher.update(data[at : at + size])
        twin.update(data[at : at + size].tobytes())
        at += size
        assert hasher.digest() == twin.digest()
    assert hasher.digest() == xxhash.xxh3_128(data.tobytes()).digest()


@needs_speedups
def test_the_compiled_hasher_refuses_what_is_not_bytes() -> None:
    assert speedups is not None
    with pytest.raises(TypeError):
        speedups.Hasher().update("text")
    with pytest.raises((BufferError, ValueError)):
        speedups.Hasher().update(np.arange(10.0)[::2])  # not contiguous: not read
    with pytest.raises(TypeError):
        speedups.Hasher(b"seed")
    a = speedups.Hasher()
    b = a.copy()
    a.update(b"x")
    assert b.digest() != a.digest()  # copies are apart


def test_loading_does_not_import_python_xxhash() -> None:
    """With the compiled helpers, python-xxhash (~120 KiB of code mapped on first use) is
    not needed: a fresh process loads a model without importing it."""
    import subprocess
    import sys

    code = (
        "import sys, skjar; skjar.loads(skjar.dumps({'a': [1, 2.5]})); "
        "print('xxhash' in sys.modules, skjar._compiled.speedups is not None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, compiled = out.stdout.split()
    assert imported == ("False" if compiled == "True" else "True")


@needs_speedups
def test_the_compiled_hasher_refuses_a_second_thread_while_it_hashes() -> None:
    """A large update runs without the GIL; a call from another thread meanwhile would race
    on the hash state (its buffer index: a write past the buffer), so it raises instead."""
    import functools
    import threading

    assert speedups is not None
    data = np.ones(256 << 20, dtype=np.uint8)
    refused = 0
    for _ in range(5):
        hasher = speedups.Hasher()
        started = threading.Event()

        def hash_a_lot(h: Any = hasher, go: threading.Event = started) -> None:
            go.set()
            h.update(data)

        worker = threading.Thread(target=hash_a_lot)
        worker.start()
        started.wait()
        outcomes = []
        for call in (hasher.digest, hasher.copy, functools.partial(hasher.update, b"x")):
            try:
                call()
                outcomes.append("ran")
            except RuntimeError:
                outcomes.append("refused")
        worker.join()
        if outcomes == ["refused"] * 3:  # (not, when the worker had not begun or was done)
            import xxhash

            assert hasher.digest() == xxhash.xxh3_128(data).digest()  # the update was whole
            refused += 1
            break
    assert refused


# -- the column-map check (vocabularies, class maps) ------------------------------------
_COLUMN_VALUES = st.one_of(
    st.integers(-3, 12),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.integers(0, 12).map(np.int64),
    st.integers(0, 12).map(float),
    st.none(),
)


@needs_speedups
@settings(max_examples=500, deadline=None)
@given(st.integers(0, 12), st.lists(st.tuples(st.integers(0, 11), _COLUMN_VALUES), max_size=3),
       st.booleans())
def test_columns_ok_accepts_nothing_its_twin_refuses(
    n: int, damage: list[tuple[int, Any]], shuffle: bool
) -> None:
    """Honest maps (a permutation of 0..n-1) pass; with entries replaced, the compiled
    answer may be "look again" but never "fine" where the numpy twin refuses."""

    from skjar.codec.sklearn import _check_columns

    assert speedups is not None
    columns = list(range(n))
    if shuffle:
        columns.reverse()
    mapping: dict[str, Any] = {f"t{i}": c for i, c in enumerate(columns)}
    honest = not damage or n == 0
    for slot, value in damage:
        if n:
            mapping[f"t{slot % n}"] = value
    compiled = speedups.columns_ok(mapping)
    with mock.patch.object(_compiled, "speedups", None):
        try:
            _check_columns(mapping, "vocabulary_", "vectorizer")
            twin = "accepted"
        except CorruptFileError:
            twin = "refused"
    if compiled:
        assert twin == "accepted", (mapping, twin)
    if honest:
        assert compiled and twin == "accepted"


# -- meaning checks whose compiled twin runs first (CompiledCheck) ----------------------
@needs_speedups
def test_a_compiled_check_calls_its_python_check_only_when_the_twin_says_no() -> None:
    """check(args, state) runs getattr(compiled.speedups, name)(state, *extra), looked up on
    each call; the Python check runs when that answers anything but True, or when there
    are no compiled helpers, and an error in the twin is the caller's."""
    assert speedups is not None
    calls: list[Any] = []

    class Twins:  # stands for _compiled.speedups
        def __init__(self, answer: Any) -> None:
            self.answer = answer

        def twin(self, *got: Any) -> Any:
            calls.append(("twin", got))
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    class Compiled:  # stands for the _compiled module
        speedups: Any = Twins(True)

    def check(args: Any, state: Any) -> None:
        calls.append(("check", (args, state)))
        raise CorruptFileError("the Python check names the fault")

    checked = speedups.CompiledCheck(Compiled, "twin", (1, 2), check, False)
    assert checked((), {"a": 1}) is None
    assert calls == [("twin", ({"a": 1}, 1, 2))]
    for answer, expect in [
        (False, [("twin", ("s", 1, 2)), ("check", ((), "s"))]),
        (1, [("twin", ("s", 1, 2)), ("check", ((), "s"))]),  # truthy is not True
        (None, [("check", ((), "s"))]),  # no compiled helpers: the Python check alone
    ]:
        calls.clear()
        Compiled.speedups = Twins(answer) if answer is not None else None
        with pytest.raises(CorruptFileError, match="names the fault"):
            checked((), "s")
        assert calls == expect
    Compiled.speedups = Twins(ValueError("the twin's own error"))
    with pytest.raises(ValueError, match="own error"):
        checked((), "s")
    with pytest.raises(TypeError):
        checked("one argument")
    with pytest.raises(TypeError):
        checked((), "s", extra=1)
    for bad in [
        (Compiled, "twin", [1], check, False),  # extra: a tuple, or a callable giving one
        (Compiled, "twin", tuple(range(13)), check, False),  # of at most 12
        (Compiled, "twin", (), "not callable", False),
        (Compiled, b"twin", (), check, False),
        (Compiled, "twin", (), check),
    ]:
        with pytest.raises(TypeError):
            speedups.CompiledCheck(*bad)


@needs_speedups
def test_a_compiled_check_can_pass_args_and_resolve_its_extra_arguments_once() -> None:
    """``with_args``: the twin takes (args, state, *extra). ``extra`` given as a callable
    (what only scikit-learn's own modules define) is called on first use and kept; one
    that gives anything but a short tuple is an error, and is asked again next time."""
    assert speedups is not None
    calls: list[Any] = []
    resolved: list[int] = []

    class Twins:
        def twin(self, *got: Any) -> bool:
            calls.append(got)
            return True

    class Compiled:
        speedups = Twins()

    def extra() -> tuple[Any, ...]:
        resolved.append(1)
        return ("x", "y")

    def check(args: Any, state: Any) -> None:
        raise AssertionError("the twin said yes")

    checked = speedups.CompiledCheck(Compiled, "twin", extra, check, True)
    checked("args", "state")
    checked("args2", "state2")
    assert calls == [("args", "state", "x", "y"), ("args2", "state2", "x", "y")]
    assert resolved == [1]  # kept after the first call
    for wrong in (lambda: ["x"], lambda: tuple(range(13))):
        broken = speedups.CompiledCheck(Compiled, "twin", wrong, check, False)
        for _ in range(2):
            with pytest.raises(TypeError, match="extra arguments"):
                broken((), "s")


@needs_speedups
def test_the_registry_runs_these_checks_compiled_first() -> None:
    """Each meaning check registered with a twin is a CompiledCheck naming a compiled
    helper the loader requires, around the registered Python function."""
    from skjar.codec import sklearn as checks
    from skjar.codec.registry import VALIDATORS

    assert speedups is not None
    compiled = {
        name: (v.name, getattr(v.check, "func", v.check))  # (a partial's function)
        for name, v in VALIDATORS.items()
        if type(v) is speedups.CompiledCheck
    }
    assert set(compiled.values()) == {
        ("neighbors_state_ok", checks.check_neighbors),
        ("distance_metric_state_ok", checks.check_distance_metric),
        ("libsvm_state_ok", checks.check_libsvm),
        ("tree_state_ok", checks.check_tree),
        ("predictor_state_ok", checks.check_predictor),
        ("binary_tree_state_ok", checks.check_binary_tree),
    }
    assert {twin for twin, _ in compiled.values()} <= set(_compiled.HELPERS)
    kd = VALIDATORS["sklearn.neighbors._kd_tree.KDTree"]
    ball = VALIDATORS["sklearn.neighbors._ball_tree.BallTree"]
    assert (kd.check.keywords, ball.check.keywords) == ({"planes": 2}, {"planes": 1})
