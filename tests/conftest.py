"""Suite-wide options: ``--order`` runs the collected tests in another order.

    python -m pytest -n 2 --order reverse     # or --order 7: shuffled by that seed

A test that depends on what ran before it in the same process (a cache another test left
full, an allocator with arenas to spare) passes in one order and fails in another; CI runs
one of its legs reversed so that such a test fails there first. The order is the same in
every xdist worker, as xdist requires.
"""

from __future__ import annotations

import random

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--order", default="", metavar="reverse|SEED",
        help="run the collected tests reversed, or shuffled by an integer seed",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    order = config.getoption("--order")
    if not order:
        return
    if order == "reverse":
        items.reverse()
    elif order.isdigit():
        random.Random(int(order)).shuffle(items)
    else:
        raise pytest.UsageError(f"--order {order!r}: give 'reverse' or an integer seed")
