"""The optional compiled helpers (``_speedups.c``), or ``None``.

They are built by ``pip install`` when a C compiler is at hand. Each is a twin
of a Python loop that stays the reference: a helper answers "fine" (or returns
the built object) or "not fine", and on "not fine" the caller runs the Python
twin, which raises the precise error. ``SKJAR_PURE_PYTHON=1`` in the environment
turns them off (to compare, or to rule them out).
"""

from __future__ import annotations

import os
from types import ModuleType

# Every helper the loader calls. A build from an older checkout (an editable install
# not rebuilt after a pull) lacks some: it is then not used at all, rather than failing
# loads with an AttributeError (`skjar --version` says "off"; reinstall to rebuild).
HELPERS = (
    "tree_ok", "predictor_ok", "strdict", "prefault", "address", "below", "binary_tree_ok",
    "no_timestamps", "start_writeback", "walk", "json", "read_small", "Hasher", "fresh_pages",
    "tree_state_ok", "predictor_state_ok", "columns_ok", "read_head", "env_set", "walk_plan",
    "walk_setter", "binary_tree_state_ok", "distance_metric_state_ok", "neighbors_state_ok",
    "libsvm_state_ok", "discard", "pack_tree", "encode", "encode_items", "encode_dict",
    "predictors_ok", "objpool_last", "CompiledCheck", "default_infos", "section_totals",
    "write_jar", "json_dump", "read_info", "dict_prefetching",
)
# The helpers' calling conventions (SKJAR_SPEEDUPS_API in _speedups.c); a build of another
# one is not used either (API 3: strdict reads values of any width, releases built keys;
# 4: no_timestamps; 5: start_writeback; 6: walk; 7, 8: walk builds arrays; 9: json;
# 10: read_small; 11: read_small's prefault threshold; 12: walk builds objects,
# read_small takes large sections and a hasher; 13: the digest compiled in (Hasher), whole
# Tree and TreePredictor states checked at once, columns_ok; 14: read_head; 15: read_small
# judges a default load's trust and versions itself, and maps jars for mmap=True; 16:
# env_set, and read_small/read_head encode the path themselves; 17: walk takes its
# per-load objects apart from one static tuple, and counts the buffers it takes; 18: the
# walker plans default-trusted names and sets up classes' state setters itself; 19: and
# builds flat tuples; 20: and numpy scalars; 21: whole KD/Ball tree, distance metric,
# neighbours estimator and libsvm states checked at once; 22: binary_tree_state_ok takes
# the distance metric class its tree's metric must be an instance of; 23: discard; 24:
# pack_tree, and the encoder's walk: encode, encode_items, encode_dict; 25: read_small and
# read_head take bytes, bytearray and memoryview as the jar itself, not as a path; 26:
# and a 4-tuple as a file object's region, reader.FileRegion; 27: read_small takes compressed
# sections and packs, and returns them as stored with their codings; 28: and signed jars,
# checking their signature through its new argument; 29: read_head takes signed jars and
# gives back their flags; 30: predictors_ok; 31: strdict maps its objects' memory in ahead,
# objpool_last shows it; 32: CompiledCheck, meaning checks whose compiled twin runs with
# no Python step; 33: default_infos and section_totals, a cold inspect's and audit's
# Python steps compiled); 34: write_jar, an unsigned jar written to a file and hashed on a
# helper thread, and json_dump, the header's JSON written; 35: json and read_head can leave
# the header's object summary, producer and metadata unbuilt, and read_small does; 36:
# read_info, inspect's and audit's header, names and sizes in one call; 37: strdict
# prefetches the dict's table where dict_prefetching() says it knows its layout; 38: the
# walk's state (Encoder._fast) carries what encode_object's compiled shapes read, and
# fresh_pages drops a chunk's copy-on-write pages before it is filled).
API = 38


def _load() -> ModuleType | None:
    if os.environ.get("SKJAR_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    if getattr(_speedups, "API", 1) != API or not all(hasattr(_speedups, n) for n in HELPERS):
        return None
    return _speedups


speedups: ModuleType | None = _load()
