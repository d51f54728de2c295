"""``GET /info``: what is running: name, version, git commit, build time, Python and template version.

The commit is ``build.commit`` (an image's build sets it); left unset, it is the short commit
of the git checkout the package runs from, asked of ``git`` once per process when the app
is built (``unknown`` without git or outside a checkout).
"""

from __future__ import annotations

import functools
import platform
import shutil
import string
import subprocess
from pathlib import Path

from quart import Blueprint

from .. import DISTRIBUTION_NAME, TEMPLATE_VERSION, __version__
from ..settings import BuildSettings, Settings

UNKNOWN = "unknown"
# The package's own directory: a checkout's ``src/<package>`` when installed editable (``make install``).
PACKAGE_DIR = Path(__file__).resolve().parent.parent
GIT_TIMEOUT = 2.0


def running_commit(build: BuildSettings) -> str:
    """``build.commit``, or when it is not set, the commit of the checkout the service runs from."""
    return build.commit if build.commit != UNKNOWN else checkout_commit(PACKAGE_DIR)


@functools.cache
def checkout_commit(directory: Path) -> str:
    """The short commit of the git checkout ``directory`` is in; ``unknown`` if git cannot say."""
    git = shutil.which("git")
    if git is None:
        return UNKNOWN
    try:
        found = subprocess.run(  # noqa: S603 (a fixed command; nothing in it comes from outside)
            [git, "rev-parse", "--short", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    commit = found.stdout.strip()
    is_commit = found.returncode == 0 and commit != "" and set(commit) <= set(string.hexdigits)
    return commit if is_commit else UNKNOWN


def info_blueprint(settings: Settings) -> Blueprint:
    """The blueprint of ``/info``; its document is made once: nothing in it changes while the process runs."""
    blueprint = Blueprint("info", __name__)
    document = {
        "name": DISTRIBUTION_NAME,
        "version": __version__,
        "commit": running_commit(settings.build),
        "build_time": settings.build.time,
        "python": platform.python_version(),
        "template_version": TEMPLATE_VERSION,
    }

    @blueprint.get("/info")
    async def info() -> dict[str, str]:
        return document

    return blueprint
