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


def make(python: Interpreter, project: Path, target: str, env: dict[str, str] | None = None,
         args: str = "") -> tuple[str, float]:
    """``make <target>`` with this Python and an environment of its own; returns the output and the time."""
    started = time.monotonic()
    result = python.run(
        ["make", "--no-print-directory", "-C", python.path(project), target, f"PYTHON={python.python}",
         f"VENV={python.path(venv_of(python, project))}", f"ARGS={args}"],
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"make {target} with Python {python.version}:\n{output[-6000:]}"
    return result.stdout, time.monotonic() - started


def make_test(python: Interpreter, project: Path, env: dict[str, str] | None = None) -> tuple[str, float]:
    """``make test`` (installing first); returns pytest's summary and the time."""
    output, seconds = make(python, project, "test", env, args="-q -p no:cacheprovider -rs")
    summary = SUMMARY.search(output)
    assert summary, output[-3000:]
    return summary.group(1), seconds


def make_lint(python: Interpreter, project: Path) -> float:
    """``make lint`` (ruff, ruff format, mypy) as the generated CI runs it; returns the time."""
    # mypy's cache in the environment, not the project: each Python has its own dependencies.
    cache = {"MYPY_CACHE_DIR": python.path(venv_of(python, project) / ".mypy_cache")}
    output, seconds = make(python, project, "lint", env=cache)
    assert "Success: no issues found" in output, output[-3000:]
    return seconds
