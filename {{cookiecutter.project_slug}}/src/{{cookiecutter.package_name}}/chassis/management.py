"""The management port: metrics, health, info and the API docs apart from the API (``management.port``).

With ``management.port`` set, the service listens on two ports, and each endpoint answers
on one of them only, 404 on the other: the management endpoints on ``management.port``,
the API on ``server.port``.  The API's port, the one a Service and an Ingress expose, then
shows no metrics, no health details and no documentation; the management port is reached
by the kubelet's probes and the metrics scraper alone (the chart's NetworkPolicy sees to it).
A worker, which has no API, listens on the management port only.
"""

from __future__ import annotations

from quart import Quart, request
from werkzeug.exceptions import NotFound

from ..settings import Settings
from .api_docs import DOCS_PATH
from .openapi import OPENAPI_PATH

HEALTH_PREFIX = "/health/"
INFO_PATH = "/info"


def is_management_path(path: str, metrics_path: str) -> bool:
    """Whether ``path`` is one of the management endpoints (what the probes and the scraper ask for)."""
    return path in (metrics_path, INFO_PATH, OPENAPI_PATH, DOCS_PATH) or path.startswith(
        (HEALTH_PREFIX, f"{DOCS_PATH}/")
    )


def install_management_port(app: Quart, settings: Settings) -> None:
    """Answer each request on its own port only, when ``management.port`` is set."""
    management_port = settings.management.port
    if management_port is None:
        return
    metrics_path = settings.metrics.path

    @app.before_request
    async def answer_on_its_own_port_only() -> None:
        on_management_port = request.server is not None and request.server[1] == management_port
        if is_management_path(request.path, metrics_path) != on_management_port:
            raise NotFound()
