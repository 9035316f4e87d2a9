"""``skjar verify``: layout and digest checked without decoding anything."""

from __future__ import annotations

import json

from .conftest import Files, Runner, run_runner


def test_verify_ok(cli: Runner, files: Files) -> None:
    out = cli("verify", str(files.knn), str(files.logreg))
    assert out.exit_code == 0, out.output
    assert out.stdout.count("ok") >= 2
    assert "xxh3-128:" in out.stdout
    assert "unsigned" in out.stdout


def test_verify_does_not_care_about_trust(cli: Runner, files: Files) -> None:
    # Nothing is decoded, so an untrusted name is no reason to fail an integrity check.
    out = cli("verify", str(files.untrusted))
    assert out.exit_code == 0, out.output


def test_verify_corrupt(cli: Runner, files: Files) -> None:
    out = cli("verify", str(files.corrupt))
    assert out.exit_code == 1
    assert "FAILED" in out.stdout
    assert "integrity check failed" in out.stderr or "padding" in out.stderr
    assert "Traceback" not in out.output


def test_verify_truncated_and_damaged_header(cli: Runner, files: Files) -> None:
    out = cli("verify", str(files.truncated), str(files.bad_header))
    assert out.exit_code == 1
    assert out.stderr.count("error:") == 2


def test_verify_pickle(cli: Runner, files: Files) -> None:
    out = cli("verify", str(files.pickle))
    assert out.exit_code == 1
    assert "not a skjar file" in out.stderr


def test_verify_missing(cli: Runner, files: Files) -> None:
    out = cli("verify", str(files.root / "nope.skjar"))
    assert out.exit_code == 2
    assert "no such file" in out.stderr


def test_verify_mixed_results_worst_code_wins(files: Files) -> None:
    out = run_runner("verify", str(files.knn), str(files.corrupt))
    assert out.exit_code == 1
    out = run_runner("verify", str(files.knn), str(files.root / "nope.skjar"), str(files.corrupt))
    assert out.exit_code == 2


def test_verify_json(cli: Runner, files: Files) -> None:
    out = cli("verify", "--json", str(files.knn), str(files.corrupt))
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert data[0]["ok"] is True and data[0]["digest"].startswith("xxh3-128:")
    assert data[0]["size"] == files.knn.stat().st_size
    assert data[0]["type"].endswith("KNeighborsClassifier")
    assert data[1]["ok"] is False and data[1]["error_type"] == "CorruptFileError"


def test_verify_needs_a_path(cli: Runner) -> None:
    out = cli("verify")
    assert out.exit_code == 2
    assert "Missing argument" in out.stderr
