"""The measuring instrument itself: persistence.py runs end to end on real (quick) models,
and plot.py draws a run's ratios to pickle as the SVG grid RESULTS.md shows."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import plot  # noqa: E402


def _run() -> dict:
    cells = []
    for model, load in (("tiny", 2.5), ("big", 0.004)):
        for ser, factor in (("pickle", 1.0), ("skjar", load), ("joblib", 40.0)):
            cells.append(
                {
                    "model": model,
                    "serializer": ser,
                    "ratio_to_pickle": {"load_s": factor, "save_s": None, "size_bytes": 1.0},
                }
            )
    return {"repeat": 3, "machine": {"git_revision": "abcdef0123", "cpu_count": 2}, "results": cells}


def _texts(svg: str) -> list[str]:
    ns = "{http://www.w3.org/2000/svg}"
    return [el.text or "" for el in ET.fromstring(svg).iter(f"{ns}text")]


def test_every_cell_shows_its_ratio_and_missing_ones_a_dash() -> None:
    svg = plot.render(_run())
    texts = _texts(svg)
    assert "2.50x" in texts and "0.004x" in texts and "40x" in texts
    assert texts.count("-") == 2 * 2 * 2  # save and peak RSS panels: 2 models x 2 serializers
    assert "pickle" not in texts  # the reference is not a column
    assert "commit abcdef0" in " ".join(texts)


def test_shades_are_white_at_one_blue_below_orange_above() -> None:
    assert plot.shade(1.0) == "rgb(255,255,255)"
    assert plot.shade(1 / 8) == plot.shade(1 / 100) == "rgb(0,114,178)"
    assert plot.shade(8.0) == "rgb(213,94,0)"
    r, _g, b = (int(v) for v in plot.shade(0.5)[4:-1].split(","))
    assert b > r  # bluish, lighter than the saturated end
    assert r > 0


def test_the_command_writes_the_svg_and_refuses_other_json(tmp_path: Path) -> None:
    good = tmp_path / "run.json"
    good.write_text(json.dumps(_run()))
    script = str(BENCHMARKS / "plot.py")
    done = subprocess.run([sys.executable, script, str(good)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run.svg").read_text().startswith("<svg")
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"cells": []}))
    done = subprocess.run([sys.executable, script, str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "not a persistence.py --out file" in done.stderr


def test_a_run_of_pickle_alone_is_refused() -> None:
    run = _run()
    run["results"] = [c for c in run["results"] if c["serializer"] == "pickle"]
    with pytest.raises(SystemExit, match="nothing to compare"):
        plot.render(run)


def test_the_benchmark_runs_end_to_end_and_its_json_plots(tmp_path: Path) -> None:
    """A quick run of real models through real serializers in forked children: every
    prediction matches, every figure is there, and the plot script draws it."""
    out = tmp_path / "run.json"
    command = [
        sys.executable,
        str(BENCHMARKS / "persistence.py"),
        "--quick",
        "--models", "iris-knn,svc",
        "--serializers", "pickle,skjar,skjar-mmap,skjar-zstd",
        "--no-bounds",
        "--cache-dir", str(tmp_path / "cache"),
        "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run = json.loads(out.read_text())
    cells = {(c["model"], c["serializer"]): c for c in run["results"]}
    assert set(cells) == {
        (m, s) for m in ("iris-knn", "svc") for s in ("pickle", "skjar", "skjar-mmap", "skjar-zstd")
    }
    for (model, ser), cell in cells.items():
        assert cell["errors"] == [] and cell["predictions_match"] is True, (model, ser)
        assert cell["load_s"] and cell["save_s"] and cell["size_bytes"], (model, ser)
        if ser != "pickle":
            assert cell["ratio_to_pickle"]["load_s"] > 0
    assert cells["svc", "skjar-zstd"]["size_bytes"][0] < cells["svc", "skjar"]["size_bytes"][0]
    texts = _texts(plot.render(run))
    ratio = cells["iris-knn", "skjar"]["ratio_to_pickle"]["size_bytes"]
    assert plot.ratio_text(ratio) in texts
