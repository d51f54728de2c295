"""Every error response is an RFC 9457 problem: ``application/problem+json``, one shape.

``{"type", "title", "status", "detail", "instance", "request_id"}``; validation
errors add ``errors`` (where and what, never the rejected input; at most
``MAX_REPORTED_ERRORS`` of them, with ``errors_omitted`` saying how many more, so a
body with thousands of bad keys cannot make a huge answer).  An unhandled
exception is logged once with its traceback and answered with a generic 500: no
stack trace and no exception text reach the client.

Handlers signal a client error by raising one of werkzeug's exceptions, e.g.
``NotFound("There is no item 7.")``: its description becomes ``detail``.  Where werkzeug
would answer in its own generic words (a path no route matches, a method the route does
not take), the detail says what was asked instead: the method and the path (at most
``MAX_ECHOED_PATH`` characters of it), the methods allowed, and where the API docs are.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from quart import Quart, Response, json, request
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QuerystringValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .circuit_breaker import CircuitOpenError
from .error_reporting import report_error
from .http_client import UpstreamError, UpstreamTimeoutError
from .lifecycle import ResourceUnavailableError
from .logging import Throttled, current_request_id, get_logger

CONTENT_TYPE = "application/problem+json"
# RFC 9457: "about:blank" means the problem is just what the status code says.
BLANK_TYPE = "about:blank"
MAX_REPORTED_ERRORS = 20
# Characters of each part of an error's location (a key may be as long as the body allows).
MAX_LOCATION_PART = 64
# Characters of the request's path a 404 or 405 repeats (a path may be as long as the request line allows).
MAX_ECHOED_PATH = 200
GENERIC_DETAIL = {
    500: "The server failed to handle the request; the request id identifies it in the logs.",
}

log = get_logger(__name__)


def problem_document(
    status: int, detail: str | None = None, *, instance: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The body of a problem for ``status``: the one shape of every error, wherever it is answered.

    ``instance`` (the path) and the request id are left out where there is no request
    (Hypercorn's answers to what it cannot parse).
    """
    document: dict[str, Any] = {
        "type": BLANK_TYPE,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or GENERIC_DETAIL.get(status) or HTTPStatus(status).description,
    }
    if instance is not None:
        document["instance"] = instance
    request_id = current_request_id()
    if request_id is not None:
        document["request_id"] = request_id
    return {**document, **extra}


def problem(
    status: int, detail: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """A problem response for ``status``; ``extra`` members are added to the body."""
    body = problem_document(status, detail, instance=request.path, **extra)
    response = Response(json.dumps(body), status=status, content_type=CONTENT_TYPE)
    response.headers.update(headers or {})
    return response


def install_errors(app: Quart, *, docs_location: str | None = None) -> None:
    """Answer every error with a problem; a 404 for an unknown path points to ``docs_location``."""
    app.register_error_handler(RequestSchemaValidationError, _invalid_request)
    app.register_error_handler(HTTPException, _HttpErrors(docs_location).answer)
    dependencies = _DependencyFailures(Throttled(log))
    app.register_error_handler(CircuitOpenError, dependencies.circuit_open)
    app.register_error_handler(UpstreamError, dependencies.upstream_failed)
    app.register_error_handler(ResourceUnavailableError, dependencies.resource_unavailable)
    app.register_error_handler(Exception, _unexpected_error)


class _HttpErrors:
    """Werkzeug's exceptions as problems; its generic 404 and 405 in the service's own words."""

    def __init__(self, docs_location: str | None) -> None:
        self._docs_hint = f" The API is documented at {docs_location}." if docs_location else ""

    async def answer(self, error: HTTPException) -> Response:
        status = error.code or 500
        # Keep what the error says about itself (``Allow`` on 405, ``Retry-After`` on 503).
        headers = {name: value for name, value in error.get_headers() if name.lower() != "content-type"}
        detail = error.description if status < 500 or status in (503, 504) else None
        # A description given where the error was raised is kept; the class's own is werkzeug's prose.
        if "description" not in vars(error):
            detail = self._own_words(error) or detail
        return problem(status, detail, headers=headers)

    def _own_words(self, error: HTTPException) -> str | None:
        asked = f"{request.method} {echoed_path(request.path)}"
        if isinstance(error, NotFound):
            return f"No route matches {asked}.{self._docs_hint}"
        if isinstance(error, MethodNotAllowed):
            allowed = ", ".join(sorted(error.valid_methods or ()))
            return f"The route does not take {asked}; it allows {allowed}." if allowed else None
        return None


def echoed_path(path: str) -> str:
    """``path`` as a detail repeats it: at most ``MAX_ECHOED_PATH`` characters."""
    return path if len(path) <= MAX_ECHOED_PATH else f"{path[:MAX_ECHOED_PATH]}… (cut)"


async def _invalid_request(error: RequestSchemaValidationError) -> Response:
    """422: the body or query string is well-formed but does not match the schema (415: not JSON)."""
    in_query = isinstance(error, QuerystringValidationError)
    if not in_query and not request.is_json:
        return problem(415, "Send the request body as application/json.")
    cause = error.validation_error
    found: list[Any] = []
    if isinstance(cause, ValidationError):
        found = cause.errors(include_url=False, include_input=False, include_context=False)
    # Where and what only: echoing the rejected input could reflect secrets or markup.
    errors = [
        {
            "location": [str(part)[:MAX_LOCATION_PART] for part in item["loc"]],
            "message": item["msg"],
            "type": item["type"],
        }
        for item in found[:MAX_REPORTED_ERRORS]
    ]
    members: dict[str, Any] = {"errors": errors}
    if len(found) > len(errors):
        members["errors_omitted"] = len(found) - len(errors)
    where = "query string" if in_query else "request body"
    return problem(422, f"The {where} is not valid.", **members)


class _DependencyFailures:
    """503s and 504s for what the service depends on; logged throttled, since they come in floods."""

    def __init__(self, throttled: Throttled) -> None:
        self._log = throttled

    async def circuit_open(self, error: CircuitOpenError) -> Response:
        self._log.warning("upstream circuit open; failing fast", key=error.name, upstream=error.name)
        retry_after = str(max(1, math.ceil(error.retry_after)))
        detail = f"A service this one depends on ({error.name}) is failing; try again later."
        return problem(503, detail, headers={"Retry-After": retry_after})

    async def upstream_failed(self, error: UpstreamError) -> Response:
        self._log.warning(
            "upstream call failed", key=error.upstream, upstream=error.upstream, error=str(error)
        )
        if isinstance(error, UpstreamTimeoutError):
            return problem(504, f"A service this one depends on ({error.upstream}) did not answer in time.")
        return problem(503, f"A service this one depends on ({error.upstream}) is unavailable.")

    async def resource_unavailable(self, error: ResourceUnavailableError) -> Response:
        self._log.warning(f"{error.resource} unavailable", error=str(error))
        detail = f"The {error.resource} is unavailable; try again later."
        return problem(503, detail, headers={"Retry-After": "1"})


async def _unexpected_error(error: Exception) -> Response:
    log.error("unhandled error", method=request.method, path=request.path, exc_info=error)
    route = request.url_rule.rule if request.url_rule is not None else None
    report_error(error, route=route, method=request.method)
    return problem(500)
