"""``GET /info``: what is running: name, version, git commit, build time, Python and template version."""

from __future__ import annotations

import platform

from quart import Blueprint, current_app

from .. import DISTRIBUTION_NAME, TEMPLATE_VERSION, __version__
from ..settings import Settings
from .parts import part_of

blueprint = Blueprint("info", __name__)


@blueprint.get("/info")
async def info() -> dict[str, str]:
    settings = part_of(current_app, Settings)
    return {
        "name": DISTRIBUTION_NAME,
        "version": __version__,
        "commit": settings.build.commit,
        "build_time": settings.build.time,
        "python": platform.python_version(),
        "template_version": TEMPLATE_VERSION,
    }
