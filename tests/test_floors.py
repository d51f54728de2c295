"""The floors ``pyproject.toml`` declares are true: the default project, with every direct dependency
at the lowest version its floor allows (``uv lock --resolution lowest-direct``), passes its own suite
on the lowest supported Python. A floor nobody installed is a promise nobody kept.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import clean_env, render
from interpreters import SUPPORTED

pytestmark = pytest.mark.slow

UV = str(Path(sys.executable).with_name("uv"))
SUMMARY = re.compile(r"^=*\s*(\d+ passed.*) in [\d.]+s", re.MULTILINE)


def uv(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([UV, *args], cwd=project, capture_output=True, text=True, env=clean_env(),
                            timeout=timeout, check=False)
    assert result.returncode == 0, f"uv {' '.join(args)}:\n{result.stderr[-3000:]}"
    return result


def test_the_declared_floors_pass_the_suite_on_the_lowest_python(tmp_path: Path) -> None:
    lowest = SUPPORTED[0]
    if f"{sys.version_info.major}.{sys.version_info.minor}" != lowest:
        pytest.skip(f"the floors are proven on Python {lowest}; this is {sys.version}")
    result = render(tmp_path, {"python_version": lowest})
    assert result.returncode == 0, result.stderr
    project = result.project()
    uv(project, "lock", "--resolution", "lowest-direct", "--quiet")
    uv(project, "sync", "--locked", "--resolution", "lowest-direct", "--python", sys.executable, "--quiet")
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    versions = {package["name"]: package["version"] for package in lock["package"]}
    declared = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    floors = dict(re.match(r"([\w.-]+)(?:\[\w+\])?>=([\w.]+)", requirement).groups() for requirement in declared)
    for name, floor in floors.items():
        assert versions[name] == floor or versions[name].startswith(f"{floor}."), (name, versions[name], floor)
    tests = subprocess.run([str(project / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=project, capture_output=True, text=True, env=clean_env(), timeout=900, check=False)
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-2000:]
    summary = SUMMARY.search(tests.stdout)
    print(f"\n[figures] the floors on Python {lowest}: {summary.group(1) if summary else tests.stdout[-200:]}; "
          + ", ".join(f"{name} {versions[name]}" for name in sorted(floors)))
