"""skjar.convert: legacy pickle/joblib files converted safely.

Two halves:

- every conformance model saved with pickle (protocols 2 and 5) and joblib
  (raw, compress=3, compress="lz4") converts, loads with skjar, and behaves
  exactly like the original;
- malicious pickles and joblib files are refused with ``UntrustedTypeError``
  (or another ``SkjarError``) *without running anything*: each payload would
  create a canary file, which must not exist afterwards, and a module with an
  import-time side effect must never be imported.
"""

from __future__ import annotations

import builtins
import copy
import functools
import gzip
import io
import os
import pickle
import subprocess
import sys
import warnings
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import skjar
from conformance.cases import Case, all_estimator_cases, composite_cases, silenced
from conformance.compare import assert_same_estimator, assert_same_outputs
from skjar.errors import CorruptFileError, InvalidArgumentError, SkjarError, UntrustedTypeError
from skjar.legacy import UnsafeLoadWarning, UnsupportedPickleError, convert, load_legacy

CASES: list[Case] = all_estimator_cases()[0] + composite_cases()


# -- writers -----------------------------------------------------------------
def _pickle(protocol: int) -> Callable[[Any, io.BytesIO], None]:
    return lambda obj, buf: pickle.dump(obj, buf, protocol=protocol)


def _joblib(**kwargs: Any) -> Callable[[Any, io.BytesIO], None]:
    return lambda obj, buf: joblib.dump(obj, buf, **kwargs)


WRITERS: dict[str, Callable[[Any, io.BytesIO], None]] = {
    "pickle-p5": _pickle(5),
    "pickle-p2": _pickle(2),
    "joblib-raw": _joblib(),
    "joblib-zlib3": _joblib(compress=3),
    "joblib-lz4": _joblib(compress="lz4"),
}


def _saved(obj: Any, writer: str) -> io.BytesIO:
    buf = io.BytesIO()
    WRITERS[writer](obj, buf)
    buf.seek(0)
    return buf


def _convert_and_load(src: Any, **kwargs: Any) -> Any:
    out = io.BytesIO()
    convert(src, out, **kwargs)
    return skjar.loads(out.getvalue())


# -- conformance -------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_conformance_model_converts(case: Case) -> None:
    """Each model, through every writer: convert -> skjar.load -> same model, same outputs."""
    est, X = case.make()
    failures = []
    for writer in WRITERS:
        try:
            restored = _convert_and_load(_saved(est, writer))
            with silenced():
                # joblib itself copies every array it meets (shared arrays come
                # back unshared from joblib.load too), so aliasing is not compared.
                assert_same_estimator(est, restored, check_aliasing=not writer.startswith("joblib"))
                assert_same_outputs(est, restored, X)
        except Exception as exc:  # collect every writer's outcome
            failures.append(f"{writer}: {type(exc).__name__}: {exc}"[:500])
    assert not failures, "\n".join(failures)


# -- other shapes of legacy input ----------------------------------------------
def _model() -> tuple[Any, np.ndarray]:
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 3
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_pickle_protocol(protocol: int) -> None:
    model, X = _model()
    restored = _convert_and_load(io.BytesIO(pickle.dumps(model, protocol=protocol)))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(
    "compress", [("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3), ("zlib", 9), ("lz4", 1)]
)
def test_every_joblib_compressor_from_a_path(compress: tuple[str, int], tmp_path: Path) -> None:
    model, X = _model()
    src, dst = tmp_path / "model.joblib", tmp_path / "model.skjar"
    joblib.dump(model, src, compress=compress)
    convert(src, dst, compress="zstd", metadata={"from": "joblib"})
    restored = skjar.load(dst)
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert skjar.inspect(dst).metadata == {"from": "joblib"}


def test_joblib_old_protocol_and_unaligned_arrays() -> None:
    model, X = _model()
    for protocol in (2, 3):
        buf = io.BytesIO()
        joblib.dump(model, buf, protocol=protocol)
        restored = _convert_and_load(io.BytesIO(buf.getvalue()))
        np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_values_of_many_kinds_round_trip() -> None:
    obj = {
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "complex": 1 + 2j,
        "slice": slice(1, None, 2),
        "range": range(2, 9, 3),
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"ab"),
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
        "default": defaultdict(list, {"x": [1]}),
        "partial": functools.partial(max, 3),
        "big": 1 << 100,
        "f32": np.float32(1.5),
        "dt": np.datetime64("2021-02-03"),
        "str_arr": np.array(["a", "bc"]),
        "obj_arr": np.array(["a", None, 3], dtype=object),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "struct": np.zeros(2, dtype=[("x", "<f4"), ("y", "u1", (2,))]),
        "big_endian": np.arange(3, dtype=">i4"),
        "masked": np.ma.MaskedArray([1.0, 2.0], mask=[True, False]),
        "rs": np.random.RandomState(3),
        "gen": np.random.default_rng(4),
        "ellipsis": ...,
        "object_fields": np.dtype([("a", "<u4"), ("b", "O")]),  # a dtype: not an array of it
    }
    for protocol in (0, 2, 5):
        got = load_legacy(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
        for key in ("set", "frozenset", "complex", "slice", "range", "bytes", "big", "f32"):
            assert got[key] == obj[key] and type(got[key]) is type(obj[key]), key
        assert got["ellipsis"] is Ellipsis
        assert got["object_fields"] == obj["object_fields"]
        assert got["ordered"] == obj["ordered"] and list(got["ordered"]) == ["b", "a"]
        assert got["default"]["x"] == [1] and got["default"].default_factory is list
        assert got["partial"](1) == 3
        via_pickle = pickle.loads(pickle.dumps(obj, protocol=protocol))
        for key in ("str_arr", "obj_arr", "fortran", "struct", "big_endian"):
            np.testing.assert_array_equal(got[key], obj[key])
            assert got[key].dtype.str == via_pickle[key].dtype.str, key  # (native before p5)
        assert got["fortran"].flags.f_contiguous
        assert got["masked"].mask.tolist() == [True, False]
        assert got["rs"].randint(1000) == np.random.RandomState(3).randint(1000)
        assert got["gen"].integers(1000) == np.random.default_rng(4).integers(1000)
        # The seed sequences are kept where the pickle keeps them (numpy 2): none for the
        # legacy-seeded RandomState, the generator's own, so spawn() is the original's.
        for key, bitgen in (("rs", "_bit_generator"), ("gen", "bit_generator")):
            a = getattr(via_pickle[key], bitgen).seed_seq
            b = getattr(got[key], bitgen).seed_seq
            assert (a is None) is (b is None), key
            if a is not None:
                assert (a.entropy, a.spawn_key, a.n_children_spawned) == (
                    b.entropy, b.spawn_key, b.n_children_spawned), key
        assert [g.integers(10**9) for g in got["gen"].spawn(2)] == [
            g.integers(10**9) for g in via_pickle["gen"].spawn(2)]


class _BitGeneratorWith:
    """Pickles as an MT19937 whose state carries ``seed_seq`` (numpy 2's pair form)."""

    def __init__(self, seed_seq: Any) -> None:
        self.seed_seq = seed_seq

    def __reduce__(self) -> Any:
        import numpy.random._pickle as numpy_pickle

        ctor = getattr(numpy_pickle, "__bit_generator_ctor")  # (a class would mangle it)
        return ctor, (np.random.MT19937,), (np.random.MT19937(1).state, self.seed_seq)


@pytest.mark.parametrize("seed_seq", [5, "entropy", [1, 2], np.random.PCG64(1)])
def test_a_bit_generators_seed_sequence_must_be_one(seed_seq: Any) -> None:
    """Only None or a SeedSequence (built by the converter's own checked handler) is
    handed to numpy's __setstate__ with the state."""
    with pytest.raises(CorruptFileError, match="must be a SeedSequence"):
        load_legacy(io.BytesIO(pickle.dumps(_BitGeneratorWith(seed_seq))))
    kept = load_legacy(io.BytesIO(pickle.dumps(_BitGeneratorWith(None))))
    assert type(kept) is np.random.MT19937 and kept.seed_seq is None


class _Reduces:
    """Pickles as whatever ``__reduce__`` result it is given (a crafted file, by pickle)."""

    def __init__(self, *reduced: Any) -> None:
        self.reduced = reduced

    def __reduce__(self) -> Any:
        return self.reduced


def _bad_position(state: dict[str, Any], pos: Any) -> dict[str, Any]:
    state = copy.deepcopy(state)
    state["state"]["pos"] = pos
    return state


@pytest.mark.parametrize("pos", [625, 2**31 - 1, -1, 10**7, 3.0])
def test_a_generator_position_out_of_its_key_is_refused(pos: Any) -> None:
    """numpy's state setters store MT19937's position unchecked and its C code indexes the
    624-word key with it (skjar's loader checks it): the converter checks it too, in
    every way a pickle sets a state. Found by fuzzing the converter."""
    import numpy.random._pickle as numpy_pickle

    bitgen_ctor = getattr(numpy_pickle, "__bit_generator_ctor")
    rs_ctor = getattr(numpy_pickle, "__randomstate_ctor")
    gen_ctor = getattr(numpy_pickle, "__generator_ctor")
    good = np.random.MT19937(1).state
    bad = _bad_position(good, pos)
    legacy = ("MT19937", good["state"]["key"], pos, 0, 0.0)
    crafted = [
        _Reduces(bitgen_ctor, (np.random.MT19937,), bad),
        _Reduces(bitgen_ctor, (np.random.MT19937,), (bad, None)),
        _Reduces(gen_ctor, ("MT19937",), bad),
        _Reduces(rs_ctor, ("MT19937",), {**bad, "has_gauss": 0, "gauss": 0.0}),
        _Reduces(rs_ctor, ("MT19937",), legacy),
    ]
    for obj in crafted:
        with pytest.raises(CorruptFileError, match="position"):
            load_legacy(io.BytesIO(pickle.dumps(obj, protocol=4)))
    for obj in (np.random.RandomState(3), np.random.Generator(np.random.MT19937(3))):
        restored = load_legacy(io.BytesIO(pickle.dumps(obj)))  # the real ones still convert
        assert restored.random() == pickle.loads(pickle.dumps(obj)).random()


@pytest.mark.parametrize(
    ("entropy", "pool_size", "spawn_key"),
    [((1 << 2**21) - 1, 4, ()), (1, 1 << 16, ()), (1, 4, (1 << 40000,) * 64), (-1, 4, ())],
    ids=["two-million-bit-entropy", "pool-of-65536", "huge-spawn-key", "negative"],
)
def test_a_seed_sequence_numpy_would_take_minutes_over_is_refused(
    entropy: int, pool_size: int, spawn_key: tuple[int, ...]
) -> None:
    """The loader's bounds: numpy splits entropy ints and mixes the pool in quadratic time
    (a 2**21-bit entropy took 39 s, a 65,536-word pool longer; found by fuzzing the
    converter). Refused at once."""
    import numpy.random.bit_generator as bit_generator

    helper = getattr(bit_generator, "__pyx_unpickle_SeedSequence")
    state = (entropy, 0, np.zeros(pool_size, np.uint32), pool_size, spawn_key)
    reduced = _Reduces(helper, (np.random.SeedSequence, 0, state))
    with pytest.raises(CorruptFileError, match="SeedSequence"):
        load_legacy(io.BytesIO(pickle.dumps(reduced)))


@pytest.mark.parametrize("has_gauss", [8, -(2**31), 2, True, 1.0, np.array([1, 2])])
def test_a_random_state_flag_out_of_range_is_refused(has_gauss: Any) -> None:
    """numpy stores has_gauss as any int; skjar's loader takes 0 or 1, so the converter
    does too (it wrote a jar its loader refused; found by fuzzing the converter)."""
    import numpy.random._pickle as numpy_pickle

    rs_ctor = getattr(numpy_pickle, "__randomstate_ctor")
    state = np.random.RandomState(1).get_state(legacy=False)
    legacy = np.random.RandomState(1).get_state()
    for st in ({**state, "has_gauss": has_gauss}, (*legacy[:3], has_gauss, 0.0)):
        with pytest.raises(CorruptFileError, match="has_gauss"):
            load_legacy(io.BytesIO(pickle.dumps(_Reduces(rs_ctor, ("MT19937",), st))))
    rs = np.random.RandomState(1)
    rs.standard_normal()  # leaves has_gauss 1: still converts
    assert load_legacy(io.BytesIO(pickle.dumps(rs))).standard_normal() == rs.standard_normal()


@pytest.mark.parametrize(
    "cls_name",
    ["scipy.interpolate._bsplines.BSpline", "sklearn.neighbors._kd_tree.KDTree"],
)
def test_an_instance_never_given_its_state_is_still_checked(cls_name: str) -> None:
    """NEWOBJ without a BUILD: the class's meaning check runs on no state, and refuses it,
    rather than an empty spline or tree being handed over. Found by fuzzing the converter."""
    module, _, name = cls_name.rpartition(".")
    stream = b"\x80\x04c" + f"{module}\n{name}\n".encode() + b")\x81."  # GLOBAL, NEWOBJ
    with pytest.raises(CorruptFileError):
        load_legacy(io.BytesIO(stream))


def test_files_from_older_library_versions() -> None:
    """numpy 1.x module names, scikit-learn's vendored joblib, arrays without padding."""
    model, X = _model()
    old = pickle.dumps(model, protocol=2).replace(b"cnumpy._core.", b"cnumpy.core.")
    assert b"cnumpy.core.multiarray\n_reconstruct" in old
    restored = load_legacy(io.BytesIO(old))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))

    data = _joblib_bytes({"w": np.arange(4.0)}, protocol=2)
    assert b"cjoblib.numpy_pickle\nNumpyArrayWrapper" in data
    data = data.replace(b"cjoblib.numpy_pickle\n", b"csklearn.externals.joblib.numpy_pickle\n")
    assert load_legacy(io.BytesIO(data))["w"].tolist() == [0.0, 1.0, 2.0, 3.0]

    # scikit-learn 1.7 pickles its Cython losses under their module's short name
    from sklearn.ensemble import HistGradientBoostingClassifier

    hgb = HistGradientBoostingClassifier(max_iter=3).fit(X, model.predict(X))
    old = pickle.dumps(hgb, protocol=2).replace(b"csklearn._loss._loss\n", b"c_loss\n")
    assert b"c_loss\n__pyx_unpickle_CyHalf" in old
    restored = load_legacy(io.BytesIO(old))
    assert type(restored._loss.closs) is type(hgb._loss.closs)
    np.testing.assert_array_equal(restored.predict(X), hgb.predict(X))

    class Unseekable(io.BytesIO):  # joblib <= 1.1 and unseekable outputs: no padding byte
        def tell(self) -> int:
            raise io.UnsupportedOperation("tell")

    out = Unseekable()
    joblib.dump({"w": np.arange(4.0)}, out)
    assert b"numpy_array_alignment_bytes\x94N" in out.getvalue()
    assert load_legacy(io.BytesIO(out.getvalue()))["w"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_joblib_memmapped_arrays_convert(tmp_path: Path) -> None:
    path = tmp_path / "arr.joblib"
    joblib.dump({"w": np.arange(5.0)}, path)
    mapped = joblib.load(path, mmap_mode="r")  # np.memmap instances
    again = tmp_path / "again.joblib"
    joblib.dump(mapped, again)
    got = load_legacy(again)
    assert type(got["w"]) is np.ndarray and got["w"].tolist() == [0, 1, 2, 3, 4]


def test_old_joblib_sidecar_files(tmp_path: Path) -> None:
    """joblib < 0.10: NDArrayWrapper (.npy sidecar) and ZNDArrayWrapper in a ZF file."""
    from joblib.numpy_pickle_compat import NDArrayWrapper, ZNDArrayWrapper, write_zfile

    arr = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "model.pkl_01.npy", arr, allow_pickle=False)
    main = tmp_path / "model.pkl"
    main.write_bytes(pickle.dumps({"a": NDArrayWrapper("model.pkl_01.npy", np.ndarray)}, 2))
    got = load_legacy(main)
    np.testing.assert_array_equal(got["a"], arr)
    np.testing.assert_array_equal(joblib.load(main)["a"], arr)  # what joblib does

    init_args, state = arr.__reduce__()[1], arr.__reduce__()[2][:-1]
    with open(tmp_path / "model.pkl_02.z", "wb") as f:
        write_zfile(f, arr.tobytes())
    wrapper = ZNDArrayWrapper("model.pkl_02.z", init_args, state)
    compressed = tmp_path / "compressed.pkl"
    with open(compressed, "wb") as f:
        write_zfile(f, pickle.dumps({"b": wrapper}, 2))
    np.testing.assert_array_equal(load_legacy(compressed)["b"], arr)

    escape = tmp_path / "escape.pkl"
    escape.write_bytes(pickle.dumps(NDArrayWrapper("../model.pkl_01.npy", np.ndarray), 2))
    with pytest.raises(CorruptFileError, match="plain name"):
        load_legacy(escape)
    with pytest.raises(UnsupportedPickleError, match="from its path"):
        load_legacy(io.BytesIO(main.read_bytes()))


def test_trusted_extends_what_converts(tmp_path: Path) -> None:
    data = pickle.dumps({"f": os.path.join}, protocol=4)
    with pytest.raises(UntrustedTypeError) as info:
        load_legacy(io.BytesIO(data))
    assert info.value.names == [f"{os.path.join.__module__}.join"]
    got = load_legacy(io.BytesIO(data), trusted=[os.path.join])
    assert got["f"] is os.path.join


def test_unsafe_unpickles_after_a_loud_warning(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"f": os.path.join}))
    with pytest.warns(UnsafeLoadWarning, match="RUNS WHATEVER CODE"):
        got = load_legacy(path, unsafe=True)
    assert got["f"] is os.path.join
    assert issubclass(UnsafeLoadWarning, skjar.SkjarWarning)


def test_unsupported_and_malformed_inputs(tmp_path: Path) -> None:
    model, _ = _model()
    jar = io.BytesIO(skjar.dumps(model))
    with pytest.raises(InvalidArgumentError, match="already a skjar file"):
        load_legacy(jar)
    with pytest.raises(CorruptFileError, match="empty"):
        load_legacy(io.BytesIO(b""))
    with pytest.raises(CorruptFileError, match="not a pickle opcode"):
        load_legacy(io.BytesIO(b"\x80\x05\xffgarbage"))
    data = pickle.dumps(model, protocol=5)
    with pytest.raises(CorruptFileError, match="truncated"):
        load_legacy(io.BytesIO(data[: len(data) // 2]))
    # a length field far larger than the file: refused before allocating
    with pytest.raises(CorruptFileError, match=r"only \d+ remain"):
        load_legacy(io.BytesIO(b"\x80\x05\x8e" + (1 << 60).to_bytes(8, "little") + b"x"))
    buffers: list[Any] = []
    oob = pickle.dumps(np.arange(3), protocol=5, buffer_callback=buffers.append)
    with pytest.raises(UnsupportedPickleError, match="out-of-band"):
        load_legacy(io.BytesIO(oob))
    with pytest.raises(UnsupportedPickleError, match="persistent"):
        load_legacy(io.BytesIO(b"\x80\x02K\x01Q."))
    with pytest.raises(CorruptFileError, match="truncated"):
        load_legacy(io.BytesIO(gzip.compress(data)[:-20]))
    with pytest.raises(InvalidArgumentError, match="directory"):
        load_legacy(tmp_path)


def test_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import bz2

    from skjar.legacy import source

    monkeypatch.setattr(source, "SLACK", 0)
    payload = pickle.dumps(b"\x00" * (1 << 24), protocol=5)
    with pytest.raises(CorruptFileError, match="decompression bomb"):
        load_legacy(io.BytesIO(bz2.compress(payload)))


def test_joblib_array_larger_than_the_file_is_refused() -> None:
    buf = io.BytesIO()
    joblib.dump(np.zeros(4), buf)
    data = buf.getvalue()
    # shape (4,) -> (4**10,): the array header now declares ~8 MB the file lacks
    i = data.index(b"K\x04\x85")
    crafted = data[:i] + b"J" + (4**10).to_bytes(4, "little") + data[i + 2 :]
    with pytest.raises(CorruptFileError, match="remain in the file"):
        load_legacy(io.BytesIO(crafted))


def test_meaning_checks_run_before_state_is_handed_over() -> None:
    from sklearn.tree._tree import Tree

    tree = DecisionTreeClassifier(max_depth=2).fit([[0.0], [1.0], [2.0]], [0, 1, 1]).tree_
    _, args, state = tree.__reduce__()
    state = dict(state)
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 10_000  # points far outside the node array
    state["nodes"] = nodes

    class Evil:
        def __reduce__(self) -> Any:
            return (Tree, args, state)

    with pytest.raises(CorruptFileError, match="left child"):
        load_legacy(io.BytesIO(pickle.dumps(Evil(), protocol=5)))


# -- malicious files -----------------------------------------------------------
class Payload:
    """Pickles as ``func(*args)``: what an attacker's __reduce__ returns."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> Any:
        return (self.func, self.args)


def _touch(canary: Path) -> str:
    return f"touch {canary}"


def _cases(canary: Path) -> dict[str, tuple[bytes, set[str]]]:
    """name -> (pickle bytes, names that must be reported)."""
    c = str(canary)
    sh = _touch(canary)
    system = f"{os.system.__module__}.system"
    inner = pickle.dumps(Payload(os.system, sh))
    model = LogisticRegression()
    model.hook = os.system  # a hostile global deep in a trusted class's state

    def crafted(*parts: bytes) -> bytes:
        return b"".join(parts)

    def sg(module: str, name: str) -> bytes:  # STACK_GLOBAL
        return (
            b"\x8c" + bytes([len(module)]) + module.encode()
            + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93"
        )  # fmt: skip

    def s(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode()

    return {
        "os.system": (pickle.dumps(Payload(os.system, sh)), {system}),
        "subprocess.Popen": (
            pickle.dumps(Payload(subprocess.Popen, ["touch", c])),
            {"subprocess.Popen"},
        ),
        "eval": (pickle.dumps(Payload(eval, f"open({c!r}, 'w')")), {"builtins.eval"}),
        "exec": (pickle.dumps(Payload(exec, f"open({c!r}, 'w')")), {"builtins.exec"}),
        "open": (pickle.dumps(Payload(builtins.open, c, "w")), {f"{open.__module__}.open"}),
        "__import__+getattr": (
            crafted(
                b"\x80\x04",
                sg("builtins", "getattr"),
                sg("builtins", "__import__"),
                s("os"),
                b"\x85R",
                s("system"),
                b"\x86R",
                s(sh),
                b"\x85R.",
            ),
            {"builtins.getattr", "builtins.__import__"},
        ),
        "nested pickle.loads": (pickle.dumps(Payload(pickle.loads, inner)), {"_pickle.loads"}),
        "hostile global in trusted state": (pickle.dumps(model), {system}),
        "INST": (
            f"(S'{sh}'\nios\nsystem\n.".encode(),
            {"os.system"},
        ),
        "OBJ": (
            f"(cos\nsystem\nS'{sh}'\no.".encode(),
            {"os.system"},
        ),
        "copyreg._reconstructor with a hostile class": (
            crafted(
                b"\x80\x02",
                b"ccopyreg\n_reconstructor\n",
                b"cos\nsystem\ncbuiltins\nobject\nN\x87R.",
            ),
            {"os.system"},
        ),
        "numpy _reconstruct with a hostile class": (
            crafted(
                b"\x80\x04",
                sg("numpy._core.multiarray", "_reconstruct"),
                sg("subprocess", "Popen"),
                b"K\x00\x85C\x01b\x87R.",
            ),
            {"subprocess.Popen"},
        ),
        "partial of os.system": (
            pickle.dumps(functools.partial(os.system, sh)),
            {system},
        ),
        "defaultdict with a hostile factory": (
            pickle.dumps(defaultdict(os.getcwd)),
            {f"{os.getcwd.__module__}.getcwd"},
        ),
        "Cython helper of an untrusted class": (
            crafted(
                b"\x80\x04",
                sg("os", "__pyx_unpickle_system"),
                sg("os", "system"),
                b"K\x00N\x87R.",
            ),
            {"os.__pyx_unpickle_system", "os.system"},
        ),
        "sklearn newObj of an untrusted class": (
            crafted(
                b"\x80\x04",
                sg("sklearn.neighbors._kd_tree", "newObj"),
                sg("subprocess", "Popen"),
                b"\x85R.",
            ),
            {"subprocess.Popen"},
        ),
        "look-alike qualname": (
            crafted(b"\x80\x04", sg("sklearn.pipeline", "Pipeline.__init__.__globals__"), b"."),
            {"sklearn.pipeline.Pipeline.__init__.__globals__"},
        ),
        "look-alike module": (
            crafted(b"\x80\x04", sg("sklearn_evil", "LogisticRegression"), b")\x81."),
            {"sklearn_evil.LogisticRegression"},
        ),
        "trusted value called as a reconstructor": (
            crafted(b"\x80\x04", sg("numpy", "log1p"), b"K\x01\x85R."),
            {"numpy.log1p"},
        ),
    }


@pytest.mark.parametrize("name", list(_cases(Path("x"))))
def test_malicious_pickle_is_refused_without_running(name: str, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    data, expected = _cases(canary)[name]
    for src in (io.BytesIO(data), io.BytesIO(gzip.compress(data))):
        with pytest.raises(UntrustedTypeError) as info:
            convert(src, tmp_path / "out.skjar")
        assert expected <= set(info.value.names), info.value.names
    assert not canary.exists()
    assert not (tmp_path / "out.skjar").exists()


@pytest.mark.parametrize(
    ("stream", "called"),
    [
        (b"\x80\x04])R.", "a list"),
        (b"\x80\x04\x8c\x02rm)R.", "a str"),
        (b"\x80\x04\x8c\x05numpy\x94\x8c\x05dtype\x93\x8c\x02f8\x85R)R.", "numpy dtype"),
    ],
)
def test_reduce_of_something_the_file_built_is_refused(stream: bytes, called: str) -> None:
    """Only a name may be called. Calling a value is no trust question (nothing to pass in
    ``trusted=`` would allow it), so the file is called damaged, naming what it calls."""
    with pytest.raises(CorruptFileError, match=f"REDUCE calls {called}"):
        load_legacy(io.BytesIO(stream))


def test_every_untrusted_name_is_reported_at_once(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    payload = [
        Payload(os.system, _touch(canary)),
        Payload(subprocess.Popen, ["touch", str(canary)]),
        Payload(eval, "1"),
        np.arange(3),  # a legitimate array in between
        Payload(builtins.open, str(canary), "w"),
    ]
    for writer in ("pickle-p2", "pickle-p5", "joblib-raw", "joblib-zlib3"):
        with pytest.raises(UntrustedTypeError) as info:
            load_legacy(_saved(payload, writer))
        assert set(info.value.names) == {
            f"{os.system.__module__}.system",
            "subprocess.Popen",
            "builtins.eval",
            f"{open.__module__}.open",
        }, writer
    assert not canary.exists()


def _build_on(module: str, qualname: str, state_key: str) -> bytes:
    """GLOBAL module.qualname, then BUILD {state_key: numpy.log1p} on it."""
    return (
        b"\x80\x02c" + module.encode() + b"\n" + qualname.encode() + b"\n"
        + b"}X" + len(state_key).to_bytes(4, "little") + state_key.encode()
        + b"cnumpy\nlog1p\nsb."
    )  # fmt: skip


def test_build_on_a_class_is_refused_and_patches_nothing() -> None:
    before = LogisticRegression.__dict__.get("predict")
    data = _build_on("sklearn.linear_model._logistic", "LogisticRegression", "predict")
    with pytest.raises(UntrustedTypeError) as info:
        load_legacy(io.BytesIO(data))
    assert info.value.names == ["sklearn.linear_model._logistic.LogisticRegression"]
    assert LogisticRegression.__dict__.get("predict") is before


def test_build_on_a_function_is_refused() -> None:
    data = _build_on("sklearn.utils.validation", "check_array", "__doc__")
    from sklearn.utils.validation import check_array

    doc = check_array.__doc__
    with pytest.raises(UntrustedTypeError) as info:
        load_legacy(io.BytesIO(data))
    assert info.value.names == ["sklearn.utils.validation.check_array"]
    assert check_array.__doc__ == doc


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_fortran_object_array_keeps_its_items_in_place(protocol: int) -> None:
    """numpy lists an object array's items in C order whatever its layout; read as F
    order they landed in the wrong cells (a silently different model)."""
    array = np.asfortranarray(np.array([[None, "a", 1], [2.5, (3,), None]], dtype=object))
    data = pickle.dumps(array, protocol=protocol)
    got = load_legacy(io.BytesIO(data))
    assert got.tolist() == pickle.loads(data).tolist() == array.tolist()
    assert got.flags.f_contiguous


@pytest.mark.parametrize("dtype", [">i2", ">f8", ">U3", ">M8[D]", "<i2", ">c16"])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_byte_order_is_what_pickle_gives(dtype: str, protocol: int) -> None:
    """Before protocol 5, numpy's __setstate__ swaps a non-native array to native order;
    protocol 5 keeps it. The converter gives what pickle gives, values and dtype."""
    array = np.asfortranarray(np.arange(6).astype(dtype).reshape(2, 3))
    data = pickle.dumps(array, protocol=protocol)
    expected, got = pickle.loads(data), load_legacy(io.BytesIO(data))
    assert got.dtype.str == expected.dtype.str and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, array)
    assert got.flags.f_contiguous


def test_joblib_keeps_the_layout_of_a_swapped_record_array() -> None:
    """joblib.load swaps a big-endian record array to native and keeps its layout."""
    array = np.asfortranarray(np.zeros((2, 3), dtype=[("a", ">i4"), ("b", ">f8")]))
    array["a"] = np.arange(6).reshape(2, 3)
    buf = io.BytesIO()
    joblib.dump(array, buf)
    expected = joblib.load(io.BytesIO(buf.getvalue()))
    got = load_legacy(io.BytesIO(buf.getvalue()))
    assert got.dtype == expected.dtype and got.flags.f_contiguous == expected.flags.f_contiguous
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize("protocol", [2, 5])
def test_an_array_with_object_fields_is_refused(protocol: int) -> None:
    """Its object fields would be pointers made from the file's bytes: never built."""
    array = np.zeros(2, dtype=[("a", "<u4"), ("b", "O")])
    with pytest.raises(UnsupportedPickleError, match="object fields"):
        load_legacy(io.BytesIO(pickle.dumps(array, protocol=protocol)))


@pytest.mark.parametrize(
    "stream",
    [
        b"\x80\x02c__builtin__\nEllipsis\n)R.",  # called
        b"\x80\x02c__builtin__\nEllipsis\n)\x81.",  # NEWOBJ on it
        b"\x80\x02c__builtin__\nEllipsis\n}b.",  # BUILD on it
    ],
)
def test_a_constant_is_only_a_value(stream: bytes) -> None:
    """Ellipsis converts as a value; called, instantiated or built on, it is refused."""
    with pytest.raises(UntrustedTypeError, match=r"builtins\.Ellipsis"):
        load_legacy(io.BytesIO(stream))


def test_build_on_a_container_or_twice_is_refused() -> None:
    with pytest.raises(CorruptFileError, match="not an instance created by this file"):
        load_legacy(io.BytesIO(b"\x80\x02]}b."))
    est = pickle.dumps(StandardScaler())
    twice = est[:-1] + b"}b."  # a second BUILD on the same instance
    with pytest.raises(CorruptFileError, match="twice"):
        load_legacy(io.BytesIO(twice))


def test_module_with_import_side_effect_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "canary"
    modname = "skjar_test_side_effect_mod"
    (tmp_path / f"{modname}.py").write_text(
        f"open({str(canary)!r}, 'w').close()\nclass Thing:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for data in (
        f"c{modname}\nThing\n.".encode(),
        b"\x80\x04\x8c" + bytes([len(modname)]) + modname.encode() + b"\x8c\x05Thing\x93)\x81.",
    ):
        with pytest.raises(UntrustedTypeError) as info:
            convert(io.BytesIO(data), tmp_path / "out.skjar")
        assert info.value.names == [f"{modname}.Thing"]
    assert modname not in sys.modules
    assert not canary.exists()


# -- malicious joblib files --------------------------------------------------------
def _joblib_bytes(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("compress", [0, 3, "lz4", ("xz", 1)])
def test_malicious_joblib_is_refused(compress: Any, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    system = f"{os.system.__module__}.system"
    hostile = Payload(os.system, _touch(canary))
    obj_array = np.empty(2, dtype=object)
    obj_array[0], obj_array[1] = "fine", hostile  # inside joblib's nested object-array pickle
    for obj in (
        hostile,
        {"weights": np.arange(10.0), "then": hostile},  # after raw array bytes
        {"objects": obj_array},
    ):
        with pytest.raises(UntrustedTypeError) as info:
            convert(io.BytesIO(_joblib_bytes(obj, compress=compress)), tmp_path / "o.skjar")
        assert system in info.value.names
    assert not canary.exists()


def test_joblib_wrapper_with_a_hostile_array_class(tmp_path: Path) -> None:
    data = _joblib_bytes({"w": np.arange(3.0)})
    needle = b"\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93"
    assert needle in data
    crafted = data.replace(needle, b"\x8c\x02os\x94\x8c\x06system\x94\x93")
    with pytest.raises(UntrustedTypeError) as info:
        load_legacy(io.BytesIO(crafted))
    assert "os.system" in info.value.names


def test_errors_are_skjar_errors() -> None:
    for cls in (UntrustedTypeError, CorruptFileError, UnsupportedPickleError):
        assert issubclass(cls, SkjarError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_legacy(io.BytesIO(pickle.dumps([1])))  # the safe path never warns
