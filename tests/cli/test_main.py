"""The command group: help with examples for every command, completion, version, exit codes."""

from __future__ import annotations

import pytest

from skjar import _compiled
from skjar.cli.main import cli as cli_group
from skjar.cli.main import main

from .conftest import Files, Runner, run_runner, run_subprocess

COMMANDS = sorted(cli_group.commands)


def test_every_planned_command_is_there() -> None:
    assert {"audit", "compare", "demo", "diff", "inspect", "predict", "verify"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command: str) -> None:
    out = run_runner(command, "--help")
    assert out.exit_code == 0
    assert "Example" in out.stdout
    assert f"skjar {command}" in out.stdout


def test_group_help_documents_completion_and_exit_codes(cli: Runner) -> None:
    out = cli("--help")
    assert out.exit_code == 0
    assert "_SKJAR_COMPLETE=bash_source skjar" in out.stdout
    assert "Exit codes" in out.stdout
    for command in COMMANDS:
        assert command in out.stdout


def test_completion_script_is_generated() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "_SKJAR_COMPLETE": "bash_source"}
    code = "import sys; from skjar.cli.main import cli; sys.exit(cli.main(prog_name='skjar'))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert "_skjar_completion" in proc.stdout
    assert "complete " in proc.stdout


def test_completion_offers_commands() -> None:
    from click.shell_completion import ShellComplete

    comp = ShellComplete(cli_group, {}, "skjar", "_SKJAR_COMPLETE")
    names = [c.value for c in comp.get_completions([], "ve")]
    assert names == ["verify"]


def test_version(cli: Runner) -> None:
    out = cli("--version")
    assert out.exit_code == 0
    assert "skjar" in out.stdout
    # Says whether the compiled helpers are in use (a slow load's first suspect).
    assert "compiled helpers: " + ("on" if _compiled.speedups else "off") in out.stdout


def test_unknown_command_is_a_usage_error(cli: Runner) -> None:
    out = cli("frobnicate")
    assert out.exit_code == 2
    assert "No such command" in out.stderr


def test_main_returns_exit_codes(files: Files) -> None:
    assert main(["verify", str(files.knn)]) == 0
    assert main(["verify", str(files.corrupt)]) == 1
    assert main(["audit", str(files.untrusted)]) == 1
    assert main(["verify", str(files.root / "missing.skjar")]) == 2
    assert main(["inspect", str(files.root / "missing.skjar")]) == 2
    assert main(["inspect", "--no-such-option", str(files.knn)]) == 2


def test_no_colour_when_not_a_terminal(files: Files) -> None:
    out = run_subprocess("verify", str(files.knn))
    assert out.exit_code == 0
    assert "\x1b[" not in out.stdout
    out = run_runner("audit", str(files.untrusted))
    assert "\x1b[" not in out.output
