"""The structure-aware fuzzer, driven by hypothesis: a bounded, deterministic pass for CI.

Each example takes a seed jar (``fuzz/seeds.py``), applies 1-4 edits of
``fuzz/mutator.py`` to its decoded header, tree and buffers, re-encodes it with
valid digests and loads it. The property (``fuzz/target.py: check``): ``loads``
returns or raises a ``SkjarError``, and takes no foreign action. A second
property bounds the memory a load may allocate by the size of its input.
The coverage-guided version of the same search is ``python fuzz/run.py``.
"""

from __future__ import annotations

import random
import warnings

import mutator
import pytest
import seeds
import target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skjar

SEEDS = seeds.cached_seeds()
NAMES = sorted(SEEDS)
DONORS = [j for j in (mutator.parse(SEEDS[n]) for n in NAMES) if j is not None]

CI_SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _mutant(name: str, rnd: int, edits: int) -> bytes:
    jar = mutator.parse(SEEDS[name])
    assert jar is not None
    data, _ = mutator.mutate_jar(jar, random.Random(rnd), donors=DONORS, edits=edits)
    return data


@pytest.mark.parametrize("name", NAMES)
def test_reencoded_seeds_load(name: str) -> None:
    """The mutator's encoder still writes the format: an unedited seed loads after a round trip.

    If this fails, the format changed under fuzz/mutator.py, and every mutant
    would be refused by the integrity check: the fuzzer would test nothing.
    """
    jar = mutator.parse(SEEDS[name])
    assert jar is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skjar.loads(mutator.encode(jar))


def test_mutants_reach_the_decoder() -> None:
    """Most mutants pass the integrity check (else the structured mutator is not working)."""
    rng = random.Random(0)
    outcomes = [
        target.check(_mutant(rng.choice(NAMES), rng.randrange(1 << 32), 1)) for _ in range(150)
    ]
    damaged = sum("integrity check failed" in o for o in outcomes)
    assert damaged < len(outcomes) * 0.1, damaged
    assert outcomes.count("ok") > 5


@CI_SETTINGS
@given(
    name=st.sampled_from(NAMES),
    rnd=st.integers(min_value=0, max_value=2**32 - 1),
    edits=st.integers(min_value=1, max_value=4),
)
def test_loads_only_raises_skjar_errors(name: str, rnd: int, edits: int) -> None:
    data = _mutant(name, rnd, edits)
    target.check(data)  # raises target.Finding on a broken contract


@CI_SETTINGS
@given(
    name=st.sampled_from(NAMES),
    rnd=st.integers(min_value=0, max_value=2**32 - 1),
    raw=st.booleans(),
)
def test_raw_edits_with_repaired_digests(name: str, rnd: int, raw: bool) -> None:
    """Byte-level edits anywhere (then digests recomputed when the layout allows)."""
    rng = random.Random(rnd)
    data = mutator.byte_mutate(SEEDS[name], 1 << 20, rng)
    if not raw:
        data = mutator.repair(data) or data
    target.check(data)


@settings(CI_SETTINGS, max_examples=100)
@given(
    name=st.sampled_from(NAMES),
    rnd=st.integers(min_value=0, max_value=2**32 - 1),
    edits=st.integers(min_value=1, max_value=4),
)
def test_memory_is_bounded_by_the_input(name: str, rnd: int, edits: int) -> None:
    data = _mutant(name, rnd, edits)
    peak = target.memory_peak(target.check, data)
    assert peak <= target.MEMORY_SLACK + target.MEMORY_FACTOR * len(data), (peak, len(data))


def test_a_front_that_disagrees_with_its_twin_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """loads reads through the compiled front, and the target loads every input again
    with the front turned away (the Python reader): a front that refuses what its twin
    loads is caught, even for a jar that is fine."""
    from skjar import api
    from skjar.errors import CorruptFileError

    def refusing(*args: object, **kwargs: object) -> None:
        raise CorruptFileError("a front that refuses everything")

    data = SEEDS[NAMES[0]]
    assert target.check(data) == "ok"
    monkeypatch.setattr(api, "read_small", refusing)
    with pytest.raises(target.Finding, match="the Python reader"):
        target.check(data)
