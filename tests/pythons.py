"""What the pythons tier does with each interpreter: generate a project, run its ``make test`` there."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from helpers import render
from interpreters import Absent, Interpreter, find

# pytest's last line, e.g. "110 passed in 26.70s" or "105 passed, 23 skipped in 20.10s".
SUMMARY = re.compile(r"^=*\s*(\d+ passed.*) in [\d.]+s", re.MULTILINE)


def generate(work: Path, answers: dict[str, object] | None = None, folder: str = "default") -> Path:
    """A project locked as a user's is, but installed and tested per interpreter, not by the hook."""
    result = render(work / folder, answers, skip_lock=False, env={"PYCHASSIS_SKIP_VERIFY": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.project()


def interpreter(version: str, work: Path) -> Interpreter:
    """The interpreter of ``version``; the test is skipped, saying why, when this machine has none."""
    try:
        return find(version, work)
    except Absent as absent:
        pytest.skip(str(absent))


def venv_of(python: Interpreter, project: Path) -> Path:
    return project.parent / f"venv-{python.version}"


def make_test(python: Interpreter, project: Path, env: dict[str, str] | None = None) -> tuple[str, float]:
    """``make test`` with this Python, in an environment of its own; returns pytest's summary and the time."""
    started = time.monotonic()
    result = python.run(
        ["make", "--no-print-directory", "-C", python.path(project), "test", f"PYTHON={python.python}",
         f"VENV={python.path(venv_of(python, project))}", "ARGS=-q -p no:cacheprovider -rs"],
        env=env,
    )
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = SUMMARY.search(result.stdout)
    assert summary, output[-3000:]
    return summary.group(1), seconds
