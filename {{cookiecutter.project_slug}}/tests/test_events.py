"""CloudEvents: what the service publishes is valid structured-mode JSON; what it reads is checked."""

from __future__ import annotations

import json

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace

from {{ cookiecutter.package_name }}.chassis.events import (
    InvalidEventError,
    context_headers,
    parse_event,
)
from {{ cookiecutter.package_name }}.chassis.logging import (
    RequestFields,
    bind_request_fields,
)
from {{ cookiecutter.package_name }}.events import (
    ITEM_DELETED,
    PUBLISHED_EVENTS,
    SOURCE,
    item_deleted,
)

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7


def test_an_event_is_a_structured_cloudevent() -> None:
    event = item_deleted(7)
    document = json.loads(event.to_json())
    assert document == {
        "specversion": "1.0",
        "id": event.id,
        "source": SOURCE,
        "type": "items.deleted",
        "time": document["time"],
        "datacontenttype": "application/json",
        "data": {"id": 7},
    }
    assert document["time"].endswith("Z")
    assert item_deleted(7).id != event.id, "each event has an id of its own"


def test_an_event_round_trips_with_its_id_and_headers() -> None:
    event = item_deleted(7)
    parsed = parse_event(event.to_json(), {"traceparent": "x"})
    assert (parsed.id, parsed.type, parsed.source, parsed.data) == (
        event.id,
        event.type,
        event.source,
        {"id": 7},
    )
    assert parsed.time == event.time
    assert parsed.headers == {"traceparent": "x"}


def test_events_carry_the_trace_context_and_request_id() -> None:
    span = trace.NonRecordingSpan(
        trace.SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=trace.TraceFlags(1))
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    bind_request_fields(RequestFields(request_id="req-9", trace_id="", span_id=""))
    try:
        headers = context_headers()
    finally:
        otel_context.detach(token)
        bind_request_fields(RequestFields(request_id="", trace_id="", span_id=""))
    assert headers["traceparent"] == f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"
    assert headers["x-request-id"] == "req-9"


def test_without_a_request_id_events_carry_no_request_id_header() -> None:
    """A consumer handling a message that came without one binds an empty id: no empty header."""
    bind_request_fields(RequestFields(request_id="", trace_id="", span_id=""))
    assert "x-request-id" not in context_headers()


def command_with(**attributes: object) -> bytes:
    """A CloudEvent's body with ``attributes`` replaced (as a sender may write it, surrogates included)."""
    document = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {}, **attributes}
    return json.dumps(document).encode()  # ensure_ascii: a lone surrogate travels as an escape


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"specversion": "1.0", "id": "1", "type": "t"}', "lacks the CloudEvents attribute(s) source"),
        (b'{"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}', "specversion is '0.3'"),
        (
            b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "datacontenttype": "text/xml"}',
            "datacontenttype is 'text/xml'",
        ),
        (b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "time": "soon"}', "RFC 3339"),
    ],
)
def test_a_message_that_is_not_a_cloudevent_is_refused_saying_why(body: bytes, complaint: str) -> None:
    with pytest.raises(InvalidEventError) as refused:
        parse_event(body, {})
    assert complaint in str(refused.value)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        # Past the interpreter's recursion limit (its RecursionError stalled the consumers), and past ours.
        pytest.param(b"[" * 5000 + b"]" * 5000, "nests deeper than 32 levels", id="recursion"),
        pytest.param(command_with(data=json.loads("[" * 33 + "]" * 33)), "nests deeper than 32", id="deep"),
        pytest.param(command_with(id="x" * 101), "its id is empty or longer than 100", id="long-id"),
        pytest.param(command_with(id=""), "its id is empty", id="empty-id"),
        pytest.param(command_with(type="t" * 201), "its type is empty or longer than 200", id="long-type"),
        pytest.param(command_with(id="a\x00b"), "its id holds control characters", id="nul-id"),
        pytest.param(command_with(type="x\ud800"), "invalid Unicode", id="surrogate"),
        pytest.param(command_with(source="/s\n"), "its source holds control characters", id="newline-source"),
    ],
)
def test_what_a_sender_controls_is_bounded_before_it_is_stored_or_logged(body: bytes, complaint: str) -> None:
    with pytest.raises(InvalidEventError) as refused:
        parse_event(body, {})
    assert complaint in str(refused.value)


def test_the_deepest_event_allowed_is_parsed() -> None:
    body = command_with(data=json.loads("[" * 31 + "]" * 31))  # the object itself is the first level
    assert parse_event(body, {}).type == "t"


def test_every_published_event_is_declared_once() -> None:
    names = [event.name for event in PUBLISHED_EVENTS]
    assert len(names) == len(set(names))
    assert ITEM_DELETED in PUBLISHED_EVENTS
