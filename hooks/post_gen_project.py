"""Pin and verify the freshly rendered project, then say what to do next.

1. Lock: resolve the project's dependencies with uv (universal resolution, so the
   locks install on Linux x86_64 and aarch64 and on every supported Python) and
   write ``requirements.lock`` and ``requirements-dev.lock`` with hashes, through
   the project's own ``scripts/lock.py`` (what ``make lock`` runs).
2. Verify: create ``.venv``, install from the dev lock with ``--require-hashes``,
   install the project itself and run its test suite.

Before both, the files of a backing service that was not chosen (database, cache)
are removed.

``cruft update`` and ``cruft diff`` render the template twice into throw-away folders
only to compare them. Those copies are pruned but neither locked nor verified: the
project keeps its own locks and ``.venv``, and nothing of either reaches the diff.

Switches (environment variables):
  PYCHASSIS_SKIP_VERIFY=1  lock, but do not install or run the tests (same as verify=false)
  PYCHASSIS_SKIP_LOCK=1    write no lock files and verify nothing (fully offline);
                           run ``make lock`` later

Running the hook again on an existing project is safe: existing pins are kept as
uv's preferences and an existing ``.venv`` is reused.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

VERIFY_ANSWER = json.loads({{ cookiecutter.verify | tojson | tojson }})
PYTHON_VERSION = json.loads({{ cookiecutter.python_version | tojson | tojson }})
PACKAGE_NAME = json.loads({{ cookiecutter.package_name | tojson | tojson }})
PROJECT_SLUG = json.loads({{ cookiecutter.project_slug | tojson | tojson }})
DATABASE = json.loads({{ cookiecutter.database | tojson | tojson }})
CACHE = json.loads({{ cookiecutter.cache | tojson | tojson }})
HTTP_PORT = json.loads({{ cookiecutter.http_port | tojson | tojson }})
# cruft adds the template commit it renders; plain cookiecutter does not.
CRUFT_COMMIT = json.loads({{ cookiecutter._commit | default("") | tojson | tojson }})

# The files each optional backing service brings; removed when it was not chosen,
# so nothing of it remains (its settings and dependencies are left out when rendering).
OPTIONAL_FILES = {
    "postgresql": [
        "alembic.ini",
        "src/{package}/chassis/database.py",
        "src/{package}/migrations",
        "src/{package}/models.py",
        "src/{package}/services/postgres_items.py",
        "tests/tcp_proxy.py",
        "tests/test_database.py",
        "tests/test_migrations.py",
        "tests/test_postgres_items.py",
        "charts/{slug}/templates/migration-job.yaml",
        "charts/{slug}/ci/database-values.yaml",
    ],
    "redis": [
        "src/{package}/chassis/cache.py",
        "src/{package}/services/cached_items.py",
        "tests/test_cache.py",
        "tests/test_cached_items.py",
        "charts/{slug}/ci/cache-values.yaml",
    ],
}

SKIP_VERIFY_ENV = "PYCHASSIS_SKIP_VERIFY"
SKIP_LOCK_ENV = "PYCHASSIS_SKIP_LOCK"
DEFAULT_INDEX = "https://pypi.org/simple/"
INDEX_PROBE_TIMEOUT = 15  # seconds; the whole offline failure must stay under 60 s
LOCK_TIMEOUT = 600
INSTALL_TIMEOUT = 900
TEST_TIMEOUT = 900


class HookFailure(Exception):
    """A step failed; the message says what failed and how to retry or skip."""


def is_true(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"true", "yes", "y", "1", "on"}


def say(message: str) -> None:
    print(f"[pychassis] {message}", flush=True)


def index_url() -> str:
    """The index uv will use, so the probe asks the same server."""
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name]
    return DEFAULT_INDEX


def index_is_reachable(url: str) -> bool:
    """Any HTTP answer counts as reachable; only a network failure or time-out does not."""
    if url.startswith("file:"):
        return True
    probe = url.rstrip("/") + "/pip/"
    try:
        urllib.request.urlopen(urllib.request.Request(probe, method="HEAD"), timeout=INDEX_PROBE_TIMEOUT)
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pychassis"


def find_uv() -> str:
    """uv from PATH, from the running Python, or bootstrapped once into a cache folder."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        import uv  # type: ignore[import-not-found]

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    target = cache_dir() / "uv"
    binary = target / "bin" / "uv"
    if not binary.exists():
        say(f"uv not found; installing it into {target}")
        run_step(
            "bootstrap uv",
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), "uv"],
            timeout=LOCK_TIMEOUT,
        )
    return str(binary)


def tool_env() -> dict:
    env = dict(os.environ)
    env.setdefault("UV_HTTP_TIMEOUT", "30")
    # Never let uv fetch a Python build: only interpreters already on the machine are used.
    env["UV_PYTHON_DOWNLOADS"] = "never"
    # The project's own settings must not leak in from the caller's shell during tests.
    prefix = PACKAGE_NAME.upper() + "_"
    for name in list(env):
        if name.startswith(prefix) or name == "VIRTUAL_ENV":
            del env[name]
    return env


def run_step(
    what: str,
    command: list,
    *,
    timeout: int,
    log: Path | None = None,
    cwd: Path | None = None,
    extra_env: dict | None = None,
) -> None:
    """Run one command; on failure raise with its output (or the log path)."""
    env = {**tool_env(), **(extra_env or {})}
    try:
        if log is None:
            result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
            output = result.stdout + result.stderr
        else:
            with log.open("a", encoding="utf-8") as handle:
                handle.write(f"\n$ {' '.join(command)}\n")
                handle.flush()
                result = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout)
            output = ""
    except subprocess.TimeoutExpired:
        raise HookFailure(f"{what} did not finish within {timeout} s") from None
    except OSError as error:
        raise HookFailure(f"{what} could not start: {error}") from None
    if result.returncode != 0:
        detail = output.strip()[-4000:] if log is None else f"the log ends with:\n{tail(log)}"
        raise HookFailure(f"{what} failed (exit code {result.returncode}); {detail}")


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    return "\n".join(f"    {line}" for line in text[-lines:])


def lock(uv: str, project: Path) -> None:
    """Write both locks with the project's own lock script, the same code as ``make lock``."""
    env_path = f"{Path(uv).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    run_step(
        "locking requirements.lock and requirements-dev.lock",
        [sys.executable, "scripts/lock.py"],
        timeout=LOCK_TIMEOUT,
        cwd=project,
        extra_env={"PATH": env_path},
    )
    say("wrote requirements.lock and requirements-dev.lock (pinned, with hashes)")


def verify(uv: str, project: Path, log: Path) -> None:
    venv_python = project / ".venv" / "bin" / "python"
    if not venv_python.exists():
        run_step(
            "creating .venv",
            [uv, "venv", "--seed", "--quiet", "--python", f">={PYTHON_VERSION}", ".venv"],
            timeout=INSTALL_TIMEOUT, log=log, cwd=project,
        )
    run_step(
        "installing requirements-dev.lock",
        [uv, "pip", "install", "--python", str(venv_python), "--require-hashes", "-r", "requirements-dev.lock"],
        timeout=INSTALL_TIMEOUT, log=log, cwd=project,
    )
    run_step(
        "installing the project",
        [uv, "pip", "install", "--python", str(venv_python), "--no-deps", "-e", "."],
        timeout=INSTALL_TIMEOUT, log=log, cwd=project,
    )
    run_step("running the generated tests", [str(venv_python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
             timeout=TEST_TIMEOUT, log=log, cwd=project)
    # Tell the Makefile the environment is installed, so `make run` does not reinstall.
    (project / ".venv" / ".installed").touch()


def prune(project: Path) -> None:
    chosen = {DATABASE, CACHE}
    for service, paths in OPTIONAL_FILES.items():
        if service in chosen:
            continue
        for path in paths:
            target = project / path.format(package=PACKAGE_NAME, slug=PROJECT_SLUG)
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)


def parent_command() -> list:
    """The command line of the process that runs this hook (cookiecutter's, or cruft's)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except OSError:
        pass
    try:  # no /proc (macOS)
        result = subprocess.run(
            ["ps", "-o", "command=", "-p", str(os.getppid())], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return result.stdout.split()


def rendered_for_comparison() -> bool:
    """Whether cruft renders this copy only to diff it (``cruft update``/``cruft diff``)."""
    if not CRUFT_COMMIT:
        return False
    command = parent_command()
    runs_cruft = any(Path(part).name == "cruft" for part in command)
    return runs_cruft and any(part in {"update", "diff"} for part in command)


def next_steps(project: Path) -> list:
    """The three commands that take a new project from here to a running service."""
    steps = [f"cd {project}"]
    backing = [name for name, chosen in (("postgres", DATABASE == "postgresql"), ("redis", CACHE == "redis")) if chosen]
    if backing:
        steps.append(f"docker compose up -d --wait {' '.join(backing)}   # the backing services")
    if DATABASE == "postgresql":
        steps.append(f"make migrate run   # create the tables, then serve on http://localhost:{HTTP_PORT}")
    else:
        steps.append(f"make run   # serve on http://localhost:{HTTP_PORT}")
    if len(steps) < 3:
        steps.append("make test   # the tests; `make help` lists every other task")
    return steps


def summary(project: Path, outcome: str) -> None:
    say(f"created {project} ({outcome})")
    say("next:")
    for step in next_steps(project):
        print(f"    {step}", flush=True)


def main() -> int:
    project = Path.cwd()
    prune(project)
    if rendered_for_comparison():
        say("rendered for cruft to compare: not locked or verified (the project keeps its locks and .venv); "
            "if the update changes dependencies in pyproject.toml, run `make lock`")
        return 0
    if is_true(os.environ.get(SKIP_LOCK_ENV, "")):
        say(f"{SKIP_LOCK_ENV} is set: no lock files written and nothing verified; run `make lock` later")
        summary(project, "not locked")
        return 0
    should_verify = is_true(VERIFY_ANSWER) and not is_true(os.environ.get(SKIP_VERIFY_ENV, ""))
    started = time.monotonic()
    log = Path(tempfile.mkstemp(prefix=f"{project.name}-verify-", suffix=".log")[1])
    try:
        url = index_url()
        if not index_is_reachable(url):
            raise HookFailure(
                f"the package index {url} cannot be reached, so dependencies cannot be locked. "
                f"Generate offline with `{SKIP_LOCK_ENV}=1` (or answer verify=false and set "
                f"{SKIP_VERIFY_ENV}=1 once online), then run `make lock` and `make install` when online"
            )
        uv = find_uv()
        lock(uv, project)
        if not should_verify:
            say("verification skipped (verify=false or PYCHASSIS_SKIP_VERIFY set)")
            summary(project, f"locked in {time.monotonic() - started:.1f} s, not verified")
            return 0
        say("verifying: installing from the lock into .venv and running the tests ...")
        verify(uv, project, log)
    except HookFailure as failure:
        print(f"[pychassis] error: {failure}", file=sys.stderr)
        print(
            f"[pychassis] cookiecutter removes a project whose hook failed: fix the cause and generate "
            f"again, or generate with {SKIP_VERIFY_ENV}=1 to skip verification "
            f"(add --keep-project-on-failure to keep the failed project for inspection)",
            file=sys.stderr,
        )
        if log.stat().st_size:
            print(f"[pychassis] full log: {log}", file=sys.stderr)
        return 1
    log.unlink(missing_ok=True)
    summary(project, f"locked, installed and all tests passed: verified in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
