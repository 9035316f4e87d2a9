"""The source distribution holds everything the compiled helpers include."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_manifest_ships_every_header_the_compiled_helpers_include() -> None:
    """setuptools before 69 leaves an extension's ``depends`` out of an sdist, and the
    build system accepts 68: MANIFEST.in must name each file a C source includes by a
    quoted path, or an install from the sdist silently builds no extension (loads then
    run the pure-Python twins)."""
    listed = {
        name
        for line in (ROOT / "MANIFEST.in").read_text().splitlines()
        if line.startswith("include ")
        for name in line.split()[1:]
    }
    assert all((ROOT / name).is_file() for name in listed)
    sources = sorted((ROOT / "src" / "skjar").rglob("*.c"))
    assert sources
    missing = [
        f"{source.relative_to(ROOT)} includes {include}"
        for source in sources
        for include in re.findall(r'^#include "([^"]+)"', source.read_text(), re.M)
        if (source.parent / include).relative_to(ROOT).as_posix() not in listed
    ]
    assert not missing, f"MANIFEST.in lacks: {missing}"
