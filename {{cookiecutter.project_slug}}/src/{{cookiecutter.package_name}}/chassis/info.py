"""``GET /info``: what is running: name, version, git commit, build time, Python and template version."""

from __future__ import annotations

import platform

from quart import Blueprint

from .. import DISTRIBUTION_NAME, TEMPLATE_VERSION, __version__
from ..settings import Settings


def info_blueprint(settings: Settings) -> Blueprint:
    """The blueprint of ``/info``; its document is made once: nothing in it changes while the process runs."""
    blueprint = Blueprint("info", __name__)
    document = {
        "name": DISTRIBUTION_NAME,
        "version": __version__,
        "commit": settings.build.commit,
        "build_time": settings.build.time,
        "python": platform.python_version(),
        "template_version": TEMPLATE_VERSION,
    }

    @blueprint.get("/info")
    async def info() -> dict[str, str]:
        return document

    return blueprint
