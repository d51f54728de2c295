"""The pythons tier: the generated service on every supported CPython, 3.11 to 3.15.

The default project is locked once, universally, as a user's would be; the lock picks per
Python (Quart 0.22 below 3.13, 0.23 from 3.13). On each interpreter (``interpreters.py`` says
where each comes from; 3.12 and 3.13 are skipped, saying why, on a machine without them) it is
installed and tested by its own ``make test`` into an environment of that Python, checked by
its ``make lint`` on the lowest and the newest (as its CI runs it), then served as
a real process on both event loops: ready over HTTP, ``/info`` names that Python, and SIGTERM with
an idle keep-alive connection and a client sending its body slowly ends it with exit 0 within
``shutdown.delay + shutdown.grace_period + resources.stop_timeout`` plus a second
(``stop_check.py``). ``test_pythons_with_servers.py`` runs the variants with PostgreSQL,
Redis and the brokers on the newest interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import DEFAULT_PACKAGE, free_port, get_json, render, wait_for_status
from interpreters import FROM_DEBIAN, LOWEST, NEWEST, SUPPORTED, Interpreter
from pythons import generate, interpreter, make_lint, make_test, venv_of
from stop_check import STOP_LIMIT, STOP_SETTINGS, stop_with_idle_and_slow_clients

pytestmark = [pytest.mark.slow, pytest.mark.pythons]

PREFIX = DEFAULT_PACKAGE.upper()
LOOPS = ("uvloop", "asyncio")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every interpreter sees: the project and one environment per Python."""
    return tmp_path_factory.mktemp("pythons")


@pytest.fixture(scope="module")
def default_project(work: Path) -> Path:
    return generate(work)


def installed_version(python: Interpreter, venv: Path, distribution: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    result = python.run([python.path(venv / "bin" / "python"), "-c", code], timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("version", SUPPORTED)
def test_the_default_project_passes_its_suite_and_lint_and_stops_cleanly_on(
    version: str, work: Path, default_project: Path
) -> None:
    python = interpreter(version, work)
    summary, seconds = make_test(python, default_project)
    assert "skipped" not in summary and "failed" not in summary and "error" not in summary, summary
    linted = f"make lint {make_lint(python, default_project):.0f} s" if version in (LOWEST, NEWEST) else "not linted"
    venv = venv_of(python, default_project)
    quart = installed_version(python, venv, "quart")
    print(f"\n[figures] Python {version}: make test (install from the lock, then the suite): {summary}, "
          f"{seconds:.0f} s; {linted}; Quart {quart}")

    for loop in LOOPS:
        port = free_port()
        settings = {f"{PREFIX}_SERVER_HOST": "127.0.0.1", f"{PREFIX}_SERVER_PORT": str(port),
                    f"{PREFIX}_SERVER_LOOP": loop, **STOP_SETTINGS}
        process = python.popen([python.path(venv / "bin" / "python"), "-m", DEFAULT_PACKAGE], settings)
        try:
            ready_in = wait_for_status(process, f"http://127.0.0.1:{port}/health/ready", timeout=60)
            status, info = get_json(f"http://127.0.0.1:{port}/info")
            assert (status, info["python"].rsplit(".", 1)[0]) == (200, version), info
            stop = stop_with_idle_and_slow_clients(process, port)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=30)
        print(f"[figures] Python {version}, {loop} loop: ready {ready_in:.2f} s after start; {stop.figures()}")
        assert stop.exit_code == 0, stop.output[-4000:]
        assert stop.seconds < STOP_LIMIT, stop.figures()
        assert stop.slow_answer.startswith(b"HTTP/1.1 503"), stop.figures()
        assert b"application/problem+json" in stop.slow_answer
        assert "Traceback" not in stop.output


def test_generation_verifies_with_the_projects_python_found_on_path(tmp_path: Path) -> None:
    """cookiecutter runs on an older Python than python_version: verification uses python3.X from PATH."""
    newer = next((version for version in SUPPORTED if int(version.split(".")[1]) > sys.version_info.minor
                  and version not in FROM_DEBIAN), None)
    if newer is None:
        pytest.skip("no supported Python newer than this one runs on this machine itself")
    python = interpreter(newer, tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / f"python{newer}").symlink_to(python.python)
    result = render(tmp_path / "out", {"python_version": newer}, skip_lock=False,
                    env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"verifying with {bin_dir / f'python{newer}'}" in result.stdout
    venv_python = result.project() / ".venv" / "bin" / "python"
    version = subprocess.run([str(venv_python), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == str(tuple(int(part) for part in newer.split(".")))
    print(f"\n[figures] generated with python_version={newer} from Python {sys.version.split()[0]}: "
          f"{result.stdout.splitlines()[-5].removeprefix('[pychassis] ')}")
