"""Prints the coverage recorded by ``test_coverage`` in the terminal summary (xdist-safe)."""

from __future__ import annotations

from typing import Any

import pytest

_COVERAGE: list[tuple[str, object]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # user_properties travel back from xdist workers with the report.
    if report.when == "call" and report.nodeid.endswith("::test_coverage"):
        _COVERAGE.extend(report.user_properties)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _COVERAGE:
        return
    props = dict(_COVERAGE)
    terminalreporter.section("skjar conformance coverage")
    terminalreporter.write_line(
        f"generic estimators covered: {props.get('generic_covered')}, "
        f"skipped: {props.get('generic_skipped')}, composite cases: {props.get('composite')}"
    )
    for key, reason in _COVERAGE:
        if key.startswith("skipped:"):
            terminalreporter.write_line(f"  skipped {key.removeprefix('skipped:')}: {reason}")
