"""The AsyncAPI 3.0 document of the service's messages: what it publishes and what it consumes.

Built from the same declarations the code runs on (``EventType`` for events, ``Consumer``
for commands) and the broker's names for them, so it cannot drift from what the service
does.  Every message is a CloudEvent in structured mode; its ``data`` has the schema of
the declared pydantic model, and its headers carry the trace context and request id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .consumers import Consumer
from .events import CONTENT_TYPE, DATA_CONTENT_TYPE, REQUEST_ID_HEADER, SPEC_VERSION, EventType

ASYNCAPI_VERSION = "3.0.0"
SCHEMA_REF = "#/components/schemas/{model}"


def asyncapi_document(
    *,
    title: str,
    version: str,
    server: Mapping[str, Any],
    events: Sequence[tuple[EventType[Any], Mapping[str, Any]]],
    commands: Sequence[tuple[Consumer[Any, Any], Mapping[str, Any]]],
) -> dict[str, Any]:
    """The document; ``events`` and ``commands`` pair each declaration with its channel."""
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    declared = [(event.name, event.data, event.summary, "send", channel) for event, channel in events]
    declared += [
        (command.command, command.data, command.summary, "receive", channel) for command, channel in commands
    ]
    for name, model, summary, action, channel in declared:
        messages[name] = _message(name, model, summary, schemas)
        channels[name] = {**channel, "messages": {name: {"$ref": f"#/components/messages/{name}"}}}
        operations[f"{action}-{name}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version},
        "defaultContentType": CONTENT_TYPE,
        "servers": {"broker": dict(server)},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _message(name: str, model: type[BaseModel], summary: str, schemas: dict[str, Any]) -> dict[str, Any]:
    data = model.model_json_schema(ref_template=SCHEMA_REF)
    schemas.update(data.pop("$defs", {}))
    schemas[model.__name__] = data
    return {
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {
                "traceparent": {"type": "string", "description": "W3C trace context of the publisher."},
                "tracestate": {"type": "string"},
                REQUEST_ID_HEADER: {"type": "string", "description": "Id of the request that caused it."},
            },
        },
        "payload": {
            "type": "object",
            "description": "A CloudEvent 1.0 in structured mode.",
            "required": ["specversion", "id", "source", "type", "data"],
            "properties": {
                "specversion": {"const": SPEC_VERSION},
                "id": {"type": "string", "description": "Unique per event; kept when it is delivered again."},
                "source": {"type": "string", "format": "uri-reference"},
                "type": {"const": name},
                "time": {"type": "string", "format": "date-time"},
                "datacontenttype": {"const": DATA_CONTENT_TYPE},
                "data": {"$ref": SCHEMA_REF.format(model=model.__name__)},
            },
        },
    }
