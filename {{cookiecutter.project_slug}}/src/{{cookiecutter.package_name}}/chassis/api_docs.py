"""``/docs``: Swagger UI for the API's OpenAPI document, served from the service itself.

The browser loads nothing from elsewhere: Swagger UI's script and stylesheet come from
the ``swagger-ui-py`` package (pinned in the lock like every dependency), and the page
starts it with a script of its own rather than an inline one.  A ``Content-Security-Policy``
lets the page use the service's own origin only, so the docs work without the internet
and a script injected into the page (or a description in the OpenAPI document) cannot run.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from quart import Blueprint, Response, send_from_directory
from werkzeug.exceptions import NotFound

from .openapi import OPENAPI_PATH

DOCS_PATH = "/docs"
# Swagger UI's own files, as the package installs them.
ASSETS_DIR = Path(str(files("swagger_ui") / "static"))
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})
# The service's origin, and nothing else: no CDN, no inline script, no validator badge.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Assets change only with the package's version, and their URLs do not say which: a day.
ASSET_MAX_AGE = 24 * 3600

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>API documentation</title>
  <link rel="stylesheet" href="{DOCS_PATH}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{DOCS_PATH}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{DOCS_PATH}/swagger-ui-bundle.js"></script>
  <script src="{DOCS_PATH}/start.js"></script>
</body>
</html>
"""
# validatorUrl None: Swagger UI would otherwise send the document to validator.swagger.io.
SWAGGER_UI_OPTIONS = {"url": OPENAPI_PATH, "dom_id": "#swagger-ui", "deepLinking": True, "validatorUrl": None}
START_SCRIPT = f"window.ui = SwaggerUIBundle({json.dumps(SWAGGER_UI_OPTIONS)});\n"

blueprint = Blueprint("api_docs", __name__, url_prefix=DOCS_PATH)


def docs_location(management_port: int | None) -> str:
    """Where the docs are, as a 404 tells a client that asked for a path no route matches."""
    if management_port is None:
        return DOCS_PATH
    return f"{DOCS_PATH} on the management port ({management_port})"


@blueprint.get("")
async def page() -> Response:
    return _with_policy(Response(PAGE, content_type="text/html; charset=utf-8"))


@blueprint.get("/start.js")
async def start_script() -> Response:
    return _with_policy(Response(START_SCRIPT, content_type="text/javascript; charset=utf-8"))


@blueprint.get("/<name>")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound()
    response = await send_from_directory(ASSETS_DIR, name, cache_timeout=ASSET_MAX_AGE)
    return _with_policy(response)


def _with_policy(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
