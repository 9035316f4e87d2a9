"""``skjar inspect`` and ``skjar audit``: header-only views, their JSON, and their error paths."""

from __future__ import annotations

import json

from .conftest import Files, Runner, run_runner


def test_inspect_shows_tree_schema_versions_sizes(cli: Runner, files: Files) -> None:
    out = cli("inspect", str(files.mixed))
    assert out.exit_code == 0, out.output
    text = out.stdout
    for expected in (
        "Pipeline",
        "columntransformer: ColumnTransformer",
        "cat: OneHotEncoder",
        "logisticregression: LogisticRegression",
        "category[str]",  # dtype of the city column
        "city",
        "yes",  # a class
        "scikit-learn",
        "same",  # versions match this environment
        "object tree",
        "compression",
        "signature: unsigned",
        "all trusted",
    ):
        assert expected in text, expected


def test_inspect_metadata_compression_and_all_params(files: Files) -> None:
    out = run_runner("inspect", str(files.logreg), "--all-params")
    assert out.exit_code == 0
    assert "zstd" in out.stdout
    assert "verbose=0" in out.stdout  # shown only with --all-params
    out = run_runner("inspect", str(files.knn))
    assert "owner" in out.stdout and "tests" in out.stdout
    assert "n_neighbors=3" in out.stdout


def test_inspect_text_model_says_one_text_column(files: Files) -> None:
    out = run_runner("inspect", str(files.text))
    assert out.exit_code == 0
    assert "one text column" in out.stdout
    assert "TfidfVectorizer" in out.stdout


def test_inspect_json(files: Files) -> None:
    out = run_runner("inspect", str(files.mixed), "--json")
    assert out.exit_code == 0
    data = json.loads(out.stdout)
    assert data["object"]["type"] == "sklearn.pipeline.Pipeline"
    assert data["object"]["schema"]["feature_dtypes"]["city"] == "category[str]"
    assert data["signature"] == "unsigned"
    assert data["sizes"]["file"] == files.mixed.stat().st_size


def test_inspect_untrusted_is_shown_not_refused(files: Files) -> None:
    out = run_runner("inspect", str(files.untrusted))
    assert out.exit_code == 0
    assert "NOT trusted" in out.stdout
    assert "skjar_cli_test_custom.Doubler" in out.stdout


def test_inspect_missing_file(cli: Runner, files: Files) -> None:
    out = cli("inspect", str(files.root / "nope.skjar"))
    assert out.exit_code == 2
    assert "does not exist" in out.stderr


def test_inspect_pickle_is_refused(cli: Runner, files: Files) -> None:
    out = cli("inspect", str(files.pickle))
    assert out.exit_code == 1
    assert "not a skjar file" in out.stderr and "pickle" in out.stderr
    assert "Traceback" not in out.output


def test_inspect_damaged_header(cli: Runner, files: Files) -> None:
    out = cli("inspect", str(files.bad_header))
    assert out.exit_code == 1
    assert out.stderr.startswith("error:")
    assert "Traceback" not in out.output


def test_inspect_reads_the_header_only(files: Files) -> None:
    # Damage past the header is for verify/load to find: inspect still answers.
    out = run_runner("inspect", str(files.corrupt))
    assert out.exit_code == 0


def test_audit_trusted(cli: Runner, files: Files) -> None:
    out = cli("audit", str(files.mixed))
    assert out.exit_code == 0
    assert "OneHotEncoder" in out.stdout
    assert "all trusted" in out.stdout


def test_audit_untrusted_exits_1(cli: Runner, files: Files) -> None:
    out = cli("audit", str(files.untrusted))
    assert out.exit_code == 1
    assert "skjar_cli_test_custom.Doubler" in out.stdout
    assert "NO" in out.stdout
    assert "--trust" in out.stderr


def test_audit_trust_option_settles_it(cli: Runner, files: Files) -> None:
    out = cli("audit", str(files.untrusted), "--trust", "skjar_cli_test_custom.Doubler")
    assert out.exit_code == 0, out.output


def test_audit_bad_trust_spec_is_a_usage_error(files: Files) -> None:
    out = run_runner("audit", str(files.untrusted), "--trust", "skjar_cli_test_custom")
    assert out.exit_code == 2
    assert out.stderr.startswith("error:")


def test_audit_json(cli: Runner, files: Files) -> None:
    out = cli("audit", str(files.untrusted), "--json", "--untrusted-only")
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert [d["name"] for d in data] == ["skjar_cli_test_custom.Doubler"]
    assert data[0]["trusted"] is False and data[0]["untrusted_uses"] == ["object"]


def test_audit_missing_pickle_corrupt(cli: Runner, files: Files) -> None:
    assert cli("audit", str(files.root / "nope.skjar")).exit_code == 2
    out = cli("audit", str(files.pickle))
    assert out.exit_code == 1 and "pickle" in out.stderr
    assert cli("audit", str(files.bad_header)).exit_code == 1
