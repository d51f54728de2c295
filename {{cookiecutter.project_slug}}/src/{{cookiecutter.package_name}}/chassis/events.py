"""CloudEvents 1.0: every message this service publishes or consumes is one, in structured JSON mode.

An event is a JSON object with ``specversion``, ``id``, ``source``, ``type``, ``time``,
``datacontenttype`` and ``data`` (https://github.com/cloudevents/spec).  Its ``id`` is made
once, when the event is made, and kept through retries and republishing, so consumers can
tell a redelivery from a new event.  The trace context (W3C ``traceparent``/``tracestate``)
and the request id travel beside it, as message headers.

``EventType`` declares an event the service publishes, with the model of its ``data``:
the one place the AsyncAPI document and the events themselves come from.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel

from .logging import current_request_id
from .nesting import nesting_exceeds
from .tracing import current_span_context, headers_of_context

SPEC_VERSION = "1.0"
# The content type of a structured-mode CloudEvent in JSON (the message's content type).
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"
REQUEST_ID_HEADER = "x-request-id"
# The attributes a consumer needs; the others (time, datacontenttype) are optional in the spec.
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
# Longest id, source and type accepted (the inbox stores the id; every log line of the message
# carries the id and the type): a sender cannot make them fail storage or flood a log line.
MAX_ATTRIBUTE_LENGTHS = {"id": 100, "source": 500, "type": 200}
# Deepest nesting of arrays and objects in an event, as http.max_json_depth's default bounds a body.
MAX_DEPTH = 32

_PROPAGATOR = TraceContextTextMapPropagator()

DataT = TypeVar("DataT", bound=BaseModel)


class Publisher(Protocol):
    async def publish(self, event: CloudEvent) -> None:
        """Publish ``event`` and return once the broker has it; raises if it could not take it."""


class InvalidEventError(ValueError):
    """A message that is not a CloudEvent this service understands; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class CloudEvent:
    type: str
    source: str
    data: Any
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime.datetime = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    # Headers of the message that carries it: trace context and request id.
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> bytes:
        """The event in structured mode: the message's body."""
        return json.dumps(
            {
                "specversion": SPEC_VERSION,
                "id": self.id,
                "source": self.source,
                "type": self.type,
                "time": self.time.isoformat().replace("+00:00", "Z"),
                "datacontenttype": DATA_CONTENT_TYPE,
                "data": self.data,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()


def context_headers() -> dict[str, str]:
    """The current trace context and request id, as headers of a message sent now."""
    headers = headers_of_context(current_span_context())
    request_id = current_request_id()
    if request_id is not None:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def parse_event(body: bytes, headers: Mapping[str, str]) -> CloudEvent:
    """The CloudEvent in ``body``; raises ``InvalidEventError`` naming what is wrong."""
    try:
        document = json.loads(body.decode())  # decoded first: json's own detection of UTF-16 and 32 is slow
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidEventError(f"the body is not JSON ({error})") from None
    except RecursionError:  # nested past the interpreter's own limit
        raise InvalidEventError(f"it nests deeper than {MAX_DEPTH} levels") from None
    if nesting_exceeds(document, MAX_DEPTH):
        raise InvalidEventError(f"it nests deeper than {MAX_DEPTH} levels")
    if not isinstance(document, dict):
        raise InvalidEventError("the body is not a JSON object")
    missing = [name for name in REQUIRED_ATTRIBUTES if not isinstance(document.get(name), str)]
    if missing:
        raise InvalidEventError(f"it lacks the CloudEvents attribute(s) {', '.join(missing)}")
    for name, longest in MAX_ATTRIBUTE_LENGTHS.items():
        _check_attribute(name, document[name], longest)
    if document["specversion"] != SPEC_VERSION:
        raise InvalidEventError(f"its specversion is {document['specversion']!r}, not {SPEC_VERSION}")
    content_type = document.get("datacontenttype", DATA_CONTENT_TYPE)
    if content_type != DATA_CONTENT_TYPE:
        raise InvalidEventError(f"its datacontenttype is {content_type!r}, not {DATA_CONTENT_TYPE}")
    return CloudEvent(
        type=document["type"],
        source=document["source"],
        data=document.get("data"),
        id=document["id"],
        time=_time_of(document.get("time")),
        headers=headers,
    )


def _check_attribute(name: str, value: str, longest: int) -> None:
    """An id, source or type: non-empty, at most ``longest`` characters, printable, valid Unicode."""
    if not value or len(value) > longest:
        raise InvalidEventError(f"its {name} is empty or longer than {longest} characters")
    if not value.isprintable() or not _encodable(value):
        raise InvalidEventError(f"its {name} holds control characters or invalid Unicode")


def _encodable(value: str) -> bool:
    """Whether ``value`` is valid Unicode (JSON's \\ud800 escapes give lone surrogates that are not)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _time_of(value: object) -> datetime.datetime:
    if value is None:  # optional in the spec
        return datetime.datetime.now(datetime.UTC)
    try:
        return datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidEventError("its time is not an RFC 3339 timestamp") from None


def trace_context_of(event: CloudEvent) -> trace.SpanContext:
    """The span context the event's publisher sent (invalid when it sent none)."""
    return trace.get_current_span(_PROPAGATOR.extract(dict(event.headers))).get_span_context()


@dataclasses.dataclass(frozen=True)
class EventType(Generic[DataT]):
    """An event this service publishes: its CloudEvents ``type`` and the model of its ``data``."""

    name: str
    data: type[DataT]
    summary: str

    def event(self, data: DataT, *, source: str) -> CloudEvent:
        """A new event of this type, with the current trace context and request id."""
        return CloudEvent(
            type=self.name, source=source, data=data.model_dump(mode="json"), headers=context_headers()
        )
