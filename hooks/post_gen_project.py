"""Pin, verify and commit the freshly rendered project, then say what to do next.

1. Lock: cut the project's ``uv.lock`` from the pins the template's CI verified
   (``tested-pins.txt``, rendered into the project for this hook and removed by it): uv
   locks with them as constraints, seeing only files published before the pins' date, so
   the project gets exactly the versions and files the template's CI ran, for every
   platform and supported Python, whatever the index has released since. The uv that
   locks is the version the pins name (the lock's format follows it).
2. Verify: ``uv sync --locked`` into ``.venv`` with a Python the project supports (the one
   running cookiecutter when it does, else a matching ``python3.X`` on PATH), hashes checked,
   then run the project's test suite; with PostgreSQL, Redis or a broker chosen, their tests
   run too when a server answers at the URL the project's README gives for local development.
   The summary gives pytest's real counts, and says why tests were skipped. When tests fail,
   the last lines name them, with the installed versions that are not the tested ones.
3. Commit: the project becomes a git repository (branch ``main``) with one commit of
   everything generated, uv.lock included and ``.venv`` left out by its ``.gitignore``,
   authored by ``author_name <author_email>`` (also unlocked, with PYCHASSIS_SKIP_LOCK).
   Not when git is missing, or the project is a repository already or sits in another
   one's work tree (unless that repository ignores it); never for cruft's comparison
   renders.  A commit that fails (say, a global git hook refuses it) is reported in
   one line and generation goes on.

Before all three, the files of a backing service that was not chosen (database, cache,
broker) are removed (the chosen broker's module becomes ``chassis/broker.py``, the chosen
auth's ``api_access_<auth>.py`` becomes ``api_access.py``), and
``package_name`` is refused if it is the top-level module of a dependency the rendered
``pyproject.toml`` declares (``quart``, ``yaml``...): the
package would shadow it.  Verification then checks it against every module actually
installed in ``.venv`` (``importlib.metadata.packages_distributions()``), which also
covers the dependencies' own dependencies (``werkzeug``, ``priority``...).

``cruft update`` and ``cruft diff`` render the template twice into throw-away folders
only to compare them. Those copies are pruned but neither locked nor verified: the
project keeps its own ``uv.lock`` and ``.venv``, and nothing of either reaches the diff.

Switches (environment variables):
  PYCHASSIS_SKIP_VERIFY=1  lock, but do not install or run the tests (same as verify=false)
  PYCHASSIS_SKIP_LOCK=1    write no uv.lock and verify nothing (fully offline);
                           run ``make lock`` later

Running the hook again on an existing project is safe: an existing uv.lock is kept (uv
only adds what is new to it), an existing ``.venv`` is reused and an existing repository gets no commit.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

VERIFY_ANSWER = json.loads({{ cookiecutter.verify | tojson | tojson }})
PYTHON_VERSION = json.loads({{ cookiecutter.python_version | tojson | tojson }})
PACKAGE_NAME = json.loads({{ cookiecutter.package_name | tojson | tojson }})
PROJECT_SLUG = json.loads({{ cookiecutter.project_slug | tojson | tojson }})
DATABASE = json.loads({{ cookiecutter.database | tojson | tojson }})
CACHE = json.loads({{ cookiecutter.cache | tojson | tojson }})
BROKER = json.loads({{ cookiecutter.broker | tojson | tojson }})
AUTH = json.loads({{ cookiecutter.auth | tojson | tojson }})
SUPPORTED_PYTHONS = json.loads({{ cookiecutter._supported_pythons | tojson | tojson }})
HTTP_PORT = json.loads({{ cookiecutter.http_port | tojson | tojson }})
AUTHOR_NAME = json.loads({{ cookiecutter.author_name | tojson | tojson }})
AUTHOR_EMAIL = json.loads({{ cookiecutter.author_email | tojson | tojson }})
TEMPLATE_VERSION = json.loads({{ cookiecutter._template_version | tojson | tojson }})
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
        "scripts/database_outage.py",
        "tests/test_database.py",
        "tests/test_migrations.py",
        "tests/test_postgres_items.py",
        "tests/database_fixtures.py",
        "charts/{slug}/templates/migration-job.yaml",
        "charts/{slug}/ci/database-values.yaml",
    ],
    "redis": [
        "src/{package}/chassis/cache.py",
        "src/{package}/services/cached_items.py",
        "tests/test_cache.py",
        "tests/test_cached_items.py",
        "tests/cache_fixtures.py",
        "charts/{slug}/ci/cache-values.yaml",
    ],
}

# What any backing service needs; removed when none was chosen.
BACKING_SERVICE_FILES = [
    "tests/backing_servers.py",
]

# What any broker brings; removed with broker = none.
BROKER_FILES = [
    "src/{package}/services/messaging.py",
    "src/{package}/chassis/asyncapi.py",
    "src/{package}/chassis/consumers.py",
    "src/{package}/chassis/events.py",
    "src/{package}/chassis/message_metrics.py",
    "src/{package}/consumers",
    "src/{package}/events.py",
    "tests/broker_fixtures.py",
    "tests/test_asyncapi.py",
    "tests/test_consumers.py",
    "tests/test_events.py",
    "tests/test_messaging.py",
    "charts/{slug}/templates/worker-deployment.yaml",
    "charts/{slug}/templates/worker-pdb.yaml",
    "charts/{slug}/templates/worker-hpa.yaml",
    "charts/{slug}/templates/worker-networkpolicy.yaml",
    "charts/{slug}/templates/worker-servicemonitor.yaml",
    "charts/{slug}/ci/worker-values.yaml",
    "scripts/bench_messages.py",
]
# What auth = oidc brings (bearer tokens checked against an identity provider's keys).
OIDC_FILES = [
    "src/{package}/chassis/auth.py",
    "src/{package}/chassis/caller.py",
    "src/{package}/chassis/signing_keys.py",
    "src/{package}/chassis/upstream_credentials.py",
    "scripts/dev_identity_provider.py",
    "settings.dev.yml",
    "tests/identity_provider.py",
    "tests/test_auth.py",
    "tests/test_upstream_credentials.py",
]
# Each broker's client, one of which becomes chassis/broker.py.
BROKER_MODULES = {
    "rabbitmq": "src/{package}/chassis/broker_rabbitmq.py",
    "nats": "src/{package}/chassis/broker_nats.py",
}
BROKER_MODULE = "src/{package}/chassis/broker.py"
# Each broker's bare client for the tests, one of which becomes tests/broker_probe.py.
BROKER_PROBES = {
    "rabbitmq": "tests/broker_probe_rabbitmq.py",
    "nats": "tests/broker_probe_nats.py",
}
BROKER_PROBE = "tests/broker_probe.py"
# Who may call the API, for each auth answer; the chosen one becomes api_access.py (app.py calls it).
API_ACCESS_MODULES = {
    "oidc": "src/{package}/api_access_oidc.py",
    "none": "src/{package}/api_access_none.py",
}
API_ACCESS_MODULE = "src/{package}/api_access.py"
# Tests of what only one broker does.
BROKER_ONLY_TESTS = {"nats": "tests/test_nats.py"}
# With a database, events leave through the transactional outbox; without one, straight after the change.
OUTBOX_FILES = [
    "src/{package}/chassis/inbox.py",
    "src/{package}/chassis/outbox.py",
    "src/{package}/migrations/versions/0002_create_outbox.py",
    "src/{package}/migrations/versions/0003_inbox_keyed_by_source_and_id.py",
    "src/{package}/services/outbox_items.py",
    "tests/test_outbox.py",
]
DIRECT_PUBLISHING_FILES = [
    "src/{package}/chassis/memory_inbox.py",
    "src/{package}/services/published_items.py",
]

# The pins the template's CI verified, shipped in the rendered project for this hook alone.
PINS_FILE = "tested-pins.txt"
EXCLUDE_NEWER = "# exclude-newer: "
# A pin in it: "quart==0.22.0 ; python_full_version < '3.13'" -> quart, 0.22.0.
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")
# Where the pins go for one `uv lock`, and what they leave in uv.lock that the project does not declare.
TOOL_UV = "[tool.uv]\n"
LOCKED_CONSTRAINTS = re.compile(r"^\[manifest\]\nconstraints = \[\n(?:    .*\n)*\]\n\n", re.MULTILINE)
LOCKED_OPTIONS = re.compile(r"^\[options\]\nexclude-newer = \"[^\"]*\"\n\n", re.MULTILINE)
SKIP_VERIFY_ENV = "PYCHASSIS_SKIP_VERIFY"
SKIP_LOCK_ENV = "PYCHASSIS_SKIP_LOCK"
DEFAULT_INDEX = "https://pypi.org/simple/"
INDEX_PROBE_TIMEOUT = 15  # seconds; the whole offline failure must stay under 60 s
LOCK_TIMEOUT = 600
INSTALL_TIMEOUT = 900
TEST_TIMEOUT = 900
PROBE_TIMEOUT = 20
# The test servers the project's README documents for local development (docker compose),
# and a probe that connects with the project's own client library.
TEST_SERVERS = {
    "postgresql": (
        f"{PACKAGE_NAME.upper()}_TEST_DATABASE_URL",
        "postgresql://postgres:dev@localhost/postgres",
        "import asyncio, asyncpg, sys\n"
        "async def probe():\n"
        "    connection = await asyncpg.connect(sys.argv[1], timeout=3)\n"
        "    await connection.close()\n"
        "asyncio.run(probe())\n",
    ),
    "redis": (
        f"{PACKAGE_NAME.upper()}_TEST_CACHE_URL",
        "redis://localhost:6379/0",
        "import redis, sys\n"
        "redis.Redis.from_url(sys.argv[1], socket_connect_timeout=3, socket_timeout=3).ping()\n",
    ),
    "rabbitmq": (
        f"{PACKAGE_NAME.upper()}_TEST_BROKER_URL",
        "amqp://guest:guest@localhost:5672/",
        "import aio_pika, asyncio, sys\n"
        "async def probe():\n"
        "    connection = await aio_pika.connect(sys.argv[1], timeout=3)\n"
        "    await connection.close()\n"
        "asyncio.run(probe())\n",
    ),
    "nats": (
        f"{PACKAGE_NAME.upper()}_TEST_BROKER_URL",
        "nats://localhost:4222",
        "import asyncio, nats, sys\n"
        "async def probe():\n"
        "    connection = await nats.connect(sys.argv[1], connect_timeout=3, max_reconnect_attempts=1)\n"
        "    await connection.jetstream().account_info()\n"
        "    await connection.close()\n"
        "asyncio.run(probe())\n",
    ),
}
# pytest's short summary of a failed test (-ra): "FAILED tests/test_x.py::test_y - RuntimeError: ...".
FAILED_TEST = re.compile(r"^(?:FAILED|ERROR) tests/.*$", re.MULTILINE)
MAX_FAILED_SHOWN = 5
# Every installed distribution and its version, in .venv.
INSTALLED_VERSIONS = ("import importlib.metadata, json; "
                      "print(json.dumps({d.metadata['Name']: d.version for d in importlib.metadata.distributions()}))")
PYTEST_COUNTS = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+) in [\d.]+s", re.MULTILINE)
# The generated conftest's own summary of skips: "23 tests skipped: needs PostgreSQL: run ...".
SKIP_REASON = re.compile(r"^(\d+) tests skipped: needs (\w+)", re.MULTILINE)
# A requirement's distribution name (PEP 508), e.g. "quart" in "quart>=0.20".
REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
# The only distributions whose top-level module is not their normalised name; the
# template's tests compare every declared dependency against its installed metadata.
MODULE_OF_DISTRIBUTION = [
    (re.compile(r"pyyaml"), "yaml"),
    (re.compile(r"nats_py"), "nats"),
    (re.compile(r"swagger_ui_py"), "swagger_ui"),
    (re.compile(r"opentelemetry_.+"), "opentelemetry"),  # one namespace package, many distributions
    (re.compile(r"types_.+"), None),  # type stubs: nothing importable
]
# Every installed top-level module and the distributions that provide it, in .venv.
INSTALLED_MODULES = "import importlib.metadata, json; print(json.dumps(importlib.metadata.packages_distributions()))"
GIT_TIMEOUT = 60
# Variables that would point git at another repository (set when cookiecutter runs inside a git hook).
GIT_LOCATION = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX")


class HookFailure(Exception):
    """A step failed; the message says what failed and how to retry or skip."""


class TestsFailed(HookFailure):
    """The generated tests ran and some failed: the message names them and the likely cause."""

    def __init__(self, output: str, untested: list) -> None:
        counts = PYTEST_COUNTS.findall(output)
        failed = [line.strip() for line in FAILED_TEST.findall(output)]
        lines = [f"the generated tests failed ({counts[-1] if counts else 'see the log'}):"]
        lines += [f"    {shorten(line)}" for line in failed[:MAX_FAILED_SHOWN]]
        if len(failed) > MAX_FAILED_SHOWN:
            lines.append(f"    ... and {len(failed) - MAX_FAILED_SHOWN} more (in the full log)")
        if untested:
            lines.append("likely cause: installed versions that are not the ones the template's CI verified: "
                         + "; ".join(untested))
        else:
            lines.append("every installed version is the one the template's tested pins hold, so the cause is likely "
                         "this machine (a server, a setting in the environment) or the template itself")
        super().__init__("\n[pychassis] ".join(lines))


class NoSuitablePython(HookFailure):
    """No interpreter here satisfies the project's requires-python; the message says how to go on."""


class ShadowingPackageName(Exception):
    """package_name is a module the service depends on; the message names the field, as the pre-gen hook does."""

    def __init__(self, module: str, source: str) -> None:
        super().__init__(f"package_name = {PACKAGE_NAME!r}: shadows a module the service depends on ({module}, {source})")


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


def find_uv(version: str | None) -> str:
    """The uv that the pins name (the lock's format follows uv's version): from PATH when it is that
    version, else installed once into a cache folder. Without a version, any uv."""
    found = shutil.which("uv")
    if found and (version is None or uv_version(found) == version):
        return found
    target = cache_dir() / f"uv-{version or 'latest'}"
    binary = target / "bin" / "uv"
    if not binary.exists():
        say(f"installing uv {version or ''} into {target}".replace("  ", " "))
        cache_dir().mkdir(parents=True, exist_ok=True)
        # Installed beside the target, then renamed into place: a concurrent generation sees all of it or none.
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir()))
        run_step(
            "installing uv",
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(scratch),
             f"uv=={version}" if version else "uv"],
            timeout=LOCK_TIMEOUT,
        )
        try:
            scratch.rename(target)
        except OSError:  # another generation got there first
            shutil.rmtree(scratch, ignore_errors=True)
    return str(binary)


def uv_version(uv: str) -> str | None:
    """``0.13.10`` for a uv that says ``uv 0.13.10 (...)``; None when it does not run."""
    try:
        result = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    words = result.stdout.split()
    return words[1] if result.returncode == 0 and len(words) > 1 else None


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


def shorten(line: str, limit: int = 400) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    return "\n".join(f"    {line}" for line in text[-lines:])


class Pins:
    """The dependency set the template's CI verified (``tested-pins.txt``, which the hook removes)."""

    def __init__(self, text: str) -> None:
        lines = [line.strip() for line in text.splitlines()]
        self.requirements = [line for line in lines if line and not line.startswith("#")]
        self.exclude_newer = next(
            (line.removeprefix(EXCLUDE_NEWER).strip() for line in lines if line.startswith(EXCLUDE_NEWER)), None
        )
        self.versions = {}
        for requirement in self.requirements:
            match = PIN.match(requirement)
            if match:
                self.versions.setdefault(canonical(match.group(1)), set()).add(match.group(2))

    def version_of(self, name: str) -> str | None:
        """The one version pinned for ``name`` (None when it is not pinned, or pinned per Python)."""
        versions = self.versions.get(canonical(name), set())
        return next(iter(versions)) if len(versions) == 1 else None


def take_pins(project: Path) -> Pins | None:
    """Read the tested pins out of the rendered project and remove the file: the project's fact is uv.lock."""
    path = project / PINS_FILE
    if not path.exists():  # a second run of this hook
        return None
    pins = Pins(path.read_text(encoding="utf-8"))
    path.unlink()
    return pins


def lock(uv: str, project: Path, pins: Pins | None) -> None:
    """Write uv.lock: cut from the tested pins for a new project; kept (and completed) for an existing one."""
    if (project / "uv.lock").exists() or pins is None:
        run_step("locking uv.lock", [uv, "lock", "--quiet"], timeout=LOCK_TIMEOUT, cwd=project)
        say("kept the pins of the existing uv.lock")
        return
    cut_lock(uv, project, pins)
    say(f"wrote uv.lock: the pins the template's CI verified ({len(pins.requirements)} packages, "
        f"files published before {pins.exclude_newer}), with hashes, for every supported Python")


def cut_lock(uv: str, project: Path, pins: Pins) -> None:
    """Lock with the pins as uv constraints, then take them (and their date) out of the lock again.

    uv reads constraints only from pyproject.toml, so they are there for one ``uv lock`` and the file is
    restored byte for byte. What the constraints and the date leave in uv.lock (``[manifest]``
    ``constraints`` and ``[options]`` ``exclude-newer``) is removed, and ``uv lock --check`` proves
    that the lock then fits the project as it is: later ``uv sync --locked`` and ``uv lock`` keep it.
    """
    pyproject = project / "pyproject.toml"
    original = pyproject.read_bytes()
    settings = "constraint-dependencies = " + json.dumps(pins.requirements) + "\n"
    if pins.exclude_newer:
        settings += f"exclude-newer = {json.dumps(pins.exclude_newer)}\n"
    text = original.decode("utf-8")
    if TOOL_UV not in text:
        raise HookFailure(f"pyproject.toml has no {TOOL_UV.strip()} table to put the pins in")
    try:
        pyproject.write_text(text.replace(TOOL_UV, TOOL_UV + settings, 1), encoding="utf-8")
        run_step("locking uv.lock from the tested pins", [uv, "lock", "--quiet"], timeout=LOCK_TIMEOUT, cwd=project)
    finally:
        pyproject.write_bytes(original)
    lock_file = project / "uv.lock"
    locked = LOCKED_OPTIONS.sub("", LOCKED_CONSTRAINTS.sub("", lock_file.read_text(encoding="utf-8"), count=1), count=1)
    lock_file.write_text(locked, encoding="utf-8")
    run_step("checking uv.lock against pyproject.toml", [uv, "lock", "--check", "--offline", "--quiet"],
             timeout=LOCK_TIMEOUT, cwd=project)


def verification_python() -> str:
    """The interpreter verification uses: this one if the project supports it, else python3.X on PATH."""
    lowest = version_tuple(PYTHON_VERSION)
    if sys.version_info[:2] >= lowest:
        return sys.executable
    candidates = [version for version in SUPPORTED_PYTHONS if version_tuple(version) >= lowest]
    for version in candidates:
        found = shutil.which(f"python{version}")
        if found and reports_version(found, version):
            return found
    names = " or ".join(f"python{version}" for version in candidates)
    raise NoSuitablePython(
        f"verification needs Python {PYTHON_VERSION} or newer (python_version), but cookiecutter runs on "
        f"{sys.version_info.major}.{sys.version_info.minor} and there is no {names} on PATH: install one, "
        f"or generate with verify=false (or {SKIP_VERIFY_ENV}=1) and run `make test PYTHON=python{PYTHON_VERSION}` "
        f"once it is there"
    )


def version_tuple(version: str) -> tuple:
    return tuple(int(part) for part in version.split("."))


def reports_version(python: str, version: str) -> bool:
    """Whether ``python`` runs (a pyenv shim of an unselected version does not) and is ``version``."""
    code = "import sys; print('.'.join(map(str, sys.version_info[:2])))"
    try:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and result.stdout.strip() == version


def reachable_test_servers(venv_python: Path) -> dict:
    """The test servers that answer, as the environment that names them to the tests: each one's
    variable when the caller exports it (as the README shows), else the README's local URL."""
    chosen = [name for name, is_chosen in (("postgresql", DATABASE == "postgresql"), ("redis", CACHE == "redis"))
              if is_chosen] + ([BROKER] if BROKER != "none" else [])
    env = {}
    for name in chosen:
        variable, documented_url, probe = TEST_SERVERS[name]
        url = os.environ.get(variable) or documented_url
        try:
            answered = subprocess.run([str(venv_python), "-c", probe, url], capture_output=True,
                                      timeout=PROBE_TIMEOUT, env=tool_env()).returncode == 0
        except subprocess.TimeoutExpired:
            answered = False
        if answered:
            env[variable] = url
    return env


def canonical(name: str) -> str:
    """A distribution name as a module name would be written: lowercase, runs of -_. as one underscore."""
    return re.sub(r"[-_.]+", "_", name).lower()


def module_of(distribution: str) -> str | None:
    """The top-level module a distribution installs (None for type stubs, which install none)."""
    name = canonical(distribution)
    for pattern, module in MODULE_OF_DISTRIBUTION:
        if pattern.fullmatch(name):
            return module
    return name


def declared_modules(project: Path) -> dict:
    """Top-level module -> the requirement that brings it, for everything the rendered pyproject.toml declares:
    the build backend, the dependencies, every extra and dependency group (the project's own name left out)."""
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = list(data.get("build-system", {}).get("requires", []))
    requirements += data["project"].get("dependencies", [])
    for group in [*data["project"].get("optional-dependencies", {}).values(), *data.get("dependency-groups", {}).values()]:
        requirements += [requirement for requirement in group if isinstance(requirement, str)]
    own = canonical(data["project"]["name"])
    modules = {}
    for requirement in requirements:
        match = REQUIREMENT_NAME.match(requirement)
        if match and canonical(match.group(1)) != own:
            module = module_of(match.group(1))
            if module:
                modules.setdefault(module, f"declared in pyproject.toml as {requirement.split(';')[0].strip()!r}")
    return modules


def installed_modules(venv_python: Path) -> dict:
    """Top-level module -> the distributions that install it, for everything in .venv but the project itself."""
    try:
        result = subprocess.run([str(venv_python), "-c", INSTALLED_MODULES], capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT, env=tool_env())
        found = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        found = None
    if not isinstance(found, dict):
        raise HookFailure("listing the modules installed in .venv failed")
    own = canonical(PROJECT_SLUG)
    return {
        module: f"installed in .venv by {', '.join(sorted(set(distributions)))}"
        for module, distributions in found.items()
        if any(canonical(distribution) != own for distribution in distributions)
    }


def check_package_name(modules: dict) -> None:
    """Refuse package_name if it is one of ``modules``: the project's package would shadow that module."""
    if PACKAGE_NAME in modules:
        raise ShadowingPackageName(PACKAGE_NAME, modules[PACKAGE_NAME])


def verify(uv: str, python: str, project: Path, log: Path, pins: Pins | None) -> str:
    """Install into .venv and run the tests; returns pytest's counts (and why tests were skipped)."""
    venv_python = project / ".venv" / "bin" / "python"
    # Exactly what uv.lock holds (hashes checked), the dev group and the project itself included:
    # what `make install` does. An existing .venv (a second run) is reused.
    run_step(
        "installing uv.lock into .venv",
        [uv, "sync", "--locked", "--python", python],
        timeout=INSTALL_TIMEOUT, log=log, cwd=project,
    )
    # Every module the lock installed, the dependencies' own dependencies included.
    check_package_name(installed_modules(venv_python))
    servers = reachable_test_servers(venv_python)
    tests_started = log.stat().st_size
    try:
        run_step("running the generated tests", [str(venv_python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                 # Wide enough that pytest's summary keeps each failure's message on its line.
                 timeout=TEST_TIMEOUT, log=log, cwd=project, extra_env={**servers, "COLUMNS": "1000"})
    except HookFailure as failure:
        with log.open(encoding="utf-8", errors="replace") as handle:
            handle.seek(tests_started)
            output = handle.read()
        if not FAILED_TEST.search(output):  # pytest did not get as far as running tests
            raise
        raise TestsFailed(output, untested_versions(venv_python, pins)) from failure
    # Tell the Makefile the environment is installed, so `make run` does not reinstall.
    (project / ".venv" / ".installed").touch()
    with log.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(tests_started)
        return test_outcome(handle.read(), servers)


def untested_versions(venv_python: Path, pins: Pins | None) -> list:
    """``name version (tested: ...)`` for each installed distribution the tested pins hold at another version."""
    if pins is None:
        return []
    try:
        result = subprocess.run([str(venv_python), "-c", INSTALLED_VERSIONS], capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT, env=tool_env())
        installed = json.loads(result.stdout) if result.returncode == 0 else {}
    except (OSError, subprocess.SubprocessError, ValueError):
        installed = {}
    found = []
    for name, version in sorted(installed.items()):
        tested = pins.versions.get(canonical(name))
        if tested and version not in tested:
            found.append(f"{name} {version} (tested: {', '.join(sorted(tested))})")
    return found


def test_outcome(output: str, servers: dict) -> str:
    """pytest's counts as it printed them, with the reasons for skips and which test servers were used."""
    counts = PYTEST_COUNTS.findall(output)
    outcome = counts[-1] if counts else "tests passed"
    reasons = [f"{count} need {server}" for count, server in SKIP_REASON.findall(output)]
    if reasons:
        outcome += f": {', '.join(reasons)} (the README's `make test` says how to run them)"
    if servers:
        outcome += f", against {', '.join(sorted(servers.values()))}"
    return outcome


def prune(project: Path) -> None:
    chosen = {DATABASE, CACHE}
    unwanted = [path for service, paths in OPTIONAL_FILES.items() if service not in chosen for path in paths]
    if not chosen & set(OPTIONAL_FILES) and BROKER == "none":
        unwanted += BACKING_SERVICE_FILES
    unwanted += [path for broker, path in BROKER_MODULES.items() if broker != BROKER]
    unwanted += [path for broker, path in BROKER_PROBES.items() if broker != BROKER]
    unwanted += [path for auth, path in API_ACCESS_MODULES.items() if auth != AUTH]
    unwanted += [path for broker, path in BROKER_ONLY_TESTS.items() if broker != BROKER]
    if AUTH != "oidc":
        unwanted += OIDC_FILES
    if BROKER == "none":
        unwanted += BROKER_FILES + OUTBOX_FILES + DIRECT_PUBLISHING_FILES
    else:
        unwanted += DIRECT_PUBLISHING_FILES if DATABASE == "postgresql" else OUTBOX_FILES
    for path in unwanted:
        target = project / path.format(package=PACKAGE_NAME, slug=PROJECT_SLUG)
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    for chosen, name in (
        (BROKER_MODULES.get(BROKER), BROKER_MODULE),
        (BROKER_PROBES.get(BROKER), BROKER_PROBE),
        (API_ACCESS_MODULES.get(AUTH), API_ACCESS_MODULE),
    ):
        source = project / (chosen or "-").format(package=PACKAGE_NAME)
        if source.is_file():  # not on a second run of this hook
            source.replace(project / name.format(package=PACKAGE_NAME))


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


def git_environment() -> dict:
    """The caller's environment, minus anything that points git elsewhere; the answers are the author."""
    env = {name: value for name, value in os.environ.items() if name not in GIT_LOCATION}
    env.update(GIT_AUTHOR_NAME=AUTHOR_NAME, GIT_AUTHOR_EMAIL=AUTHOR_EMAIL, GIT_TERMINAL_PROMPT="0")
    return env


def git_reason(result: subprocess.CompletedProcess) -> str:
    """git's own reason, in one line: its last error or fatal line, else its last line."""
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (errors or lines or [f"exit code {result.returncode}"])[-1]


def make_repository(project: Path) -> str:
    """``git init`` the project and commit every generated file; returns the one line that says what happened."""
    git = shutil.which("git")
    if git is None:
        return "git is not on PATH: the project is not a git repository (run `git init` there later)"
    env = git_environment()

    def run_git(*args: str, cwd: Path = project) -> subprocess.CompletedProcess:
        return subprocess.run([git, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=GIT_TIMEOUT)

    try:
        where = run_git("rev-parse", "--is-inside-work-tree", "--show-toplevel")
        if where.returncode == 0 and where.stdout.startswith("true"):
            top = Path(where.stdout.splitlines()[1])
            if top == project:
                return "the project is already a git repository: nothing committed"
            # A folder the enclosing repository ignores (like build/) may hold a repository of its own.
            if run_git("check-ignore", "--quiet", str(project), cwd=top).returncode != 0:
                return f"the project is inside the git work tree of {top}: not made a repository of its own"
        elif "not a git repository" not in where.stderr:
            return f"git cannot tell whether the project is in a repository ({git_reason(where)}): not made one"
        for args, what in (
            (("init", "--quiet"), "git init"),
            (("symbolic-ref", "HEAD", "refs/heads/main"), "naming the branch main"),
            (("add", "--all"), "git add"),
            (("-c", f"user.name={AUTHOR_NAME}", "-c", f"user.email={AUTHOR_EMAIL}", "commit", "--quiet",
              "--message", f"Generate {PROJECT_SLUG} from the pychassis template {TEMPLATE_VERSION}"), "the first commit"),
        ):
            result = run_git(*args)
            if result.returncode != 0:
                return f"made no first commit: {what} failed ({git_reason(result)}); commit the files yourself"
    except subprocess.TimeoutExpired:
        return f"made no first commit: git did not answer within {GIT_TIMEOUT} s; commit the files yourself"
    except (OSError, ValueError) as error:  # ValueError: an answer with a NUL character
        return f"made no first commit: git could not run ({error}); commit the files yourself"
    made = "made a git repository (branch main) with one commit of the generated files"
    if CRUFT_COMMIT:  # cruft create writes .cruft.json after this hook
        made += "; commit .cruft.json, which cruft writes next, before running `cruft update`"
    return made


def next_steps(project: Path) -> list:
    """The three commands that take a new project from here to a running service."""
    steps = [f"cd {project}"]
    backing = [name for name, chosen in (("postgres", DATABASE == "postgresql"), ("redis", CACHE == "redis"),
                                         (BROKER, BROKER != "none")) if chosen]
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


def finish(project: Path, outcome: str) -> int:
    """The last step, once every file (uv.lock included) is written: the first commit, then the summary."""
    say(make_repository(project))
    summary(project, outcome)
    return 0


def main() -> int:
    project = Path.cwd()
    pins = take_pins(project)
    prune(project)
    if rendered_for_comparison():
        say("rendered for cruft to compare: not locked or verified (the project keeps its uv.lock and .venv); "
            "if the update changes dependencies in pyproject.toml, run `make lock`")
        return 0
    try:
        check_package_name(declared_modules(project))
    except ShadowingPackageName as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 1
    if is_true(os.environ.get(SKIP_LOCK_ENV, "")):
        say(f"{SKIP_LOCK_ENV} is set: no uv.lock written and nothing verified; run `make lock` later")
        return finish(project, "not locked")
    should_verify = is_true(VERIFY_ANSWER) and not is_true(os.environ.get(SKIP_VERIFY_ENV, ""))
    started = time.monotonic()
    try:
        # Before anything slow: without a suitable Python there is nothing to verify with.
        python = verification_python() if should_verify else sys.executable
    except NoSuitablePython as failure:
        print(f"[pychassis] error: {failure}", file=sys.stderr)
        return 1
    log = Path(tempfile.mkstemp(prefix=f"{project.name}-verify-", suffix=".log")[1])
    try:
        url = index_url()
        if not index_is_reachable(url):
            raise HookFailure(
                f"the package index {url} cannot be reached, so dependencies cannot be locked. "
                f"Generate offline with `{SKIP_LOCK_ENV}=1` (or answer verify=false and set "
                f"{SKIP_VERIFY_ENV}=1 once online), then run `make lock` and `make install` when online"
            )
        uv = find_uv(pins.version_of("uv") if pins else None)
        lock(uv, project, pins)
        if not should_verify:
            log.unlink(missing_ok=True)
            say("verification skipped (verify=false or PYCHASSIS_SKIP_VERIFY set)")
            return finish(project, f"locked in {time.monotonic() - started:.1f} s, not verified")
        say(f"verifying with {python}: installing from the lock into .venv and running the tests ...")
        outcome = verify(uv, python, project, log, pins)
    except ShadowingPackageName as refusal:
        log.unlink(missing_ok=True)
        print(f"error: {refusal}", file=sys.stderr)
        return 1
    except HookFailure as failure:
        print(f"[pychassis] error: {failure}", file=sys.stderr)
        print(
            f"[pychassis] cookiecutter now removes the project: generate again with --keep-project-on-failure "
            f"to keep it and look, or with {SKIP_VERIFY_ENV}=1 to skip verification",
            file=sys.stderr,
        )
        if log.stat().st_size:
            print(f"[pychassis] full log: {log}", file=sys.stderr)
        return 1
    log.unlink(missing_ok=True)
    return finish(project, f"locked, installed and tested: {outcome}; verified in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
