"""Life after generation (slow tier): taking template changes with cruft, and upgrading dependencies.

A snapshot of this template becomes a git repository (commit A). ``cruft create`` generates a
verified project from it, which the hook has made a repository with one commit; the team commits
``.cruft.json`` (written by cruft after the hook) and changes the project. The template then changes
(commit B: a new setting, a changed Makefile line, a new template version) and ``cruft update``
must bring that change in cleanly, next to the team's own, without the post-generation hook
re-locking or re-verifying anything; the project's tests must still pass. ``make upgrade`` must
move pins to their newest versions and run the tests, and fail clearly, leaving uv.lock as
it was, when the package index cannot be reached.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import DEFAULT_PACKAGE, TEMPLATE_DIR, clean_env, free_port, get_json, wait_for_status

pytestmark = pytest.mark.slow

CRUFT = str(Path(sys.executable).with_name("cruft"))
LOCKS = ("uv.lock",)
GIT_IDENTITY = ["-c", "user.name=Template Tests", "-c", "user.email=tests@example.com"]
OLD_VERSION = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))["_template_version"]
NEW_VERSION = OLD_VERSION + ".post1"
PREFIX = DEFAULT_PACKAGE.upper()


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def run(cwd: Path, *command: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=clean_env(**env), timeout=timeout, check=False
    )


def digests(project: Path) -> dict[str, str]:
    return {name: hashlib.sha256((project / name).read_bytes()).hexdigest() for name in LOCKS}


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` (which must be there, so a template change cannot silently miss) by ``new``."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def snapshot_template(target: Path) -> Path:
    """This template's files (committed or not, minus ignored ones) as a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=TEMPLATE_DIR, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (TEMPLATE_DIR / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TEMPLATE_DIR / name, target / name)
    git(target, "init", "--quiet", "--initial-branch=main")
    git(target, "add", "--all")
    git(target, "commit", "--quiet", "--message", "A")
    return target


def change_template(template: Path) -> None:
    """Commit B: a new setting (code, settings.yml, README), a changed Makefile line, a new version."""
    source = template / "{{cookiecutter.project_slug}}"
    edit(
        source / "src" / "{{cookiecutter.package_name}}" / "settings.py",
        '    time: str = setting(default="unknown", help="When the service was built (shown in /info).")\n',
        '    time: str = setting(default="unknown", help="When the service was built (shown in /info).")\n'
        '    source: str = setting(default="unknown", help="Where the source of this build lives.")\n',
    )
    # As a template maintainer does: settings.yml and the README's table are written from settings.py.
    subprocess.run(
        [sys.executable, str(template / "tests" / "tools" / "settings_docs.py"), "--template", str(template)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    edit(source / "Makefile", "\t$(BIN)/python -m pytest $(ARGS)\n", "\t$(BIN)/python -m pytest --no-header $(ARGS)\n")
    edit(template / "cookiecutter.json", f'"_template_version": "{OLD_VERSION}"', f'"_template_version": "{NEW_VERSION}"')
    git(template, "commit", "--quiet", "--all", "--message", "B")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def project(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Generated with ``cruft create`` (locked and verified), committed, then changed by its team."""
    output = tmp_path_factory.mktemp("projects")
    result = run(output, CRUFT, "create", str(template), "--no-input", "--output-dir", str(output))
    assert result.returncode == 0, result.stdout + result.stderr
    project = output / "my-service"
    assert "verified in" in result.stdout, result.stdout
    # The hook made the first commit (uv.lock in, .venv out); cruft wrote .cruft.json after it: the team commits it.
    assert git(project, "rev-list", "--count", "HEAD").strip() == "1"
    assert "uv.lock" in git(project, "ls-files").split()
    assert git(project, "status", "--porcelain") == "?? .cruft.json\n"
    git(project, "add", ".cruft.json")
    git(project, "commit", "--quiet", "--message", "Link the project to its template with cruft")
    (project / "README.md").write_text(
        (project / "README.md").read_text(encoding="utf-8") + "\nOn call: #team-payments.\n", encoding="utf-8"
    )
    (project / "Makefile").write_text(
        (project / "Makefile").read_text(encoding="utf-8") + "\nrelease: ## Tag a release\n\tgit tag v$(VERSION)\n",
        encoding="utf-8",
    )
    git(project, "commit", "--quiet", "--all", "--message", "Our own changes")
    yield project


def test_cruft_create_stamps_the_template_version(project: Path, template: Path) -> None:
    cruft = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert cruft["commit"] == git(template, "rev-parse", "HEAD").strip()
    assert cruft["context"]["cookiecutter"]["_template_version"] == OLD_VERSION
    init = (project / "src" / DEFAULT_PACKAGE / "__init__.py").read_text(encoding="utf-8")
    assert f'TEMPLATE_VERSION = "{OLD_VERSION}"' in init


def test_cruft_update_brings_a_template_change_next_to_the_teams_own(project: Path, template: Path) -> None:
    change_template(template)
    locks_before = digests(project)
    installed_before = (project / ".venv" / ".installed").stat().st_mtime_ns

    result = run(project, CRUFT, "update", "--skip-apply-ask", timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "has been updated" in result.stdout, result.stdout
    # The hook saw the two throw-away renders and neither locked nor verified them.
    assert result.stdout.count("rendered for cruft to compare: not locked or verified") == 2, result.stdout
    assert "verifying" not in result.stdout
    changed = set(git(project, "diff", "HEAD", "--name-only").split())
    assert changed == {
        ".cruft.json",
        "Makefile",
        "README.md",
        "settings.yml",
        f"src/{DEFAULT_PACKAGE}/__init__.py",
        f"src/{DEFAULT_PACKAGE}/settings.py",
    }
    assert not git(project, "ls-files", "--others", "--exclude-standard"), "no .rej or other new files"
    assert digests(project) == locks_before
    assert (project / ".venv" / ".installed").stat().st_mtime_ns == installed_before

    makefile = (project / "Makefile").read_text(encoding="utf-8")
    assert "pytest --no-header $(ARGS)" in makefile and "release: ## Tag a release" in makefile
    assert "On call: #team-payments." in (project / "README.md").read_text(encoding="utf-8")
    assert "<<<<<<<" not in makefile
    cruft = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert cruft["commit"] == git(template, "rev-parse", "HEAD").strip()
    assert cruft["context"]["cookiecutter"]["_template_version"] == NEW_VERSION

    python = str(project / ".venv" / "bin" / "python")
    help_text = run(project, python, "-m", DEFAULT_PACKAGE, "--help").stdout
    assert "--build-source" in help_text and f"{PREFIX}_BUILD_SOURCE" in help_text
    tests = run(project, "make", "test", "ARGS=-q -p no:cacheprovider")
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr
    assert run(project, CRUFT, "check").returncode == 0

    port = free_port()
    service = subprocess.Popen(
        [python, "-m", DEFAULT_PACKAGE, "serve", "--server-port", str(port), "--build-source", "git.example.com/x"],
        cwd=project, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_status(service, f"http://127.0.0.1:{port}/health/ready")
        status, info = get_json(f"http://127.0.0.1:{port}/info")
        assert (status, info["template_version"]) == (200, NEW_VERSION)
    finally:
        service.terminate()
        service.wait(timeout=30)
    git(project, "commit", "--quiet", "--all", "--message", f"Take template {NEW_VERSION}")


def test_make_upgrade_without_the_index_fails_clearly_and_keeps_the_lock(project: Path) -> None:
    before = digests(project)
    unreachable = f"http://127.0.0.1:{free_port()}/simple"
    result = run(project, "make", "upgrade", timeout=300, UV_DEFAULT_INDEX=unreachable, UV_NO_CACHE="1")
    assert result.returncode != 0
    # uv wraps a long URL onto its own line, and which package it fails on first varies
    assert f"Failed to fetch: {unreachable}" in " ".join(result.stderr.split()), result.stderr
    assert "uv.lock is unchanged" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert digests(project) == before
    assert "passed" not in result.stdout, "the tests do not run after a failed upgrade"


def locked_version(project: Path, name: str) -> str:
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    [version] = [package["version"] for package in lock["package"] if package["name"] == name]
    return version


def test_make_upgrade_moves_pins_to_the_newest_and_runs_the_tests(project: Path) -> None:
    newest = locked_version(project, "click")
    # As if the project had been locked long ago: click held back for one `uv lock`, then let go
    # (uv keeps a locked version it is not asked to move).
    pyproject = project / "pyproject.toml"
    original = pyproject.read_text(encoding="utf-8")
    edit(pyproject, "[tool.uv]\n", '[tool.uv]\nconstraint-dependencies = ["click==8.2.0"]\n')
    assert run(project, "make", "lock").returncode == 0
    pyproject.write_text(original, encoding="utf-8")
    assert run(project, "make", "lock").returncode == 0
    assert locked_version(project, "click") == "8.2.0"

    result = run(project, "make", "upgrade", "ARGS=-q -p no:cacheprovider")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert f"Updated click v8.2.0 -> v{newest}" in result.stderr, result.stderr
    assert re.search(r"\d+ passed", result.stdout), result.stdout[-2000:]
    assert locked_version(project, "click") == newest
    check = run(project, str(project / ".venv" / "bin" / "uv"), "lock", "--check", "--offline")
    assert check.returncode == 0, check.stderr
    print(f"\n[figures] make upgrade: {result.stderr.count(' -> ')} pins moved, then the tests passed")
