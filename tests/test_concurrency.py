"""Loads and saves from several threads at once, as a prediction server's pool makes them.

The loader keeps process-wide caches (trusted names, header checks, the compiled
walker's static objects) and its compiled helpers release the GIL while they map pages
in and hash; the writer replaces a path by renaming a finished temporary file over it.
These tests hold both to what a server relies on: concurrent loads give the same models
as one at a time, and a reader never sees a half-written model while another thread
replaces it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

import skjar

RNG = np.random.RandomState(0)
X = RNG.rand(300, 6)
Y = (X[:, 0] + X[:, 1] > 1).astype(int)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    folder = tmp_path_factory.mktemp("concurrency")
    out = {}
    for name, model in {
        "knn": KNeighborsClassifier(3).fit(X, Y),
        "svc": SVC(probability=True, random_state=0).fit(X, Y),
        "hgb": HistGradientBoostingClassifier(max_iter=20).fit(X, Y),
    }.items():
        path = folder / f"{name}.skjar"
        skjar.dump(model, path)
        out[name] = (path, model.predict_proba(X))
    return out


def test_loads_from_many_threads_give_the_same_models(
    models: dict[str, tuple[Path, np.ndarray]],
) -> None:
    names = sorted(models)

    def load_one(i: int) -> tuple[str, Any]:
        name = names[i % len(names)]
        path = models[name][0]
        way = i // len(names) % 3
        if way == 0:
            model = skjar.load(path)
        elif way == 1:
            model = skjar.load(path, mmap=True)
        else:
            model = skjar.loads(path.read_bytes())
        return name, model.predict_proba(X)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(load_one, range(240)))
    assert len(results) == 240
    for name, got in results:
        np.testing.assert_array_equal(got, models[name][1], err_msg=name)


def test_readers_never_see_a_model_half_replaced(
    models: dict[str, tuple[Path, np.ndarray]], tmp_path: Path
) -> None:
    """Two writers keep replacing one path with two different models while three
    readers (plain and mmap) load it: every load is one of the two, whole."""
    first = skjar.load(models["knn"][0])
    second = skjar.load(models["hgb"][0])
    path = tmp_path / "live.skjar"
    skjar.dump(first, path)
    expected = {type(first): models["knn"][1], type(second): models["hgb"][1]}
    seen: dict[type, int] = {type(first): 0, type(second): 0}
    errors: list[BaseException] = []
    stop = time.monotonic() + 3.0

    def write(model: Any) -> None:
        while time.monotonic() < stop:
            try:
                skjar.dump(model, path)
            except BaseException as exc:  # (reported below)
                errors.append(exc)

    def read(mmap: bool) -> None:
        while time.monotonic() < stop:
            try:
                model = skjar.load(path, mmap=mmap)
                np.testing.assert_array_equal(model.predict_proba(X), expected[type(model)])
                seen[type(model)] += 1
            except BaseException as exc:  # (reported below)
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(m,)) for m in (first, second)]
    threads += [threading.Thread(target=read, args=(mmap,)) for mmap in (False, True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert all(count > 0 for count in seen.values()), seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.skjar"]  # no temporaries left
