"""tests/fuzz: the fuzz harness (repo-root ``fuzz/``) driven by hypothesis, and regressions."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT / "fuzz", ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
