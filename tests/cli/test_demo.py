"""``skjar demo``, the README's main command, end to end in a real process."""

from __future__ import annotations

from pathlib import Path

from .conftest import run_subprocess


def test_demo_runs_the_whole_workflow(tmp_path: Path) -> None:
    res = run_subprocess("demo", "--workdir", str(tmp_path))
    assert res.exit_code == 0, res.output
    for step in (
        "2. saved",
        "3. skjar inspect",
        "4. skjar audit + skjar verify",
        "5. loaded",
        "6. skjar predict",
        "7. skjar compare",
        "done:",
    ):
        assert step in res.stdout, step
    assert "NO" not in res.stdout.split("5. loaded", 1)[1].split("6.", 1)[0]
    for name in (
        "iris-knn.skjar",
        "iris-logreg.skjar",
        "spam.skjar",
        "report.html",
        "iris-predictions.csv",
    ):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "report.html").read_text().count("<svg") > 5
