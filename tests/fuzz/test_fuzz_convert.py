"""The converter's fuzzer, driven by hypothesis: a bounded, deterministic pass for CI.

Each example takes a seed pickle or joblib file (``fuzz/pickle_seeds.py``),
applies 1-4 edits of ``fuzz/pickle_mutator.py`` to its opcodes and reads it
with ``skjar.legacy.load_legacy``. The property (``fuzz/target.py:
check_convert``): the converter returns or raises a ``SkjarError``, takes no
foreign action, agrees between a path and a file object, and whatever it
returns either dumps to a jar that loads or is refused by ``dump`` with a
``SkjarError``. The open-ended search is ``python fuzz/run.py --target convert``.
"""

from __future__ import annotations

import io
import random
import warnings

import pickle_mutator
import pickle_seeds
import pytest
import target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skjar.legacy import load_legacy

SEEDS = pickle_seeds.cached_seeds()
NAMES = sorted(SEEDS)
DONORS = [s for s in (pickle_mutator.parse(SEEDS[n]) for n in NAMES) if s is not None]

CI_SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _mutant(name: str, rnd: int, edits: int) -> bytes:
    stream = pickle_mutator.parse(SEEDS[name])
    assert stream is not None
    return pickle_mutator.mutate_stream(stream, random.Random(rnd), DONORS, edits=edits)


@pytest.mark.parametrize("name", NAMES)
def test_reencoded_seeds_convert(name: str) -> None:
    """The mutator's encoder writes what pickle writes: an unedited seed converts after a
    round trip through its opcodes (else every mutant would test only the tokenizer)."""
    stream = pickle_mutator.parse(SEEDS[name])
    assert stream is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_legacy(io.BytesIO(pickle_mutator.encode(stream)))
    assert target.check_convert(pickle_mutator.encode(stream)) == "ok"


def test_mutants_reach_the_machine() -> None:
    """Most mutants are well-formed enough to be judged by the machine's semantics."""
    rng = random.Random(0)
    outcomes = [
        target.check_convert(_mutant(rng.choice(NAMES), rng.randrange(1 << 32), 1))
        for _ in range(200)
    ]
    tokenizer = sum("is not a pickle opcode" in o or "malformed pickle stream" in o
                    for o in outcomes)
    assert tokenizer < len(outcomes) * 0.2, tokenizer
    assert outcomes.count("ok") > 20


@CI_SETTINGS
@given(
    name=st.sampled_from(NAMES),
    rnd=st.integers(min_value=0, max_value=2**32 - 1),
    edits=st.integers(min_value=1, max_value=4),
)
def test_the_converter_only_raises_skjar_errors(name: str, rnd: int, edits: int) -> None:
    target.check_convert(_mutant(name, rnd, edits))  # raises target.Finding if broken


@settings(CI_SETTINGS, max_examples=150)
@given(name=st.sampled_from(NAMES), rnd=st.integers(min_value=0, max_value=2**32 - 1))
def test_byte_edits(name: str, rnd: int) -> None:
    target.check_convert(pickle_mutator.byte_mutate(SEEDS[name], random.Random(rnd)))


@settings(CI_SETTINGS, max_examples=100)
@given(
    name=st.sampled_from(NAMES),
    rnd=st.integers(min_value=0, max_value=2**32 - 1),
    edits=st.integers(min_value=1, max_value=4),
)
def test_memory_is_bounded_by_the_input(name: str, rnd: int, edits: int) -> None:
    data = _mutant(name, rnd, edits)
    peak = target.memory_peak(target.check_convert, data)
    assert peak <= target.MEMORY_SLACK + target.MEMORY_FACTOR * len(data), (peak, len(data))
