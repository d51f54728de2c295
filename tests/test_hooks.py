"""The post-generation hook when the index is away, generation through cruft, the first commit,
and package names that would shadow a dependency."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import DEFAULT_SLUG, TEMPLATE_DIR, clean_env, files_of, load_hook, made_up_release, render
from interpreters import SUPPORTED

OFFLINE_LIMIT = 60.0


@pytest.fixture
def blackhole_index() -> Iterator[str]:
    """An index URL whose server accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple/"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def closed_port_index() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple/"


# Git as a user with no git configuration at all sees it: no identity, no global or system settings.
def bare_git_env(tmp_path: Path, config: str = "") -> dict[str, str]:
    (tmp_path / "gitconfig").write_text(config, encoding="utf-8")
    return {"GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def repository_line(stdout: str) -> str:
    """What the hook said about the repository: its line just before the summary."""
    lines = [line for line in stdout.splitlines() if line.startswith("[pychassis]")]
    return lines[lines.index(next(line for line in lines if line.startswith("[pychassis] created "))) - 1]


@pytest.mark.parametrize("kind", ["refused", "blackhole"])
def test_unreachable_index_fails_fast_and_says_how_to_go_offline(
    tmp_path: Path, kind: str, blackhole_index: str
) -> None:
    index = closed_port_index() if kind == "refused" else blackhole_index
    result = render(tmp_path, skip_lock=False, env={"UV_DEFAULT_INDEX": index}, timeout=120)
    assert result.returncode != 0
    assert result.seconds < OFFLINE_LIMIT
    assert "cannot be reached" in result.stderr
    assert "PYCHASSIS_SKIP_LOCK=1" in result.stderr
    assert "Traceback" not in result.stderr


def test_skip_lock_generates_offline(tmp_path: Path) -> None:
    result = render(tmp_path, env={"UV_DEFAULT_INDEX": closed_port_index()})
    assert result.returncode == 0, result.stderr
    project = result.project()
    assert not (project / "uv.lock").exists()
    assert not (project / "tested-pins.txt").exists(), "the pins are the hook's, never the project's"
    assert not (project / ".venv").exists()


def test_verify_false_locks_without_installing(tmp_path: Path) -> None:
    result = render(tmp_path, {"verify": False}, skip_lock=False)
    assert result.returncode == 0, result.stderr
    project = result.project()
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    packages = {package["name"]: package for package in lock["package"]}
    assert {"quart", "pytest", "mypy", "uv"} <= packages.keys(), "the runtime and the dev group"
    for package in packages.values():
        if "wheels" in package or "sdist" in package:
            files = [*package.get("wheels", []), package.get("sdist", {"hash": "sha256:x"})]
            assert all(file["hash"].startswith("sha256:") for file in files), package["name"]
    assert not (project / "tested-pins.txt").exists()
    assert not (project / ".venv").exists()
    assert "verification skipped" in result.stdout


def test_skip_verify_switch_matches_verify_false(tmp_path: Path) -> None:
    result = render(tmp_path, skip_lock=False, env={"PYCHASSIS_SKIP_VERIFY": "1"})
    assert result.returncode == 0, result.stderr
    assert (result.project() / "uv.lock").is_file()
    assert not (result.project() / ".venv").exists()


def the_tested_pins() -> dict[str, set[str]]:
    """Package -> the version(s) tested-pins.txt holds (a package may be pinned per Python)."""
    found: dict[str, set[str]] = {}
    for line in (TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "tested-pins.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            found.setdefault(name, set()).add(version)
    return found


def test_generation_gives_the_tested_pins_byte_for_byte_whatever_the_index_released_since(tmp_path: Path) -> None:
    """Newer releases visible on the index (made up, in a find-links folder): two generations still give
    the same uv.lock, every version of which is the tested one, and that uv accepts as it is."""
    releases = tmp_path / "releases"
    releases.mkdir()
    made_up_release(releases, "structlog", "99.0.0", "raise ImportError('a release nobody tested')\n")
    made_up_release(releases, "sentry-sdk", "99.0.0", "raise ImportError('a release nobody tested')\n")
    answers = {"database": "postgresql", "cache": "redis", "broker": "rabbitmq", "auth": "oidc", "verify": False}
    env = {"UV_FIND_LINKS": str(releases)}
    locks = []
    for run in ("first", "second"):
        result = render(tmp_path / run, answers, skip_lock=False, env=env)
        assert result.returncode == 0, result.stderr
        locks.append((result.project() / "uv.lock").read_bytes())
    assert locks[0] == locks[1]
    pins = the_tested_pins()
    lock = tomllib.loads(locks[0].decode())
    for package in lock["package"]:
        if package["name"] != "my-service":
            assert package["version"] in pins[package["name"]], package["name"]
    check = subprocess.run([str(Path(sys.executable).with_name("uv")), "lock", "--check", "--offline"],
                           cwd=tmp_path / "first" / "my-service", capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


@pytest.mark.slow
def test_a_failed_verification_names_the_failing_test_and_the_version_nobody_tested(tmp_path: Path) -> None:
    """A project whose uv.lock was moved to a made-up sentry-sdk that breaks as 3.0 broke 2.x's callers,
    verified again: the last lines name the test, the error behind it, and the untested version."""
    releases = tmp_path / "releases"
    releases.mkdir()
    made_up_release(releases, "sentry-sdk", "9.0.0",
                    "def init(**options):\n    raise TypeError(\"Unknown option 'include_local_variables'\")\n")
    env = {"UV_FIND_LINKS": str(releases)}
    result = render(tmp_path / "out", {"verify": False}, skip_lock=False, env=env)
    assert result.returncode == 0, result.stderr
    project = result.project()
    moved = subprocess.run([str(Path(sys.executable).with_name("uv")), "lock", "--upgrade-package", "sentry-sdk"],
                           cwd=project, env=clean_env(**env), capture_output=True, text=True, check=False)
    assert "sentry-sdk v3" in moved.stderr and "-> v9.0.0" in moved.stderr, moved.stderr
    again = render(tmp_path / "out", skip_lock=False, env=env,
                   extra_args=("--overwrite-if-exists", "--keep-project-on-failure"))
    assert again.returncode != 0
    ours = [line for line in again.stderr.splitlines() if line.startswith(("[pychassis]", "    "))]
    text = "\n".join(ours)
    assert "the generated tests failed (1 failed" in text, again.stderr[-3000:]
    assert ("FAILED tests/test_error_reporting.py::test_an_unhandled_error_is_reported_with_its_context_and_no_secret"
            " - RuntimeError: startup failed: resource 'error_reporting' failed to start: "
            "TypeError(\"Unknown option 'include_local_variables'\")") in text
    tested = ", ".join(sorted(the_tested_pins()["sentry-sdk"]))
    assert f"likely cause: installed versions that are not the ones the template's CI verified: " \
           f"sentry-sdk 9.0.0 (tested: {tested})" in text
    assert "--keep-project-on-failure" in ours[-2] and "PYCHASSIS_SKIP_VERIFY=1" in ours[-2]
    assert ours[-1].startswith("[pychassis] full log: /")
    assert "Traceback" not in again.stderr


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """This template as a git repository, as cruft expects to find it."""
    repo = tmp_path / "template"
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*_cache", "build", ".work")
    shutil.copytree(TEMPLATE_DIR, repo, ignore=ignore)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "template"], check=True)
    return repo


def test_cruft_create_works(tmp_path: Path, template_repo: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env = clean_env(PYCHASSIS_SKIP_LOCK="1")
    result = subprocess.run(
        [sys.executable, "-m", "cruft", "create", "--no-input", "--output-dir", str(out), str(template_repo)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    project = out / "my-service"
    cruft = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert cruft["context"]["cookiecutter"]["package_name"] == "my_service"
    assert (project / "src" / "my_service" / "cli.py").is_file()
    # The hook committed everything before cruft wrote .cruft.json, and says to commit that too.
    assert "commit .cruft.json, which cruft writes next" in result.stdout
    assert git(project, "status", "--porcelain") == "?? .cruft.json\n"
    check = subprocess.run([sys.executable, "-m", "cruft", "check"], cwd=project, capture_output=True, text=True,
                           env=env, check=False, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def test_failed_lock_says_what_failed_and_how_to_skip(tmp_path: Path) -> None:
    """An index that answers but lacks the packages: the hook names the step and the way out."""
    empty_index = tmp_path / "index"
    empty_index.mkdir()
    result = render(tmp_path / "out", skip_lock=False, env={"UV_DEFAULT_INDEX": empty_index.as_uri()})
    assert result.returncode != 0
    assert "error: locking uv.lock from the tested pins failed" in result.stderr
    assert "PYCHASSIS_SKIP_VERIFY=1" in result.stderr
    assert "--keep-project-on-failure" in result.stderr
    assert "Traceback" not in result.stderr


def test_failed_verification_shows_the_cause_and_the_log(tmp_path: Path) -> None:
    """pytest refusing to start (an option it does not know): the hook names the step and shows the cause."""
    result = render(tmp_path, skip_lock=False, env={"PYTEST_ADDOPTS": "--no-such-option"})
    assert result.returncode != 0
    assert "error: running the generated tests failed" in result.stderr
    assert "the log ends with:" in result.stderr
    assert "--no-such-option" in result.stderr.split("the log ends with:")[1]
    assert "[pychassis] full log: /" in result.stderr


def test_without_a_suitable_python_verification_stops_at_once_saying_what_is_needed(tmp_path: Path) -> None:
    """python_version above the Python running cookiecutter, and no python3.X for it on PATH."""
    newer = f"3.{sys.version_info.minor + 1}"
    if newer not in SUPPORTED:
        pytest.skip(f"this Python ({sys.version}) is already the newest supported")
    result = render(tmp_path, {"python_version": newer}, skip_lock=False, env={"PATH": str(tmp_path / "empty")})
    assert result.returncode != 0
    assert result.seconds < 10, "it stops before locking"
    ours = [line for line in result.stderr.splitlines() if line.startswith("[pychassis]")]
    assert len(ours) == 1, result.stderr
    assert f"verification needs Python {newer} or newer" in ours[0]
    assert f"no python{newer}" in ours[0]
    assert "verify=false" in ours[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_verification_reports_the_real_counts_and_why_tests_were_skipped(tmp_path: Path) -> None:
    """Redis chosen, but none answers where the hook looks: its tests skip, and the summary says so."""
    nothing_listens = closed_port_index().replace("http://", "redis://").replace("/simple/", "/0")
    result = render(tmp_path, {"cache": "redis"}, skip_lock=False, env={"MY_SERVICE_TEST_CACHE_URL": nothing_listens})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = next(line for line in result.stdout.splitlines() if "created " in line)
    counts = re.search(r"tested: (\d+) passed, (\d+) skipped: (\d+) need Redis \(the README's `make test`", summary)
    assert counts, summary
    assert int(counts.group(1)) > 0
    assert counts.group(2) == counts.group(3)
    assert "all tests passed" not in result.stdout


def test_the_project_is_a_repository_with_one_commit_by_the_author(tmp_path: Path) -> None:
    answers = {"author_name": "Team Payments", "author_email": "payments@example.com"}
    result = render(tmp_path / "out", answers, env=bare_git_env(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    project = result.project()
    assert repository_line(result.stdout) == (
        "[pychassis] made a git repository (branch main) with one commit of the generated files"
    )
    assert git(project, "rev-parse", "--show-toplevel").strip() == str(project)
    assert git(project, "rev-list", "--count", "HEAD").strip() == "1"
    assert git(project, "log", "--format=%an <%ae>|%cn <%ce>").strip() == (
        "Team Payments <payments@example.com>|Team Payments <payments@example.com>"
    )
    assert git(project, "branch", "--show-current").strip() == "main"
    assert git(project, "status", "--porcelain", "--untracked-files=all") == ""
    tracked = set(git(project, "ls-files").splitlines())
    assert tracked == {str(path.relative_to(project)) for path in files_of(project)}
    assert {"pyproject.toml", ".gitignore", f"src/{DEFAULT_SLUG.replace('-', '_')}/app.py"} <= tracked
    # The verified project's byproducts never reach a commit.
    ignored = (project / ".gitignore").read_text(encoding="utf-8").split()
    assert {".venv/", "__pycache__/", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/"} <= set(ignored)


def test_inside_another_work_tree_no_repository_is_made(tmp_path: Path) -> None:
    outer = tmp_path / "monorepo"
    outer.mkdir()
    git(outer, "init", "--quiet")
    result = render(outer / "services", env=bare_git_env(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (result.project() / ".git").exists()
    assert repository_line(result.stdout) == (
        f"[pychassis] the project is inside the git work tree of {outer}: not made a repository of its own"
    )
    assert git(outer, "rev-list", "--all") == "", "nothing was committed to the outer repository"


def test_in_a_folder_its_work_tree_ignores_the_project_has_its_own_repository(tmp_path: Path) -> None:
    """Like the README's `--output-dir build` in a checkout of this template, whose .gitignore has /build/."""
    outer = tmp_path / "checkout"
    outer.mkdir()
    git(outer, "init", "--quiet")
    (outer / ".gitignore").write_text("/build/\n", encoding="utf-8")
    result = render(outer / "build", env=bare_git_env(tmp_path), timeout=120)
    assert result.returncode == 0, result.stderr
    assert git(result.project(), "rev-parse", "--show-toplevel").strip() == str(result.project())
    assert git(result.project(), "rev-list", "--count", "HEAD").strip() == "1"
    assert git(outer, "status", "--porcelain") == "?? .gitignore\n"


def test_without_git_the_hook_says_so_and_generates(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = render(tmp_path / "out", env={"PATH": str(empty)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not (result.project() / ".git").exists()
    assert repository_line(result.stdout) == (
        "[pychassis] git is not on PATH: the project is not a git repository (run `git init` there later)"
    )


def test_a_refused_commit_is_said_in_one_line_and_generation_goes_on(tmp_path: Path) -> None:
    """A global pre-commit hook that refuses every commit (core.hooksPath in the user's git config)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "pre-commit").write_text("#!/bin/sh\necho 'policy: no commits today' >&2\nexit 1\n", encoding="utf-8")
    (hooks / "pre-commit").chmod(0o755)
    result = render(tmp_path / "out", env=bare_git_env(tmp_path, f"[core]\n\thooksPath = {hooks}\n"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert repository_line(result.stdout) == (
        "[pychassis] made no first commit: the first commit failed (policy: no commits today); commit the files yourself"
    )
    assert (result.project() / "pyproject.toml").is_file()
    assert git(result.project(), "status", "--porcelain").startswith("A  "), "the files are staged, ready to commit"


def test_every_declared_dependency_is_named_by_the_module_it_installs() -> None:
    """The hook's distribution -> module rule against the metadata of each dependency installed here."""
    hook = load_hook("post_gen_project")
    text = (TEMPLATE_DIR / "{{cookiecutter.project_slug}}" / "pyproject.toml").read_text(encoding="utf-8")
    # Every variant: Jinja's statements dropped, its expressions made plain names.
    text = re.sub(r"^\s*\{%.*%\}\s*$", "", text, flags=re.M)
    text = re.sub(r"\{\{[^}]*\|\s*quoted\s*\}\}", '"x"', text)
    text = re.sub(r"\{\{[^}]*\}\}", "x", text)
    data = tomllib.loads(text)
    requirements = [*data["build-system"]["requires"], *data["project"]["dependencies"]]
    for group in data["dependency-groups"].values():
        requirements += [requirement for requirement in group if isinstance(requirement, str)]
    provided = importlib.metadata.packages_distributions()
    checked = []
    for requirement in requirements:
        name = hook.REQUIREMENT_NAME.match(requirement).group(1)
        try:
            distribution = importlib.metadata.distribution(name).metadata["Name"]
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed for the template's tests (watchfiles, uv_build, the project itself)
        modules = {module for module, names in provided.items() if distribution in names}
        module = hook.module_of(name)
        if module is None:
            assert all(found.endswith("-stubs") for found in modules), (name, modules)
        else:
            assert module in modules, f"{name} installs {sorted(modules)}, the hook says {module}"
        checked.append(name)
    assert len(checked) >= 25, checked


@pytest.mark.parametrize(
    ("answers", "module", "source"),
    [
        ({"package_name": "quart"}, "quart", "'quart>=0.20'"),
        ({"package_name": "yaml"}, "yaml", "'pyyaml>=6.0'"),
        ({"package_name": "opentelemetry"}, "opentelemetry", "'opentelemetry-api>=1.27'"),
        ({"package_name": "pytest_asyncio"}, "pytest_asyncio", "'pytest-asyncio>=1.4'"),
        ({"package_name": "uv_build"}, "uv_build", "'uv_build>=0.13,<0.14'"),
        ({"package_name": "redis", "cache": "redis"}, "redis", "'redis>=5.0.1'"),
    ],
)
def test_a_package_name_shadowing_a_declared_dependency_is_refused(
    tmp_path: Path, answers: dict, module: str, source: str
) -> None:
    result = render(tmp_path, answers, timeout=120)
    assert result.returncode != 0
    assert (
        f"error: package_name = {module!r}: shadows a module the service depends on "
        f"({module}, declared in pyproject.toml as {source})"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir()), "cookiecutter removes the project"


def test_a_dependency_of_an_option_not_chosen_is_a_free_name(tmp_path: Path) -> None:
    result = render(tmp_path, {"package_name": "redis"}, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_installed_modules_are_checked_too() -> None:
    """The exact check verification makes once the lock is installed, here against this environment."""
    hook = load_hook("post_gen_project", {"package_name": "werkzeug"})
    installed = hook.installed_modules(Path(sys.executable))
    with pytest.raises(hook.ShadowingPackageName) as refusal:
        hook.check_package_name(installed)
    assert str(refusal.value) == (
        "package_name = 'werkzeug': shadows a module the service depends on (werkzeug, installed in .venv by Werkzeug)"
    )
    load_hook("post_gen_project", {"package_name": "billing"}).check_package_name(installed)


@pytest.mark.slow
def test_a_package_name_shadowing_a_dependency_of_a_dependency_is_refused_once_installed(tmp_path: Path) -> None:
    """``priority`` comes with Hypercorn (through h2): only the installed environment knows it."""
    result = render(tmp_path, {"package_name": "priority"}, skip_lock=False, timeout=600)
    assert result.returncode != 0
    assert (
        "error: package_name = 'priority': shadows a module the service depends on "
        "(priority, installed in .venv by priority)"
    ) in result.stderr
    assert "running the generated tests" not in result.stdout + result.stderr, "it stops before the tests"
    assert not any(tmp_path.iterdir()), "cookiecutter removes the project"
