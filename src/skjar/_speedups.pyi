# Types of the compiled helpers in _speedups.c (see there and _compiled.py).
from typing import Any

def tree_ok(
    nodes: Any, itemsize: int, left: int, right: int, feature: int, n_features: int,
    max_depth: int,
) -> bool: ...
def strdict(text: Any, count: int, values: Any) -> dict[str, int] | None: ...
def predictor_ok(
    nodes: Any, itemsize: int, left: int, right: int, feature: int, is_leaf: int,
    is_categorical: int, bitset_idx: int, n_bitsets: int, n_features: int,
    categorical_features: Any,
) -> bool: ...
def prefault(buffer: Any) -> bool: ...
def binary_tree_ok(
    idx: Any, n: int, node_data: Any, itemsize: int, start: int, end: int, is_leaf: int,
) -> bool: ...
