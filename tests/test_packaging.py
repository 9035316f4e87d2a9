"""The source distribution holds everything the compiled helpers include."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_sdist_holds_every_header_the_compiled_helpers_include(tmp_path: Path) -> None:
    """Built from the tracked files alone (an old egg-info's SOURCES.txt would add files
    of its own), the sdist must hold each file a C source includes by a quoted path:
    without one the optional extension silently does not build."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list the tracked files")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    tree = tmp_path / "tree"
    for name in tracked:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")],
        cwd=tree, capture_output=True, check=True,
    )
    (archive,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        shipped = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    sources = [name for name in tracked if name.startswith("src/skjar/") and name.endswith(".c")]
    assert sources
    for source in sources:
        for include in re.findall(r'^#include "([^"]+)"', (ROOT / source).read_text(), re.M):
            wanted = (Path(source).parent / include).as_posix()
            assert wanted in shipped, f"{source} includes {include}, which the sdist lacks"
