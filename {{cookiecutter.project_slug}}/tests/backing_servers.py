"""Tests that need a real server (a database, a cache) skip without one and say how to run them.

A pytest plugin (see ``conftest.py``): each fixtures module registers what its tests
need in ``NEEDS_SERVER``; the summary then counts the skipped tests per server.
"""

from __future__ import annotations

import os

import pytest

# The environment variable naming a test server's URL, and how to provide one.
NEEDS_SERVER: dict[str, str] = {}


def server_url(variable: str) -> str:
    """The test server's URL from ``variable``; without it, skip saying how to run the test."""
    url = os.environ.get(variable)
    if not url:
        pytest.skip(NEEDS_SERVER[variable])
    return url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    for variable, reason in NEEDS_SERVER.items():
        count = sum(1 for report in skipped if variable in str(report.longrepr))
        if count:
            terminalreporter.write_line(f"{count} tests skipped: {reason}", yellow=True, bold=True)
