"""The API's OpenAPI document (``/openapi.json``), by quart-schema (its interactive docs: ``api_docs``).

Only the service's own API is documented (the blueprints in ``views``), not the
chassis' operational endpoints (probes, metrics, info).  Every operation also
documents its errors: each is an RFC 9457 problem (``application/problem+json``),
as the ``default`` response and under the statuses a handler names with
``documents_problems``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

from pydantic import BaseModel
from quart import Blueprint, Quart, Response
from quart.typing import ResponseTypes
from quart_schema import Info, OpenAPIProvider, QuartSchema, document_response
from quart_schema.typing import Model
from werkzeug.routing import Rule

from .errors import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from .parts import attach, part_of

OPENAPI_PATH = "/openapi.json"


@dataclasses.dataclass(frozen=True)
class DocumentedBlueprints:
    """The names of the blueprints that make up the API (the chassis' own routes are left out)."""

    names: frozenset[str]


Handler = TypeVar("Handler", bound=Callable[..., Any])
MakeResponse = Callable[[Any], Awaitable[ResponseTypes]]


class Problem(BaseModel):
    """An error, as an RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None
    errors: list[dict[str, Any]] | None = None


class NoContent(BaseModel):
    """Stands for an empty response in the document: see ``documents_no_content``."""


def documents_no_content() -> Callable[[Handler], Handler]:
    """Document that a handler answers 204 with no body; it returns ``empty_response()``."""
    return document_response(NoContent, 204)


def empty_response() -> Response:
    """204 No Content, with no body and so no Content-Type."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def documents_problems(*statuses: int) -> Callable[[Handler], Handler]:
    """Document that a handler answers ``statuses`` with problems (beyond the default)."""

    def decorator(handler: Handler) -> Handler:
        for status in statuses:
            handler = document_response(Problem, status)(handler)
        return handler

    return decorator


class _ApiProvider(OpenAPIProvider):
    """quart-schema's document, limited to the API's blueprints, with problems as errors."""

    def generate_rules(self) -> Iterable[Rule]:
        documented = part_of(cast("Quart", self._app), DocumentedBlueprints).names
        for rule in super().generate_rules():
            if rule.endpoint.partition(".")[0] in documented:
                yield rule

    def build_response_object(
        self, model: type[Model], headers_model: type[Model] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is NoContent:
            return {"description": "No Content"}, {}
        response, definitions = super().build_response_object(model, headers_model)
        if model is Problem:
            response["content"] = {PROBLEM_CONTENT_TYPE: response["content"]["application/json"]}
        return response, definitions

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        default, definitions = self.build_response_object(Problem, None)
        document["components"]["schemas"].update(definitions)
        for operations in document["paths"].values():
            for operation in operations.values():
                # Status codes as strings, as OpenAPI writes them (and "default" sorts with them).
                responses = {str(status): item for status, item in operation.get("responses", {}).items()}
                responses.setdefault("default", default)
                operation["responses"] = responses
                if "requestBody" in operation:  # a validated body is never optional
                    operation["requestBody"]["required"] = True
        return document


def install_openapi(app: Quart, blueprints: Iterable[Blueprint], *, title: str, version: str) -> None:
    attach(app, DocumentedBlueprints(frozenset(blueprint.name for blueprint in blueprints)))
    make_response = app.make_response
    QuartSchema(
        app,
        openapi_path=OPENAPI_PATH,
        swagger_ui_path=None,  # api_docs serves it, without a CDN
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(title=title, version=version),
        openapi_provider_class=_ApiProvider,
    )
    # quart-schema passes every response through a new pydantic TypeAdapter, plain dicts
    # included, which cost a third of the time of a small request; only models need it.
    app.make_response = _dumping_models(make_response)  # type: ignore[method-assign,assignment]


def _dumping_models(make_response: MakeResponse) -> MakeResponse:
    """Quart's ``make_response``, turning a pydantic model (alone or first in a tuple) into JSON data."""

    async def make_response_from_models(result: Any) -> ResponseTypes:
        if type(result) is dict:  # the common case, without pydantic's slower isinstance
            return await make_response(result)
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        elif isinstance(result, tuple) and result and isinstance(result[0], BaseModel):
            result = (result[0].model_dump(mode="json"), *result[1:])
        return await make_response(result)

    return make_response_from_models


def openapi_document(app: Quart) -> dict[str, Any]:
    """The OpenAPI document of ``app``, as ``/openapi.json`` serves it."""
    schema: QuartSchema = app.extensions["QUART_SCHEMA"]
    return schema.openapi_provider.schema()
