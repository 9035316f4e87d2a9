"""The compare report, rendered by headless Chromium: are the plots really drawn?

Chromium takes a 1280x2400 screenshot of the report; the test then checks that
the page is not blank, that each model's series colour covers a fair number
of pixels (bars, curves, confusion-matrix cells are drawn), and that the plot
band of the page holds many distinct colours. Skipped only when no Chromium is
installed (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from skjar.cli import _svg

from .conftest import Files, run_runner

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)"
)


def screenshot(html: Path, png: Path, size: str = "1280,2400") -> None:
    """Render ``html`` with headless Chromium into ``png``."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="skjar-chromium-") as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={size}",
                html.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
        )
    assert png.exists() and png.stat().st_size > 0, proc.stderr.decode(errors="replace")[-2000:]


def load_rgb(png: Path) -> np.ndarray:
    """The screenshot as an (h, w, 3) uint8 array (Pillow when installed, else a tiny decoder)."""
    try:
        from PIL import Image
    except ImportError:
        from ._png import read_png

        return read_png(str(png))[:, :, :3]
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"))


def _hex(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=int)


def colour_pixels(img: np.ndarray, color: str, tol: int = 12) -> int:
    """How many pixels are within ``tol`` of ``color`` in every channel."""
    diff = np.abs(img.astype(int) - _hex(color)).max(axis=2)
    return int((diff <= tol).sum())


def distinct_colours(region: np.ndarray) -> int:
    flat = region.reshape(-1, 3)
    return len(
        np.unique(flat[:, 0].astype(np.int64) << 16 | flat[:, 1].astype(np.int64) << 8 | flat[:, 2])
    )


def test_classification_report_renders_plots(files: Files, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    res = run_runner(
        "compare",
        str(files.knn),
        str(files.logreg),
        str(files.knn_other),
        "--data",
        str(files.iris_csv),
        "--target",
        "species",
        "--report",
        str(report),
    )
    assert res.exit_code == 0, res.output
    png = tmp_path / "report.png"
    screenshot(report, png)
    img = load_rgb(png)
    assert img.shape == (2400, 1280, 3)
    try:
        import PIL  # noqa: F401
    except ImportError:
        pass
    else:  # the fallback decoder (used where Pillow is missing) must agree with Pillow
        from ._png import read_png

        assert np.array_equal(read_png(str(png))[:, :, :3], img)
    assert distinct_colours(img) > 500, "the page looks blank"
    # Every model's colour is drawn: metric bars, ROC/PR curves, confusion matrices.
    for i in range(3):
        assert colour_pixels(img, _svg.color(i)) > 5000, f"model {i}'s colour is missing"
    # The plots sit below the summary table (bars, then curves, then confusion
    # matrices): in every band of that part, some pixels must be saturated
    # colour (a drawn bar, line or cell), not only text, grid and background.
    saturated = (img.max(axis=2).astype(int) - img.min(axis=2)) > 60
    for rows in np.array_split(np.arange(750, 2400), 5):
        share = saturated[rows].mean()
        assert share > 0.002, f"rows {rows[0]}-{rows[-1]} hold no plot ({share:.4f})"
        assert distinct_colours(img[rows]) > 100


def test_regression_report_renders_plots(files: Files, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    res = run_runner(
        "compare",
        str(files.ridge),
        str(files.tree_reg),
        "--data",
        str(files.regression_csv),
        "--target",
        "target",
        "--report",
        str(report),
    )
    assert res.exit_code == 0, res.output
    png = tmp_path / "report.png"
    screenshot(report, png)
    img = load_rgb(png)
    assert distinct_colours(img) > 500
    # Scatter points are drawn at 55 % opacity: look for the blended colour too.
    for i in range(2):
        base = _hex(_svg.color(i))
        blended = (base * 0.55 + 255 * 0.45).round().astype(int)
        solid = colour_pixels(img, _svg.color(i))
        soft = colour_pixels(img, "#" + "".join(f"{v:02x}" for v in blended), tol=20)
        assert solid > 1500 and soft > 1500, (i, solid, soft)
