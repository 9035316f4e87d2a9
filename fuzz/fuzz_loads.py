"""Coverage-guided fuzz target for ``skjar.loads`` (atheris / libFuzzer).

    python fuzz/fuzz_loads.py [libFuzzer flags] CORPUS_DIR [SEED_DIR ...]

``fuzz/run.py`` is the usual way in (seeds, flags, findings, stats). The
target instruments skjar's own modules only; the property is
``fuzz/target.py: check`` (only ``SkjarError`` escapes, no foreign action,
bounded memory; hangs are libFuzzer's ``-timeout``). Mutation is mostly
structure-aware (``fuzz/mutator.py``: edit the decoded header/tree/buffers,
re-encode with valid digests), with libFuzzer's own byte mutation as the
fallback, and as a raw edit inside sections whose digests are then repaired.

Environment: ``SKJAR_FUZZ_EXERCISE=0`` skips using loaded models (faster);
``SKJAR_FUZZ_SEEDS`` is the seed directory used as crossover donors.
"""

from __future__ import annotations

import os
import sys

# Before numpy is imported: one BLAS thread (small inputs; steadier exec/s).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.pop("SKJAR_VERIFY_KEYS", None)  # signatures are not required while fuzzing

import atheris  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import importlib  # noqa: E402
import random  # noqa: E402

# Instrument every skjar module (they must be imported here, before anything
# else imports them uninstrumented).
SKJAR_MODULES = (
    "skjar", "skjar.api", "skjar.trust", "skjar.metadata", "skjar.signing", "skjar.errors",
    "skjar.codec", "skjar.codec.builtins", "skjar.codec.decoder", "skjar.codec.numpy",
    "skjar.codec.objects", "skjar.codec.registry", "skjar.codec.scipy", "skjar.codec.sklearn",
    "skjar.format.compression", "skjar.format.header", "skjar.format.reader",
    "skjar.format.digest",
)
with atheris.instrument_imports(include=["skjar"]):
    for _name in SKJAR_MODULES:
        importlib.import_module(_name)

import mutator  # noqa: E402
import target  # noqa: E402

EXERCISE = os.environ.get("SKJAR_FUZZ_EXERCISE", "1") != "0"
DONORS: list[mutator.Jar] = []


def _load_donors() -> None:
    seed_dir = os.environ.get("SKJAR_FUZZ_SEEDS", os.path.join(HERE, "corpus", "seeds"))
    if not os.path.isdir(seed_dir):
        return
    for name in sorted(os.listdir(seed_dir)):
        with open(os.path.join(seed_dir, name), "rb") as f:
            data = f.read()
        jar = mutator.parse(data)
        if jar is not None:
            DONORS.append(jar)
        try:  # warm up: lazy imports happen now, not inside the first inputs
            target.check(data, exercise=EXERCISE)
        except target.Finding:
            pass


# Triage aid: write every input here before running it, so an input that kills
# the process in a way libFuzzer cannot report (a C stack overflow) is kept.
CURRENT = os.environ.get("SKJAR_FUZZ_CURRENT")


def TestOneInput(data: bytes) -> None:
    if CURRENT:
        with open(CURRENT, "wb") as f:
            f.write(data)
    target.check(data, exercise=EXERCISE)


def CustomMutator(data: bytes, max_size: int, seed: int) -> bytes:
    return mutator.mutate(data, random.Random(seed), raw=atheris.Mutate, donors=DONORS,
                          max_size=max_size)


def CustomCrossover(data1: bytes, data2: bytes, max_out_size: int, seed: int) -> bytes:
    return mutator.crossover(data1, data2, random.Random(seed), max_out_size)


def main() -> None:
    target.preimport_trusted()
    _load_donors()
    target.limit_memory(int(os.environ.get("SKJAR_FUZZ_AS_MB", "3072")))
    mutator.trusted_pool()
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=CustomMutator,
                  custom_crossover=CustomCrossover)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
