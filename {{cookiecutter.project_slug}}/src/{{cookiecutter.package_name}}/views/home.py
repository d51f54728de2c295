"""``GET /``: which service this is."""

from __future__ import annotations

from quart import Blueprint

from .. import DISTRIBUTION_NAME, __version__

blueprint = Blueprint("home", __name__)


@blueprint.get("/")
async def index() -> dict[str, str]:
    return {"name": DISTRIBUTION_NAME, "version": __version__}
