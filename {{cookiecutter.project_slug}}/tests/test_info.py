from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from {{ cookiecutter.package_name }} import (
    DISTRIBUTION_NAME,
    TEMPLATE_VERSION,
    __version__,
)
from {{ cookiecutter.package_name }}.chassis.info import PACKAGE_DIR, checkout_commit
from {{ cookiecutter.package_name }}.settings import BuildSettings, Settings

from .apps import create_test_app


async def test_info_without_build_settings_shows_the_checkouts_commit(client: QuartClient) -> None:
    response = await client.get("/info")
    assert response.status_code == 200
    assert await response.get_json() == {
        "name": DISTRIBUTION_NAME,
        "version": __version__,
        "commit": checkout_commit(PACKAGE_DIR),
        "build_time": "unknown",
        "python": platform.python_version(),
        "template_version": TEMPLATE_VERSION,
    }


async def test_info_shows_build_settings() -> None:
    app: Quart = create_test_app(Settings(build=BuildSettings(commit="abc1234", time="2026-01-02T03:04:05Z")))
    body = await (await app.test_client().get("/info")).get_json()
    assert (body["commit"], body["build_time"]) == ("abc1234", "2026-01-02T03:04:05Z")


def git(*args: str, cwd: Path) -> str:
    command = [str(shutil.which("git")), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, timeout=10).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_commit_is_the_checkouts_short_commit(tmp_path: Path) -> None:
    git("init", "-q", cwd=tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "one", cwd=tmp_path)
    (tmp_path / "src").mkdir()
    commit = checkout_commit(tmp_path / "src")
    assert commit == git("rev-parse", "--short", "HEAD", cwd=tmp_path).strip()
    assert len(commit) >= 7


def test_the_commit_is_unknown_outside_a_checkout_or_without_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    assert checkout_commit(tmp_path / "plain") == "unknown"
    (tmp_path / "no-git").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-git"))
    assert checkout_commit(tmp_path / "no-git") == "unknown"
