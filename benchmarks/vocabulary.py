"""How a 1,000,000-entry vocabulary costs to dump and load, skjar vs pickle.

    python benchmarks/vocabulary.py [--entries 1000000] [--repeat 5]

A TfidfVectorizer is fitted on a small corpus, then given a vocabulary_ of
N pseudo-words (and a matching idf_), as a large text model would have. This
isolates the cost of the str->int dict that dominates such models: skjar
stores it column-wise (one UTF-8 blob + an int64 array), pickle one entry at a
time. Medians of --repeat runs, in-process (imports excluded).
"""

from __future__ import annotations

import argparse
import io
import pickle
import statistics
import time
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

import skjar


def build(entries: int) -> TfidfVectorizer:
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    lengths = rng.integers(4, 14, size=entries)
    words = {
        bytes(letters[rng.integers(0, 26, size=n)]).decode() + str(i): i
        for i, n in enumerate(lengths)
    }
    vec = TfidfVectorizer().fit(["some small corpus", "to fit the vectorizer"])
    vec.vocabulary_ = words
    vec.idf_ = rng.random(len(words)) + 1.0
    return vec


def timed(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    vec = build(args.entries)
    print(
        f"TfidfVectorizer with a {len(vec.vocabulary_):,}-entry vocabulary; medians of {args.repeat}"
    )
    blob = pickle.dumps(vec, protocol=5)
    jar = skjar.dumps(vec)
    assert skjar.loads(jar).vocabulary_ == vec.vocabulary_
    rows = [
        (
            "pickle-5",
            timed(lambda: pickle.dumps(vec, protocol=5), args.repeat),
            timed(lambda: pickle.loads(blob), args.repeat),
            len(blob),
        ),
        (
            "skjar",
            timed(lambda: skjar.dumps(vec), args.repeat),
            timed(lambda: skjar.loads(jar), args.repeat),
            len(jar),
        ),
        (
            "skjar inspect",
            0.0,
            timed(lambda: skjar.inspect(io.BytesIO(jar)), args.repeat),
            len(jar),
        ),
    ]
    base_dump, base_load, base_size = rows[0][1:]
    print(
        f"{'serializer':<14}{'dump s':>9}{'x pickle':>10}{'load s':>9}{'x pickle':>10}{'size MB':>9}{'x pickle':>10}"
    )
    for name, d, lo, size in rows:
        print(
            f"{name:<14}{d:>9.3f}{d / base_dump:>10.2f}{lo:>9.3f}{lo / base_load:>10.2f}"
            f"{size / 1e6:>9.1f}{size / base_size:>10.2f}"
        )


if __name__ == "__main__":
    main()
