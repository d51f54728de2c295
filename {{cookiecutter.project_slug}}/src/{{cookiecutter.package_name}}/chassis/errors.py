"""Every error response is an RFC 9457 problem: ``application/problem+json``, one shape.

``{"type", "title", "status", "detail", "instance", "request_id"}``; validation
errors add ``errors`` (where and what, never the rejected input).  An unhandled
exception is logged once with its traceback and answered with a generic 500: no
stack trace and no exception text reach the client.

Handlers signal a client error by raising one of werkzeug's exceptions, e.g.
``NotFound("There is no item 7.")``: its description becomes ``detail``.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from quart import Quart, Response, json, request
from quart.wrappers import Request as QuartRequest
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QuerystringValidationError
from werkzeug.exceptions import BadRequest, HTTPException

from .circuit_breaker import CircuitOpenError
{%- if cookiecutter.database == "postgresql" %}
from .database import DatabaseUnavailableError
{%- endif %}
from .http_client import UpstreamError, UpstreamTimeoutError
from .logging import current_request_id, get_logger

CONTENT_TYPE = "application/problem+json"
# RFC 9457: "about:blank" means the problem is just what the status code says.
BLANK_TYPE = "about:blank"
GENERIC_DETAIL = {
    500: "The server failed to handle the request; the request id identifies it in the logs.",
}

log = get_logger(__name__)


def problem(
    status: int, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """A problem response for ``status``; ``extra`` members are added to the body."""
    body: dict[str, Any] = {
        "type": BLANK_TYPE,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or GENERIC_DETAIL.get(status) or HTTPStatus(status).description,
        "instance": request.path,
        "request_id": current_request_id(),
        **extra,
    }
    response = Response(json.dumps(body), status=status, content_type=CONTENT_TYPE)
    response.headers.update(headers or {})
    return response


class Request(QuartRequest):
    """Quart's request, refusing a body that is not UTF-8 with 400 (Quart lets it become a 500)."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError:
            if silent:
                return None
            raise BadRequest("The request body is not valid UTF-8.") from None


def install_errors(app: Quart) -> None:
    """Answer every error with a problem."""
    app.request_class = Request
    app.register_error_handler(RequestSchemaValidationError, _invalid_request)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(CircuitOpenError, _circuit_open)
    app.register_error_handler(UpstreamError, _upstream_failed)
{%- if cookiecutter.database == "postgresql" %}
    app.register_error_handler(DatabaseUnavailableError, _database_unavailable)
{%- endif %}
    app.register_error_handler(Exception, _unexpected_error)


async def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    # Keep what the error says about itself (``Allow`` on 405, ``Retry-After`` on 503).
    headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
    detail = error.description if status < 500 or status in (503, 504) else None
    return problem(status, detail, headers=headers)


async def _invalid_request(error: RequestSchemaValidationError) -> Response:
    """422: the body or query string is well-formed but does not match the schema (415: not JSON)."""
    in_query = isinstance(error, QuerystringValidationError)
    if not in_query and not request.is_json:
        return problem(415, "Send the request body as application/json.")
    cause = error.validation_error
    errors: list[dict[str, Any]] = []
    if isinstance(cause, ValidationError):
        # Where and what only: echoing the rejected input could reflect secrets or markup.
        errors = [
            {"location": [str(part) for part in item["loc"]], "message": item["msg"], "type": item["type"]}
            for item in cause.errors(include_url=False, include_input=False, include_context=False)
        ]
    where = "query string" if in_query else "request body"
    return problem(422, f"The {where} is not valid.", errors=errors)


async def _circuit_open(error: CircuitOpenError) -> Response:
    log.warning("upstream circuit open; failing fast", upstream=error.name)
    retry_after = str(max(1, math.ceil(error.retry_after)))
    detail = f"A service this one depends on ({error.name}) is failing; try again later."
    return problem(503, detail, headers={"Retry-After": retry_after})


async def _upstream_failed(error: UpstreamError) -> Response:
    log.warning("upstream call failed", upstream=error.upstream, error=str(error))
    if isinstance(error, UpstreamTimeoutError):
        return problem(504, f"A service this one depends on ({error.upstream}) did not answer in time.")
    return problem(503, f"A service this one depends on ({error.upstream}) is unavailable.")


{% if cookiecutter.database == "postgresql" -%}
async def _database_unavailable(error: DatabaseUnavailableError) -> Response:
    log.warning("database unavailable", error=str(error))
    return problem(503, "The database is unavailable; try again later.", headers={"Retry-After": "1"})


{% endif -%}
async def _unexpected_error(error: Exception) -> Response:
    log.error("unhandled error", method=request.method, path=request.path, exc_info=error)
    return problem(500)
